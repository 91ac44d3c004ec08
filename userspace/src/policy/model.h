// model.h - segmentation policies as values: selectors, peers, ports,
// rules, policies and namespaces. Kept apart from policy.h so that config.h
// can hold them without depending on the compiler. Pure data; their text and
// matching are in model.cpp and select.cpp.
//
// Semantics are Kubernetes NetworkPolicy's, with two moat extensions: a peer
// `{"host": true}` (the Docker host) and a rule `"action": "deny"`.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "util/net.h"
#include "util/proto.h"

namespace moat {

using Labels = std::map<std::string, std::string>;

enum class SelectorOp { in, not_in, exists, does_not_exist };

struct SelectorRequirement {
  std::string key;
  SelectorOp op = SelectorOp::exists;
  std::vector<std::string> values;  // In, NotIn only
};

// Kubernetes' LabelSelector: every matchLabels pair and every expression
// must hold; an empty selector selects everything.
struct LabelSelector {
  Labels match_labels;
  std::vector<SelectorRequirement> match_expressions;

  bool matches(const Labels& labels) const;
  bool empty() const { return match_labels.empty() && match_expressions.empty(); }
  std::string str() const;  // "app=db,tier in (a,b)", "{}" when empty
};

// A prefix of either family. An ipBlock's cidr and excepts are of one
// family (checked when read), so code walking a block may assume its
// excepts are of its cidr's family.
using IpPrefix = std::variant<Ipv4Prefix, Ipv6Prefix>;
std::string to_string(const IpPrefix& p);  // "10.0.0.0/8", "fd00::/64"
// Whether every address of `inner` is in `outer` (false across families).
bool prefix_within(const IpPrefix& inner, const IpPrefix& outer);

struct IpBlock {
  IpPrefix cidr;
  std::vector<IpPrefix> except;  // each strictly inside cidr
};

// One element of `from` / `to`.
struct PolicyPeer {
  enum class Kind { pods, ip_block, host };
  Kind kind = Kind::pods;
  // pods: both absent is impossible (rejected when read). A podSelector alone
  // means the policy's namespace; a namespaceSelector alone means every pod
  // of the matching namespaces.
  bool has_pod_selector = false;
  LabelSelector pod_selector;
  bool has_namespace_selector = false;
  LabelSelector namespace_selector;
  IpBlock ip_block;  // ip_block only
  std::string str() const;
};

struct PolicyPort {
  Protocol protocol = Protocol::tcp;  // any of util/proto.h's: ICMP is a moat extension
  uint16_t port = 0;                  // 0: every port of the protocol (always 0 for ICMP)
  uint16_t end_port = 0;              // 0: just `port`; else the last port of the range
  std::string str() const;            // "80/TCP", "8000-8010/UDP", "TCP", "ICMP"
};

enum class PolicyAction { allow, deny };

enum class PolicyDirection { ingress, egress };
std::string to_string(PolicyDirection d);  // "ingress", "egress"

struct PolicyRule {
  PolicyAction action = PolicyAction::allow;
  std::vector<PolicyPeer> peers;  // empty: every peer
  std::vector<PolicyPort> ports;  // empty: every port and protocol
  std::string path;               // where it was written, e.g. `policies[1].spec.ingress[0]`
  std::string str(PolicyDirection d) const;  // "allow from pods {app=a} on 80/TCP"
};

struct Policy {
  std::string name;
  std::string ns = "default";
  LabelSelector pod_selector;
  // Whether the policy isolates the selected containers in a direction
  // (policyTypes, with defaults resolved when the policy was read).
  bool isolates_ingress = false;
  bool isolates_egress = false;
  bool explicit_types = false;  // policyTypes given, not the defaults
  std::vector<PolicyRule> ingress;
  std::vector<PolicyRule> egress;
  bool kubernetes = false;  // written as a networking.k8s.io/v1 NetworkPolicy
  std::string source;       // file it came from
  std::string path;         // its place in that file, e.g. `policies[1]`, `items[0]`
  std::string name_path;    // where its name is written (`policies[1].metadata.name`)

  bool isolates(PolicyDirection d) const {
    return d == PolicyDirection::ingress ? isolates_ingress : isolates_egress;
  }
  const std::vector<PolicyRule>& rules(PolicyDirection d) const {
    return d == PolicyDirection::ingress ? ingress : egress;
  }
  std::string id() const { return ns + "/" + name; }
};

// An entry of the top-level `namespaces`.
struct NamespaceDef {
  std::string name;
  Labels labels;  // without the implicit kubernetes.io/metadata.name
  std::string source;
  std::string path;
};

// What a standalone policy file holds (see parse_policy_file in config.h).
struct PolicyFile {
  std::vector<Policy> policies;
  std::vector<NamespaceDef> namespaces;
};

}  // namespace moat
