#include "plan/limits.h"

#include <algorithm>
#include <map>

#include "abi.h"

namespace moat {
namespace {

constexpr uint32_t kDefaultConntrack = 16384;
constexpr uint32_t kDefaultEndpoints = 1024;
constexpr uint32_t kDefaultPublished = 4096;
constexpr uint32_t kDefaultSocketNat = 4096;
constexpr uint32_t kMinConntrack = 1024;

// Bytes per entry, as the kernel accounts them (fdinfo's memlock) on Linux
// 6.18, measured on a lab at the defaults (tests/e2e/test_limits.sh prints
// every map's figure): the element with its key and value rounded to 8 and
// its share of the bucket array, both families together where a limit
// sizes a map of each.
constexpr uint64_t kConntrackEntry = 578;  // ct 200 + ct6 264 + rings 24 + 64 + frags, owners
// Of kEndpointEntry, local_peers' 70 are estimated (8-byte key, 4-byte value), not measured.
constexpr uint64_t kEndpointEntry = 360;   // endpoints + container_addrs(6) + local_peers
constexpr uint64_t kStatsSlot = 292;       // sizeof(moat_stats) and its pointer, per CPU
constexpr uint64_t kPublishedEntry = 210;  // publish 88 + publish6 120
constexpr uint64_t kSocketNatEntry = 210;  // sock_rnat 88 + sock_rnat6 120 (LRU)
constexpr uint64_t kFixedBytes = 1150000;  // events ring, uplink slots, small maps
constexpr uint64_t kRuleHit = 8;           // rule_hits: per rule id, per CPU, and a pointer

uint32_t pow2_floor(uint64_t v) {
  uint32_t p = 1;
  while (p <= v / 2 && p < (1u << 31)) p <<= 1;
  return p;
}

std::string mib(uint64_t bytes) { return std::to_string((bytes + (1 << 19)) >> 20) + " MiB"; }

}  // namespace

nlohmann::json MapSizes::to_json() const {
  return {{"conntrack", conntrack},
          {"endpoints", endpoints},
          {"published_ports", published_ports},
          {"socket_nat", socket_nat}};
}

uint32_t MapSizes::fragments() const { return std::max<uint32_t>(1024, conntrack / 16); }

std::vector<std::pair<std::string, uint32_t>> MapSizes::by_map() const {
  return {{"ct", conntrack},
          {"ct_ring", conntrack},
          {"ct6", conntrack},
          {"ct6_ring", conntrack},
          {"frags", fragments()},
          {"frags6", fragments()},
          {"ct_owned", fragments()},
          {"ct6_owned", fragments()},
          {"endpoints", endpoints},
          {"container_addrs", endpoints},
          {"container_addrs6", endpoints},
          {"local_peers", endpoints},
          {"stats", stats_slots()},
          {"publish", published_ports},
          {"publish6", published_ports},
          {"sock_rnat", socket_nat},
          {"sock_rnat6", socket_nat}};
}

uint32_t generation_capacity(size_t entries, uint32_t compiled_max) {
  uint64_t want = 1024;
  while (want < 2 * uint64_t(entries) && want < compiled_max) want <<= 1;
  return static_cast<uint32_t>(std::min<uint64_t>(want, compiled_max));
}

MapSizes resolve_limits(const Limits& limits, const HostCapacity& host) {
  MapSizes s;
  uint32_t conntrack = kDefaultConntrack;
  // A small host: what netfilter's default gives it, RAM / 64 KiB.
  if (host.ram_bytes && host.ram_bytes / 65536 < conntrack)
    conntrack = std::max(kMinConntrack, pow2_floor(host.ram_bytes / 65536));
  s.conntrack = limits.conntrack.value_or(conntrack);
  s.endpoints = limits.endpoints.value_or(kDefaultEndpoints);
  s.published_ports = limits.published_ports.value_or(kDefaultPublished);
  s.socket_nat = limits.socket_nat.value_or(kDefaultSocketNat);
  return s;
}

std::optional<MapSizes> sizes_from_maps(
    const std::vector<std::pair<std::string, uint32_t>>& entries) {
  std::map<std::string, uint32_t> by(entries.begin(), entries.end());
  auto get = [&](const char* name) -> std::optional<uint32_t> {
    auto it = by.find(name);
    if (it == by.end()) return std::nullopt;
    return it->second;
  };
  auto ct = get("ct"), ep = get("endpoints"), pub = get("publish"), sn = get("sock_rnat");
  if (!ct || !ep || !pub || !sn) return std::nullopt;
  return MapSizes{*ct, *ep, *pub, *sn};
}

uint64_t estimated_bytes(const MapSizes& s, uint32_t cpus) {
  uint64_t n = std::max<uint32_t>(cpus, 1);
  return s.conntrack * kConntrackEntry + s.endpoints * kEndpointEntry +
         uint64_t(s.stats_slots()) * kStatsSlot * n + s.published_ports * kPublishedEntry +
         s.socket_nat * kSocketNatEntry + kFixedBytes +
         uint64_t(MOAT_MAX_RULES) * kRuleHit * (n + 1);
}

Result<void> check_fits(const MapSizes& s, const HostCapacity& host) {
  if (!host.ram_bytes) return {};
  uint64_t need = estimated_bytes(s, host.cpus);
  if (need <= host.ram_bytes / 8) return {};
  std::vector<std::pair<uint64_t, std::string>> parts = {
      {s.conntrack * kConntrackEntry, "conntrack " + std::to_string(s.conntrack)},
      {s.endpoints * (kEndpointEntry + 2 * kStatsSlot * host.cpus),
       "endpoints " + std::to_string(s.endpoints)},
      {s.published_ports * kPublishedEntry, "published_ports " + std::to_string(s.published_ports)},
      {s.socket_nat * kSocketNatEntry, "socket_nat " + std::to_string(s.socket_nat)}};
  std::sort(parts.rbegin(), parts.rend());
  return fail("the maps of these limits would take about " + mib(need) + ", more than 1/8 of " +
              "this host's " + mib(host.ram_bytes) + " of memory; most goes to " + parts[0].second +
              " (" + mib(parts[0].first) + "): lower it in the file's \"limits\"");
}

Result<void> check_same_sizes(const MapSizes& want, const MapSizes& have,
                              const Limits& explicit_limits, const std::string& instance) {
  struct Row {
    const char* key;
    uint32_t want, have;
    bool given;
  };
  const Row rows[] = {
      {"conntrack", want.conntrack, have.conntrack, explicit_limits.conntrack.has_value()},
      {"endpoints", want.endpoints, have.endpoints, explicit_limits.endpoints.has_value()},
      {"published_ports", want.published_ports, have.published_ports,
       explicit_limits.published_ports.has_value()},
      {"socket_nat", want.socket_nat, have.socket_nat, explicit_limits.socket_nat.has_value()}};
  std::string diff;
  for (const Row& r : rows) {
    if (r.want == r.have) continue;
    if (!diff.empty()) diff += ", ";
    diff += std::string("limits.") + r.key + " " + std::to_string(r.want) +
            (r.given ? "" : " (the default)") + " where its maps hold " + std::to_string(r.have);
  }
  if (diff.empty()) return {};
  return fail("instance " + instance + " was made with other limits: " + diff +
              ". Maps cannot be resized in place: write the limits it has, or `moat down "
              "--instance " +
              instance + "` and apply again (its connections are lost)");
}

}  // namespace moat
