// Unit tests for reading segmentation policies: moat-native policies,
// Kubernetes NetworkPolicy objects (as kubectl prints them), Lists, policy
// files in JSON and YAML, merging, and every validation message.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <variant>
#include <vector>

#include "config/config.h"
#include "policy/policy.h"

namespace moat {
namespace {

std::string doc(std::string text) {
  std::replace(text.begin(), text.end(), '\'', '"');
  return text;
}

std::string render(const std::vector<Problem>& problems) {
  std::string out;
  for (const Problem& p : problems) out += "\n  " + p.format("moat.json");
  return out;
}

Config valid(const std::string& single_quoted) {
  ParseResult r = parse_config(doc(single_quoted), "moat.json");
  EXPECT_TRUE(r.problems.empty()) << render(r.problems);
  return r.config.value_or(Config{});
}

// One policy in a document's `policies`.
Config one(const std::string& policy) { return valid("{'policies': [" + policy + "]}"); }

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// ---------------------------------------------------------------------------
// One problem per document

struct ProblemCase {
  const char* name;
  const char* document;
  const char* path;
  const char* message;
};

class PolicyProblem : public testing::TestWithParam<ProblemCase> {};

TEST_P(PolicyProblem, IsReportedAtItsPath) {
  const ProblemCase& c = GetParam();
  ParseResult r = parse_config(doc(c.document), "moat.json");
  ASSERT_EQ(r.problems.size(), 1u) << render(r.problems);
  EXPECT_EQ(r.problems[0].path, c.path) << render(r.problems);
  EXPECT_TRUE(contains(r.problems[0].message, doc(c.message))) << render(r.problems);
  EXPECT_FALSE(r.config.has_value());
}

#define NATIVE(rest) "{'policies': [{'name': 'p', 'podSelector': {}, " rest "}]}"
#define INGRESS_PORT(port) NATIVE("'ingress': [{'ports': [" port "]}]")
#define INGRESS_PEER(peer) NATIVE("'ingress': [{'from': [" peer "]}]")
#define K8S(spec)                                                                        \
  "{'policies': [{'apiVersion': 'networking.k8s.io/v1', 'kind': 'NetworkPolicy',"        \
  " 'metadata': {'name': 'p', 'namespace': 'x'}, 'spec': {'podSelector': {}, " spec "}}]}"

const ProblemCase kProblems[] = {
    {"NamedPort", INGRESS_PORT("{'port': 'http'}"), "policies[0].ingress[0].ports[0].port",
     "named ports are not supported: 'http'"},
    {"QuotedNumberPort", INGRESS_PORT("{'port': '80'}"), "policies[0].ingress[0].ports[0].port",
     "write 80 without quotes"},
    {"PortOutOfRange", INGRESS_PORT("{'port': 70000}"), "policies[0].ingress[0].ports[0].port",
     "out of range 1-65535"},
    {"UnknownKeySuggests", NATIVE("'ingres': []"), "policies[0]",
     "unknown key 'ingres' (did you mean 'ingress'?)"},
    {"MissingPodSelector", "{'policies': [{'name': 'p'}]}", "policies[0]",
     "missing required key 'podSelector'"},
    {"BadCidr", INGRESS_PEER("{'ipBlock': {'cidr': '10.0.0.1/8'}}"),
     "policies[0].ingress[0].from[0].ipBlock.cidr", "invalid CIDR '10.0.0.1/8'"},
    // IPv6 prefixes: the same checks as IPv4's, and one family per ipBlock.
    {"Ipv6CidrHostBits", INGRESS_PEER("{'ipBlock': {'cidr': 'fd00::1/64'}}"),
     "policies[0].ingress[0].from[0].ipBlock.cidr", "invalid CIDR 'fd00::1/64': "},
    {"Ipv6CidrTooLong", INGRESS_PEER("{'ipBlock': {'cidr': 'fd00::/129'}}"),
     "policies[0].ingress[0].from[0].ipBlock.cidr", "invalid CIDR 'fd00::/129'"},
    {"Ipv6CidrNoLength", INGRESS_PEER("{'ipBlock': {'cidr': 'fd00::'}}"),
     "policies[0].ingress[0].from[0].ipBlock.cidr", "missing the prefix length, e.g. '/64'"},
    {"Ipv6ExceptOutsideCidr",
     INGRESS_PEER("{'ipBlock': {'cidr': 'fd00:1::/32', 'except': ['fd00:2::/48']}}"),
     "policies[0].ingress[0].from[0].ipBlock.except[0]",
     "except fd00:2::/48 is outside cidr fd00:1::/32"},
    {"Ipv6ExceptWholeCidr",
     INGRESS_PEER("{'ipBlock': {'cidr': 'fd00:1::/32', 'except': ['FD00:1::/32']}}"),
     "policies[0].ingress[0].from[0].ipBlock.except[0]",
     "except fd00:1::/32 excludes the whole cidr fd00:1::/32"},
    {"Ipv6ExceptInIpv4Block",
     INGRESS_PEER("{'ipBlock': {'cidr': '10.0.0.0/8', 'except': ['fd00::/64']}}"),
     "policies[0].ingress[0].from[0].ipBlock.except[0]",
     "except fd00::/64 is IPv6 but cidr 10.0.0.0/8 is IPv4: an ipBlock is of one family"},
    {"Ipv4ExceptInIpv6Block",
     K8S("'egress': [{'to': [{'ipBlock': {'cidr': '::/0', 'except': ['10.0.0.0/8']}}]}]"),
     "policies[0].spec.egress[0].to[0].ipBlock.except[0]",
     "except 10.0.0.0/8 is IPv4 but cidr ::/0 is IPv6"},
    {"ExceptOutsideCidr",
     INGRESS_PEER("{'ipBlock': {'cidr': '10.0.0.0/8', 'except': ['192.168.0.0/16']}}"),
     "policies[0].ingress[0].from[0].ipBlock.except[0]",
     "except 192.168.0.0/16 is outside cidr 10.0.0.0/8"},
    {"ExceptWiderThanCidr",
     INGRESS_PEER("{'ipBlock': {'cidr': '10.1.0.0/16', 'except': ['10.0.0.0/8']}}"),
     "policies[0].ingress[0].from[0].ipBlock.except[0]", "is outside cidr"},
    {"EndPortBeforePort", INGRESS_PORT("{'port': 81, 'endPort': 80}"),
     "policies[0].ingress[0].ports[0].endPort", "endPort 80 is less than port 81"},
    {"EndPortWithoutPort", INGRESS_PORT("{'endPort': 80}"),
     "policies[0].ingress[0].ports[0].endPort", "endPort needs a port"},
    {"BadProtocol", INGRESS_PORT("{'protocol': 'HTTP', 'port': 80}"),
     "policies[0].ingress[0].ports[0].protocol", "unknown protocol 'HTTP'"},
    {"Icmpv6", INGRESS_PORT("{'protocol': 'ICMPv6'}"), "policies[0].ingress[0].ports[0].protocol",
     "write 'ICMP': it covers ICMPv6 on IPv6 flows (ICMP rules have no family)"},
    {"IcmpWithPort", INGRESS_PORT("{'protocol': 'ICMP', 'port': 8}"),
     "policies[0].ingress[0].ports[0].port", "ICMP has no ports"},
    {"DuplicatePolicyName",
     "{'policies': [{'name': 'p', 'podSelector': {}}, {'name': 'p', 'podSelector': {}}]}",
     "policies[1].name",
     "duplicate policy name 'p' in namespace 'default' (first used at policies[0])"},
    {"BadOperator",
     NATIVE("'ingress': [{'from': [{'podSelector': {'matchExpressions': "
            "[{'key': 'a', 'operator': 'Exist'}]}}]}]"),
     "policies[0].ingress[0].from[0].podSelector.matchExpressions[0].operator",
     "unknown operator 'Exist' (did you mean 'Exists'?)"},
    {"ValuesWithExists",
     "{'policies': [{'name': 'p', 'podSelector': {'matchExpressions': "
     "[{'key': 'a', 'operator': 'Exists', 'values': ['x']}]}}]}",
     "policies[0].podSelector.matchExpressions[0].values",
     "values must be empty with operator 'Exists'"},
    {"InWithoutValues",
     "{'policies': [{'name': 'p', 'podSelector': {'matchExpressions': "
     "[{'key': 'a', 'operator': 'In', 'values': []}]}}]}",
     "policies[0].podSelector.matchExpressions[0].values", "values must not be empty"},
    {"EmptyPeer", INGRESS_PEER("{}"), "policies[0].ingress[0].from[0]", "a peer needs"},
    {"IpBlockWithSelector", INGRESS_PEER("{'ipBlock': {'cidr': '10.0.0.0/8'}, 'podSelector': {}}"),
     "policies[0].ingress[0].from[0]", "ipBlock cannot be combined"},
    {"HostFalse", INGRESS_PEER("{'host': false}"), "policies[0].ingress[0].from[0].host",
     "must be true"},
    {"FromInEgress", NATIVE("'egress': [{'from': []}]"), "policies[0].egress[0]",
     "egress rules name their peers in 'to'"},
    {"BadAction", NATIVE("'ingress': [{'action': 'reject'}]"), "policies[0].ingress[0].action",
     "unknown action 'reject'"},
    {"BadPolicyType", NATIVE("'policyTypes': ['Ingres']"), "policies[0].policyTypes[0]",
     "did you mean 'Ingress'?"},
    {"AllowRulesOutsidePolicyTypes", NATIVE("'policyTypes': ['Ingress'], 'egress': [{}]"),
     "policies[0].egress", "policyTypes does not include 'Egress'"},
    {"BadPolicyName", "{'policies': [{'name': 'Allow_DB', 'podSelector': {}}]}", "policies[0].name",
     "invalid policy name"},
    {"BadNamespaceName", "{'policies': [{'name': 'p', 'namespace': 'X', 'podSelector': {}}]}",
     "policies[0].namespace", "invalid namespace name"},
    {"K8sUnknownSpecKey", K8S("'ingres': []"), "policies[0].spec",
     "unknown key 'ingres' (did you mean 'ingress'?)"},
    {"K8sNoDenyRules", K8S("'ingress': [{'action': 'deny'}]"), "policies[0].spec.ingress[0]",
     "deny rules are a moat extension"},
    {"K8sNoHostPeer", K8S("'ingress': [{'from': [{'host': true}]}]"),
     "policies[0].spec.ingress[0].from[0]", "moat extension"},
    {"K8sNamedPort", K8S("'ingress': [{'ports': [{'port': 'http'}]}]"),
     "policies[0].spec.ingress[0].ports[0].port", "named ports are not supported"},
    {"K8sApiVersion",
     "{'policies': [{'apiVersion': 'v1', 'kind': 'NetworkPolicy', 'metadata': {'name': 'p'},"
     " 'spec': {'podSelector': {}}}]}",
     "policies[0].apiVersion", "use 'networking.k8s.io/v1'"},
    {"K8sKind",
     "{'policies': [{'apiVersion': 'v1', 'kind': 'Service', 'metadata': {'name': 'p'}}]}",
     "policies[0].kind", "unsupported kind 'Service'"},
    {"K8sMissingName",
     "{'policies': [{'apiVersion': 'networking.k8s.io/v1', 'kind': 'NetworkPolicy',"
     " 'metadata': {}, 'spec': {'podSelector': {}}}]}",
     "policies[0].metadata", "missing required key 'name'"},
    {"ListItemError",
     "{'policies': [{'apiVersion': 'v1', 'kind': 'List', 'items': [{'apiVersion': "
     "'networking.k8s.io/v1', 'kind': 'NetworkPolicy', 'metadata': {'name': 'p'}, 'spec': "
     "{'podSelector': {}, 'ingress': [{'ports': [{'port': 'dns'}]}]}}]}]}",
     "policies[0].items[0].spec.ingress[0].ports[0].port", "named ports"},
    {"DuplicateNamespace", "{'namespaces': [{'name': 'x'}, {'name': 'x'}]}", "namespaces[1].name",
     "duplicate namespace 'x'"},
    {"NamespaceNameLabel",
     "{'namespaces': [{'name': 'x', 'labels': {'kubernetes.io/metadata.name': 'y'}}]}",
     "namespaces[0].labels[\"kubernetes.io/metadata.name\"]", "is always the namespace"},
    {"NamespaceUnknownKey", "{'namespaces': [{'name': 'x', 'label': {}}]}", "namespaces[0]",
     "did you mean 'labels'?"},
};

INSTANTIATE_TEST_SUITE_P(All, PolicyProblem, testing::ValuesIn(kProblems),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(PolicyParse, EveryProblemAtOnceInDocumentOrder) {
  ParseResult r = parse_config(
      doc("{'policies': [{'name': 'p', 'podSelector': {}, 'ingress': [{'ports': [{'port': 'a'},"
          " {'port': 1, 'endPort': 0}]}]}, {'name': 'q', 'podSelector': 5}],"
          " 'containers': [{'name': 'c', 'nope': 1}]}"),
      "moat.json");
  ASSERT_EQ(r.problems.size(), 4u) << render(r.problems);
  EXPECT_EQ(r.problems[0].path, "policies[0].ingress[0].ports[0].port");
  EXPECT_EQ(r.problems[1].path, "policies[0].ingress[0].ports[1].endPort");
  EXPECT_EQ(r.problems[2].path, "policies[1].podSelector");
  EXPECT_EQ(r.problems[3].path, "containers[0]");
  EXPECT_EQ(r.problems[0].format("moat.json"),
            "moat.json: policies[0].ingress[0].ports[0].port: named ports are not supported: "
            "\"a\" (write the port number)");
}

// ---------------------------------------------------------------------------
// The model

TEST(PolicyParse, NativePolicy) {
  Config cfg = one(
      "{'name': 'db', 'namespace': 'shop', 'podSelector': {'matchLabels': {'app': 'db'},"
      "  'matchExpressions': [{'key': 'tier', 'operator': 'In', 'values': ['a', 'b']},"
      "                       {'key': 'x', 'operator': 'DoesNotExist'}]},"
      " 'ingress': [{'from': [{'podSelector': {'matchLabels': {'app': 'web'}}},"
      "                       {'namespaceSelector': {}, 'podSelector': {}},"
      "                       {'ipBlock': {'cidr': '10.0.0.0/8', 'except': ['10.1.0.0/16']}},"
      "                       {'host': true}],"
      "              'ports': [{'port': 80}, {'protocol': 'UDP', 'port': 53, 'endPort': 54},"
      "                        {'protocol': 'icmp'}, {'protocol': 'SCTP'}]},"
      "             {'action': 'deny', 'from': [{'namespaceSelector': {'matchLabels': {'t': 'u'}}}]}]}");
  ASSERT_EQ(cfg.policies.size(), 1u);
  const Policy& p = cfg.policies[0];
  EXPECT_EQ(p.id(), "shop/db");
  EXPECT_FALSE(p.kubernetes);
  EXPECT_EQ(p.path, "policies[0]");
  EXPECT_EQ(p.source, "moat.json");
  EXPECT_EQ(p.pod_selector.str(), "{app=db,tier in (a,b),!x}");
  EXPECT_TRUE(p.isolates_ingress);
  EXPECT_FALSE(p.isolates_egress);
  ASSERT_EQ(p.ingress.size(), 2u);
  const PolicyRule& r = p.ingress[0];
  ASSERT_EQ(r.peers.size(), 4u);
  EXPECT_EQ(r.peers[0].kind, PolicyPeer::Kind::pods);
  EXPECT_TRUE(r.peers[0].has_pod_selector);
  EXPECT_FALSE(r.peers[0].has_namespace_selector);
  EXPECT_TRUE(r.peers[1].has_namespace_selector);
  EXPECT_EQ(r.peers[2].kind, PolicyPeer::Kind::ip_block);
  EXPECT_EQ(r.peers[2].str(), "10.0.0.0/8 except 10.1.0.0/16");
  EXPECT_EQ(r.peers[3].kind, PolicyPeer::Kind::host);
  ASSERT_EQ(r.ports.size(), 4u);
  EXPECT_EQ(r.ports[0].str(), "80/TCP");
  EXPECT_EQ(r.ports[1].str(), "53-54/UDP");
  EXPECT_EQ(r.ports[2].str(), "ICMP");
  EXPECT_EQ(r.ports[3].str(), "SCTP");
  EXPECT_EQ(p.ingress[1].action, PolicyAction::deny);
  EXPECT_EQ(p.ingress[1].str(PolicyDirection::ingress),
            "deny from all pods in namespaces {t=u} on any port");
  EXPECT_EQ(p.ingress[0].path, "policies[0].ingress[0]");
}

TEST(PolicyParse, Ipv6IpBlocks) {
  Config cfg =
      one("{'name': 'p', 'podSelector': {}, 'ingress': [{'from': ["
          " {'ipBlock': {'cidr': 'FD00:1::/32', 'except': ['fd00:1:2::/48', 'fd00:1:3::7/128']}},"
          " {'ipBlock': {'cidr': '::/0'}}, {'ipBlock': {'cidr': '10.0.0.0/8'}}]}]}");
  ASSERT_EQ(cfg.policies.size(), 1u);
  const auto& peers = cfg.policies[0].ingress.at(0).peers;
  ASSERT_EQ(peers.size(), 3u);
  EXPECT_EQ(peers[0].str(), "fd00:1::/32 except fd00:1:2::/48, fd00:1:3::7/128");
  EXPECT_EQ(std::get<Ipv6Prefix>(peers[0].ip_block.cidr), *Ipv6Prefix::parse("fd00:1::/32"));
  EXPECT_EQ(peers[1].str(), "::/0");
  EXPECT_TRUE(std::holds_alternative<Ipv4Prefix>(peers[2].ip_block.cidr));
}

TEST(PolicyParse, KubernetesIpv6IpBlockInYaml) {
  const std::string yaml = R"(apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: v6, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock:
        cidr: 2001:db8::/32
        except: [2001:db8:1::/48]
)";
  PolicyFileResult r = parse_policy_file(yaml, "v6.yaml");
  ASSERT_TRUE(r.problems.empty()) << render(r.problems);
  ASSERT_EQ(r.file->policies.size(), 1u);
  EXPECT_EQ(r.file->policies[0].egress.at(0).peers.at(0).str(),
            "2001:db8::/32 except 2001:db8:1::/48");
}

TEST(PolicyParse, NativePolicyTypesDefaults) {
  // Absent: the directions with an allow rule.
  Config cfg = valid(
      "{'policies': ["
      " {'name': 'a', 'podSelector': {}},"
      " {'name': 'b', 'podSelector': {}, 'ingress': [{}]},"
      " {'name': 'c', 'podSelector': {}, 'egress': [{}], 'ingress': [{'action': 'deny'}]},"
      " {'name': 'd', 'podSelector': {}, 'ingress': [{'action': 'deny'}]},"
      " {'name': 'e', 'podSelector': {}, 'policyTypes': ['Ingress', 'Egress']},"
      " {'name': 'f', 'podSelector': {}, 'policyTypes': [], 'ingress': [{'action': 'deny'}]}]}");
  auto types = [&](size_t i) {
    return std::pair{cfg.policies[i].isolates_ingress, cfg.policies[i].isolates_egress};
  };
  EXPECT_EQ(types(0), std::pair(false, false));
  EXPECT_EQ(types(1), std::pair(true, false));
  EXPECT_EQ(types(2), std::pair(false, true));
  EXPECT_EQ(types(3), std::pair(false, false));  // deny-only: isolates nothing
  EXPECT_EQ(types(4), std::pair(true, true));
  EXPECT_EQ(types(5), std::pair(false, false));
}

const char* kKubectlPolicy = R"({
  "apiVersion": "networking.k8s.io/v1",
  "kind": "NetworkPolicy",
  "metadata": {
    "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"networking.k8s.io/v1\"}\n"},
    "creationTimestamp": "2024-05-01T10:00:00Z",
    "generation": 1,
    "labels": {"team": "billing"},
    "managedFields": [{"apiVersion": "networking.k8s.io/v1", "fieldsType": "FieldsV1",
                       "fieldsV1": {"f:spec": {"f:ingress": {}}}, "manager": "kubectl-client-side-apply",
                       "operation": "Update", "time": "2024-05-01T10:00:00Z"}],
    "name": "allow-web",
    "namespace": "shop",
    "resourceVersion": "12345",
    "uid": "0b0e7c5e-8f3b-4b8e-9a51-1c2d3e4f5a6b"
  },
  "spec": {
    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "web"}},
                           "podSelector": {"matchLabels": {"app": "web"}}}],
                 "ports": [{"port": 8080, "protocol": "TCP"}, {"port": 9000, "endPort": 9010, "protocol": "TCP"}]}],
    "podSelector": {"matchLabels": {"app": "api"}},
    "policyTypes": ["Ingress"]
  },
  "status": {}
})";

TEST(PolicyParse, KubectlObjectWithMetadataNoise) {
  ParseResult r = parse_config("{\"policies\": [" + std::string(kKubectlPolicy) + "]}", "m.json");
  ASSERT_TRUE(r.problems.empty()) << render(r.problems);
  const Policy& p = r.config->policies.at(0);
  EXPECT_EQ(p.id(), "shop/allow-web");
  EXPECT_TRUE(p.kubernetes);
  EXPECT_EQ(p.name_path, "policies[0].metadata.name");
  EXPECT_TRUE(p.isolates_ingress);
  EXPECT_FALSE(p.isolates_egress);
  ASSERT_EQ(p.ingress.size(), 1u);
  EXPECT_EQ(p.ingress[0].path, "policies[0].spec.ingress[0]");
  ASSERT_EQ(p.ingress[0].peers.size(), 1u);
  EXPECT_TRUE(p.ingress[0].peers[0].has_pod_selector);
  EXPECT_TRUE(p.ingress[0].peers[0].has_namespace_selector);
  EXPECT_EQ(p.ingress[0].ports[1].str(), "9000-9010/TCP");
}

TEST(PolicyParse, KubernetesPolicyTypesDefaults) {
  auto k8s = [](const std::string& name, const std::string& spec) {
    return "{'apiVersion': 'networking.k8s.io/v1', 'kind': 'NetworkPolicy', 'metadata': "
           "{'name': '" + name + "'}, 'spec': {'podSelector': {}" + spec + "}}";
  };
  Config ok = valid("{'policies': [" + k8s("a", "") + "," +
                    k8s("b", ", 'egress': [{'to': [{'podSelector': {}}]}]") + "," +
                    k8s("c", ", 'egress': []") + "," + k8s("d", ", 'policyTypes': ['Egress']") +
                    "," + k8s("e", ", 'policyTypes': ['Egress'], 'ingress': [{}]") + "]}");
  auto types = [&](size_t i) {
    return std::pair{ok.policies[i].isolates_ingress, ok.policies[i].isolates_egress};
  };
  EXPECT_EQ(ok.policies[0].ns, "default");
  EXPECT_EQ(types(0), std::pair(true, false));  // Ingress always
  EXPECT_EQ(types(1), std::pair(true, true));   // Egress with egress rules
  EXPECT_EQ(types(2), std::pair(true, false));  // an empty list is no rules
  EXPECT_EQ(types(3), std::pair(false, true));
  EXPECT_EQ(types(4), std::pair(false, true));  // ingress rules ignored, as in Kubernetes
}

TEST(PolicyParse, ListsInsideADocument) {
  Config cfg = valid(
      "{'policies': [{'apiVersion': 'v1', 'kind': 'List', 'metadata': {'resourceVersion': ''},"
      "  'items': [{'apiVersion': 'networking.k8s.io/v1', 'kind': 'NetworkPolicy',"
      "             'metadata': {'name': 'a'}, 'spec': {'podSelector': {}}},"
      "            {'apiVersion': 'networking.k8s.io/v1', 'kind': 'NetworkPolicy',"
      "             'metadata': {'name': 'b', 'namespace': 'y'}, 'spec': {'podSelector': {}}}]},"
      " {'name': 'c', 'podSelector': {}}]}");
  ASSERT_EQ(cfg.policies.size(), 3u);
  EXPECT_EQ(cfg.policies[0].path, "policies[0].items[0]");
  EXPECT_EQ(cfg.policies[1].id(), "y/b");
  EXPECT_EQ(cfg.policies[2].id(), "default/c");
}

TEST(PolicyParse, SameNameInOtherNamespaceIsFine) {
  Config cfg = valid(
      "{'policies': [{'name': 'p', 'podSelector': {}}, {'name': 'p', 'namespace': 'x',"
      " 'podSelector': {}}]}");
  EXPECT_EQ(cfg.policies.size(), 2u);
}

TEST(PolicyParse, Namespaces) {
  Config cfg = valid(
      "{'namespaces': [{'name': 'x', 'labels': {'ns': 'x', 'kubernetes.io/metadata.name': 'x'}},"
      "                {'name': 'y'}],"
      " 'containers': [{'name': 'c', 'namespace': 'z'}]}");
  ASSERT_EQ(cfg.namespaces.size(), 2u);
  EXPECT_EQ(cfg.namespaces[0].labels, (Labels{{"ns", "x"}}));
  EXPECT_EQ(namespace_labels(cfg, "x"),
            (Labels{{"ns", "x"}, {"kubernetes.io/metadata.name", "x"}}));
  EXPECT_EQ(namespace_labels(cfg, "y"), (Labels{{"kubernetes.io/metadata.name", "y"}}));
  EXPECT_EQ(namespace_labels(cfg, "z"), (Labels{{"kubernetes.io/metadata.name", "z"}}));
}

// ---------------------------------------------------------------------------
// Policy files

PolicyFile file_ok(const std::string& text, const std::string& source = "extra.json") {
  PolicyFileResult r = parse_policy_file(text, source);
  EXPECT_TRUE(r.problems.empty()) << render(r.problems);
  return r.file.value_or(PolicyFile{});
}

// kubectl: "no objects passed to apply". Before, an empty YAML file was
// accepted as no policies at all.
TEST(PolicyFile, AFileWithNothingInItIsAProblem) {
  for (const auto& [text, source] : std::vector<std::pair<std::string, std::string>>{
           {"", "p.yaml"},
           {"# only a comment\n", "p.yaml"},
           {"---\n---\n", "p.yaml"},
           {"[]", "p.json"},
           {"{\"policies\": []}", "p.json"}}) {
    PolicyFileResult r = parse_policy_file(text, source);
    EXPECT_FALSE(r.file.has_value()) << source << ": " << text;
    ASSERT_EQ(r.problems.size(), 1u) << render(r.problems);
    EXPECT_EQ(r.problems[0].message,
              "the file holds no policy and no namespace (it is empty or only comments)");
  }
}

TEST(PolicyFile, SingleKubernetesObject) {
  PolicyFile f = file_ok(kKubectlPolicy);
  ASSERT_EQ(f.policies.size(), 1u);
  EXPECT_EQ(f.policies[0].name_path, "metadata.name");
  EXPECT_EQ(f.policies[0].source, "extra.json");
}

TEST(PolicyFile, SingleNativeObject) {
  PolicyFile f = file_ok(doc("{'name': 'p', 'podSelector': {}, 'ingress': [{}]}"));
  ASSERT_EQ(f.policies.size(), 1u);
  EXPECT_EQ(f.policies[0].path, "");
  EXPECT_EQ(f.policies[0].ingress[0].path, "ingress[0]");
}

TEST(PolicyFile, NetworkPolicyList) {
  PolicyFile f = file_ok(doc(
      "{'apiVersion': 'networking.k8s.io/v1', 'kind': 'NetworkPolicyList', 'items': ["
      "  {'apiVersion': 'networking.k8s.io/v1', 'kind': 'NetworkPolicy', 'metadata': {'name': 'a'},"
      "   'spec': {'podSelector': {}}}]}"));
  ASSERT_EQ(f.policies.size(), 1u);
  EXPECT_EQ(f.policies[0].path, "items[0]");
}

TEST(PolicyFile, ArrayOfObjects) {
  PolicyFile f = file_ok(doc(
      "[{'name': 'a', 'podSelector': {}}, {'apiVersion': 'networking.k8s.io/v1', 'kind':"
      " 'NetworkPolicy', 'metadata': {'name': 'b'}, 'spec': {'podSelector': {}}}]"));
  ASSERT_EQ(f.policies.size(), 2u);
  EXPECT_EQ(f.policies[1].path, "[1]");
}

TEST(PolicyFile, MoatDocumentWithOnlyPolicies) {
  PolicyFile f = file_ok(doc(
      "{'namespaces': [{'name': 'x', 'labels': {'a': 'b'}}], 'policies': [{'name': 'a',"
      " 'namespace': 'x', 'podSelector': {}}]}"));
  ASSERT_EQ(f.policies.size(), 1u);
  ASSERT_EQ(f.namespaces.size(), 1u);
}

TEST(PolicyFile, RejectsNetworksWithAHint) {
  PolicyFileResult r = parse_policy_file(doc("{'networks': [], 'policies': []}"), "x.json");
  ASSERT_EQ(r.problems.size(), 1u) << render(r.problems);
  EXPECT_TRUE(contains(r.problems[0].message, "belongs in the main file"));
}

TEST(PolicyFile, InvalidJsonHasAPosition) {
  PolicyFileResult r = parse_policy_file("{\"name\": }", "x.json");
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(r.problems[0].line, 1);
}

TEST(PolicyFile, DuplicateNamesInsideAFile) {
  PolicyFileResult r = parse_policy_file(
      doc("[{'name': 'a', 'podSelector': {}}, {'name': 'a', 'podSelector': {}}]"), "x.json");
  ASSERT_EQ(r.problems.size(), 1u) << render(r.problems);
  EXPECT_EQ(r.problems[0].path, "[1].name");
}

const char* kYaml = R"(# two policies, as kubectl prints them
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-db
  namespace: shop
  generation: 3
spec:
  podSelector:
    matchLabels:
      app: db
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector:
        matchLabels:
          app: "true"
    ports:
    - protocol: TCP
      port: 5432
      endPort: 5433
---
name: deny-world
namespace: shop
podSelector: {}
egress:
- action: deny
  to:
  - ipBlock:
      cidr: 0.0.0.0/0
      except: [10.0.0.0/8]
---
)";

TEST(PolicyFile, Yaml) {
  PolicyFile f = file_ok(kYaml, "policies.yaml");
  ASSERT_EQ(f.policies.size(), 2u);
  const Policy& a = f.policies[0];
  EXPECT_EQ(a.id(), "shop/allow-db");
  EXPECT_EQ(a.path, "[0]");
  EXPECT_EQ(a.ingress.at(0).ports.at(0).str(), "5432-5433/TCP");
  // A quoted "true" stays a string, so it is a label value.
  EXPECT_EQ(a.ingress.at(0).peers.at(0).pod_selector.match_labels.at("app"), "true");
  const Policy& b = f.policies[1];
  EXPECT_EQ(b.egress.at(0).action, PolicyAction::deny);
  EXPECT_FALSE(b.isolates_egress);
  EXPECT_EQ(b.egress.at(0).peers.at(0).str(), "0.0.0.0/0 except 10.0.0.0/8");
}

TEST(PolicyFile, YamlDetectedWithoutSuffix) {
  PolicyFile f = file_ok("name: p\npodSelector: {}\n", "policies");
  EXPECT_EQ(f.policies.size(), 1u);
}

TEST(PolicyFile, YamlQuotedPortIsANamedPort) {
  PolicyFileResult r = parse_policy_file(
      "name: p\npodSelector: {}\ningress:\n- ports:\n  - port: \"80\"\n", "p.yaml");
  ASSERT_EQ(r.problems.size(), 1u) << render(r.problems);
  EXPECT_EQ(r.problems[0].path, "ingress[0].ports[0].port");
}

TEST(PolicyFile, YamlSyntaxErrorHasAPosition) {
  PolicyFileResult r = parse_policy_file("name: p\npodSelector: {\n  a: [\n", "p.yaml");
  ASSERT_EQ(r.problems.size(), 1u) << render(r.problems);
  EXPECT_GT(r.problems[0].line, 0);
  EXPECT_TRUE(contains(r.problems[0].message, "invalid YAML"));
}

TEST(PolicyFile, YamlUnknownKeySuggests) {
  PolicyFileResult r = parse_policy_file("name: p\npodSelectr: {}\n", "p.yml");
  ASSERT_EQ(r.problems.size(), 2u) << render(r.problems);
  EXPECT_TRUE(contains(r.problems[0].message + r.problems[1].message,
                       "(did you mean \"podSelector\"?)"));
}

TEST(PolicyFile, MergeAddsPoliciesAndNamespaces) {
  Config cfg = valid(
      "{'namespaces': [{'name': 'x', 'labels': {'a': 'b'}}],"
      " 'policies': [{'name': 'p', 'podSelector': {}}]}");
  PolicyFile f = file_ok(doc(
      "{'namespaces': [{'name': 'x', 'labels': {'a': 'b'}}, {'name': 'y'}],"
      " 'policies': [{'name': 'q', 'podSelector': {}}]}"));
  EXPECT_TRUE(merge_policy_file(cfg, f).empty());
  EXPECT_EQ(cfg.policies.size(), 2u);
  EXPECT_EQ(cfg.namespaces.size(), 2u);
  EXPECT_EQ(cfg.policies[1].source, "extra.json");
}

TEST(PolicyFile, MergeReportsConflictsAndChangesNothing) {
  Config cfg = valid(
      "{'namespaces': [{'name': 'x', 'labels': {'a': 'b'}}],"
      " 'policies': [{'name': 'p', 'podSelector': {}}]}");
  PolicyFile f = file_ok(doc(
      "{'namespaces': [{'name': 'x', 'labels': {'a': 'c'}}],"
      " 'policies': [{'name': 'q', 'podSelector': {}}, {'name': 'p', 'podSelector': {}}]}"));
  std::vector<Problem> problems = merge_policy_file(cfg, f);
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_EQ(problems[0].path, "namespaces[0].name");
  EXPECT_EQ(problems[1].path, "policies[1].name");
  EXPECT_EQ(problems[1].format("extra.json"),
            "extra.json: policies[1].name: duplicate policy name \"p\" in namespace \"default\" "
            "(first used at moat.json: policies[0])");
  EXPECT_EQ(cfg.policies.size(), 1u);
}

}  // namespace
}  // namespace moat
