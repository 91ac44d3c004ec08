// dataplane.h - the real programs under test: endpoint.bpf.o and
// uplink.bpf.o loaded over one set of private maps (tests/bpf/harness),
// seeded with exactly what production's planner (plan/ compile and
// plan_maps, policy/ compile_policies) makes of a configuration, written
// the way dataplane/apply.cpp and dataplane/policy_gen.h write it; each
// frame run with BPF_PROG_TEST_RUN at its hook, its drop reason read from
// the attachment's counters.
//
// Policy generations: production writes a fresh pair of inner maps for
// every revision (dataplane/policy_gen.cpp). Creating the 1M-entry policy
// hash costs ~30 ms (its bucket array), so here each variant's pair is
// built once per configuration, the same way and from the same compiled
// entries, and a revision change puts it in slot rev & 1 and writes the
// revision, which is all the programs see of a generation.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "harness.h"
#include "hook.h"
#include "plan/map_plan.h"
#include "policy/policy.h"
#include "topology.h"
#include "util/fd.h"

namespace fuzz {

struct KernelResult {
  int err = 0;          // errno of BPF_PROG_TEST_RUN (the kernel refused the frame)
  uint32_t retval = 0;  // TC_ACT_*
  Bytes out;
  unsigned reason = 0;  // drop counter slot that moved (0: none)
  // A redirect from from_container: the endpoint whose to-container
  // counters it moved (the fast path counts there for the hook it skips).
  uint32_t peer = 0;
};

class Dataplane {
 public:
  Dataplane() = default;

  // Replaces whatever an earlier configuration left with `topo`'s plan;
  // `variants` are compiled now (policy revisions install them later).
  void seed(const Topology& topo, const std::vector<moat::Config>& variants);
  // A new policy revision holding variant `v` (revision 0 when it has no policy).
  void switch_policy(size_t v);
  // Between cases: no connection tracking or fragment state, variant 0 in force.
  void reset_case();
  // `ingress_ifindex`: skb->ingress_ifindex, the device the packet entered
  // the host by (a container's veth for what a bridge forwards), 0 for what
  // the host sends.
  KernelResult run(Hook h, uint32_t ifindex, uint32_t ingress_ifindex, const Bytes& frame);
  // What conntrack follows of each TCP entry (both families), by key: its
  // state, FINs and windows (abi.h, MOAT_CT_TCP_AHEAD), not its counters
  // or expiry.
  std::map<std::string, std::string> tcp_marks() const;

 private:
  struct Generation {
    moat::Fd ipcache, ipcache6, policy;
  };
  void build_generations();
  void clear_config();
  void write_plan(const moat::MapPlan& m);
  unsigned moved_reason(uint32_t slot, uint32_t dir);
  uint32_t moved_peer();

  moat_test::Programs progs_;
  std::vector<moat::PolicyPlan> plans_;
  std::vector<Generation> generations_;     // per variant; empty fds when it has no policy
  std::map<uint32_t, uint32_t> ep_slot_;    // container veth ifindex -> stats slot
  std::map<uint32_t, uint32_t> up_slot_;    // uplink ifindex -> stats slot
  std::vector<uint32_t> uplink_slot_keys_;  // uplink_slots entries written
  std::map<uint32_t, moat_stats> last_;     // stats index -> counters last read
  uint32_t rev_ = 0;
  size_t variant_ = 0;
  bool switched_ = false;  // this case changed the revision
};

}  // namespace fuzz
