// scale.cpp - the synthetic policies of scale.h and the config helpers the
// policy tests and moat_kernel_bench share.
#include "scale.h"

#include <arpa/inet.h>

#include <algorithm>
#include <stdexcept>
#include <utility>

namespace moat_test {

using Json = nlohmann::json;

Json J(std::string single_quoted) {
  std::replace(single_quoted.begin(), single_quoted.end(), '\'', '"');
  return Json::parse(single_quoted);
}

moat::Config parse(const Json& doc, const std::string& source) {
  moat::ParseResult r = moat::parse_config(doc.dump(), source);
  if (!r.config) {
    std::string why;
    for (const moat::Problem& p : r.problems) why += "\n  " + p.format(source);
    throw std::runtime_error("test config rejected:" + why);
  }
  return *r.config;
}

moat::PolicyPlan compile(const moat::Config& cfg, const std::vector<moat::Ipv4>& hosts) {
  moat::Result<moat::PolicyPlan> plan = moat::compile_policies(cfg, hosts);
  if (!plan) throw std::runtime_error("compile_policies: " + plan.error().message());
  if (!plan->active) throw std::runtime_error("compile_policies: no policy in the test config");
  return std::move(*plan);
}

in_addr_t scale_ip(uint32_t i) { return htonl(0x0a000002u + i); }

std::string scale_ip6(uint32_t i) {
  in6_addr a{};
  inet_pton(AF_INET6, "fd00:a::", &a);
  const uint32_t low = 2 + i;
  a.s6_addr[12] = uint8_t(low >> 24);
  a.s6_addr[13] = uint8_t(low >> 16);
  a.s6_addr[14] = uint8_t(low >> 8);
  a.s6_addr[15] = uint8_t(low);
  char text[INET6_ADDRSTRLEN];
  inet_ntop(AF_INET6, &a, text, sizeof text);
  return text;
}

Json scale_document(uint32_t first, uint32_t count, uint32_t ports, uint32_t rules_each,
                    bool ipv6) {
  if (count == 0 || first + count > kScaleMaxContainers)
    throw std::invalid_argument("scale_document: containers " + std::to_string(first) + ".." +
                                std::to_string(first + count) + " do not fit in 10.0.0.0/16");
  if (ports == 0 || rules_each == 0 ||
      uint64_t(kScaleFirstPort) + uint64_t(rules_each) * ports - 1 > 65535)
    throw std::invalid_argument("scale_document: " + std::to_string(rules_each) + " rules of " +
                                std::to_string(ports) + " ports run past port 65535");
  Json doc;
  doc["networks"] = J("[{'name': 'scale', 'subnet': '10.0.0.0/16'}]");
  if (ipv6) doc["networks"][0]["ipv6_subnet"] = "fd00:a::/64";
  doc["containers"] = Json::array();
  doc["policies"] = Json::array();
  for (uint32_t i = first; i < first + count; i++) {
    const std::string name = "c" + std::to_string(i);
    const std::string peer = "c" + std::to_string(first + (i - first + count - 1) % count);
    char ip[INET_ADDRSTRLEN];
    const in_addr_t a = scale_ip(i);
    inet_ntop(AF_INET, &a, ip, sizeof ip);
    Json c = Json::object();
    c["name"] = name;
    c["labels"] = Json::object({{"id", name}});
    c["networks"] = Json::array({Json::object({{"network", "scale"}, {"ip", ip}})});
    if (ipv6) c["networks"][0]["ipv6"] = scale_ip6(i);
    doc["containers"].push_back(c);
    Json from = Json::array({J("{'podSelector': {'matchLabels': {}}}")});
    from[0]["podSelector"]["matchLabels"]["id"] = peer;
    Json ingress = Json::array();
    for (uint32_t j = 0; j < rules_each; j++) {
      const uint32_t lo = kScaleFirstPort + j * ports;
      Json port = Json::object({{"protocol", "TCP"}, {"port", lo}});
      if (ports > 1) port["endPort"] = lo + ports - 1;
      ingress.push_back(Json::object({{"from", from}, {"ports", Json::array({port})}}));
    }
    Json policy = Json::object();
    policy["name"] = "p" + std::to_string(i);
    policy["podSelector"] = J("{'matchLabels': {}}");
    policy["podSelector"]["matchLabels"]["id"] = name;
    policy["ingress"] = std::move(ingress);
    doc["policies"].push_back(policy);
  }
  return doc;
}

Scale load_scale(uint32_t first, uint32_t count, uint32_t ports, uint32_t rules_each, bool ipv6) {
  Scale s;
  const moat::Config cfg =
      parse(scale_document(first, count, ports, rules_each, ipv6), "scale.json");
  const moat::PolicyPlan plan = compile(cfg);
  s.rules = plan.rules.size();
  s.entries = plan.entries.size();
  s.ipcache = plan.ipcache.size();
  s.ipcache6 = plan.ipcache6.size();
  s.skel = load_skeleton();
  const moat::Network& n = cfg.networks.at(0);
  const Network net = {1, n.subnet.addr.to_be(), n.subnet.len, n.gateway.to_be(),
                       MOAT_NET_F_ICC | MOAT_NET_F_MASQUERADE};
  add_network(s.skel, net);
  // Only the measured container's runs claim a device; the others just have
  // to exist, on ifindexes no device in the namespace has.
  if (ipv6) {
    const std::string subnet6 = n.subnet6->addr.str(), gateway6 = n.gateway6.str();
    add_network6(s.skel, net, subnet6.c_str(), n.subnet6->len, gateway6.c_str());
  }
  for (uint32_t i = first; i < first + count; i++) {
    const uint32_t ifindex = i == kMeasured ? ifindex_of("moat-a") : 100000 + i;
    add_endpoint(s.skel, ifindex, net, scale_ip(i));
    if (ipv6) set_endpoint_ipv6(s.skel, ifindex, scale_ip6(i).c_str());
  }
  install_policy(s.skel, 1, plan.ipcache, plan.entries, plan.ipcache6);
  return s;
}

}  // namespace moat_test
