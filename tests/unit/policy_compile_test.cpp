// Unit tests for policy semantics and compilation: selectors, identities,
// ipcache and policy entries, precedence, the Kubernetes e2e scenarios as
// truth tables on the x/y/z layout, and a cross-check of the compiler (what
// the kernel will do with its entries) against the independent model
// evaluator on every flow of many generated policy sets.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "config/config.h"
#include "dataplane/state.h"
#include "policy/edit.h"
#include "policy/policy.h"
#include "policy_generator.h"
#include "temp_file.h"
#include "util/mapped.h"

namespace moat {
namespace {

using Json = nlohmann::json;
using namespace testgen;

std::string render(const std::vector<Problem>& problems) {
  std::string out;
  for (const Problem& p : problems) out += "\n  " + p.format("test.json");
  return out;
}

Config parse_ok(const Json& document) {
  ParseResult r = parse_config(document.dump(), "test.json");
  EXPECT_TRUE(r.problems.empty()) << render(r.problems) << "\n" << document.dump(1);
  return r.config.value_or(Config{});
}

// ---------------------------------------------------------------------------
// Selectors

TEST(LabelSelector, Operators) {
  const Labels l = {{"app", "db"}, {"tier", "back"}};
  auto sel = [](const std::string& s) {
    LabelSelector out;
    Json j = J(s);
    const Json labels = j.value("matchLabels", Json::object());
    const Json expressions = j.value("matchExpressions", Json::array());
    for (auto& [k, v] : labels.items()) out.match_labels[k] = v;
    for (auto& e : expressions) {
      SelectorRequirement r;
      r.key = e.at("key");
      std::string op = e.at("operator");
      r.op = op == "In" ? SelectorOp::in
             : op == "NotIn" ? SelectorOp::not_in
             : op == "Exists" ? SelectorOp::exists
                              : SelectorOp::does_not_exist;
      const Json values = e.value("values", Json::array());
      for (auto& v : values) r.values.push_back(v);
      out.match_expressions.push_back(r);
    }
    return out;
  };
  EXPECT_TRUE(sel("{}").matches(l));
  EXPECT_TRUE(sel("{}").matches({}));
  EXPECT_TRUE(sel("{}").empty());
  EXPECT_TRUE(sel("{'matchLabels': {'app': 'db'}}").matches(l));
  EXPECT_FALSE(sel("{'matchLabels': {'app': 'db', 'x': 'y'}}").matches(l));
  EXPECT_FALSE(sel("{'matchLabels': {'app': 'web'}}").matches(l));
  auto expr = [&](const std::string& e) {
    return sel("{'matchExpressions': [" + e + "]}");
  };
  EXPECT_TRUE(expr("{'key': 'app', 'operator': 'In', 'values': ['web', 'db']}").matches(l));
  EXPECT_FALSE(expr("{'key': 'app', 'operator': 'In', 'values': ['web']}").matches(l));
  EXPECT_FALSE(expr("{'key': 'nope', 'operator': 'In', 'values': ['web']}").matches(l));
  EXPECT_FALSE(expr("{'key': 'app', 'operator': 'NotIn', 'values': ['db']}").matches(l));
  EXPECT_TRUE(expr("{'key': 'app', 'operator': 'NotIn', 'values': ['web']}").matches(l));
  EXPECT_TRUE(expr("{'key': 'nope', 'operator': 'NotIn', 'values': ['web']}").matches(l));
  EXPECT_TRUE(expr("{'key': 'tier', 'operator': 'Exists'}").matches(l));
  EXPECT_FALSE(expr("{'key': 'nope', 'operator': 'Exists'}").matches(l));
  EXPECT_TRUE(expr("{'key': 'nope', 'operator': 'DoesNotExist'}").matches(l));
  EXPECT_FALSE(expr("{'key': 'app', 'operator': 'DoesNotExist'}").matches(l));
  // Everything must hold.
  EXPECT_FALSE(sel("{'matchLabels': {'app': 'db'}, 'matchExpressions': [{'key': 'tier',"
                   " 'operator': 'DoesNotExist'}]}")
                   .matches(l));
}

// ---------------------------------------------------------------------------
// The Kubernetes e2e layout (xyz_document(), policy_generator.h).

// Endpoints by name: "x/a" (a pod's first address), "x/a@side" (another
// one), "host" (the first gateway), "lo" (127.0.0.1), another gateway or an
// address.
struct Named {
  std::string name;
  PolicyEndpoint ep;
};

std::vector<Named> endpoints(const Config& cfg) {
  std::vector<Named> out;
  for (const Container& c : cfg.containers) {
    const std::string name = c.ns + "/" + c.labels.at("pod");
    out.push_back({name, resolve_endpoint(cfg, c.name).value()});
    for (size_t i = 1; i < c.networks.size(); ++i) {
      const std::string net = c.networks[i].network;
      out.push_back({name + "@" + net, resolve_endpoint(cfg, c.name + "@" + net).value()});
    }
  }
  out.push_back({"host", resolve_endpoint(cfg, "host").value()});
  for (size_t i = 1; i < cfg.networks.size(); ++i) {
    const std::string gw = cfg.networks[i].gateway.str();
    out.push_back({gw, resolve_endpoint(cfg, gw).value()});
  }
  out.push_back({"lo", resolve_endpoint(cfg, "127.0.0.1").value()});
  for (const char* a : {"203.0.113.5", "203.0.113.130", "198.51.100.1", "10.0.0.200"})
    out.push_back({a, resolve_endpoint(cfg, a).value()});
  return out;
}

struct Flow {
  std::string from, to;
  uint8_t proto;
  uint16_t port;
  std::string from_ns() const { return ns_of(from); }
  std::string to_ns() const { return ns_of(to); }
  static std::string ns_of(const std::string& e) {
    return e.size() == 3 && e[1] == '/' ? e.substr(0, 1) : "";
  }
  bool tcp(uint16_t p) const { return proto == IPPROTO_TCP && port == p; }
  std::string str() const {
    return from + " -> " + to + " " + std::to_string(proto) + "/" + std::to_string(port);
  }
};

const std::pair<uint8_t, uint16_t> kProbes[] = {
    {IPPROTO_TCP, 80},  {IPPROTO_TCP, 81}, {IPPROTO_UDP, 80},  {IPPROTO_UDP, 81},
    {IPPROTO_SCTP, 80}, {IPPROTO_ICMP, 0}, {IPPROTO_ICMPV6, 0}};

std::string outcome(PolicyOutcome o) {
  switch (o) {
    case PolicyOutcome::not_isolated: return "not-isolated";
    case PolicyOutcome::allowed: return "allowed";
    case PolicyOutcome::denied: return "denied";
    case PolicyOutcome::default_denied: return "default-denied";
  }
  return "?";
}

// The model and the compiled entries agree on everything they both decide.
::testing::AssertionResult same(const PolicyVerdict& model, const PolicyVerdict& compiled) {
  auto side = [](const DirectionVerdict& m, const DirectionVerdict& c, const char* name)
      -> std::string {
    if (m.applies != c.applies) return std::string(name) + ": applies differs";
    if (m.outcome != c.outcome)
      return std::string(name) + ": model " + outcome(m.outcome) + ", compiled " +
             outcome(c.outcome);
    if (m.outcome == PolicyOutcome::denied && m.rule_id != c.rule_id)
      return std::string(name) + ": deny rule " + std::to_string(m.rule_id) + " vs " +
             std::to_string(c.rule_id);
    return "";
  };
  std::string why = side(model.egress, compiled.egress, "egress");
  if (why.empty()) why = side(model.ingress, compiled.ingress, "ingress");
  if (why.empty() && model.allowed != compiled.allowed) why = "allowed differs";
  if (why.empty() && model.drop_reason != compiled.drop_reason) why = "drop reason differs";
  if (why.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << why << "\n    model:    " << model.text
                                       << "\n    compiled: " << compiled.text;
}

// Checks every flow between the endpoints: model == compiled, and both equal
// `expected` when given.
void check_all(const Config& cfg, const std::function<bool(const Flow&)>& expected,
               const std::string& label) {
  auto plan = compile_policies(cfg);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  int failures = 0;
  for (const Named& from : endpoints(cfg)) {
    for (const Named& to : endpoints(cfg)) {
      for (auto [proto, port] : kProbes) {
        Flow f{from.name, to.name, proto, port};
        PolicyVerdict m = evaluate_model(cfg, from.ep, to.ep, proto, port);
        PolicyVerdict c = evaluate_compiled(*plan, from.ep.ip, to.ep.ip, proto, port);
        auto agree = same(m, c);
        EXPECT_TRUE(agree) << label << ": " << f.str();
        if (!agree) ++failures;
        if (expected) {
          bool want = expected(f);
          EXPECT_EQ(m.allowed, want) << label << " (model): " << f.str() << "\n  " << m.text;
          if (m.allowed != want) ++failures;
        }
        if (failures > 10) FAIL() << label << ": too many failures";
      }
    }
  }
}

struct Scenario {
  const char* name;
  const char* policies;  // single-quoted JSON array
  std::function<bool(const Flow&)> expected;
};

const Scenario kScenarios[] = {
    {"DefaultDenyIngress",
     "[{'name': 'deny', 'namespace': 'x', 'podSelector': {}, 'policyTypes': ['Ingress']}]",
     [](const Flow& f) { return f.to_ns() != "x"; }},
    {"DefaultDenyAll",
     "[{'apiVersion': 'networking.k8s.io/v1', 'kind': 'NetworkPolicy', 'metadata': {'name':"
     " 'deny', 'namespace': 'x'}, 'spec': {'podSelector': {}, 'policyTypes': ['Ingress',"
     " 'Egress']}}]",
     [](const Flow& f) { return f.to_ns() != "x" && f.from_ns() != "x"; }},
    {"AllowFromPodSelector",
     "[{'name': 'p', 'namespace': 'x', 'podSelector': {'matchLabels': {'pod': 'a'}},"
     "  'ingress': [{'from': [{'podSelector': {'matchLabels': {'pod': 'b'}}}]}]}]",
     [](const Flow& f) { return f.to != "x/a" || f.from == "x/b"; }},
    {"AllowFromNamespaceSelector",
     "[{'name': 'p', 'namespace': 'x', 'podSelector': {'matchLabels': {'pod': 'a'}},"
     "  'ingress': [{'from': [{'namespaceSelector': {'matchLabels': {'ns': 'y'}}}]}]}]",
     [](const Flow& f) { return f.to != "x/a" || f.from_ns() == "y"; }},
    {"NamespaceAndPodInOnePeer",
     "[{'name': 'p', 'namespace': 'x', 'podSelector': {'matchLabels': {'pod': 'a'}},"
     "  'ingress': [{'from': [{'namespaceSelector': {'matchLabels': {'ns': 'y'}},"
     "                         'podSelector': {'matchLabels': {'pod': 'b'}}}]}]}]",
     [](const Flow& f) { return f.to != "x/a" || f.from == "y/b"; }},
    {"NamespaceOrPodTwoPeers",
     "[{'name': 'p', 'namespace': 'x', 'podSelector': {'matchLabels': {'pod': 'a'}},"
     "  'ingress': [{'from': [{'namespaceSelector': {'matchLabels': {'ns': 'y'}}},"
     "                        {'podSelector': {'matchLabels': {'pod': 'b'}}}]}]}]",
     [](const Flow& f) { return f.to != "x/a" || f.from_ns() == "y" || f.from == "x/b"; }},
    {"ImplicitNamespaceLabelAndExpressions",
     "[{'name': 'p', 'namespace': 'x', 'podSelector': {'matchLabels': {'pod': 'a'}},"
     "  'ingress': [{'from': [{'namespaceSelector': {'matchExpressions': [{'key':"
     "    'kubernetes.io/metadata.name', 'operator': 'In', 'values': ['y', 'z']}]},"
     "    'podSelector': {'matchExpressions': [{'key': 'pod', 'operator': 'NotIn',"
     "    'values': ['c']}]}}]}]}]",
     [](const Flow& f) {
       return f.to != "x/a" || ((f.from_ns() == "y" || f.from_ns() == "z") && f.from[2] != 'c');
     }},
    {"Ports81Only",
     "[{'name': 'p', 'namespace': 'x', 'podSelector': {'matchLabels': {'pod': 'a'}},"
     "  'ingress': [{'ports': [{'port': 81}]}]}]",
     [](const Flow& f) { return f.to != "x/a" || f.tcp(81); }},
    {"PortRangeWithEndPort",
     "[{'name': 'p', 'namespace': 'x', 'podSelector': {'matchLabels': {'pod': 'a'}},"
     "  'ingress': [{'from': [{'podSelector': {}}], 'ports': [{'port': 80, 'endPort': 81},"
     "               {'protocol': 'UDP', 'port': 81, 'endPort': 90}]}]}]",
     [](const Flow& f) {
       return f.to != "x/a" || (f.from_ns() == "x" && (f.proto == IPPROTO_TCP ||
                                                       (f.proto == IPPROTO_UDP && f.port == 81)));
     }},
    {"ProtocolOnly",
     "[{'name': 'p', 'namespace': 'x', 'podSelector': {'matchLabels': {'pod': 'a'}},"
     "  'ingress': [{'ports': [{'protocol': 'UDP'}]}]}]",
     [](const Flow& f) { return f.to != "x/a" || f.proto == IPPROTO_UDP; }},
    {"IcmpOnly",
     "[{'name': 'p', 'namespace': 'x', 'podSelector': {'matchLabels': {'pod': 'a'}},"
     "  'ingress': [{'ports': [{'protocol': 'ICMP'}]}]}]",
     [](const Flow& f) {
       return f.to != "x/a" || f.proto == IPPROTO_ICMP || f.proto == IPPROTO_ICMPV6;
     }},
    {"EgressToIpBlock",
     "[{'name': 'p', 'namespace': 'x', 'podSelector': {'matchLabels': {'pod': 'a'}},"
     "  'egress': [{'to': [{'ipBlock': {'cidr': '203.0.113.0/24'}}]}]}]",
     [](const Flow& f) { return f.from != "x/a" || f.to.rfind("203.0.113.", 0) == 0; }},
    {"IpBlockWithExcept",
     "[{'name': 'p', 'namespace': 'x', 'podSelector': {'matchLabels': {'pod': 'a'}},"
     "  'egress': [{'to': [{'ipBlock': {'cidr': '203.0.113.0/24', 'except':"
     "                                  ['203.0.113.128/25']}}]}]}]",
     [](const Flow& f) { return f.from != "x/a" || f.to == "203.0.113.5"; }},
    // ipBlocks match by address, containers' and the host's included.
    {"IpBlockEverywhereMatchesContainersAndHost",
     "[{'name': 'p', 'namespace': 'x', 'podSelector': {'matchLabels': {'pod': 'a'}},"
     "  'egress': [{'to': [{'ipBlock': {'cidr': '0.0.0.0/0'}}]}]}]",
     [](const Flow&) { return true; }},
    // Upstream "should allow egress access to server in CIDR block": x-b is 10.0.0.3.
    {"EgressToPodByIpBlock",
     "[{'name': 'p', 'namespace': 'x', 'podSelector': {'matchLabels': {'pod': 'a'}},"
     "  'policyTypes': ['Egress'], 'egress': [{'to': [{'ipBlock': {'cidr': '10.0.0.3/32'}}]}]}]",
     [](const Flow& f) { return f.from != "x/a" || f.to == "x/b"; }},
    // Upstream "should enforce except clause while egress access to server in CIDR block".
    {"EgressIpBlockExceptPod",
     "[{'name': 'p', 'namespace': 'x', 'podSelector': {'matchLabels': {'pod': 'a'}},"
     "  'egress': [{'to': [{'ipBlock': {'cidr': '10.0.0.0/16', 'except': ['10.0.0.3/32']}}]}]}]",
     [](const Flow& f) {
       return f.from != "x/a" ||
              (f.to != "x/b" && (!f.to_ns().empty() || f.to == "host" || f.to == "10.0.0.200"));
     }},
    // 10.0.0.0/29 less 10.0.0.4/30: the gateway (the host), x-a and x-b.
    {"IngressFromIpBlockWithExceptOverPods",
     "[{'name': 'p', 'namespace': 'x', 'podSelector': {'matchLabels': {'pod': 'a'}},"
     "  'ingress': [{'from': [{'ipBlock': {'cidr': '10.0.0.0/29', 'except': ['10.0.0.4/30']}}],"
     "               'ports': [{'port': 80}]}]}]",
     [](const Flow& f) {
       return f.to != "x/a" ||
              (f.tcp(80) && (f.from == "host" || f.from == "x/a" || f.from == "x/b"));
     }},
    {"DenyToIpBlockOverPods",
     "[{'name': 'p', 'namespace': 'x', 'podSelector': {}, 'egress': [{'action': 'deny',"
     "  'to': [{'ipBlock': {'cidr': '10.0.0.4/30', 'except': ['10.0.0.6/31']}}]}]}]",
     [](const Flow& f) { return f.from_ns() != "x" || !(f.to == "x/c" || f.to == "y/a"); }},
    // The host's addresses too: 127.0.0.0/16 holds 127.0.0.1, not the gateway.
    {"IngressFromLoopbackIpBlock",
     "[{'name': 'p', 'namespace': 'x', 'podSelector': {'matchLabels': {'pod': 'a'}},"
     "  'ingress': [{'from': [{'ipBlock': {'cidr': '127.0.0.0/16'}}]}]}]",
     [](const Flow& f) { return f.to != "x/a" || f.from == "lo"; }},
    {"HostPeer",
     "[{'name': 'p', 'namespace': 'x', 'podSelector': {'matchLabels': {'pod': 'a'}},"
     "  'ingress': [{'from': [{'host': true}]}]}]",
     [](const Flow& f) { return f.to != "x/a" || f.from == "host" || f.from == "lo"; }},
    {"ExplicitDenyOverridesAllow",
     "[{'name': 'allow-all', 'namespace': 'x', 'podSelector': {}, 'ingress': [{}]},"
     " {'name': 'no-y', 'namespace': 'x', 'podSelector': {'matchLabels': {'pod': 'a'}},"
     "  'ingress': [{'action': 'deny', 'from': [{'namespaceSelector': {'matchLabels':"
     "                                           {'ns': 'y'}}}]}]}]",
     [](const Flow& f) { return !(f.to == "x/a" && f.from_ns() == "y"); }},
    {"DenyOnlyDoesNotIsolate",
     "[{'name': 'no-b-80', 'namespace': 'x', 'podSelector': {'matchLabels': {'pod': 'a'}},"
     "  'ingress': [{'action': 'deny', 'from': [{'podSelector': {'matchLabels': {'pod': 'b'}}}],"
     "               'ports': [{'port': 80}]}]}]",
     [](const Flow& f) { return !(f.to == "x/a" && f.from == "x/b" && f.tcp(80)); }},
    {"EgressToNamespaceOnPort",
     "[{'name': 'p', 'namespace': 'x', 'podSelector': {'matchLabels': {'pod': 'a'}},"
     "  'egress': [{'to': [{'namespaceSelector': {'matchLabels': {'ns': 'y'}}}],"
     "              'ports': [{'port': 80}, {'protocol': 'UDP', 'port': 80}]}]}]",
     [](const Flow& f) {
       return f.from != "x/a" || (f.to_ns() == "y" && f.port == 80 &&
                                  (f.proto == IPPROTO_TCP || f.proto == IPPROTO_UDP));
     }},
    {"PoliciesInOtherNamespaceDoNotSelect",
     "[{'name': 'deny', 'namespace': 'q', 'podSelector': {}, 'policyTypes': ['Ingress']}]",
     [](const Flow&) { return true; }},
};

class E2eScenario : public testing::TestWithParam<Scenario> {};

TEST_P(E2eScenario, TruthTable) {
  const Scenario& s = GetParam();
  Config cfg = parse_ok(xyz_document(J(s.policies)));
  check_all(cfg, s.expected, s.name);
}

INSTANTIATE_TEST_SUITE_P(Kubernetes, E2eScenario, testing::ValuesIn(kScenarios),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(E2eScenario, NoPolicyAllowsEverythingAndIsInactive) {
  Config cfg = parse_ok(xyz_document(Json::array()));
  auto plan = compile_policies(cfg);
  ASSERT_TRUE(plan.has_value());
  EXPECT_FALSE(plan->active);
  EXPECT_TRUE(plan->ipcache.empty());
  EXPECT_TRUE(plan->entries.empty());
  check_all(cfg, [](const Flow&) { return true; }, "none");
}

// ---------------------------------------------------------------------------
// Generated policy sets: the compiler against the model
// (random_policies(), policy_generator.h)

// How many identities of a plan exist because ipBlocks split containers
// (or the host): their names say which blocks hold them.
std::pair<int, int> split_identities(const Config& cfg) {
  auto plan = compile_policies(cfg);
  std::pair<int, int> n{0, 0};
  if (!plan) return n;
  for (const auto& [id, name] : plan->identity_names) {
    if (name.find(" (in ") == std::string::npos) continue;
    (name.rfind("host", 0) == 0 ? n.second : n.first)++;
  }
  return n;
}

TEST(PolicyCrossCheck, GeneratedPolicySets) {
  std::mt19937 rng(20240501);
  int containers_split = 0, host_split = 0;
  for (int i = 0; i < 150; ++i) {
    Json policies = random_policies(rng, i);
    Config cfg = parse_ok(xyz_document(policies, i % 2 == 1));
    if (HasFailure()) return;
    check_all(cfg, nullptr, "set " + std::to_string(i) + ": " + policies.dump());
    if (HasFailure()) return;
    auto [c, h] = split_identities(cfg);
    containers_split += c > 0;
    host_split += h > 0;
  }
  // The generator must keep covering ipBlocks over containers and the host.
  EXPECT_GE(containers_split, 30);
  EXPECT_GE(host_split, 30);
}

// ---------------------------------------------------------------------------
// Identities and the ipcache

Config small(const std::string& policies) {
  return parse_ok(J(
      "{'networks': [{'name': 'n', 'subnet': '172.20.0.0/16'}],"
      " 'containers': [{'name': 'a', 'labels': {'app': 'a'}, 'networks': ['n']},"
      "                {'name': 'a2', 'labels': {'app': 'a'}, 'networks': ['n']},"
      "                {'name': 'b', 'labels': {'app': 'b'}, 'networks': ['n']},"
      "                {'name': 'c', 'namespace': 'other', 'labels': {'app': 'a'},"
      "                 'networks': ['n']}],"
      " 'policies': " + policies + "}"));
}

std::optional<moat_ipcache_val> ipcache_at(const PolicyPlan& plan, const std::string& prefix) {
  Ipv4Prefix p = *Ipv4Prefix::parse(prefix);
  for (const auto& [k, v] : plan.ipcache)
    if (k.prefixlen == p.len && k.addr == p.addr.to_be()) return v;
  return std::nullopt;
}

TEST(PolicyCompile, IdentitiesAndIpcache) {
  Config cfg = small(
      "[{'name': 'p', 'podSelector': {'matchLabels': {'app': 'a'}}, 'ingress': [{'from':"
      " [{'ipBlock': {'cidr': '10.0.0.0/8', 'except': ['10.1.0.0/16']}},"
      "  {'ipBlock': {'cidr': '10.0.0.0/8'}}, {'ipBlock': {'cidr': '172.20.0.3/32'}}]}]}]");
  auto plan = compile_policies(cfg, {*Ipv4::parse("198.18.0.1")});
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  EXPECT_TRUE(plan->active);
  // Sorted by (namespace, labels, ipBlocks holding the address): default{app=a},
  // default{app=a} in 172.20.0.3/32 (a2's address), default{app=b}, other{app=a}.
  auto a = ipcache_at(*plan, "172.20.0.2/32"), a2 = ipcache_at(*plan, "172.20.0.3/32"),
       b = ipcache_at(*plan, "172.20.0.4/32"), c = ipcache_at(*plan, "172.20.0.5/32");
  ASSERT_TRUE(a && a2 && b && c);
  EXPECT_EQ(a->identity, uint32_t{MOAT_ID_FIRST_DYNAMIC});
  EXPECT_EQ(a2->identity, MOAT_ID_FIRST_DYNAMIC + 1u);  // same labels, but an ipBlock holds it
  EXPECT_EQ(b->identity, MOAT_ID_FIRST_DYNAMIC + 2u);
  EXPECT_EQ(c->identity, MOAT_ID_FIRST_DYNAMIC + 3u);
  EXPECT_EQ(a->flags, MOAT_ID_F_CONTAINER | MOAT_ID_F_INGRESS_ISOLATED);
  EXPECT_EQ(a2->flags, MOAT_ID_F_CONTAINER | MOAT_ID_F_INGRESS_ISOLATED);
  EXPECT_EQ(b->flags, uint32_t{MOAT_ID_F_CONTAINER});
  EXPECT_EQ(c->flags, uint32_t{MOAT_ID_F_CONTAINER});  // another namespace
  EXPECT_EQ(plan->identity_names.at(a->identity), "default{app=a} [a]");
  EXPECT_EQ(plan->identity_names.at(a2->identity), "default{app=a} [a2] (in 172.20.0.3/32)");
  // The host: gateway, given addresses, 127.0.0.0/8; no ipBlock holds them.
  EXPECT_EQ(ipcache_at(*plan, "172.20.0.1/32")->identity, uint32_t{MOAT_ID_HOST});
  EXPECT_EQ(ipcache_at(*plan, "198.18.0.1/32")->identity, uint32_t{MOAT_ID_HOST});
  EXPECT_EQ(ipcache_at(*plan, "127.0.0.0/8")->identity, uint32_t{MOAT_ID_HOST});
  EXPECT_EQ(plan->identity_names.at(MOAT_ID_HOST), "host");
  // CIDRs: one identity per distinct prefix; a container's /32 stays the container's.
  auto wide = ipcache_at(*plan, "10.0.0.0/8"), except = ipcache_at(*plan, "10.1.0.0/16");
  ASSERT_TRUE(wide && except);
  EXPECT_NE(wide->identity, except->identity);
  EXPECT_GE(wide->identity, MOAT_ID_FIRST_DYNAMIC + 4u);
  EXPECT_EQ(plan->ipcache.size(), 4u + 1 + 1 + 1 + 2);
  EXPECT_EQ(plan->identity_names.at(wide->identity), "cidr 10.0.0.0/8");
  // The ipBlock 172.20.0.3/32 peer is a2's identity; a's never is.
  for (const auto& [k, v] : plan->entries) EXPECT_NE(k.peer, a->identity);
  EXPECT_TRUE(std::any_of(plan->entries.begin(), plan->entries.end(),
                          [&](const auto& e) { return e.first.peer == a2->identity; }));
}

// The same input compiles to the same identities and entries, whatever the
// order of containers and of excepts (re-applying writes nothing).
TEST(PolicyCompile, IpBlockIdentitiesAreStable) {
  const std::string policies =
      "[{'name': 'p', 'podSelector': {'matchLabels': {'app': 'a'}}, 'egress': [{'to':"
      " [{'ipBlock': {'cidr': '172.20.0.0/29', 'except': ['172.20.0.4/32', '172.20.0.2/32']}}]},"
      " {'to': [{'ipBlock': {'cidr': '172.20.0.0/16'}}], 'ports': [{'port': 80}]}]}]";
  Config one = small(policies);
  Config two = small(policies);
  std::reverse(two.containers.begin(), two.containers.end());
  std::swap(two.policies[0].egress[0].peers[0].ip_block.except[0],
            two.policies[0].egress[0].peers[0].ip_block.except[1]);
  auto p1 = compile_policies(one), p1again = compile_policies(one), p2 = compile_policies(two);
  ASSERT_TRUE(p1 && p1again && p2);
  auto same_plan = [](const PolicyPlan& x, const PolicyPlan& y) {
    return x.ipcache.size() == y.ipcache.size() && x.entries.size() == y.entries.size() &&
           std::equal(x.ipcache.begin(), x.ipcache.end(), y.ipcache.begin(),
                      [](const auto& l, const auto& r) {
                        return l.first.prefixlen == r.first.prefixlen &&
                               l.first.addr == r.first.addr &&
                               l.second.identity == r.second.identity &&
                               l.second.flags == r.second.flags;
                      }) &&
           std::equal(x.entries.begin(), x.entries.end(), y.entries.begin(),
                      [](const auto& l, const auto& r) {
                        return std::memcmp(&l.first, &r.first, sizeof l.first) == 0 &&
                               l.second.action == r.second.action &&
                               l.second.rule_id == r.second.rule_id;
                      });
  };
  EXPECT_TRUE(same_plan(*p1, *p1again));
  EXPECT_TRUE(same_plan(*p1, *p2));
}

std::vector<std::pair<moat_policy_key, moat_policy_val>> entries_of(const Config& cfg) {
  auto plan = compile_policies(cfg);
  EXPECT_TRUE(plan.has_value()) << plan.error().message();
  return plan ? plan->entries : std::vector<std::pair<moat_policy_key, moat_policy_val>>{};
}

std::string show(const std::vector<std::pair<moat_policy_key, moat_policy_val>>& entries) {
  std::string out;
  for (const auto& [k, v] : entries)
    out += "\n  " + std::to_string(k.subject) + " " + std::to_string(k.peer) + " " +
           std::to_string(k.dir) + " " + std::to_string(k.proto) + "/" +
           std::to_string(ntohs(k.port)) + " -> " + std::to_string(v.action) + " rule " +
           std::to_string(v.rule_id);
  return out;
}

constexpr uint32_t kA = MOAT_ID_FIRST_DYNAMIC, kB = MOAT_ID_FIRST_DYNAMIC + 1;

TEST(PolicyCompile, OneAllowIsOneEntry) {
  auto e = entries_of(small(
      "[{'name': 'p', 'podSelector': {'matchLabels': {'app': 'a'}}, 'ingress': [{'from':"
      " [{'podSelector': {'matchLabels': {'app': 'b'}}}], 'ports': [{'port': 80}]}]}]"));
  ASSERT_EQ(e.size(), 1u) << show(e);
  EXPECT_EQ(e[0].first.subject, kA);
  EXPECT_EQ(e[0].first.peer, kB);
  EXPECT_EQ(e[0].first.dir, MOAT_POLICY_INGRESS);
  EXPECT_EQ(e[0].first.proto, IPPROTO_TCP);
  EXPECT_EQ(e[0].first.port, htons(80));
  EXPECT_EQ(e[0].second.action, uint32_t{MOAT_POLICY_ALLOW});
  EXPECT_EQ(e[0].second.rule_id, 0u);
}

TEST(PolicyCompile, DefaultDenyHasNoEntries) {
  auto plan = compile_policies(small("[{'name': 'p', 'podSelector': {}, 'policyTypes': ['Egress']}]"));
  ASSERT_TRUE(plan.has_value());
  EXPECT_TRUE(plan->entries.empty());
  EXPECT_EQ(ipcache_at(*plan, "172.20.0.4/32")->flags,
            MOAT_ID_F_CONTAINER | MOAT_ID_F_EGRESS_ISOLATED);
}

TEST(PolicyCompile, PortRangesExpandAndFullRangeIsAnyPort) {
  auto e = entries_of(small(
      "[{'name': 'p', 'podSelector': {'matchLabels': {'app': 'a'}}, 'ingress': [{'ports':"
      " [{'port': 8000, 'endPort': 8002}, {'protocol': 'UDP', 'port': 1, 'endPort': 65535},"
      "  {'protocol': 'ICMP'}]}]}]"));
  ASSERT_EQ(e.size(), 6u) << show(e);
  for (const auto& [k, v] : e) EXPECT_EQ(k.peer, uint32_t{MOAT_ID_ANY});
  EXPECT_EQ(e[0].first.proto, IPPROTO_ICMP);
  EXPECT_EQ(e[0].first.port, 0);
  EXPECT_EQ(e[1].first.port, htons(8000));
  EXPECT_EQ(e[3].first.port, htons(8002));
  EXPECT_EQ(e[4].first.proto, IPPROTO_UDP);
  EXPECT_EQ(e[4].first.port, 0);
  EXPECT_EQ(e[5].first.proto, IPPROTO_ICMPV6);  // ICMP's on IPv6 flows
  EXPECT_EQ(e[5].first.port, 0);
}

// Evaluates a flow between two containers of small() on the compiled plan,
// checking the model agrees.
PolicyVerdict flow(const Config& cfg, const std::string& from, const std::string& to,
                   uint8_t proto, uint16_t port) {
  auto plan = compile_policies(cfg);
  EXPECT_TRUE(plan.has_value());
  PolicyEndpoint f = resolve_endpoint(cfg, from).value(), t = resolve_endpoint(cfg, to).value();
  PolicyVerdict c = evaluate_compiled(*plan, f.ip, t.ip, proto, port);
  EXPECT_TRUE(same(evaluate_model(cfg, f, t, proto, port), c)) << from << " -> " << to;
  return c;
}

TEST(PolicyPrecedence, DenyBeatsAllowAcrossPolicies) {
  Config cfg = small(
      "[{'name': 'allow', 'podSelector': {'matchLabels': {'app': 'a'}}, 'ingress': [{}]},"
      " {'name': 'deny', 'podSelector': {}, 'ingress': [{'action': 'deny', 'from':"
      "  [{'podSelector': {'matchLabels': {'app': 'b'}}}], 'ports': [{'port': 81}]}]}]");
  PolicyVerdict v = flow(cfg, "b", "a", IPPROTO_TCP, 81);
  EXPECT_FALSE(v.allowed);
  EXPECT_EQ(v.drop_reason, -MOAT_DROP_POLICY_DENY);
  EXPECT_EQ(v.ingress.rule_id, 1);
  EXPECT_TRUE(flow(cfg, "b", "a", IPPROTO_TCP, 80).allowed);
  EXPECT_TRUE(flow(cfg, "a2", "a", IPPROTO_TCP, 81).allowed);
  // The deny-only policy selects b too, without isolating it.
  EXPECT_TRUE(flow(cfg, "a", "b", IPPROTO_TCP, 80).allowed);
}

TEST(PolicyPrecedence, AnyPeerDenyBeatsSpecificAllow) {
  Config cfg = small(
      "[{'name': 'p', 'podSelector': {'matchLabels': {'app': 'a'}}, 'ingress': ["
      "  {'from': [{'podSelector': {'matchLabels': {'app': 'b'}}}]},"
      "  {'action': 'deny', 'ports': [{'port': 80}]}]}]");
  auto e = entries_of(cfg);
  EXPECT_EQ(e.size(), 3u) << show(e);  // b: (TCP, 80) deny, (any) allow; ANY: (TCP, 80) deny
  PolicyVerdict v = flow(cfg, "b", "a", IPPROTO_TCP, 80);
  EXPECT_FALSE(v.allowed);
  EXPECT_EQ(v.ingress.rule_id, 1);
  EXPECT_TRUE(flow(cfg, "b", "a", IPPROTO_TCP, 81).allowed);
  EXPECT_TRUE(flow(cfg, "b", "a", IPPROTO_UDP, 80).allowed);
  EXPECT_EQ(flow(cfg, "a2", "a", IPPROTO_TCP, 81).drop_reason, -MOAT_DROP_POLICY_DEFAULT_DENY);
  EXPECT_EQ(flow(cfg, "a2", "a", IPPROTO_TCP, 80).drop_reason, -MOAT_DROP_POLICY_DENY);
}

TEST(PolicyPrecedence, PortDenyBeatsProtocolAllow) {
  Config cfg = small(
      "[{'name': 'p', 'podSelector': {'matchLabels': {'app': 'a'}}, 'ingress': ["
      "  {'ports': [{'protocol': 'UDP'}]},"
      "  {'action': 'deny', 'ports': [{'protocol': 'UDP', 'port': 53}]}]}]");
  auto e = entries_of(cfg);
  ASSERT_EQ(e.size(), 2u) << show(e);
  EXPECT_FALSE(flow(cfg, "b", "a", IPPROTO_UDP, 53).allowed);
  EXPECT_TRUE(flow(cfg, "b", "a", IPPROTO_UDP, 54).allowed);
  EXPECT_FALSE(flow(cfg, "b", "a", IPPROTO_TCP, 54).allowed);
}

TEST(PolicyPrecedence, RedundantCopiesAreDropped) {
  // Every peer of the selector gets no copy of the wildcard deny: ANY answers it.
  auto e = entries_of(small(
      "[{'name': 'p', 'podSelector': {'matchLabels': {'app': 'a'}}, 'ingress': ["
      "  {'from': [{'podSelector': {}}], 'ports': [{'port': 80}]},"
      "  {'action': 'deny', 'ports': [{'port': 22}]}]}]"));
  EXPECT_EQ(e.size(), 3u) << show(e);  // a: 80 allow, b: 80 allow, ANY: 22 deny
}

// A container attached twice: one identity per address class, so an ipBlock
// holding one of its addresses matches that address only, both ways.
TEST(PolicyCompile, IpBlockPerAttachment) {
  Config cfg = parse_ok(J(
      "{'networks': [{'name': 'n', 'subnet': '172.20.0.0/16'},"
      "              {'name': 'm', 'subnet': '172.21.0.0/16'}],"
      " 'containers': [{'name': 'a', 'labels': {'app': 'a'}, 'networks': ['n']},"
      "                {'name': 'twice', 'labels': {'app': 't'}, 'networks': ['n', 'm']}],"
      " 'policies': [{'name': 'p', 'podSelector': {'matchLabels': {'app': 'a'}},"
      "   'policyTypes': ['Ingress', 'Egress'],"
      "   'ingress': [{'from': [{'ipBlock': {'cidr': '172.21.0.0/16'}}]}],"
      "   'egress': [{'to': [{'ipBlock': {'cidr': '172.20.0.0/16', 'except':"
      "                                   ['172.20.0.0/30']}}]}]}]}"));
  auto plan = compile_policies(cfg);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  // twice is 172.20.0.3 (in the except) and 172.21.0.2 (in the ingress block).
  auto on_n = ipcache_at(*plan, "172.20.0.3/32"), on_m = ipcache_at(*plan, "172.21.0.2/32");
  ASSERT_TRUE(on_n && on_m);
  EXPECT_NE(on_n->identity, on_m->identity);
  EXPECT_EQ(on_n->flags, on_m->flags);
  EXPECT_EQ(plan->identity_names.at(on_m->identity), "default{app=t} [twice] (in 172.21.0.0/16)");
  EXPECT_TRUE(flow(cfg, "twice@m", "a", IPPROTO_TCP, 80).allowed);
  EXPECT_EQ(flow(cfg, "twice@n", "a", IPPROTO_TCP, 80).drop_reason, -MOAT_DROP_POLICY_DEFAULT_DENY);
  EXPECT_FALSE(flow(cfg, "a", "twice@n", IPPROTO_TCP, 80).allowed);  // excepted
  EXPECT_FALSE(flow(cfg, "a", "twice@m", IPPROTO_TCP, 80).allowed);  // not in the block
  EXPECT_TRUE(flow(cfg, "a", "172.20.9.9", IPPROTO_TCP, 80).allowed);
  EXPECT_FALSE(flow(cfg, "a", "172.20.0.1", IPPROTO_TCP, 80).allowed);  // the gateway: excepted
}

// Host addresses are split like containers': the gateway of n is in the
// block, the uplink address and loopback are not; `{"host": true}` still
// means all of them.
TEST(PolicyCompile, IpBlockOverHostAddresses) {
  Config cfg = small(
      "[{'name': 'p', 'podSelector': {'matchLabels': {'app': 'a'}}, 'ingress': ["
      "  {'from': [{'ipBlock': {'cidr': '172.20.0.0/30'}}], 'ports': [{'port': 80}]},"
      "  {'from': [{'host': true}], 'ports': [{'port': 22}]},"
      "  {'from': [{'ipBlock': {'cidr': '127.0.0.0/16'}}], 'ports': [{'port': 23}]}]}]");
  const Ipv4 uplink = *Ipv4::parse("198.18.0.1");
  auto plan = compile_policies(cfg, {uplink});
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  auto gw = ipcache_at(*plan, "172.20.0.1/32"), up = ipcache_at(*plan, "198.18.0.1/32"),
       lo = ipcache_at(*plan, "127.0.0.0/8"), lo16 = ipcache_at(*plan, "127.0.0.0/16");
  ASSERT_TRUE(gw && up && lo && lo16);
  EXPECT_EQ(up->identity, uint32_t{MOAT_ID_HOST});
  EXPECT_EQ(lo->identity, uint32_t{MOAT_ID_HOST});
  EXPECT_NE(gw->identity, uint32_t{MOAT_ID_HOST});
  EXPECT_NE(lo16->identity, uint32_t{MOAT_ID_HOST});
  EXPECT_NE(lo16->identity, gw->identity);
  EXPECT_EQ(gw->flags, 0u);
  EXPECT_EQ(plan->identity_names.at(gw->identity), "host (in 172.20.0.0/30)");
  const Ipv4 a = *Ipv4::parse("172.20.0.2");
  auto allowed = [&](const char* from, uint16_t port) {
    PolicyEndpoint f = resolve_endpoint(cfg, from, {uplink}).value();
    PolicyEndpoint t = resolve_endpoint(cfg, "a").value();
    PolicyVerdict m = evaluate_model(cfg, f, t, IPPROTO_TCP, port);
    PolicyVerdict c = evaluate_compiled(*plan, f.ip, a, IPPROTO_TCP, port);
    EXPECT_TRUE(same(m, c)) << from << " " << port;
    return c.allowed;
  };
  EXPECT_TRUE(allowed("172.20.0.1", 80));
  EXPECT_FALSE(allowed("198.18.0.1", 80));
  EXPECT_FALSE(allowed("127.0.0.1", 80));
  for (const char* host : {"172.20.0.1", "198.18.0.1", "127.0.0.1", "127.1.0.1"})
    EXPECT_TRUE(allowed(host, 22)) << host;
  EXPECT_TRUE(allowed("127.0.0.1", 23));
  EXPECT_FALSE(allowed("127.1.0.1", 23));
  EXPECT_FALSE(allowed("172.20.0.1", 23));
  EXPECT_TRUE(allowed("a2", 80));  // 172.20.0.3: a container inside the block
  EXPECT_FALSE(allowed("b", 80));  // 172.20.0.4
}

TEST(PolicyCompile, RuleTable) {
  Config cfg = small(
      "[{'name': 'p', 'podSelector': {}, 'ingress': [{}], 'egress': [{'action': 'deny', 'to':"
      " [{'host': true}]}]}, {'name': 'q', 'podSelector': {}, 'ingress': [{'ports':"
      " [{'port': 80}]}]}]");
  auto plan = compile_policies(cfg);
  ASSERT_TRUE(plan.has_value());
  ASSERT_EQ(plan->rules.size(), 3u);
  EXPECT_EQ(plan->rules[1].direction, "egress");
  EXPECT_EQ(plan->rules[1].action, "deny");
  EXPECT_EQ(plan->rules[1].text, "default/p egress[0]: deny to the host on any port");
  EXPECT_EQ(plan->rules[1].path, "policies[0].egress[0]");
  EXPECT_EQ(plan->rules[2].policy, "q");
  EXPECT_EQ(plan->rules[2].rule_index, 0);
}

TEST(PolicyCompile, IpcacheCapacity) {
  Config cfg;
  cfg.source = "big.json";
  cfg.networks.push_back(Network{"n", *Ipv4Prefix::parse("10.0.0.0/8"), *Ipv4::parse("10.0.0.1")});
  for (uint32_t i = 0; i < MOAT_MAX_IPCACHE; ++i) {
    Container c;
    c.name = "c" + std::to_string(i);
    c.networks.push_back(Attachment{"n", Ipv4{(10u << 24) + 2 + i}});
    cfg.containers.push_back(std::move(c));
  }
  Policy p;
  p.name = "p";
  p.isolates_ingress = true;
  cfg.policies.push_back(p);
  auto plan = compile_policies(cfg);
  ASSERT_FALSE(plan.has_value());
  EXPECT_NE(plan.error().message().find("65538 ipcache entries"), std::string::npos)
      << plan.error().message();
  EXPECT_NE(plan.error().message().find("at most 65536"), std::string::npos);
}

TEST(PolicyCompile, PolicyMapCapacity) {
  // 17 isolated identities, each allowing 65534 ports from one peer.
  Json containers = Json::array();
  for (int i = 0; i < 17; ++i)
    containers.push_back({{"name", "c" + std::to_string(i)},
                          {"labels", {{"i", std::to_string(i)}}},
                          {"networks", {"n"}}});
  Json doc = {{"networks", J("[{'name': 'n', 'subnet': '10.0.0.0/16'}]")},
              {"containers", containers},
              {"policies", J("[{'name': 'p', 'podSelector': {}, 'ingress': [{'from': [{'podSelector':"
                             " {'matchLabels': {'i': '0'}}}], 'ports': [{'port': 2, 'endPort':"
                             " 65535}]}]}]")}};
  auto plan = compile_policies(parse_ok(doc));
  ASSERT_FALSE(plan.has_value());
  EXPECT_NE(plan.error().message().find("more than 1048576 policy entries"), std::string::npos)
      << plan.error().message();
}

// ---------------------------------------------------------------------------
// The seed story: policies/segmentation-policies.json on policies/invoice-app.json

std::string read(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(PolicyFiles, InvoiceAppSegmentation) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(MOAT_SOURCE_DIR) / "policies";
  ParseResult main = parse_config(read(dir / "invoice-app.json"), "invoice-app.json");
  ASSERT_TRUE(main.problems.empty()) << render(main.problems);
  PolicyFileResult extra =
      parse_policy_file(read(dir / "segmentation-policies.json"), "segmentation-policies.json");
  ASSERT_TRUE(extra.problems.empty()) << render(extra.problems);
  Config cfg = *main.config;
  ASSERT_TRUE(merge_policy_file(cfg, *extra.file).empty());
  auto plan = compile_policies(cfg);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  struct Case {
    const char* from;
    const char* to;
    uint16_t port;
    bool allowed;
  };
  const Case cases[] = {
      {"rechnung", "datenbank", 7000, true},    {"sicherheit", "datenbank", 7000, false},
      {"rechnung", "sicherheit", 6000, true},   {"datenbank", "sicherheit", 6000, false},
      {"host", "rechnung", 5000, true},         {"host", "sicherheit", 6000, false},
      {"host", "datenbank", 7000, false},       {"world", "rechnung", 5000, true},
      // rechnung-nur-5000 admits ipBlock 0.0.0.0/0, which holds sicherheit's address too.
      {"sicherheit", "rechnung", 5000, true},   {"rechnung", "datenbank", 6000, false},
      {"rechnung", "world", 443, true},
  };
  for (const Case& c : cases) {
    PolicyEndpoint from = resolve_endpoint(cfg, c.from).value();
    PolicyEndpoint to = resolve_endpoint(cfg, c.to).value();
    PolicyVerdict m = evaluate_model(cfg, from, to, IPPROTO_TCP, c.port);
    PolicyVerdict k = evaluate_compiled(*plan, from.ip, to.ip, IPPROTO_TCP, c.port);
    EXPECT_EQ(m.allowed, c.allowed) << c.from << " -> " << c.to << ":" << c.port << ": " << m.text;
    EXPECT_TRUE(same(m, k)) << c.from << " -> " << c.to << ":" << c.port;
  }
}

TEST(PolicyEndpoints, Resolve) {
  Config cfg = small("[]");
  EXPECT_EQ(resolve_endpoint(cfg, "a").value().ip.str(), "172.20.0.2");
  EXPECT_EQ(resolve_endpoint(cfg, "a@n").value().kind, PolicyEndpoint::Kind::container);
  EXPECT_EQ(resolve_endpoint(cfg, "host").value().ip.str(), "172.20.0.1");
  EXPECT_EQ(resolve_endpoint(cfg, "172.20.0.1").value().kind, PolicyEndpoint::Kind::host);
  EXPECT_EQ(resolve_endpoint(cfg, "172.20.0.4").value().container, "b");
  EXPECT_EQ(resolve_endpoint(cfg, "8.8.8.8").value().kind, PolicyEndpoint::Kind::address);
  EXPECT_EQ(resolve_endpoint(cfg, "world").value().kind, PolicyEndpoint::Kind::address);
  auto bad = resolve_endpoint(cfg, "bb");
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message().find("did you mean \"b\"?"), std::string::npos);
  EXPECT_FALSE(resolve_endpoint(cfg, "a@zz").has_value());
}

// ---------------------------------------------------------------------------
// IPv6: `ipcache6`, generation for generation beside `ipcache`

// Network n is dual-stack: a (app=a), b (app=b) have IPv6 addresses, c
// (ipv6 off) has none.
Config dual(const std::string& policies) {
  return parse_ok(
      J("{'networks': [{'name': 'n', 'subnet': '172.20.0.0/16', 'ipv6_subnet': 'fd00:1::/64'}],"
        " 'containers': [{'name': 'a', 'labels': {'app': 'a'}, 'networks': ['n']},"
        "                {'name': 'b', 'labels': {'app': 'b'}, 'networks': ['n']},"
        "                {'name': 'c', 'labels': {'app': 'c'},"
        "                 'networks': [{'network': 'n', 'ipv6': false}]}],"
        " 'policies': " +
        policies + "}"));
}

std::optional<moat_ipcache_val> ipcache6_at(const PolicyPlan& plan, const std::string& prefix) {
  Ipv6Prefix p = *Ipv6Prefix::parse(prefix);
  for (const auto& [k, v] : plan.ipcache6)
    if (k.prefixlen == p.len && std::equal(p.addr.bytes.begin(), p.addr.bytes.end(), k.addr.b))
      return v;
  return std::nullopt;
}

// A container's first attachment (a failure, not a crash, when it has none).
Attachment attachment_of(const Config& cfg, const std::string& container) {
  const Container* c = cfg.find_container(container);
  if (c && !c->networks.empty()) return c->networks[0];
  ADD_FAILURE() << "no attachment of " << container;
  return Attachment{};
}

Ipv6 ip6_of(const Config& cfg, const std::string& container) {
  return attachment_of(cfg, container).ip6.value_or(Ipv6{});
}

std::string v6(const Ipv6& a, int len = 128) { return a.str() + "/" + std::to_string(len); }

// Every IPv6 flow between the containers, the host and a few addresses:
// the model and the compiled entries agree.
void check_all_ipv6(const Config& cfg, const std::vector<std::string>& addresses) {
  auto plan = compile_policies(cfg);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  std::vector<std::string> names = addresses;
  names.push_back("host");
  for (const Container& c : cfg.containers)
    if (c.networks.at(0).ip6) names.push_back(c.name);
  for (const std::string& f : names) {
    for (const std::string& t : names) {
      PolicyEndpoint from = ipv6_endpoint(cfg, resolve_endpoint(cfg, f).value()).value();
      PolicyEndpoint to = ipv6_endpoint(cfg, resolve_endpoint(cfg, t).value()).value();
      for (auto [proto, port] : kProbes) {
        PolicyVerdict m = evaluate_model(cfg, from, to, proto, port);
        PolicyVerdict c = evaluate_compiled(*plan, from, to, proto, port);
        EXPECT_TRUE(same(m, c)) << f << " -> " << t << " " << int{proto} << "/" << port;
      }
    }
  }
}

// The same over IPv4, for configurations whose pods are not x/y/z's
// (check_all() names those): the containers by name.
void check_all_ipv4(const Config& cfg, const std::vector<std::string>& addresses) {
  auto plan = compile_policies(cfg);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  std::vector<std::string> names = addresses;
  names.push_back("host");
  for (const Container& c : cfg.containers) names.push_back(c.name);
  for (const std::string& f : names) {
    for (const std::string& t : names) {
      PolicyEndpoint from = resolve_endpoint(cfg, f).value();
      PolicyEndpoint to = resolve_endpoint(cfg, t).value();
      for (auto [proto, port] : kProbes) {
        PolicyVerdict m = evaluate_model(cfg, from, to, proto, port);
        PolicyVerdict c = evaluate_compiled(*plan, from, to, proto, port);
        EXPECT_TRUE(same(m, c)) << f << " -> " << t << " " << int{proto} << "/" << port;
      }
    }
  }
}

// Without ipBlocks holding its addresses (none here), a container's IPv6
// address has its IPv4 address's identity.
TEST(PolicyCompile6, ContainerIpv6SharesItsIpv4Identity) {
  Config cfg = dual(
      "[{'name': 'p', 'podSelector': {'matchLabels': {'app': 'a'}},"
      " 'ingress': [{'from': [{'podSelector': {'matchLabels': {'app': 'b'}}}]}]}]");
  ASSERT_FALSE(cfg.containers.empty());  // it parsed
  auto plan = compile_policies(cfg);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  for (const char* name : {"a", "b"}) {
    const Attachment at = attachment_of(cfg, name);
    auto four = ipcache_at(*plan, at.ip.str() + "/32"), six = ipcache6_at(*plan, v6(*at.ip6));
    ASSERT_TRUE(four && six) << name;
    EXPECT_EQ(six->identity, four->identity) << name;
    EXPECT_EQ(six->flags, four->flags) << name;
  }
  auto a_six = ipcache6_at(*plan, v6(ip6_of(cfg, "a")));
  ASSERT_TRUE(a_six);
  EXPECT_EQ(a_six->flags, MOAT_ID_F_CONTAINER | MOAT_ID_F_INGRESS_ISOLATED);
  // The IPv6 gateway and ::1 are the host; ::/0 is the IPv6 world.
  EXPECT_EQ(ipcache6_at(*plan, v6(cfg.networks[0].gateway6))->identity, uint32_t{MOAT_ID_HOST});
  EXPECT_EQ(ipcache6_at(*plan, "::1/128")->identity, uint32_t{MOAT_ID_HOST});
  auto world6 = ipcache6_at(*plan, "::/0");
  ASSERT_TRUE(world6);
  EXPECT_EQ(plan->identity_names.at(world6->identity), "world (IPv6)");
  EXPECT_EQ(plan->ipcache6.size(), 2u + 1 + 1 + 1);  // a, b (c has none), gateway, ::1, ::/0
  // Sorted by (prefixlen, address), as the IPv4 list.
  EXPECT_TRUE(std::is_sorted(plan->ipcache6.begin(), plan->ipcache6.end(),
                             [](const auto& x, const auto& y) {
                               if (x.first.prefixlen != y.first.prefixlen)
                                 return x.first.prefixlen < y.first.prefixlen;
                               return std::memcmp(x.first.addr.b, y.first.addr.b, 16) < 0;
                             }));
  // b reaches a over IPv6 as over IPv4; the host does not.
  const Ipv6 a6 = ip6_of(cfg, "a"), b6 = ip6_of(cfg, "b");
  EXPECT_TRUE(evaluate_compiled(*plan, b6, a6, IPPROTO_TCP, 80).allowed);
  EXPECT_FALSE(evaluate_compiled(*plan, cfg.networks[0].gateway6, a6, IPPROTO_TCP, 80).allowed);
  EXPECT_TRUE(evaluate_compiled(*plan, a6, b6, IPPROTO_TCP, 80).allowed);
  check_all_ipv6(cfg, {"2001:db8::7"});
}

// 0.0.0.0/0 is every IPv4 address and ::/0 every IPv6 one: neither lets the
// other family through, though a miss in either cache is MOAT_ID_WORLD.
TEST(PolicyCompile6, WorldOfEachFamilyStaysApart) {
  Config cfg = dual(
      "[{'name': 'p', 'podSelector': {'matchLabels': {'app': 'a'}}, 'policyTypes': ['Egress'],"
      " 'egress': [{'to': [{'ipBlock': {'cidr': '0.0.0.0/0'}}]},"
      "            {'to': [{'ipBlock': {'cidr': '::/0'}}], 'ports': [{'port': 443}]}]}]");
  ASSERT_FALSE(cfg.containers.empty());  // it parsed
  auto plan = compile_policies(cfg);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  const Ipv6 a6 = ip6_of(cfg, "a"), out6 = *Ipv6::parse("2001:db8::7");
  const Ipv4 a4 = attachment_of(cfg, "a").ip;
  EXPECT_TRUE(evaluate_compiled(*plan, a4, *Ipv4::parse("8.8.8.8"), IPPROTO_TCP, 80).allowed);
  EXPECT_FALSE(evaluate_compiled(*plan, a6, out6, IPPROTO_TCP, 80).allowed);
  EXPECT_TRUE(evaluate_compiled(*plan, a6, out6, IPPROTO_TCP, 443).allowed);
  EXPECT_TRUE(evaluate_compiled(*plan, a4, *Ipv4::parse("8.8.8.8"), IPPROTO_UDP, 443).allowed);
  check_all_ipv6(cfg, {"2001:db8::7"});
}

TEST(PolicyCompile6, CidrAndExceptArePrefixesOfTheirOwn) {
  Config cfg = dual(
      "[{'name': 'p', 'podSelector': {'matchLabels': {'app': 'a'}},"
      " 'ingress': [{'from': [{'ipBlock': {'cidr': '2001:db8::/32',"
      "                                    'except': ['2001:db8:1::/48']}}]},"
      "             {'action': 'deny', 'from': [{'ipBlock': {'cidr': '2001:db8:2::/48'}}],"
      "              'ports': [{'port': 22}]}]}]");
  ASSERT_FALSE(cfg.containers.empty());  // it parsed
  auto plan = compile_policies(cfg);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  auto wide = ipcache6_at(*plan, "2001:db8::/32"), except = ipcache6_at(*plan, "2001:db8:1::/48"),
       deny = ipcache6_at(*plan, "2001:db8:2::/48");
  ASSERT_TRUE(wide && except && deny);
  EXPECT_NE(wide->identity, except->identity);
  EXPECT_NE(wide->identity, deny->identity);
  EXPECT_EQ(wide->flags, 0u);
  EXPECT_EQ(plan->identity_names.at(wide->identity), "cidr 2001:db8::/32");
  EXPECT_EQ(plan->identity_names.at(except->identity), "cidr 2001:db8:1::/48");
  // No IPv4 entry for them, and the IPv4 cache is what it was without IPv6.
  for (const auto& [k, v] : plan->ipcache) EXPECT_NE(v.identity, wide->identity);
  const Ipv6 a6 = ip6_of(cfg, "a");
  auto from = [&](const char* ip, uint16_t port) {
    return evaluate_compiled(*plan, *Ipv6::parse(ip), a6, IPPROTO_TCP, port).allowed;
  };
  EXPECT_TRUE(from("2001:db8::5", 80));
  EXPECT_FALSE(from("2001:db8:1::5", 80));  // excepted
  EXPECT_TRUE(from("2001:db8:2::5", 80));
  EXPECT_FALSE(from("2001:db8:2::5", 22));  // denied
  EXPECT_FALSE(from("2001:db9::5", 80));    // outside
  check_all_ipv6(cfg, {"2001:db8::5", "2001:db8:1::5", "2001:db8:2::5", "2001:db9::5"});
}

// An ipBlock holding a container's IPv6 address splits that address's
// identity off, as one holding its IPv4 address does for that one; one
// holding the IPv6 gateway splits the host.
TEST(PolicyCompile6, AddressesInsideABlockSplit) {
  Config probe = dual("[]");
  const Ipv6 b6 = ip6_of(probe, "b"), gw6 = probe.networks[0].gateway6;
  Config cfg = dual(
      "[{'name': 'p', 'podSelector': {'matchLabels': {'app': 'a'}},"
      " 'ingress': [{'from': [{'ipBlock': {'cidr': '" +
      v6(b6) +
      "'}},"
      "                       {'ipBlock': {'cidr': '" +
      v6(gw6) + "'}}]}]}]");
  ASSERT_FALSE(cfg.containers.empty());  // it parsed
  auto plan = compile_policies(cfg);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  const Ipv4 b4 = attachment_of(cfg, "b").ip;
  auto b_six = ipcache6_at(*plan, v6(b6)), b_four = ipcache_at(*plan, b4.str() + "/32");
  ASSERT_TRUE(b_six && b_four);
  EXPECT_NE(b_six->identity, b_four->identity);
  EXPECT_EQ(b_six->flags, b_four->flags);
  EXPECT_EQ(plan->identity_names.at(b_six->identity), "default{app=b} [b] (in " + v6(b6) + ")");
  EXPECT_EQ(plan->identity_names.at(b_four->identity), "default{app=b} [b]");
  auto gw = ipcache6_at(*plan, v6(gw6));
  ASSERT_TRUE(gw);
  EXPECT_NE(gw->identity, uint32_t{MOAT_ID_HOST});
  EXPECT_EQ(plan->identity_names.at(gw->identity), "host (in " + v6(gw6) + ")");
  EXPECT_EQ(ipcache_at(*plan, "172.20.0.1/32")->identity, uint32_t{MOAT_ID_HOST});
  const Ipv6 a6 = ip6_of(cfg, "a");
  EXPECT_TRUE(evaluate_compiled(*plan, b6, a6, IPPROTO_TCP, 80).allowed);
  EXPECT_TRUE(evaluate_compiled(*plan, gw6, a6, IPPROTO_TCP, 80).allowed);
  EXPECT_FALSE(evaluate_compiled(*plan, *Ipv6::parse("::1"), a6, IPPROTO_TCP, 80).allowed);
  // The block holds b's IPv6 address only: b's IPv4 traffic is not in it.
  const Ipv4 a4 = attachment_of(cfg, "a").ip;
  EXPECT_FALSE(evaluate_compiled(*plan, b4, a4, IPPROTO_TCP, 80).allowed);
  EXPECT_FALSE(evaluate_model(cfg, resolve_endpoint(cfg, "b").value(),
                              resolve_endpoint(cfg, "a").value(), IPPROTO_TCP, 80)
                   .allowed);
  check_all_ipv6(cfg, {"2001:db8::7"});
}

// ---------------------------------------------------------------------------
// ipBlocks match the packet's address, one family at a time (Kubernetes,
// Calico, Cilium): a block naming a container's IPv4 address says nothing
// of its IPv6 traffic, nor the reverse.

struct FamilyVerdicts {
  PolicyVerdict model, compiled;
};

// A flow between two sides of `cfg` in one family: the model's verdict and
// the compiled entries', which must agree.
FamilyVerdicts flow_in(const Config& cfg, const std::string& from, const std::string& to, bool ipv6,
                       uint16_t port = 80) {
  FamilyVerdicts out;
  auto plan = compile_policies(cfg);
  EXPECT_TRUE(plan.has_value()) << plan.error().message();
  if (!plan) return out;
  PolicyEndpoint f = resolve_endpoint(cfg, from).value(), t = resolve_endpoint(cfg, to).value();
  if (ipv6) {
    f = ipv6_endpoint(cfg, f).value();
    t = ipv6_endpoint(cfg, t).value();
  }
  out.model = evaluate_model(cfg, f, t, IPPROTO_TCP, port);
  out.compiled = evaluate_compiled(*plan, f, t, IPPROTO_TCP, port);
  EXPECT_TRUE(same(out.model, out.compiled))
      << from << " -> " << to << (ipv6 ? " over IPv6" : " over IPv4") << " port " << port;
  return out;
}

// Whether both evaluators admit the flow (each checked: a model that agrees
// with a wrong compiler is wrong too).
::testing::AssertionResult admits(const FamilyVerdicts& v) {
  if (v.model.allowed && v.compiled.allowed) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "model: " << v.model.text << "\n    compiled: " << v.compiled.text;
}
::testing::AssertionResult drops(const FamilyVerdicts& v) {
  if (!v.model.allowed && !v.compiled.allowed) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "model: " << v.model.text << "\n    compiled: " << v.compiled.text;
}

// An ipBlock holding b's IPv4 address only (its /32): a admits b's IPv4
// connections and not its IPv6 ones, and b's egress reaches a's IPv4
// address only, whatever b's IPv6 address shares with it otherwise.
TEST(PolicyFamilies, Ipv4BlockMatchesIpv4TrafficOnly) {
  Config probe = dual("[]");
  const std::string a4 = attachment_of(probe, "a").ip.str() + "/32",
                    b4 = attachment_of(probe, "b").ip.str() + "/32";
  Config cfg = dual(
      "[{'name': 'in', 'podSelector': {'matchLabels': {'app': 'a'}}, 'policyTypes': ['Ingress'],"
      "  'ingress': [{'from': [{'ipBlock': {'cidr': '" +
      b4 +
      "'}}]}]},"
      " {'name': 'out', 'podSelector': {'matchLabels': {'app': 'b'}}, 'policyTypes': ['Egress'],"
      "  'egress': [{'to': [{'ipBlock': {'cidr': '" +
      a4 + "'}}]}]}]");
  ASSERT_FALSE(cfg.containers.empty());  // it parsed
  auto plan = compile_policies(cfg);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  // b's addresses are of two classes now: its IPv4 one is in the block.
  auto b_four = ipcache_at(*plan, b4), b_six = ipcache6_at(*plan, v6(ip6_of(cfg, "b")));
  ASSERT_TRUE(b_four && b_six);
  EXPECT_NE(b_four->identity, b_six->identity);
  EXPECT_EQ(b_four->flags, b_six->flags);
  EXPECT_EQ(b_six->flags, MOAT_ID_F_CONTAINER | MOAT_ID_F_EGRESS_ISOLATED);
  EXPECT_EQ(plan->identity_names.at(b_six->identity), "default{app=b} [b]");
  EXPECT_EQ(plan->identity_names.at(b_four->identity), "default{app=b} [b] (in " + b4 + ")");
  EXPECT_TRUE(admits(flow_in(cfg, "b", "a", false)));
  FamilyVerdicts six = flow_in(cfg, "b", "a", true);
  EXPECT_TRUE(drops(six));
  // Each direction on its own: b's egress to a's IPv6 address and a's
  // ingress from b's IPv6 address are both default-denied.
  EXPECT_EQ(six.compiled.egress.outcome, PolicyOutcome::default_denied) << six.compiled.text;
  EXPECT_EQ(six.compiled.ingress.outcome, PolicyOutcome::default_denied) << six.compiled.text;
  EXPECT_EQ(six.model.egress.outcome, PolicyOutcome::default_denied) << six.model.text;
  EXPECT_EQ(six.model.ingress.outcome, PolicyOutcome::default_denied) << six.model.text;
  check_all_ipv4(cfg, {"203.0.113.5"});
  check_all_ipv6(cfg, {"2001:db8::7"});
}

// The reverse: an ipBlock of b's IPv6 /128 admits its IPv6 connections and
// not its IPv4 ones; a deny naming a's IPv6 /128 stops IPv6 only.
TEST(PolicyFamilies, Ipv6BlockMatchesIpv6TrafficOnly) {
  Config probe = dual("[]");
  const std::string a6 = v6(ip6_of(probe, "a")), b6 = v6(ip6_of(probe, "b"));
  Config cfg = dual(
      "[{'name': 'in', 'podSelector': {'matchLabels': {'app': 'a'}}, 'policyTypes': ['Ingress'],"
      "  'ingress': [{'from': [{'ipBlock': {'cidr': '" +
      b6 +
      "'}}]}]},"
      " {'name': 'no', 'podSelector': {'matchLabels': {'app': 'b'}},"
      "  'egress': [{'action': 'deny', 'to': [{'ipBlock': {'cidr': '" +
      a6 + "'}}], 'ports': [{'port': 22}]}]}]");
  ASSERT_FALSE(cfg.containers.empty());  // it parsed
  auto plan = compile_policies(cfg);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  auto b_four = ipcache_at(*plan, attachment_of(cfg, "b").ip.str() + "/32"),
       b_six = ipcache6_at(*plan, b6);
  ASSERT_TRUE(b_four && b_six);
  EXPECT_NE(b_four->identity, b_six->identity);
  EXPECT_TRUE(admits(flow_in(cfg, "b", "a", true)));
  FamilyVerdicts four = flow_in(cfg, "b", "a", false);
  EXPECT_TRUE(drops(four));
  EXPECT_EQ(four.compiled.drop_reason, -MOAT_DROP_POLICY_DEFAULT_DENY);
  // The deny names a's IPv6 address: b's IPv4 port 22 to a is not denied
  // (only default-denied by a's ingress), its IPv6 one is.
  FamilyVerdicts ssh6 = flow_in(cfg, "b", "a", true, 22), ssh4 = flow_in(cfg, "b", "a", false, 22);
  EXPECT_EQ(ssh6.compiled.egress.outcome, PolicyOutcome::denied);
  EXPECT_EQ(ssh6.model.egress.outcome, PolicyOutcome::denied);
  EXPECT_EQ(ssh4.compiled.egress.outcome, PolicyOutcome::not_isolated);
  EXPECT_EQ(ssh4.model.egress.outcome, PolicyOutcome::not_isolated);
  check_all_ipv4(cfg, {"203.0.113.5"});
  check_all_ipv6(cfg, {"2001:db8::7"});
}

// An except in one family takes a container out of that family's block
// only: its other address is still in the other family's block.
TEST(PolicyFamilies, ExceptInOneFamily) {
  Config probe = dual("[]");
  const std::string b4 = attachment_of(probe, "b").ip.str() + "/32", b6 = v6(ip6_of(probe, "b"));
  auto policy = [](const std::string& blocks) {
    return "[{'name': 'in', 'podSelector': {'matchLabels': {'app': 'a'}},"
           "  'policyTypes': ['Ingress'], 'ingress': [{'from': " +
           blocks + "}]}]";
  };
  Config no4 = dual(policy("[{'ipBlock': {'cidr': '172.20.0.0/16', 'except': ['" + b4 +
                           "']}}, {'ipBlock': {'cidr': 'fd00:1::/64'}}]"));
  ASSERT_FALSE(no4.containers.empty());  // it parsed
  EXPECT_TRUE(drops(flow_in(no4, "b", "a", false)));
  EXPECT_TRUE(admits(flow_in(no4, "b", "a", true)));
  EXPECT_TRUE(admits(flow_in(no4, "c", "a", false)));  // c is in the IPv4 block
  check_all_ipv4(no4, {"172.20.9.9"});
  check_all_ipv6(no4, {"fd00:1::99"});
  Config no6 =
      dual(policy("[{'ipBlock': {'cidr': '172.20.0.0/16'}},"
                  " {'ipBlock': {'cidr': 'fd00:1::/64', 'except': ['" +
                  b6 + "']}}]"));
  ASSERT_FALSE(no6.containers.empty());  // it parsed
  EXPECT_TRUE(admits(flow_in(no6, "b", "a", false)));
  EXPECT_TRUE(drops(flow_in(no6, "b", "a", true)));
  check_all_ipv4(no6, {"172.20.9.9"});
  check_all_ipv6(no6, {"fd00:1::99"});
}

// A container whose addresses are of two classes is still one pod to pod
// selectors: policies selecting it isolate and judge each of its
// identities, and peers selecting it admit each.
TEST(PolicyFamilies, PodSelectorsCoverEveryIdentityOfAContainer) {
  Config probe = dual("[]");
  const std::string a4 = attachment_of(probe, "a").ip.str() + "/32", b6 = v6(ip6_of(probe, "b"));
  // `p` isolates a both ways and admits b (by pods); the deny-only policies
  // of b name a's IPv4 address and b's IPv6 address, splitting both.
  Config cfg = dual(
      "[{'name': 'p', 'podSelector': {'matchLabels': {'app': 'a'}},"
      "  'ingress': [{'from': [{'podSelector': {'matchLabels': {'app': 'b'}}}]}],"
      "  'egress': [{'to': [{'podSelector': {'matchLabels': {'app': 'b'}}}]}]},"
      " {'name': 'r', 'podSelector': {'matchLabels': {'app': 'b'}},"
      "  'ingress': [{'action': 'deny', 'from': [{'ipBlock': {'cidr': '" +
      a4 +
      "'}}], 'ports': [{'port': 9}]}],"
      "  'egress': [{'action': 'deny', 'to': [{'ipBlock': {'cidr': '" +
      b6 + "'}}], 'ports': [{'port': 9}]}]}]");
  ASSERT_FALSE(cfg.containers.empty());  // it parsed
  auto plan = compile_policies(cfg);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  auto a_four = ipcache_at(*plan, a4), a_six = ipcache6_at(*plan, v6(ip6_of(cfg, "a")));
  ASSERT_TRUE(a_four && a_six);
  EXPECT_NE(a_four->identity, a_six->identity);
  const uint32_t both =
      MOAT_ID_F_CONTAINER | MOAT_ID_F_INGRESS_ISOLATED | MOAT_ID_F_EGRESS_ISOLATED;
  EXPECT_EQ(a_four->flags, both);
  EXPECT_EQ(a_six->flags, both);
  for (bool ipv6 : {false, true}) {
    EXPECT_TRUE(admits(flow_in(cfg, "b", "a", ipv6))) << (ipv6 ? "IPv6" : "IPv4");
    EXPECT_TRUE(admits(flow_in(cfg, "a", "b", ipv6))) << (ipv6 ? "IPv6" : "IPv4");
  }
  EXPECT_TRUE(drops(flow_in(cfg, "c", "a", false)));  // c has no IPv6 address
  // Port 9 from a to b: denied at b's ingress over IPv4 (a's IPv4 address
  // is in r's block), not over IPv6.
  EXPECT_TRUE(drops(flow_in(cfg, "a", "b", false, 9)));
  EXPECT_TRUE(admits(flow_in(cfg, "a", "b", true, 9)));
  check_all_ipv4(cfg, {"203.0.113.5"});
  check_all_ipv6(cfg, {"2001:db8::7"});
}

// Without ipBlocks holding container addresses, a container's two
// addresses keep one identity: the policy entries are exactly those of the
// same containers without IPv6.
TEST(PolicyFamilies, WithoutIpBlocksOneIdentityPerContainer) {
  const std::string policies =
      "[{'name': 'p', 'podSelector': {'matchLabels': {'app': 'a'}},"
      "  'ingress': [{'from': [{'podSelector': {'matchLabels': {'app': 'b'}}}],"
      "               'ports': [{'port': 80}]},"
      "              {'from': [{'ipBlock': {'cidr': '10.0.0.0/8'}},"
      "                        {'ipBlock': {'cidr': '2001:db8::/32'}}]}],"
      "  'egress': [{'to': [{'podSelector': {}}]}, {'action': 'deny', 'ports': [{'port': 22}]}]},"
      " {'name': 'q', 'podSelector': {'matchLabels': {'app': 'b'}},"
      "  'egress': [{'to': [{'ipBlock': {'cidr': '2001:db8:5::/48'}}],"
      "              'ports': [{'port': 443}]}]}]";
  Config cfg = dual(policies);
  ASSERT_FALSE(cfg.containers.empty());  // it parsed
  auto plan = compile_policies(cfg);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  for (const char* name : {"a", "b"}) {
    auto four = ipcache_at(*plan, attachment_of(cfg, name).ip.str() + "/32"),
         six = ipcache6_at(*plan, v6(ip6_of(cfg, name)));
    ASSERT_TRUE(four && six) << name;
    EXPECT_EQ(four->identity, six->identity) << name;
  }
  int container_identities = 0;
  for (const auto& [id, name] : plan->identity_names)
    container_identities += name.rfind("default{", 0) == 0;
  EXPECT_EQ(container_identities, 3);  // a, b, c
  // The same containers without IPv6 addresses: the same entries.
  Json doc =
      J("{'networks': [{'name': 'n', 'subnet': '172.20.0.0/16'}],"
        " 'containers': [{'name': 'a', 'labels': {'app': 'a'}, 'networks': ['n']},"
        "                {'name': 'b', 'labels': {'app': 'b'}, 'networks': ['n']},"
        "                {'name': 'c', 'labels': {'app': 'c'}, 'networks': ['n']}]}");
  doc["policies"] = J(policies);
  auto v4plan = compile_policies(parse_ok(doc));
  ASSERT_TRUE(v4plan.has_value()) << v4plan.error().message();
  EXPECT_EQ(plan->entries.size(), v4plan->entries.size()) << show(plan->entries);
  EXPECT_TRUE(std::equal(
      plan->entries.begin(), plan->entries.end(), v4plan->entries.begin(), v4plan->entries.end(),
      [](const auto& l, const auto& r) {
        return std::memcmp(&l.first, &r.first, sizeof l.first) == 0 &&
               l.second.action == r.second.action && l.second.rule_id == r.second.rule_id;
      }))
      << show(plan->entries) << "\n vs" << show(v4plan->entries);
  check_all_ipv4(cfg, {"10.1.2.3"});
  check_all_ipv6(cfg, {"2001:db8::7", "2001:db8:5::7"});
}

// A rule's ICMP is the echo protocol of the flow's family: ping stays
// admitted when a network turns IPv6 on, as a TCP port rule does.
TEST(PolicyFamilies, IcmpRulesCoverIcmpv6) {
  Config cfg = dual(
      "[{'name': 'ping', 'podSelector': {'matchLabels': {'app': 'a'}}, 'policyTypes': ['Ingress'],"
      "  'ingress': [{'ports': [{'protocol': 'ICMP'}]}]},"
      " {'name': 'no-ping', 'podSelector': {'matchLabels': {'app': 'b'}},"
      "  'policyTypes': ['Ingress'], 'ingress': [{'ports': [{'protocol': 'TCP'}]}]}]");
  ASSERT_FALSE(cfg.containers.empty());  // it parsed
  auto plan = compile_policies(cfg);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  auto verdicts = [&](const std::string& from, const std::string& to, bool ipv6, uint8_t proto) {
    PolicyEndpoint f = resolve_endpoint(cfg, from).value(), t = resolve_endpoint(cfg, to).value();
    if (ipv6) {
      f = ipv6_endpoint(cfg, f).value();
      t = ipv6_endpoint(cfg, t).value();
    }
    FamilyVerdicts v{evaluate_model(cfg, f, t, proto, 0), evaluate_compiled(*plan, f, t, proto, 0)};
    EXPECT_TRUE(same(v.model, v.compiled)) << from << " -> " << to << " proto " << int{proto};
    return v;
  };
  EXPECT_TRUE(admits(verdicts("b", "a", false, IPPROTO_ICMP)));
  EXPECT_TRUE(admits(verdicts("b", "a", true, IPPROTO_ICMPV6)));
  EXPECT_TRUE(drops(verdicts("a", "b", false, IPPROTO_ICMP)));
  EXPECT_TRUE(drops(verdicts("a", "b", true, IPPROTO_ICMPV6)));
  EXPECT_TRUE(drops(verdicts("b", "a", true, IPPROTO_UDP)));
  check_all_ipv6(cfg, {"2001:db8::7"});
  check_all_ipv4(cfg, {"203.0.113.5"});
}

TEST(PolicyCompile6, KubernetesObjectWithIpv6IpBlock) {
  Config cfg = dual(
      "[{'apiVersion': 'networking.k8s.io/v1', 'kind': 'NetworkPolicy',"
      "  'metadata': {'name': 'out', 'namespace': 'default'},"
      "  'spec': {'podSelector': {'matchLabels': {'app': 'a'}}, 'policyTypes': ['Egress'],"
      "           'egress': [{'to': [{'ipBlock': {'cidr': '::/0', 'except': ['fd00:1::/64']}}],"
      "                       'ports': [{'protocol': 'TCP', 'port': 443}]}]}}]");
  ASSERT_FALSE(cfg.containers.empty());  // it parsed
  auto plan = compile_policies(cfg);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  ASSERT_TRUE(ipcache6_at(*plan, "fd00:1::/64"));
  const Ipv6 a6 = ip6_of(cfg, "a"), b6 = ip6_of(cfg, "b");
  EXPECT_TRUE(evaluate_compiled(*plan, a6, *Ipv6::parse("2001:db8::7"), IPPROTO_TCP, 443).allowed);
  EXPECT_FALSE(evaluate_compiled(*plan, a6, b6, IPPROTO_TCP, 443).allowed);  // excepted
  EXPECT_FALSE(evaluate_compiled(*plan, a6, *Ipv6::parse("2001:db8::7"), IPPROTO_TCP, 80).allowed);
  // IPv4 is not in ::/0.
  const Ipv4 a4 = attachment_of(cfg, "a").ip;
  EXPECT_FALSE(evaluate_compiled(*plan, a4, *Ipv4::parse("8.8.8.8"), IPPROTO_TCP, 443).allowed);
  check_all_ipv6(cfg, {"2001:db8::7", "fd00:1::99"});
}

// Generated policy sets on dual-stack pods, with IPv6 blocks beside IPv4
// ones: model and compiled entries agree on IPv4 and on IPv6 flows.
TEST(PolicyCrossCheck6, GeneratedDualStackPolicySets) {
  std::mt19937 rng(16);
  for (int i = 0; i < 30; ++i) {
    Json policies = random_policies(rng, i);
    for (Json& p : policies) {
      Json& spec = p.contains("spec") ? p["spec"] : p;
      for (const char* d : {"ingress", "egress"}) {
        if (!spec.contains(d)) continue;
        for (Json& rule : spec[d])
          if (rng() % 2)
            rule[std::string(d) == "ingress" ? "from" : "to"].push_back(random_block6(rng));
      }
    }
    Json doc = xyz_document(policies);
    doc["networks"][0]["ipv6_subnet"] = "fd00:10::/64";
    Config cfg = parse_ok(doc);
    ASSERT_FALSE(cfg.containers.empty()) << doc.dump();
    const std::string label = "dual-stack set " + std::to_string(i);
    check_all(cfg, nullptr, label);
    check_all_ipv6(cfg, {"2001:db8::7", "2001:db8:1::7", "fd00:10::99"});
    if (HasFailure()) FAIL() << label << ": " << policies.dump();
  }
}

// Without IPv6 addresses or blocks the IPv4 side compiles as it always did.
TEST(PolicyCompile6, Ipv4OnlyConfigKeepsItsIpv4Plan) {
  Config cfg = small(
      "[{'name': 'p', 'podSelector': {'matchLabels': {'app': 'a'}}, 'ingress': [{'from':"
      " [{'ipBlock': {'cidr': '10.0.0.0/8', 'except': ['10.1.0.0/16']}}]}]}]");
  auto plan = compile_policies(cfg);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->ipcache.size(), 4u + 1 + 1 + 2);
  EXPECT_EQ(plan->ipcache6.size(), 2u);  // ::1 and ::/0
}

TEST(PolicyEndpoints, ResolveIpv6) {
  Config cfg = dual("[]");
  ASSERT_FALSE(cfg.containers.empty());  // it parsed
  const Ipv6 a6 = ip6_of(cfg, "a");
  PolicyEndpoint a = resolve_endpoint(cfg, a6.str()).value();
  EXPECT_EQ(a.kind, PolicyEndpoint::Kind::container);
  EXPECT_EQ(a.container, "a");
  EXPECT_TRUE(a.v6);
  EXPECT_EQ(a.str(), "a (" + a6.str() + ")");
  EXPECT_EQ(resolve_endpoint(cfg, cfg.networks[0].gateway6.str()).value().kind,
            PolicyEndpoint::Kind::host);
  EXPECT_EQ(resolve_endpoint(cfg, "::1").value().kind, PolicyEndpoint::Kind::host);
  EXPECT_EQ(resolve_endpoint(cfg, "2001:db8::/64").value().kind, PolicyEndpoint::Kind::address);
  // The other side of an IPv6 flow, by name.
  PolicyEndpoint by_name = ipv6_endpoint(cfg, resolve_endpoint(cfg, "a").value()).value();
  EXPECT_EQ(by_name.ip6, a6);
  EXPECT_TRUE(by_name.v6);
  EXPECT_EQ(ipv6_endpoint(cfg, resolve_endpoint(cfg, "host").value()).value().ip6,
            cfg.networks[0].gateway6);
  auto none = ipv6_endpoint(cfg, resolve_endpoint(cfg, "c").value());
  ASSERT_FALSE(none.has_value());
  EXPECT_NE(none.error().message().find("has no IPv6 address"), std::string::npos);
  EXPECT_FALSE(ipv6_endpoint(cfg, resolve_endpoint(cfg, "8.8.8.8").value()).has_value());
}

// ---------------------------------------------------------------------------
// Changing rules: PolicyCompiler against compile_policies()

void expect_same_plan(const PolicyPlan& got, const PolicyPlan& want, const std::string& what) {
  auto bytes = [](const auto& list) {
    std::string out;
    for (const auto& [k, v] : list) {
      out.append(reinterpret_cast<const char*>(&k), sizeof k);
      out.append(reinterpret_cast<const char*>(&v), sizeof v);
    }
    return out;
  };
  EXPECT_EQ(got.active, want.active) << what;
  EXPECT_TRUE(bytes(got.ipcache) == bytes(want.ipcache)) << what;
  EXPECT_TRUE(bytes(got.ipcache6) == bytes(want.ipcache6)) << what;
  EXPECT_EQ(show(got.entries), show(want.entries)) << what;
  EXPECT_TRUE(bytes(got.entries) == bytes(want.entries)) << what;
  EXPECT_EQ(got.identity_names, want.identity_names) << what;
  ASSERT_EQ(got.rules.size(), want.rules.size()) << what;
  for (size_t i = 0; i < got.rules.size(); ++i) {
    const RuleInfo &g = got.rules[i], &w = want.rules[i];
    EXPECT_EQ(
        std::tie(g.policy, g.ns, g.direction, g.rule_index, g.action, g.text, g.path, g.source),
        std::tie(w.policy, w.ns, w.direction, w.rule_index, w.action, w.text, w.path, w.source))
        << what << " rule " << i;
  }
}

// Whether the policies of `b` are those of `a` in number, and policy `pi`
// has as many rules in each direction: the file changed in one rule.
bool same_counts(const Config& a, const Config& b, size_t pi) {
  if (a.policies.size() != b.policies.size()) return false;
  const Policy &x = a.policies[pi], &y = b.policies[pi];
  return x.ingress.size() == y.ingress.size() && x.egress.size() == y.egress.size();
}

// The x/y/z document, every third one dual-stack.
Json change_document(const Json& policies, int i) {
  Json doc = xyz_document(policies, i % 3 == 1);
  if (i % 3 == 2) doc["networks"][0]["ipv6_subnet"] = "fd00:10::/64";
  return doc;
}

// One rule of set `i`'s `policies` replaced by a generated one, the file
// read whole: nullopt when it is not the same policies and rules counted
// (the generator's way), with *none set when the generator gave nothing.
struct Change {
  size_t pi = 0, k = 0;
  PolicyDirection dir = PolicyDirection::ingress;
  Json next;
  Config config;
  std::string what;
};

std::optional<Change> next_change(std::mt19937& rng, const Json& policies, const Config& cfg, int i,
                                  int step, bool* none) {
  auto change = change_one_rule(rng, policies, i % 3 == 2);
  *none = !change;
  if (!change) return std::nullopt;
  Change c;
  c.pi = change->policy;
  c.k = change->index;
  c.dir = change->dir == 0 ? PolicyDirection::ingress : PolicyDirection::egress;
  c.next = std::move(change->policies);
  ParseResult r = parse_config(change_document(c.next, i).dump(), "test.json");
  if (!r.problems.empty() || !r.config || !same_counts(cfg, *r.config, c.pi)) return std::nullopt;
  c.config = std::move(*r.config);
  c.what = "set " + std::to_string(i) + " step " + std::to_string(step) + ": " + c.next.dump();
  return c;
}

// Generated policy sets, each changed rule by rule (up to 40 changes on one
// compiler): the compiler's plan after every change is compile_policies()'
// of the changed file, read again. Half the new rules keep the old one's
// peers, so the ipBlocks stay and most changes compile in part; the rest
// bring or take ipBlocks (IPv6 ones in the dual-stack sets) and pod
// selectors, every peer, deny and allow, and what a policy without
// policyTypes isolates.
TEST(PolicyCompiler, EveryChangeGivesTheWholeCompilesPlan) {
  std::mt19937 rng(20261206);
  int partial = 0, whole = 0, partial_with_entries = 0, isolation_changed = 0;
  for (int i = 0; i < 160; ++i) {
    Json policies = random_policies(rng, i);
    Config cfg = parse_ok(change_document(policies, i));
    if (HasFailure()) return;
    PolicyCompiler compiler;
    auto compiled = compiler.compile(cfg);
    auto want = compile_policies(cfg);
    ASSERT_EQ(compiled.has_value(), want.has_value());
    if (!want) continue;
    expect_same_plan(compiler.plan(), *want, "set " + std::to_string(i));
    for (int step = 0; step < 40; ++step) {
      bool none = false;
      auto change = next_change(rng, policies, cfg, i, step, &none);
      if (none) break;
      if (!change) continue;
      auto& [pi, k, dir, next, changed, what] = *change;
      const size_t before = compiler.plan().entries.size();
      isolation_changed += cfg.policies[pi].isolates(dir) != changed.policies[pi].isolates(dir);
      auto got = compiler.replace_rule(pi, dir, k, changed.policies[pi].rules(dir)[k]);
      auto whole_plan = compile_policies(changed);
      ASSERT_EQ(got.has_value(), whole_plan.has_value()) << what;
      if (!got) {
        EXPECT_EQ(got.error().message(), whole_plan.error().message()) << what;
        break;
      }
      (*got ? partial : whole)++;
      if (*got && (before > 0 || !whole_plan->entries.empty())) partial_with_entries++;
      expect_same_plan(compiler.plan(), *whole_plan, what);
      EXPECT_EQ(compiler.config().policies[pi].isolates(dir), changed.policies[pi].isolates(dir))
          << what;
      if (HasFailure()) return;
      policies = std::move(next);
      cfg = std::move(changed);
    }
  }
  // The generator must keep reaching every way.
  EXPECT_GE(partial, 2500);
  EXPECT_GE(partial_with_entries, 2000);
  EXPECT_GE(whole, 500);
  EXPECT_GE(isolation_changed, 50);
}

// A moat policy without policyTypes isolates the directions it allows in:
// its one allow turned deny leaves ingress open again (the ipcache's flag).
TEST(PolicyCompiler, ADenyInPlaceOfTheOnlyAllowEndsIsolation) {
  const char* allow =
      "[{'name': 'p', 'podSelector': {'matchLabels': {'pod': 'a'}},"
      " 'ingress': [{'ports': [{'port': 80}]}]}]";
  const char* deny =
      "[{'name': 'p', 'podSelector': {'matchLabels': {'pod': 'a'}},"
      " 'ingress': [{'action': 'deny', 'ports': [{'port': 80}]}]}]";
  PolicyCompiler compiler;
  ASSERT_TRUE(compiler.compile(parse_ok(xyz_document(J(allow)))));
  Config denied = parse_ok(xyz_document(J(deny)));
  ASSERT_FALSE(denied.policies.empty());
  auto got = compiler.replace_rule(0, PolicyDirection::ingress, 0, denied.policies[0].ingress[0]);
  ASSERT_TRUE(got.has_value());
  EXPECT_FALSE(*got);  // compiled whole
  EXPECT_FALSE(compiler.config().policies[0].isolates_ingress);
  expect_same_plan(compiler.plan(), compile_policies(denied).value(), "deny");
  // And back.
  Config allowed = parse_ok(xyz_document(J(allow)));
  got = compiler.replace_rule(0, PolicyDirection::ingress, 0, allowed.policies[0].ingress[0]);
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(compiler.config().policies[0].isolates_ingress);
  expect_same_plan(compiler.plan(), compile_policies(allowed).value(), "allow");
}

TEST(PolicyCompiler, ARuleThatDoesNotExistIsAnError) {
  PolicyCompiler compiler;
  ASSERT_TRUE(compiler.compile(parse_ok(xyz_document(
      J("[{'name': 'p', 'podSelector': {}, 'ingress': [{'ports': [{'port': 80}]}]}]")))));
  EXPECT_FALSE(compiler.replace_rule(0, PolicyDirection::egress, 0, PolicyRule{}));
  EXPECT_FALSE(compiler.replace_rule(0, PolicyDirection::ingress, 1, PolicyRule{}));
  EXPECT_FALSE(compiler.replace_rule(1, PolicyDirection::ingress, 0, PolicyRule{}));
  EXPECT_EQ(compiler.config().policies[0].ingress[0].ports.size(), 1u);
}

// Entries compared as the kernel compares them: byte for byte.
bool same_ipcache(const PolicyPlan& a, const PolicyPlan& b) {
  auto same = [](const auto& x, const auto& y) {
    return x.size() == y.size() &&
           (x.empty() || std::memcmp(x.data(), y.data(), x.size() * sizeof x[0]) == 0);
  };
  return same(a.ipcache, b.ipcache) && same(a.ipcache6, b.ipcache6);
}

using Entries = std::vector<std::pair<moat_policy_key, moat_policy_val>>;
using Entry = Entries::value_type;
bool same_bytes(std::span<const Entry> a, std::span<const Entry> b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof a[0]) == 0);
}

// An image read where it lies, as a saved one is from its file's mapping:
// a copy of `bytes` at `offset` into a buffer the image keeps.
Result<PolicyImage> mapped_image(std::string_view bytes, size_t offset = 0,
                                 std::span<const PolicyImage::Splice> splices = {}) {
  auto buffer = std::make_shared<std::vector<uint64_t>>((offset + bytes.size()) / 8 + 1);
  char* at = reinterpret_cast<char*>(buffer->data()) + offset;
  std::memcpy(at, bytes.data(), bytes.size());
  return PolicyImage::from_mapping(buffer, {at, bytes.size()}, splices);
}

// Per section (in the order of the bytes), whether it lies in `in`; an
// empty one counts as lying there.
std::vector<bool> in_place(const PolicyImage& image, std::string_view in) {
  std::vector<bool> out;
  for (std::string_view s : image.sections())
    out.push_back(s.empty() ||
                  (s.data() >= in.data() && s.data() + s.size() <= in.data() + in.size()));
  return out;
}
bool all_in_place(const PolicyImage& image, std::string_view in) {
  auto v = in_place(image, in);
  return std::all_of(v.begin(), v.end(), [](bool b) { return b; });
}

// PolicyImage: the image of a compilation, changed in part in its stead,
// must give the whole compile's entries, change after change, through its
// bytes as a later process reads them (from_bytes() or from_mapping(), in
// turn).
TEST(PolicyImage, EveryChangeGivesTheWholeCompilesEntries) {
  std::mt19937 rng(20261207);
  int partial = 0, refused = 0, partial_with_entries = 0, round_trips = 0;
  for (int i = 0; i < 160; ++i) {
    Json policies = random_policies(rng, i);
    Config cfg = parse_ok(change_document(policies, i));
    if (HasFailure()) return;
    auto image_of = [i](const Config& c) -> std::optional<PolicyImage> {
      PolicyCompiler compiler;
      if (!compiler.compile(c)) return std::nullopt;
      auto image =
          i % 2 ? mapped_image(compiler.image()) : PolicyImage::from_bytes(compiler.image());
      EXPECT_TRUE(image.has_value());
      if (!image) return std::nullopt;
      EXPECT_TRUE(same_bytes(image->entries(), compiler.plan().entries));
      return std::move(*image);
    };
    auto image = image_of(cfg);
    if (!image) continue;
    // The image holds no ipcache: a change it makes must leave it as it was.
    PolicyPlan prev = compile_policies(cfg).value();
    for (int step = 0; step < 40; ++step) {
      bool none = false;
      auto change = next_change(rng, policies, cfg, i, step, &none);
      if (none) break;
      if (!change) continue;
      auto& [pi, k, dir, next, changed, what] = *change;
      const size_t before = image->entries().size();
      const Entries kept(image->entries().begin(), image->entries().end());
      auto got = image->replace_rule(pi, dir, k, cfg.policies[pi].rules(dir)[k],
                                     changed.policies[pi].rules(dir)[k]);
      ASSERT_TRUE(got.has_value()) << what << ": " << got.error().message();
      auto whole = compile_policies(changed);
      if (*got) {
        ASSERT_TRUE(whole.has_value()) << what;
        ++partial;
        if (before > 0 || !whole->entries.empty()) ++partial_with_entries;
        EXPECT_TRUE(same_bytes(image->entries(), whole->entries)) << what;
        EXPECT_TRUE(same_ipcache(prev, *whole)) << what << ": the identities changed";
        PolicyPlan held;
        held.ipcache = image->ipcache();
        held.ipcache6 = image->ipcache6();
        EXPECT_TRUE(same_ipcache(held, *whole)) << what << ": the image's identity caches";
      } else {
        ++refused;
        EXPECT_TRUE(same_bytes(image->entries(), kept))
            << what << ": a refused change changed the image";
        if (!whole) break;
        image = image_of(changed);  // what the whole apply saves
        if (!image) break;
      }
      if (HasFailure()) return;
      if (step % 7 == 6) {  // a later process goes on from the bytes
        const std::string bytes = image->bytes();
        auto again = step % 2 ? mapped_image(bytes) : PolicyImage::from_bytes(bytes);
        ASSERT_TRUE(again.has_value()) << what;
        // Changes do not grow it: at most a fifth more than its compile's.
        PolicyCompiler fresh;
        ASSERT_TRUE(fresh.compile(changed));
        EXPECT_LE(bytes.size(), fresh.image().size() * 6 / 5 + 64) << what;
        EXPECT_TRUE(same_bytes(again->entries(), image->entries())) << what;
        image = std::move(*again);
        ++round_trips;
      }
      policies = std::move(next);
      cfg = std::move(changed);
      prev = std::move(*whole);
    }
  }
  std::printf("partial %d (with entries %d), refused %d, round trips %d\n", partial,
              partial_with_entries, refused, round_trips);
  EXPECT_GE(partial, 1000);
  EXPECT_GE(partial_with_entries, 800);
  EXPECT_GE(refused, 300);
  EXPECT_GE(round_trips, 100);
}

// The image a whole compile of `cfg` saves, as a later process reads it.
std::optional<PolicyImage> compiled_image(const Config& cfg, bool mapped = false) {
  PolicyCompiler compiler;
  if (!compiler.compile(cfg)) return std::nullopt;
  auto image = mapped ? mapped_image(compiler.image()) : PolicyImage::from_bytes(compiler.image());
  if (!image) return std::nullopt;
  return std::move(*image);
}

// The rule the caller says it replaces must be the one compiled: another
// one changes nothing.
TEST(PolicyImage, AnotherRuleThanTheCompiledOneChangesNothing) {
  const char* text =
      "[{'name': 'p', 'namespace': 'x', 'podSelector': {'matchLabels': {'pod': 'a'}},"
      " 'policyTypes': ['Ingress'],"
      " 'ingress': [{'from': [{'ipBlock': {'cidr': '10.0.0.0/8'}}], 'ports': [{'port': 80}]},"
      "             {'from': [{'ipBlock': {'cidr': '10.0.0.0/8'}}], 'ports': [{'port': 81}]}]}]";
  Config cfg = parse_ok(xyz_document(J(text)));
  ASSERT_EQ(cfg.policies.size(), 1u);
  auto image = compiled_image(cfg);
  ASSERT_TRUE(image.has_value());
  const Entries kept(image->entries().begin(), image->entries().end());
  const PolicyRule& first = cfg.policies[0].ingress[0];
  const PolicyRule& second = cfg.policies[0].ingress[1];
  auto got = image->replace_rule(0, PolicyDirection::ingress, 0, second, second);
  ASSERT_TRUE(got.has_value());
  EXPECT_FALSE(*got);
  EXPECT_TRUE(same_bytes(image->entries(), kept));
  // The right one, turned into the second: port 80 goes.
  got = image->replace_rule(0, PolicyDirection::ingress, 0, first, second);
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(*got);
  Config changed = cfg;
  changed.policies[0].ingress[0] = second;
  EXPECT_TRUE(same_bytes(image->entries(), compile_policies(changed).value().entries));
  EXPECT_FALSE(same_bytes(image->entries(), kept));
  EXPECT_FALSE(image->replace_rule(0, PolicyDirection::ingress, 2, first, first).has_value());
  EXPECT_FALSE(image->replace_rule(1, PolicyDirection::ingress, 0, first, first).has_value());
}

// A policy of two rules, each from an ipBlock to a port.
constexpr const char* kTwoBlocks =
    "[{'name': 'p', 'namespace': 'x', 'podSelector': {'matchLabels': {'pod': 'a'}},"
    " 'policyTypes': ['Ingress'],"
    " 'ingress': [{'from': [{'ipBlock': {'cidr': '10.0.0.0/8'}}], 'ports': [{'port': 80}]},"
    "             {'from': [{'ipBlock': {'cidr': '192.168.0.0/16'}}], 'ports': [{'port': "
    "90}]}]}]";

// A change whose entries would be more than a generation holds is
// refused, and leaves the image as it was: also the run of entries it
// had already rewritten in place (the same count, another port).
TEST(PolicyImage, AChangeTooLargeLeavesTheImageAsItWas) {
  const char* text = kTwoBlocks;
  const char* after =
      "{'from': [{'ipBlock': {'cidr': '10.0.0.0/8'}}, {'ipBlock': {'cidr': '192.168.0.0/16'}}],"
      " 'ports': [{'port': 81}]}";
  Config cfg = parse_ok(xyz_document(J(text)));
  Json changed_text = J(text);
  changed_text[0]["ingress"][0] = J(after);
  Config changed = parse_ok(xyz_document(changed_text));
  ASSERT_EQ(cfg.policies.size(), 1u);
  for (bool mapped : {false, true}) {
    SCOPED_TRACE(mapped ? "mapped" : "read");
    auto image = compiled_image(cfg, mapped);
    ASSERT_TRUE(image.has_value());
    const Entries kept(image->entries().begin(), image->entries().end());
    const std::string kept_bytes = image->bytes();
    const PolicyRule& before = cfg.policies[0].ingress[0];
    const PolicyRule& now = changed.policies[0].ingress[0];
    const auto whole = compile_policies(changed).value().entries;
    ASSERT_GT(whole.size(), kept.size());
    auto got = image->replace_rule(0, PolicyDirection::ingress, 0, before, now, kept.size());
    ASSERT_TRUE(got.has_value());
    EXPECT_FALSE(*got);
    EXPECT_TRUE(same_bytes(image->entries(), kept));
    EXPECT_EQ(image->bytes(), kept_bytes);
    // With room for them, the same change is made.
    got = image->replace_rule(0, PolicyDirection::ingress, 0, before, now, whole.size());
    ASSERT_TRUE(got.has_value());
    EXPECT_TRUE(*got);
    EXPECT_TRUE(same_bytes(image->entries(), whole));
  }
}

// kTwoBlocks, the same with rule 0's port 80 made 81, and the first's
// image.
struct PortChange {
  Config cfg, changed;
  std::string bytes;
  PortChange() {
    const char* text = kTwoBlocks;
    cfg = parse_ok(xyz_document(J(text)));
    Json changed_text = J(text);
    changed_text[0]["ingress"][0]["ports"][0]["port"] = 81;
    changed = parse_ok(xyz_document(changed_text));
    PolicyCompiler compiler;
    EXPECT_TRUE(compiler.compile(cfg));
    bytes = compiler.image();
  }
};

// A saved image read where it lies, through its file's mapping (read-only,
// as a one-rule change maps it): nothing is copied until a change writes,
// and a change copies the sections it writes and no other. A rule changed
// into itself writes nothing; a port changed writes the rule's ports and
// the entries. The file never changes (a store into the mapping would
// have crashed the test).
TEST(PolicyImage, AMappedChangeCopiesOnlyTheSectionsItWrites) {
  const PortChange c;
  const Config &cfg = c.cfg, &changed = c.changed;
  const std::string& bytes = c.bytes;
  TempFile saved(bytes);
  auto opened = MappedFile::open(saved.path());
  ASSERT_TRUE(opened.has_value() && opened->has_value());
  auto file = std::make_shared<MappedFile>(std::move(**opened));
  const std::string_view mapped = file->view();
  auto image = PolicyImage::from_mapping(file, mapped);
  ASSERT_TRUE(image.has_value());
  EXPECT_TRUE(all_in_place(*image, mapped)) << ::testing::PrintToString(in_place(*image, mapped));
  const PolicyRule& first = cfg.policies[0].ingress[0];
  for (int i = 0; i < 2; ++i) {
    auto got = image->replace_rule(0, PolicyDirection::ingress, 0, first, first);
    ASSERT_TRUE(got.has_value() && *got);
  }
  EXPECT_TRUE(all_in_place(*image, mapped)) << "a rule changed into itself copied a section";
  EXPECT_EQ(image->bytes(), bytes);
  auto got =
      image->replace_rule(0, PolicyDirection::ingress, 0, first, changed.policies[0].ingress[0]);
  ASSERT_TRUE(got.has_value() && *got);
  EXPECT_TRUE(same_bytes(image->entries(), compile_policies(changed).value().entries));
  // In the order of the bytes: port_pool is the fourth, entries the 18th.
  std::vector<bool> want(image->sections().size(), true);
  ASSERT_EQ(want.size(), 22u);
  want[3] = want[17] = false;
  EXPECT_EQ(in_place(*image, mapped), want);
  EXPECT_EQ(mapped, bytes);
  std::ifstream in(saved.path(), std::ios::binary);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), bytes);
}

// An image read where it lies is used there: every section is a view of
// the bytes, and it gives what the image read into memory gives, change
// after change. Bytes not aligned for a section's elements are copied
// instead, to the same result; an image of the format before (its
// sections not aligned) is refused.
TEST(PolicyImage, AMappedImageIsUsedWhereItLies) {
  const PortChange c;
  const Config &cfg = c.cfg, &changed = c.changed;
  const std::string& bytes = c.bytes;
  const PolicyRule& before = cfg.policies[0].ingress[0];
  const PolicyRule& now = changed.policies[0].ingress[0];
  auto read = PolicyImage::from_bytes(bytes);
  ASSERT_TRUE(read.has_value());
  ASSERT_TRUE(read->replace_rule(0, PolicyDirection::ingress, 0, before, now).value());
  const auto whole = compile_policies(changed).value().entries;
  ASSERT_TRUE(same_bytes(read->entries(), whole));
  for (size_t offset : {0, 8, 1, 2, 3}) {
    SCOPED_TRACE(offset);
    auto buffer = std::make_shared<std::vector<uint64_t>>(bytes.size() / 8 + 2);
    char* at = reinterpret_cast<char*>(buffer->data()) + offset;
    std::memcpy(at, bytes.data(), bytes.size());
    const std::string_view in(at, bytes.size());
    auto image = PolicyImage::from_mapping(buffer, in);
    ASSERT_TRUE(image.has_value());
    EXPECT_EQ(all_in_place(*image, in), offset % 4 == 0);
    EXPECT_EQ(image->bytes(), bytes);
    auto got = image->replace_rule(0, PolicyDirection::ingress, 0, before, now);
    ASSERT_TRUE(got.has_value() && *got);
    EXPECT_TRUE(same_bytes(image->entries(), whole));
    EXPECT_EQ(image->bytes(), read->bytes());
    EXPECT_EQ(in, bytes);
  }
  std::string older = bytes;
  older[7] = '2';
  EXPECT_FALSE(PolicyImage::from_bytes(older).has_value());
  EXPECT_FALSE(mapped_image(older).has_value());
}

// A saved image and its patch (ranges of the same length, as a port's
// change saves them) read where it lies: the sections the ranges change
// are copies with the ranges in, the others views, and it is the image the
// patched bytes are. A range over a section's size, across two sections,
// past the end or out of order is refused.
TEST(PolicyImage, AMappedImageTakesAPatchOfItsSections) {
  const PortChange c;
  const std::string& bytes = c.bytes;
  PolicyCompiler compiler;
  ASSERT_TRUE(compiler.compile(c.changed));
  const std::string after = compiler.image();
  ASSERT_EQ(after.size(), bytes.size());
  // The ranges where they differ, a byte at a time (sorted, apart).
  std::vector<std::string> held;
  std::vector<PolicyImage::Splice> splices;
  for (size_t i = 0; i < bytes.size(); ++i)
    if (bytes[i] != after[i]) held.push_back(after.substr(i, 1));
  for (size_t i = 0, k = 0; i < bytes.size(); ++i)
    if (bytes[i] != after[i]) splices.push_back({i, 1, held[k++]});
  ASSERT_FALSE(splices.empty());
  auto buffer = std::make_shared<std::string>(bytes);
  const std::string_view in(*buffer);
  auto image = PolicyImage::from_mapping(buffer, in, splices);
  ASSERT_TRUE(image.has_value());
  EXPECT_EQ(image->bytes(), after);
  EXPECT_FALSE(all_in_place(*image, in));
  const auto places = in_place(*image, in);
  EXPECT_GE(std::count(places.begin(), places.end(), true), 18);
  EXPECT_EQ(in, bytes);
  // Where each section's size lies, and its elements.
  std::vector<std::pair<size_t, size_t>> sizes;
  size_t at = PolicyImage::magic().size();
  for (std::string_view s : image->sections()) {
    sizes.push_back({at, at + 8 + s.size()});
    at += 8 + s.size();
  }
  const std::string eight(8, '\x01');
  auto refused = [&](std::vector<PolicyImage::Splice> bad, const char* what) {
    EXPECT_FALSE(mapped_image(bytes, 0, bad).has_value()) << what;
  };
  refused({{0, 8, eight}}, "over the magic");
  refused({{sizes[1].first, 8, eight}}, "a section's size changed, not its elements");
  refused({{sizes[1].first, 4, "abcd"}}, "a section's size in part");
  refused({{sizes[1].second - 4, 8, eight}}, "across two sections");
  refused({{bytes.size() - 4, 8, eight}}, "past the end");
  refused({{sizes[1].first + 8, 1, "x"}, {sizes[1].first + 8, 1, "y"}}, "twice over one byte");
  refused({{sizes[1].first + 8, 0, "x"}, {sizes[1].first + 8, 0, "y"}}, "two at one place");
  refused({{sizes[2].first + 8, 1, "x"}, {sizes[1].first + 8, 1, "y"}}, "out of order");
}

// A change that grows sections (a rule's one peer made two: its peers
// appended, the group's pairs and the entries grown), saved as a one-rule
// apply saves it (section_splices(): a section's new size and the range
// of its elements that changed), read where it lies: the sections it
// changes are copies, every other a view, and it is the changed image.
TEST(PolicyImage, AMappedImageTakesAPatchThatResizesSections) {
  const PortChange c;
  const char* two =
      "{'from': [{'ipBlock': {'cidr': '10.0.0.0/8'}}, {'ipBlock': {'cidr': '192.168.0.0/16'}}],"
      " 'ports': [{'port': 80}]}";
  Json changed_text = J(kTwoBlocks);
  changed_text[0]["ingress"][0] = J(two);
  const Config changed = parse_ok(xyz_document(changed_text));
  auto now = PolicyImage::from_bytes(c.bytes);
  ASSERT_TRUE(now.has_value());
  ASSERT_TRUE(now->replace_rule(0, PolicyDirection::ingress, 0, c.cfg.policies[0].ingress[0],
                                changed.policies[0].ingress[0])
                  .value());
  auto was = PolicyImage::from_bytes(c.bytes);
  ASSERT_TRUE(was.has_value());
  auto saved = section_splices(c.bytes, PolicyImage::magic(), now->sections());
  ASSERT_TRUE(saved.has_value());
  std::vector<PolicyImage::Splice> splices;
  bool resized = false;
  for (const BlobPatch& p : *saved) {
    splices.push_back({p.at, p.cut, p.bytes});
    resized = resized || p.cut != p.bytes.size();
  }
  ASSERT_TRUE(resized);
  auto buffer = std::make_shared<std::string>(c.bytes);
  const std::string_view in(*buffer);
  auto image = PolicyImage::from_mapping(buffer, in, splices);
  ASSERT_TRUE(image.has_value()) << image.error().message();
  EXPECT_EQ(image->bytes(), now->bytes());
  EXPECT_TRUE(same_bytes(image->entries(), compile_policies(changed).value().entries));
  const auto before = was->sections(), after = now->sections();
  const auto places = in_place(*image, in);
  int changed_sections = 0;
  for (size_t i = 0; i < places.size(); ++i) {
    const bool same = before[i] == after[i];
    changed_sections += !same;
    EXPECT_EQ(places[i], same || before[i].empty()) << "section " << i;
  }
  EXPECT_GE(changed_sections, 3);
  EXPECT_EQ(in, c.bytes);
}

// Random patches, over sizes and elements alike: what from_mapping() takes
// is the image the patched bytes are, and it never reads past them.
TEST(PolicyImage, AMappedImageTakesOnlyPatchesThatFit) {
  const PortChange c;
  std::mt19937 rng(58);
  int taken = 0;  // patches taken that changed the image
  for (int round = 0; round < 3000; ++round) {
    std::vector<BlobPatch> patch;
    std::vector<std::string> held;
    for (size_t at = rng() % 64; at < c.bytes.size() && patch.size() < 3;
         at += 1 + rng() % (c.bytes.size() / 2)) {
      const size_t cut = std::min<size_t>(rng() % 9, c.bytes.size() - at);
      std::string bytes = c.bytes.substr(at, cut);
      if (round % 3 == 0) bytes.push_back(static_cast<char>(rng()));
      if (!bytes.empty() && round % 3 == 1) bytes[0] ^= static_cast<char>(1 + rng() % 255);
      if (round % 5 == 0 && cut == 8) {  // a size made larger or smaller by an element
        uint64_t n = 0;
        std::memcpy(&n, bytes.data(), 8);
        n = rng() % 2 ? n + 4 : n - 4;
        std::memcpy(bytes.data(), &n, 8);
      }
      patch.push_back({c.bytes.size(), at, cut, bytes});
      at += cut;
    }
    std::vector<PolicyImage::Splice> splices;
    for (const BlobPatch& p : patch) splices.push_back({p.at, p.cut, p.bytes});
    auto image = mapped_image(c.bytes, 0, splices);
    if (!image) continue;
    auto whole = PolicyImage::from_bytes(apply_splices(c.bytes, patch));
    ASSERT_TRUE(whole.has_value()) << round;
    EXPECT_EQ(image->bytes(), whole->bytes()) << round;
    taken += image->bytes() != c.bytes;
  }
  EXPECT_GT(taken, 50);  // taken, and not the image as it was
}

// Patches as a one-rule apply saves them (section_splices()), of pools
// grown by elements no span names yet (as replace() grows them): one to
// three pools, neighbours among them, empty ones, the last section (an
// insertion at the image's end). Each is read in place, to the image the
// patched bytes are, its untouched sections views; each patch tampered
// with is refused or read to that same image.
TEST(PolicyImage, AMappedImageTakesEveryPatchOfGrownPools) {
  const PortChange c;
  auto was = PolicyImage::from_bytes(c.bytes);
  ASSERT_TRUE(was.has_value());
  const auto before = was->sections();
  ASSERT_EQ(before.size(), 22u);
  // The pools by their place in the bytes, and the size of their elements.
  const std::vector<std::pair<size_t, size_t>> pools = {{2, 4}, {3, 4}, {4, 4},  {6, 4},  {7, 4},
                                                        {8, 4}, {9, 8}, {13, 4}, {20, 1}, {21, 1}};
  std::mt19937 rng(5858);
  int tampered_taken = 0;
  for (int round = 0; round < 300; ++round) {
    std::vector<std::string> after(before.begin(), before.end());
    std::vector<bool> grown(after.size(), false);
    const size_t first = rng() % pools.size(), count = 1 + rng() % 3;
    for (size_t k = 0; k < count; ++k) {
      const auto [i, size] = pools[(first + k * (1 + rng() % 2)) % pools.size()];
      for (size_t e = 1 + rng() % 3; e > 0; --e)
        for (size_t b = 0; b < size; ++b) after[i].push_back(static_cast<char>(rng()));
      grown[i] = true;
    }
    std::vector<std::string_view> views(after.begin(), after.end());
    auto saved = section_splices(c.bytes, PolicyImage::magic(), views);
    ASSERT_TRUE(saved.has_value()) << round;
    const std::string want = apply_splices(c.bytes, *saved);
    auto whole = PolicyImage::from_bytes(want);
    ASSERT_TRUE(whole.has_value()) << round;
    std::vector<PolicyImage::Splice> splices;
    for (const BlobPatch& p : *saved) splices.push_back({p.at, p.cut, p.bytes});
    auto buffer = std::make_shared<std::string>(c.bytes);
    const std::string_view in(*buffer);
    auto image = PolicyImage::from_mapping(buffer, in, splices);
    ASSERT_TRUE(image.has_value()) << round << ": " << image.error().message();
    EXPECT_EQ(image->bytes(), want) << round;
    const auto places = in_place(*image, in);
    for (size_t i = 0; i < places.size(); ++i)
      EXPECT_EQ(places[i], !grown[i] || before[i].empty() && after[i].empty())
          << round << ", section " << i;
    // Tampered with: refused, or the image its patched bytes are.
    std::vector<BlobPatch> bad = *saved;
    BlobPatch& one = bad[rng() % bad.size()];
    switch (rng() % 4) {
      case 0:
        one.at += one.at + 1 < c.bytes.size() ? 1 : 0;
        break;
      case 1:
        one.at -= one.at > 0 ? 1 : 0;
        break;
      case 2:
        one.cut += one.at + one.cut < c.bytes.size() ? 1 : 0;
        break;
      default:
        bad.push_back(one);
        std::sort(bad.begin(), bad.end(), [](auto& x, auto& y) { return x.at < y.at; });
    }
    splices.clear();
    for (const BlobPatch& p : bad) splices.push_back({p.at, p.cut, p.bytes});
    auto odd = PolicyImage::from_mapping(buffer, in, splices);
    if (!odd) continue;
    ++tampered_taken;
    auto odd_whole = PolicyImage::from_bytes(apply_splices(c.bytes, bad));
    ASSERT_TRUE(odd_whole.has_value()) << round;
    EXPECT_EQ(odd->bytes(), odd_whole->bytes()) << round;
  }
  std::cout << tampered_taken << " tampered patches taken\n";
}

// Bytes that are not a whole image are refused, whatever they hold.
TEST(PolicyImage, BytesCutShortOrAlteredAreRefused) {
  std::mt19937 gen(7);
  Config cfg = parse_ok(xyz_document(random_policies(gen, 3)));
  PolicyCompiler compiler;
  ASSERT_TRUE(compiler.compile(cfg));
  const std::string bytes = compiler.image();
  ASSERT_TRUE(PolicyImage::from_bytes(bytes).has_value());
  EXPECT_FALSE(PolicyImage::from_bytes("").has_value());
  ASSERT_TRUE(mapped_image(bytes).has_value());
  EXPECT_FALSE(mapped_image("").has_value());
  for (size_t n : {size_t{8}, size_t{9}, bytes.size() / 2, bytes.size() - 1}) {
    EXPECT_FALSE(PolicyImage::from_bytes(bytes.substr(0, n)).has_value()) << n;
    EXPECT_FALSE(mapped_image(std::string_view(bytes).substr(0, n)).has_value()) << n;
  }
  EXPECT_FALSE(PolicyImage::from_bytes(bytes + "x").has_value());
  EXPECT_FALSE(mapped_image(bytes + "x").has_value());
  // A flipped byte is refused or read into an image that stays in bounds:
  // every change on it either fails or is made, and nothing crashes.
  std::mt19937 rng(1);
  for (int i = 0; i < 2000; ++i) {
    std::string bad = bytes;
    bad[rng() % bad.size()] ^= static_cast<char>(1 + rng() % 255);
    auto image =
        i % 2 ? mapped_image(bad, static_cast<size_t>((i / 2) % 8)) : PolicyImage::from_bytes(bad);
    if (!image) continue;
    for (size_t p = 0; p < cfg.policies.size(); ++p)
      for (size_t k = 0; k < cfg.policies[p].ingress.size(); ++k)
        (void)image->replace_rule(p, PolicyDirection::ingress, k, cfg.policies[p].ingress[k],
                                  cfg.policies[p].ingress[k]);
  }
}

// The one-rule apply saves an image's change from its sections (a patch
// of the saved image) and reads it back in pieces: sections() must be
// bytes() taken apart, from_reader() must read any cut of them, and
// entries out of key-byte order are refused (edits search them).
TEST(PolicyImage, SectionsAreItsBytesAndAnyCutReadsBack) {
  std::mt19937 gen(11);
  Config cfg = parse_ok(xyz_document(random_policies(gen, 4)));
  PolicyCompiler compiler;
  ASSERT_TRUE(compiler.compile(cfg));
  auto image = PolicyImage::from_bytes(compiler.image());
  ASSERT_TRUE(image.has_value());
  std::string joined(PolicyImage::magic());
  size_t entries_at = 0, entries_size = 0;
  for (std::string_view s : image->sections()) {
    const uint64_t n = s.size();
    joined.append(reinterpret_cast<const char*>(&n), sizeof n);
    if (s.data() == reinterpret_cast<const char*>(image->entries().data()))
      entries_at = joined.size(), entries_size = s.size();
    joined += s;
  }
  EXPECT_EQ(joined, image->bytes());
  std::mt19937 rng(5);
  for (int round = 0; round < 50; ++round) {
    std::string_view rest = joined;
    auto got = PolicyImage::from_reader(
        [&](void* to, size_t n) {
          // In random cuts, as a reader over a patch delivers them.
          while (n > 0) {
            const size_t take = std::min<size_t>(n, 1 + rng() % 97);
            if (rest.size() < take) return false;
            std::memcpy(to, rest.data(), take);
            to = static_cast<char*>(to) + take, n -= take;
            rest.remove_prefix(take);
          }
          return true;
        },
        [&] { return rest.size(); });
    ASSERT_TRUE(got.has_value()) << round;
    EXPECT_EQ(got->bytes(), joined);
  }
  ASSERT_GE(entries_size, 2 * sizeof(moat_policy_key) + 2 * sizeof(moat_policy_val));
  std::string swapped = joined;
  const size_t entry = sizeof(moat_policy_key) + sizeof(moat_policy_val);
  std::swap_ranges(swapped.begin() + entries_at, swapped.begin() + entries_at + entry,
                   swapped.begin() + entries_at + entry);
  EXPECT_FALSE(PolicyImage::from_bytes(swapped).has_value());
}

// A rule changed back and forth between one peer and two: the image stays
// the size of its compile's, however many changes it went through.
TEST(PolicyImage, ChangesDoNotGrowIt) {
  auto doc = [](const char* first) {
    return parse_ok(xyz_document(J(
        std::string("[{'name': 'p', 'namespace': 'x', 'podSelector': {}, 'policyTypes': "
                    "['Ingress'], 'ingress': [{'from': [") +
        first +
        "], 'ports': [{'port': 80}]},"
        " {'from': [{'ipBlock': {'cidr': '10.0.0.0/8'}}, {'ipBlock': {'cidr': '192.168.0.0/16'}}],"
        "  'ports': [{'port': 81}]},"
        " {'from': [{'ipBlock': {'cidr': '192.168.0.0/16'}}], 'ports': [{'port': 82}]}]}]")));
  };
  const Config one = doc("{'ipBlock': {'cidr': '10.0.0.0/8'}}");
  const Config two =
      doc("{'ipBlock': {'cidr': '10.0.0.0/8'}}, {'ipBlock': {'cidr': '192.168.0.0/16'}}");
  PolicyCompiler compiler;
  ASSERT_TRUE(compiler.compile(one));
  const size_t fresh = compiler.image().size();
  auto image = PolicyImage::from_bytes(compiler.image());
  ASSERT_TRUE(image.has_value());
  for (int i = 0; i < 200; ++i) {
    const Config& from = i % 2 ? two : one;
    const Config& to = i % 2 ? one : two;
    auto got = image->replace_rule(0, PolicyDirection::ingress, 0, from.policies[0].ingress[0],
                                   to.policies[0].ingress[0]);
    ASSERT_TRUE(got.has_value() && *got) << i;
  }
  EXPECT_TRUE(same_bytes(image->entries(), compile_policies(one).value().entries));
  EXPECT_LE(image->bytes().size(), fresh * 6 / 5 + 64);
}

// A moat policy whose policyTypes leave egress open may have egress denies
// but no allow (the reader's problem): the image never takes one. Today the
// check that the rule still applies refuses it as well (an ipBlock always
// names its own CIDR identity, so the deny it replaces applied); the
// policyTypes check keeps it refused should a rule the image takes ever
// name no one.
TEST(PolicyImage, AnAllowWherePolicyTypesLeaveTheDirectionOpenIsRefused) {
  Config cfg = parse_ok(xyz_document(
      J("[{'name': 'p', 'namespace': 'x', 'podSelector': {}, 'policyTypes': ['Ingress'],"
        " 'ingress': [{'ports': [{'port': 80}]}],"
        " 'egress': [{'action': 'deny', 'to': [{'ipBlock': {'cidr': '10.0.0.0/8'}}]}]}]")));
  ASSERT_EQ(cfg.policies.size(), 1u);
  ASSERT_EQ(cfg.policies[0].egress.size(), 1u);
  PolicyCompiler compiler;
  ASSERT_TRUE(compiler.compile(cfg));
  auto image = PolicyImage::from_bytes(compiler.image());
  ASSERT_TRUE(image.has_value());
  const Entries kept(image->entries().begin(), image->entries().end());
  PolicyRule allow = cfg.policies[0].egress[0];
  allow.action = PolicyAction::allow;
  auto got = image->replace_rule(0, PolicyDirection::egress, 0, cfg.policies[0].egress[0], allow);
  ASSERT_TRUE(got.has_value());
  EXPECT_FALSE(*got);
  EXPECT_TRUE(same_bytes(image->entries(), kept));
  EXPECT_FALSE(policy_unchanged_by(cfg.policies[0], PolicyDirection::egress, 0, allow));
}

}  // namespace
}  // namespace moat
