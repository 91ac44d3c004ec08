#include "plan/map_plan.h"

#include <utility>

#include "plan/limits.h"
#include "util/net.h"

using nlohmann::json;

namespace moat {
namespace {

// Counter slots, what the programs index `stats` with: containers' interfaces, then uplinks.
Result<SlotAssignment> plan_slots(const Config& cfg, const Plan& plan, const HostFacts& host,
                                  const std::vector<SlotHolder>& previous) {
  std::vector<std::pair<std::string, int>> wanted;
  for (const auto& e : plan.endpoints) wanted.emplace_back(e.interface, host.ifindex.at(e.interface));
  for (const auto& u : host.uplinks) wanted.emplace_back(u.name, u.ifindex);
  auto slots = assign_stats_slots(wanted, resolve_limits(cfg.limits, {}).endpoints, previous);
  if (!slots) return fail(cfg.source + ": " + slots.error().message());
  return slots;
}

void plan_entries(MapPlan& m, const HostFacts& host) {
  for (const auto& a : m.plan.addrs) m.addrs.emplace(key_bytes(a.key), a.value);
  for (const auto& a : m.plan.addrs6) m.addrs6.emplace(key_bytes(a.key), a.value);
  // Published ports are reachable at the uplinks' addresses: host addresses.
  for (const auto& u : host.uplinks) {
    m.addrs[key_bytes(moat_lpm_v4_key{32, u.ipv4})] = moat_addr_info{0, MOAT_ADDR_HOST, 0};
    if (u.ipv6 != std::array<uint8_t, 16>{}) {
      moat_lpm_v6_key k{128, {}};
      std::copy(u.ipv6.begin(), u.ipv6.end(), k.addr.b);
      m.addrs6[key_bytes(k)] = moat_addr_info{0, MOAT_ADDR_HOST, 0};
    }
  }
  for (const auto& e : m.plan.endpoints) {
    moat_endpoint v = e.value;
    v.stats_slot = m.slots.slot.at(e.interface);
    if (!e.mac_given) {
      const Mac& mac = host.macs.at(e.interface);
      std::copy(mac.begin(), mac.end(), v.mac);
    }
    auto ifindex = static_cast<uint32_t>(host.ifindex.at(e.interface));
    m.endpoints.emplace(key_bytes(ifindex), v);
    m.local_peers.emplace(key_bytes(moat_peer_key{e.value.net_id, e.value.ipv4}), ifindex);
    m.container_addrs.emplace(
        key_bytes(moat_container_net_key{e.value.container_id, e.value.net_id}), e.value.ipv4);
    if (e.value.ipv6.w[0] | e.value.ipv6.w[1] | e.value.ipv6.w[2] | e.value.ipv6.w[3])
      m.container_addrs6.emplace(
          key_bytes(moat_container_net_key{e.value.container_id, e.value.net_id}), e.value.ipv6);
    AttachmentRow row{.kind = AttachmentRow::Kind::endpoint,
                      .name = e.interface,
                      .ifindex = host.ifindex.at(e.interface),
                      .container = e.container,
                      .network = e.network,
                      .ipv4 = e.value.ipv4,
                      .stats_slot = v.stats_slot};
    std::copy(std::begin(v.ipv6.b), std::end(v.ipv6.b), row.ipv6.begin());
    std::copy(std::begin(v.mac), std::end(v.mac), row.mac.begin());
    m.endpoint_rows.push_back(std::move(row));
  }
  for (const auto& u : host.uplinks) {
    uint32_t slot = m.slots.slot.at(u.name);
    moat_uplink v{u.ipv4, slot, {}};
    std::copy(u.ipv6.begin(), u.ipv6.end(), v.ipv6.b);
    m.uplinks.emplace(key_bytes(static_cast<uint32_t>(u.ifindex)), v);
    m.uplink_rows.push_back({.kind = AttachmentRow::Kind::uplink,
                             .name = u.name,
                             .ifindex = u.ifindex,
                             .ipv4 = u.ipv4,
                             .ipv6 = u.ipv6,
                             .stats_slot = slot});
  }
  for (const auto& p : m.plan.publish) m.publish.emplace(key_bytes(p.key), p.value);
  for (const auto& p : m.plan.publish6) m.publish6.emplace(key_bytes(p.key), p.value);
}

// A guarded bridge drops what no endpoint judged; only networks that name one.
void plan_bridges(MapPlan& m, const Config& cfg, const HostFacts& host) {
  for (const auto& n : cfg.networks)
    if (auto it = host.bridges.find(n.name); !n.bridge.empty() && it != host.bridges.end())
      m.bridge_rows.push_back({.kind = AttachmentRow::Kind::bridge,
                               .name = n.bridge,
                               .ifindex = it->second,
                               .network = n.name});
}

}  // namespace

json AttachmentRow::state_row() const {
  json row = json::object();
  if (kind == Kind::bridge) {
    row["network"] = network;
    return row;
  }
  if (kind == Kind::endpoint) {
    row["container"] = container;
    row["network"] = network;
    row["mac"] = mac_str(mac);
  }
  row["ip"] = Ipv4::from_be(ipv4).str();
  row["stats_slot"] = stats_slot;
  if (ipv6 != std::array<uint8_t, 16>{}) row["ip6"] = Ipv6{ipv6}.str();
  return row;
}

Result<MapPlan> plan_maps(const Config& cfg, Plan plan, const HostFacts& host,
                          const std::vector<SlotHolder>& previous_slots,
                          std::string* policy_image) {
  MapPlan m;
  m.plan = std::move(plan);
  auto slots = plan_slots(cfg, m.plan, host, previous_slots);
  if (!slots) return std::unexpected(slots.error());
  m.slots = std::move(*slots);
  plan_entries(m, host);
  plan_bridges(m, cfg, host);
  // Policies, with the uplinks' addresses as host addresses.
  std::vector<Ipv4> host_addrs;
  for (const auto& u : host.uplinks) host_addrs.push_back(Ipv4::from_be(u.ipv4));
  auto policy = compile_policies(cfg, host_addrs, policy_image);
  if (!policy) return std::unexpected(policy.error());
  m.policy = std::move(*policy);
  return m;
}

}  // namespace moat
