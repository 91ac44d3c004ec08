#include "dataplane/policy_gen.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/membarrier.h>
#include <netinet/in.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <future>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <type_traits>

#include "dataplane/dataplane.h"
#include "dataplane/map_sync.h"
#include "dataplane/skeleton.h"
#include "dataplane/state.h"
#include "endpoint.skel.h"
#include "plan/gen_diff.h"
#include "plan/limits.h"
#include "util/fd.h"

using nlohmann::json;

namespace moat {
namespace {

// The inner map in `slot` of a map-in-map, or an invalid Fd when empty.
Fd inner_map(const bpf_map* outer, uint32_t slot) {
  uint32_t id = 0;
  if (bpf_map__lookup_elem(outer, &slot, sizeof(slot), &id, sizeof(id), 0) != 0 || id == 0)
    return Fd();
  return Fd(bpf_map_get_fd_by_id(id));
}

// Kernels without batch operations for a map type answer EINVAL or
// ENOTSUPP (524, kernel-internal): then one entry at a time.
bool batch_unsupported(int err) { return err == EINVAL || err == EOPNOTSUPP || err == 524; }

// Keys [from, to) of `keys` (with `vals`) into map `fd`, in as few system
// calls as the kernel allows.
template <class K, class V>
Result<void> put_range(int fd, const std::vector<K>& keys, const std::vector<V>& vals, size_t from,
                       size_t to, const char* name) {
  LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = BPF_ANY);
  uint32_t n = static_cast<uint32_t>(to - from);
  if (n == 0 || bpf_map_update_batch(fd, &keys[from], &vals[from], &n, &opts) == 0) return {};
  int err = errno;
  if (!batch_unsupported(err) || n != 0) return fail_errno(std::string("fill map ") + name, err);
  for (size_t i = from; i < to; ++i)
    if (bpf_map_update_elem(fd, &keys[i], &vals[i], BPF_ANY) != 0)
      return fail_errno(std::string("fill map ") + name, errno);
  return {};
}

// Keys [from, to) of `keys` out of map `fd`, likewise.
template <class K>
Result<void> delete_range(int fd, const std::vector<K>& keys, size_t from, size_t to,
                          const char* name) {
  LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = BPF_ANY);
  uint32_t n = static_cast<uint32_t>(to - from);
  if (n == 0 || bpf_map_delete_batch(fd, &keys[from], &n, &opts) == 0) return {};
  int err = errno;
  if (!batch_unsupported(err) || n != 0)
    return fail_errno(std::string("delete from map ") + name, err);
  for (size_t i = from; i < to; ++i)
    if (bpf_map_delete_elem(fd, &keys[i]) != 0)
      return fail_errno(std::string("delete from map ") + name, errno);
  return {};
}

// `write(from, to)` over [0, size): in two halves on two threads when there
// are many. The kernel spends the time (each entry of a BPF_F_NO_PREALLOC
// hash is allocated and linked under its bucket's lock), and both CPUs can:
// 100,000 entries 77-99 -> 49-68 ms here.
template <class Write>
Result<void> split_write(size_t size, Write write) {
  constexpr size_t kSplitFrom = 16384;
  if (size < kSplitFrom) return write(0, size);
  Result<void> second;
  std::thread other([&] { second = write(size / 2, size); });
  Result<void> first = write(0, size / 2);
  other.join();
  return !first ? first : second;
}

// The puts, then the deletes, of `d` into map `fd`.
template <class K, class V>
Result<void> write_diff(int fd, const EntryDiff<K, V>& d, const char* name) {
  auto puts = [&](size_t from, size_t to) {
    return put_range(fd, d.put_keys, d.put_vals, from, to, name);
  };
  if (auto r = split_write(d.put_keys.size(), puts); !r) return r;
  return split_write(d.del_keys.size(), [&](size_t from, size_t to) {
    return delete_range(fd, d.del_keys, from, to, name);
  });
}

// A fresh inner map like the BPF side's template, filled with `entries`.
template <class K, class V>
Result<Fd> build_inner(bpf_map_type type, const char* name, uint32_t max_entries,
                       std::span<const std::pair<K, V>> entries) {
  LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = BPF_F_NO_PREALLOC);
  Fd fd(bpf_map_create(type, name, sizeof(K), sizeof(V), max_entries, &opts));
  if (!fd.ok()) return fail_errno(std::string("create map ") + name, errno);
  EntryDiff<K, V> all;
  all.put_keys.reserve(entries.size());
  all.put_vals.reserve(entries.size());
  for (const auto& [k, v] : entries) {
    all.put_keys.push_back(k);
    all.put_vals.push_back(v);
  }
  if (auto r = write_diff(fd.get(), all, name); !r) return std::unexpected(r.error());
  return fd;
}

// IpcacheEntries, Ipcache6Entries or PolicyEntries in key order.
template <class E>
using OrderedOf =
    KeyOrdered<typename E::value_type::first_type, typename E::value_type::second_type>;

// Whether the generation in force (`rev` != 0) holds exactly these entries.
// A generation written before IPv6 has no IPv6 cache: it does not hold them.
bool generation_holds(const endpoint_bpf& skel, uint32_t rev,
                      const OrderedOf<IpcacheEntries>& ipcache,
                      const OrderedOf<Ipcache6Entries>& ipcache6,
                      const OrderedOf<PolicyEntries>& entries) {
  Fd ic = inner_map(skel.maps.ipcache_gens, rev & 1);
  Fd ic6 = inner_map(skel.maps.ipcache6_gens, rev & 1);
  Fd pc = inner_map(skel.maps.policy_gens, rev & 1);
  return ic.ok() && ic6.ok() && pc.ok() && holds_exactly(ic.get(), ipcache.span()) &&
         holds_exactly(ic6.get(), ipcache6.span()) && holds_exactly(pc.get(), entries.span());
}

// ---- what each slot holds ---------------------------------------------------------------
//
// Reading 100,000 entries back from the kernel costs more than writing the
// few that changed, so the instance keeps, per slot, a copy of what the
// slot's inner maps hold (<state dir>/generation<slot>.bin), tied to those
// very maps by their ids (unique while the system runs: a slot refilled by
// fresh maps, an older moat or anyone else no longer matches). The copy is
// written only after the kernel holds it, and removed before its slot is
// changed in place, so a crash in between leaves no copy and the next write
// starts from fresh maps: a copy never claims what the kernel does not hold.

struct SlotIds {
  uint32_t ic = 0, ic6 = 0, pc = 0;
  bool operator==(const SlotIds&) const = default;
};

template <class E>
using EntriesView = std::span<const typename E::value_type>;

// A slot's copy as read: its entries seen in place in the file's bytes (a
// copy of 2.4 MB at 100,000 rules, twice per change, was a third of a
// one-rule change's switch), or copied where they cannot be viewed as
// them. Read, not mapped: the mapping's small pages cost a TLB miss each
// as the comparison went through them (here 1.4 ms for two copies).
struct Snapshot {
  uint32_t rev = 0;
  SlotIds ids;
  EntriesView<IpcacheEntries> ipcache;
  EntriesView<Ipcache6Entries> ipcache6;
  EntriesView<PolicyEntries> entries;
  std::string file;
  IpcacheEntries own4;
  Ipcache6Entries own6;
  PolicyEntries own_entries;
};

constexpr char kSnapMagic[8] = {'m', 'o', 'a', 't', 'g', 'e', 'n', '1'};

std::string snapshot_path(const GenerationStore& store, uint32_t slot) {
  return store.dir + "/generation" + std::to_string(slot) + ".bin";
}

uint32_t inner_map_id(const bpf_map* outer, uint32_t slot) {
  uint32_t id = 0;
  if (bpf_map__lookup_elem(outer, &slot, sizeof(slot), &id, sizeof(id), 0) != 0) return 0;
  return id;
}

SlotIds slot_ids(const endpoint_bpf& skel, uint32_t slot) {
  return {inner_map_id(skel.maps.ipcache_gens, slot), inner_map_id(skel.maps.ipcache6_gens, slot),
          inner_map_id(skel.maps.policy_gens, slot)};
}

template <class T>
void put_raw(std::string& out, const T& v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

template <class K, class V>
void put_entries(std::string& out, std::span<const std::pair<K, V>> entries) {
  for (const auto& [k, v] : entries) {
    put_raw(out, k);
    put_raw(out, v);
  }
}

template <class T>
bool get_raw(std::string_view in, size_t* at, T* v) {
  if (in.size() - *at < sizeof(T)) return false;
  std::memcpy(v, in.data() + *at, sizeof(T));
  *at += sizeof(T);
  return true;
}

// Whether a vector of pairs holds its entries as the file does: key then
// value, no padding between or after.
template <class K, class V, class E = std::pair<K, V>>
constexpr bool kLaidOutAsFile = sizeof(E) == sizeof(K) + sizeof(V) &&
                                offsetof(E, second) == sizeof(K);

// `n` entries at *at, viewed in place when the file's bytes are laid out
// as the pairs are (key then value, no padding, aligned), else copied into
// *own.
template <class K, class V>
bool get_entries(std::string_view in, size_t* at, uint64_t n,
                 std::span<const std::pair<K, V>>* view, std::vector<std::pair<K, V>>* own) {
  using E = std::pair<K, V>;
  if (n > (in.size() - *at) / (sizeof(K) + sizeof(V))) return false;
  const char* p = in.data() + *at;
  if constexpr (kLaidOutAsFile<K, V>) {
    if (reinterpret_cast<uintptr_t>(p) % alignof(E) == 0) {
      *view = {reinterpret_cast<const E*>(p), static_cast<size_t>(n)};
      *at += n * sizeof(E);
      return true;
    }
  }
  own->resize(n);
  for (auto& [k, v] : *own)
    if (!get_raw(in, at, &k) || !get_raw(in, at, &v)) return false;
  *view = *own;
  return true;
}

// The layout of the entries, so that a copy written by a moat with other
// abi.h structs is never read as this one's.
constexpr uint32_t kSnapLayout = sizeof(moat_lpm_v4_key) | sizeof(moat_lpm_v6_key) << 8 |
                                 sizeof(moat_policy_key) << 16 |
                                 (sizeof(moat_ipcache_val) + sizeof(moat_policy_val)) << 24;

struct SnapshotOut {
  uint32_t rev = 0;
  SlotIds ids;
  EntriesView<IpcacheEntries> ipcache;
  EntriesView<Ipcache6Entries> ipcache6;
  EntriesView<PolicyEntries> entries;
};

// The entries' bytes as the file stores them: the pairs' own bytes when
// laid out as the file is, else copied into `scratch`.
template <class K, class V>
std::string_view entry_bytes(std::span<const std::pair<K, V>> entries, std::string& scratch) {
  if constexpr (kLaidOutAsFile<K, V>)
    return {reinterpret_cast<const char*>(entries.data()), entries.size_bytes()};
  put_entries(scratch, entries);
  return scratch;
}

void save_snapshot(const GenerationStore& store, uint32_t slot, const SnapshotOut& s) {
  std::string head;
  head.append(kSnapMagic, sizeof(kSnapMagic));
  put_raw(head, kSnapLayout);
  put_raw(head, s.rev);
  put_raw(head, s.ids);
  put_raw(head, uint64_t{s.ipcache.size()});
  put_raw(head, uint64_t{s.ipcache6.size()});
  put_raw(head, uint64_t{s.entries.size()});
  // Written from the entries themselves: put together first, the 2.4 MB
  // of 100,000 rules were a buffer of fresh pages for every change.
  std::string s4, s6, sp;
  const std::string_view v4 = entry_bytes(s.ipcache, s4), v6 = entry_bytes(s.ipcache6, s6),
                         vp = entry_bytes(s.entries, sp);
  // Only a cache: without it the next generation goes into fresh maps.
  if (auto r = write_file_atomic(snapshot_path(store, slot), {head, v4, v6, vp}); !r)
    unlink(snapshot_path(store, slot).c_str());
}

// The copy of what slot `slot` holds, if there is one and it still names
// the slot's inner maps.
std::optional<Snapshot> load_snapshot(const endpoint_bpf& skel, const GenerationStore& store,
                                      uint32_t slot) {
  if (store.dir.empty()) return std::nullopt;
  // Not through an istreambuf_iterator, a character at a time: for 100,000
  // rules (2.4 MB) that was a fifth of a one-rule change's switch.
  auto file = read_whole(snapshot_path(store, slot));
  if (!file || !*file) return std::nullopt;
  const std::string_view in = **file;
  if (in.size() < sizeof(kSnapMagic) || std::memcmp(in.data(), kSnapMagic, sizeof(kSnapMagic)))
    return std::nullopt;
  size_t at = sizeof(kSnapMagic);
  Snapshot s;
  uint32_t layout = 0;
  uint64_t n4 = 0, n6 = 0, np = 0;
  if (!get_raw(in, &at, &layout) || layout != kSnapLayout || !get_raw(in, &at, &s.rev) ||
      !get_raw(in, &at, &s.ids) || !get_raw(in, &at, &n4) || !get_raw(in, &at, &n6) ||
      !get_raw(in, &at, &np) || !get_entries(in, &at, n4, &s.ipcache, &s.own4) ||
      !get_entries(in, &at, n6, &s.ipcache6, &s.own6) ||
      !get_entries(in, &at, np, &s.entries, &s.own_entries) || at != in.size())
    return std::nullopt;
  if (s.ids.ic == 0 || s.ids.ic6 == 0 || s.ids.pc == 0 || !(s.ids == slot_ids(skel, slot)))
    return std::nullopt;
  s.file = std::move(**file);  // the views stay: a string this long moves its buffer
  return s;
}

thread_local const char* g_last_write = "none";

// Whether the policy hash of `slot` fits `n` entries and is not far larger
// than a fresh one would be (a policy that shrank gives its memory back).
bool slot_capacity_fits(const endpoint_bpf& skel, uint32_t slot, size_t n) {
  Fd pc = inner_map(skel.maps.policy_gens, slot);
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  if (!pc.ok() || bpf_obj_get_info_by_fd(pc.get(), &info, &len) != 0) return false;
  return info.max_entries >= n && info.max_entries <= 4 * generation_capacity(n, MOAT_MAX_POLICY);
}

// The slot's inner maps brought from what `have` says they hold to the
// wanted entries.
Result<void> write_slot_diff(const endpoint_bpf& skel, uint32_t slot, const Snapshot& have,
                             const OrderedOf<IpcacheEntries>& ipcache,
                             const OrderedOf<Ipcache6Entries>& ipcache6,
                             const OrderedOf<PolicyEntries>& entries) {
  Fd ic = inner_map(skel.maps.ipcache_gens, slot);
  Fd ic6 = inner_map(skel.maps.ipcache6_gens, slot);
  Fd pc = inner_map(skel.maps.policy_gens, slot);
  if (!ic.ok() || !ic6.ok() || !pc.ok()) return fail("policy generation slot is missing a map");
  if (auto r = write_diff(ic.get(), diff_entries(have.ipcache, ipcache), "ipcache_gen"); !r)
    return r;
  if (auto r = write_diff(ic6.get(), diff_entries(have.ipcache6, ipcache6), "ipcache6_gen"); !r)
    return r;
  return write_diff(pc.get(), diff_entries(have.entries, entries), "policy_gen");
}

// The slot's inner maps replaced by fresh ones holding the entries; with
// `before_install`, only once that grace period has passed (else not).
Result<void> write_slot_fresh(const endpoint_bpf& skel, uint32_t slot,
                              const OrderedOf<IpcacheEntries>& ipcache,
                              const OrderedOf<Ipcache6Entries>& ipcache6,
                              const OrderedOf<PolicyEntries>& entries,
                              GracePeriod* before_install = nullptr) {
  auto ic = build_inner(BPF_MAP_TYPE_LPM_TRIE, "ipcache_gen", MOAT_MAX_IPCACHE, ipcache.span());
  if (!ic) return std::unexpected(ic.error());
  auto ic6 = build_inner(BPF_MAP_TYPE_LPM_TRIE, "ipcache6_gen", MOAT_MAX_IPCACHE, ipcache6.span());
  if (!ic6) return std::unexpected(ic6.error());
  // The hash's bucket array is allocated whole: sized to what it holds.
  auto pc = build_inner(BPF_MAP_TYPE_HASH, "policy_gen",
                        generation_capacity(entries.size(), MOAT_MAX_POLICY), entries.span());
  if (!pc) return std::unexpected(pc.error());
  if (before_install && !before_install->wait())
    return fail("no grace period: the slot's maps are not replaced");
  const std::pair<bpf_map*, int> installs[] = {{skel.maps.ipcache_gens, ic->get()},
                                               {skel.maps.ipcache6_gens, ic6->get()},
                                               {skel.maps.policy_gens, pc->get()}};
  for (auto [outer, fd] : installs)
    if (int rc = bpf_map__update_elem(outer, &slot, 4, &fd, 4, 0); rc)
      return fail_errno(std::string("install generation of ") + bpf_map__name(outer), rc);
  return {};
}

}  // namespace

// ---- grace periods ----------------------------------------------------------------------

struct GracePeriod::State {
  std::future<bool> done;
  std::optional<bool> ok;
};

GracePeriod GracePeriod::begin() {
  GracePeriod gp;
  gp.s_ = std::make_shared<State>();
  // MEMBARRIER_CMD_GLOBAL is synchronize_rcu() when more than one CPU is
  // online, and returns at once on one CPU: there a preempted reader (a
  // test run, a PREEMPT_RT softirq) would not be waited for, so one CPU
  // counts as "cannot say".
  // A detached thread, not std::async: the future of std::async waits for
  // its task when destroyed, so every apply ended by waiting for a grace
  // period it no longer needed (5-40 ms a Docker agent sync).
  auto promise = std::make_shared<std::promise<bool>>();
  gp.s_->done = promise->get_future();
  std::thread([promise] {
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2) return promise->set_value(false);
    promise->set_value(syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) == 0);
  }).detach();
  return gp;
}

bool GracePeriod::wait() {
  if (!s_) return false;
  if (!s_->ok) s_->ok = s_->done.get();
  return *s_->ok;
}

const char* last_generation_write() { return g_last_write; }

namespace {

// The last switch this process made (keep_grace_periods_after_switches()):
// which policy_rev map (by id: another instance's, or one re-created, is
// not it), the revision written, and a grace period begun right after.
struct AfterSwitch {
  uint32_t map_id = 0;
  uint32_t rev = 0;
  GracePeriod gp;
};
bool g_keep_after_switch = false;
std::optional<AfterSwitch> g_after_switch;

uint32_t map_id(const bpf_map* m) {
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(bpf_map__fd(m), &info, &len) != 0) return 0;
  return info.id;
}

// A grace period that began after the switch that left the kernel's
// current revision in force, if this process made that switch. Revisions
// only grow (a record's policy_rev_max), so a kernel still at the revision
// this process wrote has seen no switch since.
GracePeriod* grace_since_last_switch(const endpoint_bpf& skel) {
  if (!g_after_switch) return nullptr;
  auto cur = read_policy_rev(skel);
  uint32_t id = map_id(skel.maps.policy_rev);
  if (!cur || id == 0 || id != g_after_switch->map_id || *cur != g_after_switch->rev)
    return nullptr;
  return &g_after_switch->gp;
}

}  // namespace

void keep_grace_periods_after_switches(bool on) {
  g_keep_after_switch = on;
  if (!on) g_after_switch.reset();
}

bool keeps_grace_period_after_switch() { return g_after_switch.has_value(); }

Result<uint32_t> read_policy_rev(const endpoint_bpf& skel) {
  uint32_t zero = 0, rev = 0;
  if (int rc =
          bpf_map__lookup_elem(skel.maps.policy_rev, &zero, sizeof(zero), &rev, sizeof(rev), 0);
      rc)
    return fail_errno("read policy revision", rc);
  return rev;
}

Result<void> set_policy_rev(const endpoint_bpf& skel, uint32_t rev) {
  uint32_t zero = 0;
  if (int rc = bpf_map__update_elem(skel.maps.policy_rev, &zero, 4, &rev, 4, 0); rc) {
    g_after_switch.reset();  // the kernel may or may not hold `rev`: no claim about it
    return fail_errno(
        rev ? "switch to policy revision " + std::to_string(rev) : "switch policy off", rc);
  }
  if (g_keep_after_switch)
    g_after_switch = AfterSwitch{map_id(skel.maps.policy_rev), rev, GracePeriod::begin()};
  return {};
}

namespace {

// write_policy_generation() of entries already in key order.
Result<void> write_generation(const endpoint_bpf& skel, uint32_t rev,
                              const OrderedOf<IpcacheEntries>& ipcache,
                              const OrderedOf<PolicyEntries>& entries,
                              const OrderedOf<Ipcache6Entries>& ipcache6,
                              const GenerationStore& store, GracePeriod* gp) {
  if (rev == 0) return fail("policy revision 0 means no policy; a generation needs another");
  uint32_t slot = rev & 1;
  // In place: the slot is idle (apply never writes the slot in force), but
  // a packet that read the revision before the switch that made it idle may
  // still be looking it up: TC programs (and test runs) read policy_rev and
  // the slot's maps within one RCU read-side section, so once a grace period
  // begun after that switch has passed, none is left and the slot can
  // change. The switch to `rev` below then moves every CPU at once. Fresh
  // maps need no grace period: the slot's old maps stay intact for whoever
  // still holds them, until freed after their last reader.
  auto have = load_snapshot(skel, store, slot);
  if (have && !slot_capacity_fits(skel, slot, entries.size())) have.reset();
  if (have) {
    std::optional<GracePeriod> own;
    if (GracePeriod* kept = grace_since_last_switch(skel)) gp = kept;
    if (!gp) gp = &own.emplace(GracePeriod::begin());
    if (gp->wait() && unlink(snapshot_path(store, slot).c_str()) == 0) {
      // A failure half-way leaves the idle slot half-written: fresh maps
      // below replace it whole.
      if (write_slot_diff(skel, slot, *have, ipcache, ipcache6, entries)) {
        if (auto r = set_policy_rev(skel, rev); !r) return r;
        g_last_write = "diff";
        save_snapshot(store, slot,
                      {rev, have->ids, ipcache.span(), ipcache6.span(), entries.span()});
        return {};
      }
    }
  }
  if (auto r = write_slot_fresh(skel, slot, ipcache, ipcache6, entries); !r) return r;
  if (auto r = set_policy_rev(skel, rev); !r) return r;
  g_last_write = "fresh";
  if (!store.dir.empty())
    save_snapshot(store, slot,
                  {rev, slot_ids(skel, slot), ipcache.span(), ipcache6.span(), entries.span()});
  return {};
}

}  // namespace

Result<void> write_policy_generation(const endpoint_bpf& skel, uint32_t rev,
                                     const IpcacheEntries& ipcache, const PolicyEntries& entries,
                                     const Ipcache6Entries& ipcache6, const GenerationStore& store,
                                     GracePeriod* gp) {
  return write_generation(skel, rev, OrderedOf<IpcacheEntries>(ipcache),
                          OrderedOf<PolicyEntries>(entries), OrderedOf<Ipcache6Entries>(ipcache6),
                          store, gp);
}

Result<bool> install_policy(const endpoint_bpf& skel, const IpcacheEntries& ipcache_in,
                            const Ipcache6Entries& ipcache6_in,
                            std::span<const PolicyEntries::value_type> entries_in, bool active,
                            uint32_t last_rev, bool dry_run, uint32_t* rev,
                            const GenerationStore& store, GracePeriod* gp) {
  auto cur = read_policy_rev(skel);
  if (!cur) return std::unexpected(cur.error());
  *rev = *cur;
  if (!active) {
    if (*cur == 0) return false;
    *rev = 0;
    if (dry_run) return true;
    if (auto r = set_policy_rev(skel, 0); !r) return std::unexpected(r.error());
    return true;
  }
  // In key-byte order (the plan's already is: only checked, once, here; a
  // copy of a generation saved by an older moat may not be): the
  // comparisons below with the generation in force and with the idle slot
  // are then byte comparisons of what both share at their ends and a merge
  // of the rest, and the copies saved of the slot are in that order.
  // Sorting both sides of each comparison was four sorts of 100,000
  // entries for a one-rule change; checking the order in each, three passes.
  const OrderedOf<IpcacheEntries> ipcache(ipcache_in);
  const OrderedOf<Ipcache6Entries> ipcache6(ipcache6_in);
  const OrderedOf<PolicyEntries> entries(entries_in);
  if (*cur != 0) {
    // The copy of the slot in force answers without reading it back.
    auto held = load_snapshot(skel, store, *cur & 1);
    if (held && held->rev == *cur) {
      if (same_entries(held->entries, entries) && same_entries(held->ipcache, ipcache) &&
          same_entries(held->ipcache6, ipcache6))
        return false;
    } else if (generation_holds(skel, *cur, ipcache, ipcache6, entries)) {
      return false;
    }
  }
  uint32_t next = std::max(*cur, last_rev) + 1;
  if (next == 0) next = 2;  // wrapped: 0 means "no policy"
  // Never the slot in force (a record behind the kernel could ask for it).
  if (*cur != 0 && (next & 1) == (*cur & 1) && ++next == 0) next = 2;
  *rev = next;
  if (dry_run) return true;
  if (auto r = write_generation(skel, next, ipcache, entries, ipcache6, store, gp); !r)
    return std::unexpected(r.error());
  return true;
}

Result<void> mirror_generation(const endpoint_bpf& skel, uint32_t rev,
                               const IpcacheEntries& ipcache_in, const Ipcache6Entries& ipcache6_in,
                               std::span<const PolicyEntries::value_type> entries_in,
                               const GenerationStore& store, GracePeriod after_switch) {
  auto cur = read_policy_rev(skel);
  if (!cur) return std::unexpected(cur.error());
  if (rev == 0 || *cur != rev)
    return fail("policy revision " + std::to_string(rev) + " is not the one in force");
  const OrderedOf<IpcacheEntries> ipcache(ipcache_in);
  const OrderedOf<Ipcache6Entries> ipcache6(ipcache6_in);
  const OrderedOf<PolicyEntries> entries(entries_in);
  const uint32_t slot = (rev & 1) ^ 1;
  // Its copy no longer says what it holds. (Maps made anew have other ids,
  // so a copy naming the old ones would not be taken for them either.)
  if (!store.dir.empty() && unlink(snapshot_path(store, slot).c_str()) != 0 && errno != ENOENT)
    return fail_errno("remove " + snapshot_path(store, slot), errno);
  if (auto r = write_slot_fresh(skel, slot, ipcache, ipcache6, entries, &after_switch); !r)
    return r;
  if (!store.dir.empty())
    save_snapshot(store, slot,
                  {rev, slot_ids(skel, slot), ipcache.span(), ipcache6.span(), entries.span()});
  return {};
}

void reset_rule_hits(const endpoint_bpf& skel, uint32_t n, uint32_t first) {
  if (n == 0) return;
  int ncpu = libbpf_num_possible_cpus();
  size_t per_key = ncpu > 0 ? static_cast<size_t>(ncpu) : 1;
  // One system call for all of them: 65,536 rules one by one took longer
  // than writing a changed generation.
  std::vector<uint32_t> ids(n);
  for (uint32_t i = 0; i < n; ++i) ids[i] = first + i;
  std::vector<uint64_t> zeros(per_key * n, 0);
  uint32_t count = n;
  LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = BPF_ANY);
  if (bpf_map_update_batch(bpf_map__fd(skel.maps.rule_hits), ids.data(), zeros.data(), &count,
                           &opts) == 0)
    return;
  for (uint32_t id : ids)
    bpf_map__update_elem(skel.maps.rule_hits, &id, sizeof(id), zeros.data(),
                         per_key * sizeof(uint64_t), 0);
}

namespace {

moat_lpm_v4_key full_key(const Ipv4& a) { return {32, a.to_be()}; }

moat_lpm_v6_key full_key(const Ipv6& a) {
  moat_lpm_v6_key k{};
  k.prefixlen = 128;
  std::copy(a.bytes.begin(), a.bytes.end(), k.addr.b);
  return k;
}

// Both families: the identities from the family's cache, then the same
// policy lookups.
template <class A>
Result<json> kernel_verdict(const std::string& instance, const A& src_ip, const A& dst_ip,
                            uint8_t proto, uint16_t port) {
  auto skel = open_pinned_maps<endpoint_bpf>(pin_dir(instance));
  if (!skel) return std::unexpected(skel.error());
  auto rev = read_policy_rev(*skel->get());
  if (!rev) return std::unexpected(rev.error());
  json out = {{"revision", *rev}};
  if (*rev == 0) {
    out["allowed"] = true;
    out["text"] = "no policy is loaded (revision 0)";
    return out;
  }
  constexpr bool v6 = std::is_same_v<A, Ipv6>;
  Fd ic = inner_map(v6 ? (*skel)->maps.ipcache6_gens : (*skel)->maps.ipcache_gens, *rev & 1);
  Fd pc = inner_map((*skel)->maps.policy_gens, *rev & 1);
  if (!ic.ok() || !pc.ok())
    return fail("policy generation " + std::to_string(*rev) + " is missing");
  auto identity = [&](const A& addr) {
    auto k = full_key(addr);
    moat_ipcache_val v{MOAT_ID_WORLD, 0};
    bpf_map_lookup_elem(ic.get(), &k, &v);  // the kernel's longest-prefix match
    return v;
  };
  moat_ipcache_val src = identity(src_ip), dst = identity(dst_ip);
  uint16_t port_be =
      (proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP) ? htons(port) : 0;
  // Exactly policy_lookup() in bpf/lib/policy.h.
  auto lookup = [&](uint32_t subject, uint32_t peer, uint8_t dir, bool isolated) {
    for (int i = 0; i < 6; ++i) {
      moat_policy_key k{};
      k.subject = subject;
      k.peer = i < 3 ? peer : static_cast<uint32_t>(MOAT_ID_ANY);
      k.dir = dir;
      k.proto = (i % 3) == 2 ? 0 : proto;
      k.port = (i % 3) == 0 ? port_be : 0;
      moat_policy_val v{};
      if (bpf_map_lookup_elem(pc.get(), &k, &v) == 0)
        return json{{"decided_by", "entry"},
                    {"lookup", i + 1},
                    {"allowed", v.action == MOAT_POLICY_ALLOW},
                    {"rule_id", v.rule_id}};
    }
    return json{{"decided_by", isolated ? "default-deny" : "not-isolated"}, {"allowed", !isolated}};
  };
  out["source_identity"] = src.identity;
  out["destination_identity"] = dst.identity;
  bool allowed = true;
  if (src.flags & MOAT_ID_F_CONTAINER) {
    out["egress"] = lookup(src.identity, dst.identity, MOAT_POLICY_EGRESS,
                           src.flags & MOAT_ID_F_EGRESS_ISOLATED);
    allowed = allowed && out["egress"]["allowed"].get<bool>();
  }
  if (allowed && (dst.flags & MOAT_ID_F_CONTAINER)) {
    out["ingress"] = lookup(dst.identity, src.identity, MOAT_POLICY_INGRESS,
                            dst.flags & MOAT_ID_F_INGRESS_ISOLATED);
    allowed = allowed && out["ingress"]["allowed"].get<bool>();
  }
  out["allowed"] = allowed;
  return out;
}

}  // namespace

Result<json> kernel_policy_verdict(const std::string& instance, uint32_t src_be, uint32_t dst_be,
                                   uint8_t proto, uint16_t port) {
  return kernel_verdict(instance, Ipv4::from_be(src_be), Ipv4::from_be(dst_be), proto, port);
}

Result<json> kernel_policy_verdict(const std::string& instance, const Ipv6& src, const Ipv6& dst,
                                   uint8_t proto, uint16_t port) {
  return kernel_verdict(instance, src, dst, proto, port);
}

}  // namespace moat
