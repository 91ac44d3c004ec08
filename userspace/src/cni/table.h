// table.h - what the CNI plugin keeps of an instance: every attachment an
// ADD reported and no DEL or GC removed yet, the networks they are on and
// the instance-wide settings, and the moat file all of that corresponds to.
// Kept as the Inputs' producer (config/inputs.h), so the table and the files
// the kernel was programmed from are one record. Pure code.
#pragma once

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cni/protocol.h"
#include "config/config.h"

namespace moat::cni {

// One ADD: a container's interface on one network.
struct Member {
  std::string container_id, ifname, netns;
  std::string network;        // the network configuration's name
  std::string pod_name;       // K8S_POD_NAME ("" when the runtime gave none)
  std::string pod_namespace;  // K8S_POD_NAMESPACE ("" when the runtime gave none)
  std::map<std::string, std::string> labels;
  std::string ip, ip6, mac, host_veth;  // from prevResult and the veth's IFLA_LINK; ip6 may be ""
  std::vector<PortMapping> ports;
};

// A CNI network as the interface plugin made it: its bridge and subnet come
// from the first ADD on it, the options from moat's keys in its conflist.
struct NetworkEntry {
  std::string name, bridge;
  std::string subnet;    // "10.89.1.0/24"
  std::string gateway;   // "" when the interface plugin reported none
  std::string subnet6;   // "fd00:89:1::/64", "" for a network without IPv6
  std::string gateway6;  // "" when the interface plugin reported none
  bool icc = true, internal = false, masquerade = true;
};

struct Table {
  std::vector<std::string> uplinks;
  std::string policy_dir;
  bool ports_held_by_runtime = false;
  Limits limits;  // the instance's map sizes (netconf `limits`)
  std::vector<NetworkEntry> networks;
  std::vector<Member> members;  // in the order they were added
};

nlohmann::json table_json(const Table& t);
// nullopt (and *why) when `j` is not what table_json() writes.
std::optional<Table> table_from_json(const nlohmann::json& j, std::string* why);

// Who the attachment belongs to: CNI_ARGS's K8S_POD_NAME and
// K8S_POD_NAMESPACE, and as labels every other CNI_ARGS pair (IgnoreUnknown
// and the other K8S_ keys aside) and args.cni.labels (which win).
struct Identity {
  std::string pod_name, pod_namespace;
  std::map<std::string, std::string> labels;
};
Identity identity_of(const std::vector<std::pair<std::string, std::string>>& cni_args,
                     const NetConf& conf);

// The network entry an ADD with `conf` and `att` describes.
NetworkEntry network_of(const NetConf& conf, const Attachment& att, const std::string& bridge);

// ADD: `m` replaces a member with the same container id and ifname. Errors
// (code 7): the conflist's instance-wide keys (uplinks, policyDir,
// portsHeldByRuntime) differ from those of another network's members, or the
// network's subnet, IPv6 subnet (or having one at all) or bridge differs
// from what its members were given.
Error add_member(Table& t, const NetConf& conf, const NetworkEntry& net, Member m);

// DEL: false when there was no such member. A network without members is
// forgotten with its last one.
bool remove_member(Table& t, const std::string& container_id, const std::string& ifname);

const Member* find_member(const Table& t, const std::string& container_id,
                          const std::string& ifname);

// The members `gone` says are, removed and returned (networks left without
// members are forgotten with them).
std::vector<Member> remove_members(Table& t, const std::function<bool(const Member&)>& gone);

// GC: the members of `network` that `valid` ([{"containerID", "ifname"}])
// does not name are removed and returned.
std::vector<Member> collect_garbage(Table& t, const std::string& network,
                                    const nlohmann::json& valid);

// The table as a moat configuration: a network per CNI network, a container
// per container id (its attachments in the order they were added), named by
// its K8S_POD_NAME, or by the id's first 12 characters when there is none or
// another container has it already.
Config table_config(const Table& t);

// What the moat container of `m` is called in table_config(t).
std::string container_name(const Table& t, const Member& m);

}  // namespace moat::cni
