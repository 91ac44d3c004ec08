// policy.cpp - the policy model: selectors, text, namespaces, merging policy
// files, the rule table, endpoints, and evaluate_model(), which judges a flow
// from the policy objects directly (no identities, no map entries) so that
// the compiler can be tested against it.
#include "policy/policy.h"

#include <netinet/in.h>

#include <algorithm>
#include <set>

namespace moat {
namespace {

constexpr const char* kNamespaceLabel = "kubernetes.io/metadata.name";

std::string join(const std::vector<std::string>& parts, const char* sep) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : sep) + p;
  return out;
}

std::string quoted(const std::string& s) { return "\"" + s + "\""; }

}  // namespace

// ---------------------------------------------------------------------------
// Values

bool LabelSelector::matches(const Labels& labels) const {
  for (const auto& [k, v] : match_labels) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  for (const SelectorRequirement& r : match_expressions) {
    auto it = labels.find(r.key);
    bool has = it != labels.end();
    bool listed = has && std::find(r.values.begin(), r.values.end(), it->second) != r.values.end();
    switch (r.op) {
      case SelectorOp::in: if (!listed) return false; break;
      case SelectorOp::not_in: if (listed) return false; break;
      case SelectorOp::exists: if (!has) return false; break;
      case SelectorOp::does_not_exist: if (has) return false; break;
    }
  }
  return true;
}

std::string LabelSelector::str() const {
  std::vector<std::string> parts;
  for (const auto& [k, v] : match_labels) parts.push_back(k + "=" + v);
  for (const SelectorRequirement& r : match_expressions) {
    switch (r.op) {
      case SelectorOp::in: parts.push_back(r.key + " in (" + join(r.values, ",") + ")"); break;
      case SelectorOp::not_in: parts.push_back(r.key + " notin (" + join(r.values, ",") + ")"); break;
      case SelectorOp::exists: parts.push_back(r.key); break;
      case SelectorOp::does_not_exist: parts.push_back("!" + r.key); break;
    }
  }
  return "{" + join(parts, ",") + "}";
}

std::string PolicyPeer::str() const {
  switch (kind) {
    case Kind::host: return "the host";
    case Kind::ip_block: {
      std::string s = ip_block.cidr.str();
      std::vector<std::string> ex;
      for (const auto& e : ip_block.except) ex.push_back(e.str());
      return ex.empty() ? s : s + " except " + join(ex, ", ");
    }
    case Kind::pods: break;
  }
  std::string pods = has_pod_selector ? "pods " + pod_selector.str() : "all pods";
  if (!has_namespace_selector) return pods;
  return pods + " in namespaces " + namespace_selector.str();
}

std::string to_string(PolicyProtocol p) {
  switch (p) {
    case PolicyProtocol::tcp: return "TCP";
    case PolicyProtocol::udp: return "UDP";
    case PolicyProtocol::sctp: return "SCTP";
    case PolicyProtocol::icmp: return "ICMP";
  }
  return "?";
}

uint8_t ip_protocol_number(PolicyProtocol p) {
  switch (p) {
    case PolicyProtocol::tcp: return IPPROTO_TCP;
    case PolicyProtocol::udp: return IPPROTO_UDP;
    case PolicyProtocol::sctp: return IPPROTO_SCTP;
    case PolicyProtocol::icmp: return IPPROTO_ICMP;
  }
  return 0;
}

std::string to_string(PolicyDirection d) {
  return d == PolicyDirection::ingress ? "ingress" : "egress";
}

std::string PolicyPort::str() const {
  if (port == 0) return to_string(protocol);
  std::string s = std::to_string(port);
  if (end_port != 0) s += "-" + std::to_string(end_port);
  return s + "/" + to_string(protocol);
}

std::string PolicyRule::str(PolicyDirection d) const {
  std::string s = action == PolicyAction::allow ? "allow " : "deny ";
  s += d == PolicyDirection::ingress ? "from " : "to ";
  if (peers.empty()) {
    s += "anywhere";
  } else {
    std::vector<std::string> p;
    for (const auto& peer : peers) p.push_back(peer.str());
    s += join(p, " or ");
  }
  if (ports.empty()) return s + " on any port";
  std::vector<std::string> p;
  for (const auto& port : ports) p.push_back(port.str());
  return s + " on " + join(p, ", ");
}

// ---------------------------------------------------------------------------
// Selection

Labels namespace_labels(const Config& cfg, const std::string& ns) {
  Labels labels;
  for (const NamespaceDef& n : cfg.namespaces) {
    if (n.name == ns) labels = n.labels;
  }
  labels[kNamespaceLabel] = ns;
  return labels;
}

bool policy_selects(const Policy& policy, const Container& c) {
  return policy.ns == c.ns && policy.pod_selector.matches(c.labels);
}

std::vector<Problem> merge_policy_file(Config& cfg, const PolicyFile& file) {
  std::vector<Problem> problems;
  std::vector<NamespaceDef> added_ns;
  for (const NamespaceDef& ns : file.namespaces) {
    auto it = std::find_if(cfg.namespaces.begin(), cfg.namespaces.end(),
                           [&](const NamespaceDef& n) { return n.name == ns.name; });
    if (it == cfg.namespaces.end()) {
      added_ns.push_back(ns);
    } else if (it->labels != ns.labels) {
      problems.push_back({ns.path + ".name", "namespace " + quoted(ns.name) +
                                                  " is already defined with other labels (" +
                                                  it->source + ": " + it->path + ")"});
    }
  }
  for (const Policy& p : file.policies) {
    auto it = std::find_if(cfg.policies.begin(), cfg.policies.end(), [&](const Policy& q) {
      return q.ns == p.ns && q.name == p.name;
    });
    if (it != cfg.policies.end()) {
      problems.push_back({p.name_path, "duplicate policy name " + quoted(p.name) +
                                           " in namespace " + quoted(p.ns) + " (first used at " +
                                           it->source + ": " + it->path + ")"});
    }
  }
  if (!problems.empty()) return problems;
  cfg.namespaces.insert(cfg.namespaces.end(), added_ns.begin(), added_ns.end());
  cfg.policies.insert(cfg.policies.end(), file.policies.begin(), file.policies.end());
  return problems;
}

std::vector<RuleInfo> policy_rule_table(const Config& cfg) {
  std::vector<RuleInfo> rules;
  for (const Policy& p : cfg.policies) {
    for (PolicyDirection d : {PolicyDirection::ingress, PolicyDirection::egress}) {
      const auto& list = p.rules(d);
      for (size_t i = 0; i < list.size(); ++i) {
        RuleInfo r;
        r.policy = p.name;
        r.ns = p.ns;
        r.direction = to_string(d);
        r.rule_index = static_cast<int>(i);
        r.action = list[i].action == PolicyAction::allow ? "allow" : "deny";
        r.text = p.id() + " " + r.direction + "[" + std::to_string(i) + "]: " + list[i].str(d);
        r.path = list[i].path;
        r.source = p.source;
        rules.push_back(std::move(r));
      }
    }
  }
  return rules;
}

// ---------------------------------------------------------------------------
// Endpoints

std::string PolicyEndpoint::str() const {
  switch (kind) {
    case Kind::container: return container + " (" + ip.str() + ")";
    case Kind::host: return "the host (" + ip.str() + ")";
    case Kind::address: return ip.str();
  }
  return ip.str();
}

namespace {

bool is_host_address(const Config& cfg, Ipv4 ip, const std::vector<Ipv4>& host_addresses) {
  if ((ip.value >> 24) == 127) return true;
  for (const Network& n : cfg.networks) {
    if (n.gateway == ip) return true;
  }
  return std::find(host_addresses.begin(), host_addresses.end(), ip) != host_addresses.end();
}

PolicyEndpoint classify(const Config& cfg, Ipv4 ip, const std::vector<Ipv4>& host_addresses) {
  for (const Container& c : cfg.containers) {
    for (const Attachment& a : c.networks) {
      if (a.ip == ip) return {PolicyEndpoint::Kind::container, c.name, ip};
    }
  }
  if (is_host_address(cfg, ip, host_addresses)) return {PolicyEndpoint::Kind::host, "", ip};
  return {PolicyEndpoint::Kind::address, "", ip};
}

}  // namespace

Result<PolicyEndpoint> resolve_endpoint(const Config& cfg, std::string_view text,
                                        const std::vector<Ipv4>& host_addresses) {
  std::string s(text);
  if (s == "host") {
    Ipv4 ip = cfg.networks.empty() ? Ipv4{0x7f000001} : cfg.networks.front().gateway;
    return PolicyEndpoint{PolicyEndpoint::Kind::host, "", ip};
  }
  if (s == "world") {
    // The first of a few documentation addresses no policy CIDR covers.
    std::vector<Ipv4Prefix> prefixes;
    for (const Policy& p : cfg.policies)
      for (PolicyDirection d : {PolicyDirection::ingress, PolicyDirection::egress})
        for (const PolicyRule& r : p.rules(d))
          for (const PolicyPeer& peer : r.peers)
            if (peer.kind == PolicyPeer::Kind::ip_block && peer.ip_block.cidr.len > 0) {
              prefixes.push_back(peer.ip_block.cidr);
              for (const auto& e : peer.ip_block.except) prefixes.push_back(e);
            }
    for (const char* candidate : {"203.0.113.7", "198.51.100.7", "192.0.2.7", "100.64.0.7",
                                  "8.8.8.8", "1.1.1.1", "9.9.9.9"}) {
      Ipv4 ip = *Ipv4::parse(candidate);
      bool covered = std::any_of(prefixes.begin(), prefixes.end(),
                                 [&](const Ipv4Prefix& p) { return p.contains(ip); });
      if (!covered && classify(cfg, ip, host_addresses).kind == PolicyEndpoint::Kind::address)
        return PolicyEndpoint{PolicyEndpoint::Kind::address, "", ip};
    }
    return fail("no address is left that no policy CIDR covers; give an address instead of \"world\"");
  }
  if (auto ip = Ipv4::parse(s)) return classify(cfg, *ip, host_addresses);
  if (auto prefix = Ipv4Prefix::parse(s)) return classify(cfg, prefix->addr, host_addresses);
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
                ": use a container name, NAME@NETWORK, host, world or an IPv4 address");
  }
  for (const Attachment& a : c->networks) {
    if (network.empty() || a.network == network)
      return PolicyEndpoint{PolicyEndpoint::Kind::container, c->name, a.ip};
  }
  if (network.empty()) return fail("container " + quoted(name) + " has no network attachment");
  return fail("container " + quoted(name) + " is not attached to network " + quoted(network));
}

// ---------------------------------------------------------------------------
// The model evaluator

namespace {

bool port_matches(const PolicyPort& p, uint8_t proto, uint16_t port) {
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

bool peer_matches(const Config& cfg, const Policy& pol, const PolicyPeer& peer,
                  const PolicyEndpoint& ep) {
  switch (peer.kind) {
    case PolicyPeer::Kind::host: return ep.kind == PolicyEndpoint::Kind::host;
    case PolicyPeer::Kind::ip_block: {
      if (ep.kind != PolicyEndpoint::Kind::address) return false;
      if (!peer.ip_block.cidr.contains(ep.ip)) return false;
      return std::none_of(peer.ip_block.except.begin(), peer.ip_block.except.end(),
                          [&](const Ipv4Prefix& e) { return e.contains(ep.ip); });
    }
    case PolicyPeer::Kind::pods: break;
  }
  if (ep.kind != PolicyEndpoint::Kind::container) return false;
  const Container* c = cfg.find_container(ep.container);
  if (!c) return false;
  bool ns_ok = peer.has_namespace_selector
                   ? peer.namespace_selector.matches(namespace_labels(cfg, c->ns))
                   : c->ns == pol.ns;
  return ns_ok && (!peer.has_pod_selector || peer.pod_selector.matches(c->labels));
}

bool rule_matches(const Config& cfg, const Policy& pol, const PolicyRule& r,
                  const PolicyEndpoint& peer, uint8_t proto, uint16_t port) {
  if (!rule_ports_match(r, proto, port)) return false;
  return r.peers.empty() || std::any_of(r.peers.begin(), r.peers.end(), [&](const PolicyPeer& p) {
           return peer_matches(cfg, pol, p, peer);
         });
}

DirectionVerdict judge_model(const Config& cfg, const std::vector<RuleInfo>& table,
                             const Container& subject, PolicyDirection d,
                             const PolicyEndpoint& peer, uint8_t proto, uint16_t port) {
  DirectionVerdict v;
  v.applies = true;
  const std::string dir = to_string(d);
  std::vector<std::pair<size_t, int>> selecting;  // policy index, its first rule id
  int next_id = 0;
  for (size_t i = 0; i < cfg.policies.size(); ++i) {
    const Policy& p = cfg.policies[i];
    if (policy_selects(p, subject)) selecting.emplace_back(i, next_id);
    next_id += static_cast<int>(p.ingress.size() + p.egress.size());
  }
  auto rule_id = [&](int first, size_t policy, size_t index) {
    const Policy& p = cfg.policies[policy];
    return first + static_cast<int>((d == PolicyDirection::egress ? p.ingress.size() : 0) + index);
  };
  // Explicit denies win, whatever policy they come from.
  for (auto [i, first] : selecting) {
    const Policy& p = cfg.policies[i];
    const auto& rules = p.rules(d);
    for (size_t r = 0; r < rules.size(); ++r) {
      if (rules[r].action != PolicyAction::deny) continue;
      if (!rule_matches(cfg, p, rules[r], peer, proto, port)) continue;
      v.outcome = PolicyOutcome::denied;
      v.rule_id = rule_id(first, i, r);
      v.text = "denied by " + table[v.rule_id].text;
      return v;
    }
  }
  std::vector<std::string> isolating;
  for (auto [i, first] : selecting) {
    const Policy& p = cfg.policies[i];
    if (!p.isolates(d)) continue;
    isolating.push_back(p.id());
  }
  if (isolating.empty()) {
    v.outcome = PolicyOutcome::not_isolated;
    v.text = selecting.empty()
                 ? "no policy selects " + subject.name + " for " + dir
                 : subject.name + " is not isolated for " + dir + ": the policies selecting it (" +
                       cfg.policies[selecting.front().first].id() + "...) have no " + dir +
                       " allow rules";
    return v;
  }
  for (auto [i, first] : selecting) {
    const Policy& p = cfg.policies[i];
    if (!p.isolates(d)) continue;
    const auto& rules = p.rules(d);
    for (size_t r = 0; r < rules.size(); ++r) {
      if (rules[r].action != PolicyAction::allow) continue;
      if (!rule_matches(cfg, p, rules[r], peer, proto, port)) continue;
      v.outcome = PolicyOutcome::allowed;
      v.rule_id = rule_id(first, i, r);
      v.text = "allowed by " + table[v.rule_id].text;
      return v;
    }
  }
  v.outcome = PolicyOutcome::default_denied;
  v.text = "default deny: " + subject.name + " is selected for " + dir + " by " +
           join(isolating, ", ") + ", allowed by none";
  return v;
}

}  // namespace

// "allowed; egress: ...; ingress: ..." (used by evaluate_compiled too).
std::string verdict_text(const PolicyVerdict& v) {
  std::vector<std::string> parts;
  if (v.egress.applies) parts.push_back("egress: " + v.egress.text);
  if (v.ingress.applies) parts.push_back("ingress: " + v.ingress.text);
  if (parts.empty()) return "allowed: neither side is a container, so no policy applies";
  bool allowed = v.egress.allowed() && v.ingress.allowed();
  return (allowed ? "allowed; " : "denied; ") + join(parts, "; ");
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
      verdict.egress = judge_model(cfg, table, *c, PolicyDirection::egress, to, proto, port);
  }
  if (to.kind == PolicyEndpoint::Kind::container) {
    if (const Container* c = cfg.find_container(to.container))
      verdict.ingress = judge_model(cfg, table, *c, PolicyDirection::ingress, from, proto, port);
  }
  verdict.text = verdict_text(verdict);
  verdict.allowed = verdict.egress.allowed() && verdict.ingress.allowed();
  const DirectionVerdict& first = !verdict.egress.allowed() ? verdict.egress : verdict.ingress;
  if (first.outcome == PolicyOutcome::denied) verdict.drop_reason = -MOAT_DROP_POLICY_DENY;
  if (first.outcome == PolicyOutcome::default_denied)
    verdict.drop_reason = -MOAT_DROP_POLICY_DEFAULT_DENY;
  return verdict;
}

}  // namespace moat
