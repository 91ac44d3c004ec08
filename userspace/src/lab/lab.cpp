// lab.cpp - the built-in lab, built with iproute2 inside namespaces of its own.
//
// Every change goes through `ip -n NS ...` (or a thread/process that has
// joined NS), so the machine's root namespace is never touched. The state file
// /run/moat/labs/L.json is written as an intent log: a namespace, /etc/netns
// directory or listener is recorded before or right after it is made, so
// lab_down can undo a half-built lab, even after a crash, from the file alone.
#include "lab/lab.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "lab/proc.h"
#include "util/paths.h"

namespace moat {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const std::string kStateDir = paths::kLabDir;
const std::string kNetnsRunDir = paths::kNetnsDir;
const std::string kNetnsEtcDir = "/etc/netns";  // bind-mounted over /etc by `ip netns exec`

// The uplink is the same in every lab: each lab has namespaces of its own.
const std::string kUplinkHostIp = "198.18.0.1";
const std::string kUplinkOutsideIp = "198.18.0.2";
const std::string kUplinkPrefixLen = "24";
const std::string kInternetServerIp = "198.19.0.1";  // an address "on the internet"
const std::string kUplinkIf = "uplink0";
constexpr uint16_t kInternetServerPort = 80;  // tcp and udp, answers with the client's address
// The same over IPv6, in labs with an IPv6 network: the uplink's addresses,
// an IPv6 "internet server" (its own port, so waiting for it is exact), and
// the host's IPv6 default route through the outside.
const std::string kUplinkHostIp6 = "2001:db8:ff::1";
const std::string kUplinkOutsideIp6 = "2001:db8:ff::2";
const std::string kInternetServerIp6 = "2001:db8:2::53";
constexpr uint16_t kInternetServerPort6 = 81;

// Generous: socat and python start slowly on a loaded 2-CPU machine, and the
// wait ends as soon as every listener is up.
constexpr auto kListenerTimeout = std::chrono::seconds(30);
constexpr auto kListenerPoll = std::chrono::milliseconds(20);

// --- names ------------------------------------------------------------------

std::string ns_prefix(const std::string& lab) { return "moat-" + lab + "-"; }
std::string container_ns_prefix(const std::string& lab) { return ns_prefix(lab) + "c-"; }
std::string bridge_name(size_t network) { return "mbr" + std::to_string(network); }
std::string host_veth_name(size_t container, size_t attachment) {
  return "mve" + std::to_string(container) + "n" + std::to_string(attachment);
}
std::string container_if_name(size_t attachment) { return "eth" + std::to_string(attachment); }
std::string state_path(const std::string& lab) { return kStateDir + "/" + lab + ".json"; }

// Docker's container name rule; the name becomes part of a path under
// /run/netns and /etc/netns, so it is checked here too, not only by the parser.
bool valid_container_name(const std::string& name) {
  auto ok = [](char c, bool first) {
    if (std::isalnum(static_cast<unsigned char>(c))) return true;
    return !first && (c == '_' || c == '.' || c == '-');
  };
  if (name.empty() || name.size() > 63) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (!ok(name[i], i == 0)) return false;
  }
  return true;
}

// --- state file ---------------------------------------------------------------

struct Listener {
  pid_t pid = 0;
  std::string ns;
  std::string container;
  std::string protocol;  // "tcp" or "udp"
  uint16_t port = 0;
};

struct LabState {
  std::string name;
  std::string source;
  bool complete = false;                // false while lab_up is still building
  std::vector<std::string> namespaces;  // in creation order
  std::vector<std::string> netns_dirs;  // /etc/netns/<ns> directories
  std::vector<Listener> listeners;
  json networks = json::array();  // topology summary, for lab_info and people
  json containers = json::array();
};

json to_json(const LabState& s) {
  json listeners = json::array();
  for (const auto& l : s.listeners) {
    listeners.push_back({{"pid", l.pid},
                         {"namespace", l.ns},
                         {"container", l.container},
                         {"protocol", l.protocol},
                         {"port", l.port}});
  }
  return {{"name", s.name},
          {"source", s.source},
          {"complete", s.complete},
          {"host_namespace", lab_host_ns(s.name)},
          {"outside_namespace", lab_outside_ns(s.name)},
          {"uplink",
           {{"host_ip", kUplinkHostIp},
            {"outside_ip", kUplinkOutsideIp},
            {"prefix_len", std::stoi(kUplinkPrefixLen)},
            {"internet_ip", kInternetServerIp},
            {"internet_port", kInternetServerPort}}},
          {"namespaces", s.namespaces},
          {"netns_dirs", s.netns_dirs},
          {"listeners", listeners},
          {"networks", s.networks},
          {"containers", s.containers}};
}

LabState from_json(const json& j) {  // throws json::exception on a malformed file
  LabState s;
  s.name = j.at("name").get<std::string>();
  s.source = j.value("source", "");
  s.complete = j.value("complete", false);
  s.namespaces = j.value("namespaces", std::vector<std::string>{});
  s.netns_dirs = j.value("netns_dirs", std::vector<std::string>{});
  for (const auto& l : j.value("listeners", json::array())) {
    s.listeners.push_back({l.at("pid").get<pid_t>(), l.at("namespace").get<std::string>(),
                           l.value("container", ""), l.value("protocol", ""),
                           l.value("port", uint16_t{0})});
  }
  s.networks = j.value("networks", json::array());
  s.containers = j.value("containers", json::array());
  return s;
}

// Writes the whole file to a temporary name and renames it, so a reader (or a
// crash) never sees half a state file.
Result<void> save_state(const LabState& s) {
  std::string path = state_path(s.name);
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << to_json(s).dump(2) << "\n";
    if (!f.flush()) return fail("write " + tmp, errno);
  }
  if (::rename(tmp.c_str(), path.c_str()) < 0) return fail("rename " + tmp, errno);
  return {};
}

// Creates the state file only if it does not exist yet: the claim on the lab
// name, so two concurrent `lab up` of the same name cannot both proceed.
Result<void> claim_state(const LabState& s) {
  std::error_code ec;
  fs::create_directories(kStateDir, ec);
  if (ec) return fail("create " + kStateDir, ec.value());
  std::string path = state_path(s.name);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    if (errno == EEXIST) {
      return fail("lab " + s.name + " already exists (moat lab down " + s.name + ")");
    }
    return fail("create " + path, errno);
  }
  ::close(fd);
  return save_state(s);
}

// nullopt when the lab has no state file; an Error when the file is unreadable.
Result<std::optional<LabState>> load_state(const std::string& lab) {
  std::string path = state_path(lab);
  std::ifstream f(path);
  if (!f) {
    if (errno == ENOENT) return std::optional<LabState>{};
    return fail("read " + path, errno);
  }
  try {
    return std::optional<LabState>{from_json(json::parse(f))};
  } catch (const json::exception& e) {
    return fail("state file " + path + " is damaged (" + e.what() + ")");
  }
}

// The state of a lab that must exist (lab info, exec, targets).
Result<LabState> existing_state(const std::string& lab) {
  std::string why;
  if (!valid_lab_name(lab, &why)) return fail(why);
  auto loaded = load_state(lab);
  if (!loaded) return std::unexpected(loaded.error());
  if (!*loaded) return fail("no lab " + lab + " (moat lab list shows the labs)");
  return std::move(**loaded);
}

std::vector<std::string> lab_names_on_disk() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(kStateDir, ec)) {
    if (e.path().extension() == ".json") names.push_back(e.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// --- namespaces and commands -----------------------------------------------

bool netns_exists(const std::string& ns) { return fs::exists(kNetnsRunDir + "/" + ns); }

// `ip -n NS args...`: every lab change names its namespace explicitly.
Result<void> ip_in(const std::string& ns, std::initializer_list<std::string> args) {
  std::vector<std::string> argv{"ip", "-n", ns};
  argv.insert(argv.end(), args);
  if (auto r = run_checked(argv); !r) return std::unexpected(r.error());
  return {};
}

// Entries of `dir` (/run/netns or /etc/netns) whose names say they belong to
// `lab`: what a lab leaves behind when its state file is lost. Lab names may
// contain '-', so "moat-a-c-x" could also be lab "a-c"'s; names another lab's
// state file records are left alone.
std::vector<std::string> orphans_in(const std::string& dir, const std::string& lab) {
  std::set<std::string> claimed;
  for (const auto& other : lab_names_on_disk()) {
    if (other == lab) continue;
    if (auto s = load_state(other); s && *s) {
      claimed.insert((*s)->namespaces.begin(), (*s)->namespaces.end());
    }
  }
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::string n = e.path().filename().string();
    bool ours = n == lab_host_ns(lab) || n == lab_outside_ns(lab) ||
                n.starts_with(container_ns_prefix(lab));
    if (ours && !claimed.contains(n)) found.push_back(n);
  }
  std::sort(found.begin(), found.end());
  return found;
}

// A sysctl under /proc/sys/net is resolved against the network namespace of
// the task that opens it, so a short-lived thread joins `ns`, writes and ends;
// the rest of the process never leaves the root namespace.
Result<void> write_ns_sysctl(const std::string& ns, const std::string& key,
                             const std::string& value) {
  std::string path = key;
  std::replace(path.begin(), path.end(), '.', '/');
  path = "/proc/sys/" + path;
  Error error;
  std::thread worker([&] {
    int nsfd = ::open((kNetnsRunDir + "/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
    if (nsfd < 0) {
      error = {errno, "open namespace " + ns};
      return;
    }
    int rc = ::setns(nsfd, CLONE_NEWNET);
    int setns_errno = errno;
    ::close(nsfd);
    if (rc < 0) {  // never fall through to a write in the root namespace
      error = {setns_errno, "join namespace " + ns};
      return;
    }
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ::write(fd, value.data(), value.size()) != ssize_t(value.size())) {
      error = {errno, "set " + key + "=" + value + " in " + ns};
    }
    if (fd >= 0) ::close(fd);
  });
  worker.join();
  if (!error.context.empty()) return std::unexpected(error);
  return {};
}

bool in_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (!dir.empty() && ::access((dir + "/" + program).c_str(), X_OK) == 0) return true;
  }
  return false;
}

// Starts argv inside namespace `ns` as a daemon: its own session, stdio on
// /dev/null, and (double fork) a child of init rather than of the caller, so
// it outlives `moat lab up` and never lingers as a zombie of a long-lived
// caller such as a test. Returns its pid once it has exec'd.
Result<pid_t> spawn_daemon_in_ns(const std::string& ns, const std::vector<std::string>& argv) {
  // Everything the children need is prepared before fork: after fork only
  // async-signal-safe calls are allowed.
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int nsfd = ::open((kNetnsRunDir + "/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
  if (nsfd < 0) return fail("open namespace " + ns, errno);
  int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  int report[2];  // children -> parent: {kind, value} records; closes on exec
  if (devnull < 0 || ::pipe2(report, O_CLOEXEC) < 0) {
    int e = errno;
    ::close(nsfd);
    if (devnull >= 0) ::close(devnull);
    return fail("spawn " + argv[0], e);
  }
  enum : int { kPid = 1, kFailed = 2 };
  auto send = [&](int kind, int value) {
    int rec[2] = {kind, value};
    [[maybe_unused]] auto n = ::write(report[1], rec, sizeof rec);
  };

  pid_t middle = ::fork();
  if (middle < 0) {
    int e = errno;
    ::close(nsfd), ::close(devnull), ::close(report[0]), ::close(report[1]);
    return fail("fork", e);
  }
  if (middle == 0) {
    ::setsid();
    if (::setns(nsfd, CLONE_NEWNET) < 0) {
      send(kFailed, errno);
      ::_exit(1);
    }
    pid_t daemon = ::fork();
    if (daemon < 0) send(kFailed, errno);
    if (daemon != 0) {
      if (daemon > 0) send(kPid, daemon);
      ::_exit(0);
    }
    ::dup2(devnull, 0), ::dup2(devnull, 1), ::dup2(devnull, 2);
    ::execvp(args[0], args.data());
    send(kFailed, errno);
    ::_exit(127);
  }

  ::close(nsfd), ::close(devnull), ::close(report[1]);
  int status = 0;
  while (::waitpid(middle, &status, 0) < 0 && errno == EINTR) {
  }
  // EOF arrives once the middle process has exited and the daemon has exec'd.
  pid_t daemon = -1;
  int failure = 0;
  int rec[2];
  ssize_t n;
  while ((n = ::read(report[0], rec, sizeof rec)) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n != sizeof rec) break;
    if (rec[0] == kPid) daemon = rec[1];
    if (rec[0] == kFailed) failure = rec[1];
  }
  ::close(report[0]);
  if (failure != 0 || daemon < 0) {
    return fail("start `" + argv[0] + "` in " + ns, failure ? failure : ECHILD);
  }
  return daemon;
}

// The inode of a namespace handle: two handles name the same namespace iff equal.
std::optional<ino_t> ns_inode(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) < 0) return std::nullopt;
  return st.st_ino;
}

// True once `pid` has exited. A zombie counts as exited: listeners are
// children of init, which may take a while to reap them.
bool process_gone(pid_t pid) {
  if (::kill(pid, 0) < 0 && errno == ESRCH) return true;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return true;
  auto paren = line.rfind(')');  // the command name may itself contain ") "
  return paren != std::string::npos && line.compare(paren, 3, ") Z") == 0;
}

// --- lab_up steps -------------------------------------------------------------

// A namespace is logged in the state before it is made, so a crash in between
// still leaves lab_down something to find (it skips names that do not exist).
Result<void> add_namespace(LabState& st, const std::string& ns) {
  st.namespaces.push_back(ns);
  if (auto r = save_state(st); !r) return r;
  if (auto r = run_checked({"ip", "netns", "add", ns}); !r) return std::unexpected(r.error());
  return ip_in(ns, {"link", "set", "lo", "up"});
}

// IPv6 in a lab namespace: forwarding (the lab host routes between networks
// for both families, so what stops traffic is moat, not a missing route),
// and no duplicate address detection: an address is usable at once, where
// DAD would hold it tentative for a second, and probes would race it.
Result<void> lab_ipv6_sysctls(const std::string& ns) {
  for (const char* key : {"net.ipv6.conf.all.forwarding", "net.ipv6.conf.default.forwarding"})
    if (auto r = write_ns_sysctl(ns, key, "1"); !r) return r;
  for (const char* key : {"net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"})
    if (auto r = write_ns_sysctl(ns, key, "0"); !r) return r;
  return {};
}

Result<void> build_host_and_outside(LabState& st, const Config& cfg) {
  const std::string host = lab_host_ns(st.name);
  const std::string out = lab_outside_ns(st.name);
  if (auto r = add_namespace(st, host); !r) return r;
  if (auto r = write_ns_sysctl(host, "net.ipv4.ip_forward", "1"); !r) return r;
  if (auto r = lab_ipv6_sysctls(host); !r) return r;
  if (auto r = add_namespace(st, out); !r) return r;

  // The uplink: both ends are called uplink0, each in its own namespace.
  if (auto r = ip_in(host, {"link", "add", kUplinkIf, "type", "veth", "peer", "name", kUplinkIf,
                            "netns", out});
      !r) {
    return r;
  }
  for (const auto& [ns, ip] : {std::pair{host, kUplinkHostIp}, std::pair{out, kUplinkOutsideIp}}) {
    if (auto r = ip_in(ns, {"addr", "add", ip + "/" + kUplinkPrefixLen, "dev", kUplinkIf}); !r) {
      return r;
    }
    if (auto r = ip_in(ns, {"link", "set", kUplinkIf, "up"}); !r) return r;
  }
  // An "internet server" address on lo: a dummy device would be tidier, but
  // not every kernel has the dummy driver, and a /32 keeps lo from claiming
  // the whole prefix.
  if (auto r = ip_in(out, {"addr", "add", kInternetServerIp + "/32", "dev", "lo"}); !r) return r;
  // The host reaches "the internet" through the outside; the outside gets no
  // route back to the container subnets (that is masquerade's job).
  if (auto r = ip_in(host, {"route", "add", "default", "via", kUplinkOutsideIp}); !r) return r;
  if (lab_has_ipv6(cfg)) {
    for (const auto& [ns, ip] :
         {std::pair{host, kUplinkHostIp6}, std::pair{out, kUplinkOutsideIp6}}) {
      if (auto r = ip_in(ns, {"-6", "addr", "add", ip + "/64", "dev", kUplinkIf, "nodad"}); !r)
        return r;
    }
    if (auto r = ip_in(out, {"-6", "addr", "add", kInternetServerIp6 + "/128", "dev", "lo"}); !r)
      return r;
    if (auto r = ip_in(host, {"-6", "route", "add", "default", "via", kUplinkOutsideIp6}); !r)
      return r;
  }

  for (size_t n = 0; n < cfg.networks.size(); ++n) {
    const Network& net = cfg.networks[n];
    const std::string br = bridge_name(n);
    const std::string gw = net.gateway.str() + "/" + std::to_string(net.subnet.len);
    if (auto r = ip_in(host, {"link", "add", br, "type", "bridge"}); !r) return r;
    if (auto r = ip_in(host, {"addr", "add", gw, "dev", br}); !r) return r;
    if (net.subnet6) {
      const std::string gw6 = net.gateway6.str() + "/" + std::to_string(net.subnet6->len);
      if (auto r = ip_in(host, {"-6", "addr", "add", gw6, "dev", br, "nodad"}); !r) return r;
    }
    if (auto r = ip_in(host, {"link", "set", br, "up"}); !r) return r;
    json row{{"name", net.name},           {"bridge", br},
             {"subnet", net.subnet.str()}, {"gateway", net.gateway.str()},
             {"internal", net.internal},   {"icc", net.icc}};
    if (net.subnet6) {
      row["subnet6"] = net.subnet6->str();
      row["gateway6"] = net.gateway6.str();
    }
    st.networks.push_back(std::move(row));
  }
  return save_state(st);
}

std::optional<size_t> network_index(const Config& cfg, const std::string& name) {
  for (size_t n = 0; n < cfg.networks.size(); ++n) {
    if (cfg.networks[n].name == name) return n;
  }
  return std::nullopt;
}

// `other`'s address on the first network (in c's order) it shares with c.
std::optional<Ipv4> address_on_shared_network(const Container& c, const Container& other) {
  for (const Attachment& mine : c.networks) {
    for (const Attachment& theirs : other.networks) {
      if (theirs.network == mine.network) return theirs.ip;
    }
  }
  return std::nullopt;
}

// What Docker's embedded DNS would answer inside container `c`: its own name,
// and every container sharing a network with it.
std::string hosts_file(const Config& cfg, const Container& c, const std::string& lab) {
  std::string s = "# moat lab " + lab + ": the names Docker's embedded DNS would answer\n";
  s += "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";
  if (!c.networks.empty()) s += c.networks.front().ip.str() + "\t" + c.name + "\n";
  for (const Container& other : cfg.containers) {
    if (&other == &c) continue;
    if (auto ip = address_on_shared_network(c, other)) s += ip->str() + "\t" + other.name + "\n";
  }
  return s;
}

Result<void> write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::trunc);
  f << text;
  if (!f.flush()) return fail("write " + path, errno);
  return {};
}

Result<void> build_container(LabState& st, Config& cfg, size_t i) {
  Container& c = cfg.containers[i];
  const std::string host = lab_host_ns(st.name);
  const std::string ns = lab_container_ns(st.name, c.name);
  if (auto r = add_namespace(st, ns); !r) return r;
  if (auto r = lab_ipv6_sysctls(ns); !r) return r;

  // Name resolution: `ip netns exec` bind-mounts these over /etc/hosts and
  // /etc/resolv.conf, and the empty resolv.conf keeps lookups off real DNS.
  const std::string etc = kNetnsEtcDir + "/" + ns;
  st.netns_dirs.push_back(etc);
  if (auto r = save_state(st); !r) return r;
  std::error_code ec;
  fs::create_directories(etc, ec);
  if (ec) return fail("create " + etc, ec.value());
  if (auto r = write_file(etc + "/hosts", hosts_file(cfg, c, st.name)); !r) return r;
  if (auto r = write_file(etc + "/resolv.conf",
                          "# moat lab " + st.name + ": no DNS server, names are in /etc/hosts\n");
      !r) {
    return r;
  }

  json interfaces = json::array();
  std::optional<std::string> default_gw, default_gw6;
  for (size_t j = 0; j < c.networks.size(); ++j) {
    Attachment& a = c.networks[j];
    auto n = network_index(cfg, a.network);
    if (!n) return fail("container " + c.name + ": unknown network " + a.network);
    const Network& net = cfg.networks[*n];
    const std::string veth = host_veth_name(i, j);
    const std::string eth = container_if_name(j);
    const std::string addr = a.ip.str() + "/" + std::to_string(net.subnet.len);
    if (auto r =
            ip_in(host, {"link", "add", veth, "type", "veth", "peer", "name", eth, "netns", ns});
        !r) {
      return r;
    }
    if (auto r = ip_in(host, {"link", "set", veth, "master", bridge_name(*n), "up"}); !r) return r;
    if (auto r = ip_in(ns, {"addr", "add", addr, "dev", eth}); !r) return r;
    std::string addr6;
    if (a.ip6 && net.subnet6) {
      addr6 = a.ip6->str() + "/" + std::to_string(net.subnet6->len);
      if (auto r = ip_in(ns, {"-6", "addr", "add", addr6, "dev", eth, "nodad"}); !r) return r;
    }
    if (auto r = ip_in(ns, {"link", "set", eth, "up"}); !r) return r;
    a.host_interface = veth;
    // Docker gives no default route through an internal network.
    if (!default_gw && !net.internal) default_gw = net.gateway.str();
    if (!default_gw6 && !net.internal && !addr6.empty()) default_gw6 = net.gateway6.str();
    json row{{"network", a.network},
             {"interface", eth},
             {"host_interface", veth},
             {"address", addr},
             {"gateway", net.gateway.str()}};
    if (!addr6.empty()) {
      row["address6"] = addr6;
      row["gateway6"] = net.gateway6.str();
    }
    interfaces.push_back(std::move(row));
  }
  if (default_gw) {
    if (auto r = ip_in(ns, {"route", "add", "default", "via", *default_gw}); !r) return r;
  }
  if (default_gw6) {
    if (auto r = ip_in(ns, {"-6", "route", "add", "default", "via", *default_gw6}); !r) return r;
  }
  st.containers.push_back({{"name", c.name},
                           {"namespace", ns},
                           {"interfaces", interfaces},
                           {"default_gateway", default_gw ? json(*default_gw) : json(nullptr)}});
  return save_state(st);
}

// Every port a container's service should answer on: EXPOSE plus the
// container side of every published range. SCTP is left out: socat has no
// listener for it here.
std::set<std::pair<Protocol, uint16_t>> listener_ports(const Container& c) {
  std::set<std::pair<Protocol, uint16_t>> ports;
  for (const Expose& e : c.expose) {
    if (e.protocol != Protocol::sctp) ports.insert({e.protocol, e.port});
  }
  for (const Publish& p : c.publish) {
    if (p.protocol == Protocol::sctp) continue;
    for (uint32_t k = 0; k < p.count; ++k) {
      ports.insert({p.protocol, static_cast<uint16_t>(p.container_port + k)});
    }
  }
  return ports;
}

// The (protocol, port) pairs listening in `ns`, from one `ss` call.
Result<std::set<std::pair<std::string, uint16_t>>> listening_in(const std::string& ns) {
  auto out = run_checked({"ss", "-N", ns, "-H", "-l", "-n", "-t", "-u"});
  if (!out) return std::unexpected(out.error());
  std::set<std::pair<std::string, uint16_t>> found;
  std::istringstream lines(*out);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream cols(line);
    std::string netid, state, recvq, sendq, local;
    if (!(cols >> netid >> state >> recvq >> sendq >> local)) continue;
    auto colon = local.rfind(':');
    if (colon == std::string::npos) continue;
    int port = std::atoi(local.c_str() + colon + 1);
    if (port > 0 && port < 65536) found.insert({netid, static_cast<uint16_t>(port)});
  }
  return found;
}

std::string describe(const Listener& l) {
  return (l.container.empty() ? "internet server" : l.container) + " " + std::to_string(l.port) +
         "/" + l.protocol;
}

// Tests must never race a listener that is not up yet: wait (bounded) until
// every one of them shows up in `ss`, and notice one that died on the way.
Result<void> wait_for_listeners(const std::vector<Listener>& listeners) {
  auto deadline = std::chrono::steady_clock::now() + kListenerTimeout;
  std::vector<Listener> pending = listeners;
  while (true) {
    std::map<std::string, std::set<std::pair<std::string, uint16_t>>> by_ns;
    for (const auto& l : pending) {
      if (by_ns.contains(l.ns)) continue;
      auto found = listening_in(l.ns);
      if (!found) return std::unexpected(found.error());
      by_ns[l.ns] = std::move(*found);
    }
    std::erase_if(pending, [&](const Listener& l) {
      return by_ns[l.ns].contains({l.protocol, l.port});
    });
    if (pending.empty()) return {};
    for (const auto& l : pending) {
      if (process_gone(l.pid)) {
        return fail("listener for " + describe(l) + " exited at once (pid " +
                    std::to_string(l.pid) + "; port in use?)");
      }
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      std::string which;
      for (const auto& l : pending) which += (which.empty() ? "" : ", ") + describe(l);
      return fail("listeners not listening after " + std::to_string(kListenerTimeout.count()) +
                  " s: " + which);
    }
    std::this_thread::sleep_for(kListenerPoll);
  }
}

// Starts `argv` in `ns` and records it in the state right away, so lab_down
// stops it even when a later step fails.
Result<void> start_listener(LabState& st, std::vector<Listener>& started, const std::string& ns,
                            const std::string& container, Protocol proto, uint16_t port,
                            const std::vector<std::string>& argv) {
  auto pid = spawn_daemon_in_ns(ns, argv);
  if (!pid) return std::unexpected(pid.error());
  Listener l{*pid, ns, container, to_string(proto), port};
  st.listeners.push_back(l);
  started.push_back(l);
  return save_state(st);
}

// A TCP responder: answers the first request line of every connection with
// `reply`, then closes; a client that sends nothing gets no answer (like
// `sed -n 's/.*/NAME/p;q'` behind socat, which it replaces). One process and
// no fork per connection: a probe matrix opens hundreds of connections at
// once, and forking a responder for each took longer than the probes' timeout
// on a 2-CPU machine.
//
// `dual_stack`: one IPv6 socket that takes IPv4 too (a container with an
// IPv6 address); otherwise IPv4 only, as before IPv6 existed.
std::vector<std::string> tcp_responder(uint16_t port, const std::string& reply, bool dual_stack) {
  static const char* kProgram =
      "import selectors, socket, sys\n"
      "answer = (sys.argv[2] + '\\n').encode()\n"
      "v6 = sys.argv[3] == '6'\n"
      "ls = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_STREAM)\n"
      "ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
      "if v6:\n"
      "    ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n"
      "ls.bind(('::' if v6 else '0.0.0.0', int(sys.argv[1])))\n"
      "ls.listen(512)\n"
      "ls.setblocking(False)\n"
      "sel = selectors.DefaultSelector()\n"
      "sel.register(ls, selectors.EVENT_READ, None)\n"
      "def done(c, got):\n"
      "    sel.unregister(c)\n"
      "    try:\n"
      "        if got:\n"
      "            c.setblocking(True); c.settimeout(1); c.sendall(answer)\n"
      "    except OSError:\n"
      "        pass\n"
      "    c.close()\n"
      "while True:\n"
      "    for key, _ in sel.select():\n"
      "        if key.data is None:\n"
      "            try:\n"
      "                c, _ = ls.accept()\n"
      "            except OSError:\n"
      "                continue\n"
      "            c.setblocking(False)\n"
      "            sel.register(c, selectors.EVENT_READ, bytearray())\n"
      "            continue\n"
      "        c, buf = key.fileobj, key.data\n"
      "        try:\n"
      "            data = c.recv(4096)\n"
      "        except BlockingIOError:\n"
      "            continue\n"
      "        except OSError:\n"
      "            data = b''\n"
      "        buf += data\n"
      "        if not data or b'\\n' in buf or len(buf) > 65536:\n"
      "            done(c, len(buf) > 0)\n";
  return {"python3", "-c", kProgram, std::to_string(port), reply, dual_stack ? "6" : "4"};
}

// A UDP responder: answers every datagram with `reply`, or with the
// sender's address when `reply` is empty. Not socat UDP-RECVFROM,fork: its
// children share and connect the listening socket, and under concurrent
// probes a listener now and then stopped answering anyone. An unconnected
// socket that ignores errors cannot get stuck that way.
std::vector<std::string> udp_responder(const std::string& bind_ip, uint16_t port,
                                       const std::string& reply) {
  static const char* kProgram =
      "import socket, sys\n"
      "s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET, "
      "socket.SOCK_DGRAM)\n"
      "if ':' in sys.argv[1]:\n"
      "    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n"
      "s.bind((sys.argv[1], int(sys.argv[2])))\n"
      "while True:\n"
      "    try:\n"
      "        data, peer = s.recvfrom(65535)\n"
      "        s.sendto(((sys.argv[3] or peer[0]) + '\\n').encode(), peer)\n"
      "    except OSError:\n"
      "        pass\n";
  return {"python3", "-c", kProgram, bind_ip, std::to_string(port), reply};
}

// "The internet": a server on kInternetServerIp in the outside namespace, TCP
// and UDP port 80, that answers every request line with the client's address
// as it sees it, so a test can tell a masqueraded source (the uplink address)
// from a container's own one. Part of the topology, so it runs with
// --no-listeners too. Like the container listeners it reads a line before it
// answers; $SOCAT_PEERADDR is set by socat for each connection or datagram.
Result<void> start_internet_server(LabState& st, std::vector<Listener>& started, bool ipv6) {
  const std::string out = lab_outside_ns(st.name);
  const std::string answer = "SYSTEM:while read -r _; do echo \"$SOCAT_PEERADDR\"; done";
  const auto serve = [&](const std::string& listen, const std::string& ip,
                         uint16_t port) -> Result<void> {
    const std::string p = std::to_string(port);
    const std::string bind = ip.find(':') == std::string::npos ? ip : "[" + ip + "]";
    if (auto r = start_listener(
            st, started, out, "", Protocol::tcp, port,
            {"socat", listen + ":" + p + ",bind=" + bind + ",reuseaddr,fork", answer});
        !r) {
      return r;
    }
    return start_listener(st, started, out, "", Protocol::udp, port, udp_responder(ip, port, ""));
  };
  if (auto r = serve("TCP-LISTEN", kInternetServerIp, kInternetServerPort); !r || !ipv6) return r;
  return serve("TCP6-LISTEN", kInternetServerIp6, kInternetServerPort6);
}

Result<void> start_listeners(LabState& st, const Config& cfg, bool per_container) {
  std::vector<Listener> started;
  if (auto r = start_internet_server(st, started, lab_has_ipv6(cfg)); !r) return r;
  if (!per_container) return wait_for_listeners(started);
  for (const Container& c : cfg.containers) {
    const std::string ns = lab_container_ns(st.name, c.name);
    for (const auto& [proto, port] : listener_ports(c)) {
      // Every request is answered with the container's name. The responder
      // reads the request before it answers: an unread request made the
      // socket close with a RST that nc reports instead of the answer. So
      // clients must send a line first (`echo x | nc IP PORT`); one that
      // sends nothing gets no answer.
      bool dual = std::any_of(c.networks.begin(), c.networks.end(),
                              [](const Attachment& a) { return a.ip6.has_value(); });
      std::vector<std::string> argv = proto == Protocol::tcp
                                          ? tcp_responder(port, c.name, dual)
                                          : udp_responder(dual ? "::" : "0.0.0.0", port, c.name);
      if (auto r = start_listener(st, started, ns, c.name, proto, port, argv); !r) return r;
    }
  }
  return wait_for_listeners(started);
}

// Refuses to build over anything already there: our own state file, leftovers
// of an earlier lab of this name, or a namespace we would create.
Result<void> check_free(const Config& cfg, const std::string& lab) {
  const std::string taken = "lab " + lab + " already exists (moat lab down " + lab + ")";
  if (fs::exists(state_path(lab)) || !orphans_in(kNetnsRunDir, lab).empty()) return fail(taken);
  std::vector<std::string> wanted{lab_host_ns(lab), lab_outside_ns(lab)};
  for (const auto& c : cfg.containers) wanted.push_back(lab_container_ns(lab, c.name));
  for (const auto& ns : wanted) {
    if (netns_exists(ns)) {
      return fail("network namespace " + ns + " already exists (it may belong to another lab; " +
                  "see moat lab list)");
    }
  }
  return {};
}

Result<void> check_config(const Config& cfg) {
  for (const auto& c : cfg.containers) {
    if (!valid_container_name(c.name)) {
      return fail("container name \"" + c.name + "\" is not a valid Docker container name");
    }
  }
  return {};
}

void kill_quietly(pid_t pid, int sig) {
  if (pid > 1) ::kill(pid, sig);
}

// SIGTERM to the recorded listeners, but only to a pid that still lives in
// the lab namespace it was started in: pids are reused.
void stop_listeners(const LabState& st) {
  std::vector<pid_t> signalled;
  for (const auto& l : st.listeners) {
    auto want = ns_inode(kNetnsRunDir + "/" + l.ns);
    auto have = ns_inode("/proc/" + std::to_string(l.pid) + "/ns/net");
    if (want && have && *want == *have) {
      kill_quietly(l.pid, SIGTERM);
      signalled.push_back(l.pid);
    }
  }
  // A moment to exit cleanly; whatever is left is killed with the namespace.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
  while (std::chrono::steady_clock::now() < deadline) {
    std::erase_if(signalled, process_gone);
    if (signalled.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// Every process left in `ns` (listener children, `moat lab exec` shells...).
Result<void> kill_namespace_processes(const std::string& ns) {
  auto out = run_checked({"ip", "netns", "pids", ns});
  if (!out) return std::unexpected(out.error());
  std::istringstream pids(*out);
  pid_t pid;
  while (pids >> pid) kill_quietly(pid, SIGKILL);
  return {};
}

}  // namespace

// --- public ------------------------------------------------------------------

std::string lab_host_ns(const std::string& lab) { return ns_prefix(lab) + "host"; }
std::string lab_outside_ns(const std::string& lab) { return ns_prefix(lab) + "out"; }
std::string lab_container_ns(const std::string& lab, const std::string& container) {
  return container_ns_prefix(lab) + container;
}

bool valid_lab_name(const std::string& lab, std::string* why) {
  auto say = [&](const std::string& s) {
    if (why) *why = s;
    return false;
  };
  if (lab.empty()) return say("lab name is empty");
  if (lab.size() > 20) return say("lab name \"" + lab + "\" is longer than 20 characters");
  if (lab.front() == '-') return say("lab name \"" + lab + "\" starts with '-'");
  for (char c : lab) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok) {
      return say("lab name \"" + lab + "\" has '" + std::string(1, c) +
                 "'; use lowercase letters, digits and '-'");
    }
  }
  return true;
}

Result<Config> lab_up(const Config& cfg, const std::string& lab, const LabOptions& opt) {
  std::string why;
  if (!valid_lab_name(lab, &why)) return fail(why);
  if (auto r = check_config(cfg); !r) return std::unexpected(r.error());
  // Checked before anything is built, so the hint is not buried in a teardown.
  // The internet server in the outside namespace always needs socat.
  if (!in_path("socat")) return fail("socat not found: apt-get install socat");
  if (auto r = check_free(cfg, lab); !r) return std::unexpected(r.error());

  LabState st;
  st.name = lab;
  st.source = cfg.source;
  if (auto r = claim_state(st); !r) return std::unexpected(r.error());

  Config result = cfg;
  // Published ports arrive and masquerade leaves through the lab host's uplink,
  // unless the file names uplinks of its own (`host.uplinks`).
  if (result.uplinks.empty()) result.uplinks = {kUplinkIf};
  // Guarded from the first apply on, as lab_bind() makes every later one:
  // without this a lab's bridges took no from_bridge until `lab apply`.
  for (size_t n = 0; n < result.networks.size(); ++n) result.networks[n].bridge = bridge_name(n);
  auto build = [&]() -> Result<void> {
    if (auto r = build_host_and_outside(st, result); !r) return r;
    for (size_t i = 0; i < result.containers.size(); ++i) {
      if (auto r = build_container(st, result, i); !r) return r;
    }
    if (auto r = start_listeners(st, result, opt.start_listeners); !r) return r;
    st.complete = true;
    return save_state(st);
  };
  if (auto r = build(); !r) {
    // Undo everything made so far; the state file lists exactly that.
    Error e = r.error();
    e.context = "lab " + lab + ": " + e.context;
    if (auto down = lab_down(lab); !down) {
      e.context += " (and cleaning up failed: " + down.error().message() + ")";
    }
    return std::unexpected(e);
  }
  return result;
}

Result<void> lab_down(const std::string& lab) {
  std::string why;
  if (!valid_lab_name(lab, &why)) return fail(why);

  auto loaded = load_state(lab);
  std::vector<std::string> namespaces;
  std::vector<std::string> dirs;
  if (loaded && *loaded) {
    stop_listeners(**loaded);
    namespaces = (*loaded)->namespaces;
    dirs = (*loaded)->netns_dirs;
  }
  // Without a (readable) state file, or after a crash, names are the only guide.
  auto add_new = [](std::vector<std::string>& to, const std::string& item) {
    if (std::find(to.begin(), to.end(), item) == to.end()) to.push_back(item);
  };
  for (const auto& ns : orphans_in(kNetnsRunDir, lab)) add_new(namespaces, ns);
  for (const auto& ns : orphans_in(kNetnsEtcDir, lab)) add_new(dirs, kNetnsEtcDir + "/" + ns);

  // Keep going after an error: a half-removed lab is worse than a reported one.
  std::vector<std::string> errors;
  for (const auto& ns : namespaces) {
    if (!netns_exists(ns)) continue;
    if (auto r = kill_namespace_processes(ns); !r) errors.push_back(r.error().message());
  }
  for (auto it = namespaces.rbegin(); it != namespaces.rend(); ++it) {
    if (!netns_exists(*it)) continue;
    if (auto r = run_checked({"ip", "netns", "del", *it}); !r) {
      errors.push_back(r.error().message());
    }
  }
  for (const auto& dir : dirs) {
    // Only ever a directory directly under /etc/netns named like this lab's namespaces.
    fs::path p(dir);
    if (p.parent_path() != kNetnsEtcDir || !p.filename().string().starts_with(ns_prefix(lab))) {
      continue;
    }
    std::error_code ec;
    fs::remove_all(p, ec);
    if (ec) errors.push_back("remove " + dir + ": " + ec.message());
  }
  std::error_code ec;
  fs::remove(state_path(lab), ec);
  fs::remove(state_path(lab) + ".tmp", ec);
  // Leave no empty directories behind; these fail harmlessly when not empty.
  ::rmdir(kNetnsEtcDir.c_str());
  ::rmdir(kStateDir.c_str());
  ::rmdir(fs::path(kStateDir).parent_path().c_str());

  if (errors.empty()) return {};
  std::string msg = "lab " + lab + " down";
  for (const auto& e : errors) msg += "; " + e;
  return fail(msg);
}

Config lab_bind(Config out) {
  for (size_t i = 0; i < out.containers.size(); ++i)
    for (size_t j = 0; j < out.containers[i].networks.size(); ++j)
      out.containers[i].networks[j].host_interface = host_veth_name(i, j);
  if (out.uplinks.empty()) out.uplinks = {kUplinkIf};
  // Guarded like Docker's: a lab port moat was not told about stays in its network.
  for (size_t n = 0; n < out.networks.size(); ++n) out.networks[n].bridge = bridge_name(n);
  return out;
}

Result<std::string> lab_bind_text(const std::string& text) {
  using Doc = nlohmann::ordered_json;  // the file's own key order, for a reader of the record
  try {
    Doc doc = Doc::parse(text);
    if (!doc.is_object()) return fail("the lab file is not a JSON object");
    if (auto nets = doc.find("networks"); nets != doc.end() && nets->is_array())
      for (size_t n = 0; n < nets->size(); ++n)
        if ((*nets)[n].is_object()) (*nets)[n]["bridge"] = bridge_name(n);
    if (auto cs = doc.find("containers"); cs != doc.end() && cs->is_array())
      for (size_t i = 0; i < cs->size(); ++i) {
        auto atts = (*cs)[i].find("networks");
        if (!(*cs)[i].is_object() || atts == (*cs)[i].end() || !atts->is_array()) continue;
        for (size_t j = 0; j < atts->size(); ++j) {
          Doc& att = (*atts)[j];
          if (att.is_string()) att = Doc{{"network", att}};  // the short form, spelt out
          if (att.is_object()) att["interface"] = host_veth_name(i, j);
        }
      }
    Doc& host = doc["host"];
    if (host.is_null()) host = Doc::object();
    if (host.is_object() && (!host.contains("uplinks") || host["uplinks"].empty()))
      host["uplinks"] = {kUplinkIf};
    return doc.dump(1) + "\n";
  } catch (const std::exception& e) {  // text that was never a valid lab file
    return fail(std::string("the lab file cannot be bound: ") + e.what());
  }
}

bool lab_has_ipv6(const Config& cfg) {
  return std::any_of(cfg.networks.begin(), cfg.networks.end(),
                     [](const Network& n) { return n.subnet6.has_value(); });
}

Result<LabInfo> lab_info(const std::string& lab) {
  auto st = existing_state(lab);
  if (!st) return std::unexpected(st.error());
  LabInfo info;
  info.name = st->name;
  info.source = st->source;
  info.host_ns = lab_host_ns(lab);
  info.outside_ns = lab_outside_ns(lab);
  info.uplink_host_ip = kUplinkHostIp;
  info.uplink_outside_ip = kUplinkOutsideIp;
  info.uplink_host_ip6 = kUplinkHostIp6;
  info.uplink_outside_ip6 = kUplinkOutsideIp6;
  info.namespaces = st->namespaces;
  return info;
}

Result<std::vector<std::string>> lab_list() { return lab_names_on_disk(); }

Result<std::string> lab_target_ns(const std::string& lab, const std::string& target) {
  auto st = existing_state(lab);
  if (!st) return std::unexpected(st.error());
  // "host" and "outside" win over containers of the same name.
  if (target == "host") return lab_host_ns(lab);
  if (target == "outside") return lab_outside_ns(lab);
  std::vector<std::string> names;
  for (const auto& c : st->containers) {
    std::string name = c.value("name", "");
    if (name == target) return c.value("namespace", lab_container_ns(lab, name));
    names.push_back(name);
  }
  std::string msg = "lab " + lab + " has no target \"" + target + "\"";
  std::string near = closest_match(target, names);
  if (!near.empty()) msg += " (did you mean \"" + near + "\"?)";
  msg += "; valid targets: host, outside";
  for (const auto& n : names) msg += ", " + n;
  return fail(msg);
}

Result<int> lab_exec(const std::string& lab, const std::string& target,
                     const std::vector<std::string>& argv) {
  if (argv.empty()) return fail("lab exec: no command given");
  auto ns = lab_target_ns(lab, target);
  if (!ns) return std::unexpected(ns.error());
  std::vector<std::string> cmd{"ip", "netns", "exec", *ns};
  cmd.insert(cmd.end(), argv.begin(), argv.end());
  return run_inherit(cmd);
}

}  // namespace moat
