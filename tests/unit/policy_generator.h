// policy_generator.h - policy sets the unit tests generate: the
// Kubernetes e2e layout (namespaces x, y, z with pods a, b, c each, on
// network pods 10.0.0.0/16: gateway 10.0.0.1, x-a 10.0.0.2, x-b .3, x-c .4,
// y-a .5, y-b .6, y-c .7, z-a .8, z-b .9, z-c .10; with `side`, x-a, y-b and
// z-c are also on network side 10.1.0.0/24: 10.1.0.2, .3, .4) and random
// selectors, peers, ports, rules and policies over it, in moat's form and
// as NetworkPolicy objects.
#pragma once

#include <algorithm>
#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "util/net.h"

namespace moat::testgen {

using Json = nlohmann::json;

// JSON written with single quotes.
inline Json J(std::string single_quoted) {
  std::replace(single_quoted.begin(), single_quoted.end(), '\'', '"');
  return Json::parse(single_quoted);
}

inline constexpr const char* kNamespaces[] = {"x", "y", "z"};
inline constexpr const char* kPods[] = {"a", "b", "c"};

inline Json xyz_document(const Json& policies, bool side = false) {
  Json doc;
  doc["networks"] = J("[{'name': 'pods', 'subnet': '10.0.0.0/16'}]");
  if (side) doc["networks"].push_back(J("{'name': 'side', 'subnet': '10.1.0.0/24'}"));
  doc["namespaces"] = Json::array();
  doc["containers"] = Json::array();
  for (const char* ns : kNamespaces) {
    doc["namespaces"].push_back({{"name", ns}, {"labels", {{"ns", ns}}}});
    for (const char* pod : kPods) {
      const std::string name = std::string(ns) + "-" + pod;
      Json networks = {"pods"};
      if (side && (name == "x-a" || name == "y-b" || name == "z-c")) networks.push_back("side");
      doc["containers"].push_back({{"name", name},
                                   {"namespace", ns},
                                   {"labels", {{"pod", pod}}},
                                   {"networks", networks},
                                   {"expose", {"80/tcp", "81/tcp", "80/udp", "81/udp"}}});
    }
  }
  doc["policies"] = policies;
  return doc;
}

inline Json random_selector(std::mt19937& rng, bool pods) {
  const std::string key = pods ? "pod" : "ns";
  const std::vector<std::string> values =
      pods ? std::vector<std::string>{"a", "b", "c"} : std::vector<std::string>{"x", "y", "z"};
  auto pick = [&](size_t n) { return values[rng() % n]; };
  switch (rng() % 7) {
    case 0:
      return Json::object();
    case 1:
    case 2:
      return {{"matchLabels", {{key, pick(3)}}}};
    case 3:
      return {{"matchExpressions",
               {{{"key", key}, {"operator", "In"}, {"values", {pick(3), pick(3)}}}}}};
    case 4:
      return {{"matchExpressions", {{{"key", key}, {"operator", "NotIn"}, {"values", {pick(3)}}}}}};
    case 5:
      return {{"matchExpressions", {{{"key", key}, {"operator", "Exists"}}}}};
    default:
      return {{"matchExpressions",
               {{{"key", rng() % 2 ? key : "other"}, {"operator", "DoesNotExist"}}}}};
  }
}

inline Json random_peer(std::mt19937& rng) {
  // World prefixes, and prefixes holding pods (10.0.0.2-10, 10.1.0.2-4), the
  // gateways (10.0.0.1, 10.1.0.1) and loopback, so that blocks and their
  // excepts split containers and the host.
  static const char* cidrs[] = {
      "0.0.0.0/0",       "203.0.113.0/24", "203.0.113.128/25", "10.0.0.0/16", "10.0.0.200/32",
      "198.51.100.0/24", "10.0.0.0/8",     "127.0.0.0/16",     "10.0.0.3/32", "10.0.0.0/29",
      "10.0.0.4/30",     "10.0.0.8/31",    "10.0.0.1/32",      "10.1.0.0/24", "10.1.0.2/32",
      "10.1.0.0/30",     "127.0.0.1/32"};
  switch (rng() % 6) {
    case 0:
      return {{"podSelector", random_selector(rng, true)}};
    case 1:
      return {{"namespaceSelector", random_selector(rng, false)}};
    case 2:
      return {{"podSelector", random_selector(rng, true)},
              {"namespaceSelector", random_selector(rng, false)}};
    case 3:
      return {{"host", true}};
    default: {
      Ipv4Prefix cidr = *Ipv4Prefix::parse(cidrs[rng() % std::size(cidrs)]);
      Json block = {{"cidr", cidr.str()}};
      Json except = Json::array();
      for (const char* e : cidrs) {
        Ipv4Prefix p = *Ipv4Prefix::parse(e);
        if (p.len > cidr.len && cidr.contains(p.addr) && rng() % 2) except.push_back(p.str());
      }
      if (!except.empty()) block["except"] = except;
      return {{"ipBlock", block}};
    }
  }
}

inline Json random_port(std::mt19937& rng) {
  static const char* ports[] = {"{'port': 80}",
                                "{'port': 81}",
                                "{'protocol': 'UDP', 'port': 80}",
                                "{'port': 80, 'endPort': 81}",
                                "{'protocol': 'UDP'}",
                                "{'protocol': 'ICMP'}",
                                "{'protocol': 'SCTP'}",
                                "{'port': 1, 'endPort': 65535}",
                                "{'port': 79, 'endPort': 82}",
                                "{'protocol': 'TCP'}",
                                "{'protocol': 'UDP', 'port': 81, 'endPort': 83}"};
  return J(ports[rng() % std::size(ports)]);
}

// A rule of direction `d` (0 ingress, 1 egress); `*allow` set when it allows.
inline Json random_rule(std::mt19937& rng, int d, bool* allow) {
  Json rule = Json::object();
  if (rng() % 4 == 0)
    rule["action"] = "deny";
  else
    *allow = true;
  int peers = static_cast<int>(rng() % 3);
  for (int k = 0; k < peers; ++k) rule[d == 0 ? "from" : "to"].push_back(random_peer(rng));
  int ports = static_cast<int>(rng() % 3);
  for (int k = 0; k < ports; ++k) rule["ports"].push_back(random_port(rng));
  return rule;
}

inline Json random_policies(std::mt19937& rng, int index) {
  Json policies = Json::array();
  int n = 1 + static_cast<int>(rng() % 4);
  for (int i = 0; i < n; ++i) {
    Json p = {{"name", "p" + std::to_string(index) + "-" + std::to_string(i)},
              {"namespace", kNamespaces[rng() % 3]},
              {"podSelector", random_selector(rng, true)}};
    bool allow[2] = {false, false};
    for (int d = 0; d < 2; ++d) {
      int rules = static_cast<int>(rng() % 4) - (rng() % 2);  // often none
      if (rules <= 0) continue;
      Json list = Json::array();
      for (int r = 0; r < rules; ++r) list.push_back(random_rule(rng, d, &allow[d]));
      p[d == 0 ? "ingress" : "egress"] = list;
    }
    std::string text = p.dump();
    bool extensions = text.find("action") != std::string::npos ||
                      text.find("host") != std::string::npos ||
                      text.find("ICMP") != std::string::npos;
    if (!extensions && rng() % 2 == 0) {
      // As a Kubernetes object, whose policyTypes may leave out directions with rules.
      Json spec = p;
      spec.erase("name");
      spec.erase("namespace");
      if (rng() % 2) {
        Json types = Json::array();
        if (rng() % 2) types.push_back("Ingress");
        if (rng() % 2) types.push_back("Egress");
        spec["policyTypes"] = types;
      }
      policies.push_back({{"apiVersion", "networking.k8s.io/v1"},
                          {"kind", "NetworkPolicy"},
                          {"metadata", {{"name", p["name"]}, {"namespace", p["namespace"]}}},
                          {"spec", spec}});
      continue;
    }
    if (rng() % 3 == 0) {  // explicit types: at least the directions with allow rules
      Json types = Json::array();
      if (allow[0] || rng() % 2) types.push_back("Ingress");
      if (allow[1] || rng() % 2) types.push_back("Egress");
      p["policyTypes"] = types;
    }
    policies.push_back(p);
  }
  return policies;
}

// A random IPv6 ipBlock: world prefixes and prefixes holding the pods
// (fd00:10::2-a), the gateway (fd00:10::1) and ::1.
inline Json random_block6(std::mt19937& rng) {
  static const char* cidrs[] = {
      "::/0",           "fd00::/8",       "fd00:10::/64",  "fd00:10::/125",   "fd00:10::4/126",
      "fd00:10::3/128", "fd00:10::1/128", "2001:db8::/32", "2001:db8:1::/48", "::1/128"};
  Ipv6Prefix cidr = *Ipv6Prefix::parse(cidrs[rng() % std::size(cidrs)]);
  Json block = {{"cidr", cidr.str()}};
  for (const char* e : cidrs) {
    Ipv6Prefix p = *Ipv6Prefix::parse(e);
    if (p.len > cidr.len && cidr.contains(p.addr) && rng() % 2) block["except"].push_back(p.str());
  }
  return {{"ipBlock", block}};
}

// The rules of direction `d` (0 ingress, 1 egress) of policy `i`, in
// either form; nullptr when it has none.
inline Json* rule_list(Json& policies, size_t i, int d) {
  Json& p = policies[i];
  Json& holder = p.contains("spec") ? p["spec"] : p;
  const char* key = d == 0 ? "ingress" : "egress";
  return holder.contains(key) && holder[key].is_array() ? &holder[key] : nullptr;
}

// `policies` with one rule replaced by a generated one, which half the
// time keeps the old one's peers (and, with `ipv6`, now and then adds an
// IPv6 block); nullopt when no policy has rules.
struct RuleChange {
  Json policies;
  size_t policy = 0;
  int dir = 0;
  size_t index = 0;
};

inline std::optional<RuleChange> change_one_rule(std::mt19937& rng, const Json& policies,
                                                 bool ipv6) {
  std::vector<std::pair<size_t, int>> lists;
  Json all = policies;
  for (size_t p = 0; p < all.size(); ++p)
    for (int d = 0; d < 2; ++d)
      if (Json* l = rule_list(all, p, d); l && !l->empty()) lists.emplace_back(p, d);
  if (lists.empty()) return std::nullopt;
  RuleChange c;
  std::tie(c.policy, c.dir) = lists[rng() % lists.size()];
  c.policies = std::move(all);
  Json& list = *rule_list(c.policies, c.policy, c.dir);
  c.index = rng() % list.size();
  bool allow = false;
  Json rule = random_rule(rng, c.dir, &allow);
  const char* peers = c.dir == 0 ? "from" : "to";
  if (rng() % 2) {
    rule.erase(peers);
    if (list[c.index].contains(peers)) rule[peers] = list[c.index][peers];
  } else if (ipv6 && rng() % 2) {
    rule[peers].push_back(random_block6(rng));
  }
  list[c.index] = rule;
  return c;
}

}  // namespace moat::testgen
