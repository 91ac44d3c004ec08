// observe.h - what the kernel's observation maps say, with names: counters
// per attachment and direction, policy rule hits, flow and drop events, lost
// events, live connections (bpf/abi.h, "Observation"; bpf/lib/observe.h).
//
// Split so that everything but reading the maps is pure and unit-tested:
//   Names     <- the instance's state file (+ the saved config, for
//                namespaces, labels and which policies isolate whom)
//   Snapshot  <- the pinned maps (read_snapshot), a plain struct
//   stats JSON, Prometheus text, event JSON/text, filters <- pure functions
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "abi.h"
#include "config/config.h"
#include "util/result.h"

namespace moat::obs {

// ---- names -----------------------------------------------------------------------

struct ContainerInfo {
  std::string ns;                            // "" when the config is unknown
  std::map<std::string, std::string> labels;
  std::vector<std::string> ingress_isolated_by;  // "namespace/policy"
  std::vector<std::string> egress_isolated_by;
};

struct Iface {
  std::string name;
  bool uplink = false;
  std::string container, network, ip;  // container/network empty for uplinks
  uint32_t stats_slot = 0;             // its counters in `stats`; 0: not known
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
  std::map<uint32_t, Iface> ifaces;          // by ifindex
  std::map<std::string, AddrName> addrs;     // by dotted IPv4
  std::vector<RuleName> rules;               // by rule id
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

// ---- counters ---------------------------------------------------------------------

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
  Counters dir[2];  // [0] from_container/from_world, [1] to_container/to_world
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

// ---- events -----------------------------------------------------------------------

// `wall_offset_ns`: CLOCK_REALTIME - CLOCK_MONOTONIC (bpf_ktime_get_ns() is
// monotonic), to print event times as wall-clock times.
nlohmann::json event_json(const moat_event& ev, const Names& names, int64_t wall_offset_ns);
// One line for people, from event_json()'s output (`utc`: times in UTC, not local).
std::string event_text(const nlohmann::json& ev, bool utc = false);
int64_t wall_offset_ns();

struct FlowFilter {
  std::string container;        // the event involves it (interface, or either end)
  std::optional<bool> dropped;  // --verdict
  std::string reason;           // drop reason name (implies dropped)
};
bool matches(const nlohmann::json& ev, const FlowFilter& f);
// Empty when fine, else why (for exit code 2).
std::string check_filter(const FlowFilter& f);

// ---- top --------------------------------------------------------------------------

struct TopRow {
  std::string container, network, interface;
  double rx_pps = 0, rx_bps = 0, tx_pps = 0, tx_bps = 0, drops_ps = 0;
  uint64_t conns = 0;
};
// Rates between two snapshots `seconds` apart, per container attachment;
// rx: to the container, tx: from it. sort: rx|tx|drops|conns|name.
std::vector<TopRow> top_rows(const Snapshot& before, const Snapshot& after, double seconds,
                             const std::string& sort);
std::string top_table(const std::vector<TopRow>& rows, const std::string& title);

// "127.0.0.1:9464" -> {host, port}; "[::1]:9464" too. nullopt when malformed.
std::optional<std::pair<std::string, int>> parse_listen_addr(const std::string& text);
bool is_loopback_host(const std::string& host);

}  // namespace moat::obs
