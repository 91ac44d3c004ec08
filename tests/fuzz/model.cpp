// model.cpp - the model's entry point, revisions, and what it decides below IPv4.
//
// Rules (README "Architecture" and "IPv6", issue 13 items 3-5):
//  - every hook first finds its attachment: a container veth without an
//    endpoint, or an uplink hook on a device that is no uplink, drops
//    everything (unknown-endpoint, fail closed);
//  - container hooks: 802.1Q/802.1ad tags and every ethertype other than
//    IPv4, IPv6 and ARP drop (unsupported-protocol). New: from_container
//    drops an Ethernet source that is not the container's MAC;
//    to_container drops a unicast destination that is not the container's
//    (broadcast and multicast go on to the next checks);
//  - ARP: the header must be Ethernet/IPv4 sized (hlen 6, plen 4), whole;
//    new: no longer than 60 bytes. From the container the sender IP is its
//    own or 0.0.0.0 (a probe), and (new) the sender MAC its own. New: to the
//    container an ARP is judged by isolation of its sender IP, a probe
//    counting as a same-network container (dropped when icc is off);
//  - IPv6 has no subnets: only neighbour discovery (RS, NS, NA, and to the
//    container RA and redirect, all with hop limit 255) and MLD pass,
//    unfragmented, behind any valid chain of extension headers (at most 8,
//    hop-by-hop only first, else ipv6-extension-headers); a container may
//    not send RA or redirects; everything else is ipv6-not-enabled. On a
//    network with icc off, to_container drops all of it (icc-disabled).
//    Issue 16: from the container the source is its EUI-64 link-local
//    address, or :: for DAD, RS and MLD reports only (spoofed-source); an
//    NA's target is that address (spoofed-source); link-layer address
//    options carry its MAC (spoofed-mac); options are whole (invalid-packet);
//  - uplinks judge IPv4 only; what they do with other frames, or with a
//    malformed IPv4 header, README leaves open (Either).
#include <netinet/in.h>

#include <algorithm>
#include <array>

#include "model_internal.h"

namespace fuzz {

Verdict drop(std::string reason, std::string rule, bool new_rule) {
  Verdict v;
  v.kind = Verdict::Kind::Drop;
  v.reason = std::move(reason);
  v.rule = std::move(rule);
  v.new_rule = new_rule;
  return v;
}

Verdict either(std::string rule) {
  Verdict v;
  v.kind = Verdict::Kind::Either;
  v.rule = std::move(rule);
  return v;
}

Verdict pass_as_is(const Bytes& frame, std::string rule) {
  Verdict v;
  v.out = frame;
  v.rule = std::move(rule);
  return v;
}

Model::Model(const Topology& topo, const std::vector<moat::Config>& variants)
    : topo_(topo), variants_(variants) {
  reset();
}

uint32_t Model::next_rev() { return ++rev_counter_; }

void Model::reset() {
  st_ = ModelState{};
  switch_policy(0);
}

void Model::switch_policy(size_t variant) {
  st_.variant = variant;
  st_.rev = variants_[variant].policies.empty() ? 0 : next_rev();
}

Verdict Model::step(Hook h, uint32_t ifindex, uint32_t ingress_ifindex, const Bytes& frame,
                    const Bytes* kernel_out) {
  const Ctx c{h,
              ifindex,
              ingress_ifindex,
              frame,
              at_uplink(h) ? nullptr : topo_.att_at(ifindex),
              at_uplink(h) ? topo_.uplink_at(ifindex) : nullptr,
              kernel_out};
  if (!c.att && !c.uplink) return drop("unknown-endpoint", "no endpoint or uplink entry");
  if (frame.size() < 14) return drop("invalid-packet", "shorter than an Ethernet header");
  return ethernet(c);
}

Verdict Model::ethernet(const Ctx& c) {
  const uint16_t type = get16(c.frame, 12);
  if (c.uplink) return type == kEthIp ? ipv4(c) : either("non-IPv4 frame at an uplink");
  if (c.hook == Hook::FromContainer && mac_at(c.frame, 6) != c.att->mac)
    return drop("spoofed-mac", "Ethernet source is not the container's MAC", true);
  const Mac dst = mac_at(c.frame, 0);
  if (c.hook == Hook::ToContainer && is_unicast(dst) && dst != c.att->mac)
    return drop("foreign-mac", "unicast to another MAC than the container's", true);
  switch (type) {
    case kEthIp:
      return ipv4(c);
    case kEthArp:
      return arp(c);
    case kEthIp6:
      return ipv6(c);
    case kEthVlan:
    case kEthQinQ:
      return drop("unsupported-protocol", "802.1Q/802.1ad tag");
    default:
      return drop("unsupported-protocol", "ethertype other than IPv4, IPv6 and ARP");
  }
}

Verdict Model::arp(const Ctx& c) {
  const Bytes& f = c.frame;
  if (f.size() > 60) return drop("invalid-packet", "ARP frame longer than 60 bytes", true);
  if (f.size() < 14 + 28) return drop("invalid-packet", "ARP header cut short");
  if (f[18] != 6 || f[19] != 4) return drop("invalid-packet", "ARP address lengths not 6/4");
  if (get16(f, 14) != 1 || get16(f, 16) != kEthIp)
    return either("ARP for another hardware/protocol");
  const uint32_t spa = get32(f, 28);
  if (c.hook == Hook::FromContainer) {
    if (spa != 0 && spa != c.att->ip) return drop("spoofed-source", "ARP sender IP not its own");
    if (mac_at(f, 22) != c.att->mac) return drop("spoofed-mac", "ARP sender MAC not its own", true);
    return pass_as_is(f, "ARP from the container");
  }
  if (spa == 0 && !topo_.nets[c.att->net].icc)
    return drop("icc-disabled", "ARP probe (a same-network container) with icc off", true);
  if (spa != 0)
    if (auto v = isolation(*c.att, spa)) {
      v->new_rule = true;
      v->rule = "ARP judged by its sender IP: " + v->rule;
      return *v;
    }
  return pass_as_is(f, "ARP to the container");
}

namespace {

bool is_nd(uint8_t type) { return type >= 133 && type <= 137; }
bool is_mld(uint8_t type) { return type == 130 || type == 131 || type == 132 || type == 143; }


// The container's link-local address: fe80::/64 with the modified EUI-64
// interface id of its MAC (RFC 4291 appendix A).
std::array<uint8_t, 16> link_local_of(const Mac& m) {
  return {0xfe, 0x80, 0, 0, 0, 0, 0, 0, uint8_t(m[0] ^ 2), m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]};
}

bool bytes_at(const Bytes& f, size_t off, const std::array<uint8_t, 16>& a) {
  return f.size() >= off + 16 && std::equal(a.begin(), a.end(), f.begin() + off);
}

bool all_zero(const Bytes& f, size_t off, size_t n) {
  return std::all_of(f.begin() + off, f.begin() + off + n, [](uint8_t b) { return b == 0; });
}

// The upper layer of an IPv6 packet after its extension headers (README
// "IPv6"; RFC 8200 4): at most 8 of them, hop-by-hop only first, one
// fragment header; a later fragment ends the chain.
struct Ext6 {
  bool ok = false;
  uint8_t proto = 0;
  size_t l4 = 0;
  bool fragmented = false;
};

Ext6 walk6(const Bytes& f, uint8_t next) {
  auto is_ext = [](uint8_t n) { return n == 0 || n == 43 || n == 44 || n == 51 || n == 60; };
  Ext6 e;
  size_t off = 14 + 40;
  bool later_fragment = false;
  for (int i = 0; i < 8 && is_ext(next) && !later_fragment; ++i) {
    if (next == 0 && i > 0) return e;
    if (next == 44) {
      if (e.fragmented || f.size() < off + 8) return e;
      e.fragmented = true;
      later_fragment = (get16(f, off + 2) & 0xfff8) != 0;
      next = f[off];
      off += 8;
      continue;
    }
    if (f.size() < off + 2) return e;
    const size_t len = next == 51 ? (size_t(f[off + 1]) + 2) * 4 : (size_t(f[off + 1]) + 1) * 8;
    next = f[off];
    off += len;
  }
  if (is_ext(next) && !later_fragment) return e;
  e.ok = true;
  e.proto = next;
  e.l4 = off;
  return e;
}

// Link-layer address options of type `lla` in [off, end) carry `own`.
Verdict nd_options(const Bytes& f, size_t off, size_t end, uint8_t lla, const Mac& own) {
  for (int i = 0; i < 8 && off < end; ++i) {
    if (off + 8 > end || f[off + 1] == 0 || off + size_t(f[off + 1]) * 8 > end)
      return drop("invalid-packet", "ND option zero-length or past the message", true);
    if (f[off] == lla && (f[off + 1] != 1 || mac_at(f, off + 2) != own))
      return drop("spoofed-mac", "ND link-layer address option not the container's MAC", true);
    off += size_t(f[off + 1]) * 8;
  }
  if (off < end) return drop("invalid-packet", "more than 8 ND options", true);
  return pass_as_is(f, "neighbour discovery");
}

}  // namespace

Verdict Model::ipv6(const Ctx& c) {
  const Bytes& f = c.frame;
  if (f.size() < 14 + 40) return drop("invalid-packet", "IPv6 header cut short");
  if (f[14] >> 4 != 6) return drop("invalid-packet", "IP version is not 6");
  const size_t end = 14 + 40 + get16(f, 14 + 4);
  if (end > f.size()) return drop("invalid-packet", "payload length beyond the frame");
  const bool from = c.hook == Hook::FromContainer;
  const auto own_ll = link_local_of(c.att->mac);
  const bool unspecified = all_zero(f, 14 + 8, 16);
  if (from && !unspecified && !bytes_at(f, 14 + 8, own_ll))
    return drop("spoofed-source", "IPv6 source neither its link-local address nor ::", true);
  const uint8_t hop_limit = f[14 + 7];
  const Ext6 x = walk6(f, f[14 + 6]);
  if (!x.ok || x.l4 > end)
    return drop("ipv6-extension-headers", "extension headers cut, malformed or more than 8", true);
  const auto refused = [&](Verdict v) {
    return from && unspecified ? drop("spoofed-source", "from :: other than DAD, RS, MLD", true) : v;
  };
  if (x.proto != IPPROTO_ICMPV6) return refused(drop("ipv6-not-enabled", "IPv6 other than ICMPv6"));
  if (x.fragmented) return refused(drop("ipv6-not-enabled", "fragmented ICMPv6 (RFC 6980)", true));
  if (x.l4 + 4 > end) return drop("invalid-packet", "ICMPv6 header cut short");
  const uint8_t type = f[x.l4];
  if (!is_nd(type) && !is_mld(type))
    return refused(drop("ipv6-not-enabled", "ICMPv6 other than ND/MLD"));
  if (x.l4 + 8 > end) return either("ND/MLD message shorter than 8 bytes");
  if (is_nd(type) && hop_limit != 255)
    return refused(drop("invalid-packet", "ND with hop limit != 255"));
  if (from && (type == 134 || type == 137))
    return refused(drop("router-advertisement", "RA or redirect from a container"));
  if (!from) {
    if (!topo_.nets[c.att->net].icc)
      return drop("icc-disabled", "ND/MLD to a container of an icc-off network", true);
    if (is_mld(type) && hop_limit != 1) return either("MLD with hop limit != 1");
    return pass_as_is(f, is_nd(type) ? "neighbour discovery" : "MLD");
  }
  switch (type) {
    case 133:
      return nd_options(f, x.l4 + 8, end, 1, c.att->mac);
    case 135:
      return nd_options(f, x.l4 + 24, end, 1, c.att->mac);
    case 136:
      if (unspecified) return drop("spoofed-source", "NA from ::", true);
      if (x.l4 + 24 > end) return drop("invalid-packet", "NA target cut short", true);
      if (!bytes_at(f, x.l4 + 8, own_ll))
        return drop("spoofed-source", "NA for an address not the container's", true);
      return nd_options(f, x.l4 + 24, end, 2, c.att->mac);
    case 131:
    case 132:
    case 143:
      if (hop_limit != 1) return either("MLD with hop limit != 1");
      return pass_as_is(f, "MLD");
    default:
      return refused(pass_as_is(f, "MLD"));
  }
}

}  // namespace fuzz
