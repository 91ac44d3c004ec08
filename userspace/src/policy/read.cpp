// read.cpp - reading policies (moat-native, Kubernetes NetworkPolicy,
// Lists) and namespaces out of a JSON tree, with a problem for everything
// wrong, at its path. A policy or namespace with any problem is left out
// (the Reader's count tells), so that later checks never see half of one.
#include "policy/read.h"

#include <algorithm>
#include <map>
#include <set>
#include <string_view>

#include "config/values.h"
#include "util/text.h"

namespace moat::policy_read {
namespace {

constexpr const char* kNamespaceLabel = "kubernetes.io/metadata.name";

// In a Kubernetes object a key that only moat's own format knows is unknown,
// with a hint to use moat's format; in moat's format it is a known key.
void moat_extension(std::vector<Field>& fields, Hints& hints, bool kubernetes, const char* key,
                    const std::string& what_is) {
  if (kubernetes) {
    hints[key] = what_is + " a moat extension: write the policy in moat's own format";
  } else {
    fields.push_back({key});
  }
}

// The keys an object may have and the hints for those it may not, for one
// format: built once, not per rule (they were a tenth of reading 100,000).
struct Shape {
  std::vector<Field> fields;
  Hints hints;
};

Shape peer_shape(bool kubernetes) {
  Shape s{{{"podSelector"}, {"namespaceSelector"}, {"ipBlock"}}, {}};
  moat_extension(s.fields, s.hints, kubernetes, "host", "the host peer is");
  return s;
}

Shape rule_shape(PolicyDirection dir, bool kubernetes) {
  const bool ingress = dir == PolicyDirection::ingress;
  const char* peers_key = ingress ? "from" : "to";
  Shape s{{{peers_key}, {"ports"}}, {}};
  s.hints[ingress ? "to" : "from"] =
      to_string(dir) + " rules name their peers in " + quote(peers_key);
  moat_extension(s.fields, s.hints, kubernetes, "action", "deny rules are");
  return s;
}

// ---------------------------------------------------------------------------
// Selectors, peers, ports, rules

const std::vector<std::string> kOperators = {"In", "NotIn", "Exists", "DoesNotExist"};

std::optional<SelectorOp> read_operator(Reader& r, const Json& o, const std::string& op_path,
                                        std::string& op_name) {
  auto text = r.string(o, op_path);
  if (!text) return std::nullopt;
  op_name = *text;
  auto it = std::find(kOperators.begin(), kOperators.end(), *text);
  if (it == kOperators.end()) {
    std::string best = closest_match(*text, kOperators);
    r.problem(op_path, "unknown operator " + quote(*text) +
                           (best.empty() ? " (use In, NotIn, Exists or DoesNotExist)"
                                         : " (did you mean " + quote(best) + "?)"));
    return std::nullopt;
  }
  return static_cast<SelectorOp>(it - kOperators.begin());
}

// One element of matchExpressions, added to `s` unless its key or operator is unusable.
void read_requirement(Reader& r, const Json& el, const std::string& ep, LabelSelector& s) {
  if (!r.object(el, ep, {{"key", kRequired}, {"operator", kRequired}, {"values"}})) return;
  SelectorRequirement req;
  bool ok = true;
  r.member(el, ep, "key", [&](const Json& k, const std::string& kp) {
    auto key = r.string(k, kp);
    if (!key)
      ok = false;
    else if (key->empty())
      r.problem(kp, "a label key must not be empty");
    else
      req.key = *key;
  });
  std::optional<SelectorOp> op;
  std::string op_name;
  r.member(el, ep, "operator", [&](const Json& o, const std::string& op_path) {
    op = read_operator(r, o, op_path, op_name);
  });
  r.member(el, ep, "values", [&](const Json& vals, const std::string& vp) {
    r.elements(vals, vp, "strings", [&](const Json& x, const std::string& xp) {
      if (auto value = r.string(x, xp)) req.values.push_back(*value);
    });
  });
  if (!op || !ok) return;
  req.op = *op;
  bool set_op = *op == SelectorOp::in || *op == SelectorOp::not_in;
  if (set_op && req.values.empty()) {
    r.problem(key_path(ep, "values"), "values must not be empty with operator " + quote(op_name));
  } else if (!set_op && !req.values.empty()) {
    r.problem(key_path(ep, "values"), "values must be empty with operator " + quote(op_name));
  }
  s.match_expressions.push_back(std::move(req));
}

LabelSelector read_selector(Reader& r, const Json& v, const std::string& path) {
  LabelSelector s;
  if (!r.object(v, path, {{"matchLabels"}, {"matchExpressions"}})) return s;
  r.member(v, path, "matchLabels",
           [&](const Json& f, const std::string& p) { r.labels(f, p, s.match_labels); });
  r.member(v, path, "matchExpressions", [&](const Json& f, const std::string& p) {
    r.elements(f, p, "label selector requirements",
               [&](const Json& el, const std::string& ep) { read_requirement(r, el, ep, s); });
  });
  return s;
}

// IPv4 or IPv6, by whether the text has a colon: the reason a malformed
// prefix gets is then its family's ("host bits set", a bad length).
std::optional<IpPrefix> read_cidr(Reader& r, const Json& v, const std::string& path) {
  auto text = r.string(v, path);
  if (!text) return std::nullopt;
  std::string why;
  std::optional<IpPrefix> prefix;
  if (text->find(':') != std::string::npos) {
    if (auto p = Ipv6Prefix::parse(*text, &why)) prefix = *p;
  } else if (auto p = Ipv4Prefix::parse(*text, &why)) {
    prefix = *p;
  }
  if (!prefix) r.problem(path, "invalid CIDR " + quote(*text) + ": " + why);
  return prefix;
}

const char* family_name(const IpPrefix& p) {
  return std::holds_alternative<Ipv4Prefix>(p) ? "IPv4" : "IPv6";
}

void read_ip_block(Reader& r, const Json& f, const std::string& p, IpBlock& block) {
  if (!r.object(f, p, {{"cidr", kRequired}, {"except"}})) return;
  std::optional<IpPrefix> cidr;
  r.member(f, p, "cidr", [&](const Json& c, const std::string& cp) { cidr = read_cidr(r, c, cp); });
  if (cidr) block.cidr = *cidr;
  r.member(f, p, "except", [&](const Json& e, const std::string& ep) {
    r.elements(e, ep, "CIDRs", [&](const Json& el, const std::string& elp) {
      auto except = read_cidr(r, el, elp);
      if (!except || !cidr) return;
      const std::string ex = to_string(*except), whole = to_string(*cidr);
      if (except->index() != cidr->index()) {
        r.problem(elp, "except " + ex + " is " + family_name(*except) + " but cidr " + whole +
                           " is " + family_name(*cidr) +
                           ": an ipBlock is of one family; write one ipBlock per family");
      } else if (!prefix_within(*except, *cidr)) {
        r.problem(elp, "except " + ex + " is outside cidr " + whole);
      } else if (*except == *cidr) {
        r.problem(elp, "except " + ex + " excludes the whole cidr " + whole);
      } else {
        block.except.push_back(*except);
      }
    });
  });
}

// Which kinds of peer one element of from/to combines; Kubernetes allows
// only pod and namespace selectors together.
std::optional<std::string> peer_shape_problem(const PolicyPeer& peer, bool has_block, bool has_host,
                                              bool kubernetes) {
  bool selectors = peer.has_pod_selector || peer.has_namespace_selector;
  if (!selectors && !has_block && !has_host) {
    return kubernetes ? "a peer needs podSelector, namespaceSelector or ipBlock"
                      : "a peer needs podSelector, namespaceSelector, ipBlock or host";
  }
  if (has_block && (selectors || has_host))
    return "ipBlock cannot be combined with other fields in one peer; write separate peers";
  if (has_host && selectors)
    return "host cannot be combined with other fields in one peer; write separate peers";
  return std::nullopt;
}

std::optional<PolicyPeer> read_peer(Reader& r, const Json& v, const std::string& path,
                                    bool kubernetes) {
  static const Shape kShapes[2] = {peer_shape(false), peer_shape(true)};
  const Shape& shape = kShapes[kubernetes];
  size_t before = r.count();
  if (!r.object(v, path, shape.fields, shape.hints)) return std::nullopt;
  PolicyPeer peer;
  r.member(v, path, "podSelector", [&](const Json& f, const std::string& p) {
    peer.has_pod_selector = true;
    peer.pod_selector = read_selector(r, f, p);
  });
  r.member(v, path, "namespaceSelector", [&](const Json& f, const std::string& p) {
    peer.has_namespace_selector = true;
    peer.namespace_selector = read_selector(r, f, p);
  });
  bool has_block = false, has_host = false;
  r.member(v, path, "ipBlock", [&](const Json& f, const std::string& p) {
    has_block = true;
    peer.kind = PolicyPeer::Kind::ip_block;
    read_ip_block(r, f, p, peer.ip_block);
  });
  r.member(v, path, "host", [&](const Json& f, const std::string& p) {
    has_host = true;
    peer.kind = PolicyPeer::Kind::host;
    if (!f.is_boolean() || !f.get<bool>())
      r.problem(p, "must be true (the Docker host), not " + describe(f));
  });
  if (r.count() != before) return std::nullopt;
  if (auto why = peer_shape_problem(peer, has_block, has_host, kubernetes)) {
    r.problem(path, *why);
    return std::nullopt;
  }
  return peer;
}

void read_port_protocol(Reader& r, const Json& f, const std::string& p, bool kubernetes,
                        PolicyPort& port) {
  auto text = r.string(f, p);
  if (!text) return;
  auto protocol = parse_protocol(*text, true);
  if (const std::string l = lower(*text); !kubernetes && (l == "icmpv6" || l == "ipv6-icmp")) {
    r.problem(p, "write \"ICMP\": it covers ICMPv6 on IPv6 flows (ICMP rules have no family)");
  } else if (protocol && (*protocol != Protocol::icmp || !kubernetes)) {
    port.protocol = *protocol;
  } else if (protocol) {
    r.problem(p, "ICMP is a moat extension: write the policy in moat's own format");
  } else {
    r.problem(p, "unknown protocol " + quote(*text) +
                     (kubernetes ? " (use TCP, UDP or SCTP)" : " (use TCP, UDP, SCTP or ICMP)"));
  }
}

// `port` or `endPort`: a number; 0 after a problem.
uint16_t read_port_number(Reader& r, const Json& f, const std::string& p, bool named_ok) {
  if (f.is_string()) {
    const std::string& s = f.get_ref<const std::string&>();
    bool digits =
        !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (named_ok && !digits)
      r.problem(p, "named ports are not supported: " + quote(s) + " (write the port number)");
    else
      r.problem(p, "must be a number, not " + describe(f) +
                       (digits ? " (write " + s + " without quotes)" : ""));
    return 0;
  }
  if (!f.is_number_integer()) {
    r.problem(p, "must be a port number, not " + describe(f));
    return 0;
  }
  auto n = f.get<int64_t>();
  if (n < 1 || n > 65535) {
    r.problem(p, "port " + f.dump() + " is out of range 1-65535");
    return 0;
  }
  return static_cast<uint16_t>(n);
}

std::optional<PolicyPort> read_port(Reader& r, const Json& v, const std::string& path,
                                    bool kubernetes) {
  size_t before = r.count();
  if (!r.object(v, path, {{"protocol"}, {"port"}, {"endPort"}})) return std::nullopt;
  PolicyPort port;
  r.member(v, path, "protocol", [&](const Json& f, const std::string& p) {
    read_port_protocol(r, f, p, kubernetes, port);
  });
  r.member(v, path, "port", [&](const Json& f, const std::string& p) {
    port.port = read_port_number(r, f, p, true);
  });
  r.member(v, path, "endPort", [&](const Json& f, const std::string& p) {
    port.end_port = read_port_number(r, f, p, false);
  });
  if (r.count() != before) return std::nullopt;
  if (port.protocol == Protocol::icmp && (v.contains("port") || v.contains("endPort"))) {
    r.problem(key_path(path, v.contains("port") ? "port" : "endPort"),
              "ICMP has no ports; write {\"protocol\": \"ICMP\"} alone");
    return std::nullopt;
  }
  if (v.contains("endPort") && !v.contains("port")) {
    r.problem(key_path(path, "endPort"), "endPort needs a port (the first of the range)");
    return std::nullopt;
  }
  if (port.end_port != 0 && port.end_port < port.port) {
    r.problem(key_path(path, "endPort"), "endPort " + std::to_string(port.end_port) +
                                             " is less than port " + std::to_string(port.port));
    return std::nullopt;
  }
  if (port.end_port == port.port) port.end_port = 0;
  return port;
}

}  // namespace

std::optional<PolicyRule> read_rule(Reader& r, const Json& v, const std::string& path,
                                    PolicyDirection dir, bool kubernetes) {
  const bool ingress = dir == PolicyDirection::ingress;
  const char* peers_key = ingress ? "from" : "to";
  static const Shape kShapes[2][2] = {
      {rule_shape(PolicyDirection::ingress, false), rule_shape(PolicyDirection::ingress, true)},
      {rule_shape(PolicyDirection::egress, false), rule_shape(PolicyDirection::egress, true)}};
  const Shape& shape = kShapes[ingress ? 0 : 1][kubernetes];
  size_t before = r.count();
  if (!r.object(v, path, shape.fields, shape.hints)) return std::nullopt;
  PolicyRule rule;
  rule.path = path;
  r.member(v, path, "action", [&](const Json& f, const std::string& p) {
    auto text = r.string(f, p);
    if (!text) return;
    if (*text == "allow")
      rule.action = PolicyAction::allow;
    else if (*text == "deny")
      rule.action = PolicyAction::deny;
    else
      r.problem(p, "unknown action " + quote(*text) + " (use \"allow\" or \"deny\")");
  });
  r.member(v, path, peers_key, [&](const Json& f, const std::string& p) {
    if (f.is_null()) return;  // kubectl prints absent lists as null sometimes
    r.elements(f, p, "peers", [&](const Json& el, const std::string& ep) {
      if (auto peer = read_peer(r, el, ep, kubernetes)) rule.peers.push_back(std::move(*peer));
    });
  });
  r.member(v, path, "ports", [&](const Json& f, const std::string& p) {
    if (f.is_null()) return;
    r.elements(f, p, "ports", [&](const Json& el, const std::string& ep) {
      if (auto port = read_port(r, el, ep, kubernetes)) rule.ports.push_back(*port);
    });
  });
  if (r.count() != before) return std::nullopt;
  return rule;
}

namespace {

// ---------------------------------------------------------------------------
// Policies

std::optional<std::set<PolicyDirection>> read_policy_types(Reader& r, const Json& v,
                                                           const std::string& path) {
  std::optional<std::set<PolicyDirection>> types;
  r.member(v, path, "policyTypes", [&](const Json& f, const std::string& p) {
    types.emplace();
    r.elements(f, p, "policy types", [&](const Json& el, const std::string& ep) {
      auto text = r.string(el, ep);
      if (!text) return;
      if (*text == "Ingress")
        types->insert(PolicyDirection::ingress);
      else if (*text == "Egress")
        types->insert(PolicyDirection::egress);
      else
        r.problem(ep, "unknown policy type " + quote(*text) +
                          did_you_mean(*text, {"Ingress", "Egress"}) + " (use Ingress or Egress)");
    });
  });
  return types;
}

bool has_allow(const std::vector<PolicyRule>& rules) {
  return std::any_of(rules.begin(), rules.end(),
                     [](const PolicyRule& x) { return x.action == PolicyAction::allow; });
}

// Which directions the policy isolates, from policyTypes or the defaults.
void resolve_isolation(Reader& r, const std::string& path,
                       const std::optional<std::set<PolicyDirection>>& types, bool has_egress_rules,
                       Policy& pol) {
  if (types) {
    pol.isolates_ingress = types->contains(PolicyDirection::ingress);
    pol.isolates_egress = types->contains(PolicyDirection::egress);
    // Kubernetes ignores rules of a direction policyTypes leaves out; in
    // moat's own format that is a mistake worth a word.
    if (!pol.kubernetes) {
      if (!pol.isolates_ingress && has_allow(pol.ingress))
        r.problem(key_path(path, "ingress"),
                  "allow rules have no effect: policyTypes does not include \"Ingress\"");
      if (!pol.isolates_egress && has_allow(pol.egress))
        r.problem(key_path(path, "egress"),
                  "allow rules have no effect: policyTypes does not include \"Egress\"");
    }
  } else if (pol.kubernetes) {
    // Kubernetes' defaults: Ingress always, Egress when there are egress rules.
    pol.isolates_ingress = true;
    pol.isolates_egress = has_egress_rules;
  } else {
    // moat's: the directions with an allow rule, so a deny-only policy
    // isolates nothing.
    pol.isolates_ingress = has_allow(pol.ingress);
    pol.isolates_egress = has_allow(pol.egress);
  }
}

// podSelector, policyTypes, ingress, egress: in a native policy or a spec.
void read_spec(Reader& r, const Json& v, const std::string& path, Policy& pol) {
  r.member(v, path, "podSelector",
           [&](const Json& f, const std::string& p) { pol.pod_selector = read_selector(r, f, p); });
  std::optional<std::set<PolicyDirection>> types = read_policy_types(r, v, path);
  bool has_rules[2] = {false, false};
  for (PolicyDirection dir : {PolicyDirection::ingress, PolicyDirection::egress}) {
    const char* key = dir == PolicyDirection::ingress ? "ingress" : "egress";
    std::vector<PolicyRule>& out = dir == PolicyDirection::ingress ? pol.ingress : pol.egress;
    r.member(v, path, key, [&](const Json& f, const std::string& p) {
      if (f.is_null()) return;
      r.elements(f, p, "rules", [&](const Json& el, const std::string& ep) {
        has_rules[static_cast<int>(dir)] = true;
        if (auto rule = read_rule(r, el, ep, dir, pol.kubernetes)) out.push_back(std::move(*rule));
      });
    });
  }
  pol.explicit_types = types.has_value();
  resolve_isolation(r, path, types, has_rules[1], pol);
}

// `name` and `namespace` of a native policy or a Kubernetes object's
// metadata. They are visited here because metadata's other keys are not
// checked (visiting a path twice changes nothing).
void read_names(Reader& r, const Json& v, const std::string& path, Policy& pol) {
  r.member(v, path, "name", [&](const Json& f, const std::string& p) {
    r.visit(p);
    pol.name = r.name(f, p, "policy", dns_subdomain_problem).value_or("");
  });
  r.member(v, path, "namespace", [&](const Json& f, const std::string& p) {
    r.visit(p);
    pol.ns = r.name(f, p, "namespace", dns_label_problem).value_or(pol.ns);
  });
}

void read_native(Reader& r, const Json& v, const std::string& path, const std::string& source,
                 std::vector<Policy>& out) {
  static const std::vector<Field> fields = {
      {"name", kRequired}, {"namespace"}, {"podSelector", kRequired},
      {"policyTypes"},     {"ingress"},   {"egress"}};
  // Kubernetes' keys in a policy that has no apiVersion or kind.
  static const Hints hints = {
      {"spec",
       "a moat policy has podSelector, ingress and egress at the top; "
       "a Kubernetes object needs \"apiVersion\" and \"kind\""},
      {"metadata", "a Kubernetes object needs \"apiVersion\" and \"kind\""}};
  size_t before = r.count();
  if (!r.object(v, path, fields, hints)) return;
  Policy pol;
  pol.source = source;
  pol.path = path;
  pol.name_path = key_path(path, "name");
  read_names(r, v, path, pol);
  read_spec(r, v, path, pol);
  if (r.count() == before) out.push_back(std::move(pol));
}

// kubectl adds uid, resourceVersion, managedFields, annotations...: all
// tolerated; only name and namespace mean something here.
void read_metadata(Reader& r, const Json& m, const std::string& mp, Policy& pol) {
  if (!m.is_object()) return r.problem(mp, "must be an object, not " + describe(m));
  if (!m.contains("name")) r.problem(mp, "missing required key \"name\"");
  read_names(r, m, mp, pol);
}

void read_kubernetes(Reader& r, const Json& v, const std::string& path, const std::string& source,
                     std::vector<Policy>& out) {
  static const std::vector<Field> fields = {{"apiVersion", kRequired},
                                            {"kind"},
                                            {"metadata", kRequired},
                                            {"spec", kRequired},
                                            {"status"}};
  size_t before = r.count();
  if (!r.object(v, path, fields)) return;
  r.member(v, path, "apiVersion", [&](const Json& f, const std::string& p) {
    auto text = r.string(f, p);
    if (text && *text != "networking.k8s.io/v1")
      r.problem(p, "unsupported apiVersion " + quote(*text) +
                       " for a NetworkPolicy (use \"networking.k8s.io/v1\")");
  });
  Policy pol;
  pol.kubernetes = true;
  pol.source = source;
  pol.path = path;
  pol.name_path = key_path(key_path(path, "metadata"), "name");
  r.member(v, path, "metadata",
           [&](const Json& m, const std::string& mp) { read_metadata(r, m, mp, pol); });
  r.member(v, path, "spec", [&](const Json& s, const std::string& sp) {
    if (!r.object(s, sp, {{"podSelector", kRequired}, {"policyTypes"}, {"ingress"}, {"egress"}}))
      return;
    read_spec(r, s, sp, pol);
  });
  if (r.count() == before) out.push_back(std::move(pol));
}

void read_policy(Reader& r, const Json& v, const std::string& path, const std::string& source,
                 std::vector<Policy>& out);

void read_list(Reader& r, const Json& v, const std::string& path, const std::string& source,
               std::vector<Policy>& out) {
  if (!r.object(v, path, {{"apiVersion"}, {"kind"}, {"metadata"}, {"items", kRequired}})) return;
  r.member(v, path, "items", [&](const Json& items, const std::string& ip) {
    if (items.is_null()) return;
    r.elements(items, ip, "NetworkPolicy objects",
               [&](const Json& el, const std::string& ep) { read_policy(r, el, ep, source, out); });
  });
}

const std::vector<std::string> kKinds = {"NetworkPolicy", "NetworkPolicyList", "List"};

void read_policy(Reader& r, const Json& v, const std::string& path, const std::string& source,
                 std::vector<Policy>& out) {
  if (!v.is_object()) {
    r.problem(path, "must be a policy object, not " + describe(v));
    return;
  }
  if (!v.contains("apiVersion") && !v.contains("kind")) return read_native(r, v, path, source, out);
  auto kind = v.find("kind");
  if (kind == v.end()) {
    r.visit(path);
    r.problem(path, "missing required key \"kind\" (\"NetworkPolicy\" or \"List\")");
    return;
  }
  std::string kind_path = key_path(path, "kind");
  if (!kind->is_string()) {
    r.visit(kind_path);
    r.problem(kind_path, "must be a string, not " + describe(*kind));
    return;
  }
  const std::string& name = kind->get_ref<const std::string&>();
  if (name == "NetworkPolicy") return read_kubernetes(r, v, path, source, out);
  if (name == "List" || name == "NetworkPolicyList") return read_list(r, v, path, source, out);
  r.visit(kind_path);
  r.problem(kind_path, "unsupported kind " + quote(name) + did_you_mean(name, kKinds) +
                           ": moat reads NetworkPolicy, NetworkPolicyList and List");
}

}  // namespace

void read_policies(const Json& v, const std::string& path, const std::string& source, Reader& r,
                   std::vector<Policy>& out) {
  r.elements(v, path, "policies",
             [&](const Json& el, const std::string& ep) { read_policy(r, el, ep, source, out); });
}

void read_namespaces(const Json& v, const std::string& path, const std::string& source, Reader& r,
                     std::vector<NamespaceDef>& out) {
  r.elements(v, path, "namespaces", [&](const Json& el, const std::string& ep) {
    size_t before = r.count();
    if (!r.object(el, ep, {{"name", kRequired}, {"labels"}})) return;
    NamespaceDef ns;
    ns.source = source;
    ns.path = ep;
    r.member(el, ep, "name", [&](const Json& f, const std::string& p) {
      ns.name = r.name(f, p, "namespace", dns_label_problem).value_or("");
    });
    r.member(el, ep, "labels", [&](const Json& f, const std::string& p) {
      r.labels(f, p, ns.labels);
      auto it = ns.labels.find(kNamespaceLabel);
      if (it == ns.labels.end()) return;
      if (it->second != ns.name)
        r.problem(key_path(p, kNamespaceLabel),
                  "is always the namespace's name " + quote(ns.name) + "; leave it out");
      ns.labels.erase(it);
    });
    if (r.count() == before) out.push_back(std::move(ns));
  });
}

void check_unique(const std::vector<NamespaceDef>& namespaces, const std::vector<Policy>& policies,
                  Reader& r) {
  std::map<std::string, const NamespaceDef*> seen_ns;
  for (const NamespaceDef& ns : namespaces) {
    auto [first, added] = seen_ns.emplace(ns.name, &ns);
    if (!added)
      r.problem(key_path(ns.path, "name"), "duplicate namespace " + quote(ns.name) +
                                               " (first defined at " + first->second->path + ")");
  }
  std::map<std::pair<std::string, std::string>, const Policy*> seen;
  for (const Policy& p : policies) {
    auto [first, added] = seen.emplace(std::pair{p.ns, p.name}, &p);
    if (!added)
      r.problem(p.name_path, "duplicate policy name " + quote(p.name) + " in namespace " +
                                 quote(p.ns) + " (first used at " + first->second->path + ")");
  }
}

void read_policy_file(const Json& root, const std::string& source, Reader& r, PolicyFile& out) {
  r.visit("");
  if (root.is_array()) {
    r.elements(root, "", "policies", [&](const Json& el, const std::string& ep) {
      read_policy(r, el, ep, source, out.policies);
    });
  } else if (root.is_object() && !root.contains("apiVersion") && !root.contains("kind") &&
             !root.contains("name") && !root.contains("podSelector")) {
    // A moat document with only policies and namespaces.
    Hints hints;
    for (const char* key : {"networks", "containers", "host"})
      hints[key] = "a policy file holds only \"policies\" and \"namespaces\"; " + quote(key) +
                   " belongs in the main file";
    if (!r.object(root, "", {{"policies"}, {"namespaces"}}, hints)) return;
    r.member(root, "", "namespaces", [&](const Json& v, const std::string& p) {
      read_namespaces(v, p, source, r, out.namespaces);
    });
    r.member(root, "", "policies", [&](const Json& v, const std::string& p) {
      read_policies(v, p, source, r, out.policies);
    });
  } else if (root.is_object()) {
    read_policy(r, root, "", source, out.policies);
  } else {
    r.problem("",
              "a policy file holds a policy object, a List, an array of policies or "
              "{\"policies\": [...]}, not " +
                  describe(root));
  }
  check_unique(out.namespaces, out.policies, r);
}

bool looks_like_yaml(const std::string& text, const std::string& source) {
  auto ends_with = [&](std::string_view suffix) {
    return source.size() >= suffix.size() &&
           source.compare(source.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (ends_with(".yaml") || ends_with(".yml")) return true;
  if (ends_with(".json")) return false;
  size_t first = text.find_first_not_of(" \t\r\n");
  return first != std::string::npos && text[first] != '{' && text[first] != '[';
}

}  // namespace moat::policy_read
