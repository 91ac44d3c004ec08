// evaluate.cpp - two independent judges of one flow, for `moat explain` and
// the tests that cross-check the compiler: evaluate_model() reads the policy
// objects and selectors directly (no identities, no map entries);
// evaluate_compiled() does exactly what the kernel does with a PolicyPlan.
// Also resolve_endpoint(), which turns what the user typed into a side.
#include <netinet/in.h>

#include <algorithm>
#include <type_traits>
#include <variant>

#include "policy/internal.h"
#include "policy/policy.h"

namespace moat {
namespace {

// ---------------------------------------------------------------------------
// Endpoints

bool is_host_address(const Config& cfg, Ipv4 ip, const std::vector<Ipv4>& host_addresses) {
  if ((ip.value >> 24) == 127) return true;
  for (const Network& n : cfg.networks) {
    if (n.gateway == ip) return true;
  }
  return std::find(host_addresses.begin(), host_addresses.end(), ip) != host_addresses.end();
}

bool is_host_address(const Config& cfg, const Ipv6& ip) {
  if (ip == *Ipv6::parse("::1")) return true;
  return std::any_of(cfg.networks.begin(), cfg.networks.end(),
                     [&](const Network& n) { return n.subnet6 && n.gateway6 == ip; });
}

// An attachment as a side: both its addresses; `v6` tells which one the
// flow uses (and ipBlocks judge).
PolicyEndpoint attachment_endpoint(const Container& c, const Attachment& a, bool v6) {
  return {PolicyEndpoint::Kind::container, c.name, a.ip, a.ip6, v6};
}

PolicyEndpoint classify(const Config& cfg, Ipv4 ip, const std::vector<Ipv4>& host_addresses) {
  for (const Container& c : cfg.containers) {
    for (const Attachment& a : c.networks) {
      if (a.ip == ip) return attachment_endpoint(c, a, false);
    }
  }
  auto kind = is_host_address(cfg, ip, host_addresses) ? PolicyEndpoint::Kind::host
                                                       : PolicyEndpoint::Kind::address;
  return {kind, "", ip, std::nullopt, false};
}

PolicyEndpoint classify(const Config& cfg, const Ipv6& ip) {
  for (const Container& c : cfg.containers) {
    for (const Attachment& a : c.networks) {
      if (a.ip6 == ip) return attachment_endpoint(c, a, true);
    }
  }
  auto kind = is_host_address(cfg, ip) ? PolicyEndpoint::Kind::host : PolicyEndpoint::Kind::address;
  return {kind, "", Ipv4{}, ip, true};
}

// The first of a few documentation addresses no policy CIDR covers.
Result<PolicyEndpoint> world_endpoint(const Config& cfg, const std::vector<Ipv4>& host_addresses) {
  std::vector<Ipv4Prefix> prefixes;
  for_each_ip_block(cfg, [&](const IpBlock& b) {
    const auto* cidr = std::get_if<Ipv4Prefix>(&b.cidr);
    if (!cidr || cidr->len == 0) return;
    prefixes.push_back(*cidr);
    for (const auto& e : b.except) prefixes.push_back(std::get<Ipv4Prefix>(e));
  });
  for (const char* candidate : {"203.0.113.7", "198.51.100.7", "192.0.2.7", "100.64.0.7", "8.8.8.8",
                                "1.1.1.1", "9.9.9.9"}) {
    Ipv4 ip = *Ipv4::parse(candidate);
    bool covered = std::any_of(prefixes.begin(), prefixes.end(),
                               [&](const Ipv4Prefix& p) { return p.contains(ip); });
    if (!covered && classify(cfg, ip, host_addresses).kind == PolicyEndpoint::Kind::address)
      return PolicyEndpoint{PolicyEndpoint::Kind::address, "", ip, std::nullopt, false};
  }
  return fail(
      "no address is left that no policy CIDR covers; give an address instead of \"world\"");
}

// "NAME" or "NAME@NETWORK".
Result<PolicyEndpoint> container_endpoint(const Config& cfg, const std::string& s) {
  std::string name = s, network;
  if (size_t at = s.find('@'); at != std::string::npos) {
    name = s.substr(0, at);
    network = s.substr(at + 1);
  }
  const Container* c = cfg.find_container(name);
  if (!c) {
    std::vector<std::string> names;
    for (const Container& x : cfg.containers) names.push_back(x.name);
    std::string best = closest_match(name, names);
    return fail("unknown endpoint " + quoted(s) +
                (best.empty() ? "" : " (did you mean " + quoted(best) + "?)") +
                ": use a container name, NAME@NETWORK, host, world or an IPv4 or IPv6 address");
  }
  for (const Attachment& a : c->networks) {
    if (network.empty() || a.network == network) return attachment_endpoint(*c, a, false);
  }
  if (network.empty()) return fail("container " + quoted(name) + " has no network attachment");
  return fail("container " + quoted(name) + " is not attached to network " + quoted(network));
}

// ---------------------------------------------------------------------------
// The model evaluator

// A rule's ICMP is ICMPv6 on an IPv6 flow.
bool port_matches(const PolicyPort& p, uint8_t proto, uint16_t port) {
  if (p.protocol == Protocol::icmp) return proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6;
  if (ip_protocol_number(p.protocol) != proto) return false;
  if (p.port == 0) return true;
  uint16_t last = p.end_port != 0 ? p.end_port : p.port;
  return port >= p.port && port <= last;
}

bool rule_ports_match(const PolicyRule& r, uint8_t proto, uint16_t port) {
  return r.ports.empty() || std::any_of(r.ports.begin(), r.ports.end(), [&](const PolicyPort& p) {
           return port_matches(p, proto, port);
         });
}

// Whether `a` is in the block's cidr and outside its excepts; never across
// families.
template <class A>
bool block_holds(const IpBlock& b, const A& a) {
  using P = std::conditional_t<std::is_same_v<A, Ipv4>, Ipv4Prefix, Ipv6Prefix>;
  const P* cidr = std::get_if<P>(&b.cidr);
  if (!cidr || !cidr->contains(a)) return false;
  return std::none_of(b.except.begin(), b.except.end(),
                      [&](const IpPrefix& e) { return std::get<P>(e).contains(a); });
}

bool peer_matches(const Config& cfg, const Policy& pol, const PolicyPeer& peer,
                  const PolicyEndpoint& ep) {
  switch (peer.kind) {
    case PolicyPeer::Kind::host:
      return ep.kind == PolicyEndpoint::Kind::host;
    case PolicyPeer::Kind::ip_block: {
      // By the address the flow uses alone, whoever holds it (a container,
      // the host or not): its IPv6 one in an IPv6 flow, its IPv4 one
      // otherwise, as Kubernetes matches an ipBlock against the packet.
      const IpBlock& b = peer.ip_block;
      return ep.v6 ? ep.ip6 && block_holds(b, *ep.ip6) : block_holds(b, ep.ip);
    }
    case PolicyPeer::Kind::pods:
      break;
  }
  if (ep.kind != PolicyEndpoint::Kind::container) return false;
  const Container* c = cfg.find_container(ep.container);
  if (!c) return false;
  return peer_selects(cfg, pol, peer, c->ns, c->labels);
}

bool rule_matches(const Config& cfg, const Policy& pol, const PolicyRule& r,
                  const PolicyEndpoint& peer, uint8_t proto, uint16_t port) {
  if (!rule_ports_match(r, proto, port)) return false;
  return r.peers.empty() || std::any_of(r.peers.begin(), r.peers.end(), [&](const PolicyPeer& p) {
           return peer_matches(cfg, pol, p, peer);
         });
}

// One direction of one flow, seen from the policies selecting `subject`.
class ModelJudge {
 public:
  ModelJudge(const Config& cfg, const Container& subject, PolicyDirection d,
             const PolicyEndpoint& peer, uint8_t proto, uint16_t port)
      : cfg_(cfg), subject_(subject), d_(d), peer_(peer), proto_(proto), port_(port) {
    int next_id = 0;
    for (size_t i = 0; i < cfg.policies.size(); ++i) {
      const Policy& p = cfg.policies[i];
      if (policy_selects(p, subject)) selecting_.push_back({i, next_id});
      next_id += static_cast<int>(p.ingress.size() + p.egress.size());
    }
  }

  DirectionVerdict judge(const std::vector<RuleInfo>& table) const {
    DirectionVerdict v;
    v.applies = true;
    // Explicit denies win, whatever policy they come from.
    if (int id = first_match(PolicyAction::deny, false); id >= 0) {
      return decided(v, PolicyOutcome::denied, id, "denied by " + table[id].text);
    }
    const std::string dir = to_string(d_);
    std::vector<std::string> isolating;
    for (const Selecting& s : selecting_) {
      if (cfg_.policies[s.policy].isolates(d_)) isolating.push_back(cfg_.policies[s.policy].id());
    }
    if (isolating.empty()) {
      v.outcome = PolicyOutcome::not_isolated;
      v.text = selecting_.empty() ? "no policy selects " + subject_.name + " for " + dir
                                  : subject_.name + " is not isolated for " + dir +
                                        ": the policies selecting it (" +
                                        cfg_.policies[selecting_.front().policy].id() +
                                        "...) have no " + dir + " allow rules";
      return v;
    }
    if (int id = first_match(PolicyAction::allow, true); id >= 0) {
      return decided(v, PolicyOutcome::allowed, id, "allowed by " + table[id].text);
    }
    v.outcome = PolicyOutcome::default_denied;
    v.text = "default deny: " + subject_.name + " is selected for " + dir + " by " +
             join(isolating, ", ") + ", allowed by none";
    return v;
  }

 private:
  struct Selecting {
    size_t policy;   // index in cfg.policies
    int first_rule;  // its first rule id
  };

  static DirectionVerdict decided(DirectionVerdict v, PolicyOutcome outcome, int id,
                                  std::string text) {
    v.outcome = outcome;
    v.rule_id = id;
    v.text = std::move(text);
    return v;
  }

  // The rule id of the first matching rule with `action` of the selecting
  // policies (only those isolating the direction, if asked), or -1.
  int first_match(PolicyAction action, bool isolating_only) const {
    for (const Selecting& s : selecting_) {
      const Policy& p = cfg_.policies[s.policy];
      if (isolating_only && !p.isolates(d_)) continue;
      const auto& rules = p.rules(d_);
      for (size_t r = 0; r < rules.size(); ++r) {
        if (rules[r].action != action) continue;
        if (!rule_matches(cfg_, p, rules[r], peer_, proto_, port_)) continue;
        size_t before = d_ == PolicyDirection::egress ? p.ingress.size() : 0;
        return s.first_rule + static_cast<int>(before + r);
      }
    }
    return -1;
  }

  const Config& cfg_;
  const Container& subject_;
  PolicyDirection d_;
  const PolicyEndpoint& peer_;
  uint8_t proto_;
  uint16_t port_;
  std::vector<Selecting> selecting_;
};

// ---------------------------------------------------------------------------
// The kernel's view

Ipv4Prefix prefix_of(const moat_lpm_v4_key& key) {
  return {Ipv4{ntohl(key.addr)}, static_cast<uint8_t>(key.prefixlen)};
}

Ipv6Prefix prefix_of(const moat_lpm_v6_key& key) {
  Ipv6Prefix p;
  std::copy(std::begin(key.addr.b), std::end(key.addr.b), p.addr.bytes.begin());
  p.len = static_cast<uint8_t>(key.prefixlen);
  return p;
}

// A longest-prefix match over one family's entries.
template <class Key, class A>
moat_ipcache_val lookup_ip(const std::vector<std::pair<Key, moat_ipcache_val>>& ipcache,
                           const A& ip) {
  moat_ipcache_val best{MOAT_ID_WORLD, 0};
  int best_len = -1;
  for (const auto& [key, val] : ipcache) {
    if (static_cast<int>(key.prefixlen) > best_len && prefix_of(key).contains(ip)) {
      best = val;
      best_len = static_cast<int>(key.prefixlen);
    }
  }
  return best;
}

std::string identity_name(const PolicyPlan& plan, uint32_t id) {
  auto it = plan.identity_names.find(id);
  return it == plan.identity_names.end() ? "identity " + std::to_string(id) : it->second;
}

// The entry the kernel's six lookups hit first, if any.
const moat_policy_val* first_entry(const PolicyPlan& plan, uint32_t subject, uint32_t peer,
                                   PolicyDirection d, uint8_t proto, uint16_t port) {
  const std::tuple<uint32_t, uint8_t, uint16_t> probes[] = {
      {peer, proto, port},        {peer, proto, 0},        {peer, 0, 0},
      {MOAT_ID_ANY, proto, port}, {MOAT_ID_ANY, proto, 0}, {MOAT_ID_ANY, 0, 0}};
  for (const auto& [p, x, n] : probes) {
    moat_policy_key key{};
    key.subject = subject;
    key.peer = p;
    key.dir = abi_dir(d);
    key.proto = x;
    key.port = htons(n);
    auto it = std::lower_bound(
        plan.entries.begin(), plan.entries.end(), key,
        [](const auto& e, const moat_policy_key& k) { return key_less(e.first, k); });
    if (it != plan.entries.end() && key_equal(it->first, key)) return &it->second;
  }
  return nullptr;
}

DirectionVerdict judge_compiled(const PolicyPlan& plan, uint32_t subject, bool isolated,
                                uint32_t peer, PolicyDirection d, uint8_t proto, uint16_t port) {
  DirectionVerdict v;
  v.applies = true;
  if (const moat_policy_val* entry = first_entry(plan, subject, peer, d, proto, port)) {
    v.rule_id = static_cast<int>(entry->rule_id);
    std::string rule = v.rule_id < static_cast<int>(plan.rules.size())
                           ? plan.rules[v.rule_id].text
                           : "rule " + std::to_string(v.rule_id);
    if (entry->action == MOAT_POLICY_DENY) {
      v.outcome = PolicyOutcome::denied;
      v.text = "denied by " + rule;
    } else {
      v.outcome = PolicyOutcome::allowed;
      v.text = "allowed by " + rule;
    }
    return v;
  }
  const std::string who = identity_name(plan, subject);
  if (isolated) {
    v.outcome = PolicyOutcome::default_denied;
    v.text = "default deny: " + who + " is isolated for " + to_string(d) + " and no entry allows " +
             identity_name(plan, peer);
  } else {
    v.outcome = PolicyOutcome::not_isolated;
    v.text = who + " is not isolated for " + to_string(d);
  }
  return v;
}

// ---------------------------------------------------------------------------
// Both

// "allowed; egress: ...; ingress: ...".
std::string verdict_text(const PolicyVerdict& v) {
  std::vector<std::string> parts;
  if (v.egress.applies) parts.push_back("egress: " + v.egress.text);
  if (v.ingress.applies) parts.push_back("ingress: " + v.ingress.text);
  if (parts.empty()) return "allowed: neither side is a container, so no policy applies";
  bool allowed = v.egress.allowed() && v.ingress.allowed();
  return (allowed ? "allowed; " : "denied; ") + join(parts, "; ");
}

// What an evaluator concludes from its two directions: the flow passes when
// both allow it, and the side that denies first (egress, as in the kernel)
// gives the drop reason.
PolicyVerdict conclude(PolicyVerdict verdict) {
  verdict.text = verdict_text(verdict);
  verdict.allowed = verdict.egress.allowed() && verdict.ingress.allowed();
  const DirectionVerdict& first = !verdict.egress.allowed() ? verdict.egress : verdict.ingress;
  if (first.outcome == PolicyOutcome::denied) verdict.drop_reason = -MOAT_DROP_POLICY_DENY;
  if (first.outcome == PolicyOutcome::default_denied)
    verdict.drop_reason = -MOAT_DROP_POLICY_DEFAULT_DENY;
  return verdict;
}

}  // namespace

std::string PolicyEndpoint::str() const {
  const std::string addr = v6 && ip6 ? ip6->str() : ip.str();
  switch (kind) {
    case Kind::container:
      return container + " (" + addr + ")";
    case Kind::host:
      return "the host (" + addr + ")";
    case Kind::address:
      return addr;
  }
  return addr;
}

Result<PolicyEndpoint> resolve_endpoint(const Config& cfg, std::string_view text,
                                        const std::vector<Ipv4>& host_addresses) {
  std::string s(text);
  if (s == "host") {
    Ipv4 ip = cfg.networks.empty() ? Ipv4{0x7f000001} : cfg.networks.front().gateway;
    return PolicyEndpoint{PolicyEndpoint::Kind::host, "", ip, std::nullopt, false};
  }
  if (s == "world") return world_endpoint(cfg, host_addresses);
  if (auto ip = Ipv4::parse(s)) return classify(cfg, *ip, host_addresses);
  if (auto prefix = Ipv4Prefix::parse(s)) return classify(cfg, prefix->addr, host_addresses);
  if (auto ip = Ipv6::parse(s)) return classify(cfg, *ip);
  if (auto prefix = Ipv6Prefix::parse(s)) return classify(cfg, prefix->addr);
  return container_endpoint(cfg, s);
}

Result<PolicyEndpoint> ipv6_endpoint(const Config& cfg, const PolicyEndpoint& ep) {
  if (ep.v6) return ep;
  switch (ep.kind) {
    case PolicyEndpoint::Kind::container: {
      if (!ep.ip6) return fail(ep.str() + " has no IPv6 address, and the other side is IPv6");
      PolicyEndpoint out = ep;
      out.v6 = true;
      return out;
    }
    case PolicyEndpoint::Kind::host:
      for (const Network& n : cfg.networks)
        if (n.subnet6) return PolicyEndpoint{PolicyEndpoint::Kind::host, "", {}, n.gateway6, true};
      return PolicyEndpoint{PolicyEndpoint::Kind::host, "", {}, *Ipv6::parse("::1"), true};
    case PolicyEndpoint::Kind::address:
      break;
  }
  return fail(ep.str() + " is an IPv4 address and the other side is IPv6; give both of one family");
}

PolicyVerdict evaluate_model(const Config& cfg, const PolicyEndpoint& from,
                             const PolicyEndpoint& to, uint8_t proto, uint16_t port) {
  PolicyVerdict verdict;
  if (cfg.policies.empty()) {  // the kernel skips policy entirely
    verdict.text = "allowed: no policies";
    return verdict;
  }
  std::vector<RuleInfo> table = policy_rule_table(cfg);
  if (from.kind == PolicyEndpoint::Kind::container) {
    if (const Container* c = cfg.find_container(from.container))
      verdict.egress = ModelJudge(cfg, *c, PolicyDirection::egress, to, proto, port).judge(table);
  }
  if (to.kind == PolicyEndpoint::Kind::container) {
    if (const Container* c = cfg.find_container(to.container))
      verdict.ingress =
          ModelJudge(cfg, *c, PolicyDirection::ingress, from, proto, port).judge(table);
  }
  return conclude(std::move(verdict));
}

namespace {

PolicyVerdict evaluate_identities(const PolicyPlan& plan, moat_ipcache_val s, moat_ipcache_val t,
                                  uint8_t proto, uint16_t port) {
  PolicyVerdict verdict;
  if (s.flags & MOAT_ID_F_CONTAINER)
    verdict.egress = judge_compiled(plan, s.identity, s.flags & MOAT_ID_F_EGRESS_ISOLATED,
                                    t.identity, PolicyDirection::egress, proto, port);
  if (t.flags & MOAT_ID_F_CONTAINER)
    verdict.ingress = judge_compiled(plan, t.identity, t.flags & MOAT_ID_F_INGRESS_ISOLATED,
                                     s.identity, PolicyDirection::ingress, proto, port);
  return conclude(std::move(verdict));
}

template <class A>
PolicyVerdict evaluate_family(const PolicyPlan& plan, const A& src, const A& dst, uint8_t proto,
                              uint16_t port) {
  if (!plan.active) {
    PolicyVerdict verdict;
    verdict.text = "allowed: no policies";
    return verdict;
  }
  const auto& ipcache = [&]() -> const auto& {
    if constexpr (std::is_same_v<A, Ipv4>)
      return plan.ipcache;
    else
      return plan.ipcache6;
  }
  ();
  return evaluate_identities(plan, lookup_ip(ipcache, src), lookup_ip(ipcache, dst), proto, port);
}

}  // namespace

PolicyVerdict evaluate_compiled(const PolicyPlan& plan, Ipv4 src, Ipv4 dst, uint8_t proto,
                                uint16_t port) {
  return evaluate_family(plan, src, dst, proto, port);
}

PolicyVerdict evaluate_compiled(const PolicyPlan& plan, const Ipv6& src, const Ipv6& dst,
                                uint8_t proto, uint16_t port) {
  return evaluate_family(plan, src, dst, proto, port);
}

PolicyVerdict evaluate_compiled(const PolicyPlan& plan, const PolicyEndpoint& from,
                                const PolicyEndpoint& to, uint8_t proto, uint16_t port) {
  if (from.v6 && to.v6) return evaluate_compiled(plan, *from.ip6, *to.ip6, proto, port);
  return evaluate_compiled(plan, from.ip, to.ip, proto, port);
}

}  // namespace moat
