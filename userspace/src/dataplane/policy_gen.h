// policy_gen.h - policy generations in the kernel: the identity cache and
// the policy map come in two generations (map-in-map slots rev & 1), and one
// write of `policy_rev` switches every CPU from one to the other, so no
// packet is judged by half an old and half a new policy (bpf/lib/policy.h).
// Production (apply) and the BPF tests install generations through these.
#pragma once

#include <cstdint>
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

// Fresh inner maps (like the BPF side's templates) filled with the entries go
// into slot rev & 1 of `ipcache_gens`, `ipcache6_gens` and `policy_gens`,
// then `rev` is written to `policy_rev`. The other slot, possibly in force
// until that write, is never touched. rev must not be 0. The IPv6 cache gets
// an inner map even when empty, so the slot never holds a stale generation.
Result<void> write_policy_generation(const endpoint_bpf& skel, uint32_t rev,
                                     const IpcacheEntries& ipcache, const PolicyEntries& entries,
                                     const Ipcache6Entries& ipcache6 = {});

// What apply does: nothing when the generation in force holds exactly these
// entries; `active` false (no policy at all) switches to revision 0;
// otherwise a new generation numbered above both the revision in force and
// `last_rev` (the highest ever used, so a rule id never names two rules).
// Returns whether the kernel side changed (or would, with dry_run); *rev is
// the revision in force afterwards.
Result<bool> install_policy(const endpoint_bpf& skel, const IpcacheEntries& ipcache,
                            const Ipcache6Entries& ipcache6, const PolicyEntries& entries,
                            bool active, uint32_t last_rev, bool dry_run, uint32_t* rev);

// Rule hit counters 0..n-1 back to zero on every CPU: a new revision numbers
// its rules anew.
void reset_rule_hits(const endpoint_bpf& skel, uint32_t n);

}  // namespace moat
