// fastpath.h - the fast paths' switches (`fast_cfg`) and counters
// (`fast_stats`): between containers of one network (bpf/lib/redirect.h),
// on by default where the kernel has bpf_redirect_peer(), and from a
// network's bridge to an uplink (bpf/lib/fast_route.h), off by default.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "util/result.h"

struct bpf_map;

namespace moat {

// Whether TC programs may call bpf_redirect_peer() (Linux 5.10+). Asked of
// the kernel once per process; MOAT_KERNEL_LACKS=redirect_peer makes it
// answer false (failpoint.h).
Result<bool> kernel_redirect_peer();

// At apply: the switch turned off when the kernel lacks the helper; left
// as it is otherwise, so `moat fastpath off` survives later applies.
Result<void> fast_path_default(const bpf_map* fast_cfg);

// Whether TC programs may call bpf_redirect_neigh() (Linux 5.10+), asked
// once per process; MOAT_KERNEL_LACKS=redirect_neigh makes it answer false.
Result<bool> kernel_redirect_neigh();

// What `moat fastpath` sets; nullopt leaves a switch as it is.
struct FastPathSwitches {
  std::optional<bool> peer;
  std::optional<bool> routed;
};

// {"peer", "kernel_redirect_peer", "routed", "kernel_redirect_neigh",
// "peer_packets", "peer_bytes", "routed_packets", "routed_bytes" (to the
// uplinks), "routed_in_packets", "routed_in_bytes" (replies to containers;
// null where the instance's maps, made by an older moat, have no slot)} of an
// instance, after setting the switches `set` names. Turning one on where
// the kernel lacks its helper fails and changes nothing.
Result<nlohmann::json> fast_path(const std::string& instance, const FastPathSwitches& set);

}  // namespace moat
