// tc.h - moat's TC filters on an interface (clsact ingress and egress).
// Our filter has a handle and priority of its own (0x6d6f), so filters of
// other tools (Cilium and most others use handle 1) are never touched, and
// detach removes only a filter that runs one of our programs.
#pragma once

#include <bpf/libbpf.h>

#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "dataplane/programs.h"
#include "util/result.h"

namespace moat {

// The id of the program in our filter slot, 0 when the slot is empty.
uint32_t attached_prog_id(int ifindex, bpf_tc_attach_point point);

// attached_prog_id() for both directions of many interfaces over one
// rtnetlink socket, requests sent in batches: {ingress, egress} by index of
// `ifindexes`, 0 for an empty slot and for anything the kernel did not
// answer (the caller then takes attach()'s way, which says why).
std::vector<std::pair<uint32_t, uint32_t>> attached_prog_ids(const std::vector<int>& ifindexes);

// Attaches both directions, or ingress only when `progs` has no egress
// program (replacing another program of ours in place);
// *qdisc_created is set when moat made the clsact qdisc, which is then
// moat's to remove. Returns whether a filter changed.
Result<bool> attach(const std::string& ifname, int ifindex, const PinnedProgs& progs,
                    bool* qdisc_created);

// The clsact qdisc alone, ahead of attach(): true when moat made it, false
// when the interface had one. A qdisc's first filter in each direction waits
// for an expedited RCU grace period, under RTNL, unless one has passed since
// the qdisc was made. Nothing here starts one: a qdisc made well before
// (Docker's connect comes 0.7-0.9 s before the start on the 2-CPU VM) has
// almost surely seen one. attach() of a veth whose qdisc was made 20 ms
// before: 0.05 against 0.3 ms, on that VM.
Result<bool> make_clsact(int ifindex);

// Removes our filters (only when they hold one of `ours`) and the qdisc when
// moat created it. A vanished interface has nothing left to remove.
Result<void> detach(const std::string& ifname, bool qdisc_created, const std::set<uint32_t>& ours);

// By index, for interfaces found in the kernel rather than named by a
// record: our filters holding one of `ours` removed; whether any was.
Result<bool> detach_at(int ifindex, const std::set<uint32_t>& ours);
// Filters of anyone left on the interface's clsact qdisc (0 without one).
Result<int> clsact_filters(int ifindex);
Result<void> remove_clsact(int ifindex);

}  // namespace moat
