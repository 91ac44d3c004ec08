// random_config.cpp - random configurations from a seed: one to three
// networks with random icc/internal/masquerade, some dual-stack, two to eight containers
// with one or two attachments, random labels and namespaces, published
// ports (tcp/udp, some bound to an uplink address), and zero to three
// policies of random selectors, peers (pods, namespaces, host, ipBlock
// with except, IPv4 or IPv6) and ports, allow or deny; plus a policy-off variant.
#include <set>

#include "configs.h"
#include "pools.h"

namespace fuzz {

using nlohmann::json;

namespace {

const char* const kApps[] = {"web", "db", "cache", "api"};
const char* const kNamespaces[] = {"default", "ns1", "ns2"};

json networks(Rng& r, size_t n) {
  json out = json::array();
  for (size_t i = 0; i < n; i++) {
    json net = {{"name", "n" + std::to_string(i)},
                {"subnet", "10." + std::to_string(100 + i) + ".0.0/24"}};
    if (r.chance(0.3)) net["icc"] = false;
    if (r.chance(0.2)) net["internal"] = true;
    if (r.chance(0.25)) net["masquerade"] = false;
    if (r.chance(0.4)) net["ipv6_subnet"] = "fd00:" + std::to_string(100 + i) + "::/64";
    out.push_back(net);
  }
  return out;
}

json publishes(Rng& r, std::set<std::string>& used) {
  json out = json::array();
  const uint32_t n = r.below(3);
  for (uint32_t i = 0; i < n; i++) {
    const uint16_t host = uint16_t(8000 + r.below(20)),
                   cport = uint16_t(r.chance(0.5) ? host : 80 + r.below(5));
    const std::string proto = r.chance(0.7) ? "tcp" : "udp";
    const std::string key = std::to_string(host) + proto;
    if (!used.insert(key).second) continue;
    std::string text = std::to_string(host) + ":" + std::to_string(cport) + "/" + proto;
    if (r.chance(0.2)) text = "198.18.0.1:" + text;
    out.push_back(text);
  }
  return out;
}

json peer(Rng& r) {
  switch (r.below(4)) {
    case 0:
      return {{"podSelector", {{"matchLabels", {{"app", kApps[r.below(4)]}}}}}};
    case 1:
      return {{"namespaceSelector",
               {{"matchLabels", {{"kubernetes.io/metadata.name", kNamespaces[r.below(3)]}}}}}};
    case 2:
      return {{"host", true}};
    default: {
      if (r.chance(0.35)) {  // an IPv6 block: matches IPv6 peers only
        const bool local = r.chance(0.5);
        json b = {{"cidr", local ? "fd00::/8" : "::/0"}};
        if (r.chance(0.5))
          b["except"] = json::array({local || r.chance(0.5) ? "fd00:100::/64" : "2001:db8::/32"});
        return {{"ipBlock", b}};
      }
      const bool local = r.chance(0.5);
      json b = {{"cidr", local ? "10.100.0.0/16" : "0.0.0.0/0"}};
      if (r.chance(0.5))  // an except must lie inside its cidr
        b["except"] = json::array({local || r.chance(0.5) ? "10.100.0.0/24" : "8.8.8.0/24"});
      return {{"ipBlock", b}};
    }
  }
}

json rule(Rng& r, const char* dir) {
  json rule = json::object();
  if (r.chance(0.8)) rule[dir] = json::array({peer(r)});
  if (r.chance(0.6)) {
    json port = {{"protocol", r.chance(0.7) ? "TCP" : "UDP"}};
    if (r.chance(0.8)) port["port"] = 80 + r.below(5);
    if (r.chance(0.2) && port.contains("port")) port["endPort"] = port["port"].get<int>() + 10;
    rule["ports"] = json::array({port});
  }
  if (r.chance(0.25)) rule["action"] = "deny";
  return rule;
}

json policies(Rng& r) {
  json out = json::array();
  const uint32_t n = r.below(4);
  for (uint32_t i = 0; i < n; i++) {
    json p = {{"name", "p" + std::to_string(i)},
              {"namespace", kNamespaces[r.below(3)]},
              {"podSelector", r.chance(0.3) ? json::object()
                                            : json{{"matchLabels", {{"app", kApps[r.below(4)]}}}}}};
    if (r.chance(0.7)) p["ingress"] = json::array({rule(r, "from")});
    if (r.chance(0.5)) p["egress"] = json::array({rule(r, "to")});
    if (r.chance(0.3)) p["policyTypes"] = json::array({"Ingress", "Egress"});
    out.push_back(p);
  }
  return out;
}

}  // namespace

FuzzConfig random_config(uint64_t seed) {
  Rng r(seed);
  const size_t nets = 1 + r.below(3), containers = 2 + r.below(7);
  json doc = {{"networks", networks(r, nets)}, {"containers", json::array()}};
  std::set<std::string> used_ports;
  size_t atts = 0, next_ip[3] = {2, 2, 2};
  char mac[18];
  for (size_t i = 0; i < containers && atts + 2 <= kMaxAttachments; i++) {
    json c = {{"name", "c" + std::to_string(i)},
              {"namespace", kNamespaces[r.below(3)]},
              {"labels", {{"app", kApps[r.below(4)]}}},
              {"networks", json::array()}};
    std::set<size_t> on;
    const size_t n = r.chance(0.8) ? 1 : 2;
    for (size_t k = 0; k < n; k++) on.insert(r.below(uint32_t(nets)));
    for (size_t net : on) {
      std::snprintf(mac, sizeof mac, "02:42:fb:00:00:%02zx", atts + 1);
      json a = {{"network", "n" + std::to_string(net)},
                {"ip", "10." + std::to_string(100 + net) + ".0." + std::to_string(next_ip[net])},
                {"interface", attachment_device(atts++)},
                {"mac", mac}};
      // On a dual-stack network: an address of its own, or IPAM's next free one.
      if (doc["networks"][net].contains("ipv6_subnet") && r.chance(0.5))
        a["ipv6"] = "fd00:" + std::to_string(100 + net) + "::" + std::to_string(next_ip[net] + 16);
      next_ip[net]++;
      c["networks"].push_back(a);
    }
    // moat refuses to publish a container that is only on internal networks.
    bool reachable = false;
    for (size_t net : on) reachable = reachable || !doc["networks"][net].value("internal", false);
    const json pub = publishes(r, used_ports);
    if (!pub.empty() && reachable) c["publish"] = pub;
    doc["containers"].push_back(c);
  }
  doc["namespaces"] = json::array({{{"name", "ns1"}, {"labels", {{"tier", "a"}}}}});
  doc["policies"] = policies(r);
  doc["host"] = {{"uplinks", json::array({"fzu0"})}};
  FuzzConfig fc;
  fc.name = "random-" + std::to_string(seed % 100000);
  fc.doc = doc;
  fc.uplinks = {{"fzu0", "198.18.0.1"}};
  fc.variants = {doc["policies"], json::array(), policies(r)};
  return fc;
}

}  // namespace fuzz
