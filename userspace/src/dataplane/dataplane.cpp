#include "dataplane/dataplane.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "util/fd.h"
#include "endpoint.skel.h"
#include "policy/policy.h"
#include "dataplane/sockhooks.h"
#include "uplink.skel.h"
#include "reap.skel.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace moat {
namespace {

constexpr const char* kBpffs = "/sys/fs/bpf";
// Our filter's identity on every hook: chosen so that filters of other tools
// (Cilium and most others use handle 1) are never touched.
constexpr uint32_t kTcHandle = 0x6d6f;
constexpr uint32_t kTcPriority = 0x6d6f;

// ---- small RAII owners -------------------------------------------------------

// bpftool names a skeleton's functions after the object; these traits let
// one loader serve every object of an instance.
template <class S>
struct SkelOps;
template <>
struct SkelOps<endpoint_bpf> {
  static endpoint_bpf* open() { return endpoint_bpf__open(); }
  static int load(endpoint_bpf* s) { return endpoint_bpf__load(s); }
  static void destroy(endpoint_bpf* s) { endpoint_bpf__destroy(s); }
};
template <>
struct SkelOps<uplink_bpf> {
  static uplink_bpf* open() { return uplink_bpf__open(); }
  static int load(uplink_bpf* s) { return uplink_bpf__load(s); }
  static void destroy(uplink_bpf* s) { uplink_bpf__destroy(s); }
};
template <>
struct SkelOps<reap_bpf> {
  static reap_bpf* open() { return reap_bpf__open(); }
  static int load(reap_bpf* s) { return reap_bpf__load(s); }
  static void destroy(reap_bpf* s) { reap_bpf__destroy(s); }
};
template <class S>
struct SkelDeleter {
  void operator()(S* s) const { SkelOps<S>::destroy(s); }
};
template <class S>
using SkelPtr = std::unique_ptr<S, SkelDeleter<S>>;
using Skel = SkelPtr<endpoint_bpf>;

// libbpf reports an empty TC filter slot as a kernel error; moat queries
// empty slots on purpose, so those lines are noise unless MOAT_DEBUG is set.
int libbpf_log(enum libbpf_print_level level, const char* fmt, va_list ap) {
  if (getenv("MOAT_DEBUG")) return vfprintf(stderr, fmt, ap);
  if (level != LIBBPF_WARN) return 0;
  char line[1024];
  vsnprintf(line, sizeof(line), fmt, ap);
  if (strstr(line, "Cannot find specified filter chain") ||
      strstr(line, "Exclusivity flag on, cannot modify"))  // clsact already there
    return 0;
  return fputs(line, stderr);
}

void init_libbpf() {
  static bool done = false;
  if (done) return;
  libbpf_set_print(libbpf_log);
  done = true;
}

// ---- paths, namespaces -------------------------------------------------------

Result<void> ensure_bpffs() {
  struct statfs st {};
  if (statfs(kBpffs, &st) == 0 && st.f_type == BPF_FS_MAGIC) return {};
  // Pins made in a private mount namespace vanish with it: `ip netns exec`
  // remounts /sys, hiding the machine's bpffs. Refuse rather than lose state.
  struct stat self {}, init {};
  if (stat("/proc/self/ns/mnt", &self) == 0 && stat("/proc/1/ns/mnt", &init) == 0 &&
      self.st_ino != init.st_ino)
    return fail(std::string(kBpffs) +
                " is not a bpffs in this mount namespace (`ip netns exec` remounts /sys); "
                "run moat with `nsenter --net=/run/netns/NAME moat ...` instead");
  // Like Cilium: mount it where every BPF tool expects it.
  if (mount("bpffs", kBpffs, "bpf", 0, "mode=0700") != 0)
    return fail_errno(std::string("mount bpffs at ") + kBpffs, errno);
  return {};
}

Result<void> mkdirs(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return fail("create " + dir, ec.value());
  return {};
}

uint64_t current_netns_inode() {
  struct stat st {};
  if (stat("/proc/self/ns/net", &st) != 0) return 0;
  return st.st_ino;
}

// A named namespace (/run/netns/NAME) with the current inode, so `moat down`
// can find its interfaces again from elsewhere; "" for unnamed ones.
std::string current_netns_path() {
  uint64_t ino = current_netns_inode();
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/run/netns", ec)) {
    struct stat st {};
    if (stat(e.path().c_str(), &st) == 0 && st.st_ino == ino) return e.path();
  }
  return "";
}

Result<void> enter_netns(const std::string& path) {
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.ok()) return fail_errno("open network namespace " + path, errno);
  if (setns(fd.get(), CLONE_NEWNET) != 0) return fail_errno("enter network namespace " + path, errno);
  return {};
}

// ---- state file ----------------------------------------------------------------

std::string state_file(const std::string& instance) { return state_dir(instance) + "/state.json"; }

Result<json> read_state(const std::string& instance) {
  std::ifstream in(state_file(instance));
  if (!in) return json::object();
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    return fail(state_file(instance) + " is corrupt: " + e.what());
  }
}

Result<void> write_state(const std::string& instance, const json& st) {
  if (auto r = mkdirs(state_dir(instance)); !r) return r;
  std::string tmp = state_file(instance) + ".tmp";
  {
    std::ofstream out(tmp);
    out << st.dump(2) << "\n";
    if (!out) return fail("write " + tmp, EIO);
  }
  if (rename(tmp.c_str(), state_file(instance).c_str()) != 0)
    return fail_errno("replace " + state_file(instance), errno);
  return {};
}

IdTable ids_from_state(const json& st) {
  IdTable ids;
  if (st.contains("ids")) {
    ids.networks = st["ids"].value("networks", std::map<std::string, uint32_t>{});
    ids.containers = st["ids"].value("containers", std::map<std::string, uint32_t>{});
  }
  return ids;
}

// ---- skeleton and pins ---------------------------------------------------------

std::string map_pin(const std::string& instance, const bpf_map* m) {
  return pin_dir(instance) + "/" + bpf_map__name(m);
}
std::string prog_pin(const std::string& instance, const bpf_program* p) {
  return pin_dir(instance) + "/prog_" + bpf_program__name(p);
}

// Loads the programs; maps are reused from the pins or created and pinned.
// Every object declares every shared map, so whichever loads first pins them.
template <class S>
Result<SkelPtr<S>> load_skeleton(const std::string& instance) {
  init_libbpf();
  SkelPtr<S> skel(SkelOps<S>::open());
  if (!skel) return fail_errno("open BPF skeleton", errno);
  bpf_map* m;
  bpf_object__for_each_map(m, skel->obj) {
    if (int rc = bpf_map__set_pin_path(m, map_pin(instance, m).c_str()); rc)
      return fail_errno("set pin path", rc);
  }
  if (int rc = SkelOps<S>::load(skel.get()); rc)
    return fail_errno("load BPF programs for instance " + instance +
                          " (after an upgrade that changed a map layout, run `moat down` first)",
                      rc);
  return skel;
}

// Opens the pinned maps without loading any program (status, counters).
Result<Skel> open_pinned_maps(const std::string& instance) {
  init_libbpf();
  Skel skel(endpoint_bpf__open());
  if (!skel) return fail_errno("open BPF skeleton", errno);
  bpf_map* m;
  bpf_object__for_each_map(m, skel->obj) {
    std::string path = map_pin(instance, m);
    Fd fd(bpf_obj_get(path.c_str()));
    if (!fd.ok()) return fail_errno("open pinned map " + path, errno);
    if (int rc = bpf_map__reuse_fd(m, fd.get()); rc) return fail_errno("reuse " + path, rc);
  }
  return skel;
}

Result<bpf_prog_info> prog_info(int fd) {
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  if (int rc = bpf_obj_get_info_by_fd(fd, &info, &len); rc) return fail_errno("query program", rc);
  return info;
}

// The programs for TC ingress and egress of one kind of interface.
struct PinnedProgs {
  Fd ingress, egress;
  uint32_t ingress_id = 0, egress_id = 0;
};

// One program instance per instance: interfaces attached at different times
// share it. A newer moat with different instructions (another tag) replaces it.
Result<PinnedProgs> pin_programs(const std::string& instance, bpf_program* ingress,
                                 bpf_program* egress, bool dry_run, bool* replaced) {
  PinnedProgs out;
  for (auto [prog, fd_out, id_out] : {std::tuple{ingress, &out.ingress, &out.ingress_id},
                                      std::tuple{egress, &out.egress, &out.egress_id}}) {
    std::string path = prog_pin(instance, prog);
    auto fresh = prog_info(bpf_program__fd(prog));
    if (!fresh) return std::unexpected(fresh.error());
    Fd pinned(bpf_obj_get(path.c_str()));
    if (pinned.ok()) {
      auto old = prog_info(pinned.get());
      if (!old) return std::unexpected(old.error());
      if (memcmp(old->tag, fresh->tag, sizeof(old->tag)) == 0) {
        *id_out = old->id;
        *fd_out = std::move(pinned);
        continue;
      }
      *replaced = true;
      if (!dry_run) unlink(path.c_str());
    }
    if (!dry_run) {
      if (int rc = bpf_program__pin(prog, path.c_str()); rc) return fail_errno("pin " + path, rc);
    }
    *id_out = fresh->id;
    *fd_out = Fd(dup(bpf_program__fd(prog)));
  }
  return out;
}

// The TC objects this binary embeds, as one FNV-1a hash of their ELF bytes.
std::string objects_fingerprint() {
  uint64_t h = 14695981039346656037ull;
  auto mix = [&](const void* data, size_t size) {
    auto* b = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < size; ++i) h = (h ^ b[i]) * 1099511628211ull;
  };
  size_t sz = 0;
  const void* d = endpoint_bpf__elf_bytes(&sz);
  mix(d, sz);
  d = uplink_bpf__elf_bytes(&sz);
  mix(d, sz);
  char buf[17];
  snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

// The pinned container and uplink programs, when all four are there.
std::optional<std::pair<PinnedProgs, PinnedProgs>> open_pinned_programs(const std::string& instance) {
  std::pair<PinnedProgs, PinnedProgs> out;
  for (auto [name, fd, id] : {std::tuple{"from_container", &out.first.ingress, &out.first.ingress_id},
                              std::tuple{"to_container", &out.first.egress, &out.first.egress_id},
                              std::tuple{"from_world", &out.second.ingress, &out.second.ingress_id},
                              std::tuple{"to_world", &out.second.egress, &out.second.egress_id}}) {
    Fd pinned(bpf_obj_get((pin_dir(instance) + "/prog_" + name).c_str()));
    if (!pinned.ok()) return std::nullopt;
    auto info = prog_info(pinned.get());
    if (!info) return std::nullopt;
    *id = info->id;
    *fd = std::move(pinned);
  }
  return out;
}

// ---- map diffing ---------------------------------------------------------------

// Every entry of a (non-per-CPU) map, keyed by the key's bytes.
template <class K, class V>
std::map<std::vector<uint8_t>, V> dump_fd(int fd) {
  std::map<std::vector<uint8_t>, V> out;
  K key{}, next{};
  K* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    V val{};
    if (bpf_map_lookup_elem(fd, &next, &val) == 0) {
      auto* p = reinterpret_cast<const uint8_t*>(&next);
      out.emplace(std::vector<uint8_t>(p, p + sizeof(K)), val);
    }
    key = next;
    prev = &key;
  }
  return out;
}

template <class K, class V>
Result<std::map<std::vector<uint8_t>, V>> dump_map(const bpf_map* m) {
  return dump_fd<K, V>(bpf_map__fd(m));
}

template <class K>
std::vector<uint8_t> key_bytes(const K& k) {
  auto* p = reinterpret_cast<const uint8_t*>(&k);
  return {p, p + sizeof(K)};
}

// Writes `want` into map `m` (whose current content is `have`), touching only
// entries that differ. Deletions are returned for the caller to do last.
template <class K, class V>
Result<void> upsert(bpf_map* m, const std::map<std::vector<uint8_t>, V>& have,
                    const std::map<std::vector<uint8_t>, V>& want, int* added, int* updated,
                    bool dry_run) {
  for (const auto& [k, v] : want) {
    auto it = have.find(k);
    if (it != have.end() && memcmp(&it->second, &v, sizeof(V)) == 0) continue;
    (it == have.end() ? *added : *updated) += 1;
    if (dry_run) continue;
    if (int rc = bpf_map__update_elem(m, k.data(), k.size(), &v, sizeof(V), BPF_ANY); rc)
      return fail_errno(std::string("update map ") + bpf_map__name(m), rc);
  }
  return {};
}

template <class V>
Result<void> remove_stale(bpf_map* m, const std::map<std::vector<uint8_t>, V>& have,
                          const std::map<std::vector<uint8_t>, V>& want, int* removed,
                          bool dry_run) {
  for (const auto& [k, v] : have) {
    if (want.contains(k)) continue;
    *removed += 1;
    if (dry_run) continue;
    if (int rc = bpf_map__delete_elem(m, k.data(), k.size(), 0); rc && rc != -ENOENT)
      return fail_errno(std::string("delete from map ") + bpf_map__name(m), rc);
  }
  return {};
}

// ---- policy generations -------------------------------------------------------------

using IpcacheEntries = std::vector<std::pair<moat_lpm_v4_key, moat_ipcache_val>>;
using PolicyEntries = std::vector<std::pair<moat_policy_key, moat_policy_val>>;

Result<uint32_t> read_policy_rev(const bpf_map* rev_map) {
  uint32_t zero = 0, rev = 0;
  if (int rc = bpf_map__lookup_elem(rev_map, &zero, sizeof(zero), &rev, sizeof(rev), 0); rc)
    return fail_errno("read policy revision", rc);
  return rev;
}

// The inner map in `slot` of a map-in-map, or an invalid Fd when empty.
Fd inner_map(const bpf_map* outer, uint32_t slot) {
  uint32_t id = 0;
  if (bpf_map__lookup_elem(outer, &slot, sizeof(slot), &id, sizeof(id), 0) != 0 || id == 0) return Fd();
  return Fd(bpf_map_get_fd_by_id(id));
}

// Whether map `fd` holds exactly `want`, byte for byte.
template <class K, class V>
bool holds_exactly(int fd, const std::vector<std::pair<K, V>>& want) {
  auto have = dump_fd<K, V>(fd);
  if (have.size() != want.size()) return false;
  for (const auto& [k, v] : want) {
    auto it = have.find(key_bytes(k));
    if (it == have.end() || memcmp(&it->second, &v, sizeof(V)) != 0) return false;
  }
  return true;
}

// A fresh inner map like the BPF side's template, filled with `entries`.
template <class K, class V>
Result<Fd> build_inner(bpf_map_type type, const char* name, uint32_t max_entries,
                       const std::vector<std::pair<K, V>>& entries) {
  LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = BPF_F_NO_PREALLOC);
  Fd fd(bpf_map_create(type, name, sizeof(K), sizeof(V), max_entries, &opts));
  if (!fd.ok()) return fail_errno(std::string("create map ") + name, errno);
  for (const auto& [k, v] : entries)
    if (bpf_map_update_elem(fd.get(), &k, &v, BPF_ANY) != 0)
      return fail_errno(std::string("fill map ") + name, errno);
  return fd;
}

// Installs a policy generation: the idle slot of `ipcache_gens` and
// `policy_gens` gets freshly built maps, then one write of `policy_rev`
// switches every CPU over; the old generation stays intact until then.
// Nothing changes when the active generation already holds exactly these
// entries. `active` false (no policy at all) sets the revision to 0.
// Returns whether the kernel side changed; *rev is the revision in force.
Result<bool> install_policy(endpoint_bpf* skel, const IpcacheEntries& ipcache,
                            const PolicyEntries& entries, bool active, uint32_t last_rev,
                            bool dry_run, uint32_t* rev) {
  auto cur = read_policy_rev(skel->maps.policy_rev);
  if (!cur) return std::unexpected(cur.error());
  *rev = *cur;
  if (!active) {
    if (*cur == 0) return false;
    *rev = 0;
    if (dry_run) return true;
    uint32_t zero = 0, value = 0;
    if (int rc = bpf_map__update_elem(skel->maps.policy_rev, &zero, 4, &value, 4, 0); rc)
      return fail_errno("switch policy off", rc);
    return true;
  }
  if (*cur != 0) {
    Fd ic = inner_map(skel->maps.ipcache_gens, *cur & 1);
    Fd pc = inner_map(skel->maps.policy_gens, *cur & 1);
    if (ic.ok() && pc.ok() &&
        holds_exactly(ic.get(), ipcache) && holds_exactly(pc.get(), entries))
      return false;
  }
  uint32_t next = std::max(*cur, last_rev) + 1;
  if (next == 0) next = 2;  // wrapped: 0 means "no policy"
  *rev = next;
  if (dry_run) return true;
  auto ic = build_inner(BPF_MAP_TYPE_LPM_TRIE, "ipcache_gen", MOAT_MAX_IPCACHE, ipcache);
  if (!ic) return std::unexpected(ic.error());
  auto pc = build_inner(BPF_MAP_TYPE_HASH, "policy_gen", MOAT_MAX_POLICY, entries);
  if (!pc) return std::unexpected(pc.error());
  uint32_t slot = next & 1;
  int ic_fd = ic->get(), pc_fd = pc->get();
  if (int rc = bpf_map__update_elem(skel->maps.ipcache_gens, &slot, 4, &ic_fd, 4, 0); rc)
    return fail_errno("install identity cache generation", rc);
  if (int rc = bpf_map__update_elem(skel->maps.policy_gens, &slot, 4, &pc_fd, 4, 0); rc)
    return fail_errno("install policy generation", rc);
  uint32_t zero = 0;
  if (int rc = bpf_map__update_elem(skel->maps.policy_rev, &zero, 4, &next, 4, 0); rc)
    return fail_errno("switch to policy revision " + std::to_string(next), rc);
  return true;
}

// ---- TC attachment ---------------------------------------------------------------

bpf_tc_hook make_hook(int ifindex, bpf_tc_attach_point point) {
  bpf_tc_hook h{};
  h.sz = sizeof(h);
  h.ifindex = ifindex;
  h.attach_point = point;
  return h;
}

bpf_tc_opts make_opts(int prog_fd = 0) {
  bpf_tc_opts o{};
  o.sz = sizeof(o);
  o.handle = kTcHandle;
  o.priority = kTcPriority;
  o.prog_fd = prog_fd;
  return o;
}

// Returns the id of the program in our filter slot, 0 when the slot is empty.
uint32_t attached_prog_id(int ifindex, bpf_tc_attach_point point) {
  auto hook = make_hook(ifindex, point);
  auto opts = make_opts();
  if (bpf_tc_query(&hook, &opts) != 0) return 0;
  return opts.prog_id;
}

// Attaches both directions; *qdisc_created is set when moat made the clsact
// qdisc, which is then moat's to remove.
Result<bool> attach(const std::string& ifname, int ifindex, const PinnedProgs& progs,
                    bool* qdisc_created) {
  auto hook = make_hook(ifindex, BPF_TC_INGRESS);
  int rc = bpf_tc_hook_create(&hook);
  if (rc && rc != -EEXIST) return fail_errno("create clsact qdisc on " + ifname, rc);
  if (rc == 0) *qdisc_created = true;
  bool changed = false;
  for (auto [point, fd, id] : {std::tuple{BPF_TC_INGRESS, progs.ingress.get(), progs.ingress_id},
                               std::tuple{BPF_TC_EGRESS, progs.egress.get(), progs.egress_id}}) {
    uint32_t cur = attached_prog_id(ifindex, point);
    if (cur == id) continue;
    auto h = make_hook(ifindex, point);
    auto o = make_opts(fd);
    o.flags = cur ? BPF_TC_F_REPLACE : 0;
    if (int arc = bpf_tc_attach(&h, &o); arc)
      return fail_errno(std::string("attach to ") + ifname +
                            (point == BPF_TC_INGRESS ? " ingress" : " egress"),
                        arc);
    changed = true;
  }
  return changed;
}

// Removes our filters (only when they hold one of `ours`) and the qdisc when
// moat created it. A vanished interface has nothing left to remove.
Result<void> detach(const std::string& ifname, bool qdisc_created, const std::set<uint32_t>& ours) {
  int ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
  if (ifindex == 0) return {};
  for (auto point : {BPF_TC_INGRESS, BPF_TC_EGRESS}) {
    uint32_t cur = attached_prog_id(ifindex, point);
    if (cur == 0 || !ours.contains(cur)) continue;
    auto h = make_hook(ifindex, point);
    auto o = make_opts();
    if (int rc = bpf_tc_detach(&h, &o); rc && rc != -ENOENT)
      return fail_errno("detach from " + ifname, rc);
  }
  if (qdisc_created) {
    auto h = make_hook(ifindex, static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS));
    if (int rc = bpf_tc_hook_destroy(&h); rc && rc != -ENOENT && rc != -EINVAL)
      return fail_errno("remove clsact qdisc from " + ifname, rc);
  }
  return {};
}

std::set<uint32_t> pinned_prog_ids(const std::string& instance) {
  std::set<uint32_t> ids;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(pin_dir(instance), ec)) {
    if (e.path().filename().string().rfind("prog_", 0) != 0) continue;
    Fd fd(bpf_obj_get(e.path().c_str()));
    if (!fd.ok()) continue;
    if (auto info = prog_info(fd.get())) ids.insert(info->id);
  }
  return ids;
}

// ---- per-CPU counters -------------------------------------------------------------

Result<moat_stats> read_stats(const bpf_map* m, uint32_t slot, uint32_t dir) {
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return fail_errno("count possible CPUs", ncpu);
  std::vector<moat_stats> per_cpu(static_cast<size_t>(ncpu));
  uint32_t key = moat_stats_index(slot, dir);
  moat_stats sum{};
  if (bpf_map__lookup_elem(m, &key, sizeof(key), per_cpu.data(), per_cpu.size() * sizeof(moat_stats),
                           0) != 0)
    return sum;  // nothing counted yet
  for (const auto& s : per_cpu) {
    sum.packets += s.packets;
    sum.bytes += s.bytes;
    for (int i = 0; i < MOAT_NR_DROP_SLOTS; ++i) sum.drops[i] += s.drops[i];
  }
  return sum;
}

// Both directions of `slot` back to zero, on every CPU.
Result<void> zero_stats_slot(const bpf_map* m, uint32_t slot) {
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return fail_errno("count possible CPUs", ncpu);
  std::vector<moat_stats> zeros(static_cast<size_t>(ncpu));
  for (uint32_t dir : {0u, 1u}) {
    uint32_t key = moat_stats_index(slot, dir);
    if (int rc = bpf_map__update_elem(m, &key, sizeof(key), zeros.data(),
                                      zeros.size() * sizeof(moat_stats), BPF_ANY);
        rc != 0)
      return fail_errno("reset counter slot " + std::to_string(slot), rc);
  }
  return {};
}

// An uplink's counter slot where the programs look first (0: none); an
// ifindex beyond that array is found through `uplinks` alone.
Result<void> set_uplink_slot(const bpf_map* m, int ifindex, uint32_t slot) {
  if (ifindex <= 0 || ifindex >= MOAT_UPLINK_SLOTS_IFINDEX) return {};
  uint32_t key = static_cast<uint32_t>(ifindex);
  if (int rc = bpf_map__update_elem(m, &key, sizeof(key), &slot, sizeof(slot), BPF_ANY); rc != 0)
    return fail_errno("set the counter slot of uplink ifindex " + std::to_string(ifindex), rc);
  return {};
}

json stats_json(const moat_stats& s) {
  json drops = json::object();
  const auto& names = drop_reason_names();
  for (int i = 1; i < MOAT_NR_DROP_SLOTS; ++i)
    if (s.drops[i]) drops[names[i].empty() ? std::to_string(i) : names[i]] = s.drops[i];
  return {{"packets", s.packets}, {"bytes", s.bytes}, {"drops", drops}};
}

std::string ip_str(uint32_t be) { return Ipv4{ntohl(be)}.str(); }

}  // namespace

// ---- public -------------------------------------------------------------------------

std::string pin_dir(const std::string& instance) { return std::string(kBpffs) + "/moat/" + instance; }
std::string state_dir(const std::string& instance) { return "/run/moat/" + instance; }

bool valid_instance_name(const std::string& name, std::string* why) {
  bool ok = !name.empty() && name.size() <= 40 && name[0] != '-' && name[0] != '.';
  for (char c : name) ok = ok && (isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_');
  if (!ok && why) *why = "instance names are 1-40 characters of [A-Za-z0-9_-], not starting with '-'";
  return ok;
}

const std::vector<std::string>& drop_reason_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v(MOAT_NR_DROP_SLOTS);
#define MOAT_X_NAME(name, num, metric, text) v[num] = metric;
    MOAT_DROP_REASONS(MOAT_X_NAME)
#undef MOAT_X_NAME
    return v;
  }();
  return names;
}

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
  json rules = json::array();
  for (const auto& r : plan.rules)
    rules.push_back({{"policy", r.policy}, {"namespace", r.ns}, {"direction", r.direction},
                     {"index", r.rule_index}, {"action", r.action}, {"text", r.text}});
  json ids = json::object();
  for (const auto& [id, name] : plan.identity_names) ids[std::to_string(id)] = name;
  return {{"active", plan.active}, {"policies", policies}, {"rules", rules},
          {"identities", ids}, {"entries", plan.entries.size()},
          {"ipcache_entries", plan.ipcache.size()}};
}

}  // namespace

json ApplyReport::to_json() const {
  return {{"changed", changed()},
          {"endpoints", {{"added", endpoints_added}, {"updated", endpoints_updated},
                         {"removed", endpoints_removed}}},
          {"addresses", {{"added", addrs_added}, {"updated", addrs_updated}, {"removed", addrs_removed}}},
          {"published_ports",
           {{"added", publish_added}, {"updated", publish_updated}, {"removed", publish_removed}}},
          {"interfaces", {{"attached", attached}, {"detached", detached}}},
          {"socket_hooks_changed", sock_hooks_changed},
          {"policy", {{"changed", policy_changed}, {"revision", policy_rev},
                      {"entries", policy_entries}}},
          {"programs_replaced", programs_replaced}};
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

// The primary IPv4 address of an interface in the current namespace.
Result<uint32_t> interface_ipv4(const std::string& ifname) {
  Fd sock(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock.ok()) return fail_errno("socket", errno);
  ifreq req{};
  snprintf(req.ifr_name, sizeof(req.ifr_name), "%s", ifname.c_str());
  if (ioctl(sock.get(), SIOCGIFADDR, &req) != 0) return fail_errno("IPv4 address of " + ifname, errno);
  return reinterpret_cast<sockaddr_in*>(&req.ifr_addr)->sin_addr.s_addr;
}

struct Uplink {
  std::string name;
  int ifindex = 0;
  uint32_t ipv4 = 0;  // network order
};

// Attaches `progs` to every interface of `rows` ({name, ifindex, ...}),
// keeping `qdisc_created` from the previous state so moat only ever removes
// a qdisc it made. Returns the new state rows.
template <class Rows>
Result<json> attach_all(const Rows& rows, const std::map<std::string, json>& old_by_name,
                        const PinnedProgs& progs, bool dry_run, int* attached) {
  json out = json::array();
  for (const auto& [name, idx, extra] : rows) {
    bool created = false;
    if (auto it = old_by_name.find(name); it != old_by_name.end())
      created = it->second.value("qdisc_created", false) && it->second.value("ifindex", 0) == idx;
    if (dry_run) {
      if (attached_prog_id(idx, BPF_TC_INGRESS) != progs.ingress_id ||
          attached_prog_id(idx, BPF_TC_EGRESS) != progs.egress_id)
        ++*attached;
    } else {
      auto changed = attach(name, idx, progs, &created);
      if (!changed) return std::unexpected(changed.error());
      if (*changed) ++*attached;
    }
    json row = extra;
    row["name"] = name;
    row["ifindex"] = idx;
    row["qdisc_created"] = created;
    out.push_back(row);
  }
  return out;
}

std::map<std::string, json> by_name(const json& rows) {
  std::map<std::string, json> out;
  for (const auto& r : rows) out[r.at("name").get<std::string>()] = r;
  return out;
}

}  // namespace

Result<ApplyReport> apply(const std::string& instance, const Config& cfg, bool dry_run) {
  ApplyReport rep;
  auto st = read_state(instance);
  if (!st) return std::unexpected(st.error());

  uint64_t netns = current_netns_inode();
  if (st->contains("netns_inode") && (*st)["netns_inode"].get<uint64_t>() != netns)
    return fail("instance " + instance + " serves another network namespace (" +
                st->value("netns_path", std::string("unnamed")) +
                "); run moat there, or pick another --instance");

  auto plan = compile(cfg, ids_from_state(*st));
  if (!plan) return std::unexpected(plan.error());

  // Resolve every interface before the kernel is touched: a typo must not
  // leave half a configuration behind.
  std::map<std::vector<uint8_t>, moat_endpoint> want_eps;
  std::map<std::string, int> ifindex_of;
  for (const auto& e : plan->endpoints) {
    unsigned idx = if_nametoindex(e.interface.c_str());
    if (idx == 0)
      return fail(cfg.source + ": container \"" + e.container + "\" on network \"" + e.network +
                      "\": interface " + e.interface + " does not exist in this network namespace",
                  errno);
    ifindex_of[e.interface] = static_cast<int>(idx);
  }
  std::map<std::vector<uint8_t>, moat_addr_info> want_addrs;
  for (const auto& a : plan->addrs) want_addrs.emplace(key_bytes(a.key), a.value);

  std::vector<Uplink> uplinks;
  std::map<std::vector<uint8_t>, moat_uplink> want_uplinks;
  for (const auto& name : cfg.uplinks) {
    Uplink u{name, static_cast<int>(if_nametoindex(name.c_str())), 0};
    if (u.ifindex == 0)
      return fail(cfg.source + ": host.uplinks: interface " + name +
                      " does not exist in this network namespace",
                  errno);
    if (ifindex_of.contains(name))
      return fail(cfg.source + ": host.uplinks: " + name + " is a container's interface");
    auto ip = interface_ipv4(name);
    if (!ip)
      return fail(cfg.source + ": host.uplinks: " + name +
                  " has no IPv4 address to publish on and masquerade behind");
    u.ipv4 = *ip;
    uplinks.push_back(u);
    // Published ports are reachable at the uplink's address: a host address.
    moat_lpm_v4_key k{32, u.ipv4};
    want_addrs[key_bytes(k)] = moat_addr_info{0, MOAT_ADDR_HOST, 0};
  }

  // Counter slots: what the programs index `stats` with.
  std::vector<std::pair<std::string, int>> slot_wanted;
  for (const auto& e : plan->endpoints) slot_wanted.emplace_back(e.interface, ifindex_of.at(e.interface));
  for (const auto& u : uplinks) slot_wanted.emplace_back(u.name, u.ifindex);
  std::vector<SlotHolder> slot_prev;
  for (const char* list : {"interfaces", "uplinks"})
    for (const auto& r : st->value(list, json::array()))
      slot_prev.push_back({r.value("name", ""), r.value("ifindex", 0), r.value("stats_slot", 0u)});
  auto slots = assign_stats_slots(slot_wanted, slot_prev);
  if (!slots) return fail(cfg.source + ": " + slots.error().message());
  for (const auto& e : plan->endpoints) {
    moat_endpoint v = e.value;
    v.stats_slot = slots->slot.at(e.interface);
    want_eps.emplace(key_bytes(static_cast<uint32_t>(ifindex_of.at(e.interface))), v);
  }
  for (const auto& u : uplinks)
    want_uplinks.emplace(key_bytes(static_cast<uint32_t>(u.ifindex)),
                         moat_uplink{u.ipv4, slots->slot.at(u.name)});
  if (!plan->publish.empty() && uplinks.empty() && !cfg.containers.empty())
    std::fprintf(stderr,
                 "moat: note: %s has published ports but no host.uplinks; they are reachable from "
                 "the host and from containers only\n",
                 cfg.source.c_str());

  // Policies, with the uplinks' addresses as host addresses.
  std::vector<Ipv4> host_addrs;
  for (const auto& u : uplinks) host_addrs.push_back(Ipv4{ntohl(u.ipv4)});
  auto policy = compile_policies(cfg, host_addrs);
  if (!policy) return std::unexpected(policy.error());

  std::map<std::vector<uint8_t>, moat_publish_val> want_publish;
  for (const auto& p : plan->publish) want_publish.emplace(key_bytes(p.key), p.value);
  std::map<std::vector<uint8_t>, uint32_t> want_caddrs;
  for (const auto& e : plan->endpoints)
    want_caddrs.emplace(key_bytes(moat_container_net_key{e.value.container_id, e.value.net_id}),
                        e.value.ipv4);

  bool exists = fs::exists(pin_dir(instance));
  if (dry_run && !exists) {
    if (auto r = check_ports_free(published_ports(plan->publish)); !r) return std::unexpected(r.error());
    rep.endpoints_added = static_cast<int>(want_eps.size());
    rep.addrs_added = static_cast<int>(want_addrs.size());
    rep.publish_added = static_cast<int>(want_publish.size());
    rep.attached = static_cast<int>(want_eps.size() + uplinks.size());
    rep.sock_hooks_changed = true;
    return rep;
  }

  if (!dry_run) {
    if (auto r = ensure_bpffs(); !r) return std::unexpected(r.error());
    if (auto r = mkdirs(pin_dir(instance)); !r) return std::unexpected(r.error());
  }
  // Loading means verifying the four TC programs, most of an apply's time:
  // programs pinned from the very objects this binary embeds are kept, and
  // only the maps are opened.
  const std::string objects = objects_fingerprint();
  auto kept = st->value("objects", std::string()) == objects && exists
                  ? open_pinned_programs(instance)
                  : std::optional<std::pair<PinnedProgs, PinnedProgs>>();
  Result<Skel> skel = kept ? open_pinned_maps(instance) : load_skeleton<endpoint_bpf>(instance);
  if (!skel) return std::unexpected(skel.error());
  Result<SkelPtr<uplink_bpf>> uskel = SkelPtr<uplink_bpf>();
  if (!kept) uskel = load_skeleton<uplink_bpf>(instance);
  if (!uskel) return std::unexpected(uskel.error());

  auto& maps = (*skel)->maps;
  auto have_addrs = dump_map<moat_lpm_v4_key, moat_addr_info>(maps.addrs);
  auto have_eps = dump_map<uint32_t, moat_endpoint>(maps.endpoints);
  auto have_publish = dump_map<moat_publish_key, moat_publish_val>(maps.publish);
  auto have_uplinks = dump_map<uint32_t, moat_uplink>(maps.uplinks);
  auto have_caddrs = dump_map<moat_container_net_key, uint32_t>(maps.container_addrs);
  if (!have_caddrs) return std::unexpected(have_caddrs.error());
  if (!have_addrs) return std::unexpected(have_addrs.error());
  if (!have_eps) return std::unexpected(have_eps.error());
  if (!have_publish) return std::unexpected(have_publish.error());
  if (!have_uplinks) return std::unexpected(have_uplinks.error());

  // A port that a host program already holds cannot be published (Docker:
  // "port is already allocated"); ports moat publishes already are ours.
  std::vector<PublishEntry> fresh_publish;
  for (const auto& p : plan->publish)
    if (!have_publish->contains(key_bytes(p.key))) fresh_publish.push_back(p);
  if (auto r = check_ports_free(published_ports(fresh_publish)); !r) return std::unexpected(r.error());

  Result<PinnedProgs> progs = kept ? Result<PinnedProgs>(std::move(kept->first))
                                   : pin_programs(instance, (*skel)->progs.from_container,
                                                  (*skel)->progs.to_container, dry_run,
                                                  &rep.programs_replaced);
  if (!progs) return std::unexpected(progs.error());
  Result<PinnedProgs> uprogs = kept ? Result<PinnedProgs>(std::move(kept->second))
                                    : pin_programs(instance, (*uskel)->progs.from_world,
                                                   (*uskel)->progs.to_world, dry_run,
                                                   &rep.programs_replaced);
  if (!uprogs) return std::unexpected(uprogs.error());

  // New addresses and endpoints first, attachments next, removals last: a
  // packet never meets a program whose entries are not there yet.
  if (!dry_run) {
    for (uint32_t slot : slots->fresh)
      if (auto r = zero_stats_slot(maps.stats, slot); !r) return std::unexpected(r.error());
    for (const auto& u : uplinks)
      if (auto r = set_uplink_slot(maps.uplink_slots, u.ifindex, slots->slot.at(u.name)); !r)
        return std::unexpected(r.error());
  }
  int uplinks_added = 0, uplinks_updated = 0, uplinks_removed = 0;
  if (auto r = upsert<moat_lpm_v4_key>(maps.addrs, *have_addrs, want_addrs, &rep.addrs_added,
                                       &rep.addrs_updated, dry_run);
      !r)
    return std::unexpected(r.error());
  if (auto r = upsert<uint32_t>(maps.endpoints, *have_eps, want_eps, &rep.endpoints_added,
                                &rep.endpoints_updated, dry_run);
      !r)
    return std::unexpected(r.error());
  if (auto r = upsert<moat_publish_key>(maps.publish, *have_publish, want_publish,
                                        &rep.publish_added, &rep.publish_updated, dry_run);
      !r)
    return std::unexpected(r.error());
  if (auto r = upsert<uint32_t>(maps.uplinks, *have_uplinks, want_uplinks, &uplinks_added,
                                &uplinks_updated, dry_run);
      !r)
    return std::unexpected(r.error());
  int caddrs_changed = 0;
  if (auto r = upsert<moat_container_net_key>(maps.container_addrs, *have_caddrs, want_caddrs,
                                              &caddrs_changed, &caddrs_changed, dry_run);
      !r)
    return std::unexpected(r.error());

  // The new policy generation goes in once every endpoint it names exists.
  uint32_t last_rev = st->value("policy_rev_max", 0u), rev = 0;
  auto policy_changed = install_policy(skel->get(), policy->ipcache, policy->entries,
                                       policy->active, last_rev, dry_run, &rev);
  if (!policy_changed) return std::unexpected(policy_changed.error());
  rep.policy_changed = *policy_changed;
  // A new revision numbers its rules anew: their hit counters start over.
  if (*policy_changed && !dry_run) {
    size_t old_rules = st->value("policy", json::object()).value("rules", json::array()).size();
    size_t n = std::min<size_t>(std::max(old_rules, policy->rules.size()), MOAT_MAX_RULES);
    int ncpu = libbpf_num_possible_cpus();
    std::vector<uint64_t> zeros(ncpu > 0 ? static_cast<size_t>(ncpu) : 1, 0);
    for (uint32_t id = 0; id < n; ++id)
      bpf_map__update_elem((*skel)->maps.rule_hits, &id, sizeof(id), zeros.data(),
                           zeros.size() * sizeof(uint64_t), 0);
  }
  rep.policy_rev = rev;
  rep.policy_entries = static_cast<int>(policy->entries.size());

  auto old_ifaces = by_name(st->value("interfaces", json::array()));
  auto old_uplinks = by_name(st->value("uplinks", json::array()));

  std::vector<std::tuple<std::string, int, json>> ep_rows, up_rows;
  for (const auto& e : plan->endpoints)
    ep_rows.emplace_back(e.interface, ifindex_of.at(e.interface),
                         json{{"container", e.container}, {"network", e.network},
                              {"ip", ip_str(e.value.ipv4)},
                              {"stats_slot", slots->slot.at(e.interface)}});
  for (const auto& u : uplinks)
    up_rows.emplace_back(u.name, u.ifindex,
                         json{{"ip", ip_str(u.ipv4)}, {"stats_slot", slots->slot.at(u.name)}});
  auto ifaces = attach_all(ep_rows, old_ifaces, *progs, dry_run, &rep.attached);
  if (!ifaces) return std::unexpected(ifaces.error());
  auto up_state = attach_all(up_rows, old_uplinks, *uprogs, dry_run, &rep.attached);
  if (!up_state) return std::unexpected(up_state.error());

  auto hooks = ensure_sock_hooks(pin_dir(instance), dry_run);
  if (!hooks) return std::unexpected(hooks.error());
  rep.sock_hooks_changed = *hooks;

  std::set<uint32_t> ours = pinned_prog_ids(instance);
  for (uint32_t id : {progs->ingress_id, progs->egress_id, uprogs->ingress_id, uprogs->egress_id})
    ours.insert(id);
  std::set<std::string> wanted_ifaces;
  for (const auto& [name, idx, extra] : ep_rows) wanted_ifaces.insert(name);
  for (const auto& [name, idx, extra] : up_rows) wanted_ifaces.insert(name);
  for (const auto* old : {&old_ifaces, &old_uplinks}) {
    for (const auto& [name, row] : *old) {
      if (wanted_ifaces.contains(name)) continue;
      rep.detached++;
      if (dry_run) continue;
      if (auto r = detach(name, row.value("qdisc_created", false), ours); !r)
        return std::unexpected(r.error());
    }
  }
  if (!dry_run) {
    // Uplinks gone or re-created under another ifindex stop naming a slot.
    std::set<int> uplink_now;
    for (const auto& u : uplinks) uplink_now.insert(u.ifindex);
    for (const auto& [name, row] : old_uplinks)
      if (int idx = row.value("ifindex", 0); !uplink_now.contains(idx))
        if (auto r = set_uplink_slot(maps.uplink_slots, idx, 0); !r) return std::unexpected(r.error());
    for (uint32_t slot : slots->freed)
      if (auto r = zero_stats_slot(maps.stats, slot); !r) return std::unexpected(r.error());
  }
  if (auto r = remove_stale(maps.endpoints, *have_eps, want_eps, &rep.endpoints_removed, dry_run); !r)
    return std::unexpected(r.error());
  if (auto r = remove_stale(maps.publish, *have_publish, want_publish, &rep.publish_removed, dry_run);
      !r)
    return std::unexpected(r.error());
  if (auto r = remove_stale(maps.uplinks, *have_uplinks, want_uplinks, &uplinks_removed, dry_run); !r)
    return std::unexpected(r.error());
  if (auto r = remove_stale(maps.container_addrs, *have_caddrs, want_caddrs, &caddrs_changed,
                            dry_run);
      !r)
    return std::unexpected(r.error());
  if (auto r = remove_stale(maps.addrs, *have_addrs, want_addrs, &rep.addrs_removed, dry_run); !r)
    return std::unexpected(r.error());
  if (dry_run) return rep;

  json networks = json::array();
  for (const auto& n : cfg.networks)
    networks.push_back({{"name", n.name}, {"id", plan->ids.networks.at(n.name)},
                        {"subnet", n.subnet.str()}, {"gateway", n.gateway.str()}, {"icc", n.icc},
                        {"internal", n.internal}, {"masquerade", n.masquerade && !n.internal}});
  json published = json::array();
  for (const auto& c : cfg.containers)
    for (const auto& p : c.publish) published.push_back({{"container", c.name}, {"publish", p.text}});
  json next = {{"instance", instance},
               {"source", cfg.source},
               {"netns_inode", netns},
               {"netns_path", current_netns_path()},
               {"ids", {{"networks", plan->ids.networks}, {"containers", plan->ids.containers}}},
               {"networks", networks},
               {"published", published},
               {"policy_rev", rev},
               {"policy_rev_max", std::max(last_rev, rev)},
               {"policy", policy_state_json(cfg, *policy)},
               {"interfaces", *ifaces},
               {"uplinks", *up_state},
               {"objects", objects}};
  if (auto r = write_state(instance, next); !r) return std::unexpected(r.error());
  return rep;
}

Result<json> status(const std::string& instance) {
  auto st = read_state(instance);
  if (!st) return std::unexpected(st.error());
  if (!fs::exists(pin_dir(instance)) && st->empty())
    return fail("no moat instance \"" + instance + "\" (nothing applied; see `moat apply --help`)");
  auto skel = open_pinned_maps(instance);
  if (!skel) return std::unexpected(skel.error());
  auto& maps = (*skel)->maps;

  json progs = json::array();
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(pin_dir(instance), ec)) {
    std::string file = e.path().filename();
    if (file.rfind("prog_", 0) != 0) continue;
    Fd fd(bpf_obj_get(e.path().c_str()));
    if (!fd.ok()) continue;
    auto info = prog_info(fd.get());
    if (!info) continue;
    char tag[17] = {};
    for (int i = 0; i < 8; ++i) snprintf(tag + 2 * i, 3, "%02x", info->tag[i]);
    progs.push_back({{"name", file.substr(5)}, {"id", info->id}, {"tag", tag},
                     {"pin", e.path().string()}, {"run_count", info->run_cnt},
                     {"run_time_ns", info->run_time_ns}});
  }

  json map_list = json::array();
  bpf_map* m;
  bpf_object__for_each_map(m, (*skel)->obj) {
    bpf_map_info info{};
    uint32_t len = sizeof(info);
    bpf_obj_get_info_by_fd(bpf_map__fd(m), &info, &len);
    map_list.push_back({{"name", bpf_map__name(m)}, {"id", info.id},
                        {"max_entries", info.max_entries}, {"pin", map_pin(instance, m)}});
  }
  auto eps = dump_map<uint32_t, moat_endpoint>(maps.endpoints);
  if (!eps) return std::unexpected(eps.error());

  bool same_ns = st->value("netns_inode", uint64_t{0}) == current_netns_inode();
  json ifaces = json::array();
  for (const auto& i : st->value("interfaces", json::array())) {
    uint32_t idx = i.value("ifindex", 0u);
    json row = i;
    row.erase("qdisc_created");
    uint32_t key = idx;
    row["in_map"] = eps->contains(key_bytes(key));
    if (same_ns) {
      row["attached"] = {{"ingress", attached_prog_id(static_cast<int>(idx), BPF_TC_INGRESS)},
                         {"egress", attached_prog_id(static_cast<int>(idx), BPF_TC_EGRESS)}};
    }
    json counters;
    for (auto [dir, name] : {std::pair{MOAT_DIR_FROM_CONTAINER, "from_container"},
                             std::pair{MOAT_DIR_TO_CONTAINER, "to_container"}}) {
      auto s = read_stats(maps.stats, row.value("stats_slot", 0u), dir);
      if (!s) return std::unexpected(s.error());
      counters[name] = stats_json(*s);
    }
    row["counters"] = counters;
    ifaces.push_back(row);
  }

  json uplinks = json::array();
  for (const auto& u : st->value("uplinks", json::array())) {
    json row = u;
    row.erase("qdisc_created");
    uint32_t idx = u.value("ifindex", 0u);
    if (same_ns) {
      row["attached"] = {{"ingress", attached_prog_id(static_cast<int>(idx), BPF_TC_INGRESS)},
                         {"egress", attached_prog_id(static_cast<int>(idx), BPF_TC_EGRESS)}};
    }
    json counters;
    for (auto [dir, name] : {std::pair{MOAT_DIR_FROM_WORLD, "from_world"},
                             std::pair{MOAT_DIR_TO_WORLD, "to_world"}}) {
      auto s = read_stats(maps.stats, row.value("stats_slot", 0u), dir);
      if (!s) return std::unexpected(s.error());
      counters[name] = stats_json(*s);
    }
    row["counters"] = counters;
    uplinks.push_back(row);
  }
  auto hooks = sock_hooks_status(pin_dir(instance));
  if (!hooks) return std::unexpected(hooks.error());
  auto flows = ct_entries(instance);
  if (!flows) return std::unexpected(flows.error());

  auto rev = read_policy_rev(maps.policy_rev);
  if (!rev) return std::unexpected(rev.error());
  json policy = st->value("policy", json::object());
  policy["revision"] = *rev;

  return json{{"instance", instance},
              {"policy", policy},
              {"source", st->value("source", "")},
              {"netns", st->value("netns_path", "")},
              {"pin_dir", pin_dir(instance)},
              {"programs", progs},
              {"maps", map_list},
              {"networks", st->value("networks", json::array())},
              {"endpoints", ifaces},
              {"endpoint_entries", eps->size()},
              {"uplinks", uplinks},
              {"published", st->value("published", json::array())},
              {"socket_hooks", *hooks},
              {"tracked_entries", flows->size()}};
}

Result<void> down(const std::string& instance) {
  auto st = read_state(instance);
  if (!st) return std::unexpected(st.error());
  std::set<uint32_t> ours = pinned_prog_ids(instance);

  // Interfaces are named in the namespace the instance was applied in.
  std::string ns_path = st->value("netns_path", std::string());
  bool same_ns = st->value("netns_inode", uint64_t{0}) == current_netns_inode();
  Fd home;
  if (!same_ns && !ns_path.empty() && fs::exists(ns_path)) {
    home = Fd(open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
    if (auto r = enter_netns(ns_path); !r) return r;
    same_ns = true;
  }
  if (same_ns) {
    for (const char* list : {"interfaces", "uplinks"}) {
      for (const auto& i : st->value(list, json::array())) {
        if (auto r = detach(i.at("name").get<std::string>(), i.value("qdisc_created", false), ours);
            !r)
          return r;
      }
    }
  }
  if (home.ok() && setns(home.get(), CLONE_NEWNET) != 0)
    return fail_errno("return to the original network namespace", errno);

  std::error_code ec;
  fs::remove_all(pin_dir(instance), ec);
  if (ec) return fail("remove " + pin_dir(instance), ec.value());
  fs::remove(std::string(kBpffs) + "/moat", ec);  // only if empty
  fs::remove_all(state_dir(instance), ec);
  if (ec) return fail("remove " + state_dir(instance), ec.value());
  fs::remove("/run/moat", ec);  // only if empty
  return {};
}

Result<json> kernel_policy_verdict(const std::string& instance, uint32_t src_be, uint32_t dst_be,
                                   uint8_t proto, uint16_t port) {
  auto skel = open_pinned_maps(instance);
  if (!skel) return std::unexpected(skel.error());
  auto rev = read_policy_rev((*skel)->maps.policy_rev);
  if (!rev) return std::unexpected(rev.error());
  json out = {{"revision", *rev}};
  if (*rev == 0) {
    out["allowed"] = true;
    out["text"] = "no policy is loaded (revision 0)";
    return out;
  }
  Fd ic = inner_map((*skel)->maps.ipcache_gens, *rev & 1);
  Fd pc = inner_map((*skel)->maps.policy_gens, *rev & 1);
  if (!ic.ok() || !pc.ok()) return fail("policy generation " + std::to_string(*rev) + " is missing");
  auto identity = [&](uint32_t addr) {
    moat_lpm_v4_key k{32, addr};
    moat_ipcache_val v{MOAT_ID_WORLD, 0};
    bpf_map_lookup_elem(ic.get(), &k, &v);  // the kernel's longest-prefix match
    return v;
  };
  moat_ipcache_val src = identity(src_be), dst = identity(dst_be);
  uint16_t port_be = (proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP)
                         ? htons(port) : 0;
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
        return json{{"decided_by", "entry"}, {"lookup", i + 1},
                    {"allowed", v.action == MOAT_POLICY_ALLOW}, {"rule_id", v.rule_id}};
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

namespace {

std::string endpoint_str(uint32_t ip, uint16_t port_be, uint8_t proto) {
  if (proto == IPPROTO_ICMP) return ip_str(ip);
  return ip_str(ip) + ":" + std::to_string(ntohs(port_be));
}

// bpf_ktime_get_ns() runs on CLOCK_MONOTONIC.
uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace

Result<json> ct_entries(const std::string& instance) {
  auto skel = open_pinned_maps(instance);
  if (!skel) return std::unexpected(skel.error());
  auto all = dump_map<moat_ct_key, moat_ct_entry>((*skel)->maps.ct);
  if (!all) return std::unexpected(all.error());
  uint64_t now = monotonic_ns();
  json out = json::array();
  for (const auto& [kb, e] : *all) {
    moat_ct_key k{};
    memcpy(&k, kb.data(), sizeof(k));
    if (e.expires_ns < now) continue;  // expired, waiting for gc
    json row = {{"kind", ct_kind_name(e.kind)},
                {"protocol", proto_name(k.proto)},
                {"from", endpoint_str(k.saddr, k.sport, k.proto)},
                {"to", endpoint_str(k.daddr, k.dport, k.proto)},
                {"becomes_from", endpoint_str(e.xlated.saddr, e.xlated.sport, k.proto)},
                {"becomes_to", endpoint_str(e.xlated.daddr, e.xlated.dport, k.proto)},
                {"expires_in_s", (e.expires_ns - now) / 1000000000ull},
                {"packets", e.packets},
                {"bytes", e.bytes}};
    if (k.proto == IPPROTO_ICMP) row["echo_id"] = ntohs(k.sport);
    if (e.tcp_state) row["tcp_state"] = tcp_state_name(e.tcp_state);
    out.push_back(row);
  }
  return out;
}

struct CtReaper::Impl {
  SkelPtr<reap_bpf> skel;
};

CtReaper::CtReaper(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CtReaper::CtReaper(CtReaper&&) noexcept = default;
CtReaper& CtReaper::operator=(CtReaper&&) noexcept = default;
CtReaper::~CtReaper() = default;

Result<CtReaper> CtReaper::open(const std::string& instance) {
  // load_skeleton would create and pin maps for an instance that is not there.
  if (!fs::exists(pin_dir(instance))) return fail("no moat instance \"" + instance + "\"");
  auto skel = load_skeleton<reap_bpf>(instance);
  if (!skel) return std::unexpected(skel.error());
  return CtReaper(std::make_unique<Impl>(Impl{std::move(*skel)}));
}

Result<int> CtReaper::sweep() {
  auto all = dump_map<moat_ct_key, moat_ct_entry>(impl_->skel->maps.ct);
  if (!all) return std::unexpected(all.error());
  uint64_t now = monotonic_ns();
  int prog = bpf_program__fd(impl_->skel->progs.ct_reap);
  int ended = 0;
  for (const auto& [kb, e] : *all) {
    if (e.expires_ns >= now) continue;
    // The program decides (partner alive, already ended with its partner).
    moat_ct_reap_args args{};
    std::memcpy(&args.key, kb.data(), sizeof(args.key));
    LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &args, .ctx_size_in = sizeof(args));
    if (int rc = bpf_prog_test_run_opts(prog, &opts); rc != 0)
      return fail_errno("run ct_reap", rc);
    ended += static_cast<int>(args.reaped);
  }
  return ended;
}

Result<int> ct_gc(const std::string& instance) {
  auto reaper = CtReaper::open(instance);
  if (!reaper) return std::unexpected(reaper.error());
  return reaper->sweep();
}

Result<PinnedMaps> open_pinned(const std::string& instance) {
  if (!fs::exists(pin_dir(instance))) return fail("no moat instance \"" + instance + "\"");
  auto skel = open_pinned_maps(instance);
  if (!skel) return std::unexpected(skel.error());
  return PinnedMaps(skel->release(), [](endpoint_bpf* s) { endpoint_bpf__destroy(s); });
}

Result<json> instance_state(const std::string& instance) { return read_state(instance); }

const char* ct_kind_name(uint8_t kind) {
  switch (kind) {
    case MOAT_CT_DNAT: return "published";
    case MOAT_CT_DNAT_REPLY: return "published-reply";
    case MOAT_CT_SNAT: return "egress";
    case MOAT_CT_SNAT_REPLY: return "egress-reply";
    case MOAT_CT_TRACK: return "tracked";
    default: return "";
  }
}

const char* tcp_state_name(uint8_t state) {
  switch (state) {
    case MOAT_TCP_SYN_SENT: return "syn-sent";
    case MOAT_TCP_ESTABLISHED: return "established";
    case MOAT_TCP_CLOSING: return "closing";
    default: return "";
  }
}

std::string proto_name(uint8_t proto) {
  switch (proto) {
    case IPPROTO_TCP: return "tcp";
    case IPPROTO_UDP: return "udp";
    case IPPROTO_ICMP: return "icmp";
    case IPPROTO_SCTP: return "sctp";
    case 0: return "";
    default: return std::to_string(proto);
  }
}

std::vector<std::string> instances() {
  std::set<std::string> names;
  std::error_code ec;
  for (const auto& dir : {std::string(kBpffs) + "/moat", std::string("/run/moat")})
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.is_directory() && e.path().filename() != "labs") names.insert(e.path().filename());
  return {names.begin(), names.end()};
}

}  // namespace moat
