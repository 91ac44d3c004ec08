// policy_gen.h - policy generations in the kernel: the identity cache and
// the policy map come in two generations (map-in-map slots rev & 1), and one
// write of `policy_rev` switches every CPU from one to the other, so no
// packet is judged by half an old and half a new policy (bpf/lib/policy.h).
// Production (apply) and the BPF tests install generations through these.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "abi.h"
#include "util/result.h"

struct endpoint_bpf;

namespace moat {

using IpcacheEntries = std::vector<std::pair<moat_lpm_v4_key, moat_ipcache_val>>;
using Ipcache6Entries = std::vector<std::pair<moat_lpm_v6_key, moat_ipcache_val>>;
using PolicyEntries = std::vector<std::pair<moat_policy_key, moat_policy_val>>;

// The revision in force; 0: no policy.
Result<uint32_t> read_policy_rev(const endpoint_bpf& skel);
// Writes `policy_rev` alone (0: policy off everywhere).
Result<void> set_policy_rev(const endpoint_bpf& skel, uint32_t rev);

// An RCU grace period, begun in a thread of its own so that waiting for it
// overlaps other work. Writing into the idle generation in place is safe
// only once every packet that read the revision in force before the last
// switch has finished: TC programs run in RCU read-side sections, so a grace
// period begun after that switch covers them. begin() after the switch
// (apply: under the instance lock, so no switch can come between).
class GracePeriod {
 public:
  static GracePeriod begin();
  // Whether the grace period has passed (waits for it): false when the
  // kernel cannot say (one CPU, where membarrier() does not wait, nohz_full).
  bool wait();
  // Whether begin() made it (a default one stands for none).
  bool begun() const { return s_ != nullptr; }

 private:
  struct State;
  std::shared_ptr<State> s_;
};

// A process that applies again and again (the Docker agent) begins a
// grace period right after each switch of generations it makes and keeps
// it: by its next apply that one has long passed, and the idle slot is
// written without waiting. Off by default: a one-shot CLI would wait for
// the kept one at exit.
void keep_grace_periods_after_switches(bool on);
// Whether this process keeps one from its last switch: an apply then need
// not begin its own (write_policy_generation() still does when the kept
// one turns out not to cover the revision in force).
bool keeps_grace_period_after_switch();

// Where an instance keeps what each slot's inner maps hold (its state
// directory); empty: nowhere, every generation goes into fresh maps.
struct GenerationStore {
  std::string dir;
};

// The entries into slot rev & 1 of `ipcache_gens`, `ipcache6_gens` and
// `policy_gens`, then `rev` into `policy_rev`. rev must not be 0, and the
// other slot (in force until that write) is never touched.
// With a store that knows what the slot holds, and a grace period begun
// after the switch that made the slot idle (`gp`; none given: one is waited
// for here), only the difference is written into the slot's inner maps.
// Otherwise fresh inner maps (like the BPF side's templates) replace the
// slot's. The IPv6 cache gets an inner map even when empty, so the slot
// never holds a stale generation.
Result<void> write_policy_generation(const endpoint_bpf& skel, uint32_t rev,
                                     const IpcacheEntries& ipcache, const PolicyEntries& entries,
                                     const Ipcache6Entries& ipcache6 = {},
                                     const GenerationStore& store = {}, GracePeriod* gp = nullptr);

// How the last write_policy_generation() of this process wrote: "diff" or
// "fresh" (for tests and timings).
const char* last_generation_write();

// What apply does: nothing when the generation in force holds exactly these
// entries; `active` false (no policy at all) switches to revision 0;
// otherwise a new generation numbered above both the revision in force and
// `last_rev` (the highest ever used, so a rule id never names two rules),
// in the slot not in force.
// Returns whether the kernel side changed (or would, with dry_run); *rev is
// the revision in force afterwards.
Result<bool> install_policy(const endpoint_bpf& skel, const IpcacheEntries& ipcache,
                            const Ipcache6Entries& ipcache6,
                            std::span<const PolicyEntries::value_type> entries, bool active,
                            uint32_t last_rev, bool dry_run, uint32_t* rev,
                            const GenerationStore& store = {}, GracePeriod* gp = nullptr);

// The slot not in force made to hold what revision `rev`, in force, holds
// (in fresh maps, with its copy in `store`), so that the next change writes
// only its difference there: the first change of one rule of 100,000 after
// a whole apply wrote all of them into the slot that held the generation
// before (35-42 ms), README stop 59. A packet that read the revision
// before the switch may still be looking that slot's maps up, one after
// the other: they are replaced only once `after_switch`, a grace period
// begun after the switch, has passed (by then, here, long since: the maps
// take 35 ms to fill), so none sees one new map and one old. Fails,
// writing nothing, when `rev` is not in force or the grace period cannot
// be known; fails half-way with the slot's copy in `store` gone (the next
// write there makes fresh maps).
Result<void> mirror_generation(const endpoint_bpf& skel, uint32_t rev,
                               const IpcacheEntries& ipcache, const Ipcache6Entries& ipcache6,
                               std::span<const PolicyEntries::value_type> entries,
                               const GenerationStore& store, GracePeriod after_switch);

// Rule hit counters first..first+n-1 back to zero on every CPU: a new
// revision numbers its rules anew (a one-rule change only the changed one).
void reset_rule_hits(const endpoint_bpf& skel, uint32_t n, uint32_t first = 0);

// The endpoint object's maps that read_policy_rev(), install_policy(),
// mirror_generation() and reset_rule_hits() use, and no other: a process that only changes the
// policy opens these (open_pinned_maps()), not all 40.
inline constexpr std::string_view kPolicyMaps[] = {"policy_rev", "policy_gens", "ipcache_gens",
                                                   "ipcache6_gens", "rule_hits"};

}  // namespace moat
