// model_ip6.cpp - the model's IPv6 rules.
//
// From README ("IPv6" under Architecture), issue 16 and the dual-stack rules
// of 98ff011 (networks with an IPv6 subnet and gateway, attachments with an
// IPv6 address), never from the BPF sources. At a container's veth, after
// the MAC checks:
//  1. a fixed header cut short, a version other than 6, or a payload length
//     beyond the frame: invalid-packet;
//  2. from the container the source is its link-local address (modified
//     EUI-64 of its MAC), its IPv6 address on this attachment, or ::
//     (spoofed-source);
//  3. the extension-header chain: at most 8, hop-by-hop only first, one
//     fragment header, whole (ipv6-extension-headers); a later fragment
//     ends it;
//  4. ICMPv6 that is not a later fragment: 4 bytes of header or
//     invalid-packet. Link messages (MLD 130/131/132/143; RS, NS, NA
//     133/135/136 with hop limit 255 else invalid-packet; RA and redirect
//     134/137: from the container router-advertisement, to it hop limit 255
//     else invalid-packet; MLD from a source neither link-local nor ::
//     invalid-packet): one that would pass with a fragment header is
//     invalid-packet (RFC 6980); from the container, one sent from :: that
//     these checks drop is spoofed-source, and the ND claims hold (their
//     own reasons, from :: too; :: only for DAD,
//     RS and MLD reports; an NA's target is one of its own addresses;
//     link-layer address options carry its MAC; options whole); to the
//     container the link-peer rule decides;
//  5. everything else is data, stateless (no connection tracking): from ::
//     spoofed-source (from the container); an attachment without an IPv6
//     address: ipv6-not-enabled. The peer (destination from the container,
//     source to it): link-local or multicast passes from the container, and
//     to it goes by the link-peer rule; otherwise it is looked up in the
//     networks' IPv6 gateways and subnets and judged as IPv4 isolation is
//     (gateway: the host, except another network's for an internal one:
//     internal-network; own subnet: icc; another subnet: network-isolation;
//     no match: internal-network for an internal network, else
//     ipv6-not-enabled: IPv6 to or from the world is not carried yet).
//     What passes so far is ipv6-not-enabled while a policy revision is in
//     force and a policy isolates the container in that direction (egress
//     from it, ingress to it): IPv6 policy is not enforced yet.
// Link-peer rule (to the container): it passes when the network has icc on,
// or the host itself sent it (ingress_ifindex 0); else icc-disabled.
// Uplinks: from_world drops IPv6 to an address in a network's IPv6 subnet
// (not its gateway) as not-published, passes other IPv6; to_world passes
// IPv6. A header too short to read is left open there (Either).
#include <netinet/in.h>

#include <algorithm>
#include <array>

#include "model_internal.h"

namespace fuzz {
namespace {

using Addr6 = std::array<uint8_t, 16>;

bool is_mld(uint8_t type) { return type == 130 || type == 131 || type == 132 || type == 143; }
bool is_link_message(uint8_t type) { return is_mld(type) || (type >= 133 && type <= 137); }

// The container's link-local address: fe80::/64 with the modified EUI-64
// interface id of its MAC (RFC 4291 appendix A).
Addr6 link_local_of(const Mac& m) {
  return {0xfe, 0x80, 0,    0,    0,    0,    0,   0, uint8_t(m[0] ^ 2),
          m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]};
}

Addr6 addr_at(const Bytes& f, size_t off) {
  Addr6 a{};
  std::copy(f.begin() + long(off), f.begin() + long(off + 16), a.begin());
  return a;
}

bool link_local(const Addr6& a) { return a[0] == 0xfe && (a[1] & 0xc0) == 0x80; }
bool multicast(const Addr6& a) { return a[0] == 0xff; }

// The upper layer of an IPv6 packet after its extension headers (README
// "IPv6"; RFC 8200 4): at most 8 of them, hop-by-hop only first, one
// fragment header; a later fragment ends the chain.
struct Ext6 {
  bool ok = false;
  uint8_t proto = 0;
  size_t l4 = 0;
  bool fragmented = false;
  bool later_fragment = false;
};

Ext6 walk6(const Bytes& f, uint8_t next) {
  auto is_ext = [](uint8_t n) { return n == 0 || n == 43 || n == 44 || n == 51 || n == 60; };
  Ext6 e;
  size_t off = 14 + 40;
  for (int i = 0; i < 8 && is_ext(next) && !e.later_fragment; ++i) {
    if (next == 0 && i > 0) return e;
    if (next == 44) {
      if (e.fragmented || f.size() < off + 8) return e;
      e.fragmented = true;
      e.later_fragment = (get16(f, off + 2) & 0xfff8) != 0;
      next = f[off];
      off += 8;
      continue;
    }
    if (f.size() < off + 2) return e;
    const size_t len = next == 51 ? (size_t(f[off + 1]) + 2) * 4 : (size_t(f[off + 1]) + 1) * 8;
    next = f[off];
    off += len;
  }
  if (is_ext(next) && !e.later_fragment) return e;
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
  const Addr6 src = addr_at(f, 14 + 8);
  const bool unspecified = src == Addr6{};
  const bool own = src == link_local_of(c.att->mac) || (c.att->ip6 && src == *c.att->ip6);
  if (from && !unspecified && !own)
    return drop("spoofed-source",
                "IPv6 source neither its link-local address, its own IPv6 nor ::", true);
  const Ext6 x = walk6(f, f[14 + 6]);
  if (!x.ok || x.l4 > end)
    return drop("ipv6-extension-headers", "extension headers cut, malformed or more than 8", true);
  if (x.proto == IPPROTO_ICMPV6 && !x.later_fragment) {
    if (x.l4 + 4 > end) return drop("invalid-packet", "ICMPv6 header cut short");
    const uint8_t type = f[x.l4];
    if (is_link_message(type)) {
      return link_message(c, type, x.l4, end, x.fragmented);
    }
  }
  return data6(c);
}

std::optional<Verdict> Model::link_peer(const Ctx& c) const {
  if (topo_.nets[c.att->net].icc) return std::nullopt;
  if (c.ingress_ifindex == 0) return std::nullopt;
  return drop("icc-disabled",
              "a link peer (not the host) reaching a container of an icc-off network", true);
}

Verdict Model::link_message(const Ctx& c, uint8_t type, size_t l4, size_t end, bool fragmented) {
  const Bytes& f = c.frame;
  const bool from = c.hook == Hook::FromContainer;
  const uint8_t hop_limit = f[14 + 7];
  // A message that fails these checks from :: is a spoofed one first; what
  // the ND claims then find keeps its own reason (a foreign MAC, a
  // malformed option).
  const bool unspecified = addr_at(f, 14 + 8) == Addr6{};
  const auto refuse = [&](Verdict v) {
    if (!from || !unspecified) return v;
    return drop("spoofed-source", "a link message from :: that is dropped: " + v.rule, true);
  };
  if ((type == 133 || type == 135 || type == 136) && hop_limit != 255)
    return refuse(drop("invalid-packet", "RS/NS/NA with hop limit != 255"));
  // MLD comes from a link-local source (or :: for reports): routers do not
  // forward those, so one from any other address crossed networks.
  const Addr6 src = addr_at(f, 14 + 8);
  const bool link_local_src = src[0] == 0xfe && (src[1] & 0xc0) == 0x80;
  if (is_mld(type) && !link_local_src && !unspecified)
    return drop("invalid-packet", "MLD from a source neither link-local nor ::", true);
  if (type == 134 || type == 137) {
    if (from) return refuse(drop("router-advertisement", "RA or redirect from a container"));
    if (hop_limit != 255) return drop("invalid-packet", "RA/redirect with hop limit != 255");
  }
  if (fragmented)
    return refuse(
        drop("invalid-packet", "a link message with a fragment header (RFC 6980)", true));
  if (from) return nd_claims(c, type, l4, end);
  if (auto v = link_peer(c)) {
    v->rule = "link message: " + v->rule;
    return *v;
  }
  return pass_as_is(f,
                    is_mld(type) ? "MLD to the container" : "neighbour discovery to the container");
}

Verdict Model::nd_claims(const Ctx& c, uint8_t type, size_t l4, size_t end) {
  const Bytes& f = c.frame;
  const bool unspecified = addr_at(f, 14 + 8) == Addr6{};
  if (l4 + 8 > end) return either("ND/MLD message shorter than 8 bytes");
  switch (type) {
    case 133:
      return nd_options(f, l4 + 8, end, 1, c.att->mac);
    case 135:
      return nd_options(f, l4 + 24, end, 1, c.att->mac);
    case 136:
      if (unspecified) return drop("spoofed-source", "NA from ::", true);
      if (l4 + 24 > end) return drop("invalid-packet", "NA target cut short", true);
      // Its own addresses: the link-local one, and on a dual-stack network
      // its IPv6 address, which neighbours must be able to resolve.
      if (addr_at(f, l4 + 8) != link_local_of(c.att->mac) &&
          !(c.att->ip6 && addr_at(f, l4 + 8) == *c.att->ip6))
        return drop("spoofed-source", "NA for an address not the container's own", true);
      return nd_options(f, l4 + 24, end, 2, c.att->mac);
    case 131:
    case 132:
    case 143:
      if (f[14 + 7] != 1) return either("MLD report with hop limit != 1");
      return pass_as_is(f, "MLD report");
    default:  // 130, a query
      if (unspecified) return drop("spoofed-source", "MLD query from ::", true);
      return pass_as_is(f, "MLD query");
  }
}

Verdict Model::data6(const Ctx& c) {
  const Bytes& f = c.frame;
  const bool from = c.hook == Hook::FromContainer;
  if (from && addr_at(f, 14 + 8) == Addr6{})
    return drop("spoofed-source", "IPv6 data from ::", true);
  if (!c.att->ip6) return drop("ipv6-not-enabled", "IPv6 data, the attachment has no IPv6 address");
  const Addr6 peer = addr_at(f, from ? 14 + 24 : 14 + 8);
  const NetInfo& own = topo_.nets[c.att->net];
  std::string rule;
  if (link_local(peer) || multicast(peer)) {
    if (!from)
      if (auto v = link_peer(c)) {
        v->rule = "IPv6 data from a link-local/multicast source: " + v->rule;
        return *v;
      }
    rule = "IPv6 data with a link-local or multicast peer";
  } else {
    const AddrClass k = topo_.classify6(peer);
    switch (k.kind) {
      case AddrKind::Gateway:
        if (own.internal && k.net != c.att->net)
          return drop("internal-network",
                      "IPv6: an internal network's container and another gateway", true);
        rule = "IPv6 data with a gateway";
        break;
      case AddrKind::Subnet:
        if (k.net != c.att->net)
          return drop("network-isolation", "IPv6 peer in another network's subnet", true);
        if (!own.icc) return drop("icc-disabled", "IPv6 peer in the own subnet, icc off", true);
        rule = "IPv6 data within the network";
        break;
      case AddrKind::Host:
      case AddrKind::World:
        if (own.internal)
          return drop("internal-network", "IPv6: an internal network's container and beyond", true);
        return drop("ipv6-not-enabled", "IPv6 with the world is not carried yet", true);
    }
  }
  if (st_.rev != 0 && judge().isolates(c.att->container, from ? moat::PolicyDirection::egress
                                                              : moat::PolicyDirection::ingress))
    return drop("ipv6-not-enabled",
                "IPv6 of a container a policy isolates in this direction (" + rule + ")", true);
  return pass_as_is(f, rule);
}

Verdict Model::ipv6_uplink(const Ctx& c) {
  const Bytes& f = c.frame;
  if (f.size() < 14 + 40 || f[14] >> 4 != 6) return either("malformed IPv6 header at an uplink");
  if (c.hook == Hook::ToWorld) return pass_as_is(f, "IPv6 towards the world: the host's business");
  const AddrClass k = topo_.classify6(addr_at(f, 14 + 24));
  if (k.kind == AddrKind::Subnet)
    return drop("not-published", "IPv6 from the world to a container network's subnet", true);
  return pass_as_is(f, "IPv6 from the world to the host or beyond");
}

}  // namespace fuzz
