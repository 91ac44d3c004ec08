#include "plan/plan.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <optional>
#include <set>

#include "config/values.h"
#include "plan/limits.h"
#include "policy/policy.h"

namespace moat {
namespace {

// Smallest unused id >= 1 for each name without one; 0 means "none" in the
// kernel structs, so it is never handed out.
void assign_ids(const std::vector<std::string>& names, const std::map<std::string, uint32_t>& old,
                std::map<std::string, uint32_t>& out) {
  std::set<uint32_t> used;
  for (const auto& n : names) {
    if (auto it = old.find(n); it != old.end()) {
      out[n] = it->second;
      used.insert(it->second);
    }
  }
  uint32_t next = 1;
  for (const auto& n : names) {
    if (out.contains(n)) continue;
    while (used.contains(next)) ++next;
    out[n] = next;
    used.insert(next);
  }
}

uint32_t net_flags(const Network& n) {
  uint32_t f = 0;
  if (n.icc) f |= MOAT_NET_F_ICC;
  if (n.internal) f |= MOAT_NET_F_INTERNAL;
  if (n.masquerade && !n.internal) f |= MOAT_NET_F_MASQUERADE;
  if (!n.bridge.empty()) f |= MOAT_NET_F_GUARDED;
  return f;
}

}  // namespace

const Attachment* publish_target(const Config& cfg, const Container& c) {
  for (const auto& a : c.networks) {
    const Network* n = cfg.find_network(a.network);
    if (n && !n->internal) return &a;
  }
  return nullptr;
}

namespace {

void copy_ip6(const Ipv6& from, moat_ip& to) {
  std::copy(from.bytes.begin(), from.bytes.end(), to.b);
}

moat_lpm_v6_key lpm6(uint32_t len, const Ipv6& a) {
  moat_lpm_v6_key k{};
  k.prefixlen = len;
  copy_ip6(a, k.addr);
  return k;
}

void plan_addrs6(const Network& n, uint32_t id, Plan& plan) {
  Addr6Entry subnet;
  subnet.key = lpm6(n.subnet6->len, n.subnet6->addr);
  subnet.value = {id, MOAT_ADDR_SUBNET, net_flags(n)};
  subnet.network = n.name;
  plan.addrs6.push_back(subnet);
  Addr6Entry gw;
  gw.key = lpm6(128, n.gateway6);
  gw.value = {id, MOAT_ADDR_GATEWAY, net_flags(n)};
  gw.network = n.name;
  plan.addrs6.push_back(gw);
}

void plan_addrs(const Config& cfg, Plan& plan) {
  for (const auto& n : cfg.networks) {
    uint32_t id = plan.ids.networks.at(n.name);
    AddrEntry subnet;
    subnet.key = {n.subnet.len, n.subnet.addr.to_be()};
    subnet.value = {id, MOAT_ADDR_SUBNET, net_flags(n)};
    subnet.network = n.name;
    plan.addrs.push_back(subnet);
    AddrEntry gw;
    gw.key = {32, n.gateway.to_be()};
    gw.value = {id, MOAT_ADDR_GATEWAY, net_flags(n)};
    gw.network = n.name;
    plan.addrs.push_back(gw);
    if (n.subnet6) plan_addrs6(n, id, plan);
  }
}

// `need_interfaces` false: an attachment without its host-side interface
// is planned all the same (`moat validate`, before the lab names them).
Result<void> plan_endpoints(const Config& cfg, Plan& plan, bool need_interfaces) {
  std::map<std::string, std::string> iface_owner;
  for (size_t ci = 0; ci < cfg.containers.size(); ++ci) {
    const auto& c = cfg.containers[ci];
    for (size_t ai = 0; ai < c.networks.size(); ++ai) {
      const auto& a = c.networks[ai];
      std::string where =
          cfg.source + ": containers[" + std::to_string(ci) + "].networks[" + std::to_string(ai) + "]";
      if (a.host_interface.empty() && need_interfaces)
        return fail(where + ": no \"interface\": moat apply needs the host-side interface of "
                            "every attachment (the lab fills it in; Docker/CNI integrations will)");
      auto [it, fresh] = a.host_interface.empty()
                             ? std::pair{iface_owner.end(), true}
                             : iface_owner.emplace(a.host_interface, c.name);
      if (!fresh)
        return fail(where + ".interface: \"" + a.host_interface + "\" is already used by container \"" +
                    it->second + "\"");
      const Network* n = cfg.find_network(a.network);
      if (!n) return fail(where + ": unknown network \"" + a.network + "\"");
      EndpointEntry e;
      e.container = c.name;
      e.network = n->name;
      e.interface = a.host_interface;
      e.value.net_id = plan.ids.networks.at(n->name);
      e.value.ipv4 = a.ip.to_be();
      if (a.ip6) copy_ip6(*a.ip6, e.value.ipv6);
      e.value.net_flags = net_flags(*n);
      e.value.container_id = plan.ids.containers.at(c.name);
      if (a.mac) {
        e.mac_given = true;
        std::copy(a.mac->begin(), a.mac->end(), e.value.mac);
      }
      plan.endpoints.push_back(e);
    }
  }
  return {};
}

// Port i of publish p of container c, forwarding to attachment a: the
// fields both families share.
template <class Entry>
Entry publish_entry(const Plan& plan, const Container& c, const Attachment& a, const Publish& p,
                    uint32_t i) {
  Entry e;
  e.container = c.name;
  e.network = a.network;
  e.text = p.text;
  e.key.port = htons(static_cast<uint16_t>(p.host_port + i));
  e.key.proto = ip_protocol_number(p.protocol);
  e.value.backend_port = htons(static_cast<uint16_t>(p.container_port + i));
  e.value.container_id = plan.ids.containers.at(c.name);
  e.value.net_id = plan.ids.networks.at(a.network);
  return e;
}

void plan_publish_ports(Plan& plan, const Container& c, const Attachment& a, const Publish& p) {
  for (uint32_t i = 0; i < p.count; ++i) {
    if (p.on_ipv4()) {
      auto e = publish_entry<PublishEntry>(plan, c, a, p, i);
      e.key.host_ip = p.host_ip ? p.host_ip->to_be() : 0;
      e.value.backend_ip = a.ip.to_be();
      plan.publish.push_back(e);
    }
    if (p.on_ipv6() && a.ip6) {
      auto e = publish_entry<Publish6Entry>(plan, c, a, p, i);
      copy_ip6(p.host_ip6.value_or(Ipv6{}), e.key.host_ip);
      copy_ip6(*a.ip6, e.value.backend_ip);
      plan.publish6.push_back(e);
    }
  }
}

Result<void> plan_publish(const Config& cfg, Plan& plan) {
  for (size_t ci = 0; ci < cfg.containers.size(); ++ci) {
    const auto& c = cfg.containers[ci];
    if (c.publish.empty()) continue;
    std::string where = cfg.source + ": containers[" + std::to_string(ci) + "].publish";
    const Attachment* a = publish_target(cfg, c);
    if (!a) return fail(where + ": the container has no non-internal network to publish from");
    for (const auto& p : c.publish) {
      if (p.host_ip6 && !a->ip6)
        return fail(where + ": \"" + p.text + "\" publishes on an IPv6 address, but the " +
                    "container has no IPv6 address on network \"" + a->network + "\"");
      plan_publish_ports(plan, c, *a, p);
    }
  }
  return {};
}

Result<void> check_capacity(const Config& cfg, const Plan& plan) {
  // Neither limit depends on the host: its memory only lowers conntrack.
  MapSizes sizes = resolve_limits(cfg.limits, {});
  for (size_t n : {plan.publish.size(), plan.publish6.size()})
    if (n > sizes.published_ports)
      return fail(cfg.source + ": " + std::to_string(n) +
                  " published ports (ranges count port by port) exceed limits.published_ports, " +
                  std::to_string(sizes.published_ports) + ": raise it in the file's \"limits\"");
  // Slot 0 of `stats` is nobody's, so one attachment fewer than the maps hold.
  if (plan.endpoints.size() > sizes.endpoints - 1)
    return fail(cfg.source + ": " + std::to_string(plan.endpoints.size()) +
                " container attachments exceed limits.endpoints, " +
                std::to_string(sizes.endpoints) +
                ", less the one slot nobody owns: raise it in "
                "the file's \"limits\"");
  if (plan.addrs.size() > MOAT_MAX_ADDR_ENTRIES || plan.addrs6.size() > MOAT_MAX_ADDR_ENTRIES)
    return fail(cfg.source + ": " + std::to_string(cfg.networks.size()) +
                " networks exceed the address map's capacity of " +
                std::to_string(MOAT_MAX_ADDR_ENTRIES / 2) + " networks");
  return {};
}

Result<Plan> compile_plan(const Config& cfg, const IdTable& previous, bool need_interfaces) {
  Plan plan;
  std::vector<std::string> net_names, ctr_names;
  for (const auto& n : cfg.networks) net_names.push_back(n.name);
  for (const auto& c : cfg.containers) ctr_names.push_back(c.name);
  assign_ids(net_names, previous.networks, plan.ids.networks);
  assign_ids(ctr_names, previous.containers, plan.ids.containers);
  plan_addrs(cfg, plan);
  if (auto r = plan_endpoints(cfg, plan, need_interfaces); !r) return std::unexpected(r.error());
  if (auto r = plan_publish(cfg, plan); !r) return std::unexpected(r.error());
  if (auto r = check_capacity(cfg, plan); !r) return std::unexpected(r.error());
  return plan;
}

}  // namespace

Result<Plan> compile(const Config& cfg, const IdTable& previous) {
  return compile_plan(cfg, previous, true);
}

Result<void> check_plannable(const Config& cfg) {
  if (auto plan = compile_plan(cfg, {}, false); !plan) return std::unexpected(plan.error());
  if (auto policy = compile_policies(cfg); !policy) return std::unexpected(policy.error());
  return {};
}

Result<SlotAssignment> assign_stats_slots(const std::vector<std::pair<std::string, int>>& wanted,
                                          uint32_t limit, const std::vector<SlotHolder>& previous) {
  SlotAssignment out;
  std::set<uint32_t> taken{0};
  std::map<std::string, const SlotHolder*> prev_by_name;
  for (const auto& p : previous) {
    if (p.slot == 0 || p.slot >= limit || taken.contains(p.slot)) continue;
    taken.insert(p.slot);
    prev_by_name[p.name] = &p;
  }
  std::set<uint32_t> kept;
  for (const auto& [name, ifindex] : wanted)
    if (auto it = prev_by_name.find(name); it != prev_by_name.end() && it->second->ifindex == ifindex) {
      out.slot[name] = it->second->slot;
      kept.insert(it->second->slot);
    }
  for (const auto& [name, p] : prev_by_name)
    if (!kept.contains(p->slot)) out.freed.push_back(p->slot);
  uint32_t next = 1;
  for (const auto& [name, ifindex] : wanted) {
    if (out.slot.contains(name)) continue;
    while (next < limit && taken.contains(next)) ++next;
    if (next >= limit)
      return fail(std::to_string(wanted.size()) + " attachments (containers' interfaces and " +
                  "uplinks) exceed the " + std::to_string(limit - 1) +
                  " counter slots of limits.endpoints");
    out.slot[name] = next;
    out.fresh.push_back(next);
    taken.insert(next);
  }
  return out;
}

std::vector<Nat66Use> nat66_uses(const Config& cfg) {
  std::vector<Nat66Use> out;
  // Masquerade happens at the uplinks only: without one nothing is rewritten.
  if (!cfg.uplinks.empty())
    for (const auto& n : cfg.networks)
      if (n.subnet6 && n.masquerade && !n.internal)
        out.push_back({"network \"" + n.name + "\" masquerades IPv6 behind the uplinks",
                       "\"masquerade\": false on it routes its IPv6 addresses as they are"});
  const Ipv6 loopback = *Ipv6::parse("::1");
  for (const auto& c : cfg.containers) {
    const Attachment* a = publish_target(cfg, c);
    if (!a || !a->ip6) continue;
    for (const auto& p : c.publish)
      if (p.on_ipv6() && p.host_ip6 != loopback)
        out.push_back({"container \"" + c.name + "\" publishes \"" + p.text + "\" over IPv6",
                       "publish it on an IPv4 address or on [::1] only, or give the container no "
                       "IPv6 address (\"ipv6\": false on its attachment to \"" +
                           a->network + "\")"});
  }
  return out;
}

Result<void> require_nat66(const Config& cfg, bool kernel_nat66, const std::string& kernel) {
  if (kernel_nat66) return {};
  auto uses = nat66_uses(cfg);
  if (uses.empty()) return {};
  std::string msg = cfg.source + " needs IPv6 NAT, which this kernel (" + kernel +
                    ") cannot do: moat's NAT66 fixes checksums with bpf_l4_csum_replace() and "
                    "BPF_F_IPV6, which Linux 6.16 or later has (older kernels reject the flag, "
                    "and every rewritten IPv6 packet would be dropped). Nothing was changed. Run "
                    "Linux 6.16 or later, or do without IPv6 NAT:";
  for (const auto& u : uses) msg += "\n  " + u.what + ": " + u.fix;
  return fail(msg);
}

namespace {

// "A-B" or "A" ranges (parse_port_range()) separated by commas, as the
// kernel prints ip_local_reserved_ports; nullopt when the text is not that.
std::optional<std::vector<PortRange>> port_ranges(std::string_view text) {
  std::vector<PortRange> out;
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())))
    text.remove_suffix(1);
  while (!text.empty()) {
    size_t comma = text.find(',');
    auto range = parse_port_range(text.substr(0, comma));
    if (!range) return std::nullopt;
    out.push_back(*range);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
  }
  return out;
}

}  // namespace

const Network* masquerading_network(const Config& cfg) {
  if (cfg.uplinks.empty()) return nullptr;
  for (const auto& n : cfg.networks)
    if (n.masquerade && !n.internal) return &n;
  return nullptr;
}

Result<void> require_masquerade_ports(const Config& cfg, std::string_view local_port_range,
                                      std::string_view reserved_ports) {
  const Network* masquerading = masquerading_network(cfg);
  if (!masquerading) return {};
  unsigned lo = 0, hi = 0;
  {
    std::string text(local_port_range);
    char extra = 0;
    if (std::sscanf(text.c_str(), "%u %u %c", &lo, &hi, &extra) != 2 || lo > hi || hi > 65535)
      return fail("net.ipv4.ip_local_port_range reads \"" + text +
                  "\", not two port numbers; cannot tell whether the host picks the ports "
                  "moat masquerades with. Nothing was changed.");
  }
  auto reserved = port_ranges(reserved_ports);
  if (!reserved)
    return fail("net.ipv4.ip_local_reserved_ports reads \"" + std::string(reserved_ports) +
                "\", not a list of ports; cannot tell whether the host picks the ports moat "
                "masquerades with. Nothing was changed.");
  // The ports of the masquerade's range the host may pick: how many, the
  // first and the last.
  std::optional<unsigned> first, last;
  unsigned count = 0;
  for (unsigned p = std::max(lo, unsigned{MOAT_NAT_PORT_MIN});
       p <= std::min(hi, unsigned{MOAT_NAT_PORT_MAX}); ++p) {
    bool kept = std::any_of(reserved->begin(), reserved->end(), [p](const PortRange& r) {
      return r.first <= p && p < r.first + unsigned{r.count};
    });
    if (kept) continue;
    if (!first) first = p;
    last = p;
    ++count;
  }
  if (!first) return {};
  const std::string nat = std::to_string(MOAT_NAT_PORT_MIN) + "-" + std::to_string(MOAT_NAT_PORT_MAX);
  const std::string picked =
      count == 1 ? "port " + std::to_string(*first)
                 : std::to_string(count) + " of them (" + std::to_string(*first) + " to " +
                       std::to_string(*last) + ")";
  return fail(cfg.source + ": network \"" + masquerading->name +
              "\" masquerades behind host.uplinks with source ports " + nat +
              ", but this network namespace's net.ipv4.ip_local_port_range (" +
              std::to_string(lo) + "-" + std::to_string(hi) + ") lets the host pick " + picked +
              " for connections of its own: a reply to one of those could be taken "
              "for a container's and handed to it. Nothing was changed. Keep the two apart: "
              "sysctl -w net.ipv4.ip_local_port_range=\"32768 60999\" (Linux's default), or "
              "reserve moat's ports: sysctl -w net.ipv4.ip_local_reserved_ports=" +
              nat + ".");
}

bool isolation_allows(const Config& cfg, const Container* src, const Container& dst,
                      const Attachment& dst_att) {
  const Network* net = cfg.find_network(dst_att.network);
  if (!net) return false;
  // The host reaches every container through the gateway of its network.
  if (!src) return true;
  if (src == &dst) return true;
  // The kernel routes to a directly connected subnet through that attachment;
  // any other path crosses from one network into another and is isolated.
  for (const auto& a : src->networks)
    if (a.network == dst_att.network) return net->icc;
  return false;
}

}  // namespace moat
