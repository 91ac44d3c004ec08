// veth.h - the host-side end of a container's veth, found over rtnetlink:
// Docker's inspect output names the container's MAC on each network but not
// the interface moat has to attach to on the host.
//
// The container's link is looked up inside its network namespace (entered on
// a short-lived thread of its own, so the calling thread never changes
// namespace, on any path), its IFLA_LINK is the peer's ifindex in the
// caller's namespace, and the peer is checked and named there. The caller
// must therefore be in dockerd's network namespace.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "util/net.h"
#include "util/result.h"

namespace moat {

// The host-side veth of the interface with MAC `mac` in the network namespace
// of process `container_pid` (Docker's State.Pid). Errors: the process is
// gone, no interface has that MAC, the interface is not a veth, its peer is
// not in the caller's namespace.
Result<std::string> host_veth(pid_t container_pid, const std::string& mac);

// The same for a network namespace file, e.g. Docker's SandboxKey (a netns
// only in dockerd's mount namespace: elsewhere it is an empty file).
Result<std::string> host_veth_in(const std::string& netns_path, const std::string& mac);

// The host side of interface `ifname` in network namespace `netns_path`
// (CNI_NETNS, CNI_IFNAME): the veth peer here, found by the container link's
// IFLA_LINK (as Cilium's generic-veth chaining does), the bridge it is a
// port of ("" when none), and the container link's MAC.
struct HostSide {
  std::string veth;
  std::string bridge;
  Mac container_mac{};
};
Result<HostSide> host_side_of(const std::string& netns_path, const std::string& ifname);

// The MAC of the other end of veth `host_ifname` (the container's side, in
// whatever namespace it lives): the only source MAC the endpoint programs
// let the container send from. Errors: no such interface, not a veth.
Result<Mac> veth_peer_mac(const std::string& host_ifname);

// The veths enslaved to any of `bridges` (by name) in the caller's network
// namespace, by name, with their ifindex: one dump of every link.
Result<std::map<std::string, int>> veth_ports(const std::set<std::string>& bridges);

}  // namespace moat
