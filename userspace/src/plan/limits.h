// limits.h - how big an instance's maps are made: the file's `limits`
// (config.h) with defaults for a small host, the entries of every map they
// size, and what that costs in memory. Pure code.
//
// Defaults (a host of a few dozen containers; raise them in `limits`):
//   conntrack        16,384 entries per family (8,192 translated flows),
//                    fewer on a host with less than 1 GiB: RAM / 64 KiB
//   endpoints         1,024 attachments (a Linux bridge's port limit)
//   published_ports   4,096 host ports per family
//   socket_nat        4,096 host connections to published ports per family
// What follows from them: `stats` has a slot per endpoint and direction,
// `frags`/`frags6` and the per-owner flow counts hold
// max(1,024, conntrack / 16). Every other map has its compiled size (abi.h);
// the policy generations are made at the size of what they hold.
//
// Memory (preallocated maps; the kernel's own figure is `moat status`):
//   conntrack x 578 B  +  endpoints x (360 B + 2 x 292 B x CPUs)
//   + published_ports x 210 B  +  socket_nat x 210 B  +  1.1 MiB
//   + 65,536 x 8 B x (CPUs + 1)                    (rule hit counters)
// and the policy generations, made at the size of what they hold.
// estimated_bytes() computes it; check_fits() refuses sizes over 1/8 of RAM.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
#include "util/result.h"

namespace moat {

struct HostCapacity {
  uint64_t ram_bytes = 0;  // 0: unknown, the defaults as for a large host
  uint32_t cpus = 1;       // possible CPUs: per-CPU maps hold one copy each
};

struct MapSizes {
  uint32_t conntrack = 0;
  uint32_t endpoints = 0;
  uint32_t published_ports = 0;
  uint32_t socket_nat = 0;

  uint32_t stats_slots() const { return 2 * endpoints; }
  uint32_t fragments() const;  // also the per-owner flow counts
  // max_entries of every map these decide, by map name (bpf/lib/maps.h).
  std::vector<std::pair<std::string, uint32_t>> by_map() const;
  nlohmann::json to_json() const;  // the four limits by their file names
  bool operator==(const MapSizes&) const = default;
};

// The max_entries a policy generation's hash is made with for `entries`:
// room to grow to twice as many before it is made anew, at least 1,024, at
// most `compiled_max` (abi.h). Its bucket array is allocated whole, empty
// or not (16 bytes a bucket), so a generation sized for the most a file may
// hold (MOAT_MAX_POLICY) cost 16 MiB for ten rules.
uint32_t generation_capacity(size_t entries, uint32_t compiled_max);

// `limits` where given, the defaults (above) for `host` elsewhere.
MapSizes resolve_limits(const Limits& limits, const HostCapacity& host);

// The sizes an instance's maps were made with, read back from their
// max_entries (`entries` by map name, as by_map() gives them); nullopt when
// one is missing.
std::optional<MapSizes> sizes_from_maps(
    const std::vector<std::pair<std::string, uint32_t>>& entries);

// The memory formula above, in bytes.
uint64_t estimated_bytes(const MapSizes& sizes, uint32_t cpus);

// Fails when the maps would take more than 1/8 of the host's memory, naming
// the limits that cost most.
Result<void> check_fits(const MapSizes& sizes, const HostCapacity& host);

// Fails when `want` (from the file) differs from `have` (the instance's maps):
// maps cannot be resized in place. `explicit_limits` says which were written.
Result<void> check_same_sizes(const MapSizes& want, const MapSizes& have,
                              const Limits& explicit_limits, const std::string& instance);

}  // namespace moat
