// report.h - what a run tells: the summary (packets, verdict mix of both
// sides, outcomes, what the disagreements are about), each kept
// disagreement as a reproducible case (seed, case index, config, every
// frame in hex, both verdicts, the replay commands), the same as JSON, and
// the replay file format (written per finding, read by --replay).
#pragma once

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runner.h"

namespace fuzz {

// How to run the same case again with --seed/--case: the options that pick
// the configuration.
struct RunIdentity {
  std::string selection_args;  // e.g. "--config policies --cases-per-config 500"
};

void print_finding(std::FILE* out, const Finding& f, size_t n, const RunIdentity& id,
                   const std::string& file);
// ipv6_rules: also which IPv6 rules the frames reached, and the kernel's verdicts there.
void print_summary(std::FILE* out, const Tally& t, const std::vector<Finding>& kept,
                   const std::map<Outcome, uint64_t>& cases_by_outcome, double seconds,
                   bool ipv6_rules = false);
nlohmann::json summary_json(const Tally& t, const std::vector<Finding>& kept,
                            const std::map<Outcome, uint64_t>& cases_by_outcome, double seconds,
                            const RunIdentity& id, const std::vector<std::string>& files);

// The replay file of a finding: the configuration, then each step.
std::string replay_text(const Finding& f);
// A replay file read back: the configuration and the steps as Sends and Revs.
struct Replay {
  FuzzConfig config;
  Case steps;
};
Replay read_replay(const std::string& text, const std::map<std::string, uint32_t>& ifindex);

}  // namespace fuzz
