// Reading the counters out of the pinned per-CPU maps.
#include "observe/snapshot.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <time.h>

#include <set>

#include "dataplane/dataplane.h"
#include "endpoint.skel.h"
#include "observe/detail.h"

namespace moat::obs {

const char* dir_name(uint32_t dir) {
  switch (dir) {
    case MOAT_DIR_FROM_CONTAINER:
      return "from_container";
    case MOAT_DIR_TO_CONTAINER:
      return "to_container";
    case MOAT_DIR_FROM_WORLD:
      return "from_world";
    case MOAT_DIR_TO_WORLD:
      return "to_world";
    default:
      return "?";
  }
}

uint64_t Counters::drops_total() const {
  uint64_t n = 0;
  for (auto d : drops) n += d;
  return n;
}

namespace {

int ncpus() {
  int n = libbpf_num_possible_cpus();
  return n > 0 ? n : 1;
}

Counters read_counters(const bpf_map* m, uint32_t slot, uint32_t dir) {
  std::vector<moat_stats> per_cpu(static_cast<size_t>(ncpus()));
  uint32_t key = moat_stats_index(slot, dir);
  Counters c;
  if (bpf_map__lookup_elem(m, &key, sizeof(key), per_cpu.data(),
                           per_cpu.size() * sizeof(moat_stats), 0) != 0)
    return c;  // nothing counted yet
  for (const auto& s : per_cpu) {
    c.packets += s.packets;
    c.bytes += s.bytes;
    c.new_flows += s.new_flows;
    c.drop_bytes += s.drop_bytes;
    for (int i = 0; i < MOAT_NR_DROP_SLOTS; ++i) c.drops[i] += s.drops[i];
  }
  return c;
}

uint64_t read_u64_sum(const bpf_map* m, uint32_t key) {
  std::vector<uint64_t> per_cpu(static_cast<size_t>(ncpus()));
  if (bpf_map__lookup_elem(m, &key, sizeof(key), per_cpu.data(), per_cpu.size() * sizeof(uint64_t),
                           0) != 0)
    return 0;
  uint64_t n = 0;
  for (auto v : per_cpu) n += v;
  return n;
}

AttachmentStats attachment(const Names& names, const bpf_map* stats, uint32_t idx, const Iface& f) {
  AttachmentStats a;
  a.uplink = f.uplink;
  a.interface = f.name;
  a.ifindex = idx;
  a.container = f.container;
  a.network = f.network;
  a.ip = f.ip;
  if (auto it = names.containers.find(f.container); !f.uplink && it != names.containers.end()) {
    a.ns = it->second.ns;
    a.labels = it->second.labels;
  }
  uint32_t d0 = f.uplink ? MOAT_DIR_FROM_WORLD : MOAT_DIR_FROM_CONTAINER;
  // Slot 0 is what no attachment claims: an attachment without a slot
  // of its own (state written by an older moat) shows nothing counted.
  if (f.stats_slot != 0) {
    a.dir[0] = read_counters(stats, f.stats_slot, d0);
    a.dir[1] = read_counters(stats, f.stats_slot, d0 + 1);
  }
  return a;
}

std::string addr_str(uint32_t be) { return detail::ip_str(be); }
std::string addr_str(const moat_ip& a) { return detail::ip6_str(a); }

// Live flows of `ct` (K, E: moat_ct_key and moat_ct_entry, or their IPv6
// twins): each counted once per attachment it touches. `by_ip`: container
// address (either family) -> attachment.
template <class K, class E>
void count_live_connections(const bpf_map* ct, const std::map<std::string, size_t>& by_ip,
                            Snapshot& s) {
  int fd = bpf_map__fd(ct);
  uint64_t now = datapath_now_ns();
  K key{}, next{};
  bool first = true;
  while (bpf_map_get_next_key(fd, first ? nullptr : &key, &next) == 0) {
    first = false;
    key = next;
    E e{};
    if (bpf_map_lookup_elem(fd, &key, &e) != 0) continue;
    if (e.expires_ns < now) continue;
    if (e.kind != MOAT_CT_DNAT && e.kind != MOAT_CT_SNAT && e.kind != MOAT_CT_TRACK) continue;
    std::set<size_t> touched;
    for (const auto* a : {&key.saddr, &key.daddr, &e.xlated.saddr, &e.xlated.daddr})
      if (auto it = by_ip.find(addr_str(*a)); it != by_ip.end()) touched.insert(it->second);
    for (size_t i : touched) s.attachments[i].active_connections++;
  }
}

}  // namespace

Result<Snapshot> read_snapshot(const Names& names) {
  auto skel = open_pinned(names.instance);
  if (!skel) return std::unexpected(skel.error());
  auto& maps = (*skel)->maps;
  Snapshot s;
  s.instance = names.instance;
  uint32_t zero = 0, rev = 0;
  if (bpf_map__lookup_elem(maps.policy_rev, &zero, sizeof(zero), &rev, sizeof(rev), 0) == 0)
    s.policy_revision = rev;

  std::map<std::string, size_t> by_ip;  // container address -> attachment
  for (bool uplinks : {false, true}) {
    for (const auto& [idx, f] : names.ifaces) {
      if (f.uplink != uplinks || f.bridge) continue;
      if (!f.uplink) by_ip[f.ip] = s.attachments.size();
      s.attachments.push_back(attachment(names, maps.stats, idx, f));
    }
  }
  for (uint32_t id = 0; id < names.rules.size() && id < MOAT_MAX_RULES; ++id)
    s.rules.push_back({id, names.rules[id], read_u64_sum(maps.rule_hits, id)});
  s.lost_full = read_u64_sum(maps.events_lost, MOAT_EV_LOST_FULL);
  s.lost_rate = read_u64_sum(maps.events_lost, MOAT_EV_LOST_RATE);
  s.unattributed[0] = read_counters(maps.stats, 0, MOAT_DIR_FROM_CONTAINER);
  s.unattributed[1] = read_counters(maps.stats, 0, MOAT_DIR_TO_CONTAINER);
  // An attachment's IPv6 address is among the names, by container and network.
  for (const auto& [ip, who] : names.addrs)
    for (size_t i = 0; i < s.attachments.size(); ++i)
      if (!s.attachments[i].uplink && s.attachments[i].container == who.container &&
          s.attachments[i].network == who.network)
        by_ip.emplace(ip, i);
  count_live_connections<moat_ct_key, moat_ct_entry>(maps.ct, by_ip, s);
  count_live_connections<moat_ct6_key, moat_ct6_entry>(maps.ct6, by_ip, s);
  return s;
}

}  // namespace moat::obs
