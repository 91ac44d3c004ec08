// topology.cpp - parsing a fuzzing configuration and the address facts of topology.h.
#include "topology.h"

#include <netinet/in.h>

#include <cstdio>

namespace fuzz {

using nlohmann::json;

json FuzzConfig::to_json() const {
  return {{"name", name}, {"config", doc}, {"uplinks", uplinks}, {"variants", variants}};
}

FuzzConfig FuzzConfig::from_json(const json& j) {
  FuzzConfig fc;
  fc.name = j.value("name", "replayed");
  fc.doc = j.at("config");
  fc.uplinks = j.value("uplinks", std::map<std::string, std::string>{});
  if (j.contains("variants")) fc.variants = j["variants"].get<std::vector<json>>();
  if (fc.variants.empty()) fc.variants.push_back(fc.doc.value("policies", json::array()));
  return fc;
}

Mac mac_from_text(const std::string& s) {
  Mac m{};
  unsigned v[6];
  if (std::sscanf(s.c_str(), "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) == 6)
    for (int i = 0; i < 6; i++) m[i] = uint8_t(v[i]);
  return m;
}

namespace {

Mac mac_of_ip(uint8_t b0, uint8_t b1, uint32_t ip) {
  return {b0, b1, uint8_t(ip >> 24), uint8_t(ip >> 16), uint8_t(ip >> 8), uint8_t(ip)};
}

// Until the file format has "mac", the model still knows each container's MAC.
json without_macs(const json& doc) {
  json out = doc;
  if (out.contains("containers"))
    for (auto& c : out["containers"])
      if (c.contains("networks"))
        for (auto& a : c["networks"])
          if (a.is_object()) a.erase("mac");
  return out;
}

bool mentions_mac(const std::vector<moat::Problem>& problems) {
  for (const auto& p : problems)
    if (p.message.find("\"mac\"") != std::string::npos || p.path.ends_with(".mac")) return true;
  return false;
}

}  // namespace

std::optional<moat::Config> parse_document(const json& doc, bool* macs, std::string* error) {
  auto r = moat::parse_config(doc.dump(), "fuzz.json");
  *macs = true;
  if (!r.config && mentions_mac(r.problems)) {
    *macs = false;
    r = moat::parse_config(without_macs(doc).dump(), "fuzz.json");
  }
  if (r.config) return r.config;
  for (const auto& p : r.problems) *error += p.format("fuzz.json") + "\n";
  return std::nullopt;
}

namespace {

// The MAC the document gives attachment j of container i, else Docker's 02:42:<ip>.
Mac attachment_mac(const json& doc, size_t i, size_t j, uint32_t ip) {
  const json& c = doc["containers"][i];
  if (c.contains("networks") && j < c["networks"].size()) {
    const json& a = c["networks"][j];
    if (a.is_object() && a.contains("mac")) return mac_from_text(a["mac"].get<std::string>());
  }
  return mac_of_ip(0x02, 0x42, ip);
}

}  // namespace

Topology Topology::build(const FuzzConfig& fc, const std::map<std::string, uint32_t>& ifindex,
                         uint32_t unknown_ifindex, std::string* error) {
  Topology t;
  t.unknown_ifindex = unknown_ifindex;
  auto cfg = parse_document(fc.doc, &t.macs_in_file, error);
  if (!cfg) return t;
  t.cfg = std::move(*cfg);
  for (const auto& n : t.cfg.networks) {
    t.nets.push_back({n.name, n.subnet, n.gateway.value, n.icc, n.internal,
                      n.masquerade && !n.internal, mac_of_ip(0x02, 0x00, n.gateway.value),
                      n.subnet6, n.gateway6.bytes});
  }
  for (size_t i = 0; i < t.cfg.containers.size(); i++) {
    const auto& c = t.cfg.containers[i];
    for (size_t j = 0; j < c.networks.size(); j++) {
      const auto& a = c.networks[j];
      AttInfo att;
      att.container = i;
      for (size_t k = 0; k < t.nets.size(); k++)
        if (t.nets[k].name == a.network) att.net = k;
      att.ip = a.ip.value;
      att.mac = attachment_mac(fc.doc, i, j, att.ip);
      att.dev = a.host_interface;
      auto it = ifindex.find(att.dev);
      att.ifindex = it == ifindex.end() ? 0 : it->second;
      if (a.ip6) att.ip6 = a.ip6->bytes;
      att.ll = eui64_link_local(att.mac);
      t.atts.push_back(att);
    }
    for (const auto& p : c.publish)
      for (uint32_t k = 0; k < p.count && p.on_ipv4(); k++)  // the model's publishes are IPv4's
        t.publishes.push_back({p.host_ip ? std::optional(p.host_ip->value) : std::nullopt,
                               uint16_t(p.host_port + k), uint16_t(p.container_port + k),
                               moat::ip_protocol_number(p.protocol), i});
  }
  for (const auto& name : t.cfg.uplinks) {
    UplinkInfo u;
    u.dev = name;
    auto it = ifindex.find(name);
    u.ifindex = it == ifindex.end() ? 0 : it->second;
    auto ip = fc.uplinks.contains(name) ? moat::Ipv4::parse(fc.uplinks.at(name)) : std::nullopt;
    u.ip = ip ? ip->value : 0;
    u.mac = mac_of_ip(0x02, 0x10, u.ip);
    t.uplinks.push_back(u);
  }
  return t;
}

const AttInfo* Topology::att_at(uint32_t ifindex) const {
  for (const auto& a : atts)
    if (a.ifindex == ifindex && ifindex != 0) return &a;
  return nullptr;
}

const UplinkInfo* Topology::uplink_at(uint32_t ifindex) const {
  for (const auto& u : uplinks)
    if (u.ifindex == ifindex && ifindex != 0) return &u;
  return nullptr;
}

const AttInfo* Topology::att_with_ip(uint32_t ip) const {
  for (const auto& a : atts)
    if (a.ip == ip) return &a;
  return nullptr;
}

AddrClass Topology::classify(uint32_t ip) const {
  for (size_t k = 0; k < nets.size(); k++)
    if (nets[k].gateway == ip) return {AddrKind::Gateway, k};
  for (const auto& u : uplinks)
    if (u.ip == ip) return {AddrKind::Host, 0};
  for (size_t k = 0; k < nets.size(); k++)
    if (nets[k].subnet.contains(moat::Ipv4{ip})) return {AddrKind::Subnet, k};
  return {AddrKind::World, 0};
}

bool Topology::is_host(uint32_t ip, bool with_loopback) const {
  if (with_loopback && (ip >> 24) == 127) return true;
  const AddrKind k = classify(ip).kind;
  return k == AddrKind::Gateway || k == AddrKind::Host;
}

std::optional<size_t> Topology::container_of(uint32_t ip) const {
  if (const AttInfo* a = att_with_ip(ip)) return a->container;
  return std::nullopt;
}

const PublishInfo* Topology::publish_for(uint32_t dst, uint16_t port, uint8_t proto) const {
  const PublishInfo* wildcard = nullptr;
  for (const auto& p : publishes) {
    if (p.host_port != port || p.proto != proto) continue;
    if (p.host_ip && *p.host_ip == dst) return &p;
    if (!p.host_ip && !wildcard) wildcard = &p;
  }
  return wildcard;
}

std::optional<uint32_t> Topology::backend_ip(const PublishInfo& p,
                                             std::optional<size_t> client_net) const {
  if (client_net)
    for (const auto& a : atts)
      if (a.container == p.container && a.net == *client_net) return a.ip;
  for (const auto& a : atts)
    if (a.container == p.container && !nets[a.net].internal) return a.ip;
  return std::nullopt;
}

bool Topology::is_broadcast_for(const AttInfo& a, uint32_t ip) const {
  return ip == 0xffffffffu || (ip >> 28) == 0xe || ip == nets[a.net].subnet.broadcast().value;
}

}  // namespace fuzz

namespace fuzz {

AddrClass Topology::classify6(const Ip6Addr& ip) const {
  for (size_t k = 0; k < nets.size(); k++)
    if (nets[k].subnet6 && nets[k].gateway6 == ip) return {AddrKind::Gateway, k};
  for (size_t k = 0; k < nets.size(); k++)
    if (nets[k].subnet6 && nets[k].subnet6->contains(moat::Ipv6{ip})) return {AddrKind::Subnet, k};
  return {AddrKind::World, 0};
}

const AttInfo* Topology::att_with_ip6(const Ip6Addr& ip) const {
  for (const auto& a : atts)
    if ((a.ip6 && *a.ip6 == ip) || a.ll == ip) return &a;
  return nullptr;
}

bool Topology::has_ipv6() const {
  for (const auto& a : atts)
    if (a.ip6) return true;
  return false;
}

}  // namespace fuzz
