// policy_judge.cpp - the semantics described in policy_judge.h.
#include "policy_judge.h"

#include <algorithm>

#include "policy/policy.h"

namespace fuzz {
namespace {

using moat::Policy;
using moat::PolicyDirection;
using moat::PolicyPeer;
using moat::PolicyRule;

// README: a rule's ICMP covers ICMPv6 on IPv6 flows.
bool port_matches(const moat::PolicyPort& p, uint8_t proto, uint16_t port) {
  if (p.protocol == moat::Protocol::icmp) return proto == 1 || proto == 58;
  if (moat::ip_protocol_number(p.protocol) != proto) return false;
  if (p.port == 0 || proto == 1) return true;
  const uint16_t last = p.end_port ? p.end_port : p.port;
  return port >= p.port && port <= last;
}

struct Matcher {
  const Topology& topo;
  const moat::Config& cfg;
  bool ipblock_matches_all;

  // A prefix matches addresses of its own family only.
  static bool in(const moat::IpPrefix& p, const Side& s) {
    if (s.ip6) {
      const auto* v6 = std::get_if<moat::Ipv6Prefix>(&p);
      return v6 && v6->contains(moat::Ipv6{*s.ip6});
    }
    const auto* v4 = std::get_if<moat::Ipv4Prefix>(&p);
    return v4 && v4->contains(moat::Ipv4{s.ip});
  }

  bool host(const Side& s) const {
    if (!s.ip6) return topo.is_host(s.ip, true);
    if (*s.ip6 == ip6_from_text("::1")) return true;
    const AddrClass k = topo.classify6(*s.ip6);
    return k.kind == AddrKind::Gateway;
  }

  bool peer(const Policy& pol, const PolicyPeer& p, const Side& s) const {
    switch (p.kind) {
      case PolicyPeer::Kind::host:
        return !s.container && host(s);
      case PolicyPeer::Kind::ip_block: {
        if (!ipblock_matches_all && (s.container || host(s))) return false;
        if (!in(p.ip_block.cidr, s)) return false;
        return std::none_of(p.ip_block.except.begin(), p.ip_block.except.end(),
                            [&](const moat::IpPrefix& e) { return in(e, s); });
      }
      case PolicyPeer::Kind::pods:
        break;
    }
    if (!s.container) return false;
    const moat::Container& c = cfg.containers[*s.container];
    const bool ns_ok = p.has_namespace_selector
                           ? p.namespace_selector.matches(moat::namespace_labels(cfg, c.ns))
                           : c.ns == pol.ns;
    return ns_ok && (!p.has_pod_selector || p.pod_selector.matches(c.labels));
  }

  bool rule(const Policy& pol, const PolicyRule& r, const Side& peer_side, uint8_t proto,
            uint16_t port) const {
    const bool ports = r.ports.empty() ||
                       std::any_of(r.ports.begin(), r.ports.end(), [&](const moat::PolicyPort& p) {
                         return port_matches(p, proto, port);
                       });
    if (!ports) return false;
    return r.peers.empty() || std::any_of(r.peers.begin(), r.peers.end(), [&](const PolicyPeer& p) {
             return peer(pol, p, peer_side);
           });
  }

  // One direction for container `subject`: "" when allowed, else the reason.
  std::string direction(size_t subject, PolicyDirection d, const Side& peer_side, uint8_t proto,
                        uint16_t port, std::string* why) const {
    const moat::Container& c = cfg.containers[subject];
    bool isolated = false, allowed = false;
    for (const Policy& p : cfg.policies) {
      if (p.ns != c.ns || !p.pod_selector.matches(c.labels)) continue;
      for (const PolicyRule& r : p.rules(d)) {
        if (!rule(p, r, peer_side, proto, port)) continue;
        if (r.action == moat::PolicyAction::deny) {
          *why = c.name + " " + moat::to_string(d) + ": denied by " + p.id();
          return "policy-deny";
        }
        if (p.isolates(d)) allowed = true;
      }
      isolated = isolated || p.isolates(d);
    }
    if (!isolated || allowed) return "";
    *why = c.name + " " + moat::to_string(d) + ": isolated, allowed by no rule";
    return "policy-default-deny";
  }
};

}  // namespace

PolicyDecision PolicyJudge::judge_with(const Side& from, const Side& to, uint8_t proto,
                                       uint16_t port, Ends ends, bool ipblock_matches_all) const {
  PolicyDecision d;
  if (!active()) return d;
  const Matcher m{topo_, cfg_, ipblock_matches_all};
  if (ends.egress && from.container)
    d.reason = m.direction(*from.container, PolicyDirection::egress, to, proto, port, &d.why);
  if (ends.ingress && d.reason.empty() && to.container)
    d.reason = m.direction(*to.container, PolicyDirection::ingress, from, proto, port, &d.why);
  d.allowed = d.reason.empty();
  return d;
}

PolicyDecision PolicyJudge::decide(const Side& from, const Side& to, uint8_t proto, uint16_t port,
                                   Ends ends) const {
  PolicyDecision now = judge_with(from, to, proto, port, ends, true);
  const PolicyDecision readme = judge_with(from, to, proto, port, ends, false);
  now.ipblock_rule = now.allowed != readme.allowed;
  return now;
}

std::vector<uint16_t> PolicyJudge::telling_ports() const {
  std::vector<uint16_t> out = {0, 1, 65535};
  for (const Policy& p : cfg_.policies)
    for (PolicyDirection d : {PolicyDirection::ingress, PolicyDirection::egress})
      for (const PolicyRule& r : p.rules(d))
        for (const moat::PolicyPort& pp : r.ports) {
          const uint16_t last = pp.end_port ? pp.end_port : pp.port;
          for (int v : {pp.port - 1, int(pp.port), int(last), last + 1})
            if (v >= 0 && v <= 65535) out.push_back(uint16_t(v));
        }
  return out;
}

bool PolicyJudge::isolates(size_t c, moat::PolicyDirection d) const {
  const moat::Container& ctr = cfg_.containers[c];
  return std::any_of(cfg_.policies.begin(), cfg_.policies.end(), [&](const Policy& p) {
    return p.ns == ctr.ns && p.pod_selector.matches(ctr.labels) && p.isolates(d);
  });
}

PolicyDecision PolicyJudge::judge(const Side& from, const Side& to, uint8_t proto,
                                  uint16_t port) const {
  return decide(from, to, proto, port, {true, true});
}

PolicyDecision PolicyJudge::egress(const Side& from, const Side& to, uint8_t proto,
                                   uint16_t port) const {
  return decide(from, to, proto, port, {true, false});
}

PolicyDecision PolicyJudge::ingress(const Side& from, const Side& to, uint8_t proto,
                                    uint16_t port) const {
  return decide(from, to, proto, port, {false, true});
}

}  // namespace fuzz
