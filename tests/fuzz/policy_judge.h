// policy_judge.h - the model's segmentation-policy semantics, read from the
// policy objects (Kubernetes NetworkPolicy plus moat's deny rules and host
// peer), independently of the compiler and of the kernel's identities:
//  - a container selected by a policy isolating a direction is default-deny
//    there; allows are the union of the isolating policies' rules;
//  - a matching deny rule of any selecting policy wins over every allow;
//  - peers: pod/namespace selectors (both = AND; a podSelector alone means
//    the policy's namespace), {"host": true} (gateways, uplink addresses,
//    127.0.0.0/8), ipBlock cidr minus except, which matches any address in
//    it, containers' and the host's too (the rule landing with issue 13;
//    README still says it never matches them);
//  - IPv6 (dual-stack): a side with an IPv6 address is an IPv6 peer. A
//    container's IPv6 address is that container, and ipBlocks judge that
//    address, never its IPv4 one (nor IPv4 flows by its IPv6 one); a
//    network's IPv6 gateway is the host; any other IPv6 address is the IPv6
//    world, which IPv4 ipBlocks (0.0.0.0/0 included) never match and IPv6
//    ones (::/0 included) match by address;
//  - ports: protocol, port, endPort; no ports = every port and protocol.
// A flow passes when the source container's egress and the destination
// container's ingress both allow it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "topology.h"

namespace fuzz {

// One end of a flow: a container (by index in cfg.containers) or not, and its address.
struct Side {
  Side() = default;
  Side(std::optional<size_t> c, uint32_t a, std::optional<Ip6Addr> a6 = std::nullopt)
      : container(c), ip(a), ip6(a6) {}
  std::optional<size_t> container;
  uint32_t ip = 0;
  std::optional<Ip6Addr> ip6;  // an IPv6 peer: `ip` unused
};

struct PolicyDecision {
  bool allowed = true;
  std::string reason;  // "policy-deny" or "policy-default-deny" when not allowed
  std::string why;     // which side and which policy
  // The answer differs from README's "ipBlock never matches containers or
  // the host": the ipBlock rule of issue 13 decided it.
  bool ipblock_rule = false;
};

class PolicyJudge {
 public:
  // `cfg` carries the policies in force (a variant's); `topo` classifies addresses.
  PolicyJudge(const Topology& topo, const moat::Config& cfg) : topo_(topo), cfg_(cfg) {}

  bool active() const { return !cfg_.policies.empty(); }
  // Egress of `from` (if a container) and ingress of `to` (if a container).
  PolicyDecision judge(const Side& from, const Side& to, uint8_t proto, uint16_t port) const;
  // Ports that tell every rule apart (each rule's bounds and their
  // neighbours): a verdict that is the same for all of them is the same for
  // every port.
  std::vector<uint16_t> telling_ports() const;
  // One of the two only.
  PolicyDecision egress(const Side& from, const Side& to, uint8_t proto, uint16_t port) const;
  PolicyDecision ingress(const Side& from, const Side& to, uint8_t proto, uint16_t port) const;
  // Whether a policy selecting container `c` isolates it in direction `d`.
  bool isolates(size_t c, moat::PolicyDirection d) const;

 private:
  struct Ends {
    bool egress, ingress;
  };
  PolicyDecision decide(const Side& from, const Side& to, uint8_t proto, uint16_t port,
                        Ends ends) const;
  PolicyDecision judge_with(const Side& from, const Side& to, uint8_t proto, uint16_t port,
                            Ends ends, bool ipblock_matches_all) const;
  const Topology& topo_;
  const moat::Config& cfg_;
};

}  // namespace fuzz
