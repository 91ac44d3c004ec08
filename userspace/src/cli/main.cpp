// main.cpp - the CLI edge: parse arguments, call the library, print text or
// JSON. The only place where errors become exceptions and exit codes:
//   0 ok, 1 runtime failure (or probes not as expected), 2 invalid input.
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <unistd.h>

#include <bpf/libbpf.h>
#include <httplib.h>
#include <pthread.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <optional>
#include <thread>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>

#include "plan/plan.h"
#include "config/config.h"
#include "dataplane/dataplane.h"
#include "endpoint.skel.h"
#include "lab/lab.h"
#include "observe/observe.h"
#include "policy/policy.h"
#include "lab/probe.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct CliError {
  int code;
  std::string message;
};

[[noreturn]] void die(const std::string& msg, int code = 1) { throw CliError{code, msg}; }

template <class T>
T check(moat::Result<T> r) {
  if (!r) die(r.error().message());
  if constexpr (!std::is_void_v<T>) return std::move(*r);
}

void need_root() {
  if (geteuid() != 0)
    die("this command changes the kernel's dataplane and needs root (CAP_BPF and CAP_NET_ADMIN)");
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) die(path + ": cannot read: " + std::strerror(errno), 2);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

moat::Config load_config_text(const std::string& text, const std::string& path) {
  auto res = moat::parse_config(text, path);
  if (!res.problems.empty()) {
    std::ostringstream msg;
    for (size_t i = 0; i < res.problems.size(); ++i)
      msg << (i ? "\n" : "") << res.problems[i].format(path);
    msg << "\n" << res.problems.size() << " problem" << (res.problems.size() == 1 ? "" : "s")
        << " in " << path << "; nothing was applied";
    die(msg.str(), 2);
  }
  return *res.config;
}

moat::Config load_config(const std::string& path) { return load_config_text(read_file(path), path); }

[[noreturn]] void die_problems(const std::vector<moat::Problem>& problems, const std::string& path) {
  std::ostringstream msg;
  for (size_t i = 0; i < problems.size(); ++i)
    msg << (i ? "\n" : "") << problems[i].format(path);
  msg << "\n" << problems.size() << " problem" << (problems.size() == 1 ? "" : "s") << " in "
      << path << "; nothing was applied";
  die(msg.str(), 2);
}

// The files an instance was applied from, in order: the main file, then
// policy files. Kept with the instance's state so that explain and
// `policy list` judge exactly what the kernel holds.
using Inputs = std::vector<std::pair<std::string, std::string>>;  // {name, text}

// The main file plus policy files merged into it (`replace_policies`: the
// main file's own policies are dropped first, as `moat lab apply` does).
moat::Config load_inputs(const Inputs& in, bool replace_policies = false) {
  auto cfg = load_config_text(in.at(0).second, in.at(0).first);
  if (replace_policies && in.size() > 1) cfg.policies.clear();
  for (size_t i = 1; i < in.size(); ++i) {
    auto pf = moat::parse_policy_file(in[i].second, in[i].first);
    if (!pf.problems.empty()) die_problems(pf.problems, in[i].first);
    auto problems = moat::merge_policy_file(cfg, *pf.file);
    if (!problems.empty()) die_problems(problems, in[i].first);
  }
  return cfg;
}

Inputs read_inputs(const std::vector<std::string>& files) {
  Inputs in;
  for (const auto& f : files) in.emplace_back(f, read_file(f));
  return in;
}

std::string inputs_path(const std::string& instance) {
  return moat::state_dir(instance) + "/inputs.json";
}

void save_inputs(const std::string& instance, const Inputs& in, bool replace_policies) {
  json files = json::array();
  for (const auto& [name, text] : in) files.push_back({{"name", name}, {"text", text}});
  std::ofstream out(inputs_path(instance));
  out << json{{"files", files}, {"replace_policies", replace_policies}}.dump() << "\n";
}

moat::Config load_saved_inputs(const std::string& instance) {
  std::ifstream in(inputs_path(instance));
  if (!in) die("no moat instance \"" + instance + "\" (nothing applied; see `moat apply --help`)");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    die(inputs_path(instance) + " is corrupt: " + e.what());
  }
  Inputs files;
  for (const auto& f : j.at("files")) files.emplace_back(f.at("name"), f.at("text"));
  return load_inputs(files, j.value("replace_policies", false));
}

void check_instance(const std::string& name) {
  std::string why;
  if (!moat::valid_instance_name(name, &why)) die("invalid --instance \"" + name + "\": " + why, 2);
}

// ---- config summary --------------------------------------------------------------

json config_json(const moat::Config& c) {
  json nets = json::array(), ctrs = json::array();
  for (const auto& n : c.networks)
    nets.push_back({{"name", n.name}, {"subnet", n.subnet.str()}, {"gateway", n.gateway.str()},
                    {"icc", n.icc}, {"internal", n.internal}, {"masquerade", n.masquerade}});
  for (const auto& k : c.containers) {
    json atts = json::array(), pubs = json::array();
    for (const auto& a : k.networks)
      atts.push_back({{"network", a.network}, {"ip", a.ip.str()}, {"interface", a.host_interface}});
    for (const auto& p : k.publish) pubs.push_back(p.text);
    ctrs.push_back({{"name", k.name}, {"namespace", k.ns}, {"labels", k.labels},
                    {"networks", atts}, {"publish", pubs}});
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

// ---- status -------------------------------------------------------------------------

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

void print_status(const json& s) {
  std::cout << "instance " << s["instance"].get<std::string>() << "  (from "
            << s["source"].get<std::string>() << ")\n";
  if (!s["netns"].get<std::string>().empty())
    std::cout << "network namespace " << s["netns"].get<std::string>() << "\n";
  std::cout << "pins " << s["pin_dir"].get<std::string>() << "\n\nprograms:\n";
  for (const auto& p : s["programs"])
    std::cout << "  " << std::left << std::setw(16) << p["name"].get<std::string>() << " id "
              << p["id"] << "  tag " << p["tag"].get<std::string>() << "\n";
  std::cout << "maps:\n";
  for (const auto& m : s["maps"])
    std::cout << "  " << std::left << std::setw(16) << m["name"].get<std::string>() << " id "
              << m["id"] << "  max " << m["max_entries"] << "\n";
  std::cout << "\n"
            << std::left << std::setw(14) << "CONTAINER" << std::setw(18) << "NETWORK"
            << std::setw(10) << "IFACE" << std::setw(16) << "IP" << std::setw(10) << "HOOKS"
            << "FROM CONTAINER  |  TO CONTAINER\n";
  for (const auto& e : s["endpoints"]) {
    std::string hooks = "?";
    if (e.contains("attached"))
      hooks = std::string(e["attached"]["ingress"].get<uint32_t>() ? "in" : "--") + "," +
              (e["attached"]["egress"].get<uint32_t>() ? "out" : "--");
    std::cout << std::left << std::setw(14) << e["container"].get<std::string>() << std::setw(18)
              << e["network"].get<std::string>() << std::setw(10) << e["name"].get<std::string>()
              << std::setw(16) << e["ip"].get<std::string>() << std::setw(10) << hooks
              << counters_text(e["counters"]["from_container"]) << "  |  "
              << counters_text(e["counters"]["to_container"]) << "\n";
  }
  if (!s["uplinks"].empty()) {
    std::cout << "\n"
              << std::left << std::setw(14) << "UPLINK" << std::setw(16) << "IP" << std::setw(10)
              << "HOOKS" << "FROM WORLD  |  TO WORLD\n";
    for (const auto& u : s["uplinks"]) {
      std::string hooks = "?";
      if (u.contains("attached"))
        hooks = std::string(u["attached"]["ingress"].get<uint32_t>() ? "in" : "--") + "," +
                (u["attached"]["egress"].get<uint32_t>() ? "out" : "--");
      std::cout << std::left << std::setw(14) << u["name"].get<std::string>() << std::setw(16)
                << u["ip"].get<std::string>() << std::setw(10) << hooks
                << counters_text(u["counters"]["from_world"]) << "  |  "
                << counters_text(u["counters"]["to_world"]) << "\n";
    }
  }
  if (!s["published"].empty()) {
    std::cout << "\npublished:";
    for (const auto& p : s["published"])
      std::cout << "  " << p["container"].get<std::string>() << " " << p["publish"].get<std::string>();
    std::cout << "\n";
  }
  std::cout << "socket hooks (host processes to published ports): ";
  if (s["socket_hooks"].empty()) std::cout << "none";
  for (const auto& h : s["socket_hooks"]) std::cout << h.value("hook", std::string("?")) << " ";
  std::cout << "\ntracked flow entries: " << s["tracked_entries"] << " (moat ct list)\n";
}

// ---- lab ----------------------------------------------------------------------------

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

// Runs `fn` inside the lab host namespace and comes back, so the dataplane
// sees the lab's interfaces while the CLI itself stays where it was started.
template <class Fn>
auto in_lab_host(const std::string& lab, Fn fn) {
  int home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (home < 0) die("open own network namespace: " + std::string(strerror(errno)));
  std::string path = "/run/netns/" + moat::lab_host_ns(lab);
  int ns = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (ns < 0 || setns(ns, CLONE_NEWNET) != 0) {
    close(home);
    if (ns >= 0) close(ns);
    die("lab " + lab + " has no host namespace (" + path + ")");
  }
  close(ns);
  struct Back {
    int fd;
    ~Back() {
      setns(fd, CLONE_NEWNET);
      close(fd);
    }
  } back{home};
  return fn();
}

std::vector<moat::Probe> lab_probes(const moat::Config& cfg, const std::string& lab) {
  std::vector<moat::Probe> out;
  std::vector<std::pair<std::string, const moat::Container*>> sources;
  for (const auto& c : cfg.containers) sources.emplace_back(c.name, &c);
  sources.emplace_back("host", nullptr);
  for (const auto& [label, src] : sources) {
    std::string ns = "/run/netns/" + (src ? moat::lab_container_ns(lab, src->name)
                                          : moat::lab_host_ns(lab));
    for (const auto& dst : cfg.containers) {
      if (src == &dst || (src && src->networks.empty())) continue;
      for (const auto& att : dst.networks) {
        bool expected = moat::isolation_allows(cfg, src, dst, att);
        auto add = [&](moat::ProbeProto proto, uint16_t port) {
          out.push_back({label, ns, dst.name + "@" + att.network, att.ip, proto, port, expected,
                         proto == moat::ProbeProto::icmp ? "" : dst.name});
        };
        std::vector<moat::Expose> ports = dst.expose;
        for (const auto& p : dst.publish)
          for (uint16_t i = 0; i < std::min<uint16_t>(p.count, 4); ++i)
            ports.push_back({static_cast<uint16_t>(p.container_port + i), p.protocol});
        std::sort(ports.begin(), ports.end(), [](auto& a, auto& b) {
          return std::tie(a.port, a.protocol) < std::tie(b.port, b.protocol);
        });
        ports.erase(std::unique(ports.begin(), ports.end(),
                                [](auto& a, auto& b) { return a.port == b.port && a.protocol == b.protocol; }),
                    ports.end());
        for (const auto& p : ports) {
          if (p.protocol == moat::Protocol::sctp) continue;
          add(p.protocol == moat::Protocol::tcp ? moat::ProbeProto::tcp : moat::ProbeProto::udp, p.port);
        }
        add(moat::ProbeProto::icmp, 0);
      }
    }
  }
  return out;
}

// Published ports the way `docker run -p` users reach them: from the outside
// at the uplink address, from the host at 127.0.0.1 and at the uplink
// address, from every container at its gateway. Ports a container exposes
// but does not publish must stay closed from outside.
std::vector<moat::Probe> lab_publish_probes(const moat::Config& cfg, const std::string& lab,
                                            const moat::LabInfo& info) {
  std::vector<moat::Probe> out;
  auto uplink = moat::Ipv4::parse(info.uplink_host_ip);
  if (!uplink) return out;
  const moat::Ipv4 loopback{0x7f000001};
  struct Source {
    std::string label, ns;
    moat::Ipv4 via;
    bool from_host;  // 127.0.0.1-bound publishes are for the host only
    bool internal;   // an internal network's container
  };
  std::vector<Source> sources = {
      {"outside", "/run/netns/" + moat::lab_outside_ns(lab), *uplink, false, false},
      {"host@127.0.0.1", "/run/netns/" + moat::lab_host_ns(lab), loopback, true, false},
      {"host@" + uplink->str(), "/run/netns/" + moat::lab_host_ns(lab), *uplink, true, false}};
  for (const auto& c : cfg.containers) {
    if (c.networks.empty()) continue;
    const moat::Network* n = cfg.find_network(c.networks.front().network);
    if (!n) continue;
    sources.push_back({c.name + "@gateway", "/run/netns/" + moat::lab_container_ns(lab, c.name),
                       n->gateway, false, n->internal});
  }
  auto proto_of = [](moat::Protocol p) {
    return p == moat::Protocol::tcp ? moat::ProbeProto::tcp : moat::ProbeProto::udp;
  };
  for (const auto& dst : cfg.containers) {
    for (const auto& p : dst.publish) {
      if (p.protocol == moat::Protocol::sctp) continue;
      for (uint16_t i = 0; i < std::min<uint16_t>(p.count, 2); ++i) {
        uint16_t port = static_cast<uint16_t>(p.host_port + i);
        std::string label = dst.name + " -p " + (p.host_ip ? p.host_ip->str() + ":" : "") +
                            std::to_string(port) + ":" + std::to_string(p.container_port + i) +
                            "/" + moat::to_string(p.protocol);
        for (const auto& src : sources) {
          bool bound_ok = !p.host_ip || p.host_ip->value == src.via.value;
          bool expected = bound_ok && !src.internal && (src.from_host || src.via.value != loopback.value);
          out.push_back({src.label, src.ns, label, src.via, proto_of(p.protocol), port, expected,
                         dst.name});
        }
      }
    }
    for (const auto& e : dst.expose) {
      bool published = false;
      for (const auto& p : dst.publish)
        published |= p.protocol == e.protocol && e.port >= p.container_port &&
                     e.port < p.container_port + p.count && p.host_port == p.container_port;
      if (published || e.protocol == moat::Protocol::sctp) continue;
      for (size_t i = 0; i < 2; ++i)  // outside, and the host at 127.0.0.1
        out.push_back({sources[i].label, sources[i].ns,
                       dst.name + " " + std::to_string(e.port) + "/" +
                           moat::to_string(e.protocol) + " (not published)",
                       sources[i].via, proto_of(e.protocol), e.port, false, ""});
    }
  }
  return out;
}

// Narrows the probes' expectations by the policies in force (isolation
// already decided the rest): who dials whom, with published ports resolved
// to the container behind them, as the kernel judges it.
void expect_policy(const moat::Config& cfg, const moat::LabInfo& info,
                   std::vector<moat::Probe>& isolation, std::vector<moat::Probe>& published) {
  if (cfg.policies.empty()) return;
  auto uplink = moat::Ipv4::parse(info.uplink_host_ip);
  auto outside = moat::Ipv4::parse(info.uplink_outside_ip);
  std::vector<moat::Ipv4> host_addrs;
  if (uplink) host_addrs.push_back(*uplink);
  auto container_ep = [&](const std::string& name) {
    moat::PolicyEndpoint e;
    e.kind = moat::PolicyEndpoint::Kind::container;
    e.container = name;
    if (const auto* c = cfg.find_container(name); c && !c->networks.empty()) e.ip = c->networks[0].ip;
    return e;
  };
  auto source_ep = [&](const std::string& label) {
    std::string who = label.substr(0, label.find('@'));
    moat::PolicyEndpoint e;
    if (who == "host") {
      e.kind = moat::PolicyEndpoint::Kind::host;
      e.ip = uplink ? *uplink : moat::Ipv4{0x7f000001};
    } else if (who == "outside") {
      e.kind = moat::PolicyEndpoint::Kind::address;
      if (outside) e.ip = *outside;
    } else {
      e = container_ep(who);
    }
    return e;
  };
  auto proto_of = [](moat::ProbeProto p) -> uint8_t {
    return p == moat::ProbeProto::tcp ? IPPROTO_TCP : p == moat::ProbeProto::udp ? IPPROTO_UDP
                                                                                 : IPPROTO_ICMP;
  };
  for (auto& p : isolation) {
    if (!p.expected) continue;
    std::string dst = p.dst.substr(0, p.dst.find('@'));
    moat::PolicyEndpoint to = container_ep(dst);
    to.ip = p.dst_ip;
    p.expected = moat::evaluate_model(cfg, source_ep(p.src), to, proto_of(p.proto), p.port).allowed;
  }
  for (auto& p : published) {
    if (!p.expected || p.expect_reply.empty()) continue;
    const moat::Container* c = cfg.find_container(p.expect_reply);
    if (!c) continue;
    for (const auto& pub : c->publish) {
      if (p.port < pub.host_port || p.port >= pub.host_port + pub.count) continue;
      uint16_t cport = static_cast<uint16_t>(pub.container_port + (p.port - pub.host_port));
      p.expected = moat::evaluate_model(cfg, source_ep(p.src), container_ep(c->name),
                                        proto_of(p.proto), cport)
                       .allowed;
      break;
    }
  }
}

// Matrix of sources x destination attachments; a cell aggregates every port
// and protocol probed for that pair as "expected -> observed".
int print_matrix(const std::vector<moat::Probe>& probes, const std::vector<moat::ProbeOutcome>& res,
                 const std::string& title, bool column_ip = true) {
  std::vector<std::string> rows, cols;
  std::map<std::pair<std::string, std::string>, std::pair<std::string, std::string>> cell;
  auto word = [](bool b) { return b ? "pass" : "drop"; };
  int mismatches = 0;
  for (size_t i = 0; i < probes.size(); ++i) {
    const auto& p = probes[i];
    if (std::find(rows.begin(), rows.end(), p.src) == rows.end()) rows.push_back(p.src);
    std::string col = column_ip ? p.dst + " " + p.dst_ip.str() : p.dst;
    if (std::find(cols.begin(), cols.end(), col) == cols.end()) cols.push_back(col);
    auto& [exp, obs] = cell[{p.src, col}];
    auto merge = [](std::string& acc, const std::string& w) { acc = acc.empty() || acc == w ? w : "mixed"; };
    merge(exp, word(p.expected));
    merge(obs, word(res[i].reached));
    if (p.expected != res[i].reached) ++mismatches;
  }
  size_t w0 = 6, w = 14;
  for (const auto& r : rows) w0 = std::max(w0, r.size() + 2);
  for (const auto& c : cols) w = std::max(w, c.size() + 2);
  std::cout << title << "\n";
  std::cout << std::left << std::setw(static_cast<int>(w0)) << "from";
  for (const auto& c : cols) std::cout << std::setw(static_cast<int>(w)) << c;
  std::cout << "\n";
  for (const auto& r : rows) {
    std::cout << std::setw(static_cast<int>(w0)) << r;
    for (const auto& c : cols) {
      auto it = cell.find({r, c});
      std::string text = "-";
      if (it != cell.end()) {
        const auto& [exp, obs] = it->second;
        text = exp == obs ? exp : exp + "->" + obs + " !!";
      }
      std::cout << std::setw(static_cast<int>(w)) << text;
    }
    std::cout << "\n";
  }
  for (size_t i = 0; i < probes.size(); ++i) {
    const auto& p = probes[i];
    if (p.expected == res[i].reached) continue;
    std::cout << "  UNEXPECTED: " << p.src << " -> " << p.dst << " " << p.dst_ip.str() << " "
              << moat::to_string(p.proto) << (p.port ? "/" + std::to_string(p.port) : "")
              << ": expected " << word(p.expected) << ", got " << res[i].detail << "\n";
  }
  std::cout << probes.size() << " probes, " << probes.size() - mismatches << " as expected, "
            << mismatches << " unexpected\n";
  return mismatches;
}

// `moat policy list`: what the saved inputs hold, and the revision loaded.
void print_policies(const moat::Config& cfg, const json& st, bool as_json) {
  auto rules = moat::policy_rule_table(cfg);
  json out = json::array();
  for (const auto& p : cfg.policies) {
    json sel = json::array(), rl = json::array();
    for (const auto& c : cfg.containers)
      if (moat::policy_selects(p, c)) sel.push_back(c.name);
    for (size_t i = 0; i < rules.size(); ++i)
      if (rules[i].policy == p.name && rules[i].ns == p.ns)
        rl.push_back({{"rule_id", i}, {"direction", rules[i].direction},
                      {"action", rules[i].action}, {"text", rules[i].text}});
    json types = json::array();
    if (p.isolates_ingress) types.push_back("Ingress");
    if (p.isolates_egress) types.push_back("Egress");
    out.push_back({{"name", p.name}, {"namespace", p.ns}, {"kubernetes", p.kubernetes},
                   {"isolates", types}, {"selects", sel}, {"rules", rl},
                   {"source", p.source + ": " + p.path}});
  }
  const json& pol = st["policy"];
  if (as_json) {
    std::cout << json{{"revision", pol.value("revision", 0u)}, {"policies", out}}.dump(2) << "\n";
    return;
  }
  if (out.empty()) {
    std::cout << "no policies: containers are limited by network isolation only\n";
    return;
  }
  std::cout << out.size() << " policies, kernel revision " << pol.value("revision", 0u) << ", "
            << pol.value("entries", 0) << " map entries\n";
  for (const auto& p : out) {
    std::cout << "\n" << p["namespace"].get<std::string>() << "/" << p["name"].get<std::string>()
              << (p["kubernetes"].get<bool>() ? "  (NetworkPolicy)" : "") << "  isolates "
              << (p["isolates"].empty() ? std::string("nothing") : p["isolates"].dump())
              << "  selects " << p["selects"].dump() << "\n";
    for (const auto& r : p["rules"])
      std::cout << "  #" << r["rule_id"] << "  " << r["text"].get<std::string>() << "\n";
  }
}

// "80/tcp", "53/udp", "icmp", "80" (TCP).
std::pair<uint8_t, uint16_t> parse_port_proto(const std::string& text) {
  std::string port = text, proto = "tcp";
  if (auto slash = text.find('/'); slash != std::string::npos) {
    port = text.substr(0, slash);
    proto = text.substr(slash + 1);
  } else if (text == "icmp") {
    return {IPPROTO_ICMP, 0};
  }
  std::transform(proto.begin(), proto.end(), proto.begin(), ::tolower);
  uint8_t p = proto == "tcp" ? IPPROTO_TCP : proto == "udp" ? IPPROTO_UDP
            : proto == "sctp" ? IPPROTO_SCTP : proto == "icmp" ? IPPROTO_ICMP : 0;
  if (!p) die("\"" + text + "\": unknown protocol " + proto + " (tcp, udp, sctp or icmp)", 2);
  if (p == IPPROTO_ICMP) return {p, 0};
  char* end = nullptr;
  long n = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end || n < 1 || n > 65535) die("\"" + text + "\": not PORT/PROTO", 2);
  return {p, static_cast<uint16_t>(n)};
}

const char* proto_word(uint8_t p) {
  return p == IPPROTO_TCP ? "tcp" : p == IPPROTO_UDP ? "udp" : p == IPPROTO_SCTP ? "sctp" : "icmp";
}

// `moat explain`: isolation first (policies only narrow it), then the policy
// model, the compiled entries and the kernel's loaded maps, which must agree.
void explain_flow(const moat::Config& cfg, const std::string& instance,
                  const std::vector<moat::Ipv4>& host_addrs, const std::string& from_text,
                  const std::string& to_text, const std::string& port_text, bool as_json) {
  auto from = check(moat::resolve_endpoint(cfg, from_text, host_addrs));
  auto to = check(moat::resolve_endpoint(cfg, to_text, host_addrs));
  auto [proto, port] = parse_port_proto(port_text);

  // Isolation, between two containers: by the attachment `to` names.
  std::string isolation = "not between two containers: network isolation does not apply";
  bool isolated = false;
  const moat::Container* src = from.kind == moat::PolicyEndpoint::Kind::container
                                   ? cfg.find_container(from.container) : nullptr;
  const moat::Container* dst = to.kind == moat::PolicyEndpoint::Kind::container
                                   ? cfg.find_container(to.container) : nullptr;
  if (dst) {
    for (const auto& a : dst->networks) {
      if (a.ip.value != to.ip.value) continue;
      if (src) {
        isolated = !moat::isolation_allows(cfg, src, *dst, a);
        isolation = isolated ? "network isolation forbids it (" + from.container + " is not on " +
                                   a.network + ", or icc is off there)"
                             : "same network " + a.network + ": isolation allows it";
      } else if (from.kind == moat::PolicyEndpoint::Kind::address) {
        isolation = "an outside address reaches a container only through a published port";
        isolated = true;
      }
    }
  }
  auto model = moat::evaluate_model(cfg, from, to, proto, port);
  auto plan = check(moat::compile_policies(cfg, host_addrs));
  auto compiled = moat::evaluate_compiled(plan, from.ip, to.ip, proto, port);
  auto kernel = check(moat::kernel_policy_verdict(instance, from.ip.to_be(), to.ip.to_be(), proto, port));
  bool kernel_allowed = kernel["allowed"].get<bool>();
  bool agree = model.allowed == compiled.allowed && model.allowed == kernel_allowed;
  bool allowed = !isolated && model.allowed;
  std::string flow = from.str() + " -> " + to.str() + " " +
                     (proto == IPPROTO_ICMP ? std::string("icmp")
                                            : std::to_string(port) + "/" + proto_word(proto));
  if (as_json) {
    std::cout << json{{"flow", flow}, {"allowed", allowed}, {"isolation", isolation},
                      {"isolated", isolated}, {"policy", model.text},
                      {"egress", model.egress.text}, {"ingress", model.ingress.text},
                      {"compiled_allowed", compiled.allowed}, {"kernel", kernel},
                      {"agree", agree}}
                     .dump(2)
              << "\n";
  } else {
    std::cout << flow << ": " << (allowed ? "ALLOWED" : "DENIED") << "\n"
              << "  isolation: " << isolation << "\n";
    if (model.egress.applies) std::cout << "  egress:    " << model.egress.text << "\n";
    if (model.ingress.applies) std::cout << "  ingress:   " << model.ingress.text << "\n";
    std::cout << "  policy:    " << model.text << "\n"
              << "  kernel:    revision " << kernel["revision"] << ", "
              << (kernel_allowed ? "allowed" : "denied") << " by the loaded maps"
              << (agree ? " (agrees)" : " — DISAGREES with the model, please report") << "\n";
  }
  if (!agree) throw CliError{1, "policy model and kernel maps disagree"};
}


// ---- observation: stats, flows, top, serve ------------------------------------------

// Names for an instance's counters and events: its state file, plus the
// config it was applied from (namespaces, labels, which policies isolate whom)
// when that was saved.
moat::obs::Names observe_names(const std::string& instance) {
  auto st = check(moat::instance_state(instance));
  if (st.empty() && !fs::exists(moat::pin_dir(instance)))
    die("no moat instance \"" + instance + "\" (nothing applied; see `moat apply --help`, "
        "or `moat lab list` for --lab)");
  auto names = moat::obs::names_from_state(instance, st);
  if (fs::exists(inputs_path(instance))) {
    try {
      moat::obs::add_config(names, load_saved_inputs(instance));
    } catch (const CliError&) {
      // names from the state file alone: no namespaces or labels
    }
  }
  return names;
}

sigset_t stop_signals() {
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

// Ends stopped flows now and then (moat::CtReaper), so that their flow-end
// events come while someone reads them. Without it they still end, silently,
// when the LRU evicts them or a packet meets them.
class Sweeper {
 public:
  explicit Sweeper(const std::string& instance) {
    auto r = moat::CtReaper::open(instance);
    if (r)
      reaper_.emplace(std::move(*r));
    else
      warn(r.error().message());
  }
  void maybe_sweep() {
    auto now = std::chrono::steady_clock::now();
    if (!reaper_ || now - last_ < std::chrono::seconds(2)) return;
    last_ = now;
    if (auto n = reaper_->sweep(); !n) {
      warn(n.error().message());
      reaper_.reset();
    }
  }

 private:
  static void warn(const std::string& why) {
    std::cerr << "moat: warning: expired flows will not be swept (" << why
              << "); their flow-end events come only when a packet meets them\n";
  }
  std::optional<moat::CtReaper> reaper_;
  std::chrono::steady_clock::time_point last_{};
};

struct FlowReader {
  moat::obs::Names names;
  moat::obs::FlowFilter filter;
  bool as_json = false;
  int64_t wall_offset = 0;
  uint64_t seen = 0, shown = 0;
};

int on_event(void* ctx, void* data, size_t size) {
  auto* r = static_cast<FlowReader*>(ctx);
  if (size < sizeof(moat_event)) return 0;
  moat_event ev;
  memcpy(&ev, data, sizeof(ev));
  ++r->seen;
  auto j = moat::obs::event_json(ev, r->names, r->wall_offset);
  if (!moat::obs::matches(j, r->filter)) return 0;
  ++r->shown;
  if (r->as_json)
    std::cout << j.dump() << "\n";
  else
    std::cout << moat::obs::event_text(j) << "\n";
  std::cout.flush();
  return std::cout ? 0 : -EPIPE;  // the reader went away: stop
}

int run_flows(const std::string& instance, const moat::obs::FlowFilter& filter, bool follow,
              bool as_json) {
  if (auto why = moat::obs::check_filter(filter); !why.empty()) die(why, 2);
  FlowReader reader;
  reader.names = observe_names(instance);
  if (!filter.container.empty() && !reader.names.containers.contains(filter.container) &&
      filter.container != "host")
    die("--container " + filter.container + ": no such container in instance " + instance, 2);
  reader.filter = filter;
  reader.as_json = as_json;
  reader.wall_offset = moat::obs::wall_offset_ns();
  auto maps = check(moat::open_pinned(instance));
  ring_buffer* rb = ring_buffer__new(bpf_map__fd(maps->maps.events), on_event, &reader, nullptr);
  if (!rb) die("open the event ring buffer of " + instance + ": " + strerror(errno));
  std::unique_ptr<ring_buffer, void (*)(ring_buffer*)> guard(rb, ring_buffer__free);
  signal(SIGPIPE, SIG_IGN);
  if (!follow) {
    int n = ring_buffer__consume(rb);
    if (n < 0 && n != -EPIPE) die("read events: " + std::string(strerror(-n)));
    if (!as_json)
      std::cerr << reader.shown << " of " << reader.seen << " queued events shown\n";
    return 0;
  }
  block_stop_signals();
  Sweeper sweeper(instance);
  auto last_names = std::chrono::steady_clock::now();
  while (true) {
    sweeper.maybe_sweep();
    int n = ring_buffer__poll(rb, 200);
    if (n == -EPIPE) break;
    if (n < 0 && n != -EINTR) die("read events: " + std::string(strerror(-n)));
    if (stop_requested(0)) break;
    // Containers come and go with `moat apply`: refresh the names now and then.
    if (std::chrono::steady_clock::now() - last_names > std::chrono::seconds(2)) {
      try {
        reader.names = observe_names(instance);
      } catch (const CliError&) {
        die("instance " + instance + " went away");
      }
      last_names = std::chrono::steady_clock::now();
    }
  }
  return 0;
}

int run_top(const std::string& instance, bool once, const std::string& sort, int interval_ms) {
  auto names = observe_names(instance);
  auto before = check(moat::obs::read_snapshot(names));
  auto t0 = std::chrono::steady_clock::now();
  bool tty = isatty(STDOUT_FILENO);
  block_stop_signals();
  while (true) {
    if (stop_requested(interval_ms)) break;
    auto t1 = std::chrono::steady_clock::now();
    names = observe_names(instance);
    auto after = check(moat::obs::read_snapshot(names));
    double secs = std::chrono::duration<double>(t1 - t0).count();
    auto rows = moat::obs::top_rows(before, after, secs, sort);
    char when[16];
    time_t now = time(nullptr);
    tm tmv{};
    localtime_r(&now, &tmv);
    strftime(when, sizeof(when), "%H:%M:%S", &tmv);
    std::ostringstream title;
    title << "moat top - " << instance << " - " << when << " - rates over " << std::fixed
          << std::setprecision(1) << secs << " s, sorted by " << sort
          << "; CONNS: live connections; flow events lost: " << after.lost_full + after.lost_rate;
    if (!once && tty) std::cout << "\033[H\033[2J";
    std::cout << moat::obs::top_table(rows, title.str());
    if (!once && tty) std::cout << "\n(Ctrl-C to quit)\n";
    if (!once && !tty) std::cout << "\n";
    std::cout.flush();
    if (once || !std::cout) break;
    before = std::move(after);
    t0 = t1;
  }
  return 0;
}

int run_serve(const std::string& instance, const std::string& addr, bool allow_remote) {
  auto hp = moat::obs::parse_listen_addr(addr);
  if (!hp) die("--metrics-addr \"" + addr + "\": expected HOST:PORT (127.0.0.1:9464, [::1]:9464)", 2);
  auto [host, port] = *hp;
  if (!moat::obs::is_loopback_host(host) && !allow_remote)
    die("--metrics-addr " + addr + " is not a loopback address: the metrics name every container "
        "and policy; pass --allow-remote to serve them beyond this host anyway", 2);
  (void)observe_names(instance);  // fail now, not at the first scrape
  check(moat::obs::read_snapshot(observe_names(instance)));

  httplib::Server svr;
  // Not httplib's default SO_REUSEPORT: a second exporter on the same port
  // must fail, not silently share the scrapes.
  svr.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  svr.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
    try {
      auto snap = moat::obs::read_snapshot(observe_names(instance));
      if (!snap) {
        res.status = 503;
        res.set_content("moat: " + snap.error().message() + "\n", "text/plain; charset=utf-8");
        return;
      }
      res.set_content(moat::obs::render_prometheus(*snap), "text/plain; version=0.0.4; charset=utf-8");
    } catch (const CliError& e) {
      res.status = 503;
      res.set_content("moat: " + e.message + "\n", "text/plain; charset=utf-8");
    } catch (const std::exception& e) {
      res.status = 500;
      res.set_content(std::string("moat: ") + e.what() + "\n", "text/plain; charset=utf-8");
    }
  });
  svr.Get("/", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content("moat metrics exporter for instance " + instance + ": see /metrics\n",
                    "text/plain; charset=utf-8");
  });
  // Signals are blocked before the server's threads start, so they all
  // inherit the mask and only sigwait() below sees SIGINT/SIGTERM.
  block_stop_signals();
  if (!svr.bind_to_port(host, port))
    die("cannot listen on " + addr + ": " + strerror(errno) + " (in use? wrong address?)");
  std::cerr << "moat: serving metrics of instance " << instance << " at http://" << addr
            << "/metrics (Ctrl-C to stop)\n";
  std::thread server([&] {
    if (!svr.listen_after_bind()) kill(getpid(), SIGTERM);
  });
  Sweeper sweeper(instance);
  do sweeper.maybe_sweep();
  while (!stop_requested(500));
  svr.stop();
  server.join();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "moat - container isolation, published ports, masquerade and segmentation policies\n"
      "enforced by eBPF programs instead of iptables, with counters and flow events.\n"
      "Describe networks, containers and policies in a JSON file; moat compiles it into pinned\n"
      "BPF maps read by TC programs on container veths and uplinks and by socket hooks.\n\n"
      "  moat lab up policies/invoice-app.json    # try it: a lab of namespaces, enforced\n"
      "  moat lab probe                            # who reaches whom, expected vs observed\n"
      "  moat explain rechnung datenbank 7000/tcp  # why (add --lab NAME for a lab)\n"
      "  moat apply FILE [POLICY_FILE...]          # enforce on existing interfaces\n"
      "  moat stats | moat flows | moat top        # what passed, what was dropped and why\n"
      "  moat status | moat down                   # inspect | remove everything",
      "moat"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "moat 0.1.0");
  app.get_formatter()->column_width(36);

  std::string instance = "default";
  bool as_json = false, dry_run = false;
  std::string file;

  auto* validate = app.add_subcommand(
      "validate", "Check a file and show it resolved (subnets, gateways, addresses); changes nothing");
  validate->add_option("file", file, "moat JSON file")->required();
  validate->add_flag("--json", as_json, "print the resolved file as JSON");

  auto* apply = app.add_subcommand(
      "apply",
      "Enforce a file on existing host-side interfaces (each attachment names its \"interface\").\n"
      "Only what changed is written; re-applying the same file changes nothing. Invalid files\n"
      "change nothing either: the running dataplane keeps its state.");
  std::vector<std::string> policy_files;
  apply->add_option("file", file, "moat JSON file")->required();
  apply->add_option("policy-files", policy_files,
                    "more policies: moat-native or Kubernetes NetworkPolicy objects, a List, "
                    "a JSON array, JSON or YAML");
  apply->add_option("--instance", instance, "dataplane instance (pins in /sys/fs/bpf/moat/NAME)")
      ->capture_default_str();
  apply->add_flag("--dry-run", dry_run, "show what would change, change nothing");
  apply->add_flag("--json", as_json, "machine-readable report");

  auto* status = app.add_subcommand("status", "Programs, interfaces, maps, endpoints and counters");
  status->add_option("--instance", instance, "dataplane instance")->capture_default_str();
  status->add_flag("--json", as_json, "machine-readable output");

  auto* down = app.add_subcommand("down", "Detach every program, unpin every map, remove all state");
  down->add_option("--instance", instance, "dataplane instance")->capture_default_str();

  auto* ct = app.add_subcommand(
      "ct",
      "Connection tracking: the flows moat translates (published ports, masquerade).\n"
      "Each translated flow has two entries, one per direction.");
  ct->require_subcommand(1);
  std::string ct_lab;
  auto* ct_list = ct->add_subcommand("list", "Live entries: tuple, what it becomes, state, counters");
  auto* ct_gc = ct->add_subcommand(
      "gc",
      "End expired flows now: delete their entries and emit their flow-end events (the\n"
      "programs end the ones a packet meets; `moat flows --follow` and `moat serve` sweep\n"
      "every 2 s)");
  for (auto* sub : {ct_list, ct_gc}) {
    sub->add_option("--instance", instance, "dataplane instance")->capture_default_str();
    sub->add_option("--lab", ct_lab, "a lab's instance instead (lab-NAME)");
    sub->add_flag("--json", as_json, "machine-readable output");
  }

  auto* lab = app.add_subcommand(
      "lab",
      "The built-in lab: a Docker-like host, containers and an outside world made of network\n"
      "namespaces (moat-LAB-host, moat-LAB-c-NAME, moat-LAB-out), enforced by moat");
  lab->require_subcommand(1);
  std::string lab_name, target;
  bool no_enforce = false, no_listeners = false;
  std::vector<std::string> command;
  int timeout_ms = 1000;

  auto* lab_up = lab->add_subcommand(
      "up",
      "Build the lab for FILE and enforce it. Containers get eth0, eth1... on one bridge per\n"
      "network; exposed and published ports get a listener answering the container's name.");
  lab_up->add_option("file", file, "moat JSON file")->required();
  lab_up->add_option("--name", lab_name, "lab name (default: the file's name)");
  lab_up->add_flag("--no-enforce", no_enforce, "build the topology only (a baseline without moat)");
  lab_up->add_flag("--no-listeners", no_listeners,
                   "do not start the per-port container listeners (the internet server in "
                   "`outside` still runs)");
  lab_up->add_flag("--json", as_json, "machine-readable summary");

  auto* lab_down = lab->add_subcommand("down", "Remove a lab and its dataplane instance completely");
  lab_down->add_option("file", file, "the file the lab was built from (or use --name)");
  lab_down->add_option("--name,--lab", lab_name, "lab name (--lab, as the other lab commands take it)");

  auto* lab_exec = lab->add_subcommand(
      "exec", "Run a command in a container, in `host` or in `outside`:  moat lab exec web -- ping -c1 db");
  lab_exec->add_option("target", target, "container name, host or outside")->required();
  lab_exec->add_option("command", command, "command and arguments (after --)")->required();
  lab_exec->add_option("--lab", lab_name, "lab name (default: the only running lab)");

  auto* lab_list = lab->add_subcommand("list", "Running labs");
  lab_list->add_flag("--json", as_json, "machine-readable output");

  auto* lab_status = lab->add_subcommand("status", "`moat status` of a lab's dataplane");
  lab_status->add_option("--lab", lab_name, "lab name (default: the only running lab)");
  lab_status->add_flag("--json", as_json, "machine-readable output");

  auto* lab_probe = lab->add_subcommand(
      "probe",
      "Probe every container (and the host) against every other container's addresses on its\n"
      "exposed ports over TCP/UDP and with ICMP; print expected vs observed. Exit 1 on mismatch.");
  lab_probe->add_option("--lab", lab_name, "lab name (default: the only running lab)");
  lab_probe->add_option("--timeout-ms", timeout_ms, "how long a blocked probe is waited for")
      ->capture_default_str();
  lab_probe->add_flag("--json", as_json, "one JSON object per probe");

  auto* lab_apply = lab->add_subcommand(
      "apply",
      "Enforce the running lab's topology again with the policies of FILE(s) instead of the lab\n"
      "file's own (no FILE: the lab file's own policies again). Invalid input changes nothing.");
  std::vector<std::string> lab_policy_files;
  lab_apply->add_option("--lab", lab_name, "lab name (default: the only running lab)");
  lab_apply->add_option("files", lab_policy_files, "policy files (JSON or YAML)");
  lab_apply->add_flag("--json", as_json, "machine-readable report");

  // Segmentation policies.
  std::string explain_from, explain_to, explain_port, scope_lab;
  auto* explain = app.add_subcommand(
      "explain",
      "Would FROM reach TO on PORT/PROTO? The verdict, the isolation rule or the policy and rule\n"
      "that decide, and the verdict of the loaded kernel maps, which must agree.\n"
      "FROM/TO: a container (NAME or NAME@NETWORK), host, world, an IP or a CIDR.\n"
      "  moat explain --lab demo rechnung datenbank 7000/tcp");
  explain->add_option("from", explain_from, "source")->required();
  explain->add_option("to", explain_to, "destination")->required();
  explain->add_option("port", explain_port, "PORT/PROTO: 80/tcp, 53/udp, icmp (default tcp)")
      ->required();
  auto* policy_cmd = app.add_subcommand("policy", "Segmentation policies of an instance");
  policy_cmd->require_subcommand(1);
  auto* policy_list = policy_cmd->add_subcommand(
      "list", "Policies in force: what each selects, its rules, and the loaded revision");
  for (auto* sub : {explain, policy_list}) {
    sub->add_option("--instance", instance, "dataplane instance")->capture_default_str();
    sub->add_option("--lab", scope_lab, "a lab's instance instead (lab-NAME)");
    sub->add_flag("--json", as_json, "machine-readable output");
  }

  // Observation.
  std::string obs_lab;
  auto* stats_cmd = app.add_subcommand(
      "stats",
      "Counters kept in the kernel, summed over CPUs: per container attachment and direction\n"
      "(packets, bytes, new connections, drops by reason, live connections), per uplink, hits\n"
      "per policy rule, and flow events lost. Totals since each interface was attached.\n"
      "  moat stats --lab demo            moat stats --json | jq '.attachments[0]'");
  auto* flows_cmd = app.add_subcommand(
      "flows",
      "Flow and drop events from the kernel's ring buffer: new, updated (every 5 s while a\n"
      "connection lives), ended (FIN/RST or expiry), dropped (with reason and deciding rule).\n"
      "Without --follow: print what is queued and exit. With it, expired flows are swept every\n"
      "2 s so that their end events come (as `moat ct gc` does once). The buffer has ONE\n"
      "consumer: two `moat flows` at once split the events between them (`moat serve` does\n"
      "not read it, but sweeps too).\n"
      "Plain container-to-container connections are tracked (and reported) only while a\n"
      "policy is in force; published ports and masquerade always are.\n"
      "  moat flows --lab demo --follow --verdict dropped\n"
      "  moat flows --json --container web | jq .");
  bool follow = false;
  moat::obs::FlowFilter flow_filter;
  std::string verdict_text;
  flows_cmd->add_flag("--follow,-f", follow, "keep reading until Ctrl-C (SIGINT) or SIGTERM");
  flows_cmd->add_option("--container", flow_filter.container,
                        "only events that involve this container (its interface, or either end, "
                        "before or after translation); `host` for the host's addresses");
  flows_cmd->add_option("--verdict", verdict_text, "allowed (flow events) or dropped (drop events)")
      ->check(CLI::IsMember({"allowed", "dropped"}));
  flows_cmd->add_option("--reason", flow_filter.reason,
                        "only drops for this reason: network-isolation, policy-default-deny, "
                        "policy-deny, not-published, ... (see `moat stats`)");
  auto* top_cmd = app.add_subcommand(
      "top",
      "Live table of container attachments: rx/tx packets and bytes per second (rx: to the\n"
      "container), drops per second, live connections. Redraws every --interval-ms until Ctrl-C.\n"
      "--once prints one table of rates measured over one interval and exits.");
  bool top_once = false;
  std::string top_sort = "rx";
  int interval_ms = 1000;
  top_cmd->add_flag("--once", top_once, "one snapshot (rates over one interval), no redraw");
  top_cmd->add_option("--sort", top_sort, "rx, tx (bytes/s), drops, conns (biggest first) or name")
      ->check(CLI::IsMember({"rx", "tx", "drops", "conns", "name"}))
      ->capture_default_str();
  top_cmd->add_option("--interval-ms", interval_ms, "refresh interval and rate window")
      ->check(CLI::Range(100, 3600000))
      ->capture_default_str();
  auto* serve_cmd = app.add_subcommand(
      "serve",
      "Prometheus exporter: GET /metrics answers the text exposition format with the counters\n"
      "of `moat stats` (read from the pinned maps at every scrape). Never reads the flow event\n"
      "ring buffer, so `moat flows --follow` can run beside it. Listens only on loopback unless\n"
      "--allow-remote. Runs until Ctrl-C or SIGTERM.\n"
      "  moat serve --lab demo &  curl -s 127.0.0.1:9464/metrics");
  std::string metrics_addr = "127.0.0.1:9464";
  bool allow_remote = false;
  serve_cmd->add_option("--metrics-addr", metrics_addr, "HOST:PORT to listen on ([::1]:PORT for IPv6)")
      ->capture_default_str();
  serve_cmd->add_flag("--allow-remote", allow_remote,
                      "allow a non-loopback --metrics-addr (no TLS, no authentication)");
  for (auto* sub : {stats_cmd, flows_cmd, top_cmd, serve_cmd}) {
    sub->add_option("--instance", instance, "dataplane instance")->capture_default_str();
    sub->add_option("--lab", obs_lab, "a lab's instance instead (lab-NAME)");
    if (sub == stats_cmd || sub == flows_cmd)
      sub->add_flag("--json", as_json,
                    sub == stats_cmd ? "machine-readable output (documented in README, Observation)"
                                     : "one JSON object per event and line");
  }

  try {
    app.parse(argc, argv);

    if (*validate) {
      auto cfg = load_config(file);
      if (as_json)
        std::cout << config_json(cfg).dump(2) << "\n";
      else {
        print_config(cfg);
        std::cout << file << ": ok\n";
      }
    } else if (*apply) {
      check_instance(instance);
      std::vector<std::string> files = {file};
      files.insert(files.end(), policy_files.begin(), policy_files.end());
      auto inputs = read_inputs(files);
      auto cfg = load_inputs(inputs);
      need_root();
      auto rep = check(moat::apply(instance, cfg, dry_run));
      if (!dry_run) save_inputs(instance, inputs, false);
      if (as_json) {
        auto j = rep.to_json();
        j["instance"] = instance;
        j["dry_run"] = dry_run;
        std::cout << j.dump(2) << "\n";
      } else {
        std::cout << (dry_run ? "would apply: " : "applied: ") << rep.summary() << "  (instance "
                  << instance << ")\n";
      }
    } else if (*status) {
      check_instance(instance);
      need_root();
      auto s = check(moat::status(instance));
      if (as_json)
        std::cout << s.dump(2) << "\n";
      else
        print_status(s);
    } else if (*ct_list || *ct_gc) {
      need_root();
      if (!ct_lab.empty()) instance = lab_instance(ct_lab);
      check_instance(instance);
      if (*ct_gc) {
        int n = check(moat::ct_gc(instance));
        if (as_json)
          std::cout << json{{"instance", instance}, {"flows_ended", n}}.dump() << "\n";
        else
          std::cout << "ended " << n << " expired flows (instance " << instance
                    << "; their flow-end events are in the ring buffer)\n";
      } else {
        auto rows = check(moat::ct_entries(instance));
        if (as_json) {
          std::cout << rows.dump(2) << "\n";
        } else {
          std::cout << std::left << std::setw(17) << "KIND" << std::setw(6) << "PROTO"
                    << std::setw(44) << "TUPLE" << std::setw(44) << "BECOMES" << std::setw(13)
                    << "STATE" << std::setw(9) << "EXPIRES" << "PACKETS/BYTES\n";
          for (const auto& r : rows) {
            std::string tuple = r["from"].get<std::string>() + " > " + r["to"].get<std::string>();
            std::string becomes =
                r["becomes_from"].get<std::string>() + " > " + r["becomes_to"].get<std::string>();
            std::cout << std::setw(17) << r["kind"].get<std::string>() << std::setw(6)
                      << r["protocol"].get<std::string>() << std::setw(44) << tuple
                      << std::setw(44) << becomes << std::setw(13)
                      << r.value("tcp_state", std::string("-")) << std::setw(9)
                      << (std::to_string(r["expires_in_s"].get<uint64_t>()) + "s")
                      << r["packets"].get<uint64_t>() << "/" << r["bytes"].get<uint64_t>() << "\n";
          }
          std::cout << rows.size() << " entries\n";
        }
      }
    } else if (*lab_apply) {
      need_root();
      std::string name = pick_lab(lab_name);
      Inputs inputs = {{check(moat::lab_info(name)).source, read_file(lab_config_copy(name))}};
      auto extra = read_inputs(lab_policy_files);
      inputs.insert(inputs.end(), extra.begin(), extra.end());
      auto cfg = moat::lab_bind(load_inputs(inputs, true));
      auto rep = check(in_lab_host(name, [&] { return moat::apply(lab_instance(name), cfg, false); }));
      save_inputs(lab_instance(name), inputs, true);
      if (as_json) {
        auto j = rep.to_json();
        j["lab"] = name;
        std::cout << j.dump(2) << "\n";
      } else {
        std::cout << "lab " << name << ": " << rep.summary() << "\n";
      }
    } else if (*explain || *policy_list) {
      need_root();
      if (!scope_lab.empty()) instance = lab_instance(pick_lab(scope_lab));
      check_instance(instance);
      auto cfg = load_saved_inputs(instance);
      auto st = check(moat::status(instance));
      std::vector<moat::Ipv4> host_addrs;
      for (const auto& u : st["uplinks"])
        if (auto ip = moat::Ipv4::parse(u.value("ip", std::string()))) host_addrs.push_back(*ip);
      if (*policy_list) {
        print_policies(cfg, st, as_json);
      } else {
        explain_flow(cfg, instance, host_addrs, explain_from, explain_to, explain_port, as_json);
      }
    } else if (*stats_cmd || *flows_cmd || *top_cmd || *serve_cmd) {
      if (geteuid() != 0)
        die("this command reads the pinned BPF maps and needs root (CAP_BPF)");
      if (!obs_lab.empty()) instance = lab_instance(pick_lab(obs_lab));
      check_instance(instance);
      if (*stats_cmd) {
        auto snap = check(moat::obs::read_snapshot(observe_names(instance)));
        if (as_json)
          std::cout << moat::obs::snapshot_json(snap).dump(2) << "\n";
        else
          std::cout << moat::obs::snapshot_text(snap);
      } else if (*flows_cmd) {
        if (!verdict_text.empty()) flow_filter.dropped = verdict_text == "dropped";
        return run_flows(instance, flow_filter, follow, as_json);
      } else if (*top_cmd) {
        return run_top(instance, top_once, top_sort, interval_ms);
      } else {
        return run_serve(instance, metrics_addr, allow_remote);
      }
    } else if (*down) {
      check_instance(instance);
      need_root();
      check(moat::down(instance));
      std::cout << "instance " << instance << " removed\n";
    } else if (*lab_up) {
      need_root();
      std::string text = read_file(file);
      auto cfg = load_config_text(text, file);
      std::string name = lab_name.empty() ? default_lab_name(file) : pick_lab(lab_name);
      moat::LabOptions opt;
      opt.start_listeners = !no_listeners;
      auto built = check(moat::lab_up(cfg, name, opt));
      {
        std::ofstream copy(lab_config_copy(name));
        copy << text;
      }
      if (!no_enforce) {
        auto rep = in_lab_host(name, [&] { return moat::apply(lab_instance(name), built, false); });
        if (rep) save_inputs(lab_instance(name), {{file, text}}, false);
        if (!rep) {
          std::string err = rep.error().message();
          in_lab_host(name, [&] { return moat::down(lab_instance(name)); });
          (void)moat::lab_down(name);
          fs::remove(lab_config_copy(name));
          die("lab " + name + " removed again: " + err);
        }
      }
      if (as_json) {
        json j = config_json(built);
        j["lab"] = name;
        j["enforced"] = !no_enforce;
        j["instance"] = lab_instance(name);
        std::cout << j.dump(2) << "\n";
      } else {
        std::cout << "lab " << name << " is up" << (no_enforce ? " (NOT enforced)" : ", enforced by moat instance " + lab_instance(name)) << "\n";
        print_config(built);
        std::cout << "try:  moat lab exec --lab " << name << " "
                  << (built.containers.empty() ? "host" : built.containers[0].name)
                  << " -- ip -br addr\n      moat lab probe --lab " << name << "\n      moat lab down --name " << name << "\n";
      }
    } else if (*lab_down) {
      need_root();
      std::string name = !lab_name.empty() ? pick_lab(lab_name)
                         : !file.empty()   ? default_lab_name(file)
                                           : pick_lab("");
      if (fs::exists("/run/netns/" + moat::lab_host_ns(name)))
        check(in_lab_host(name, [&] { return moat::down(lab_instance(name)); }));
      else
        check(moat::down(lab_instance(name)));
      // Before lab_down(), which removes the state directory once empty.
      std::error_code ec;
      fs::remove(lab_config_copy(name), ec);
      check(moat::lab_down(name));
      std::cout << "lab " << name << " removed\n";
    } else if (*lab_exec) {
      need_root();
      std::string name = pick_lab(lab_name);
      int rc = check(moat::lab_exec(name, target, command));
      return rc;
    } else if (*lab_list) {
      auto labs = check(moat::lab_list());
      if (as_json) {
        json j = json::array();
        for (const auto& l : labs) {
          auto info = moat::lab_info(l);
          j.push_back({{"name", l}, {"source", info ? info->source : ""}});
        }
        std::cout << j.dump(2) << "\n";
      } else {
        for (const auto& l : labs) {
          auto info = moat::lab_info(l);
          std::cout << l << "\t" << (info ? info->source : "?") << "\n";
        }
      }
    } else if (*lab_status) {
      need_root();
      std::string name = pick_lab(lab_name);
      auto s = check(in_lab_host(name, [&] { return moat::status(lab_instance(name)); }));
      if (as_json)
        std::cout << s.dump(2) << "\n";
      else
        print_status(s);
    } else if (*lab_probe) {
      need_root();
      std::string name = pick_lab(lab_name);
      std::string copy = lab_config_copy(name);
      auto info = check(moat::lab_info(name));
      // What the instance enforces: the lab file, or what `lab apply` put in its place.
      auto cfg = fs::exists(inputs_path(lab_instance(name)))
                     ? load_saved_inputs(lab_instance(name))
                     : load_config_text(read_file(copy), info.source);
      auto probes = lab_probes(cfg, name);
      auto published = lab_publish_probes(cfg, name, info);
      expect_policy(cfg, info, probes, published);
      size_t n_isolation = probes.size();
      probes.insert(probes.end(), published.begin(), published.end());
      auto res = check(moat::run_probes(probes, std::chrono::milliseconds(timeout_ms), 3));
      int mismatches = 0;
      if (as_json) {
        for (size_t i = 0; i < probes.size(); ++i) {
          const auto& p = probes[i];
          mismatches += p.expected != res[i].reached;
          std::cout << json{{"from", p.src}, {"to", p.dst}, {"ip", p.dst_ip.str()},
                            {"proto", moat::to_string(p.proto)}, {"port", p.port},
                            {"expected", p.expected ? "pass" : "drop"},
                            {"observed", res[i].reached ? "pass" : "drop"},
                            {"detail", res[i].detail}}
                           .dump()
                    << "\n";
        }
      } else {
        std::vector<moat::Probe> iso(probes.begin(), probes.begin() + n_isolation),
            pub(probes.begin() + n_isolation, probes.end());
        std::vector<moat::ProbeOutcome> iso_res(res.begin(), res.begin() + n_isolation),
            pub_res(res.begin() + n_isolation, res.end());
        mismatches = print_matrix(
            iso, iso_res,
            "reachability, expected -> observed (every exposed port over tcp/udp, and icmp)");
        if (!pub.empty()) {
          std::cout << "\n";
          mismatches += print_matrix(
              pub, pub_res,
              "published ports, expected -> observed (outside and host at the uplink address, "
              "host at 127.0.0.1, containers at their gateway)",
              false);
        }
      }
      return mismatches ? 1 : 0;
    }
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const CliError& e) {
    std::cerr << "moat: " << e.message << "\n";
    return e.code;
  } catch (const std::exception& e) {
    std::cerr << "moat: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
