#include "observe/names.h"

#include "policy/policy.h"

namespace moat::obs {

using nlohmann::json;

const Iface* Names::iface(uint32_t ifindex) const {
  auto it = ifaces.find(ifindex);
  return it == ifaces.end() ? nullptr : &it->second;
}
const AddrName* Names::addr(const std::string& ip) const {
  auto it = addrs.find(ip);
  return it == addrs.end() ? nullptr : &it->second;
}
namespace {
std::string label_or_empty(const std::map<std::string, std::string>& labels, const char* key) {
  auto it = labels.find(key);
  return it == labels.end() ? "" : it->second;
}
}  // namespace

std::string compose_project(const std::map<std::string, std::string>& labels) {
  return label_or_empty(labels, "com.docker.compose.project");
}
std::string compose_service(const std::map<std::string, std::string>& labels) {
  return label_or_empty(labels, "com.docker.compose.service");
}

const RuleName* Names::rule(uint32_t id) const { return id < rules.size() ? &rules[id] : nullptr; }

Names names_from_state(const std::string& instance, const json& st) {
  Names n;
  n.instance = instance;
  for (const auto& i : st.value("interfaces", json::array())) {
    Iface f{i.value("name", ""),      false,
            i.value("container", ""), i.value("network", ""),
            i.value("ip", ""),        i.value("stats_slot", 0u)};
    n.ifaces[i.value("ifindex", 0u)] = f;
    if (!f.ip.empty()) n.addrs[f.ip] = {f.container, f.network};
    if (auto ip6 = i.value("ip6", std::string()); !ip6.empty())
      n.addrs[ip6] = {f.container, f.network};
  }
  for (const auto& net : st.value("networks", json::array()))
    for (const char* key : {"gateway", "gateway6"})
      if (auto gw = net.value(key, std::string()); !gw.empty())
        n.addrs.emplace(gw, AddrName{"host", net.value("name", "")});
  for (const auto& u : st.value("uplinks", json::array())) {
    Iface f{u.value("name", ""), true, "", "", u.value("ip", ""), u.value("stats_slot", 0u)};
    n.ifaces[u.value("ifindex", 0u)] = f;
    if (!f.ip.empty()) n.addrs.emplace(f.ip, AddrName{"host", f.name});
    // IPv6 masquerades behind it: a translated source to name.
    if (auto ip6 = u.value("ip6", std::string()); !ip6.empty())
      n.addrs.emplace(ip6, AddrName{"host", f.name});
  }
  // A bridge's drops are of ports no endpoint claims: named by the network.
  for (const auto& b : st.value("bridges", json::array()))
    n.ifaces[b.value("ifindex", 0u)] =
        Iface{b.value("name", ""), false, "", b.value("network", ""), "", 0, true};
  for (const auto& r : st.value("policy", json::object()).value("rules", json::array()))
    n.rules.push_back({r.value("policy", ""), r.value("namespace", ""), r.value("direction", ""),
                       r.value("action", ""), r.value("text", ""), r.value("index", 0)});
  json ids = st.value("ids", json::object()).value("containers", json::object());
  for (const auto& [name, id] : ids.items()) n.containers[name];
  return n;
}

void add_config(Names& names, const Config& cfg) {
  for (const auto& c : cfg.containers) {
    auto& info = names.containers[c.name];
    info.ns = c.ns;
    info.labels = c.labels;
    info.ingress_isolated_by.clear();
    info.egress_isolated_by.clear();
    for (const auto& p : cfg.policies) {
      if (!policy_selects(p, c)) continue;
      if (p.isolates_ingress) info.ingress_isolated_by.push_back(p.ns + "/" + p.name);
      if (p.isolates_egress) info.egress_isolated_by.push_back(p.ns + "/" + p.name);
    }
  }
}

}  // namespace moat::obs
