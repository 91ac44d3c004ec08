#include "dataplane/sockhooks.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <utility>

#include "util/fd.h"
#include "util/net.h"
#include "util/paths.h"
#include "util/proto.h"
#include "dataplane/programs.h"
#include "dataplane/skeleton.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

namespace fs = std::filesystem;
using nlohmann::json;

namespace moat {
namespace {

constexpr const char* kLinkPrefix = "link_";
constexpr const char* kRunDir = paths::kRunDir;

// ---- RAII owners -------------------------------------------------------------------

using Skel = Skeleton<sock_bpf>;

// Destroying a bpf_link object closes its fd; a pinned link stays attached.
struct LinkDeleter {
  void operator()(bpf_link* l) const { bpf_link__destroy(l); }
};
using Link = std::unique_ptr<bpf_link, LinkDeleter>;

// A cgroup2 mount of our own, when the machine has none: lazily unmounted and
// its directory removed on every path out.
class TempCgroupMount {
 public:
  TempCgroupMount() = default;
  TempCgroupMount(const TempCgroupMount&) = delete;
  TempCgroupMount& operator=(const TempCgroupMount&) = delete;
  ~TempCgroupMount() {
    if (mounted_) umount2(dir_.c_str(), MNT_DETACH);
    if (!dir_.empty()) rmdir(dir_.c_str());
    if (created_run_dir_) rmdir(kRunDir);  // only if empty
  }

  Result<std::string> mount_it() {
    struct stat st {};
    if (stat(kRunDir, &st) != 0) {
      if (mkdir(kRunDir, 0755) == 0)
        created_run_dir_ = true;
      else if (errno != EEXIST)
        return fail_errno(std::string("create ") + kRunDir, errno);
    }
    std::string tmpl = std::string(kRunDir) + "/cgroup2.XXXXXX";
    if (!mkdtemp(tmpl.data())) return fail_errno("create a directory to mount cgroup2 on", errno);
    dir_ = tmpl;
    if (mount("cgroup2", dir_.c_str(), "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
      return fail_errno("mount cgroup2 on " + dir_, errno);
    mounted_ = true;
    return dir_;
  }

 private:
  std::string dir_;
  bool mounted_ = false;
  bool created_run_dir_ = false;
};

// ---- cgroup2 root --------------------------------------------------------------------

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape_mountinfo(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = 0;
      bool ok = true;
      for (size_t j = 1; j <= 3; ++j) {
        char c = s[i + j];
        ok = ok && c >= '0' && c <= '7';
        v = v * 8 + (c - '0');
      }
      if (ok) {
        out.push_back(static_cast<char>(v));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

// Where the cgroup2 hierarchy's root is mounted in this mount namespace, if
// anywhere ("/sys/fs/cgroup" on unified systems, "/sys/fs/cgroup/unified" in
// hybrid mode). A mount of a sub-cgroup (root field other than "/") is no use.
std::optional<std::string> find_cgroup2_mount() {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // id parent major:minor root mountpoint options [optional...] - fstype source super
    std::istringstream f(line);
    std::string id, parent, dev, root, mountpoint, field;
    if (!(f >> id >> parent >> dev >> root >> mountpoint)) continue;
    while (f >> field && field != "-") {
    }
    std::string fstype;
    if (!(f >> fstype) || fstype != "cgroup2" || root != "/") continue;
    return unescape_mountinfo(mountpoint);
  }
  return std::nullopt;
}

// An fd on the cgroup2 root. Without a cgroup2 mount, mounts one on a
// temporary directory, opens it and unmounts again: the open directory (and
// later the links attached through it) keep the cgroup alive, not the mount.
Result<Fd> open_cgroup2_root() {
  if (auto mp = find_cgroup2_mount()) {
    Fd fd(open(mp->c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd.ok()) return fail_errno("open the cgroup2 root " + *mp, errno);
    return fd;
  }
  TempCgroupMount tmp;
  auto dir = tmp.mount_it();
  if (!dir) return std::unexpected(dir.error());
  Fd fd(open(dir->c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.ok()) return fail_errno("open the cgroup2 root " + *dir, errno);
  return fd;
}

// ---- network namespace ----------------------------------------------------------------

Result<uint64_t> netns_cookie() {
  Fd s(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s.ok()) return fail_errno("create a socket to read the network namespace cookie", errno);
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  if (getsockopt(s.get(), SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) != 0)
    return fail_errno("read the network namespace cookie (SO_NETNS_COOKIE, Linux 5.14+)", errno);
  return cookie;
}

// ---- programs and links ---------------------------------------------------------------

// What makes two loads of a program the same: instructions (the tag ignores
// map fds) and the maps they use.
struct ProgIdentity {
  uint32_t id = 0;
  std::array<uint8_t, BPF_TAG_SIZE> tag{};
  std::vector<uint32_t> map_ids;
  bool operator==(const ProgIdentity& o) const { return tag == o.tag && map_ids == o.map_ids; }
};

Result<ProgIdentity> prog_identity(int fd) {
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  if (int rc = bpf_obj_get_info_by_fd(fd, &info, &len); rc) return fail_errno("query program", rc);
  ProgIdentity out;
  out.id = info.id;
  std::copy(std::begin(info.tag), std::end(info.tag), out.tag.begin());
  out.map_ids.resize(info.nr_map_ids);
  if (!out.map_ids.empty()) {
    bpf_prog_info again{};
    again.nr_map_ids = static_cast<uint32_t>(out.map_ids.size());
    again.map_ids = reinterpret_cast<uint64_t>(out.map_ids.data());
    len = sizeof(again);
    if (int rc = bpf_obj_get_info_by_fd(fd, &again, &len); rc)
      return fail_errno("query program maps", rc);
    out.map_ids.resize(std::min<size_t>(out.map_ids.size(), again.nr_map_ids));
  }
  std::sort(out.map_ids.begin(), out.map_ids.end());
  return out;
}

Result<bpf_link_info> link_info(int fd) {
  bpf_link_info info{};
  uint32_t len = sizeof(info);
  if (int rc = bpf_obj_get_info_by_fd(fd, &info, &len); rc) return fail_errno("query link", rc);
  return info;
}

std::string link_pin(const std::string& pin_dir, const std::string& prog) {
  return pin_dir + "/" + kLinkPrefix + prog;
}

bool all_maps_pinned(const std::string& pin_dir) {
  auto skel = Skel::open();
  if (!skel) return false;
  bpf_map* m;
  bpf_object__for_each_map(m, (*skel)->obj) {
    if (!fs::exists(pin_dir + "/" + bpf_map__name(m))) return false;
  }
  return true;
}

// What to do with one program's link pin.
enum class LinkAction { kKeep, kUpdate, kCreate, kRecreate };

struct LinkPlan {
  LinkAction action = LinkAction::kCreate;
  Fd link;      // the pinned link, for kUpdate
  Fd old_prog;  // the program it runs, for kUpdate
};

Result<LinkPlan> plan_link(const std::string& path, bpf_program* prog) {
  LinkPlan plan;
  Fd link(bpf_obj_get(path.c_str()));
  if (!link.ok()) {
    if (errno == ENOENT) return plan;
    return fail_errno("open pinned link " + path, errno);
  }
  auto info = link_info(link.get());
  if (!info) return std::unexpected(info.error());
  // A link someone detached (cgroup_id 0) or of another kind: make a new one.
  if (info->type != BPF_LINK_TYPE_CGROUP || info->cgroup.cgroup_id == 0 ||
      info->cgroup.attach_type != bpf_program__expected_attach_type(prog)) {
    plan.action = LinkAction::kRecreate;
    return plan;
  }
  Fd old(bpf_prog_get_fd_by_id(info->prog_id));
  if (!old.ok()) return fail_errno("open the program of link " + path, errno);
  auto have = prog_identity(old.get());
  if (!have) return std::unexpected(have.error());
  auto want = prog_identity(bpf_program__fd(prog));
  if (!want) return std::unexpected(want.error());
  plan.action = *have == *want ? LinkAction::kKeep : LinkAction::kUpdate;
  plan.link = std::move(link);
  plan.old_prog = std::move(old);
  return plan;
}

// The programs whose links are pinned in pin_dir, by name.
std::set<std::string> link_pin_names(const std::string& pin_dir, std::error_code& ec) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(pin_dir, ec)) {
    std::string file = e.path().filename();
    if (file.rfind(kLinkPrefix, 0) == 0) out.insert(file.substr(strlen(kLinkPrefix)));
  }
  return out;
}

// Link pins of programs this version no longer has.
std::vector<fs::path> stale_link_pins(const std::string& pin_dir,
                                      const std::set<std::string>& progs) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& name : link_pin_names(pin_dir, ec))
    if (!progs.contains(name)) out.push_back(link_pin(pin_dir, name));
  return out;
}

// ---- /proc/net ----------------------------------------------------------------------------

std::optional<uint32_t> hex32(std::string_view s) {
  uint32_t v = 0;
  if (s.empty() || s.size() > 8) return std::nullopt;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 16);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::string ip_str(uint32_t be) { return Ipv4{ntohl(be)}.str(); }

}  // namespace

// ---- pure parts ------------------------------------------------------------------------------

std::string ProcNetSocket::address() const {
  std::string a;
  if (!v6)
    a = ip_str(ip_be);
  else if (holds_ipv4 && ip_be == 0)
    a = "[::]";
  else if (holds_ipv4)
    a = "[::ffff:" + ip_str(ip_be) + "]";
  else
    a = "[" + (ip6 ? ip6->str() : std::string("IPv6")) + "]";
  return a + ":" + std::to_string(port);
}

std::optional<ProcNetSocket> parse_proc_net_line(std::string_view line, bool v6) {
  // "  sl  local_address rem_address   st ..." e.g.
  // "   0: 0100007F:1388 00000000:0000 0A ..."; addresses are the kernel's
  // 32-bit words printed with %08X, i.e. in the machine's byte order, ports
  // in host order.
  std::vector<std::string_view> f;
  size_t i = 0;
  while (i < line.size() && f.size() < 4) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) f.push_back(line.substr(start, i - start));
  }
  if (f.size() < 4 || f[0].empty() || f[0].back() != ':') return std::nullopt;
  std::string_view local = f[1];
  size_t colon = local.find(':');
  size_t addr_len = v6 ? 32 : 8;
  if (colon != addr_len || local.size() != addr_len + 5) return std::nullopt;
  auto port = hex32(local.substr(colon + 1));
  auto state = hex32(f[3]);
  if (!port || *port > 0xffff || !state || *state > 0xff) return std::nullopt;

  ProcNetSocket s;
  s.v6 = v6;
  s.port = static_cast<uint16_t>(*port);
  s.state = static_cast<uint8_t>(*state);
  std::array<uint32_t, 4> w{};
  for (size_t k = 0; k < addr_len / 8; ++k) {
    auto v = hex32(local.substr(8 * k, 8));
    if (!v) return std::nullopt;
    w[k] = *v;
  }
  if (!v6) {
    s.ip_be = w[0];
    s.holds_ipv4 = true;
    return s;
  }
  if (w[0] == 0 && w[1] == 0 && w[2] == htonl(0xffff)) {
    s.ip_be = w[3];
    s.holds_ipv4 = true;
    return s;
  }
  // The words are the address's bytes in memory order, as ip_be above.
  s.ip6 = Ipv6{};
  std::memcpy(s.ip6->bytes.data(), w.data(), 16);
  s.holds_ipv4 = *s.ip6 == Ipv6{};  // [::]: takes the IPv4 port too unless IPV6_V6ONLY
  return s;
}

bool bind_collides(const PublishedPort& p, uint32_t bound_ip_be, uint16_t port, uint8_t proto) {
  if (p.port != port || p.proto != proto) return false;
  return bound_ip_be == 0 || p.host_ip_be == 0 || bound_ip_be == p.host_ip_be;
}

bool bind_collides(const PublishedPort& p, const Ipv6& bound, uint16_t port, uint8_t proto) {
  if (!p.host_ip6 || p.port != port || p.proto != proto) return false;
  return bound == Ipv6{} || *p.host_ip6 == Ipv6{} || bound == *p.host_ip6;
}

std::vector<PublishedPort> published_ports(const std::vector<PublishEntry>& publish) {
  std::vector<PublishedPort> out;
  out.reserve(publish.size());
  for (const auto& e : publish)
    out.push_back({e.key.host_ip, ntohs(e.key.port), e.key.proto, e.text, e.container});
  return out;
}

std::vector<PublishedPort> published_ports(const std::vector<Publish6Entry>& publish6) {
  std::vector<PublishedPort> out;
  out.reserve(publish6.size());
  for (const auto& e : publish6) {
    Ipv6 host;
    std::copy(std::begin(e.key.host_ip.b), std::end(e.key.host_ip.b), host.bytes.begin());
    out.push_back({0, ntohs(e.key.port), e.key.proto, e.text, e.container, host});
  }
  return out;
}

namespace {

// A process that applies again and again (the agent) keeps the socket
// programs it loaded: checking the hooks after each apply then costs a few
// system calls instead of a verification of every program (~2 ms). Kept only
// while every map of theirs is still the one pinned: a pin made anew (a
// `moat down` and up in between) means programs that serve no map left.
struct KeptSockPrograms {
  std::string pin_dir;
  Skeleton<sock_bpf> skel;
};
bool g_keep_sock = false;
std::optional<KeptSockPrograms> g_kept_sock;

// The ids of the maps pinned in pin_dir (link and program pins are not maps).
std::optional<std::set<uint32_t>> pinned_map_ids(const std::string& pin_dir) {
  std::set<uint32_t> ids;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(pin_dir, ec)) {
    std::string file = e.path().filename();
    if (file.rfind(kLinkPrefix, 0) == 0 || file.rfind("prog_", 0) == 0) continue;
    Fd fd(bpf_obj_get(e.path().c_str()));
    bpf_map_info info{};
    uint32_t len = sizeof(info);
    if (!fd.ok() || bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) return std::nullopt;
    ids.insert(info.id);
  }
  if (ec) return std::nullopt;
  return ids;
}

// The programs links_as_recorded() last found served by pinned maps only,
// with the pin directory's stamp taken before (keep_sock_programs()): a
// program's maps never change, so while the stamp holds they need not be
// asked again. The links themselves are: one can be detached unpinned.
struct ServedProgs {
  std::string pin_dir;
  PinDirStamp stamp;
  std::set<uint32_t> prog_ids;
};
std::optional<ServedProgs> g_served;

// Whether the links `prev` recorded are exactly the link pins, each still
// attached and running the program recorded, loaded from this binary's
// object, and whether every map those programs use is pinned now (a map
// pinned anew, after a `moat down` and up, is served by no old program) or
// their own (.rodata, .bss: never pinned). Anything else: false, and the
// caller loads the object and judges each link as before.
bool links_as_recorded(const std::string& pin_dir, const SockLinks& prev) {
  if (prev.objects != sock_object_fingerprint() || prev.links.empty()) return false;
  auto stamp = g_keep_sock ? pin_dir_stamp(pin_dir) : std::nullopt;
  const bool vouched =
      stamp && g_served && g_served->pin_dir == pin_dir && g_served->stamp == *stamp;
  if (!vouched) g_served.reset();
  std::set<uint32_t> served;
  std::error_code ec;
  auto pins = link_pin_names(pin_dir, ec);
  if (ec || pins.size() != prev.links.size()) return false;
  std::optional<std::set<uint32_t>> maps;
  for (const auto& [name, want] : prev.links) {
    if (!pins.contains(name)) return false;
    Fd link(bpf_obj_get(link_pin(pin_dir, name).c_str()));
    if (!link.ok()) return false;
    auto info = link_info(link.get());
    if (!info || info->type != BPF_LINK_TYPE_CGROUP || info->cgroup.cgroup_id == 0 ||
        info->cgroup.attach_type != want.attach_type || info->prog_id != want.prog_id)
      return false;
    served.insert(info->prog_id);
    if (vouched && g_served->prog_ids.contains(info->prog_id)) continue;
    Fd prog(bpf_prog_get_fd_by_id(info->prog_id));
    if (!prog.ok()) return false;
    auto id = prog_identity(prog.get());
    if (!id) return false;
    for (uint32_t map_id : id->map_ids) {
      Fd m(bpf_map_get_fd_by_id(map_id));
      bpf_map_info mi{};
      uint32_t len = sizeof(mi);
      if (!m.ok() || bpf_obj_get_info_by_fd(m.get(), &mi, &len) != 0) return false;
      if (std::strchr(mi.name, '.')) continue;
      if (!maps && !(maps = pinned_map_ids(pin_dir))) return false;
      if (!maps->contains(map_id)) return false;
    }
  }
  if (stamp) g_served = ServedProgs{pin_dir, std::move(*stamp), std::move(served)};
  return true;
}

// host_cfg through its pin, as `want`; whether it changed (would, dry_run).
Result<bool> put_host_cfg(bpf_map* map, const std::string& pin_dir, const moat_host_cfg& want,
                          bool dry_run) {
  Fd pinned;
  int fd = map ? bpf_map__fd(map) : -1;
  if (!map) {
    pinned = Fd(bpf_obj_get((pin_dir + "/host_cfg").c_str()));
    if (!pinned.ok()) return fail_errno("open the pinned map host_cfg", errno);
    fd = pinned.get();
  }
  uint32_t zero = 0;
  moat_host_cfg have{};
  if (bpf_map_lookup_elem(fd, &zero, &have) != 0) return fail_errno("read map host_cfg", errno);
  if (have.netns_cookie == want.netns_cookie && have.flags == want.flags) return false;
  if (!dry_run && bpf_map_update_elem(fd, &zero, &want, 0) != 0)
    return fail_errno("write map host_cfg", errno);
  return true;
}

Result<Skeleton<sock_bpf>> sock_programs(const std::string& pin_dir) {
  if (g_kept_sock) {
    KeptSockPrograms k = std::move(*g_kept_sock);
    g_kept_sock.reset();
    if (k.pin_dir == pin_dir && k.skel.same_pins(pin_dir)) return std::move(k.skel);
  }
  return load_pinned<sock_bpf>(pin_dir);
}

}  // namespace

// ---- public ----------------------------------------------------------------------------------

void keep_sock_programs(bool on) {
  g_keep_sock = on;
  if (!on) g_kept_sock.reset(), g_served.reset();
}

void drop_kept_sock_programs() {
  g_kept_sock.reset();
  g_served.reset();
}

Result<bool> ensure_sock_hooks(const std::string& pin_dir, bool dry_run, bool runtime_binds,
                               const SockLinks* prev, SockLinks* now) {
  // A dry run must not create a pin, which loading would do for a missing map.
  if (dry_run && (!fs::is_directory(pin_dir) || !all_maps_pinned(pin_dir))) return true;
  if (!fs::is_directory(pin_dir))
    return fail("no pinned maps under " + pin_dir + ": load the endpoint programs first", ENOENT);

  auto cookie = netns_cookie();
  if (!cookie) return std::unexpected(cookie.error());
  moat_host_cfg want{*cookie, runtime_binds ? MOAT_HOST_F_RUNTIME_BINDS : 0u, 0};
  if (prev && links_as_recorded(pin_dir, *prev)) {
    auto changed = put_host_cfg(nullptr, pin_dir, want, dry_run);
    if (changed.has_value() && now && !dry_run) *now = *prev;
    return changed;
  }

  auto skel = sock_programs(pin_dir);
  if (!skel) return std::unexpected(skel.error());
  auto cfg_changed = put_host_cfg((*skel)->maps.host_cfg, pin_dir, want, dry_run);
  if (!cfg_changed) return std::unexpected(cfg_changed.error());
  bool changed = *cfg_changed;

  std::optional<Fd> cgroup;  // opened on first need
  std::set<std::string> names;
  bpf_program* prog;
  bpf_object__for_each_program(prog, (*skel)->obj) {
    std::string name = bpf_program__name(prog);
    names.insert(name);
    std::string path = link_pin(pin_dir, name);
    auto plan = plan_link(path, prog);
    if (!plan) return std::unexpected(plan.error());
    if (plan->action == LinkAction::kKeep) continue;
    changed = true;
    if (dry_run) continue;

    if (plan->action == LinkAction::kUpdate) {
      bpf_link_update_opts opts{};
      opts.sz = sizeof(opts);
      opts.flags = BPF_F_REPLACE;
      opts.old_prog_fd = plan->old_prog.get();
      if (int rc = bpf_link_update(plan->link.get(), bpf_program__fd(prog), &opts); rc)
        return fail_errno("swap the program of " + path, rc);
      continue;
    }
    if (plan->action == LinkAction::kRecreate && unlink(path.c_str()) != 0 && errno != ENOENT)
      return fail_errno("remove stale link pin " + path, errno);
    if (!cgroup) {
      auto fd = open_cgroup2_root();
      if (!fd) return std::unexpected(fd.error());
      cgroup = std::move(*fd);
    }
    Link link(bpf_program__attach_cgroup(prog, cgroup->get()));
    if (!link) return fail_errno("attach " + name + " to the cgroup2 root", errno);
    if (int rc = bpf_link__pin(link.get(), path.c_str()); rc)
      return fail_errno("pin link " + path, rc);  // the link goes with its fd
  }

  for (const auto& stale : stale_link_pins(pin_dir, names)) {
    changed = true;
    if (!dry_run && unlink(stale.c_str()) != 0 && errno != ENOENT)
      return fail_errno("remove link pin " + stale.string(), errno);
  }
  // What runs now, as the kernel says: a link kept runs the program an
  // earlier load left, the same as this one's but not this one.
  if (now && !dry_run) {
    SockLinks out;
    out.objects = sock_object_fingerprint();
    for (const auto& name : names) {
      Fd link(bpf_obj_get(link_pin(pin_dir, name).c_str()));
      if (!link.ok()) return fail_errno("open pinned link " + link_pin(pin_dir, name), errno);
      auto info = link_info(link.get());
      if (!info) return std::unexpected(info.error());
      out.links[name] = {info->prog_id, info->cgroup.attach_type};
    }
    *now = std::move(out);
  }
  if (g_keep_sock && !dry_run) g_kept_sock = KeptSockPrograms{pin_dir, std::move(*skel)};
  return changed;
}

json SockLinks::to_json() const {
  json l = json::object();
  for (const auto& [name, link] : links)
    l[name] = {{"prog_id", link.prog_id}, {"attach_type", link.attach_type}};
  return {{"objects", objects}, {"links", l}};
}

std::optional<SockLinks> SockLinks::from_json(const json& j) {
  if (!j.is_object() || !j.contains("objects") || !j["objects"].is_string() ||
      !j.contains("links") || !j["links"].is_object())
    return std::nullopt;
  SockLinks out;
  out.objects = j["objects"].get<std::string>();
  for (const auto& [name, l] : j["links"].items()) {
    if (!l.is_object() || !l.contains("prog_id") || !l["prog_id"].is_number_unsigned() ||
        !l.contains("attach_type") || !l["attach_type"].is_number_unsigned())
      return std::nullopt;
    out.links[name] = {l["prog_id"].get<uint32_t>(), l["attach_type"].get<uint32_t>()};
  }
  return out;
}

Result<json> sock_hooks_status(const std::string& pin_dir) {
  std::error_code ec;
  json out = json::array();
  for (const auto& hook : link_pin_names(pin_dir, ec)) {  // sorted by hook
    fs::path path = link_pin(pin_dir, hook);
    Fd fd(bpf_obj_get(path.c_str()));
    if (!fd.ok()) return fail_errno("open pinned link " + path.string(), errno);
    auto info = link_info(fd.get());
    if (!info) return std::unexpected(info.error());
    json row = {
        {"hook", hook}, {"link_id", info->id}, {"prog_id", info->prog_id}, {"pin", path.string()}};
    if (info->type == BPF_LINK_TYPE_CGROUP) {
      const char* type =
          libbpf_bpf_attach_type_str(static_cast<bpf_attach_type>(info->cgroup.attach_type));
      row["attach_type"] = type ? type : std::to_string(info->cgroup.attach_type);
      row["cgroup_id"] = info->cgroup.cgroup_id;
      row["attached"] = info->cgroup.cgroup_id != 0;
    } else {
      row["attached"] = false;
    }
    out.push_back(row);
  }
  return out;
}

Result<void> check_ports_free(const std::vector<PublishedPort>& ports) {
  if (ports.empty()) return {};
  struct Source {
    const char* file;
    uint8_t proto;
    bool v6;
  };
  std::vector<std::string> problems;
  for (auto [file, proto, v6] :
       {Source{"tcp", IPPROTO_TCP, false}, Source{"udp", IPPROTO_UDP, false},
        Source{"tcp6", IPPROTO_TCP, true}, Source{"udp6", IPPROTO_UDP, true}}) {
    std::string path = std::string("/proc/thread-self/net/") + file;
    std::ifstream in(path);
    if (!in) {
      if (v6) continue;  // IPv6 disabled
      return fail_errno("read " + path, errno ? errno : ENOENT);
    }
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      auto s = parse_proc_net_line(line, v6);
      if (!s) continue;
      // TCP: listeners only. UDP: every bound socket holds its port.
      if (proto == IPPROTO_TCP && s->state != 0x0A) continue;
      for (const auto& p : ports) {
        bool hit = p.host_ip6 ? s->ip6 && bind_collides(p, *s->ip6, s->port, proto)
                              : s->holds_ipv4 && bind_collides(p, s->ip_be, s->port, proto);
        if (!hit) continue;
        std::string where = p.host_ip6     ? "[" + p.host_ip6->str() + "]"
                            : p.host_ip_be ? ip_str(p.host_ip_be)
                                           : "0.0.0.0";
        problems.push_back("port " + where + ":" + std::to_string(p.port) + "/" +
                           proto_name(proto) + " (\"" + p.text + "\" of container \"" +
                           p.container + "\") is taken by a socket " +
                           (proto == IPPROTO_TCP ? "listening" : "bound") + " on " + s->address());
      }
    }
  }
  if (problems.empty()) return {};
  std::string msg;
  for (const auto& p : problems) msg += (msg.empty() ? "" : "; ") + p;
  return fail("cannot publish, already in use in this network namespace: " + msg, EADDRINUSE);
}

}  // namespace moat
