// moat_fuzz: the differential packet fuzzer. Generated frames and
// sequences go through the real TC programs (BPF_PROG_TEST_RUN, maps
// seeded by production's planner) and through an independent model of
// moat's semantics (model.h); every frame the kernel passes and the model
// drops is a failure (exit 1), printed as a case that replays with
// --seed/--case or --replay. Root: it moves into a network namespace of its
// own first (netns.h).
//
//   moat_fuzz [--packets N] [--seed S] [--config NAME]... [--random-configs] [--json]
//             [--ipv6-rules]
//   moat_fuzz --seed S --case K [selection options]   one case, traced
//   moat_fuzz --replay FILE                          a case file, traced
//   moat_fuzz --list-configs | --show-config NAME
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "configs.h"
#include "netns.h"
#include "pools.h"
#include "report.h"
#include "runner.h"

namespace fuzz {
namespace {

struct Options {
  uint64_t packets = 30000;
  uint64_t seed = 1;
  int64_t case_index = -1;
  std::vector<std::string> configs;
  bool random_configs = false;
  uint64_t per_config = 400;
  std::string replay;
  bool json = false;
  size_t show = 5;
  std::string out_dir = "/tmp/moat-fuzz";
  bool list = false;
  std::string show_config;
  std::string fail_on = "kernel-pass";
  std::string focus;  // keep only findings whose group names this
  bool ipv6_rules = false;
};

// Which configuration case `index` uses: blocks of per_config cases, each
// block one configuration, random ones every other block when asked.
class Selection {
 public:
  Selection(const Options& o) : o_(o) {
    for (auto& fc : seed_configs())
      if (o.configs.empty() ||
          std::find(o.configs.begin(), o.configs.end(), fc.name) != o.configs.end())
        list_.push_back(std::move(fc));
    if (list_.empty() && !o.random_configs) throw std::runtime_error("no configuration selected");
  }
  uint64_t block(uint64_t index) const { return index / o_.per_config; }
  FuzzConfig at(uint64_t b) const {
    if (o_.random_configs && (list_.empty() || b % 2 == 1)) return random_config(mix(o_.seed, b));
    return list_[(o_.random_configs ? b / 2 : b) % list_.size()];
  }
  std::string args() const {
    std::string s;
    for (const auto& c : o_.configs) s += "--config " + c + " ";
    if (o_.random_configs) s += "--random-configs ";
    return s + "--cases-per-config " + std::to_string(o_.per_config);
  }

 private:
  const Options& o_;
  std::vector<FuzzConfig> list_;
};

std::string write_case(const Options& o, const Finding& f, size_t n) {
  if (o.out_dir.empty()) return "";
  std::error_code ec;
  std::filesystem::create_directories(o.out_dir, ec);
  const std::string path = o.out_dir + "/" + outcome_name(f.outcome) + "-seed" +
                           std::to_string(f.seed) + "-case" + std::to_string(f.case_index) + "-" +
                           std::to_string(n) + ".txt";
  std::ofstream(path) << replay_text(f);
  return path;
}

bool failing(const Options& o, Outcome out) {
  if (o.fail_on == "none") return false;
  if (o.fail_on == "any") return is_disagreement(out) && out != Outcome::Moot;
  return out == Outcome::KernelPass || out == Outcome::ForgedClose;
}

struct Run {
  Tally tally;
  std::vector<Finding> kept;
  std::vector<std::string> files;
  std::map<Outcome, uint64_t> cases_by_outcome, shown;
  bool failed = false;
};

void keep(const Options& o, Run& run, Finding f) {
  run.cases_by_outcome[f.outcome]++;
  if (failing(o, f.outcome)) run.failed = true;
  if (!o.focus.empty() && f.group.find(o.focus) == std::string::npos) return;
  if (++run.shown[f.outcome] > o.show) return;
  run.files.push_back(write_case(o, f, run.kept.size() + 1));
  run.kept.push_back(std::move(f));
}

void finish(const Options& o, const Selection& sel, Run& run, double seconds) {
  const RunIdentity id{sel.args()};
  if (o.json) {
    std::printf("%s\n",
                summary_json(run.tally, run.kept, run.cases_by_outcome, seconds, id, run.files)
                    .dump(2)
                    .c_str());
    return;
  }
  for (size_t i = 0; i < run.kept.size(); i++)
    print_finding(stdout, run.kept[i], i + 1, id, run.files[i]);
  print_summary(stdout, run.tally, run.kept, run.cases_by_outcome, seconds, o.ipv6_rules);
  std::printf("%s\n", run.failed ? "FAILED: the kernel passed what the model drops, or a forged "
                                   "segment changed a TCP flow (see above)"
                                 : "no failure");
}

// A random configuration may be one moat refuses (a publish without a
// non-internal network): skipped. A fixed one must load.
bool load_block(Runner& runner, const Selection& sel, uint64_t b, int64_t* loaded) {
  const FuzzConfig fc = sel.at(b);
  try {
    runner.load(fc);
    *loaded = int64_t(b);
    return true;
  } catch (const std::exception& e) {
    if (!fc.name.starts_with("random-")) throw;
    std::fprintf(stderr, "moat_fuzz: skipping %s: %s\n", fc.name.c_str(), e.what());
    return false;
  }
}

int fuzz_main(const Options& o) {
  const Selection sel(o);
  if (o.list) {
    for (uint64_t b = 0; b < 6; b++) std::printf("%s\n", sel.at(b).name.c_str());
    return 0;
  }
  if (!o.show_config.empty()) {
    for (const auto& fc : seed_configs())
      if (fc.name == o.show_config) std::printf("%s\n", fc.to_json().dump(2).c_str());
    return 0;
  }
  if (!enter_private_netns()) {
    std::fprintf(stderr, "moat_fuzz: unshare(CLONE_NEWNET): %s (needs root)\n",
                 std::strerror(errno));
    return 2;
  }
  const auto ifindex = create_devices();
  Dataplane dp;
  Runner runner(dp, ifindex, ifindex.at(kUnknownDevice));
  Run run;
  const auto t0 = std::chrono::steady_clock::now();
  if (!o.replay.empty()) {
    std::ifstream in(o.replay);
    std::stringstream text;
    text << in.rdbuf();
    const Replay r = read_replay(text.str(), ifindex);
    runner.load(r.config);
    if (auto f = runner.play(r.steps, run.tally, true)) {
      f->replayed = true;
      f->config = r.config.name;
      keep(o, run, std::move(*f));
    }
  } else if (o.case_index >= 0) {
    runner.load(sel.at(sel.block(uint64_t(o.case_index))));
    std::printf("config %s, seed %llu, case %lld\n", runner.config().name.c_str(),
                (unsigned long long)o.seed, (long long)o.case_index);
    if (auto f = runner.run_case(o.seed, uint64_t(o.case_index), run.tally, true))
      keep(o, run, std::move(*f));
  } else {
    int64_t loaded = -1;
    for (uint64_t k = 0; run.tally.packets < o.packets; k++) {
      if (int64_t(sel.block(k)) != loaded && !load_block(runner, sel, sel.block(k), &loaded)) {
        k = (sel.block(k) + 1) * o.per_config - 1;  // a random one that does not plan: the next
        continue;
      }
      if (auto f = runner.run_case(o.seed, k, run.tally, false)) keep(o, run, std::move(*f));
    }
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  finish(o, sel, run, s);
  return run.failed ? 1 : 0;
}

}  // namespace
}  // namespace fuzz

int main(int argc, char** argv) {
  fuzz::Options o;
  CLI::App app{"moat_fuzz: model vs. the real programs, frame by frame"};
  app.add_option("--packets", o.packets, "frames to run (default 30000)");
  app.add_option("--seed", o.seed, "seed of the run (default 1)");
  app.add_option("--case", o.case_index, "run only this case, traced");
  app.add_option("--config", o.configs, "fuzz only these configurations (repeat)");
  app.add_flag("--random-configs", o.random_configs, "random configurations every other block");
  app.add_option("--cases-per-config", o.per_config, "cases per configuration block (default 400)");
  app.add_option("--replay", o.replay, "play a case file, traced");
  app.add_flag("--json", o.json, "a JSON summary on stdout");
  app.add_option("--show", o.show, "disagreements kept per outcome (default 5)");
  app.add_option("--out", o.out_dir,
                 "directory for case files (\"\": none; default /tmp/moat-fuzz)");
  app.add_option("--focus", o.focus,
                 "keep only disagreements whose summary line contains this text");
  app.add_flag("--ipv6-rules", o.ipv6_rules,
               "also count IPv6 frames by the model's rule and the kernel's verdict");
  app.add_flag("--list-configs", o.list, "the configurations of the first blocks");
  app.add_option("--show-config", o.show_config, "print a fixed configuration");
  app.add_option("--fail-on", o.fail_on,
                 "what fails the run: kernel-pass (default: also a forged close), any disagreement "
                 "but moot ones, none")
      ->check(CLI::IsMember({"kernel-pass", "any", "none"}));
  CLI11_PARSE(app, argc, argv);
  try {
    return fuzz::fuzz_main(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moat_fuzz: %s\n", e.what());
    return 2;
  }
}
