// runner.h - playing cases: for one configuration at a time, the model,
// the pools and the dataplane seeded with it; each case from fresh
// connection-tracking state, step by step, the same frame into the kernel
// and the model, every verdict tallied, and the first disagreement of a
// case kept with the steps that led to it (after a disagreement the two
// states differ, so the case stops there).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "compare.h"
#include "dataplane.h"
#include "model.h"
#include "pools.h"
#include "script.h"
#include "topology.h"

namespace fuzz {

// One step as it was fed, for reports and replay files.
struct PlayedStep {
  bool rev = false;
  size_t variant = 0;
  Hook hook = Hook::FromContainer;
  std::string dev;
  std::string ingress_dev;  // to_container: the veth it entered the host by ("": the host sent it)
  Bytes frame;
  std::string mutation;
  std::string model, kernel;  // verdict texts
};

struct Finding {
  Outcome outcome = Outcome::Agree;
  std::string config;
  nlohmann::json config_json;
  uint64_t seed = 0;
  uint64_t case_index = 0;
  bool replayed = false;  // from a replay file
  std::string scenario;
  std::vector<PlayedStep> steps;  // as fed, up to and including the disagreeing one
  nlohmann::json plan;            // the planned steps up to there (replay files)
  Verdict model;
  KernelResult kernel;
  std::string detail;
  std::string group;  // "outcome | model verdict | kernel verdict", as Tally::groups counts it
};

struct Tally {
  uint64_t packets = 0, refused = 0, cases = 0, reason_mismatches = 0;
  uint64_t fast_path = 0;  // frames from_container handed straight to a peer container
  std::map<std::string, uint64_t> kernel, model;  // verdict mix
  std::map<Outcome, uint64_t> outcomes;
  // "outcome | model verdict | kernel verdict": what the disagreements are about.
  std::map<std::string, uint64_t> groups;
  std::map<std::string, uint64_t> reason_pairs;  // both dropped, reasons differ
  // IPv6 frames (ethertype 0x86dd, at any hook) apart.
  uint64_t ipv6_packets = 0;
  std::map<Outcome, uint64_t> ipv6_outcomes;
  std::map<std::string, uint64_t> ipv6_model;
  // "hook model verdict: rule | kernel verdict": which IPv6 rules the frames reached.
  std::map<std::string, uint64_t> ipv6_rules;
};

class Runner {
 public:
  Runner(Dataplane& dp, const std::map<std::string, uint32_t>& ifindex, uint32_t unknown_ifindex)
      : dp_(dp), ifindex_(ifindex), unknown_ifindex_(unknown_ifindex) {}

  // Seeds the dataplane and the model with `fc`; throws on a configuration
  // that does not parse or plan.
  void load(const FuzzConfig& fc);
  const FuzzConfig& config() const { return fc_; }

  // Plans case `index` from `seed` and plays it; its first disagreement, if any.
  std::optional<Finding> run_case(uint64_t seed, uint64_t index, Tally& tally, bool trace);
  // Plays explicit steps (a replay file).
  std::optional<Finding> play(const Case& c, Tally& tally, bool trace);

 private:
  std::string device_of(uint32_t ifindex) const;
  nlohmann::json plan_json(const Case& c, size_t upto) const;

  Dataplane& dp_;
  std::map<std::string, uint32_t> ifindex_;
  uint32_t unknown_ifindex_;
  FuzzConfig fc_;
  std::unique_ptr<Topology> topo_;
  std::vector<moat::Config> variants_;
  std::unique_ptr<Pools> pools_;
  std::unique_ptr<Model> model_;
};

}  // namespace fuzz
