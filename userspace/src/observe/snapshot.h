// snapshot.h - the counters of an instance at one moment, and what they
// read as (stats JSON and text, Prometheus). Part of observe.h.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "abi.h"
#include "observe/names.h"
#include "util/result.h"

namespace moat::obs {

const char* dir_name(uint32_t dir);  // "from_container", "to_container", "from_world", "to_world"

struct Counters {
  uint64_t packets = 0, bytes = 0, new_flows = 0, drop_bytes = 0;
  std::array<uint64_t, MOAT_NR_DROP_SLOTS> drops{};
  uint64_t drops_total() const;
};

struct AttachmentStats {
  bool uplink = false;
  std::string interface, container, network, ns, ip;
  uint32_t ifindex = 0;
  std::map<std::string, std::string> labels;
  Counters dir[2];                  // [0] from_container/from_world, [1] to_container/to_world
  uint64_t active_connections = 0;  // containers only
};

struct RuleHits {
  uint32_t id = 0;
  RuleName rule;
  uint64_t hits = 0;
};

struct Snapshot {
  std::string instance;
  uint32_t policy_revision = 0;
  std::vector<AttachmentStats> attachments;  // containers first, then uplinks
  std::vector<RuleHits> rules;
  uint64_t lost_full = 0, lost_rate = 0;
  // Packets on an interface running moat's programs without an attachment
  // of this configuration (dropped as unknown-endpoint): [0] ingress hooks,
  // [1] egress hooks.
  Counters unattributed[2];
};

// Sums the per-CPU maps of a live instance (root). Active connections: live
// connection-tracking flows (original-direction entries) that have the
// attachment's address at either end, before or after translation.
Result<Snapshot> read_snapshot(const Names& names);

nlohmann::json snapshot_json(const Snapshot& s);
std::string snapshot_text(const Snapshot& s);

// Prometheus text exposition format 0.0.4.
std::string prometheus_escape_label(const std::string& v);
std::string render_prometheus(const Snapshot& s);

}  // namespace moat::obs
