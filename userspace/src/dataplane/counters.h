// counters.h - the per-CPU `stats` array: one slot per attachment (the
// endpoint or uplink entry names it), both directions, summed over CPUs
// when read. Slots are given by plan/ (assign_stats_slots) and zeroed here
// before first use and after their interface is detached.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>

#include "abi.h"
#include "util/result.h"

struct bpf_map;

namespace moat {

Result<moat_stats> read_stats(const bpf_map* m, uint32_t slot, uint32_t dir);
// Both directions of `slot` back to zero, on every CPU.
Result<void> zero_stats_slot(const bpf_map* m, uint32_t slot);
// An uplink's counter slot where the programs look first (0: none); an
// ifindex beyond that array is found through `uplinks` alone.
Result<void> set_uplink_slot(const bpf_map* m, int ifindex, uint32_t slot);
// {"packets", "bytes", "drops": {reason: n}} as `moat status` prints it.
nlohmann::json stats_json(const moat_stats& s);

}  // namespace moat
