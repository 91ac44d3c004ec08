// The file commands: validate, apply, status, down.
#include <unistd.h>

#include <iostream>
#include <memory>
#include <optional>

#include "cli/common.h"
#include "cli/inputs.h"
#include "dataplane/dataplane.h"
#include "dataplane/fastpath.h"
#include "dataplane/reconcile.h"
#include "plan/plan.h"

using nlohmann::json;

namespace moat::cli {

namespace {

struct FileArgs {
  std::string file, instance = "default", lab, fast, fast_routed;
  std::vector<std::string> policy_files;
  bool as_json = false, dry_run = false;
};

// The very reading apply does, so that what validate accepts apply takes.
int run_validate(const FileArgs& a) {
  std::vector<std::string> files = {a.file};
  files.insert(files.end(), a.policy_files.begin(), a.policy_files.end());
  auto cfg = config_from_inputs(read_inputs(files));
  if (auto r = moat::check_plannable(cfg); !r) die(r.error().message(), 2);
  if (a.as_json) {
    std::cout << config_json(cfg).dump(2) << "\n";
  } else {
    print_config(cfg);
    std::cout << a.file << ": ok\n";
  }
  return 0;
}

int run_apply(const FileArgs& a) {
  check_instance(a.instance);
  std::vector<std::string> files = {a.file};
  files.insert(files.end(), a.policy_files.begin(), a.policy_files.end());
  const bool may_be_one_rule = !a.dry_run && geteuid() == 0;
  auto opened = may_be_one_rule ? open_inputs(files) : OpenedInputs{read_inputs(files), {}};
  moat::ReconcileOptions opt;
  opt.dry_run = a.dry_run;
  opt.keep_policy_image = true;
  // One rule changed: only it is read and compiled; else the whole files.
  std::optional<moat::ApplyReport> one;
  if (may_be_one_rule)
    one = check(moat::reconcile_one_rule(a.instance, opened.inputs, opt, opened.unread_fds()));
  if (!one) {
    expect_whole_compile();
    moat::Inputs inputs = read_rest(std::move(opened));
    auto cfg = config_from_inputs(inputs);
    need_root();
    one = check(moat::reconcile(a.instance, {std::move(cfg), std::move(inputs)}, opt));
  }
  const moat::ApplyReport& rep = *one;
  if (a.as_json) {
    auto j = rep.to_json();
    j["instance"] = a.instance;
    j["dry_run"] = a.dry_run;
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << (a.dry_run ? "would apply: " : "applied: ") << rep.summary() << "  (instance "
              << a.instance << ")\n";
  }
  return 0;
}

int run_status(const FileArgs& a) {
  check_instance(a.instance);
  need_root();
  auto s = check(moat::status(a.instance));
  if (!a.as_json) return print_status(s);
  std::cout << s.dump(2) << "\n";
  return status_code(s);
}

int run_down(const FileArgs& a) {
  check_instance(a.instance);
  need_root();
  check(moat::remove_instance(a.instance));
  std::cout << "instance " << a.instance << " removed\n";
  return 0;
}

int run_fastpath(const FileArgs& a) {
  std::string instance = scoped_instance(a.instance, a.lab);
  check_instance(instance);
  need_root();
  moat::FastPathSwitches set;
  if (!a.fast.empty()) set.peer = a.fast == "on";
  if (!a.fast_routed.empty()) set.routed = a.fast_routed == "on";
  auto j = check(moat::fast_path(instance, set));
  if (a.as_json) {
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << "fast path between containers of a network: " << (j["peer"] ? "on" : "off") << " ("
              << j["peer_packets"].get<uint64_t>() << " packets, "
              << j["peer_bytes"].get<uint64_t>() << " bytes so far)\n"
              << "routed fast path to the uplinks and back: " << (j["routed"] ? "on" : "off")
              << " (out " << j["routed_packets"].get<uint64_t>() << " packets, "
              << j["routed_bytes"].get<uint64_t>() << " bytes; replies in ";
    if (j["routed_in_packets"].is_null())
      std::cout << "not counted: this instance's maps were made by an older moat)\n";
    else
      std::cout << j["routed_in_packets"].get<uint64_t>() << " packets, "
                << j["routed_in_bytes"].get<uint64_t>() << " bytes so far)\n";
  }
  return 0;
}

}  // namespace

void add_file_commands(CLI::App& app, CommandTable& table) {
  auto a = std::make_shared<FileArgs>();
  auto* validate = app.add_subcommand(
      "validate",
      "Check a file and show it resolved (subnets, gateways, addresses); changes nothing.\n"
      "Also refuses what the maps cannot hold under the file's `limits` (attachments,\n"
      "published ports, networks, compiled policies), as `moat apply` would");
  validate->add_option("file", a->file, "moat JSON file")->required();
  validate->add_option("policy-files", a->policy_files,
                       "policy files, as `moat apply` takes them (merged into the main file)");
  validate->add_flag("--json", a->as_json, "print the resolved file as JSON");

  auto* apply = app.add_subcommand(
      "apply",
      "Enforce a file on existing host-side interfaces (each attachment names its \"interface\").\n"
      "Only what changed is written; re-applying the same file changes nothing. Invalid files\n"
      "change nothing either: the running dataplane keeps its state.");
  apply->add_option("file", a->file, "moat JSON file")->required();
  apply->add_option("policy-files", a->policy_files,
                    "more policies: moat-native or Kubernetes NetworkPolicy objects, a List, "
                    "a JSON array, JSON or YAML");
  apply->add_option("--instance", a->instance, "dataplane instance (pins in /sys/fs/bpf/moat/NAME)")
      ->capture_default_str();
  apply->add_flag("--dry-run", a->dry_run, "show what would change, change nothing");
  apply->add_flag("--json", a->as_json, "machine-readable report");

  auto* status = app.add_subcommand(
      "status",
      "Programs, interfaces, maps, endpoints and counters.\n"
      "When the instance's record is damaged: what the kernel holds for it, how to repair, exit 1");
  status->add_option("--instance", a->instance, "dataplane instance")->capture_default_str();
  status->add_flag("--json", a->as_json, "machine-readable output");

  auto* down = app.add_subcommand(
      "down",
      "Detach every program, unpin every map, remove the record. Works from the\n"
      "kernel: the instance's filters are found by the programs they run, in the\n"
      "namespaces moat can reach, so a lost or damaged record leaves nothing behind");
  down->add_option("--instance", a->instance, "dataplane instance")->capture_default_str();

  auto* fast = app.add_subcommand(
      "fastpath",
      "The fast path between containers of one network: packets of an established, tracked\n"
      "flow go straight into the destination's namespace (bpf_redirect_peer), skipping the\n"
      "bridge, when the destination's own program would pass them unchanged. On by default\n"
      "where the kernel has it; `off` is the kill switch (every packet through the bridge).\n"
      "--routed on: what a network's bridge hands the host to forward to an uplink goes\n"
      "straight to that uplink (bpf_redirect_neigh), skipping the host's IP stack, with the\n"
      "kernel's own route, TTL and MTU checks; the uplink's program still masquerades it.\n"
      "The replies come back the same way: from the uplink straight into the container's\n"
      "namespace (bpf_redirect_peer) once its program has translated them, when the host\n"
      "routes them to the container's network and its own hook would pass them (IPv4).\n"
      "Off by default: the host's own netfilter PREROUTING, FORWARD and POSTROUTING rules\n"
      "and IPsec forward policies never see those packets. Without an argument: whether\n"
      "each is on, and what took it.");
  fast->add_option("state", a->fast, "on or off: the fast path between containers")
      ->check(CLI::IsMember({"on", "off"}));
  fast->add_option("--routed", a->fast_routed,
                   "on or off: the routed fast path to the uplinks and back")
      ->check(CLI::IsMember({"on", "off"}));
  add_instance_options(fast, a->instance, a->lab);
  fast->add_flag("--json", a->as_json, "machine-readable output");

  table.push_back({validate, [a] { return run_validate(*a); }});
  table.push_back({fast, [a] { return run_fastpath(*a); }});
  table.push_back({apply, [a] { return run_apply(*a); }});
  table.push_back({status, [a] { return run_status(*a); }});
  table.push_back({down, [a] { return run_down(*a); }});
}

}  // namespace moat::cli
