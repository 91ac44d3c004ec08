// apply.h - one apply of validated desired state to an instance's kernel
// side: only reconcile() calls it, holding the instance's lock.
#pragma once

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "config/config.h"
#include "dataplane/dataplane.h"
#include "dataplane/host.h"
#include "util/result.h"

namespace moat {

// Validated config in; map entries and attachments out. Nothing in the
// kernel changes unless every interface resolves and the programs load.
// `ports_held`: a socket on a published port is the runtime's own, not a
// conflict (ReconcileOptions::ports_held_by_runtime).
struct ApplyHooks {
  // Set to the record of what the kernel now holds, for reconcile() to save
  // (not by a dry run).
  nlohmann::json* state = nullptr;
  // Called once everything is resolved, before the first kernel write: where
  // reconcile() saves its intent. Its failure changes nothing.
  std::function<Result<void>()> before_kernel;
  // The state part of the record, when the caller has read it already
  // (taken: moved from); null: apply reads it. Parsing a record with
  // 100,000 rules costs more than writing a changed policy.
  nlohmann::json* prev_state = nullptr;
  // ReconcileOptions::known_ifindex.
  const KnownIndexes* known_ifindex = nullptr;
  // ReconcileOptions::clsact_made.
  const KnownIndexes* clsact_made = nullptr;
  // Where the policy compilation's PolicyImage goes, for changing one rule
  // later without the rest (reconcile_one_rule()); null: none is made.
  std::string* policy_image = nullptr;
  // Where an apply that switched to a generation of many entries leaves a
  // thread making the idle slot hold it too (mirror_generation()), for the
  // next one-rule change; null: not done. The caller joins it (destroys it)
  // before anything else writes a generation, and before the lock goes.
  std::jthread* mirror = nullptr;
};

Result<ApplyReport> apply(const std::string& instance, const Config& cfg, bool dry_run,
                          bool ports_held, const ApplyHooks& hooks);

// keep_kernel_handles() (reconcile.h): the endpoint object's maps, and the
// socket programs, stay open for the next apply of the same instance in this
// process.
void keep_maps_between_applies(bool on);
// Closes them (an instance going down must not live on in our fds).
void drop_kept_maps();

// When the command began (set by the CLI in main()). A one-shot command's
// apply then reports the time from it to asking for the instance lock as
// its first phase, "before-lock": whatever the command did first (the
// command line, reading the input files, finding the lab; for a whole
// apply also the look for one changed rule and the files' validation; for
// `lab up` the lab's making). Unset (the agents, tests): not reported.
void set_command_start(std::chrono::steady_clock::time_point t);
// Puts "before-lock" first in `rep`'s phases, up to `asked`.
void add_before_lock(ApplyReport& rep, std::chrono::steady_clock::time_point asked);

// Appends each lap's wall time since the last (or since construction) to
// a report's phases_ms; a null report only keeps time.
class PhaseClock {
 public:
  explicit PhaseClock(ApplyReport* rep) : rep_(rep) {}
  void lap(const char* name);
  void into(ApplyReport* rep) { rep_ = rep; }
  void restart() { last_ = std::chrono::steady_clock::now(); }

 private:
  ApplyReport* rep_;
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

}  // namespace moat
