// table.cpp - see table.h.
#include "cni/table.h"

#include <algorithm>
#include <set>

#include "config/values.h"

namespace moat::cni {
namespace {

using nlohmann::json;

Error err(std::string msg, std::string details = {}) {
  return {kInvalidConfig, std::move(msg), std::move(details)};
}

json ports_json(const std::vector<PortMapping>& ports) {
  json a = json::array();
  for (const auto& p : ports) {
    json o = {
        {"hostPort", p.host_port}, {"containerPort", p.container_port}, {"protocol", p.protocol}};
    if (!p.host_ip.empty()) o["hostIP"] = p.host_ip;
    a.push_back(std::move(o));
  }
  return a;
}

std::vector<PortMapping> ports_from(const json& a) {
  std::vector<PortMapping> out;
  for (const auto& o : a)
    out.push_back({o.at("hostPort").get<int>(), o.at("containerPort").get<int>(),
                   o.at("protocol").get<std::string>(), o.value("hostIP", std::string())});
  return out;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ",") + x;
  return "[" + s + "]";
}

bool same_instance_keys(const Table& t, const NetConf& c) {
  return t.uplinks == c.uplinks && t.policy_dir == c.policy_dir &&
         t.ports_held_by_runtime == c.ports_held_by_runtime && t.limits == c.limits;
}

// `ip`'s first `len` bits as a prefix.
Ipv6Prefix prefix_of(Ipv6 ip, int len) {
  for (int i = 0; i < 16; ++i)
    ip.bytes[i] &= static_cast<uint8_t>(0xff00 >> std::clamp(len - 8 * i, 0, 8));
  return {ip, static_cast<uint8_t>(len)};
}

}  // namespace

json table_json(const Table& t) {
  // The IPv6 keys only when set: a table without IPv6 is written as before.
  json nets = json::array();
  for (const auto& n : t.networks) {
    json o = {{"name", n.name},
              {"bridge", n.bridge},
              {"subnet", n.subnet},
              {"gateway", n.gateway},
              {"icc", n.icc},
              {"internal", n.internal},
              {"masquerade", n.masquerade}};
    if (!n.subnet6.empty()) o["subnet6"] = n.subnet6;
    if (!n.gateway6.empty()) o["gateway6"] = n.gateway6;
    nets.push_back(std::move(o));
  }
  json members = json::array();
  for (const auto& m : t.members) {
    json o = {{"containerID", m.container_id},
              {"ifname", m.ifname},
              {"netns", m.netns},
              {"network", m.network},
              {"podName", m.pod_name},
              {"podNamespace", m.pod_namespace},
              {"labels", m.labels},
              {"ip", m.ip},
              {"mac", m.mac},
              {"hostVeth", m.host_veth},
              {"portMappings", ports_json(m.ports)}};
    if (!m.ip6.empty()) o["ip6"] = m.ip6;
    members.push_back(std::move(o));
  }
  json out = {{"uplinks", t.uplinks},
              {"policyDir", t.policy_dir},
              {"portsHeldByRuntime", t.ports_held_by_runtime},
              {"networks", nets},
              {"members", members}};
  // Only when set: a table without limits is written as before.
  for (auto [key, v] : t.limits.values())
    if (v) out["limits"][key] = *v;
  return out;
}

std::optional<Table> table_from_json(const json& j, std::string* why) {
  Table t;
  try {
    t.uplinks = j.at("uplinks").get<std::vector<std::string>>();
    t.policy_dir = j.at("policyDir").get<std::string>();
    t.ports_held_by_runtime = j.at("portsHeldByRuntime").get<bool>();
    if (j.contains("limits"))
      for (auto [key, dst] : t.limits.fields())
        if (j["limits"].contains(key)) *dst = j["limits"].at(key).get<uint32_t>();
    // Records written before IPv6 have no IPv6 keys.
    for (const auto& n : j.at("networks"))
      t.networks.push_back({n.at("name").get<std::string>(), n.at("bridge").get<std::string>(),
                            n.at("subnet").get<std::string>(), n.at("gateway").get<std::string>(),
                            n.value("subnet6", std::string()), n.value("gateway6", std::string()),
                            n.at("icc").get<bool>(), n.at("internal").get<bool>(),
                            n.at("masquerade").get<bool>()});
    for (const auto& m : j.at("members"))
      t.members.push_back(
          {m.at("containerID").get<std::string>(), m.at("ifname").get<std::string>(),
           m.at("netns").get<std::string>(), m.at("network").get<std::string>(),
           m.at("podName").get<std::string>(), m.at("podNamespace").get<std::string>(),
           m.at("labels").get<std::map<std::string, std::string>>(), m.at("ip").get<std::string>(),
           m.value("ip6", std::string()), m.at("mac").get<std::string>(),
           m.at("hostVeth").get<std::string>(), ports_from(m.at("portMappings"))});
  } catch (const json::exception& e) {
    if (why) *why = e.what();
    return std::nullopt;
  }
  return t;
}

Identity identity_of(const std::vector<std::pair<std::string, std::string>>& cni_args,
                     const NetConf& conf) {
  Identity id;
  for (const auto& [k, v] : cni_args) {
    if (k == "K8S_POD_NAME") {
      id.pod_name = v;
    } else if (k == "K8S_POD_NAMESPACE") {
      id.pod_namespace = v;
    } else if (k != "IgnoreUnknown" && k.rfind("K8S_", 0) != 0) {
      id.labels[k] = v;
    }
  }
  for (const auto& [k, v] : conf.labels) id.labels[k] = v;
  return id;
}

NetworkEntry network_of(const NetConf& conf, const Attachment& att, const std::string& bridge) {
  NetworkEntry n{.name = conf.name,
                 .bridge = bridge,
                 .subnet = {},  // from the address, below
                 .gateway = att.gateway,
                 .subnet6 = {},
                 .gateway6 = att.gateway6,
                 .icc = conf.icc,
                 .internal = conf.internal,
                 .masquerade = conf.masquerade};
  auto ip = Ipv4::parse(att.ipv4);
  if (ip) {
    Ipv4Prefix p;
    p.len = static_cast<uint8_t>(att.prefix);
    p.addr.value = ip->value & p.mask();
    n.subnet = p.str();
  }
  if (auto ip6 = Ipv6::parse(att.ipv6)) n.subnet6 = prefix_of(*ip6, att.prefix6).str();
  return n;
}

Error add_member(Table& t, const NetConf& conf, const NetworkEntry& net, Member m) {
  for (const auto& p : m.ports) {
    auto pub = parse_publish(publish_spec(p));
    if (!pub) return err("portMappings: " + publish_spec(p) + ": " + pub.error());
    // portmap maps a hostIP only to the container's address of its family;
    // moat forwards IPv6 to IPv6 only: refused rather than published nowhere.
    if (pub->host_ip6 && m.ip6.empty())
      return err("portMappings: " + publish_spec(p) + ": hostIP " + p.host_ip +
                     " is an IPv6 address, but the interface plugin gave " +
                     m.container_id.substr(0, 12) + " no IPv6 address on network " + conf.name,
                 "give the network an IPv6 range, or publish on an IPv4 address");
  }
  bool others = std::any_of(t.members.begin(), t.members.end(),
                            [&](const Member& x) { return x.network != conf.name; });
  if (others && !same_instance_keys(t, conf))
    return err("network " + conf.name + " gives instance " + conf.instance +
                   " other instance-wide settings than its other networks",
               "uplinks, policyDir, portsHeldByRuntime and limits must be the same in every "
               "conflist of an instance; it has uplinks " +
                   joined(t.uplinks) + ", policyDir \"" + t.policy_dir + "\", portsHeldByRuntime " +
                   (t.ports_held_by_runtime ? "true" : "false"));
  auto existing = std::find_if(t.networks.begin(), t.networks.end(),
                               [&](const NetworkEntry& n) { return n.name == net.name; });
  bool in_use = std::any_of(t.members.begin(), t.members.end(), [&](const Member& x) {
    return x.network == net.name && !(x.container_id == m.container_id && x.ifname == m.ifname);
  });
  if (existing != t.networks.end() && in_use) {
    if (existing->subnet != net.subnet)
      return err("network " + net.name + ": the interface plugin gave " +
                     m.container_id.substr(0, 12) + " an address in " + net.subnet +
                     ", its other containers are in " + existing->subnet,
                 "two conflists with the same name but different subnets; give each its own name");
    // A network has IPv6 or not: with and without, one side would be left open or cut off.
    if (existing->subnet6 != net.subnet6) {
      std::string given =
          net.subnet6.empty() ? "no IPv6 address" : "an IPv6 address in " + net.subnet6;
      std::string others = existing->subnet6.empty() ? "have none" : "are in " + existing->subnet6;
      return err("network " + net.name + ": the interface plugin gave " +
                     m.container_id.substr(0, 12) + " " + given + ", its other containers " +
                     others,
                 "two conflists with the same name but different IPv6 subnets; give each its own "
                 "name");
    }
    if (existing->bridge != net.bridge)
      return err("network " + net.name + ": " + m.host_veth + " is a port of bridge \"" +
                     net.bridge + "\", its other containers are on \"" + existing->bridge + "\"",
                 "two conflists with the same name but different bridges; give each its own name");
  }
  if (existing != t.networks.end()) {
    *existing = net;
  } else {
    t.networks.push_back(net);
  }
  t.uplinks = conf.uplinks;
  t.policy_dir = conf.policy_dir;
  t.ports_held_by_runtime = conf.ports_held_by_runtime;
  t.limits = conf.limits;
  auto same = std::find_if(t.members.begin(), t.members.end(), [&](const Member& x) {
    return x.container_id == m.container_id && x.ifname == m.ifname;
  });
  if (same != t.members.end()) {
    *same = std::move(m);
  } else {
    t.members.push_back(std::move(m));
  }
  return {0, {}, {}};
}

namespace {
void forget_empty_networks(Table& t) {
  std::erase_if(t.networks, [&](const NetworkEntry& n) {
    return std::none_of(t.members.begin(), t.members.end(),
                        [&](const Member& m) { return m.network == n.name; });
  });
}
}  // namespace

bool remove_member(Table& t, const std::string& container_id, const std::string& ifname) {
  return !remove_members(t, [&](const Member& m) {
            return m.container_id == container_id && m.ifname == ifname;
          }).empty();
}

const Member* find_member(const Table& t, const std::string& container_id,
                          const std::string& ifname) {
  for (const auto& m : t.members)
    if (m.container_id == container_id && m.ifname == ifname) return &m;
  return nullptr;
}

std::vector<Member> remove_members(Table& t, const std::function<bool(const Member&)>& gone) {
  std::vector<Member> out;
  std::erase_if(t.members, [&](const Member& m) {
    if (!gone(m)) return false;
    out.push_back(m);
    return true;
  });
  forget_empty_networks(t);
  return out;
}

std::vector<Member> collect_garbage(Table& t, const std::string& network, const json& valid) {
  std::set<std::pair<std::string, std::string>> keep;
  for (const auto& a : valid)
    keep.emplace(a.value("containerID", std::string()), a.value("ifname", std::string()));
  return remove_members(t, [&](const Member& m) {
    return m.network == network && !keep.contains({m.container_id, m.ifname});
  });
}

std::string container_name(const Table& t, const Member& m) {
  std::string short_id = m.container_id.substr(0, 12);
  if (m.pod_name.empty() || docker_name_problem(m.pod_name)) return short_id;
  // The first container (in the table's order) to carry a name keeps it.
  for (const auto& x : t.members) {
    if (x.container_id == m.container_id) break;
    if (x.pod_name == m.pod_name) return short_id;
  }
  return m.pod_name;
}

Config table_config(const Table& t) {
  Config cfg;
  cfg.source = "cni";
  cfg.uplinks = t.uplinks;
  cfg.limits = t.limits;
  for (const auto& n : t.networks) {
    Network net;
    net.name = n.name;
    net.bridge = n.bridge;
    if (auto p = Ipv4Prefix::parse(n.subnet)) net.subnet = *p;
    auto gw = Ipv4::parse(n.gateway);
    net.gateway = gw ? *gw : net.subnet.first_host();
    net.subnet6 = Ipv6Prefix::parse(n.subnet6);
    if (net.subnet6) {
      auto gw6 = Ipv6::parse(n.gateway6);
      net.gateway6 = gw6 ? *gw6 : net.subnet6->first_host();
    }
    net.icc = n.icc;
    net.internal = n.internal;
    net.masquerade = n.masquerade;
    cfg.networks.push_back(std::move(net));
  }
  std::map<std::string, size_t> by_id;
  for (const auto& m : t.members) {
    auto [it, fresh] = by_id.emplace(m.container_id, cfg.containers.size());
    if (fresh) {
      Container c;
      c.name = container_name(t, m);
      if (!m.pod_namespace.empty()) c.ns = m.pod_namespace;
      cfg.containers.push_back(std::move(c));
    }
    Container& c = cfg.containers[it->second];
    for (const auto& [k, v] : m.labels) c.labels[k] = v;
    moat::Attachment a;
    a.network = m.network;
    if (auto ip = Ipv4::parse(m.ip)) a.ip = *ip;
    a.ip_from_file = true;
    a.ip6 = Ipv6::parse(m.ip6);
    a.ip6_from_file = a.ip6.has_value();
    a.host_interface = m.host_veth;
    a.mac = parse_mac(m.mac);
    c.networks.push_back(std::move(a));
    for (const auto& p : m.ports)
      if (auto pub = parse_publish(publish_spec(p))) c.publish.push_back(*pub);
  }
  return cfg;
}

}  // namespace moat::cni
