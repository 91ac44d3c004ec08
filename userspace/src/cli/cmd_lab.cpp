// `moat lab ...`: the built-in lab (up, down, exec, list, status, probe, apply).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>

#include "cli/common.h"
#include "cli/inputs.h"
#include "dataplane/dataplane.h"
#include "dataplane/reconcile.h"
#include "lab/expectations.h"
#include "lab/probe.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace moat::cli {

namespace {

struct LabArgs {
  std::string file, name, target;
  std::vector<std::string> command, policy_files;
  bool as_json = false, no_enforce = false, no_listeners = false;
  int timeout_ms = 1000;
};

// ---- up, down -------------------------------------------------------------------------

void print_lab_up(const LabArgs& a, const std::string& name, const moat::Config& built) {
  if (a.as_json) {
    json j = config_json(built);
    j["lab"] = name;
    j["enforced"] = !a.no_enforce;
    j["instance"] = lab_instance(name);
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::cout << "lab " << name << " is up"
            << (a.no_enforce ? " (NOT enforced)"
                             : ", enforced by moat instance " + lab_instance(name))
            << "\n";
  print_config(built);
  std::cout << "try:  moat lab exec --lab " << name << " "
            << (built.containers.empty() ? "host" : built.containers[0].name)
            << " -- ip -br addr\n      moat lab probe --lab " << name
            << "\n      moat lab down --name " << name << "\n";
}

int run_lab_up(const LabArgs& a) {
  need_root();
  std::string text = read_file(a.file);
  load_config_text(text, a.file);  // the file's own problems, named in its own terms
  // Built from the text the record keeps, so that what is applied is what
  // the record rebuilds (a binding that makes the file invalid stops here).
  std::string bound = check(moat::lab_bind_text(text));
  auto cfg = load_config_text(bound, a.file);
  std::string name = a.name.empty() ? default_lab_name(a.file) : pick_lab(a.name);
  moat::LabOptions opt;
  opt.start_listeners = !a.no_listeners;
  auto built = check(moat::lab_up(cfg, name, opt));
  {
    std::ofstream copy(lab_config_copy(name));
    copy << bound;
  }
  if (!a.no_enforce) {
    moat::DesiredState want{built, Inputs{{{a.file, bound}}, false, {}}};
    auto rep = in_lab_host(name, [&] { return moat::reconcile(lab_instance(name), want); });
    if (!rep) {
      std::string err = rep.error().message();
      in_lab_host(name, [&] { return moat::remove_instance(lab_instance(name)); });
      (void)moat::lab_down(name);
      fs::remove(lab_config_copy(name));
      die("lab " + name + " removed again: " + err);
    }
  }
  print_lab_up(a, name, built);
  return 0;
}

int run_lab_down(const LabArgs& a) {
  need_root();
  std::string name = !a.name.empty()   ? pick_lab(a.name)
                     : !a.file.empty() ? default_lab_name(a.file)
                                       : pick_lab("");
  if (fs::exists("/run/netns/" + moat::lab_host_ns(name)))
    check(in_lab_host(name, [&] { return moat::remove_instance(lab_instance(name)); }));
  else
    check(moat::remove_instance(lab_instance(name)));
  // Before lab_down(), which removes the state directory once empty.
  std::error_code ec;
  fs::remove(lab_config_copy(name), ec);
  check(moat::lab_down(name));
  std::cout << "lab " << name << " removed\n";
  return 0;
}

// ---- exec, list, status, apply ------------------------------------------------------------

int run_lab_exec(const LabArgs& a) {
  need_root();
  std::string name = pick_lab(a.name);
  return check(moat::lab_exec(name, a.target, a.command));
}

int run_lab_list(const LabArgs& a) {
  auto labs = check(moat::lab_list());
  if (a.as_json) {
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
  return 0;
}

int run_lab_status(const LabArgs& a) {
  need_root();
  std::string name = pick_lab(a.name);
  auto s = check(in_lab_host(name, [&] { return moat::status(lab_instance(name)); }));
  if (!a.as_json) return print_status(s);
  std::cout << s.dump(2) << "\n";
  return status_code(s);
}

int run_lab_apply(const LabArgs& a) {
  need_root();
  std::string name = pick_lab(a.name);
  auto opened = open_inputs(a.policy_files, true);
  // Bound again: idempotent, and a copy from before lab up bound it still gives a true record.
  opened.put_first({check(moat::lab_info(name)).source,
                    check(moat::lab_bind_text(read_file(lab_config_copy(name))))});
  // What the record makes when read again on its own, and nothing more: an
  // undo or the next command's settle() rebuilds exactly this config.
  // Braces evaluate in order: the config is read before the inputs move (1 MB at 10,000 rules).
  moat::ReconcileOptions opt;
  opt.keep_policy_image = true;
  // One rule changed: only it is read and compiled; else the whole files.
  const std::vector<int> unread = opened.unread_fds();
  auto one = check(in_lab_host(name, [&] {
    return moat::reconcile_one_rule(lab_instance(name), opened.inputs, opt, unread);
  }));
  if (!one) {
    expect_whole_compile();
    moat::Inputs inputs = read_rest(std::move(opened));
    moat::DesiredState want{config_from_inputs(inputs), std::move(inputs)};
    one = check(in_lab_host(name, [&] { return moat::reconcile(lab_instance(name), want, opt); }));
  }
  const moat::ApplyReport& rep = *one;
  if (a.as_json) {
    auto j = rep.to_json();
    j["lab"] = name;
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << "lab " << name << ": " << rep.summary() << "\n";
  }
  return 0;
}

// ---- probe --------------------------------------------------------------------------------

const char* pass_word(bool b) { return b ? "pass" : "drop"; }

using Cells = std::map<std::pair<std::string, std::string>, std::pair<std::string, std::string>>;

void print_cells(const std::vector<std::string>& rows, const std::vector<std::string>& cols,
                 const Cells& cell) {
  size_t w0 = 6, w = 14;
  for (const auto& r : rows) w0 = std::max(w0, r.size() + 2);
  for (const auto& c : cols) w = std::max(w, c.size() + 2);
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
}

// Matrix of sources x destination attachments; a cell aggregates every port
// and protocol probed for that pair as "expected -> observed".
int print_matrix(const std::vector<moat::Probe>& probes, const std::vector<moat::ProbeOutcome>& res,
                 const std::string& title, bool column_ip = true) {
  std::vector<std::string> rows, cols;
  Cells cell;
  int mismatches = 0;
  for (size_t i = 0; i < probes.size(); ++i) {
    const auto& p = probes[i];
    if (std::find(rows.begin(), rows.end(), p.src) == rows.end()) rows.push_back(p.src);
    std::string col = column_ip ? p.dst + " " + p.dst_ip_str() : p.dst;
    if (std::find(cols.begin(), cols.end(), col) == cols.end()) cols.push_back(col);
    auto& [exp, obs] = cell[{p.src, col}];
    auto merge = [](std::string& acc, const std::string& w) {
      acc = acc.empty() || acc == w ? w : "mixed";
    };
    merge(exp, pass_word(p.expected));
    merge(obs, pass_word(res[i].reached));
    if (p.expected != res[i].reached) ++mismatches;
  }
  std::cout << title << "\n";
  print_cells(rows, cols, cell);
  for (size_t i = 0; i < probes.size(); ++i) {
    const auto& p = probes[i];
    if (p.expected == res[i].reached) continue;
    std::cout << "  UNEXPECTED: " << p.src << " -> " << p.dst << " " << p.dst_ip_str() << " "
              << moat::to_string(p.proto) << (p.port ? "/" + std::to_string(p.port) : "")
              << ": expected " << pass_word(p.expected) << ", got " << res[i].detail << "\n";
  }
  std::cout << probes.size() << " probes, " << probes.size() - mismatches << " as expected, "
            << mismatches << " unexpected\n";
  return mismatches;
}

int print_probes_json(const std::vector<moat::Probe>& probes,
                      const std::vector<moat::ProbeOutcome>& res) {
  int mismatches = 0;
  for (size_t i = 0; i < probes.size(); ++i) {
    const auto& p = probes[i];
    mismatches += p.expected != res[i].reached;
    std::cout << json{{"from", p.src},
                      {"to", p.dst},
                      {"family", p.family()},
                      {"ip", p.dst_ip_str()},
                      {"proto", moat::to_string(p.proto)},
                      {"port", p.port},
                      {"expected", pass_word(p.expected)},
                      {"observed", pass_word(res[i].reached)},
                      {"detail", res[i].detail}}
                     .dump()
              << "\n";
  }
  return mismatches;
}

// The isolation matrix (the first `n_isolation` probes), then the published
// ports; in a dual-stack lab both again over IPv6, titled so.
int print_probe_matrices(const std::vector<moat::Probe>& probes,
                         const std::vector<moat::ProbeOutcome>& res, size_t n_isolation) {
  int mismatches = 0;
  for (bool v6 : {false, true}) {
    std::vector<moat::Probe> iso, pub;
    std::vector<moat::ProbeOutcome> iso_res, pub_res;
    for (size_t i = 0; i < probes.size(); ++i) {
      if (probes[i].ipv6() != v6) continue;
      (i < n_isolation ? iso : pub).push_back(probes[i]);
      (i < n_isolation ? iso_res : pub_res).push_back(res[i]);
    }
    if (v6 && iso.empty() && pub.empty()) break;
    if (v6) std::cout << "\n";
    mismatches += print_matrix(
        iso, iso_res,
        v6 ? "IPv6 reachability, expected -> observed (every exposed port over tcp/udp, and "
             "icmpv6, to each IPv6 address)"
           : "reachability, expected -> observed (every exposed port over tcp/udp, and icmp)");
    if (pub.empty()) continue;
    std::cout << "\n";
    mismatches += print_matrix(
        pub, pub_res,
        v6 ? "IPv6 published ports, expected -> observed (outside and host at the uplink's IPv6 "
             "address, host at [::1], containers at their network's IPv6 gateway)"
           : "published ports, expected -> observed (outside and host at the uplink address, "
             "host at 127.0.0.1, containers at their gateway)",
        false);
  }
  return mismatches;
}

int run_lab_probe(const LabArgs& a) {
  need_root();
  std::string name = pick_lab(a.name);
  std::string copy = lab_config_copy(name);
  auto info = check(moat::lab_info(name));
  // What the instance enforces: the lab file, or what `lab apply` put in its place.
  auto cfg = fs::exists(moat::inputs_path(lab_instance(name)))
                 ? load_saved_inputs(lab_instance(name))
                 : load_config_text(read_file(copy), info.source);
  auto probes = moat::lab_probes(cfg, name);
  auto published = moat::lab_publish_probes(cfg, name, info);
  moat::expect_policy(cfg, info, probes, published);
  size_t n_isolation = probes.size();
  probes.insert(probes.end(), published.begin(), published.end());
  auto res = check(moat::run_probes(probes, std::chrono::milliseconds(a.timeout_ms), 3));
  int mismatches =
      a.as_json ? print_probes_json(probes, res) : print_probe_matrices(probes, res, n_isolation);
  return mismatches ? 1 : 0;
}

// ---- registration ---------------------------------------------------------------------------

void add_lab_build(CLI::App& lab, CommandTable& table, const std::shared_ptr<LabArgs>& a) {
  auto* up = lab.add_subcommand(
      "up",
      "Build the lab for FILE and enforce it. Containers get eth0, eth1... on one bridge per\n"
      "network; exposed and published ports get a listener answering the container's name.");
  up->add_option("file", a->file, "moat JSON file")->required();
  up->add_option("--name", a->name, "lab name (default: the file's name)");
  up->add_flag("--no-enforce", a->no_enforce, "build the topology only (a baseline without moat)");
  up->add_flag("--no-listeners", a->no_listeners,
               "do not start the per-port container listeners (the internet server in "
               "`outside` still runs)");
  up->add_flag("--json", a->as_json, "machine-readable summary");

  auto* down = lab.add_subcommand("down", "Remove a lab and its dataplane instance completely");
  down->add_option("file", a->file, "the file the lab was built from (or use --name)");
  down->add_option("--name,--lab", a->name, "lab name (--lab, as the other lab commands take it)");

  auto* exec = lab.add_subcommand(
      "exec",
      "Run a command in a container, in `host` or in `outside`:  moat lab exec web -- ping -c1 db");
  exec->add_option("target", a->target, "container name, host or outside")->required();
  exec->add_option("command", a->command, "command and arguments (after --)")->required();
  exec->add_option("--lab", a->name, "lab name (default: the only running lab)");

  table.push_back({up, [a] { return run_lab_up(*a); }});
  table.push_back({down, [a] { return run_lab_down(*a); }});
  table.push_back({exec, [a] { return run_lab_exec(*a); }});
}

void add_lab_inspect(CLI::App& lab, CommandTable& table, const std::shared_ptr<LabArgs>& a) {
  auto* list = lab.add_subcommand("list", "Running labs");
  list->add_flag("--json", a->as_json, "machine-readable output");

  auto* status = lab.add_subcommand("status", "`moat status` of a lab's dataplane");
  status->add_option("--lab", a->name, "lab name (default: the only running lab)");
  status->add_flag("--json", a->as_json, "machine-readable output");

  auto* probe = lab.add_subcommand(
      "probe",
      "Probe every container (and the host) against every other container's addresses on its\n"
      "exposed ports over TCP/UDP and with ICMP, and its published ports from the outside, the\n"
      "host and the containers; in a dual-stack lab all of it over IPv6 too (matrices titled\n"
      "IPv6, \"family\" in --json). Print expected vs observed. Exit 1 on mismatch.");
  probe->add_option("--lab", a->name, "lab name (default: the only running lab)");
  probe->add_option("--timeout-ms", a->timeout_ms, "how long a blocked probe is waited for")
      ->capture_default_str();
  probe->add_flag("--json", a->as_json, "one JSON object per probe");

  auto* apply = lab.add_subcommand(
      "apply",
      "Enforce the running lab's topology again with the policies of FILE(s) instead of the lab\n"
      "file's own (no FILE: the lab file's own policies again). Invalid input changes nothing.");
  apply->add_option("--lab", a->name, "lab name (default: the only running lab)");
  apply->add_option("files", a->policy_files, "policy files (JSON or YAML)");
  apply->add_flag("--json", a->as_json, "machine-readable report");

  table.push_back({list, [a] { return run_lab_list(*a); }});
  table.push_back({status, [a] { return run_lab_status(*a); }});
  table.push_back({probe, [a] { return run_lab_probe(*a); }});
  table.push_back({apply, [a] { return run_lab_apply(*a); }});
}

}  // namespace

void add_lab_commands(CLI::App& app, CommandTable& table) {
  auto* lab = app.add_subcommand(
      "lab",
      "The built-in lab: a Docker-like host, containers and an outside world made of network\n"
      "namespaces (moat-LAB-host, moat-LAB-c-NAME, moat-LAB-out), enforced by moat");
  lab->require_subcommand(1);
  auto a = std::make_shared<LabArgs>();
  add_lab_build(*lab, table, a);
  add_lab_inspect(*lab, table, a);
}

}  // namespace moat::cli
