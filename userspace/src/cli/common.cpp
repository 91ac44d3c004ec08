#include "cli/common.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "dataplane/dataplane.h"
#include "dataplane/state.h"
#include "util/fd.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace moat::cli {

[[noreturn]] void die(const std::string& msg, int code) { throw CliError{code, msg}; }

void need_root() {
  if (geteuid() != 0)
    die("this command changes the kernel's dataplane and needs root (CAP_BPF and CAP_NET_ADMIN)");
}

// One read into a buffer of the file's size: a stream's copy through a
// stringbuf was 7% of an apply of 100,000 rules (9 MB).
std::string read_file(const std::string& path) {
  auto text = moat::read_whole(path);
  if (!text || !*text)
    die(path + ": cannot read: " + std::strerror(text ? ENOENT : text.error().err), 2);
  return std::move(**text);
}

void check_instance(const std::string& name) {
  std::string why;
  if (!moat::valid_instance_name(name, &why)) die("invalid --instance \"" + name + "\": " + why, 2);
}

// ---- labs --------------------------------------------------------------------------

std::string lab_instance(const std::string& lab) { return "lab-" + lab; }
std::string lab_config_copy(const std::string& lab) { return "/run/moat/labs/" + lab + ".input"; }

std::string default_lab_name(const std::string& file) {
  std::string stem = fs::path(file).stem().string(), out;
  for (char c : stem) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out += (std::isalnum(static_cast<unsigned char>(c)) ? c : '-');
  }
  out = out.substr(0, 20);
  while (!out.empty() && out.front() == '-') out.erase(out.begin());
  return out.empty() ? "lab" : out;
}

std::string pick_lab(const std::string& given) {
  if (!given.empty()) {
    std::string why;
    if (!moat::valid_lab_name(given, &why)) die("invalid lab name \"" + given + "\": " + why, 2);
    return given;
  }
  auto labs = check(moat::lab_list());
  if (labs.size() == 1) return labs[0];
  if (labs.empty()) die("no lab is running (start one with `moat lab up FILE`)", 2);
  std::string names;
  for (const auto& l : labs) names += " " + l;
  die("several labs are running (" + names.substr(1) + "): say which with --lab", 2);
}

void add_instance_options(CLI::App* sub, std::string& instance, std::string& lab) {
  sub->add_option("--instance", instance, "dataplane instance")->capture_default_str();
  sub->add_option("--lab", lab, "a lab's instance instead (lab-NAME)");
}

std::string scoped_instance(const std::string& instance, const std::string& lab) {
  return lab.empty() ? instance : lab_instance(pick_lab(lab));
}

// ---- config summary (validate, lab up) ----------------------------------------------

json config_json(const moat::Config& c) {
  json nets = json::array(), ctrs = json::array();
  for (const auto& n : c.networks)
    nets.push_back({{"name", n.name},
                    {"subnet", n.subnet.str()},
                    {"gateway", n.gateway.str()},
                    {"icc", n.icc},
                    {"internal", n.internal},
                    {"masquerade", n.masquerade}});
  for (const auto& k : c.containers) {
    json atts = json::array(), pubs = json::array();
    for (const auto& a : k.networks)
      atts.push_back({{"network", a.network}, {"ip", a.ip.str()}, {"interface", a.host_interface}});
    for (const auto& p : k.publish) pubs.push_back(p.text);
    ctrs.push_back({{"name", k.name},
                    {"namespace", k.ns},
                    {"labels", k.labels},
                    {"networks", atts},
                    {"publish", pubs}});
  }
  return {{"source", c.source}, {"networks", nets}, {"containers", ctrs}};
}

void print_config(const moat::Config& c) {
  for (const auto& n : c.networks) {
    std::cout << "network " << n.name << "  " << n.subnet.str() << " gw " << n.gateway.str()
              << (n.icc ? "" : "  icc=off") << (n.internal ? "  internal" : "") << "\n";
  }
  for (const auto& k : c.containers) {
    std::cout << "container " << k.name;
    for (const auto& a : k.networks) std::cout << "  " << a.network << "=" << a.ip.str();
    for (const auto& p : k.publish) std::cout << "  -p " << p.text;
    std::cout << "\n";
  }
}

// ---- status (status, lab status) ------------------------------------------------------

namespace {

std::string counters_text(const json& c) {
  std::ostringstream o;
  o << c["packets"].get<uint64_t>() << "p/" << c["bytes"].get<uint64_t>() << "B";
  uint64_t drops = 0;
  for (const auto& [k, v] : c["drops"].items()) drops += v.get<uint64_t>();
  if (drops) {
    o << " drop " << drops << " (";
    bool first = true;
    for (const auto& [k, v] : c["drops"].items()) {
      o << (first ? "" : ", ") << k << " " << v.get<uint64_t>();
      first = false;
    }
    o << ")";
  }
  return o.str();
}

// "in,out", "--,out"...; "?" when the state does not say.
std::string hooks_text(const json& iface) {
  if (!iface.contains("attached")) return "?";
  return std::string(iface["attached"]["ingress"].get<uint32_t>() ? "in" : "--") + "," +
         (iface["attached"]["egress"].get<uint32_t>() ? "out" : "--");
}

void print_status_head(const json& s) {
  std::cout << "instance " << s["instance"].get<std::string>() << "  (from "
            << s["source"].get<std::string>() << ")\n";
  if (!s["netns"].get<std::string>().empty())
    std::cout << "network namespace " << s["netns"].get<std::string>() << "\n";
  std::cout << "pins " << s["pin_dir"].get<std::string>() << "\n";
  if (const auto& k = s.value("kernel", json::object()); !k.empty()) {
    const auto& nat66 = k.value("nat66", json());
    std::cout << "kernel Linux " << k.value("release", std::string("?")) << ": IPv6 NAT "
              << (nat66.is_boolean()
                      ? (nat66.get<bool>() ? "supported" : "not supported (needs Linux 6.16+)")
                      : "unknown (" + k.value("nat66_error", std::string()) + ")")
              << "\n";
  }
  std::cout << "\nprograms:\n";
  for (const auto& p : s["programs"])
    std::cout << "  " << std::left << std::setw(16) << p["name"].get<std::string>() << " id "
              << p["id"] << "  tag " << p["tag"].get<std::string>() << "\n";
  std::cout << "maps:\n";
  for (const auto& m : s["maps"])
    std::cout << "  " << std::left << std::setw(16) << m["name"].get<std::string>() << " id "
              << m["id"] << "  max " << m["max_entries"] << "\n";
}

// A column as wide as its widest value (names can be 63 characters, a veth
// name 15), and at least its header, plus two spaces.
int column_width(const json& rows, const char* key, const std::string& header) {
  size_t w = header.size();
  for (const auto& r : rows) w = std::max(w, r.value(key, std::string()).size());
  return static_cast<int>(w + 2);
}

void print_status_interfaces(const json& s) {
  const json& eps = s["endpoints"];
  int wc = column_width(eps, "container", "CONTAINER"),
      wn = column_width(eps, "network", "NETWORK"), wi = column_width(eps, "name", "IFACE"),
      wp = column_width(eps, "ip", "IP");
  std::cout << "\n"
            << std::left << std::setw(wc) << "CONTAINER" << std::setw(wn) << "NETWORK"
            << std::setw(wi) << "IFACE" << std::setw(wp) << "IP" << std::setw(10) << "HOOKS"
            << "FROM CONTAINER  |  TO CONTAINER\n";
  for (const auto& e : eps) {
    std::string hooks = hooks_text(e);
    std::cout << std::left << std::setw(wc) << e["container"].get<std::string>() << std::setw(wn)
              << e["network"].get<std::string>() << std::setw(wi) << e["name"].get<std::string>()
              << std::setw(wp) << e["ip"].get<std::string>() << std::setw(10) << hooks
              << counters_text(e["counters"]["from_container"]) << "  |  "
              << counters_text(e["counters"]["to_container"]) << "\n";
  }
  const json& ups = s["uplinks"];
  if (ups.empty()) return;
  int wu = column_width(ups, "name", "UPLINK"), wa = column_width(ups, "ip", "IP");
  std::cout << "\n"
            << std::left << std::setw(wu) << "UPLINK" << std::setw(wa) << "IP" << std::setw(10)
            << "HOOKS"
            << "FROM WORLD  |  TO WORLD\n";
  for (const auto& u : ups) {
    std::string hooks = hooks_text(u);
    std::cout << std::left << std::setw(wu) << u["name"].get<std::string>() << std::setw(wa)
              << u["ip"].get<std::string>() << std::setw(10) << hooks
              << counters_text(u["counters"]["from_world"]) << "  |  "
              << counters_text(u["counters"]["to_world"]) << "\n";
  }
}

}  // namespace

// The record cannot be trusted: say what the kernel holds and how to repair.
void print_damaged_status(const json& s) {
  const auto& rec = s["record"];
  std::cout << "instance " << s["instance"].get<std::string>()
            << ": its record cannot be trusted\n  " << rec["problem"].get<std::string>()
            << "\n\nfound in the kernel:\n";
  std::cout << "  pins " << s["pin_dir"].get<std::string>()
            << (s["pins_exist"].get<bool>() ? "" : " (none)") << "\n";
  for (const auto& p : s["programs"])
    std::cout << "  program " << p["name"].get<std::string>() << " id " << p["id"] << "\n";
  for (const auto& f : s["filters"])
    std::cout << "  filter on " << f["interface"].get<std::string>() << " ("
              << f["netns"].get<std::string>() << ") ingress prog " << f["ingress_prog"]
              << ", egress prog " << f["egress_prog"] << "\n";
  for (const auto& h : s["socket_hooks"])
    std::cout << "  socket hook " << h.value("hook", std::string("?")) << "\n";
  std::cout << "\nto repair: " << rec["repair"].get<std::string>() << "\n";
}

int print_status(const json& s) {
  if (!s["record"].value("ok", true)) {
    print_damaged_status(s);
    return 1;
  }
  print_status_head(s);
  print_status_interfaces(s);
  if (!s["published"].empty()) {
    std::cout << "\npublished:";
    for (const auto& p : s["published"]) {
      std::cout << "  " << p["container"].get<std::string>() << " "
                << p["publish"].get<std::string>();
      std::string families;  // where it is published: ipv4, ipv6 or both
      for (const auto& f : p.value("families", json::array()))
        families += (families.empty() ? "" : "+") + f.get<std::string>();
      if (!families.empty()) std::cout << " (" << families << ")";
    }
    std::cout << "\n";
  }
  std::cout << "socket hooks (host processes to published ports): ";
  if (s["socket_hooks"].empty()) std::cout << "none";
  for (const auto& h : s["socket_hooks"]) std::cout << h.value("hook", std::string("?")) << " ";
  std::cout << "\ntracked flow entries: " << s["tracked_entries"] << " (moat ct list)\n";
  if (s.contains("memory")) {
    const json& m = s["memory"];
    char mib[32];
    std::snprintf(mib, sizeof mib, "%.1f", m.value("map_bytes", uint64_t{0}) / 1048576.0);
    std::cout << "map memory: " << mib << " MiB";
    if (m["limits"].is_object()) {
      std::cout << " (limits:";
      for (const auto& [k, v] : m["limits"].items()) std::cout << " " << k << " " << v;
      std::cout << ")";
    }
    std::cout << "\n";
  }
  return 0;
}

// ---- signals ----------------------------------------------------------------------

static sigset_t stop_signals() {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGINT);
  sigaddset(&s, SIGTERM);
  return s;
}

// SIGINT/SIGTERM are blocked and taken with sigtimedwait(): no handler runs
// in the middle of a write, and every loop ends cleanly.
void block_stop_signals() {
  sigset_t s = stop_signals();
  pthread_sigmask(SIG_BLOCK, &s, nullptr);
}

// Sleeps up to `ms`; true when SIGINT or SIGTERM arrived.
bool stop_requested(int ms) {
  sigset_t s = stop_signals();
  timespec ts{ms / 1000, (ms % 1000) * 1000000L};
  return sigtimedwait(&s, nullptr, &ts) > 0;
}

}  // namespace moat::cli
