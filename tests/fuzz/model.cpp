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
//  - IPv6: model_ip6.cpp;
//  - uplinks judge IPv4 and IPv6 (model_ip6.cpp) only; what they do with
//    other frames, or with a malformed IPv4 header, README leaves open (Either).
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
  if (c.uplink)
    return type == kEthIp    ? ipv4(c)
           : type == kEthIp6 ? ipv6_uplink(c)
                             : either("neither IPv4 nor IPv6 at an uplink");
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

}  // namespace fuzz
