// configs.cpp - the fixed configurations (random ones: random_config.cpp).
#include "configs.h"

#include <cstdio>

#include "pools.h"

namespace fuzz {

using nlohmann::json;

std::string attachment_device(size_t i) { return "fz" + std::to_string(i); }

namespace {

// Every attachment an object with its device and a MAC of its own.
json finish(json doc) {
  size_t i = 0;
  for (auto& c : doc["containers"])
    for (auto& a : c["networks"]) {
      if (a.is_string()) a = json{{"network", a}};
      char mac[18];
      std::snprintf(mac, sizeof mac, "02:42:fa:00:%02x:%02x", unsigned(i >> 8) & 0xffu,
                    unsigned(i + 1) & 0xffu);
      a["interface"] = attachment_device(i++);
      if (!a.contains("mac")) a["mac"] = mac;
    }
  return doc;
}

FuzzConfig make(const char* name, const char* doc, std::vector<json> other_variants,
                std::map<std::string, std::string> uplinks = {{"fzu0", "198.18.0.1"}}) {
  FuzzConfig fc;
  fc.name = name;
  fc.doc = finish(json::parse(doc));
  if (!uplinks.empty()) {
    json names = json::array();
    for (const auto& [dev, ip] : uplinks) names.push_back(dev);
    fc.doc["host"] = {{"uplinks", names}};
  }
  fc.uplinks = std::move(uplinks);
  fc.variants.push_back(fc.doc.value("policies", json::array()));
  for (auto& v : other_variants) fc.variants.push_back(std::move(v));
  return fc;
}

const char* kIsolation = R"({
  "networks": [
    {"name": "alpha", "subnet": "172.20.0.0/16", "ipv6_subnet": "fd00:20::/64"},
    {"name": "beta", "subnet": "172.21.0.0/16", "ipv6_subnet": "fd00:21::/64"}],
  "containers": [
    {"name": "a1", "networks": [{"network": "alpha", "ip": "172.20.0.2", "ipv6": "fd00:20::2"}]},
    {"name": "a2", "networks": [{"network": "alpha", "ip": "172.20.0.3"}]},
    {"name": "b1", "networks": [{"network": "beta", "ip": "172.21.0.2", "ipv6": "fd00:21::2"}]},
    {"name": "ab", "networks": [{"network": "alpha", "ip": "172.20.0.9", "ipv6": "fd00:20::9"},
                                {"network": "beta", "ip": "172.21.0.9"}]}]})";

const char* kIccInternal = R"({
  "networks": [
    {"name": "quiet", "subnet": "172.22.0.0/16", "icc": false,
     "ipv6_subnet": "fd00:22::/64", "ipv6_gateway": "fd00:22::fe"},
    {"name": "inner", "subnet": "172.23.0.0/16", "internal": true, "ipv6_subnet": "fd00:23::/64"},
    {"name": "routed", "subnet": "10.88.0.0/24", "masquerade": false}],
  "containers": [
    {"name": "q1", "networks": [{"network": "quiet", "ip": "172.22.0.2"}], "publish": ["6000:6000"]},
    {"name": "q2", "networks": [{"network": "quiet", "ip": "172.22.0.3"}]},
    {"name": "i1", "networks": [{"network": "inner", "ip": "172.23.0.2"}]},
    {"name": "i2", "networks": [{"network": "inner", "ip": "172.23.0.3"}]},
    {"name": "r1", "networks": [{"network": "routed", "ip": "10.88.0.2"}], "publish": ["7070:80"]},
    {"name": "ir", "networks": [{"network": "inner", "ip": "172.23.0.9"},
                                {"network": "routed", "ip": "10.88.0.9"}],
     "publish": ["7171:71/udp"]}]})";

const char* kPublished = R"({
  "networks": [
    {"name": "web", "subnet": "172.30.0.0/24"},
    {"name": "other", "subnet": "172.31.0.0/24"},
    {"name": "sealed", "subnet": "172.29.0.0/24", "internal": true}],
  "containers": [
    {"name": "app", "networks": [{"network": "web", "ip": "172.30.0.2"}],
     "publish": ["8080:80/tcp", "5353:53/udp", "3868:3868/sctp", "8000-8002:9000-9002",
                 {"host_ip": "198.18.0.1", "host_port": 9443, "container_port": 443},
                 "127.0.0.1:7000:7000", "198.51.100.1:2222:22/udp"]},
    {"name": "peer", "networks": [{"network": "web", "ip": "172.30.0.3"}], "publish": ["6443:443"]},
    {"name": "client", "networks": [{"network": "other", "ip": "172.31.0.2"}]},
    {"name": "both", "networks": [{"network": "sealed", "ip": "172.29.0.5"},
                                  {"network": "other", "ip": "172.31.0.5"}],
     "publish": ["4444:4444"]},
    {"name": "locked", "networks": [{"network": "sealed", "ip": "172.29.0.6"}]}]})";

const char* kPolicies = R"({
  "networks": [{"name": "front", "subnet": "172.30.0.0/24", "ipv6_subnet": "fd00:30::/64"},
               {"name": "back", "subnet": "172.28.0.0/24", "icc": false}],
  "namespaces": [{"name": "shop", "labels": {"team": "billing"}}],
  "containers": [
    {"name": "web", "labels": {"app": "web"}, "networks": [{"network": "front", "ip": "172.30.0.2", "ipv6": "fd00:30::2"}],
     "publish": ["8080:80", "8053:53/udp"]},
    {"name": "db", "labels": {"app": "db"}, "networks": [{"network": "front", "ip": "172.30.0.3", "ipv6": "fd00:30::3"},
                                                        {"network": "back", "ip": "172.28.0.3"}]},
    {"name": "client", "labels": {"app": "client"}, "networks": [{"network": "front", "ip": "172.30.0.4", "ipv6": "fd00:30::4"}]},
    {"name": "open", "labels": {"app": "open"}, "networks": [{"network": "front", "ip": "172.30.0.5"}]},
    {"name": "pay", "namespace": "shop", "labels": {"app": "pay", "tier": "gold"},
     "networks": [{"network": "front", "ip": "172.30.0.6", "ipv6": "fd00:30::6"}, {"network": "back", "ip": "172.28.0.6"}]}],
  "policies": [
    {"name": "db-ingress", "podSelector": {"matchLabels": {"app": "db"}},
     "ingress": [
       {"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"protocol": "TCP", "port": 5432}]},
       {"ports": [{"protocol": "TCP", "port": 6000}]},
       {"action": "deny", "from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
        "ports": [{"protocol": "TCP", "port": 6000}]},
       {"from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"protocol": "UDP"}]},
       {"action": "deny", "from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
        "ports": [{"protocol": "UDP", "port": 9999}]},
       {"from": [{"namespaceSelector": {"matchLabels": {"team": "billing"}}}],
        "ports": [{"protocol": "TCP", "port": 7000, "endPort": 7010}]},
       {"from": [{"host": true}], "ports": [{"protocol": "ICMP"}]}]},
    {"name": "web", "podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress", "Egress"],
     "ingress": [{"from": [{"ipBlock": {"cidr": "203.0.113.0/24"}}, {"host": true}],
                  "ports": [{"protocol": "TCP", "port": 80}]},
                 {"from": [{"ipBlock": {"cidr": "2001:db8::/32"}}], "ports": [{"protocol": "TCP", "port": 80}]},
                 {"from": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["198.51.100.0/24"]}}],
                  "ports": [{"protocol": "UDP", "port": 53}]}],
     "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "db"}}}]},
                {"to": [{"ipBlock": {"cidr": "198.18.0.0/15", "except": ["198.19.0.0/16"]}}],
                 "ports": [{"protocol": "TCP", "port": 443}]},
                {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "UDP", "port": 53}]},
                {"to": [{"ipBlock": {"cidr": "::/0", "except": ["2606:4700::/32"]}}],
                 "ports": [{"protocol": "UDP", "port": 53}]}]},
    {"name": "pay", "namespace": "shop", "podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold"]}]},
     "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}]}],
     "egress": [{"action": "deny", "to": [{"ipBlock": {"cidr": "8.8.8.0/24"}}]},
                {"action": "deny", "to": [{"ipBlock": {"cidr": "2001:4860::/32"}}]},
                {"to": [{"ipBlock": {"cidr": "fd00:30::/64", "except": ["fd00:30::4/128"]}}]},
                {"to": [{"ipBlock": {"cidr": "172.30.0.0/24", "except": ["172.30.0.4/32"]}}]}]}]})";

const char* kKubernetes = R"({
  "networks": [{"name": "k", "subnet": "10.44.0.0/24"}],
  "namespaces": [{"name": "x", "labels": {"ns": "x"}}, {"name": "y", "labels": {"ns": "y"}}],
  "containers": [
    {"name": "xa", "namespace": "x", "labels": {"pod": "a"}, "networks": [{"network": "k", "ip": "10.44.0.2"}],
     "publish": ["8081:80"]},
    {"name": "xb", "namespace": "x", "labels": {"pod": "b"}, "networks": [{"network": "k", "ip": "10.44.0.3"}]},
    {"name": "ya", "namespace": "y", "labels": {"pod": "a"}, "networks": [{"network": "k", "ip": "10.44.0.4"}]},
    {"name": "yc", "namespace": "y", "labels": {"pod": "c"}, "networks": [{"network": "k", "ip": "10.44.0.5"}]}],
  "policies": [
    {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
     "metadata": {"name": "deny-all-egress", "namespace": "x"},
     "spec": {"podSelector": {}, "policyTypes": ["Egress"],
              "egress": [{"ports": [{"protocol": "UDP", "port": 53}]},
                         {"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}},
                                  "podSelector": {"matchLabels": {"pod": "c"}}}]}]}},
    {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
     "metadata": {"name": "xa-from-y", "namespace": "x"},
     "spec": {"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
              "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}},
                                    {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.44.0.0/24"]}}],
                           "ports": [{"protocol": "TCP", "port": 80}, {"protocol": "TCP", "port": 81, "endPort": 90}]}]}}]})";

const char* kMulti = R"({
  "networks": [{"name": "network-a", "subnet": "172.20.0.0/16"},
               {"name": "network-b", "subnet": "172.21.0.0/16", "icc": false},
               {"name": "network-c", "subnet": "192.168.50.0/24", "masquerade": false}],
  "containers": [
    {"name": "container-a", "labels": {"role": "gate"},
     "networks": [{"network": "network-a", "ip": "172.20.0.2"}, {"network": "network-b", "ip": "172.21.0.2"},
                  {"network": "network-c", "ip": "192.168.50.2"}],
     "publish": ["8080:80", "9090:9090/udp"]},
    {"name": "container-b", "networks": [{"network": "network-b", "ip": "172.21.0.3"}]},
    {"name": "container-c", "labels": {"role": "store"}, "networks": [{"network": "network-a", "ip": "172.20.0.3"}],
     "publish": ["5000:5000"]},
    {"name": "container-d", "networks": [{"network": "network-c", "ip": "192.168.50.3"}]}],
  "policies": [
    {"name": "store-from-gate", "podSelector": {"matchLabels": {"role": "store"}},
     "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "gate"}}}, {"host": true}]},
                 {"action": "deny", "from": [{"ipBlock": {"cidr": "198.18.0.0/16"}}]}]}]})";

json j(const char* text) { return json::parse(text); }

}  // namespace

std::vector<FuzzConfig> seed_configs() {
  std::vector<FuzzConfig> out;
  out.push_back(
      make("isolation", kIsolation, {j(R"([{"name": "a1-quiet", "podSelector": {"matchLabels": {}},
                             "policyTypes": ["Ingress"], "ingress": []}])")}));
  out.push_back(make("icc-internal", kIccInternal, {}));
  out.push_back(make("published", kPublished, {j(R"([{"name": "app-only-443", "podSelector": {},
                             "ingress": [{"ports": [{"protocol": "TCP", "port": 443}]}]}])")},
                     {{"fzu0", "198.18.0.1"}, {"fzu1", "198.51.100.1"}}));
  FuzzConfig pol = make("policies", kPolicies, {json::array()});
  json v = pol.variants[0];
  v[0]["ingress"].erase(0);  // db no longer admits web on 5432
  v[1]["ingress"][0]["from"][0]["ipBlock"]["cidr"] = "198.51.100.0/24";
  pol.variants.push_back(v);
  pol.variants.push_back(
      j(R"([{"name": "deny-all", "podSelector": {}, "policyTypes": ["Ingress", "Egress"]}])"));
  out.push_back(pol);
  out.push_back(make("kubernetes", kKubernetes, {json::array()}));
  out.push_back(
      make("multi-network", kMulti,
           {json::array(),
            j(R"([{"name": "gate-egress", "podSelector": {"matchLabels": {"role": "gate"}},
                                            "egress": [{"action": "deny", "to": [{"podSelector": {}}]},
                                                       {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}])")},
           {{"fzu0", "198.18.0.1"}, {"fzu1", "203.0.113.1"}}));
  return out;
}

}  // namespace fuzz
