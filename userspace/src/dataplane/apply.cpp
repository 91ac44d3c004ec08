// apply.cpp - one apply, as named phases: resolve (state, plan, interfaces;
// nothing in the kernel changes when this fails) -> load -> pin -> write ->
// swap policy -> attach -> detach -> remove stale -> the record to save. Every phase
// writes only what differs from what the kernel holds.
#include "dataplane/apply.h"

#include <net/if.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <latch>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>
#include <thread>

#include "dataplane/counters.h"
#include "dataplane/dataplane.h"
#include "dataplane/failpoint.h"
#include "dataplane/fastpath.h"
#include "dataplane/features.h"
#include "dataplane/host.h"
#include "dataplane/map_sync.h"
#include "dataplane/policy_gen.h"
#include "dataplane/programs.h"
#include "dataplane/skeleton.h"
#include "dataplane/sockhooks.h"
#include "dataplane/state.h"
#include "dataplane/tc.h"
#include "dataplane/veth.h"
#include "plan/limits.h"
#include "plan/map_plan.h"
#include "policy/policy.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace moat {
namespace {

// What status, explain and the observation commands need to name things:
// the policies, their rules (by rule id) and the identities.
json policy_state_json(const Config& cfg, const PolicyPlan& plan) {
  json policies = json::array();
  for (const auto& p : cfg.policies) {
    json sel = json::array();
    for (const auto& c : cfg.containers)
      if (policy_selects(p, c)) sel.push_back(c.name);
    policies.push_back({{"name", p.name}, {"namespace", p.ns}, {"selects", sel}});
  }
  json ids = json::object();
  for (const auto& [id, name] : plan.identity_names) ids[std::to_string(id)] = name;
  json out = {{"active", plan.active},
              {"policies", std::move(policies)},
              {"rule_count", plan.rules.size()},
              {"identities", std::move(ids)},
              {"entries", plan.entries.size()},
              {"ipcache_entries", plan.ipcache.size()},
              {"ipcache6_entries", plan.ipcache6.size()}};
  // Moved in: an initializer list would copy the table (1 MB at 10,000 rules).
  out["rules_text"] = encode_rule_rows(plan.rules);
  return out;
}

json phases_json(const std::vector<std::pair<std::string, double>>& phases) {
  json out = json::array();
  for (const auto& [name, ms] : phases) out.push_back({{"phase", name}, {"ms", ms}});
  return out;
}

}  // namespace

namespace {
std::optional<std::chrono::steady_clock::time_point> g_command_start;
}  // namespace

void set_command_start(std::chrono::steady_clock::time_point t) { g_command_start = t; }

void add_before_lock(ApplyReport& rep, std::chrono::steady_clock::time_point asked) {
  if (!g_command_start) return;
  rep.phases_ms.emplace(
      rep.phases_ms.begin(), "before-lock",
      std::chrono::duration<double, std::milli>(asked - *g_command_start).count());
}

void PhaseClock::lap(const char* name) {
  auto now = std::chrono::steady_clock::now();
  if (rep_)
    rep_->phases_ms.emplace_back(name,
                                 std::chrono::duration<double, std::milli>(now - last_).count());
  last_ = now;
}

json ApplyReport::to_json() const {
  return {{"changed", changed()},
          {"endpoints",
           {{"added", endpoints_added},
            {"updated", endpoints_updated},
            {"removed", endpoints_removed}}},
          {"addresses",
           {{"added", addrs_added}, {"updated", addrs_updated}, {"removed", addrs_removed}}},
          {"published_ports",
           {{"added", publish_added}, {"updated", publish_updated}, {"removed", publish_removed}}},
          {"interfaces", {{"attached", attached}, {"detached", detached}}},
          {"socket_hooks_changed", sock_hooks_changed},
          {"policy",
           {{"changed", policy_changed},
            {"revision", policy_rev},
            {"entries", policy_entries},
            {"one_rule", one_rule.empty() ? json() : json(one_rule)},
            {"one_rule_image", one_rule_image.empty() ? json() : json(one_rule_image)}}},
          {"programs_replaced", programs_replaced},
          {"phases_ms", phases_json(phases_ms)}};
}

std::string ApplyReport::summary() const {
  if (!changed()) return "no changes";
  std::ostringstream o;
  o << "endpoints +" << endpoints_added << " ~" << endpoints_updated << " -" << endpoints_removed
    << ", address entries +" << addrs_added << " ~" << addrs_updated << " -" << addrs_removed
    << ", published ports +" << publish_added << " ~" << publish_updated << " -"
    << publish_removed << ", interfaces attached " << attached << ", detached " << detached;
  if (sock_hooks_changed) o << ", socket hooks attached";
  if (policy_changed)
    o << ", policy revision " << policy_rev << " (" << policy_entries << " entries)";
  if (programs_replaced) o << ", programs upgraded";
  return o.str();
}

namespace {

// What one apply works with, handed from phase to phase.
// The attachments of one list (interfaces, uplinks, bridges): the wanted
// rows and, by row, whether moat created the interface's qdisc.
struct Attached {
  const std::vector<AttachmentRow>* rows = nullptr;
  std::vector<char> qdisc_created;
  json state_rows() const;
};

// An interface the previous apply attached `progs` to, under the same
// ifindex: its filters are checked after the kernel holds the change
// (verify_attached), not before it.
struct Deferred {
  Attached* list;  // the list it is in (Apply::ifaces, uplinks or bridges)
  size_t at;
  const PinnedProgs* progs;
};

struct Apply {
  Apply(const std::string& i, const Config& c, bool d, bool h)
      : instance(i), cfg(c), dry_run(d), ports_held(h) {}
  const std::string& instance;
  const Config& cfg;
  bool dry_run;
  bool ports_held;  // the runtime holds the published ports itself
  const KnownIndexes* known_ifindex = nullptr;  // ApplyHooks::known_ifindex
  const KnownIndexes* clsact_made = nullptr;    // ApplyHooks::clsact_made
  std::string* policy_image = nullptr;          // ApplyHooks::policy_image
  std::jthread* mirror = nullptr;               // ApplyHooks::mirror
  // Counted down by the mirror's thread once it has its own copy of the
  // policy, which lives in `want`: waited for before `want` goes.
  std::shared_ptr<std::latch> mirror_copied;
  ~Apply() {
    if (mirror_copied) mirror_copied->wait();
  }
  ApplyReport rep;
  json prev;     // the state file of the previous apply ({} for a new instance)
  MapPlan want;  // what the maps must hold
  // The kernel side, once loaded.
  std::string objects;  // fingerprint of the embedded TC objects
  Skeleton<endpoint_bpf> skel;
  Skeleton<uplink_bpf> uskel;  // only when the programs are (re)loaded
  Skeleton<bridge_bpf> bskel;  // likewise
  PinnedProgs progs, uprogs, bprogs;  // containers', uplinks' and bridges' programs
  ByteKeyed<moat_addr_info> have_addrs;
  ByteKeyed<moat_addr_info> have_addrs6;
  ByteKeyed<moat_endpoint> have_eps;
  ByteKeyed<moat_publish_val> have_publish;
  ByteKeyed<moat_publish6_val> have_publish6;
  ByteKeyed<moat_uplink> have_uplinks;
  ByteKeyed<uint32_t> have_caddrs;
  ByteKeyed<moat_ip> have_caddrs6;
  ByteKeyed<uint32_t> have_peers;
  uint32_t last_rev = 0, rev = 0;
  Attached ifaces, uplinks, bridges;  // the new state rows, made by state_record()
  MapSizes sizes;                 // the maps' sizes, from the file's limits
  std::vector<Deferred> deferred;    // interfaces verify_attached() checks
  bool sock_hooks_deferred = false;  // and the socket hooks
  std::optional<SockLinks> sock_links;  // what the socket hooks run, for the record
  std::optional<PinDirStamp> stamp;     // the pin directory before resolve() read a pin (agent)
  // Begun as the apply starts, under the instance lock, so it has passed
  // since the last switch of policy generations when the idle one is
  // written, mostly while this apply compiles and loads.
  GracePeriod gp;
};

// The networks' bridges: each one a bridge of its own, never an endpoint's
// interface or an uplink.
Result<HostFacts> resolve_bridges(const Config& cfg, HostFacts host,
                                  const InterfaceIndexes& index_of) {
  std::map<std::string, std::string> owner;
  for (const auto& n : cfg.networks) {
    if (n.bridge.empty()) continue;
    std::string where = cfg.source + ": network \"" + n.name + "\": bridge " + n.bridge;
    unsigned idx = index_of(n.bridge);
    if (idx == 0) return fail(where + " does not exist in this network namespace", errno);
    if (host.ifindex.contains(n.bridge)) return fail(where + " is a container's interface");
    for (const auto& u : host.uplinks)
      if (u.name == n.bridge) return fail(where + " is an uplink");
    if (auto [it, fresh] = owner.emplace(n.bridge, n.name); !fresh)
      return fail(where + " is network \"" + it->second + "\"'s bridge too");
    host.bridges[n.name] = static_cast<int>(idx);
  }
  return host;
}

// Every interface the plan names, resolved before the kernel is touched: a
// typo must not leave half a configuration behind.
Result<HostFacts> resolve_host(const Config& cfg, const Plan& plan, const KnownIndexes* known) {
  HostFacts host;
  InterfaceIndexes index_of(known);
  for (const auto& e : plan.endpoints) {
    unsigned idx = index_of(e.interface);
    if (idx == 0)
      return fail(cfg.source + ": container \"" + e.container + "\" on network \"" + e.network +
                      "\": interface " + e.interface + " does not exist in this network namespace",
                  errno);
    host.ifindex[e.interface] = static_cast<int>(idx);
    if (e.mac_given) continue;
    auto mac = veth_peer_mac(e.interface);
    if (!mac)
      return fail(cfg.source + ": container \"" + e.container + "\" on network \"" + e.network +
                      "\": " + mac.error().message(),
                  mac.error().err);
    host.macs[e.interface] = *mac;
  }
  for (const auto& name : cfg.uplinks) {
    HostUplink u{name, static_cast<int>(index_of(name)), 0};
    if (u.ifindex == 0)
      return fail(cfg.source + ": host.uplinks: interface " + name +
                      " does not exist in this network namespace",
                  errno);
    if (host.ifindex.contains(name))
      return fail(cfg.source + ": host.uplinks: " + name + " is a container's interface");
    auto ip = index_of.ipv4(name);
    if (!ip)
      return fail(cfg.source + ": host.uplinks: " + name +
                  " has no IPv4 address to publish on and masquerade behind");
    u.ipv4 = *ip;
    u.ipv6 = interface_ipv6(static_cast<unsigned>(u.ifindex));
    host.uplinks.push_back(u);
  }
  return resolve_bridges(cfg, std::move(host), index_of);
}

// The host's own port choice, read in this network namespace (the
// sysctls under /proc/sys/net are per namespace), against the masquerade's.
// Read on every apply that masquerades: another writer may have changed
// them since. (A change between applies is seen at the next one.)
Result<void> host_leaves_masquerade_ports(const Config& cfg) {
  if (!masquerading_network(cfg)) return {};
  std::string text[2];
  const char* files[2] = {"/proc/sys/net/ipv4/ip_local_port_range",
                          "/proc/sys/net/ipv4/ip_local_reserved_ports"};
  for (int i = 0; i < 2; ++i) {
    auto t = read_whole(files[i]);
    if (!t) return std::unexpected(t.error());
    if (!*t) return fail(std::string(files[i]) + " does not exist: cannot tell which ports the host picks");
    text[i] = std::move(**t);
  }
  return require_masquerade_ports(cfg, text[0], text[1]);
}

// What the desired state needs of the kernel beyond what loading the
// programs checks: a helper flag the verifier accepts but an older kernel
// rejects when the program runs would drop packets, not fail the apply.
// Probed only when needed, so an IPv4-only apply never runs the probe.
Result<void> kernel_can_enforce(const Config& cfg) {
  if (auto r = host_leaves_masquerade_ports(cfg); !r) return r;
  if (nat66_uses(cfg).empty()) return {};
  auto nat66 = kernel_nat66();
  if (!nat66) return std::unexpected(nat66.error());
  return require_nat66(cfg, *nat66, kernel_name());
}

// A process that applies again and again (the Docker agent) keeps kernel
// handles and what it read of the pins between applies (keep_kernel_handles()).
bool g_keep_maps = false;

// The pinned maps' sizes same_sizes() read, and the pin directory's stamp
// taken before: while the stamp holds, the sizes are the pinned maps'.
struct KeptSizes {
  std::string dir;
  PinDirStamp stamp;
  MapEntries have;
};
std::optional<KeptSizes> g_kept_sizes;

// The maps an instance was made with keep their sizes: a file asking for
// others is refused before anything is loaded.
Result<void> same_sizes(const Apply& a, const std::string& dir) {
  MapEntries have;
  if (a.stamp && g_kept_sizes && g_kept_sizes->dir == dir && g_kept_sizes->stamp == *a.stamp) {
    have = g_kept_sizes->have;
  } else {
    g_kept_sizes.reset();
    // Every map the file can size, asked by name: the kept list covers them all.
    for (const auto& [name, n] : a.sizes.by_map()) {
      auto size = pinned_max_entries(dir + "/" + name);
      if (!size) return std::unexpected(size.error());
      if (*size) have.emplace_back(name, *size);
    }
    if (a.stamp) g_kept_sizes = KeptSizes{dir, *a.stamp, have};
  }
  auto sizes = sizes_from_maps(have);
  if (!sizes) return {};
  return check_same_sizes(a.sizes, *sizes, a.cfg.limits, a.instance);
}

// A list of the previous state's ("interfaces", "uplinks", "bridges"),
// read in place: copying the JSON of 30 rows took 120-420 us of a Docker
// agent's sync (a timing build), whose way to the kernel is 1.4-2 ms.
const json& prev_rows(const json& prev, const char* list) {
  static const json kNone = json::array();
  auto it = prev.find(list);
  return it != prev.end() && it->is_array() ? *it : kNone;
}

// Phase 1: the previous state, the plan, the host's interfaces.
Result<void> resolve(Apply& a, nlohmann::json* prev_state) {
  if (prev_state) {
    a.prev = std::move(*prev_state);
  } else {
    auto st = read_state(a.instance);
    if (!st) return std::unexpected(st.error());
    a.prev = std::move(*st);
  }
  if (a.prev.contains("netns_inode") &&
      a.prev["netns_inode"].get<uint64_t>() != current_netns_inode())
    return fail("instance " + a.instance + " serves another network namespace (" +
                a.prev.value("netns_path", std::string("unnamed")) +
                "); run moat there, or pick another --instance");
  // Before any pin is read: what is read after it is vouched for while it holds.
  if (!a.dry_run && g_keep_maps) a.stamp = pin_dir_stamp(pin_dir(a.instance));
  auto plan = compile(a.cfg, ids_from_state(a.prev));
  if (!plan) return std::unexpected(plan.error());
  HostCapacity capacity = host_capacity();
  a.sizes = resolve_limits(a.cfg.limits, capacity);
  if (auto r = check_fits(a.sizes, capacity); !r)
    return fail(a.cfg.source + ": " + r.error().message());
  if (auto r = same_sizes(a, pin_dir(a.instance)); !r) return r;
  if (auto r = kernel_can_enforce(a.cfg); !r) return r;
  auto host = resolve_host(a.cfg, *plan, a.known_ifindex);
  if (!host) return std::unexpected(host.error());
  std::vector<SlotHolder> slot_prev;
  for (const char* list : {"interfaces", "uplinks"})
    for (const auto& r : prev_rows(a.prev, list))
      slot_prev.push_back({r.value("name", ""), r.value("ifindex", 0), r.value("stats_slot", 0u)});
  if (!plan->publish.empty() && host->uplinks.empty() && !a.cfg.containers.empty())
    std::fprintf(stderr,
                 "moat: note: %s has published ports but no host.uplinks; they are reachable from "
                 "the host and from containers only\n",
                 a.cfg.source.c_str());
  auto want = plan_maps(a.cfg, std::move(*plan), *host, slot_prev, a.policy_image);
  if (!want) return std::unexpected(want.error());
  a.want = std::move(*want);
  a.last_rev = a.prev.value("policy_rev_max", 0u);
  return {};
}

// The plan's published ports of one family that the kernel does not hold
// yet (`have`; all of them without it), appended to `out`.
template <class Entry, class V>
void add_fresh_ports(std::vector<PublishedPort>& out, const std::vector<Entry>& want,
                     const ByteKeyed<V>* have) {
  std::vector<Entry> fresh;
  for (const auto& p : want)
    if (!have || !have->contains(key_bytes(p.key))) fresh.push_back(p);
  auto ports = published_ports(fresh);
  out.insert(out.end(), ports.begin(), ports.end());
}

// A port that a host program already holds cannot be published (Docker:
// "port is already allocated"); ports moat publishes already are ours.
Result<void> fresh_ports_free(const Apply& a, bool exists) {
  if (a.ports_held) return {};
  std::vector<PublishedPort> ports;
  add_fresh_ports(ports, a.want.plan.publish, exists ? &a.have_publish : nullptr);
  add_fresh_ports(ports, a.want.plan.publish6, exists ? &a.have_publish6 : nullptr);
  return check_ports_free(ports);
}

// A dry run for an instance that does not exist: everything would be added.
Result<ApplyReport> dry_run_new(const Apply& a) {
  if (auto r = fresh_ports_free(a, false); !r) return std::unexpected(r.error());
  ApplyReport rep;
  rep.endpoints_added = static_cast<int>(a.want.endpoints.size());
  rep.addrs_added = static_cast<int>(a.want.addrs.size() + a.want.addrs6.size());
  rep.publish_added = static_cast<int>(a.want.publish.size() + a.want.publish6.size());
  rep.attached = static_cast<int>(a.want.endpoints.size() + a.want.uplink_rows.size() +
                                  a.want.bridge_rows.size());
  rep.sock_hooks_changed = true;
  return rep;
}

template <class K, class V>
Result<void> dump_into(const bpf_map* m, ByteKeyed<V>& out) {
  auto have = dump_map<K, V>(m);
  if (!have) return std::unexpected(have.error());
  out = std::move(*have);
  return {};
}

// The endpoint object's maps, kept open between the applies of one process
// (keep_kernel_handles(): the Docker agent) while they are the pinned ones:
// opening them parses the object's ELF and BTF, a millisecond a sync.
// The pinned programs are kept too, with the stamp of the pin directory
// taken before they were opened: while it holds, they are the pinned ones.
struct KeptMaps {
  std::string instance, objects;
  Skeleton<endpoint_bpf> skel;
  InstanceProgs progs;
  std::optional<PinDirStamp> stamp;
};
std::optional<KeptMaps> g_kept_maps;

// What the nine maps load() reads hold after this process's last apply: its
// plan, moved here once the kernel held it. Read back instead of dumped
// while (a) the maps are the kept ones (the pins as they were) and (b) the
// record read before this apply is the one written right after that one
// (last_read_record_serial(), state.h): any other moat writer since has
// recorded other bytes or left an intent, and either makes that number 0.
// A failed apply has taken it already. 0.1 ms of an agent sync.
struct KeptHave {
  std::string instance;
  uint64_t record = 0;  // next_record_serial() when it was kept
  ByteKeyed<moat_addr_info> addrs, addrs6;
  ByteKeyed<moat_endpoint> eps;
  ByteKeyed<moat_publish_val> publish;
  ByteKeyed<moat_publish6_val> publish6;
  ByteKeyed<moat_uplink> uplinks;
  ByteKeyed<uint32_t> caddrs;
  ByteKeyed<moat_ip> caddrs6;
  ByteKeyed<uint32_t> peers;
};
std::optional<KeptHave> g_kept_have;

// Takes the kept contents into `a` if they still stand for the kernel's.
bool take_kept_have(Apply& a) {
  std::optional<KeptHave> k = std::move(g_kept_have);
  g_kept_have.reset();
  if (!k || k->instance != a.instance || k->record != last_read_record_serial()) return false;
  a.have_addrs = std::move(k->addrs);
  a.have_addrs6 = std::move(k->addrs6);
  a.have_eps = std::move(k->eps);
  a.have_publish = std::move(k->publish);
  a.have_publish6 = std::move(k->publish6);
  a.have_uplinks = std::move(k->uplinks);
  a.have_caddrs = std::move(k->caddrs);
  a.have_caddrs6 = std::move(k->caddrs6);
  a.have_peers = std::move(k->peers);
  return true;
}

void keep_have(Apply& a) {
  auto& w = a.want;
  g_kept_have = KeptHave{a.instance,
                         next_record_serial(),
                         std::move(w.addrs),
                         std::move(w.addrs6),
                         std::move(w.endpoints),
                         std::move(w.publish),
                         std::move(w.publish6),
                         std::move(w.uplinks),
                         std::move(w.container_addrs),
                         std::move(w.container_addrs6),
                         std::move(w.local_peers)};
}

// The kept programs, when the pin directory is as it was when they were
// opened; the maps stay kept for take_kept_maps().
std::optional<InstanceProgs> take_kept_progs(const Apply& a,
                                             const std::optional<PinDirStamp>& stamp) {
  if (!g_kept_maps || !stamp || !g_kept_maps->stamp || *g_kept_maps->stamp != *stamp ||
      g_kept_maps->instance != a.instance || g_kept_maps->objects != a.objects)
    return std::nullopt;
  g_kept_maps->stamp.reset();
  return std::move(g_kept_maps->progs);
}

std::optional<Skeleton<endpoint_bpf>> take_kept_maps(const Apply& a, const std::string& dir) {
  if (!g_kept_maps) return std::nullopt;
  KeptMaps k = std::move(*g_kept_maps);
  g_kept_maps.reset();
  if (k.instance != a.instance || k.objects != a.objects || !k.skel.same_pins(dir, a.stamp))
    return std::nullopt;
  return std::move(k.skel);
}

// Phase 2: programs and maps. Loading means verifying the four TC programs,
// most of an apply's time: programs pinned from the very objects this
// binary embeds are kept, and only the maps are opened.
Result<void> load(Apply& a, bool exists) {
  if (!a.dry_run) {
    if (auto r = ensure_bpffs(); !r) return r;
    if (auto r = mkdirs(pin_dir(a.instance)); !r) return r;
  }
  a.objects = objects_fingerprint();
  std::string dir = pin_dir(a.instance);
  std::optional<InstanceProgs> kept;
  if (a.prev.value("objects", std::string()) == a.objects && exists) {
    kept = a.dry_run ? std::nullopt : take_kept_progs(a, a.stamp);
    if (!kept) kept = open_pinned_programs(a.instance);
  }
  auto held = kept && !a.dry_run ? take_kept_maps(a, dir) : std::nullopt;
  const bool same_maps = held.has_value();
  auto skel = held   ? Result<Skeleton<endpoint_bpf>>(std::move(*held))
              : kept ? open_pinned_maps<endpoint_bpf>(dir)
                     : load_pinned<endpoint_bpf>(dir, a.sizes.by_map());
  if (!skel) return std::unexpected(skel.error());
  a.skel = std::move(*skel);
  if (kept) {
    a.progs = std::move(kept->container);
    a.uprogs = std::move(kept->uplink);
    a.bprogs = std::move(kept->bridge);
  } else {
    auto uskel = load_pinned<uplink_bpf>(dir);
    if (!uskel) return std::unexpected(uskel.error());
    a.uskel = std::move(*uskel);
    auto bskel = load_pinned<bridge_bpf>(dir);
    if (!bskel) return std::unexpected(bskel.error());
    a.bskel = std::move(*bskel);
  }
  // Taken whether it is used or not: an apply that fails from here on
  // leaves no kept contents behind.
  if (!a.dry_run && take_kept_have(a) && same_maps) return {};
  auto& maps = a.skel->maps;
  for (auto r : {dump_into<moat_lpm_v4_key>(maps.addrs, a.have_addrs),
                 dump_into<moat_lpm_v6_key>(maps.addrs6, a.have_addrs6),
                 dump_into<uint32_t>(maps.endpoints, a.have_eps),
                 dump_into<moat_publish_key>(maps.publish, a.have_publish),
                 dump_into<moat_publish6_key>(maps.publish6, a.have_publish6),
                 dump_into<uint32_t>(maps.uplinks, a.have_uplinks),
                 dump_into<moat_container_net_key>(maps.container_addrs, a.have_caddrs),
                 dump_into<moat_container_net_key>(maps.container_addrs6, a.have_caddrs6),
                 dump_into<moat_peer_key>(maps.local_peers, a.have_peers)})
    if (!r) return r;
  return {};
}

Result<void> check_fresh_ports(Apply& a) { return fresh_ports_free(a, true); }

// Phase 3: the programs pinned (unless kept).
Result<void> pin(Apply& a) {
  if (!a.uskel) return {};
  auto progs = pin_programs(a.instance, a.skel->progs.from_container, a.skel->progs.to_container,
                            a.dry_run, &a.rep.programs_replaced);
  if (!progs) return std::unexpected(progs.error());
  auto uprogs = pin_programs(a.instance, a.uskel->progs.from_world, a.uskel->progs.to_world,
                             a.dry_run, &a.rep.programs_replaced);
  if (!uprogs) return std::unexpected(uprogs.error());
  auto bprogs = pin_programs(a.instance, a.bskel->progs.from_bridge, nullptr, a.dry_run,
                             &a.rep.programs_replaced);
  if (!bprogs) return std::unexpected(bprogs.error());
  a.progs = std::move(*progs);
  a.uprogs = std::move(*uprogs);
  a.bprogs = std::move(*bprogs);
  return {};
}

// Phase 4: new and changed entries. New addresses and endpoints first,
// attachments next, removals last: a packet never meets a program whose
// entries are not there yet.
Result<void> write(Apply& a) {
  auto& maps = a.skel->maps;
  if (!a.dry_run) {
    for (uint32_t slot : a.want.slots.fresh)
      if (auto r = zero_stats_slot(maps.stats, slot); !r) return r;
    // Asked when the programs are loaded, not on every apply: the probe
    // loads a program of its own, and an apply that changes nothing loads none.
    if (a.uskel)
      if (auto r = fast_path_default(maps.fast_cfg); !r) return r;
    for (const auto& u : a.want.uplink_rows)
      if (auto r = set_uplink_slot(maps.uplink_slots, u.ifindex, a.want.slots.slot.at(u.name)); !r)
        return r;
  }
  int ignored = 0;
  auto& rep = a.rep;
  auto r = upsert<moat_lpm_v4_key>(maps.addrs, a.have_addrs, a.want.addrs, &rep.addrs_added,
                                   &rep.addrs_updated, a.dry_run);
  if (r)
    r = upsert<moat_lpm_v6_key>(maps.addrs6, a.have_addrs6, a.want.addrs6, &rep.addrs_added,
                                &rep.addrs_updated, a.dry_run);
  if (r)
    r = upsert<uint32_t>(maps.endpoints, a.have_eps, a.want.endpoints, &rep.endpoints_added,
                         &rep.endpoints_updated, a.dry_run);
  if (r)
    r = upsert<moat_publish_key>(maps.publish, a.have_publish, a.want.publish, &rep.publish_added,
                                 &rep.publish_updated, a.dry_run);
  if (r)
    r = upsert<moat_publish6_key>(maps.publish6, a.have_publish6, a.want.publish6,
                                  &rep.publish_added, &rep.publish_updated, a.dry_run);
  if (r)
    r = upsert<uint32_t>(maps.uplinks, a.have_uplinks, a.want.uplinks, &ignored, &ignored,
                         a.dry_run);
  if (r)
    r = upsert<moat_container_net_key>(maps.container_addrs, a.have_caddrs, a.want.container_addrs,
                                       &ignored, &ignored, a.dry_run);
  if (r)
    r = upsert<moat_container_net_key>(maps.container_addrs6, a.have_caddrs6,
                                       a.want.container_addrs6, &ignored, &ignored, a.dry_run);
  // After `endpoints`: the fast path finds an endpoint through this map,
  // and checks it against that one's entry (lib/redirect.h).
  if (r)
    r = upsert<moat_peer_key>(maps.local_peers, a.have_peers, a.want.local_peers, &ignored,
                              &ignored, a.dry_run);
  return r;
}

// From this many entries on, a generation switched to is written into the
// idle slot too (ApplyHooks::mirror): a one-rule change after the apply
// would otherwise write them all there (some 0.35 us each here). On
// another CPU, while the apply writes its record and image: about as long
// at 100,000 rules, where it cost the apply nothing measurable; at 10,000
// (from 8,192) those were shorter and the apply waited for it, 49 -> 56 ms
// against a 60 ms target (README, stop 59). With one CPU it would only
// take turns with them.
constexpr size_t kMirrorFrom = 32768;

void start_mirror(Apply& a) {
  const PolicyPlan& policy = a.want.policy;
  if (!a.mirror || policy.entries.size() < kMirrorFrom || std::thread::hardware_concurrency() < 2)
    return;
  auto copied = std::make_shared<std::latch>(1);
  // Only a shortcut for the next change: whatever fails here, the apply
  // goes on (a thread that cannot start, memory for the copy that runs out).
  try {
    *a.mirror = std::jthread([copied, &policy, pins = pin_dir(a.instance),
                              store = GenerationStore{state_dir(a.instance)}, rev = a.rev,
                              gp = GracePeriod::begin()] {
      std::optional<IpcacheEntries> v4;
      std::optional<Ipcache6Entries> v6;
      std::optional<PolicyEntries> entries;
      try {
        v4.emplace(policy.ipcache), v6.emplace(policy.ipcache6), entries.emplace(policy.entries);
      } catch (...) {
        entries.reset();
      }
      copied->count_down();  // `policy` may go from here on
      if (!entries) return;
      // Its own handles: the apply's go with it. Failing, the slot's copy
      // is gone and the next change there writes fresh maps.
      try {
        if (auto skel = open_pinned_maps<endpoint_bpf>(pins, kPolicyMaps))
          (void)mirror_generation(*skel->get(), rev, *v4, *v6, *entries, store, gp);
      } catch (...) {
      }
    });
  } catch (const std::system_error&) {
    return;
  }
  a.mirror_copied = std::move(copied);
}

// Phase 5: the new policy generation, once every endpoint it names exists.
Result<void> swap_policy(Apply& a) {
  const auto& policy = a.want.policy;
  auto changed = install_policy(
      *a.skel.get(), policy.ipcache, policy.ipcache6, policy.entries, policy.active, a.last_rev,
      a.dry_run, &a.rev, GenerationStore{state_dir(a.instance)}, a.gp.begun() ? &a.gp : nullptr);
  if (!changed) return std::unexpected(changed.error());
  a.rep.policy_changed = *changed;
  // A new revision numbers its rules anew: their hit counters start over
  // (the one-rule apply renumbers none and resets only the changed one).
  if (*changed && !a.dry_run) {
    // Looked up, not value()d: a copy of 100,000 rules cost more than the
    // whole policy write.
    size_t old_rules = 0;
    if (auto p = a.prev.find("policy"); p != a.prev.end() && p->is_object()) {
      if (auto r = p->find("rules"); r != p->end() && r->is_array()) old_rules = r->size();
      old_rules = std::max<size_t>(old_rules, p->value("rule_count", size_t{0}));
    }
    size_t n = std::min<size_t>(std::max(old_rules, policy.rules.size()), MOAT_MAX_RULES);
    reset_rule_hits(*a.skel.get(), static_cast<uint32_t>(n));
  }
  a.rep.policy_rev = a.rev;
  a.rep.policy_entries = static_cast<int>(policy.entries.size());
  if (*changed && !a.dry_run && policy.active) start_mirror(a);
  return {};
}

std::map<std::string, const json*> by_name(const json& rows) {
  std::map<std::string, const json*> out;
  for (const auto& r : rows) out[r.at("name").get<std::string>()] = &r;
  return out;
}

json Attached::state_rows() const {
  json out = json::array();
  if (!rows) return out;
  for (size_t i = 0; i < rows->size(); ++i) {
    const AttachmentRow& r = (*rows)[i];
    json row = r.state_row();
    row["name"] = r.name;
    row["ifindex"] = r.ifindex;
    row["qdisc_created"] = static_cast<bool>(qdisc_created[i]);
    out.push_back(std::move(row));
  }
  return out;
}

// Attaches `progs` to every interface of `rows`, keeping `qdisc_created`
// from the previous state so moat only ever removes a qdisc it made (or
// the caller made for it: `made`, ReconcileOptions::clsact_made).
// With `deferred`, the interfaces attached before are left for
// verify_attached() (`qdisc_created` as before).
Result<Attached> attach_rows(const std::vector<AttachmentRow>& rows, const json& old_rows,
                             const PinnedProgs& progs, bool dry_run, int* attached,
                             std::vector<std::pair<size_t, const PinnedProgs*>>* deferred,
                             const KnownIndexes* made, std::vector<std::string>* taken) {
  auto old_by_name = by_name(old_rows);
  Attached out{&rows, {}};
  out.qdisc_created.reserve(rows.size());
  for (const auto& row : rows) {
    const std::string& name = row.name;
    const int idx = row.ifindex;
    bool created = false, before = false;
    if (auto it = old_by_name.find(name); it != old_by_name.end()) {
      before = it->second->value("ifindex", 0) == idx;
      created = it->second->value("qdisc_created", false) && before;
    }
    bool made_ahead = false;
    if (made)
      if (auto m = made->find(name); m != made->end() && static_cast<int>(m->second) == idx) {
        if (!before)
          created = made_ahead = true;
        else if (created && taken)  // a record saved by an apply that then failed owns it
          taken->push_back(name);
      }
    if (dry_run) {
      if (attached_prog_id(idx, BPF_TC_INGRESS) != progs.ingress_id ||
          attached_prog_id(idx, BPF_TC_EGRESS) != progs.egress_id)
        ++*attached;
    } else if (deferred && before) {
      deferred->emplace_back(out.qdisc_created.size(), &progs);
    } else {
      auto changed = attach(name, idx, progs, &created);
      if (!changed) return std::unexpected(changed.error());
      if (*changed) ++*attached;
      if (made_ahead && taken) taken->push_back(name);
    }
    out.qdisc_created.push_back(created);
  }
  return out;
}

Result<void> sock_hooks(Apply& a);

// Phase 6: TC filters on every interface, socket hooks for the host. The
// bridges come last: a bridge drops what its endpoints did not mark, so its
// endpoints must run the marking programs first.
//
// Interfaces new to this apply (or under a new ifindex, or all of them when
// the programs were replaced) are attached here; those the previous apply
// attached the same programs to are checked in verify_attached(), after
// the rest of the change is in the kernel: a sync of the Docker agent
// reaches the kernel without a netlink round trip per container.
Result<void> attach_all(Apply& a) {
  bool kept = !a.uskel;  // the programs the previous apply attached
  std::vector<std::pair<size_t, const PinnedProgs*>> ep_d, up_d, br_d;
  auto ifaces =
      attach_rows(a.want.endpoint_rows, prev_rows(a.prev, "interfaces"), a.progs, a.dry_run,
                  &a.rep.attached, kept ? &ep_d : nullptr, a.clsact_made, &a.rep.clsact_taken);
  if (!ifaces) return std::unexpected(ifaces.error());
  auto uplinks = attach_rows(a.want.uplink_rows, prev_rows(a.prev, "uplinks"), a.uprogs, a.dry_run,
                             &a.rep.attached, kept ? &up_d : nullptr, nullptr, nullptr);
  if (!uplinks) return std::unexpected(uplinks.error());
  auto bridges = attach_rows(a.want.bridge_rows, prev_rows(a.prev, "bridges"), a.bprogs, a.dry_run,
                             &a.rep.attached, kept ? &br_d : nullptr, nullptr, nullptr);
  if (!bridges) return std::unexpected(bridges.error());
  a.ifaces = std::move(*ifaces);
  a.uplinks = std::move(*uplinks);
  a.bridges = std::move(*bridges);
  for (auto [list, rows] :
       {std::pair{&ep_d, &a.ifaces}, std::pair{&up_d, &a.uplinks}, std::pair{&br_d, &a.bridges}})
    for (auto [at, progs] : *list) a.deferred.push_back({rows, at, progs});
  // Socket hooks the previous apply put in place are checked later too.
  a.sock_hooks_deferred = kept && !a.dry_run && !a.prev.empty();
  return a.sock_hooks_deferred ? Result<void>() : sock_hooks(a);
}

Result<void> sock_hooks(Apply& a) {
  auto prev = SockLinks::from_json(a.prev.value("sock_links", json()));
  SockLinks now;
  auto hooks = ensure_sock_hooks(pin_dir(a.instance), a.dry_run, a.ports_held,
                                 prev ? &*prev : nullptr, &now);
  if (!hooks) return std::unexpected(hooks.error());
  if (!a.dry_run) a.sock_links = std::move(now);
  a.rep.sock_hooks_changed = *hooks;
  return {};
}

// Phase 8: the interfaces attach_all() left: their filters are ours still,
// or put back (counted as attached: someone removed or replaced them).
Result<void> verify_attached(Apply& a) {
  // Asked of all of them over one socket; attach() (an exchange of its
  // own each) only for those whose slots do not hold our programs.
  std::vector<int> ifindexes;
  for (const auto& d : a.deferred) ifindexes.push_back((*d.list->rows)[d.at].ifindex);
  auto ids = attached_prog_ids(ifindexes);
  for (size_t i = 0; i < a.deferred.size(); ++i) {
    const auto& d = a.deferred[i];
    if (ids[i].first == d.progs->ingress_id && d.progs->ingress_id != 0 &&
        (d.progs->egress_id == 0 || ids[i].second == d.progs->egress_id))
      continue;
    const AttachmentRow& row = (*d.list->rows)[d.at];
    bool created = d.list->qdisc_created[d.at];
    auto changed = attach(row.name, row.ifindex, *d.progs, &created);
    if (!changed) return std::unexpected(changed.error());
    if (*changed) ++a.rep.attached;
    d.list->qdisc_created[d.at] = created;
  }
  return a.sock_hooks_deferred ? sock_hooks(a) : Result<void>();
}

// Phase 7a: interfaces no longer wanted lose our filters; their counter
// slots are released once no program can count into them.
Result<void> detach_stale(Apply& a) {
  // Asked of the pins only when an interface is to lose its filters.
  std::optional<std::set<uint32_t>> ours;
  auto our_progs = [&]() -> const std::set<uint32_t>& {
    if (ours) return *ours;
    ours = pinned_prog_ids(a.instance);
    for (uint32_t id : {a.progs.ingress_id, a.progs.egress_id, a.uprogs.ingress_id,
                        a.uprogs.egress_id, a.bprogs.ingress_id})
      ours->insert(id);
    return *ours;
  };
  std::set<std::string> wanted;
  for (const auto* rows : {&a.want.endpoint_rows, &a.want.uplink_rows, &a.want.bridge_rows})
    for (const auto& r : *rows) wanted.insert(r.name);
  const json& old_uplinks = prev_rows(a.prev, "uplinks");
  for (const json* old :
       {&prev_rows(a.prev, "interfaces"), &old_uplinks, &prev_rows(a.prev, "bridges")}) {
    for (const auto& [name, row] : by_name(*old)) {
      if (wanted.contains(name)) continue;
      a.rep.detached++;
      if (a.dry_run) continue;
      if (auto r = detach(name, row->value("qdisc_created", false), our_progs()); !r) return r;
    }
  }
  if (a.dry_run) return {};
  auto& maps = a.skel->maps;
  // Uplinks gone or re-created under another ifindex stop naming a slot.
  std::set<int> uplink_now;
  for (const auto& u : a.want.uplink_rows) uplink_now.insert(u.ifindex);
  for (const auto& row : old_uplinks)
    if (int idx = row.value("ifindex", 0); !uplink_now.contains(idx))
      if (auto r = set_uplink_slot(maps.uplink_slots, idx, 0); !r) return r;
  for (uint32_t slot : a.want.slots.freed)
    if (auto r = zero_stats_slot(maps.stats, slot); !r) return r;
  return {};
}

// Phase 7b: entries nobody wants any more, addresses last.
Result<void> remove_stale_entries(Apply& a) {
  auto& maps = a.skel->maps;
  auto& rep = a.rep;
  int ignored = 0;
  auto r = remove_stale(maps.local_peers, a.have_peers, a.want.local_peers, &ignored, a.dry_run);
  if (r)
    r = remove_stale(maps.endpoints, a.have_eps, a.want.endpoints, &rep.endpoints_removed,
                     a.dry_run);
  if (r) r = remove_stale(maps.publish, a.have_publish, a.want.publish, &rep.publish_removed, a.dry_run);
  if (r)
    r = remove_stale(maps.publish6, a.have_publish6, a.want.publish6, &rep.publish_removed,
                     a.dry_run);
  if (r) r = remove_stale(maps.uplinks, a.have_uplinks, a.want.uplinks, &ignored, a.dry_run);
  if (r)
    r = remove_stale(maps.container_addrs, a.have_caddrs, a.want.container_addrs, &ignored,
                     a.dry_run);
  if (r)
    r = remove_stale(maps.container_addrs6, a.have_caddrs6, a.want.container_addrs6, &ignored,
                     a.dry_run);
  if (r) r = remove_stale(maps.addrs, a.have_addrs, a.want.addrs, &rep.addrs_removed, a.dry_run);
  if (r) r = remove_stale(maps.addrs6, a.have_addrs6, a.want.addrs6, &rep.addrs_removed, a.dry_run);
  return r;
}

// Which maps a publish of `container` landed in: "ipv4" (publish), "ipv6"
// (publish6, when the container has an IPv6 address to forward to).
json published_families(const Plan& plan, const std::string& container, const std::string& text) {
  auto has = [&](const auto& entries) {
    return std::any_of(entries.begin(), entries.end(),
                       [&](const auto& e) { return e.container == container && e.text == text; });
  };
  json out = json::array();
  if (has(plan.publish)) out.push_back("ipv4");
  if (has(plan.publish6)) out.push_back("ipv6");
  return out;
}

// Phase 8: the record of what the kernel now holds (reconcile() saves it).
json state_record(const Apply& a) {
  const auto& cfg = a.cfg;
  const auto& ids = a.want.plan.ids;
  json networks = json::array();
  for (const auto& n : cfg.networks) {
    json row{{"name", n.name},
             {"id", ids.networks.at(n.name)},
             {"subnet", n.subnet.str()},
             {"gateway", n.gateway.str()},
             {"icc", n.icc},
             {"internal", n.internal},
             {"masquerade", n.masquerade && !n.internal},
             {"bridge", n.bridge}};
    if (n.subnet6) {
      row["subnet6"] = n.subnet6->str();
      row["gateway6"] = n.gateway6.str();
    }
    networks.push_back(std::move(row));
  }
  json published = json::array();
  for (const auto& c : cfg.containers)
    for (const auto& p : c.publish)
      published.push_back({{"container", c.name},
                           {"publish", p.text},
                           {"families", published_families(a.want.plan, c.name, p.text)}});
  return {{"instance", a.instance},
          {"source", cfg.source},
          {"netns_inode", current_netns_inode()},
          {"netns_path", current_netns_path()},
          {"ids", {{"networks", ids.networks}, {"containers", ids.containers}}},
          {"networks", networks},
          {"published", published},
          {"policy_rev", a.rev},
          {"policy_rev_max", std::max(a.last_rev, a.rev)},
          {"policy", policy_state_json(cfg, a.want.policy)},
          {"interfaces", a.ifaces.state_rows()},
          {"uplinks", a.uplinks.state_rows()},
          {"bridges", a.bridges.state_rows()},
          {"objects", a.objects},
          {"sock_links", a.sock_links ? a.sock_links->to_json() : json()}};
}

}  // namespace

Result<ApplyReport> apply(const std::string& instance, const Config& cfg, bool dry_run,
                          bool ports_held, const ApplyHooks& hooks) {
  Apply a(instance, cfg, dry_run, ports_held);
  a.known_ifindex = hooks.known_ifindex;
  a.clsact_made = hooks.clsact_made;
  if (!dry_run) a.policy_image = hooks.policy_image, a.mirror = hooks.mirror;
  PhaseClock clock(&a.rep);
  // The Docker agent's syncs use the one begun after its last switch: a
  // thread and a membarrier() per sync were part of its way to the kernel.
  if (!dry_run && !keeps_grace_period_after_switch()) a.gp = GracePeriod::begin();
  if (auto r = resolve(a, hooks.prev_state); !r) return std::unexpected(r.error());
  clock.lap("resolve");
  bool exists = fs::exists(pin_dir(instance));
  if (dry_run && !exists) return dry_run_new(a);
  if (!dry_run && hooks.before_kernel)
    if (auto r = hooks.before_kernel(); !r) return std::unexpected(r.error());
  clock.lap("intent");
  if (auto r = load(a, exists); !r) return std::unexpected(r.error());
  clock.lap("load");
  using Phase = Result<void> (*)(Apply&);
  static constexpr std::pair<const char*, Phase> kPhases[] = {
      {"check-ports", check_fresh_ports},
      {"pin", pin},
      {"write", write},
      {"swap-policy", swap_policy},
      {"attach", attach_all},
      {"detach", detach_stale},
      {"remove-stale", remove_stale_entries},
      {"verify-attached", verify_attached}};
  for (auto [name, phase] : kPhases) {
    if (auto r = phase(a); !r) return std::unexpected(r.error());
    clock.lap(name);
    if (dry_run) continue;
    if (auto r = failpoint(name); !r) return std::unexpected(r.error());
  }
  if (!dry_run && hooks.state) *hooks.state = state_record(a);
  if (!dry_run && g_keep_maps) {
    keep_have(a);
    g_kept_maps =
        KeptMaps{instance, a.objects, std::move(a.skel),
                 InstanceProgs{std::move(a.progs), std::move(a.uprogs), std::move(a.bprogs)},
                 std::move(a.stamp)};
  }
  return a.rep;
}

void keep_maps_between_applies(bool on) {
  g_keep_maps = on;
  if (!on) g_kept_maps.reset(), g_kept_sizes.reset(), g_kept_have.reset();
  keep_sock_programs(on);
}

void drop_kept_maps() {
  g_kept_maps.reset();
  g_kept_sizes.reset();
  g_kept_have.reset();
  drop_kept_sock_programs();
}

}  // namespace moat
