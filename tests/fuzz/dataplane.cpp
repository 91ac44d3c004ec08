// dataplane.cpp - seeding the programs' maps from production's plan, and running frames.
#include "dataplane.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "dataplane/counters.h"
#include "plan/map_plan.h"

namespace fuzz {
namespace {

[[noreturn]] void fail(const std::string& what, int err) {
  throw std::runtime_error(what + ": " + std::strerror(err));
}

template <class T>
T ok(moat::Result<T> r, const std::string& what) {
  if (!r) throw std::runtime_error(what + ": " + r.error().message());
  if constexpr (!std::is_void_v<T>) return std::move(*r);
}

// Every key of a hash or LPM map deleted: the keys first, in one walk (a
// walk from the start costs a scan of every bucket: 262,144 for `ct`).
void clear_map(const bpf_map* m) {
  const size_t size = bpf_map__key_size(m);
  std::vector<uint8_t> keys, key(size);
  const void* prev = nullptr;
  while (bpf_map__get_next_key(m, prev, key.data(), size) == 0) {
    keys.insert(keys.end(), key.begin(), key.end());
    prev = keys.data() + keys.size() - size;
  }
  for (size_t o = 0; o < keys.size(); o += size)
    if (bpf_map__delete_elem(m, keys.data() + o, size, 0) && errno != ENOENT)
      fail(std::string("clearing ") + bpf_map__name(m), errno);
}

// An inner map as policy_gen.cpp makes one (its build_inner()).
template <class K, class V>
moat::Fd inner_map(bpf_map_type type, const char* name, uint32_t max_entries,
                   const std::vector<std::pair<K, V>>& entries) {
  LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = BPF_F_NO_PREALLOC);
  moat::Fd fd(bpf_map_create(type, name, sizeof(K), sizeof(V), max_entries, &opts));
  if (!fd.ok()) fail(std::string("creating ") + name, errno);
  for (const auto& [k, v] : entries)
    if (bpf_map_update_elem(fd.get(), &k, &v, BPF_ANY)) fail(std::string("filling ") + name, errno);
  return fd;
}

template <class V>
void write_rows(const bpf_map* m, const moat::ByteKeyed<V>& rows) {
  for (const auto& [key, value] : rows)
    if (bpf_map__update_elem(m, key.data(), key.size(), &value, sizeof value, BPF_ANY))
      fail(std::string("writing ") + bpf_map__name(m), errno);
}

moat_test::Hook harness_hook(Hook h) {
  switch (h) {
    case Hook::FromContainer:
      return moat_test::Hook::FromContainer;
    case Hook::ToContainer:
      return moat_test::Hook::ToContainer;
    case Hook::FromWorld:
      return moat_test::Hook::FromWorld;
    case Hook::ToWorld:
      return moat_test::Hook::ToWorld;
  }
  return moat_test::Hook::FromContainer;
}

uint32_t ifindex_of_key(const std::vector<uint8_t>& key) {
  uint32_t i;
  std::memcpy(&i, key.data(), sizeof i);
  return i;
}

}  // namespace

void Dataplane::clear_config() {
  const auto& maps = progs_.ep->maps;
  for (const bpf_map* m :
       {maps.addrs, maps.addrs6, maps.endpoints, maps.publish, maps.uplinks, maps.container_addrs,
        maps.container_addrs6, maps.local_peers, maps.ct, maps.frags})
    clear_map(m);
  const uint32_t zero = 0;
  for (uint32_t key : uplink_slot_keys_)
    if (bpf_map__update_elem(maps.uplink_slots, &key, sizeof key, &zero, sizeof zero, BPF_ANY))
      fail("clearing uplink_slots", errno);
  uplink_slot_keys_.clear();
  moat_test::set_policy_rev(progs_.ep, 0);
  ep_slot_.clear();
  up_slot_.clear();
  last_.clear();
}

void Dataplane::write_plan(const moat::MapPlan& m) {
  const auto& maps = progs_.ep->maps;
  for (uint32_t slot : m.slots.fresh) ok(moat::zero_stats_slot(maps.stats, slot), "zeroing stats");
  write_rows(maps.addrs, m.addrs);
  write_rows(maps.addrs6, m.addrs6);
  write_rows(maps.endpoints, m.endpoints);
  write_rows(maps.publish, m.publish);
  write_rows(maps.uplinks, m.uplinks);
  write_rows(maps.container_addrs, m.container_addrs);
  write_rows(maps.container_addrs6, m.container_addrs6);
  write_rows(maps.local_peers, m.local_peers);
  for (const auto& [key, ep] : m.endpoints) ep_slot_[ifindex_of_key(key)] = ep.stats_slot;
  for (const auto& [key, up] : m.uplinks) {
    const uint32_t ifindex = ifindex_of_key(key);
    up_slot_[ifindex] = up.stats_slot;
    ok(moat::set_uplink_slot(maps.uplink_slots, int(ifindex), up.stats_slot), "uplink_slots");
    uplink_slot_keys_.push_back(ifindex);
  }
}

void Dataplane::seed(const Topology& topo, const std::vector<moat::Config>& variants) {
  clear_config();
  moat::HostFacts host;
  for (const auto& a : topo.atts) host.ifindex[a.dev] = int(a.ifindex);
  std::vector<moat::Ipv4> host_addrs;
  for (const auto& u : topo.uplinks) {
    host.uplinks.push_back({u.dev, int(u.ifindex), htonl(u.ip)});
    host_addrs.push_back(moat::Ipv4{u.ip});
  }
  auto plan = ok(moat::compile(topo.cfg, {}), "compiling the configuration");
  auto m = ok(moat::plan_maps(topo.cfg, std::move(plan), host, {}), "planning the maps");
  write_plan(m);
  plans_.clear();
  plans_.push_back(m.policy);
  for (size_t v = 1; v < variants.size(); v++)
    plans_.push_back(ok(moat::compile_policies(variants[v], host_addrs), "compiling a variant"));
  build_generations();
  switch_policy(0);
  switched_ = false;
}

void Dataplane::build_generations() {
  generations_.clear();
  for (const auto& p : plans_) {
    Generation g;
    if (p.active) {
      g.ipcache = inner_map(BPF_MAP_TYPE_LPM_TRIE, "ipcache_gen", MOAT_MAX_IPCACHE, p.ipcache);
      g.ipcache6 = inner_map(BPF_MAP_TYPE_LPM_TRIE, "ipcache6_gen", MOAT_MAX_IPCACHE, p.ipcache6);
      g.policy = inner_map(BPF_MAP_TYPE_HASH, "policy_gen", MOAT_MAX_POLICY, p.entries);
    }
    generations_.push_back(std::move(g));
  }
}

void Dataplane::switch_policy(size_t v) {
  variant_ = v;
  switched_ = true;
  const Generation& g = generations_.at(v);
  if (!g.policy.ok()) return moat_test::set_policy_rev(progs_.ep, 0);
  if (++rev_ == 0) rev_ = 1;
  const uint32_t slot = rev_ & 1;
  const int ic = g.ipcache.get(), ic6 = g.ipcache6.get(), pc = g.policy.get();
  const auto& maps = progs_.ep->maps;
  // Both families' identities: without an IPv6 generation the programs
  // fail closed on every IPv6 policy decision.
  if (bpf_map__update_elem(maps.ipcache_gens, &slot, 4, &ic, 4, 0) ||
      bpf_map__update_elem(maps.ipcache6_gens, &slot, 4, &ic6, 4, 0) ||
      bpf_map__update_elem(maps.policy_gens, &slot, 4, &pc, 4, 0))
    fail("installing a policy generation", errno);
  moat_test::set_policy_rev(progs_.ep, rev_);
}

namespace {

template <class K, class E>
void add_marks(std::map<std::string, std::string>& out, const K& k, const E& e) {
  if (e.tcp_state == MOAT_TCP_NONE) return;
  char mark[160];
  std::snprintf(mark, sizeof mark, "state %u fins %u end %u/%u ack %u/%u known %#x",
                unsigned(e.tcp_state),
                unsigned(e.flags & (MOAT_CT_F_FIN_ORIG | MOAT_CT_F_FIN_REPLY)), e.tcp_end[0],
                e.tcp_end[1], e.tcp_ack[0], e.tcp_ack[1], unsigned(e.tcp_known));
  out[std::string(reinterpret_cast<const char*>(&k), sizeof k)] = mark;
}

}  // namespace

std::map<std::string, std::string> Dataplane::tcp_marks() const {
  std::map<std::string, std::string> out;
  for (const auto& [k, e] : moat_test::ct_entries(progs_.ep)) add_marks(out, k, e);
  for (const auto& [k, e] : moat_test::ct6_entries(progs_.ep)) add_marks(out, k, e);
  return out;
}

void Dataplane::reset_case() {
  moat_test::ct_clear(progs_.ep);
  clear_map(progs_.ep->maps.frags);
  if (switched_) switch_policy(0);
  switched_ = false;
}

unsigned Dataplane::moved_reason(uint32_t slot, uint32_t dir) {
  const moat_stats now = ok(moat::read_stats(progs_.ep->maps.stats, slot, dir), "reading stats");
  moat_stats& was = last_[moat_stats_index(slot, dir)];
  unsigned reason = 0;
  for (unsigned i = 1; i < MOAT_NR_DROP_SLOTS && !reason; i++)
    if (now.drops[i] != was.drops[i]) reason = i;
  was = now;
  return reason;
}

uint32_t Dataplane::moved_peer() {
  uint32_t peer = 0;
  for (const auto& [ifindex, slot] : ep_slot_) {
    const moat_stats now = ok(moat::read_stats(progs_.ep->maps.stats, slot, 1), "reading stats");
    moat_stats& was = last_[moat_stats_index(slot, 1)];
    if (now.packets != was.packets) peer = ifindex;
    was = now;
  }
  return peer;
}

KernelResult Dataplane::run(Hook h, uint32_t ifindex, uint32_t ingress_ifindex,
                            const Bytes& frame) {
  const moat_test::RunResult r =
      moat_test::run(progs_.prog(harness_hook(h)), ifindex, frame, 1, 0, ingress_ifindex);
  KernelResult k{r.err, r.retval, r.out, 0};
  if (r.err) return k;
  const auto& slots = at_uplink(h) ? up_slot_ : ep_slot_;
  const auto it = slots.find(ifindex);
  const uint32_t dir = h == Hook::FromContainer || h == Hook::FromWorld ? 0 : 1;
  k.reason = moved_reason(it == slots.end() ? 0 : it->second, dir);
  if (h == Hook::FromContainer && r.retval == TC_ACT_REDIRECT) k.peer = moved_peer();
  return k;
}

}  // namespace fuzz
