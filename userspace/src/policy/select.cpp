// select.cpp - which containers a policy selects, the labels of namespaces,
// merging policy files into a Config, and the numbering of rules that the
// compiler, the evaluators, the kernel's counters and `moat explain` share.
#include <algorithm>
#include <iterator>

#include "policy/internal.h"
#include "policy/policy.h"

namespace moat {
namespace {

constexpr const char* kNamespaceLabel = "kubernetes.io/metadata.name";

}  // namespace

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
      case SelectorOp::in:
        if (!listed) return false;
        break;
      case SelectorOp::not_in:
        if (listed) return false;
        break;
      case SelectorOp::exists:
        if (!has) return false;
        break;
      case SelectorOp::does_not_exist:
        if (has) return false;
        break;
    }
  }
  return true;
}

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

bool peer_selects(const Config& cfg, const Policy& policy, const PolicyPeer& peer,
                  const std::string& ns, const Labels& labels) {
  bool ns_ok = peer.has_namespace_selector
                   ? peer.namespace_selector.matches(namespace_labels(cfg, ns))
                   : ns == policy.ns;
  return ns_ok && (!peer.has_pod_selector || peer.pod_selector.matches(labels));
}

std::vector<Problem> merge_policy_file(Config& cfg, const PolicyFile& file) {
  return merge_policy_file(cfg, PolicyFile(file));
}

std::vector<Problem> merge_policy_file(Config& cfg, PolicyFile&& file) {
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
    auto it = std::find_if(cfg.policies.begin(), cfg.policies.end(),
                           [&](const Policy& q) { return q.ns == p.ns && q.name == p.name; });
    if (it != cfg.policies.end()) {
      problems.push_back({p.name_path, "duplicate policy name " + quoted(p.name) +
                                           " in namespace " + quoted(p.ns) + " (first used at " +
                                           it->source + ": " + it->path + ")"});
    }
  }
  if (!problems.empty()) return problems;
  cfg.namespaces.insert(cfg.namespaces.end(), added_ns.begin(), added_ns.end());
  cfg.policies.insert(cfg.policies.end(), std::make_move_iterator(file.policies.begin()),
                      std::make_move_iterator(file.policies.end()));
  return problems;
}

RuleInfo rule_info(const Policy& p, PolicyDirection d, size_t i) {
  RuleInfo r = rule_info(p.name, p.ns, d, i, p.rules(d)[i]);
  r.source = p.source;
  return r;
}

RuleInfo rule_info(const std::string& policy, const std::string& ns, PolicyDirection d, size_t i,
                   const PolicyRule& rule) {
  RuleInfo r;
  r.policy = policy;
  r.ns = ns;
  r.direction = to_string(d);
  r.rule_index = static_cast<int>(i);
  r.action = rule.action == PolicyAction::allow ? "allow" : "deny";
  // Appended to one string: a sum of six makes a temporary each.
  r.text = ns;
  r.text += '/';
  r.text += policy;
  r.text += ' ';
  r.text += r.direction;
  r.text += '[';
  r.text += std::to_string(i);
  r.text += "]: ";
  r.text += rule.str(d);
  r.path = rule.path;
  return r;
}

std::vector<RuleInfo> policy_rule_table(const Config& cfg) {
  std::vector<RuleInfo> rules;
  size_t n = 0;
  for (const Policy& p : cfg.policies) n += p.ingress.size() + p.egress.size();
  rules.reserve(n);
  for (const Policy& p : cfg.policies)
    for (PolicyDirection d : {PolicyDirection::ingress, PolicyDirection::egress})
      for (size_t i = 0; i < p.rules(d).size(); ++i) rules.push_back(rule_info(p, d, i));
  return rules;
}

}  // namespace moat
