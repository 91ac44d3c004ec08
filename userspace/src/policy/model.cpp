// model.cpp - the policy model's values as text, for `moat explain`, the
// rule table and messages: "allow from pods {app=a} on 7000/TCP".
#include "policy/model.h"

#include "util/text.h"

namespace moat {

std::string to_string(const IpPrefix& p) {
  return std::visit([](const auto& x) { return x.str(); }, p);
}

bool prefix_within(const IpPrefix& inner, const IpPrefix& outer) {
  if (inner.index() != outer.index()) return false;
  return std::visit(
      [&](const auto& in) {
        const auto& out = std::get<std::decay_t<decltype(in)>>(outer);
        return in.len >= out.len && out.contains(in.addr);
      },
      inner);
}

std::string LabelSelector::str() const {
  std::vector<std::string> parts;
  for (const auto& [k, v] : match_labels) parts.push_back(k + "=" + v);
  for (const SelectorRequirement& r : match_expressions) {
    switch (r.op) {
      case SelectorOp::in:
        parts.push_back(r.key + " in (" + join(r.values, ",") + ")");
        break;
      case SelectorOp::not_in:
        parts.push_back(r.key + " notin (" + join(r.values, ",") + ")");
        break;
      case SelectorOp::exists:
        parts.push_back(r.key);
        break;
      case SelectorOp::does_not_exist:
        parts.push_back("!" + r.key);
        break;
    }
  }
  return "{" + join(parts, ",") + "}";
}

std::string PolicyPeer::str() const {
  switch (kind) {
    case Kind::host:
      return "the host";
    case Kind::ip_block: {
      std::string s = to_string(ip_block.cidr);
      std::vector<std::string> ex;
      for (const auto& e : ip_block.except) ex.push_back(to_string(e));
      return ex.empty() ? s : s + " except " + join(ex, ", ");
    }
    case Kind::pods:
      break;
  }
  std::string pods = has_pod_selector ? "pods " + pod_selector.str() : "all pods";
  if (!has_namespace_selector) return pods;
  return pods + " in namespaces " + namespace_selector.str();
}

std::string to_string(PolicyDirection d) {
  return d == PolicyDirection::ingress ? "ingress" : "egress";
}

// Policies spell protocols as Kubernetes does: "TCP".
std::string PolicyPort::str() const {
  if (port == 0) return to_string_upper(protocol);
  std::string s = std::to_string(port);
  if (end_port != 0) s += "-" + std::to_string(end_port);
  return s + "/" + to_string_upper(protocol);
}

std::string PolicyRule::str(PolicyDirection d) const {
  // Appended in place: the rule table writes one for each of 100,000 rules.
  std::string s = action == PolicyAction::allow ? "allow " : "deny ";
  s += d == PolicyDirection::ingress ? "from " : "to ";
  if (peers.empty()) s += "anywhere";
  for (size_t i = 0; i < peers.size(); ++i) {
    if (i) s += " or ";
    s += peers[i].str();
  }
  if (ports.empty()) return s += " on any port";
  s += " on ";
  for (size_t i = 0; i < ports.size(); ++i) {
    if (i) s += ", ";
    s += ports[i].str();
  }
  return s;
}

}  // namespace moat
