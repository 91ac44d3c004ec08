// Observation: `moat stats`, `moat flows`, `moat top`, `moat serve`. The
// reading is observe/'s; here: names from the saved inputs, signals, output.
#include <pthread.h>
#include <signal.h>

#include <filesystem>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>

#include "cli/common.h"
#include "cli/inputs.h"
#include "dataplane/reconcile.h"
#include "dataplane/dataplane.h"
#include "observe/observe.h"

namespace fs = std::filesystem;

namespace moat::cli {

namespace {

struct ObserveArgs {
  std::string instance = "default", lab;
  bool as_json = false;
  // flows
  bool follow = false;
  moat::obs::FlowFilter filter;
  std::string verdict;
  // top
  bool once = false;
  std::string sort = "rx";
  int interval_ms = 1000;
  // serve
  std::string metrics_addr = "127.0.0.1:9464";
  bool allow_remote = false;
};

// Names for an instance's counters and events: its state file, plus the
// config it was applied from (namespaces, labels, which policies isolate whom)
// when that was saved.
moat::obs::Names observe_names(const std::string& instance) {
  auto st = check(moat::instance_state(instance));
  if (st.empty() && !fs::exists(moat::pin_dir(instance)))
    die("no moat instance \"" + instance +
        "\" (nothing applied; see `moat apply --help`, "
        "or `moat lab list` for --lab)");
  auto names = moat::obs::names_from_state(instance, st);
  if (fs::exists(moat::inputs_path(instance))) {
    try {
      moat::obs::add_config(names, load_saved_inputs(instance));
    } catch (const CliError&) {
      // names from the state file alone: no namespaces or labels
    }
  }
  return names;
}

void warn_no_sweep(const std::string& why) {
  std::cerr << "moat: warning: expired flows will not be swept (" << why
            << "); their flow-end events come only when a packet meets them\n";
}

// ---- commands -------------------------------------------------------------------------

int run_stats(const std::string& instance, const ObserveArgs& a) {
  auto snap = check(moat::obs::read_snapshot(observe_names(instance)));
  if (a.as_json)
    std::cout << moat::obs::snapshot_json(snap).dump(2) << "\n";
  else
    std::cout << moat::obs::snapshot_text(snap);
  return 0;
}

int run_flows(const std::string& instance, const ObserveArgs& a) {
  moat::obs::FlowFilter filter = a.filter;
  if (!a.verdict.empty()) filter.dropped = a.verdict == "dropped";
  if (auto why = moat::obs::check_filter(filter); !why.empty()) die(why, 2);
  auto names = observe_names(instance);
  if (!filter.container.empty() && !names.containers.contains(filter.container) &&
      filter.container != "host")
    die("--container " + filter.container + ": no such container in instance " + instance, 2);
  auto print = [&](const nlohmann::json& ev) {
    std::cout << (a.as_json ? ev.dump() : moat::obs::event_text(ev)) << "\n";
    std::cout.flush();
    return static_cast<bool>(std::cout);
  };
  auto reader = check(moat::obs::EventReader::open(instance, names, filter, print));
  signal(SIGPIPE, SIG_IGN);
  if (!a.follow) {
    check(reader.drain());
    if (!a.as_json)
      std::cerr << reader.shown() << " of " << reader.seen() << " queued events shown\n";
    return 0;
  }
  block_stop_signals();
  moat::obs::Sweeper sweeper(instance, warn_no_sweep);
  auto fresh_names = [&]() -> std::optional<moat::obs::Names> {
    try {
      return observe_names(instance);
    } catch (const CliError&) {
      return std::nullopt;
    }
  };
  check(reader.follow(
      sweeper, [] { return stop_requested(0); }, fresh_names));
  return 0;
}

void print_top(const std::string& instance, const ObserveArgs& a, const moat::obs::TopFrame& f,
               bool tty) {
  char when[16];
  time_t now = time(nullptr);
  tm tmv{};
  localtime_r(&now, &tmv);
  strftime(when, sizeof(when), "%H:%M:%S", &tmv);
  std::ostringstream title;
  title << "moat top - " << instance << " - " << when << " - rates over " << std::fixed
        << std::setprecision(1) << f.seconds << " s, sorted by " << a.sort
        << "; CONNS: live connections; flow events lost: " << f.events_lost;
  if (!a.once && tty) std::cout << "\033[H\033[2J";
  std::cout << moat::obs::top_table(f.rows, title.str());
  if (!a.once && tty) std::cout << "\n(Ctrl-C to quit)\n";
  if (!a.once && !tty) std::cout << "\n";
  std::cout.flush();
}

int run_top(const std::string& instance, const ObserveArgs& a) {
  auto sampler = check(moat::obs::TopSampler::start(observe_names(instance)));
  bool tty = isatty(STDOUT_FILENO);
  block_stop_signals();
  while (true) {
    if (stop_requested(a.interval_ms)) break;
    auto frame = check(sampler.next([&] { return observe_names(instance); }, a.sort));
    print_top(instance, a, frame, tty);
    if (a.once || !std::cout) break;
  }
  return 0;
}

int run_serve(const std::string& instance, const ObserveArgs& a) {
  const std::string& addr = a.metrics_addr;
  auto hp = moat::obs::parse_listen_addr(addr);
  if (!hp)
    die("--metrics-addr \"" + addr + "\": expected HOST:PORT (127.0.0.1:9464, [::1]:9464)", 2);
  auto [host, port] = *hp;
  if (!moat::obs::is_loopback_host(host) && !a.allow_remote)
    die("--metrics-addr " + addr +
            " is not a loopback address: the metrics name every container "
            "and policy; pass --allow-remote to serve them beyond this host anyway",
        2);
  (void)observe_names(instance);  // fail now, not at the first scrape
  check(moat::obs::read_snapshot(observe_names(instance)));

  moat::obs::Exporter exporter(instance, [instance]() -> moat::Result<moat::obs::Snapshot> {
    try {
      return moat::obs::read_snapshot(observe_names(instance));
    } catch (const CliError& e) {
      return moat::fail(e.message);
    }
  });
  // Signals are blocked before the server's threads start, so they all
  // inherit the mask and only sigwait() below sees SIGINT/SIGTERM.
  block_stop_signals();
  if (auto r = exporter.bind(host, port); !r)
    die("cannot listen on " + addr + ": " + r.error().message() +
        (r.error().err ? " (in use? wrong address?)" : ""));
  std::cerr << "moat: serving metrics of instance " << instance << " at http://" << addr
            << "/metrics (Ctrl-C to stop)\n";
  exporter.serve([] { kill(getpid(), SIGTERM); });
  moat::obs::Sweeper sweeper(instance, warn_no_sweep);
  do sweeper.maybe_sweep();
  while (!stop_requested(500));
  exporter.stop();
  return 0;
}

// Reading pinned maps needs root too, but changes nothing: its own message.
std::string observed_instance(const ObserveArgs& a) {
  if (geteuid() != 0) die("this command reads the pinned BPF maps and needs root (CAP_BPF)");
  std::string instance = scoped_instance(a.instance, a.lab);
  check_instance(instance);
  return instance;
}

// ---- registration ---------------------------------------------------------------------

CLI::App* add_flows(CLI::App& app, ObserveArgs& a) {
  auto* flows = app.add_subcommand(
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
  flows->add_flag("--follow,-f", a.follow, "keep reading until Ctrl-C (SIGINT) or SIGTERM");
  flows->add_option("--container", a.filter.container,
                    "only events that involve this container (its interface, or either end, "
                    "before or after translation); `host` for the host's addresses");
  flows->add_option("--verdict", a.verdict, "allowed (flow events) or dropped (drop events)")
      ->check(CLI::IsMember({"allowed", "dropped"}));
  flows->add_option("--reason", a.filter.reason,
                    "only drops for this reason: network-isolation, policy-default-deny, "
                    "policy-deny, not-published, ... (see `moat stats`)");
  return flows;
}

CLI::App* add_top(CLI::App& app, ObserveArgs& a) {
  auto* top = app.add_subcommand(
      "top",
      "Live table of container attachments: rx/tx packets and bytes per second (rx: to the\n"
      "container), drops per second, live connections. Redraws every --interval-ms until Ctrl-C.\n"
      "--once prints one table of rates measured over one interval and exits.");
  top->add_flag("--once", a.once, "one snapshot (rates over one interval), no redraw");
  top->add_option("--sort", a.sort, "rx, tx (bytes/s), drops, conns (biggest first) or name")
      ->check(CLI::IsMember({"rx", "tx", "drops", "conns", "name"}))
      ->capture_default_str();
  top->add_option("--interval-ms", a.interval_ms, "refresh interval and rate window")
      ->check(CLI::Range(100, 3600000))
      ->capture_default_str();
  return top;
}

CLI::App* add_serve(CLI::App& app, ObserveArgs& a) {
  auto* serve = app.add_subcommand(
      "serve",
      "Prometheus exporter: GET /metrics answers the text exposition format with the counters\n"
      "of `moat stats` (read from the pinned maps at every scrape). Never reads the flow event\n"
      "ring buffer, so `moat flows --follow` can run beside it. Listens only on loopback unless\n"
      "--allow-remote. Runs until Ctrl-C or SIGTERM.\n"
      "  moat serve --lab demo &  curl -s 127.0.0.1:9464/metrics");
  serve
      ->add_option("--metrics-addr", a.metrics_addr, "HOST:PORT to listen on ([::1]:PORT for IPv6)")
      ->capture_default_str();
  serve->add_flag("--allow-remote", a.allow_remote,
                  "allow a non-loopback --metrics-addr (no TLS, no authentication)");
  return serve;
}

}  // namespace

void add_observe_commands(CLI::App& app, CommandTable& table) {
  auto a = std::make_shared<ObserveArgs>();
  auto* stats = app.add_subcommand(
      "stats",
      "Counters kept in the kernel, summed over CPUs: per container attachment and direction\n"
      "(packets, bytes, new connections, drops by reason, live connections), per uplink, hits\n"
      "per policy rule, and flow events lost. Totals since each interface was attached.\n"
      "  moat stats --lab demo            moat stats --json | jq '.attachments[0]'");
  auto* flows = add_flows(app, *a);
  auto* top = add_top(app, *a);
  auto* serve = add_serve(app, *a);
  for (auto* sub : {stats, flows, top, serve}) {
    add_instance_options(sub, a->instance, a->lab);
    if (sub == stats || sub == flows)
      sub->add_flag("--json", a->as_json,
                    sub == stats ? "machine-readable output (documented in README, Observation)"
                                 : "one JSON object per event and line");
  }
  auto add = [&](CLI::App* sub, int (*run)(const std::string&, const ObserveArgs&)) {
    table.push_back({sub, [a, run] { return run(observed_instance(*a), *a); }});
  };
  add(stats, run_stats);
  add(flows, run_flows);
  add(top, run_top);
  add(serve, run_serve);
}

}  // namespace moat::cli
