// dataplane/ - the kernel side of one moat instance: programs and maps pinned
// under /sys/fs/bpf/moat/<instance>/ (skeleton.h, programs.h, map_sync.h,
// policy_gen.h), TC filters on host-side interfaces (tc.h), socket hooks
// (sockhooks.h), counters (counters.h), connection tracking (conntrack.cpp),
// a record under /run/moat/<instance>/ that remembers names, what moat
// created and the inputs (state.h), with the policy image that lets one
// changed rule be applied without the rest (reconcile_one_rule()), and the
// search of the kernel for what belongs to an instance (sweep.h), so `moat
// down` removes exactly that and nothing else, record or not. May use
// util/, config/, policy/, plan/; files are read with config/'s and
// policy/'s readers, never here.
//
// dataplane.h is its public face: reconcile() (reconcile.h) is how desired
// state reaches the kernel; apply() (apply.h) is the work it does under the
// instance's lock, and nothing else calls it.
// Enforcement lives in the kernel: after apply() returns, the moat process may
// exit; only down() removes it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.h"
#include "dataplane/skeleton.h"
#include "plan/plan.h"
#include "util/abi_names.h"
#include "util/result.h"

namespace moat {

std::string pin_dir(const std::string& instance);    // /sys/fs/bpf/moat/<instance>
std::string state_dir(const std::string& instance);  // /run/moat/<instance>
bool valid_instance_name(const std::string& name, std::string* why);

struct ApplyReport {
  int endpoints_added = 0, endpoints_updated = 0, endpoints_removed = 0;
  int addrs_added = 0, addrs_updated = 0, addrs_removed = 0;
  int publish_added = 0, publish_updated = 0, publish_removed = 0;
  int attached = 0, detached = 0;
  bool sock_hooks_changed = false;
  bool policy_changed = false;
  uint32_t policy_rev = 0;  // 0: no policy
  int policy_entries = 0;
  // Only one rule was changed, without reading or compiling the others
  // (reconcile_one_rule()): its policy path and place, "policies[0].ingress[3]".
  std::string one_rule;
  // And how it read the image saved of the policies: "in place" (from the
  // file's mapping, PolicyImage::from_mapping()) or "read" (into memory: a
  // patch whose ranges do not each fit one section, which moat never
  // writes).
  std::string one_rule_image;
  bool programs_replaced = false;
  // The interfaces of ReconcileOptions::clsact_made this apply attached to
  // and recorded as moat's qdisc: the record owns them from now on.
  std::vector<std::string> clsact_taken;
  // Where the apply's time went, phase by phase in order (milliseconds of
  // wall time): "phases_ms" in to_json().
  std::vector<std::pair<std::string, double>> phases_ms;
  // The phases' time up to and including `phase` (all of them when absent).
  double ms_until(const std::string& phase) const {
    double ms = 0;
    for (const auto& [name, t] : phases_ms) {
      ms += t;
      if (name == phase) break;
    }
    return ms;
  }
  bool changed() const {
    return endpoints_added || endpoints_updated || endpoints_removed || addrs_added ||
           addrs_updated || addrs_removed || publish_added || publish_updated ||
           publish_removed || attached || detached || sock_hooks_changed || policy_changed ||
           programs_replaced;
  }
  nlohmann::json to_json() const;
  std::string summary() const;
};


// Everything `moat status` shows: programs, interfaces, maps, endpoints and
// their counters, "record": {"ok": true}. When the record cannot be trusted,
// "record": {"ok": false, "problem", "repair"} and what the kernel holds
// (programs, filters found, socket hooks). Fails when the instance does not
// exist.
Result<nlohmann::json> status(const std::string& instance);

// Detaches the instance's filters wherever they are found, unpins, removes
// the record; needs no record (a damaged one is reported and ignored).
// Succeeds when nothing exists. Callers hold the instance's lock:
// remove_instance() (reconcile.h).
Result<void> down(const std::string& instance);

// The data path's clock (moat_now(), bpf/lib/common.h): CLOCK_MONOTONIC_COARSE,
// the clock of conntrack expiry and event times. The fine clock would be up
// to a jiffy ahead of it: a live entry could look expired.
uint64_t datapath_now_ns();

// Live connection-tracking entries of both families (`ct`, `ct6`; two per
// translated flow), as JSON rows.
Result<nlohmann::json> ct_entries(const std::string& instance);
// One row of ct_entries() (pure): addresses as "a.b.c.d:port" or
// "[v6]:port" (ICMP, ICMPv6: the address alone), IPv6 rows with "family".
nlohmann::json ct_entry_json(const moat_ct_key& k, const moat_ct_entry& e, uint64_t now_ns);
nlohmann::json ct_entry_json(const moat_ct6_key& k, const moat_ct6_entry& e, uint64_t now_ns);

// Flows one sweep ended, per family (`ct`, `ct6`).
struct CtSwept {
  int ipv4 = 0;
  int ipv6 = 0;
  int total() const { return ipv4 + ipv6; }
};

// Ends the flows whose entries expired and that no packet met since (the
// programs end a flow lazily, when a packet meets it): through reap.bpf.c
// (ct_reap, ct6_reap), so each gets its flow-end event like any other.
// Readers of the events keep one open and sweep now and then; `moat ct gc`
// sweeps once.
class CtReaper {
 public:
  static Result<CtReaper> open(const std::string& instance);
  Result<CtSwept> sweep();  // both families
  CtReaper(CtReaper&&) noexcept;
  CtReaper& operator=(CtReaper&&) noexcept;
  ~CtReaper();

 private:
  struct Impl;
  explicit CtReaper(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// One sweep of a CtReaper. Returns how many flows it ended.
Result<CtSwept> ct_gc(const std::string& instance);

// The verdict of the loaded policy generation on a new flow, computed with
// the kernel's own maps and the programs' lookup order (bpf/lib/policy.h):
// {revision, allowed, source_identity, destination_identity, egress?,
// ingress?}; addresses in network order, port in host order.
Result<nlohmann::json> kernel_policy_verdict(const std::string& instance, uint32_t src_be,
                                             uint32_t dst_be, uint8_t proto, uint16_t port);
// The same for an IPv6 flow, with the identities of `ipcache6_gens`.
Result<nlohmann::json> kernel_policy_verdict(const std::string& instance, const Ipv6& src,
                                             const Ipv6& dst, uint8_t proto, uint16_t port);

// The instance's pinned maps, through the endpoint skeleton (no program is
// loaded): for readers such as the observation commands. Fails when the
// instance does not exist.
using PinnedMaps = Skeleton<endpoint_bpf>;
Result<PinnedMaps> open_pinned(const std::string& instance);

// The "state" part of the instance's record (names: interfaces, uplinks,
// ids, policy rules), after settling an interrupted apply (reconcile.h).
Result<nlohmann::json> instance_state(const std::string& instance);

// Names of instances with pins or state.
std::vector<std::string> instances();

}  // namespace moat
