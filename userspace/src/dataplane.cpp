#include "dataplane.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <net/if.h>
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

#include "endpoint.skel.h"

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

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    reset();
    fd_ = std::exchange(o.fd_, -1);
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  bool ok() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

struct SkelDeleter {
  void operator()(endpoint_bpf* s) const { endpoint_bpf__destroy(s); }
};
using Skel = std::unique_ptr<endpoint_bpf, SkelDeleter>;

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
Result<Skel> load_skeleton(const std::string& instance) {
  init_libbpf();
  Skel skel(endpoint_bpf__open());
  if (!skel) return fail_errno("open BPF skeleton", errno);
  bpf_map* m;
  bpf_object__for_each_map(m, skel->obj) {
    if (int rc = bpf_map__set_pin_path(m, map_pin(instance, m).c_str()); rc)
      return fail_errno("set pin path", rc);
  }
  if (int rc = endpoint_bpf__load(skel.get()); rc)
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

struct PinnedProgs {
  Fd from_container, to_container;
  uint32_t from_id = 0, to_id = 0;
};

// One program instance per instance: interfaces attached at different times
// share it. A newer moat with different instructions (another tag) replaces it.
Result<PinnedProgs> pin_programs(const std::string& instance, endpoint_bpf* skel, bool dry_run,
                                 bool* replaced) {
  PinnedProgs out;
  for (auto [prog, fd_out, id_out] :
       {std::tuple{skel->progs.from_container, &out.from_container, &out.from_id},
        std::tuple{skel->progs.to_container, &out.to_container, &out.to_id}}) {
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

// ---- map diffing ---------------------------------------------------------------

template <class K, class V>
Result<std::map<std::vector<uint8_t>, V>> dump_map(const bpf_map* m) {
  std::map<std::vector<uint8_t>, V> out;
  K key{}, next{};
  K* prev = nullptr;
  while (bpf_map__get_next_key(m, prev, &next, sizeof(K)) == 0) {
    V val{};
    if (bpf_map__lookup_elem(m, &next, sizeof(K), &val, sizeof(V), 0) == 0) {
      auto* p = reinterpret_cast<const uint8_t*>(&next);
      out.emplace(std::vector<uint8_t>(p, p + sizeof(K)), val);
    }
    key = next;
    prev = &key;
  }
  return out;
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
  for (auto [point, fd, id] : {std::tuple{BPF_TC_INGRESS, progs.from_container.get(), progs.from_id},
                               std::tuple{BPF_TC_EGRESS, progs.to_container.get(), progs.to_id}}) {
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

Result<moat_stats> read_stats(const bpf_map* m, uint32_t ifindex, uint32_t dir) {
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return fail_errno("count possible CPUs", ncpu);
  std::vector<moat_stats> per_cpu(static_cast<size_t>(ncpu));
  moat_stats_key key{ifindex, dir};
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

json ApplyReport::to_json() const {
  return {{"changed", changed()},
          {"endpoints", {{"added", endpoints_added}, {"updated", endpoints_updated},
                         {"removed", endpoints_removed}}},
          {"addresses", {{"added", addrs_added}, {"updated", addrs_updated}, {"removed", addrs_removed}}},
          {"interfaces", {{"attached", attached}, {"detached", detached}}},
          {"programs_replaced", programs_replaced}};
}

std::string ApplyReport::summary() const {
  if (!changed()) return "no changes";
  std::ostringstream o;
  o << "endpoints +" << endpoints_added << " ~" << endpoints_updated << " -" << endpoints_removed
    << ", address entries +" << addrs_added << " ~" << addrs_updated << " -" << addrs_removed
    << ", interfaces attached " << attached << ", detached " << detached;
  if (programs_replaced) o << ", programs upgraded";
  return o.str();
}

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
    want_eps.emplace(key_bytes(static_cast<uint32_t>(idx)), e.value);
  }
  std::map<std::vector<uint8_t>, moat_addr_info> want_addrs;
  for (const auto& a : plan->addrs) want_addrs.emplace(key_bytes(a.key), a.value);

  bool exists = fs::exists(pin_dir(instance));
  if (dry_run && !exists) {
    rep.endpoints_added = static_cast<int>(want_eps.size());
    rep.addrs_added = static_cast<int>(want_addrs.size());
    rep.attached = static_cast<int>(want_eps.size());
    return rep;
  }

  if (!dry_run) {
    if (auto r = ensure_bpffs(); !r) return std::unexpected(r.error());
    if (auto r = mkdirs(pin_dir(instance)); !r) return std::unexpected(r.error());
  }
  auto skel = load_skeleton(instance);
  if (!skel) return std::unexpected(skel.error());
  auto progs = pin_programs(instance, skel->get(), dry_run, &rep.programs_replaced);
  if (!progs) return std::unexpected(progs.error());

  auto& maps = (*skel)->maps;
  auto have_addrs = dump_map<moat_lpm_v4_key, moat_addr_info>(maps.addrs);
  auto have_eps = dump_map<uint32_t, moat_endpoint>(maps.endpoints);
  if (!have_addrs) return std::unexpected(have_addrs.error());
  if (!have_eps) return std::unexpected(have_eps.error());

  // New addresses and endpoints first, attachments next, removals last: a
  // packet never meets a program whose entries are not there yet.
  if (auto r = upsert<moat_lpm_v4_key>(maps.addrs, *have_addrs, want_addrs, &rep.addrs_added,
                                       &rep.addrs_updated, dry_run);
      !r)
    return std::unexpected(r.error());
  if (auto r = upsert<uint32_t>(maps.endpoints, *have_eps, want_eps, &rep.endpoints_added,
                                &rep.endpoints_updated, dry_run);
      !r)
    return std::unexpected(r.error());

  json old_ifaces = st->value("interfaces", json::array());
  std::map<std::string, json> old_by_name;
  for (const auto& i : old_ifaces) old_by_name[i.at("name").get<std::string>()] = i;

  json ifaces = json::array();
  for (const auto& e : plan->endpoints) {
    int idx = ifindex_of.at(e.interface);
    bool created = false;
    if (auto it = old_by_name.find(e.interface); it != old_by_name.end())
      created = it->second.value("qdisc_created", false) &&
                it->second.value("ifindex", 0) == idx;
    if (dry_run) {
      if (attached_prog_id(idx, BPF_TC_INGRESS) != progs->from_id ||
          attached_prog_id(idx, BPF_TC_EGRESS) != progs->to_id)
        rep.attached++;
    } else {
      auto changed = attach(e.interface, idx, *progs, &created);
      if (!changed) return std::unexpected(changed.error());
      if (*changed) rep.attached++;
    }
    ifaces.push_back({{"name", e.interface}, {"ifindex", idx}, {"qdisc_created", created},
                      {"container", e.container}, {"network", e.network},
                      {"ip", ip_str(e.value.ipv4)}});
  }

  std::set<uint32_t> ours = pinned_prog_ids(instance);
  ours.insert(progs->from_id);
  ours.insert(progs->to_id);
  for (const auto& [name, old] : old_by_name) {
    if (ifindex_of.contains(name)) continue;
    rep.detached++;
    if (dry_run) continue;
    if (auto r = detach(name, old.value("qdisc_created", false), ours); !r)
      return std::unexpected(r.error());
    for (uint32_t dir = 0; dir < MOAT_DIR_MAX; ++dir) {
      moat_stats_key k{old.value("ifindex", 0u), dir};
      bpf_map__delete_elem(maps.stats, &k, sizeof(k), 0);
    }
  }
  if (auto r = remove_stale(maps.endpoints, *have_eps, want_eps, &rep.endpoints_removed, dry_run); !r)
    return std::unexpected(r.error());
  if (auto r = remove_stale(maps.addrs, *have_addrs, want_addrs, &rep.addrs_removed, dry_run); !r)
    return std::unexpected(r.error());
  if (dry_run) return rep;

  json networks = json::array();
  for (const auto& n : cfg.networks)
    networks.push_back({{"name", n.name}, {"id", plan->ids.networks.at(n.name)},
                        {"subnet", n.subnet.str()}, {"gateway", n.gateway.str()}, {"icc", n.icc},
                        {"internal", n.internal}});
  json next = {{"instance", instance},
               {"source", cfg.source},
               {"netns_inode", netns},
               {"netns_path", current_netns_path()},
               {"ids", {{"networks", plan->ids.networks}, {"containers", plan->ids.containers}}},
               {"networks", networks},
               {"interfaces", ifaces}};
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
      auto s = read_stats(maps.stats, idx, dir);
      if (!s) return std::unexpected(s.error());
      counters[name] = stats_json(*s);
    }
    row["counters"] = counters;
    ifaces.push_back(row);
  }

  return json{{"instance", instance},
              {"source", st->value("source", "")},
              {"netns", st->value("netns_path", "")},
              {"pin_dir", pin_dir(instance)},
              {"programs", progs},
              {"maps", map_list},
              {"networks", st->value("networks", json::array())},
              {"endpoints", ifaces},
              {"endpoint_entries", eps->size()}};
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
    for (const auto& i : st->value("interfaces", json::array())) {
      if (auto r = detach(i.at("name").get<std::string>(), i.value("qdisc_created", false), ours); !r)
        return r;
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

std::vector<std::string> instances() {
  std::set<std::string> names;
  std::error_code ec;
  for (const auto& dir : {std::string(kBpffs) + "/moat", std::string("/run/moat")})
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.is_directory() && e.path().filename() != "labs") names.insert(e.path().filename());
  return {names.begin(), names.end()};
}

}  // namespace moat
