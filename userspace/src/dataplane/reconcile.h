// reconcile.h - the one path from desired state to the kernel. A file
// (`moat apply`, the lab), the Docker Engine or a CNI call each describe
// what the kernel should enforce as a DesiredState and hand it here: under
// the instance's lock, the difference against what is pinned is written
// (apply() in dataplane.h), then the record of what the kernel holds and of
// the inputs it came from is saved as one file, replaced atomically. Before
// the first kernel write the apply's intent is saved next to it, so an apply
// killed half-way is finished or undone by the next command (settle()).
#pragma once

#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "config/config.h"
#include "config/inputs.h"
#include "dataplane/dataplane.h"
#include "dataplane/host.h"
#include "util/result.h"

namespace moat {

struct DesiredState {
  Config config;  // validated, every attachment naming its host-side interface
  Inputs inputs;  // what `config` was made from, kept with the instance
};

struct ReconcileOptions {
  bool dry_run = false;  // report what would change, change nothing
  // The runtime holds every published host port with a socket of its own
  // (dockerd does, with userland-proxy off): such a socket is no conflict.
  // Traffic to the port never reaches it: the programs translate first.
  bool ports_held_by_runtime = false;
  // Interfaces the caller found by name in this process for this very
  // reconcile (the Docker agent's veths): their indexes are taken from here
  // instead of being asked of the kernel again. Not recorded: a reapply
  // from the record asks the kernel.
  const KnownIndexes* known_ifindex = nullptr;
  // Interfaces whose clsact qdisc the caller made ahead of their first
  // attach (make_clsact(): the Docker agent, when a veth joins a bridge it
  // enforces), by name and index: recorded as moat's qdisc, removed with
  // moat's filters, as one attach() made itself.
  const KnownIndexes* clsact_made = nullptr;
  // Save the policy compilation beside the record (PolicyImage, for
  // reconcile_one_rule()): the CLI's applies ask for it; a producer that
  // never changes one rule of a file would only pay for it.
  bool keep_policy_image = false;
};

// For a process that reconciles again and again (the Docker agent): keep
// what the next apply needs open (the maps, while they are the pinned ones;
// a grace period begun after each switch of policy generations; the lock
// file, lock.h) instead of finding it again. Off by default; turning it off
// gives back what was kept.
void keep_kernel_handles(bool on);

Result<ApplyReport> reconcile(const std::string& instance, const DesiredState& want,
                              const ReconcileOptions& opt = {});

// A producer that changes the instance piece by piece (a CNI call adds or
// removes one attachment) reads what it holds and writes the next state in
// one step, under the lock, so two concurrent calls never lose an update.
// `update` gets the instance's current inputs (nullopt: none applied) and
// returns what to apply, or no DesiredState to remove the instance (or
// `unchanged`: nothing to do). The report is nullopt when nothing was applied.
struct Next {
  std::optional<DesiredState> want;
  ReconcileOptions options;
  bool unchanged = false;
};
using Update = std::function<Result<Next>(const std::optional<Inputs>& current)>;
Result<std::optional<ApplyReport>> reconcile_update(const std::string& instance,
                                                    const Update& update);

// For a caller holding files (`moat apply`, `moat lab apply`): when they
// differ from the ones the record was applied from only inside one rule of
// one policy (JSON), and the policy image saved with that record
// (keep_policy_image) can change that rule without the others, the kernel
// gets the new policy generation, and the record the new files and rule,
// without reading or compiling the rest; ApplyReport::one_rule is then
// set. nullopt: this change needs the whole apply (reconcile(); nothing
// was written). Like every apply, under the lock, with an intent on disk
// before the kernel changes.
// `unread`, when given, has a file descriptor for each input file not read
// yet (-1 for those read): its text in `inputs` is empty and the file is
// compared with the recorded one a window at a time (util/windowed.h), so
// that a change of one rule never reads the 10 MB around it. The caller
// reads them all before a whole apply.
Result<std::optional<ApplyReport>> reconcile_one_rule(const std::string& instance,
                                                      const Inputs& inputs,
                                                      const ReconcileOptions& opt = {},
                                                      std::span<const int> unread = {});

// The policy files of `dir` (*.json, *.yaml, *.yml, by name) appended to
// `inputs`, for producers that take a policy directory (the Docker agent,
// the CNI plugin). A directory that cannot be read is an error: policies
// that silently do not apply would leave containers open.
Result<void> add_policy_dir(const std::string& dir, Inputs& inputs);
Result<std::vector<std::string>> policy_dir_files(const std::string& dir);

// The inputs the instance was last reconciled from (kept in its record).
std::string inputs_path(const std::string& instance);
Result<Inputs> saved_inputs(const std::string& instance);

// Finishes or undoes an apply that a crash interrupted (its intent is still
// on disk), under the lock, so that the record says what the kernel
// enforces. Every reader of the record calls it first; cheap when nothing
// was interrupted.
Result<void> settle(const std::string& instance);

// down(), under the instance's lock.
Result<void> remove_instance(const std::string& instance);

}  // namespace moat
