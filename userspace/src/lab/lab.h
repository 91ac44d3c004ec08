// lab/ - the built-in lab: a Docker host, its containers and "the internet"
// built from network namespaces, so moat can be tried and tested with real
// traffic and no container engine (lab.h), reachability probes (probe.h),
// running programs (proc.h). A runtime like docker/ or cni/ will be: it
// produces desired state and hands it to reconcile(). May use util/,
// config/, policy/, plan/ and dataplane/.
//
// Names (lab L, all unique per lab so two labs never collide):
//   moat-L-host      the lab host (the "Docker host"): bridges, host-side veths
//   moat-L-out       the outside world, joined to the host by an uplink veth
//   moat-L-c-NAME    one namespace per container
// The machine's root namespace is never changed.
#pragma once

#include <string>
#include <vector>

#include "config/config.h"
#include "util/result.h"

namespace moat {

struct LabOptions {
  // A service on every exposed/published port of every container, answering
  // with the container's name. The "internet server" in the outside namespace
  // (198.19.0.1, tcp and udp port 80, answering with the client's address as
  // it sees it) is part of the topology and runs either way.
  bool start_listeners = true;
};

struct LabInfo {
  std::string name;
  std::string source;      // file it was built from
  std::string host_ns;
  std::string outside_ns;
  std::string uplink_host_ip;     // 198.18.0.1
  std::string uplink_outside_ip;  // 198.18.0.2
  // The uplink's IPv6 addresses, which only a lab with an IPv6 network has.
  std::string uplink_host_ip6;          // 2001:db8:ff::1
  std::string uplink_outside_ip6;       // 2001:db8:ff::2
  std::vector<std::string> namespaces;  // every namespace the lab made
};

std::string lab_host_ns(const std::string& lab);
std::string lab_outside_ns(const std::string& lab);
std::string lab_container_ns(const std::string& lab, const std::string& container);

// Lab names: [a-z0-9-], 1..20 chars (namespace and pin names derive from it).
bool valid_lab_name(const std::string& lab, std::string* why);

// Builds the topology for `cfg` and returns `cfg` with every attachment's
// host_interface filled in (names inside the lab host namespace), each
// network's bridge named (guarded, as lab_bind() does) and, unless the file
// names its own, uplinks = {"uplink0"} (the lab host's uplink). On failure
// everything made so far is removed again.
Result<Config> lab_up(const Config& cfg, const std::string& lab, const LabOptions& opt);

// Removes every namespace, listener process, /etc/netns entry and state file
// of the lab. Succeeds (and does nothing) when the lab does not exist.
Result<void> lab_down(const std::string& lab);

// `cfg` with the interface and uplink names lab_up gives a lab built from
// it, for applying the same topology again (with other policies).
Config lab_bind(Config cfg);  // by value: 100,000 rules are moved, not copied

// The lab file's text (valid, as read at `lab up`) with what lab_bind()
// gives its Config written into it: each attachment's interface, each
// network's bridge, the lab host's uplink unless the file names its own.
// The instance's record keeps this text, so that the record read again on
// its own (undoing a failed apply, finishing a crashed one, explain) makes
// the Config that was applied, not an unguarded or unbindable one.
Result<std::string> lab_bind_text(const std::string& text);

// Whether the lab for `cfg` is dual-stack: with an IPv6 network, the uplink
// gets its IPv6 addresses and the outside its IPv6 internet server.
bool lab_has_ipv6(const Config& cfg);

Result<LabInfo> lab_info(const std::string& lab);
Result<std::vector<std::string>> lab_list();

// The namespace for `target`: a container name, "host" or "outside".
Result<std::string> lab_target_ns(const std::string& lab, const std::string& target);

// Runs argv inside the target's namespace via `ip netns exec` (which also
// mounts /etc/netns/<ns>/hosts) and returns its exit code.
Result<int> lab_exec(const std::string& lab, const std::string& target,
                     const std::vector<std::string>& argv);

}  // namespace moat
