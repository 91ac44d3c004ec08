// `moat docker`: the agent that enforces a Docker Engine's networking
// (docker/agent.h). Here: options, signals and what it prints.
#include <signal.h>

#include <iostream>
#include <memory>

#include "cli/common.h"
#include "config/values.h"
#include "docker/agent.h"

namespace moat::cli {

namespace {

struct DockerArgs {
  moat::docker::AgentOptions agent;
  std::vector<std::string> limits;  // --limit KEY=N
  bool once = false, as_json = false, no_bridge_masquerade = false;
};

int run_once(moat::docker::Agent& agent, const DockerArgs& a) {
  auto rep = check(agent.sync());
  if (a.as_json) {
    auto j = rep.applied.to_json();
    j["instance"] = a.agent.instance;
    j["networks_enforced"] = rep.networks;
    j["containers_enforced"] = rep.containers;
    j["endpoints_pending"] = rep.pending;
    j["skipped"] = rep.skipped;
    j["skipped_notes"] = rep.skipped_notes;
    j["apply_ms"] = rep.apply_ms;
    j["kernel_ms"] = rep.kernel_ms;
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << "synced " << rep.containers << " containers on " << rep.networks
              << " networks (" << rep.pending << " endpoints pending, " << rep.skipped
              << " skipped): " << rep.applied.summary() << "  (instance " << a.agent.instance
              << ")\n";
    for (const auto& n : rep.skipped_notes) std::cout << "  not enforced: " << n << "\n";
  }
  return 0;
}

int run_docker(DockerArgs& a) {
  check_instance(a.agent.instance);
  need_root();
  a.agent.default_bridge_masquerade = !a.no_bridge_masquerade;
  auto limits = parse_limit_flags(a.limits);
  if (!limits) die(limits.error(), 2);
  a.agent.limits = *limits;
  // dockerd may close a connection mid-request; that must not end the agent.
  signal(SIGPIPE, SIG_IGN);
  block_stop_signals();
  auto agent = check(moat::docker::Agent::connect(a.agent));
  if (a.once) return run_once(agent, a);
  std::cerr << "moat docker: following " << a.agent.socket << " (instance " << a.agent.instance
            << "); Ctrl-C or SIGTERM stops, enforcement stays in the kernel\n";
  bool stop = false;
  auto keep_going = [&] { return !(stop = stop || stop_requested(0)); };
  auto log = [](const std::string& line) { std::cerr << "moat docker: " << line << "\n"; };
  check(agent.run(keep_going, log));
  return 0;
}

}  // namespace

void add_docker_commands(CLI::App& app, CommandTable& table) {
  auto a = std::make_shared<DockerArgs>();
  auto* cmd = app.add_subcommand(
      "docker",
      "Enforce a Docker Engine's networking with eBPF instead of dockerd's iptables: isolation\n"
      "between networks, ICC, internal networks, published ports, masquerade, and policies\n"
      "selecting containers by their Docker labels. Runs until Ctrl-C or SIGTERM; what it\n"
      "enforced stays in the kernel when it stops (`moat down --instance docker` removes it).\n"
      "dockerd needs {\"iptables\": false, \"ip6tables\": false, \"userland-proxy\": false}.\n"
      "  moat docker --policies /etc/moat/policies\n"
      "  moat docker --once --json        # one sync, print what changed");
  cmd->add_option("--socket", a->agent.socket, "dockerd's API socket")->capture_default_str();
  cmd->add_option("--instance", a->agent.instance, "dataplane instance")->capture_default_str();
  cmd->add_option("--uplink", a->agent.uplinks,
                  "the host's interfaces to the world (repeat; default: those of the default "
                  "routes)");
  cmd->add_option("--limit", a->limits,
                  "map sizes, as a file's \"limits\" (repeat): conntrack=N, endpoints=N, "
                  "published_ports=N, socket_nat=N (README, \"Limits\"); fixed when the "
                  "instance is made");
  cmd->add_option("--policies", a->agent.policies_dir,
                  "a directory of policy files (moat's or Kubernetes NetworkPolicy, JSON or "
                  "YAML), reread when they change");
  cmd->add_flag("--no-bridge-masquerade", a->no_bridge_masquerade,
                "the default bridge does not masquerade (dockerd's --ip-masq=false, which its "
                "API does not report)");
  cmd->add_flag("--once", a->once, "one sync, then exit");
  cmd->add_flag("--json", a->as_json, "with --once: machine-readable report");
  table.push_back({cmd, [a] { return run_docker(*a); }});
}

}  // namespace moat::cli
