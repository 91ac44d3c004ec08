// policy_read.cpp - reading policies (moat-native, Kubernetes NetworkPolicy,
// Lists) and namespaces out of a JSON tree, with a problem for everything
// wrong, at its path. See policy_read.h.
#include "policy/read.h"

#include <algorithm>
#include <cctype>
#include <functional>
#include <map>
#include <set>
#include <string_view>

namespace moat::policy_read {
namespace {

// ---------------------------------------------------------------------------
// Paths and text, as config.cpp writes them

std::string quote(std::string_view s) {
  return Json(std::string(s)).dump(-1, ' ', false, Json::error_handler_t::replace);
}

bool is_identifier(std::string_view key) {
  if (key.empty() || std::isdigit(static_cast<unsigned char>(key[0]))) return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '$';
  });
}

std::string key_path(const std::string& path, std::string_view key) {
  if (!is_identifier(key)) return path + "[" + quote(key) + "]";
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string index_path(const std::string& path, size_t index) {
  return path + "[" + std::to_string(index) + "]";
}

std::string describe(const Json& v) {
  switch (v.type()) {
    case Json::value_t::string: return "the string " + v.dump();
    case Json::value_t::object: return "an object";
    case Json::value_t::array: return "an array";
    case Json::value_t::null: return "null";
    case Json::value_t::boolean: return v.dump();
    default: return "the number " + v.dump();
  }
}

std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best = closest_match(word, candidates);
  return best.empty() ? "" : " (did you mean " + quote(best) + "?)";
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// Kubernetes' names: a namespace is a DNS label, a policy a DNS subdomain.
std::optional<std::string> dns_problem(std::string_view name, size_t max, bool dots) {
  if (name.empty()) return "it is empty";
  if (name.size() > max)
    return "it has " + std::to_string(name.size()) + " characters; the limit is " +
           std::to_string(max);
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  bool ok = alnum(name.front()) && alnum(name.back()) &&
            std::all_of(name.begin(), name.end(),
                        [&](char c) { return alnum(c) || c == '-' || (dots && c == '.'); });
  if (ok) return std::nullopt;
  return dots ? "use lowercase letters, digits, '-' and '.', starting and ending with a letter or "
                "digit"
              : "use lowercase letters, digits and '-', starting and ending with a letter or digit";
}

constexpr const char* kNamespaceLabel = "kubernetes.io/metadata.name";

// ---------------------------------------------------------------------------
// Typed access, like config.cpp's Reader, counting problems so that a policy
// with any is left out.

class Reader {
 public:
  explicit Reader(Sink& sink) : sink_(sink) {}

  void visit(const std::string& path) { sink_.visit(path); }
  void problem(std::string path, std::string message) {
    ++count_;
    sink_.problem(std::move(path), std::move(message));
  }
  size_t count() const { return count_; }

  // `hints` replace the did-you-mean suggestion for particular unknown keys.
  bool object(const Json& v, const std::string& path, const std::vector<std::string>& known,
              const std::vector<std::string>& required = {},
              const std::map<std::string, std::string>& hints = {}) {
    if (!v.is_object()) {
      problem(path, "must be an object, not " + describe(v));
      return false;
    }
    for (auto it = v.begin(); it != v.end(); ++it) {
      visit(key_path(path, it.key()));
      if (std::find(known.begin(), known.end(), it.key()) != known.end()) continue;
      auto hint = hints.find(it.key());
      problem(path, "unknown key " + quote(it.key()) +
                        (hint != hints.end() ? " (" + hint->second + ")"
                                             : did_you_mean(it.key(), known)));
    }
    for (const std::string& key : required) {
      if (!v.contains(key)) problem(path, "missing required key " + quote(key));
    }
    return true;
  }

  template <class Read>
  void member(const Json& object, const std::string& path, const char* key, Read read) {
    if (auto it = object.find(key); it != object.end()) read(*it, key_path(path, key));
  }

  template <class Read>
  void elements(const Json& v, const std::string& path, std::string_view what, Read read) {
    if (!v.is_array()) {
      problem(path, "must be an array of " + std::string(what) + ", not " + describe(v));
      return;
    }
    for (size_t i = 0; i < v.size(); ++i) {
      std::string element_path = index_path(path, i);
      visit(element_path);
      read(v[i], element_path);
    }
  }

  std::optional<std::string> string(const Json& v, const std::string& path) {
    if (v.is_string()) return v.get<std::string>();
    problem(path, "must be a string, not " + describe(v));
    return std::nullopt;
  }

  std::optional<std::string> dns_name(const Json& v, const std::string& path,
                                      std::string_view kind, bool subdomain) {
    auto name = string(v, path);
    if (!name) return std::nullopt;
    if (auto why = dns_problem(*name, subdomain ? 253 : 63, subdomain)) {
      problem(path, "invalid " + std::string(kind) + " name " + quote(*name) + ": " + *why);
    }
    return name;
  }

  void labels(const Json& v, const std::string& path, Labels& out) {
    if (!v.is_object()) return problem(path, "must be an object of strings, not " + describe(v));
    for (auto it = v.begin(); it != v.end(); ++it) {
      std::string label_path = key_path(path, it.key());
      visit(label_path);
      if (it.key().empty()) problem(label_path, "a label key must not be empty");
      if (auto value = string(it.value(), label_path)) out[it.key()] = *value;
    }
  }

 private:
  Sink& sink_;
  size_t count_ = 0;
};

// ---------------------------------------------------------------------------
// Selectors, peers, ports, rules

const std::vector<std::string> kOperators = {"In", "NotIn", "Exists", "DoesNotExist"};

LabelSelector read_selector(Reader& r, const Json& v, const std::string& path) {
  LabelSelector s;
  if (!r.object(v, path, {"matchLabels", "matchExpressions"})) return s;
  r.member(v, path, "matchLabels",
           [&](const Json& f, const std::string& p) { r.labels(f, p, s.match_labels); });
  r.member(v, path, "matchExpressions", [&](const Json& f, const std::string& p) {
    r.elements(f, p, "label selector requirements", [&](const Json& el, const std::string& ep) {
      if (!r.object(el, ep, {"key", "operator", "values"}, {"key", "operator"})) return;
      SelectorRequirement req;
      bool ok = true;
      r.member(el, ep, "key", [&](const Json& k, const std::string& kp) {
        auto key = r.string(k, kp);
        if (!key) ok = false;
        else if (key->empty()) r.problem(kp, "a label key must not be empty");
        else req.key = *key;
      });
      std::optional<SelectorOp> op;
      std::string op_name;
      r.member(el, ep, "operator", [&](const Json& o, const std::string& op_path) {
        auto text = r.string(o, op_path);
        if (!text) return;
        op_name = *text;
        auto it = std::find(kOperators.begin(), kOperators.end(), *text);
        if (it == kOperators.end()) {
          std::string best = closest_match(*text, kOperators);
          r.problem(op_path, "unknown operator " + quote(*text) +
                                 (best.empty() ? " (use In, NotIn, Exists or DoesNotExist)"
                                               : " (did you mean " + quote(best) + "?)"));
          return;
        }
        op = static_cast<SelectorOp>(it - kOperators.begin());
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
        r.problem(key_path(ep, "values"),
                  "values must not be empty with operator " + quote(op_name));
      } else if (!set_op && !req.values.empty()) {
        r.problem(key_path(ep, "values"), "values must be empty with operator " + quote(op_name));
      }
      s.match_expressions.push_back(std::move(req));
    });
  });
  return s;
}

std::optional<Ipv4Prefix> read_cidr(Reader& r, const Json& v, const std::string& path) {
  auto text = r.string(v, path);
  if (!text) return std::nullopt;
  if (text->find(':') != std::string::npos) {
    r.problem(path, "IPv6 CIDR " + quote(*text) + " is not supported (moat has no IPv6 yet)");
    return std::nullopt;
  }
  std::string why;
  auto prefix = Ipv4Prefix::parse(*text, &why);
  if (!prefix) r.problem(path, "invalid CIDR " + quote(*text) + ": " + why);
  return prefix;
}

std::optional<PolicyPeer> read_peer(Reader& r, const Json& v, const std::string& path,
                                    bool kubernetes) {
  std::vector<std::string> known = {"podSelector", "namespaceSelector", "ipBlock"};
  std::map<std::string, std::string> hints;
  if (kubernetes) {
    hints["host"] = "the host peer is a moat extension: write the policy in moat's own format";
  } else {
    known.push_back("host");
  }
  size_t before = r.count();
  if (!r.object(v, path, known, {}, hints)) return std::nullopt;
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
    if (!r.object(f, p, {"cidr", "except"}, {"cidr"})) return;
    std::optional<Ipv4Prefix> cidr;
    r.member(f, p, "cidr", [&](const Json& c, const std::string& cp) { cidr = read_cidr(r, c, cp); });
    if (cidr) peer.ip_block.cidr = *cidr;
    r.member(f, p, "except", [&](const Json& e, const std::string& ep) {
      r.elements(e, ep, "CIDRs", [&](const Json& el, const std::string& elp) {
        auto except = read_cidr(r, el, elp);
        if (!except || !cidr) return;
        if (!cidr->contains(except->addr) || except->len < cidr->len) {
          r.problem(elp, "except " + except->str() + " is outside cidr " + cidr->str());
        } else if (except->len == cidr->len) {
          r.problem(elp, "except " + except->str() + " excludes the whole cidr " + cidr->str());
        } else {
          peer.ip_block.except.push_back(*except);
        }
      });
    });
  });
  r.member(v, path, "host", [&](const Json& f, const std::string& p) {
    has_host = true;
    peer.kind = PolicyPeer::Kind::host;
    if (!f.is_boolean() || !f.get<bool>())
      r.problem(p, "must be true (the Docker host), not " + describe(f));
  });
  bool selectors = peer.has_pod_selector || peer.has_namespace_selector;
  if (r.count() != before) return std::nullopt;
  if (!selectors && !has_block && !has_host) {
    r.problem(path, kubernetes ? "a peer needs podSelector, namespaceSelector or ipBlock"
                               : "a peer needs podSelector, namespaceSelector, ipBlock or host");
    return std::nullopt;
  }
  if (has_block && (selectors || has_host)) {
    r.problem(path, "ipBlock cannot be combined with other fields in one peer; write separate peers");
    return std::nullopt;
  }
  if (has_host && selectors) {
    r.problem(path, "host cannot be combined with other fields in one peer; write separate peers");
    return std::nullopt;
  }
  return peer;
}

std::optional<PolicyPort> read_port(Reader& r, const Json& v, const std::string& path,
                                    bool kubernetes) {
  size_t before = r.count();
  if (!r.object(v, path, {"protocol", "port", "endPort"})) return std::nullopt;
  PolicyPort port;
  r.member(v, path, "protocol", [&](const Json& f, const std::string& p) {
    auto text = r.string(f, p);
    if (!text) return;
    std::string name = upper(*text);
    if (name == "TCP") port.protocol = PolicyProtocol::tcp;
    else if (name == "UDP") port.protocol = PolicyProtocol::udp;
    else if (name == "SCTP") port.protocol = PolicyProtocol::sctp;
    else if (name == "ICMP" && !kubernetes) port.protocol = PolicyProtocol::icmp;
    else if (name == "ICMP")
      r.problem(p, "ICMP is a moat extension: write the policy in moat's own format");
    else
      r.problem(p, "unknown protocol " + quote(*text) +
                       (kubernetes ? " (use TCP, UDP or SCTP)" : " (use TCP, UDP, SCTP or ICMP)"));
  });
  auto number = [&](const Json& f, const std::string& p, bool named_ok) -> uint16_t {
    if (f.is_string()) {
      const std::string& s = f.get_ref<const std::string&>();
      bool digits = !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
        return c >= '0' && c <= '9';
      });
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
  };
  r.member(v, path, "port",
           [&](const Json& f, const std::string& p) { port.port = number(f, p, true); });
  r.member(v, path, "endPort",
           [&](const Json& f, const std::string& p) { port.end_port = number(f, p, false); });
  if (r.count() != before) return std::nullopt;
  if (port.protocol == PolicyProtocol::icmp && (v.contains("port") || v.contains("endPort"))) {
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

std::optional<PolicyRule> read_rule(Reader& r, const Json& v, const std::string& path,
                                    PolicyDirection dir, bool kubernetes) {
  const char* peers_key = dir == PolicyDirection::ingress ? "from" : "to";
  const char* other_key = dir == PolicyDirection::ingress ? "to" : "from";
  std::vector<std::string> known = {peers_key, "ports"};
  std::map<std::string, std::string> hints;
  hints[other_key] = to_string(dir) + " rules name their peers in " + quote(peers_key);
  if (kubernetes) {
    hints["action"] = "deny rules are a moat extension: write the policy in moat's own format";
  } else {
    known.push_back("action");
  }
  size_t before = r.count();
  if (!r.object(v, path, known, {}, hints)) return std::nullopt;
  PolicyRule rule;
  rule.path = path;
  r.member(v, path, "action", [&](const Json& f, const std::string& p) {
    auto text = r.string(f, p);
    if (!text) return;
    if (*text == "allow") rule.action = PolicyAction::allow;
    else if (*text == "deny") rule.action = PolicyAction::deny;
    else r.problem(p, "unknown action " + quote(*text) + " (use \"allow\" or \"deny\")");
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

// podSelector, policyTypes, ingress, egress: in a native policy or a spec.
void read_spec(Reader& r, const Json& v, const std::string& path, Policy& pol) {
  r.member(v, path, "podSelector", [&](const Json& f, const std::string& p) {
    pol.pod_selector = read_selector(r, f, p);
  });
  std::optional<std::set<PolicyDirection>> types;
  r.member(v, path, "policyTypes", [&](const Json& f, const std::string& p) {
    types.emplace();
    r.elements(f, p, "policy types", [&](const Json& el, const std::string& ep) {
      auto text = r.string(el, ep);
      if (!text) return;
      if (*text == "Ingress") types->insert(PolicyDirection::ingress);
      else if (*text == "Egress") types->insert(PolicyDirection::egress);
      else
        r.problem(ep, "unknown policy type " + quote(*text) +
                          did_you_mean(*text, {"Ingress", "Egress"}) + " (use Ingress or Egress)");
    });
  });
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
  auto has_allow = [](const std::vector<PolicyRule>& rules) {
    return std::any_of(rules.begin(), rules.end(),
                       [](const PolicyRule& x) { return x.action == PolicyAction::allow; });
  };
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
    pol.isolates_egress = has_rules[1];
  } else {
    // moat's: the directions with an allow rule, so a deny-only policy
    // isolates nothing.
    pol.isolates_ingress = has_allow(pol.ingress);
    pol.isolates_egress = has_allow(pol.egress);
  }
}

void read_native(Reader& r, const Json& v, const std::string& path, const std::string& source,
                 std::vector<Policy>& out) {
  size_t before = r.count();
  if (!r.object(v, path, {"name", "namespace", "podSelector", "policyTypes", "ingress", "egress"},
                {"name", "podSelector"},
                {{"spec", "a moat policy has podSelector, ingress and egress at the top; "
                          "a Kubernetes object needs \"apiVersion\" and \"kind\""},
                 {"metadata", "a Kubernetes object needs \"apiVersion\" and \"kind\""}}))
    return;
  Policy pol;
  pol.source = source;
  pol.path = path;
  pol.name_path = key_path(path, "name");
  r.member(v, path, "name", [&](const Json& f, const std::string& p) {
    pol.name = r.dns_name(f, p, "policy", true).value_or("");
  });
  r.member(v, path, "namespace", [&](const Json& f, const std::string& p) {
    pol.ns = r.dns_name(f, p, "namespace", false).value_or(pol.ns);
  });
  read_spec(r, v, path, pol);
  if (r.count() == before) out.push_back(std::move(pol));
}

void read_kubernetes(Reader& r, const Json& v, const std::string& path, const std::string& source,
                     std::vector<Policy>& out) {
  size_t before = r.count();
  if (!r.object(v, path, {"apiVersion", "kind", "metadata", "spec", "status"},
                {"apiVersion", "metadata", "spec"}))
    return;
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
  // kubectl adds uid, resourceVersion, managedFields, annotations...: all
  // tolerated; only name and namespace mean something here.
  r.member(v, path, "metadata", [&](const Json& m, const std::string& mp) {
    if (!m.is_object()) return r.problem(mp, "must be an object, not " + describe(m));
    if (!m.contains("name")) r.problem(mp, "missing required key \"name\"");
    r.member(m, mp, "name", [&](const Json& f, const std::string& p) {
      r.visit(p);
      pol.name = r.dns_name(f, p, "policy", true).value_or("");
    });
    r.member(m, mp, "namespace", [&](const Json& f, const std::string& p) {
      r.visit(p);
      pol.ns = r.dns_name(f, p, "namespace", false).value_or(pol.ns);
    });
  });
  r.member(v, path, "spec", [&](const Json& s, const std::string& sp) {
    if (!r.object(s, sp, {"podSelector", "policyTypes", "ingress", "egress"}, {"podSelector"}))
      return;
    read_spec(r, s, sp, pol);
  });
  if (r.count() == before) out.push_back(std::move(pol));
}

void read_policy(Reader& r, const Json& v, const std::string& path, const std::string& source,
                 std::vector<Policy>& out);

void read_list(Reader& r, const Json& v, const std::string& path, const std::string& source,
               std::vector<Policy>& out) {
  if (!r.object(v, path, {"apiVersion", "kind", "metadata", "items"}, {"items"})) return;
  r.member(v, path, "items", [&](const Json& items, const std::string& ip) {
    if (items.is_null()) return;
    r.elements(items, ip, "NetworkPolicy objects", [&](const Json& el, const std::string& ep) {
      read_policy(r, el, ep, source, out);
    });
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

void read_policies(const Json& v, const std::string& path, const std::string& source, Sink& sink,
                   std::vector<Policy>& out) {
  Reader r(sink);
  r.elements(v, path, "policies", [&](const Json& el, const std::string& ep) {
    read_policy(r, el, ep, source, out);
  });
}

void read_namespaces(const Json& v, const std::string& path, const std::string& source,
                     Sink& sink, std::vector<NamespaceDef>& out) {
  Reader r(sink);
  r.elements(v, path, "namespaces", [&](const Json& el, const std::string& ep) {
    size_t before = r.count();
    if (!r.object(el, ep, {"name", "labels"}, {"name"})) return;
    NamespaceDef ns;
    ns.source = source;
    ns.path = ep;
    r.member(el, ep, "name", [&](const Json& f, const std::string& p) {
      ns.name = r.dns_name(f, p, "namespace", false).value_or("");
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
                  Sink& sink) {
  std::map<std::string, const NamespaceDef*> seen_ns;
  for (const NamespaceDef& ns : namespaces) {
    auto [first, added] = seen_ns.emplace(ns.name, &ns);
    if (!added)
      sink.problem(key_path(ns.path, "name"), "duplicate namespace " + quote(ns.name) +
                                                  " (first defined at " + first->second->path + ")");
  }
  std::map<std::pair<std::string, std::string>, const Policy*> seen;
  for (const Policy& p : policies) {
    auto [first, added] = seen.emplace(std::pair{p.ns, p.name}, &p);
    if (!added)
      sink.problem(p.name_path, "duplicate policy name " + quote(p.name) + " in namespace " +
                                    quote(p.ns) + " (first used at " + first->second->path + ")");
  }
}

void read_policy_file(const Json& root, const std::string& source, Sink& sink, PolicyFile& out) {
  Reader r(sink);
  r.visit("");
  if (root.is_array()) {
    r.elements(root, "", "policies", [&](const Json& el, const std::string& ep) {
      read_policy(r, el, ep, source, out.policies);
    });
  } else if (root.is_object() && !root.contains("apiVersion") && !root.contains("kind") &&
             !root.contains("name") && !root.contains("podSelector")) {
    // A moat document with only policies and namespaces.
    std::map<std::string, std::string> hints;
    for (const char* key : {"networks", "containers", "host"})
      hints[key] = "a policy file holds only \"policies\" and \"namespaces\"; " + quote(key) +
                   " belongs in the main file";
    if (!r.object(root, "", {"policies", "namespaces"}, {}, hints)) return;
    r.member(root, "", "namespaces", [&](const Json& v, const std::string& p) {
      read_namespaces(v, p, source, sink, out.namespaces);
    });
    r.member(root, "", "policies", [&](const Json& v, const std::string& p) {
      read_policies(v, p, source, sink, out.policies);
    });
  } else if (root.is_object()) {
    read_policy(r, root, "", source, out.policies);
  } else {
    r.problem("", "a policy file holds a policy object, a List, an array of policies or "
                  "{\"policies\": [...]}, not " + describe(root));
  }
  check_unique(out.namespaces, out.policies, sink);
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
