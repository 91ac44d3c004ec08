// names.h - how an instance's numbers (ifindexes, addresses, rule ids) read
// as names. Part of observe.h.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "config/config.h"

namespace moat::obs {

struct ContainerInfo {
  std::string ns;  // "" when the config is unknown
  std::map<std::string, std::string> labels;
  std::vector<std::string> ingress_isolated_by;  // "namespace/policy"
  std::vector<std::string> egress_isolated_by;
};

// Docker Compose's labels (com.docker.compose.project / .service) of a
// container, "" when it has none: counters, flows and drops name them.
std::string compose_project(const std::map<std::string, std::string>& labels);
std::string compose_service(const std::map<std::string, std::string>& labels);

struct Iface {
  std::string name;
  bool uplink = false;
  std::string container, network, ip;  // container/network empty for uplinks
  uint32_t stats_slot = 0;             // its counters in `stats`; 0: not known
  bool bridge = false;  // a network's guarded bridge: its drops count as unattributed
};

struct AddrName {
  std::string container;  // container name, or "host" (gateway, uplink address)
  std::string network;    // the network (container or gateway), the uplink's name for "host"
};

struct RuleName {
  std::string policy, ns, direction, action, text;
  int index = 0;
};

struct Names {
  std::string instance;
  std::map<uint32_t, Iface> ifaces;       // by ifindex
  std::map<std::string, AddrName> addrs;  // by dotted IPv4 or canonical IPv6 text
  std::vector<RuleName> rules;            // by rule id
  std::map<std::string, ContainerInfo> containers;

  const Iface* iface(uint32_t ifindex) const;
  const AddrName* addr(const std::string& ip) const;
  const RuleName* rule(uint32_t id) const;
};

// From `moat::instance_state()` (interfaces, uplinks, networks, policy rules).
Names names_from_state(const std::string& instance, const nlohmann::json& state);
// Adds namespaces, labels and policy isolation from the config the instance
// was applied from.
void add_config(Names& names, const Config& cfg);

}  // namespace moat::obs
