// fastpath.h - the fast path between containers of one network
// (bpf/lib/redirect.h): its switch (`fast_cfg`), on by default where the
// kernel has bpf_redirect_peer(), and its counter (`fast_stats`).
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

// {"peer": on?, "kernel_redirect_peer", "peer_packets", "peer_bytes"} of an
// instance, after setting the switch when `set` says so. Turning it on
// where the kernel lacks the helper fails.
Result<nlohmann::json> fast_path(const std::string& instance, std::optional<bool> set);

}  // namespace moat
