// map_plan.h - the second half of planning: with the host's facts (which
// ifindex each interface has, the uplinks' addresses) and what the previous
// apply left (counter slots), the exact contents every map must have, the
// policy generation, and the attachments with their state-file rows. Pure:
// the dataplane only diffs these against the kernel and writes the
// difference.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "abi.h"
#include "config/config.h"
#include "plan/plan.h"
#include "policy/policy.h"
#include "util/result.h"

namespace moat {

// Map contents keyed by the key's bytes, as the kernel compares keys.
template <class V>
using ByteKeyed = std::map<std::vector<uint8_t>, V>;

template <class K>
std::vector<uint8_t> key_bytes(const K& k) {
  auto* p = reinterpret_cast<const uint8_t*>(&k);
  return {p, p + sizeof(K)};
}

struct HostUplink {
  std::string name;
  int ifindex = 0;
  uint32_t ipv4 = 0;  // network order
  std::array<uint8_t, 16> ipv6{};  // network order; all zero: none
};

// What the host resolved before planning: nothing is planned for an
// interface that does not exist.
struct HostFacts {
  std::map<std::string, int> ifindex;  // every endpoint's host-side interface
  std::vector<HostUplink> uplinks;     // in the file's order
  std::map<std::string, int> bridges;  // networks' bridges, by network name
  // The container-side MAC behind every endpoint interface whose attachment
  // names none.
  std::map<std::string, Mac> macs;
};

// One interface moat attaches to, and what its row in the state file says
// besides the attachment. Facts, not JSON: the row is written only for the
// record, after the kernel holds the change (building it here was a tenth
// of a Docker agent sync's way to the kernel).
struct AttachmentRow {
  enum class Kind { endpoint, uplink, bridge };
  Kind kind = Kind::endpoint;
  std::string name;
  int ifindex = 0;
  std::string container;           // endpoints
  std::string network;             // endpoints, bridges
  uint32_t ipv4 = 0;               // endpoints, uplinks; network order
  std::array<uint8_t, 16> ipv6{};  // endpoints, uplinks; all zero: none
  Mac mac{};                       // endpoints
  uint32_t stats_slot = 0;         // endpoints, uplinks
  // container, network, ip, mac, stats_slot, ip6 (uplinks: ip, stats_slot,
  // ip6; bridges: network)
  nlohmann::json state_row() const;
};

struct MapPlan {
  Plan plan;
  PolicyPlan policy;
  SlotAssignment slots;
  ByteKeyed<moat_endpoint> endpoints;
  ByteKeyed<moat_addr_info> addrs;
  ByteKeyed<moat_addr_info> addrs6;
  ByteKeyed<moat_publish_val> publish;
  ByteKeyed<moat_publish6_val> publish6;
  ByteKeyed<moat_uplink> uplinks;
  ByteKeyed<uint32_t> container_addrs;
  ByteKeyed<moat_ip> container_addrs6;  // only containers with IPv6 on that network
  ByteKeyed<uint32_t> local_peers;      // {network, address} -> the endpoint's ifindex
  std::vector<AttachmentRow> endpoint_rows, uplink_rows, bridge_rows;
};

// `plan` is compile()'s; `previous_slots` the attachments of the previous
// apply. Fails when the counter slots run out or the policies do not
// compile; messages name cfg.source. `policy_image`: where the policy
// compilation's PolicyImage goes, if anywhere.
Result<MapPlan> plan_maps(const Config& cfg, Plan plan, const HostFacts& host,
                          const std::vector<SlotHolder>& previous_slots,
                          std::string* policy_image = nullptr);

}  // namespace moat
