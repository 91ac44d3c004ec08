// harness.h - what every BPF test needs: the interfaces main() created in
// the test's private network namespace, a loaded copy of endpoint.bpf.o (and
// of uplink.bpf.o sharing its maps), map seeding, policy generations (through
// production's dataplane/policy_gen.h), one BPF_PROG_TEST_RUN wrapper, the
// hooks and expected verdicts the tables are written in, per-CPU counter
// reading and connection-tracking access.
//
// Helpers throw std::runtime_error on a failed system call; gtest turns that
// into a failure of the running test with the message. Nothing here uses
// gtest: the kernel benchmark (bench/kernel_bench.cpp) links it too.
#pragma once

#include <bpf/libbpf.h>
#include <linux/pkt_cls.h>

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "abi.h"
#include "dataplane/policy_gen.h"
#include "dataplane/skeleton.h"
#include "packet.h"

namespace moat_test {

// The skeletons, owned as production owns them (dataplane/skeleton.h).
using moat::MapEntries;
using moat::Skeleton;

// Host-side veths main() creates before any test runs. The kernel lets a test
// run claim an ifindex only if that device exists in the caller's netns.
// moat-u and moat-v stand for uplinks.
inline constexpr const char* kDevices[] = {"moat-a", "moat-b", "moat-c", "moat-d",
                                           "moat-e", "moat-x", "moat-u", "moat-v"};

// This one is created with ifindex kLargeIfindex, beyond `uplink_slots`.
inline constexpr const char* kLargeIfindexDevice = "moat-v";
inline constexpr uint32_t kLargeIfindex = MOAT_UPLINK_SLOTS_IFINDEX + 904;
static_assert(kLargeIfindex >= MOAT_UPLINK_SLOTS_IFINDEX);

// Creates kDevices in the current network namespace (main() unshares first).
void create_devices();
// ip(8) with `args`, in the current (the tests' private) network namespace.
void ip(std::vector<std::string> args);
uint32_t ifindex_of(const char* device);

// One loaded copy of the programs with private, unpinned maps: destroying it
// leaves nothing behind in the kernel.
Skeleton<endpoint_bpf> load_skeleton();

// While one lives, load_skeleton() makes the maps it names at these sizes
// (an instance's limits, plan/limits.h) instead of their compiled ones.
class LimitedSizes {
 public:
  explicit LimitedSizes(MapEntries sizes);
  ~LimitedSizes();
};

// A loaded uplink.bpf.o whose maps are `shared`'s (reused before load), as
// in production, where both objects open the same pins: seed and inspect the
// maps through either skeleton.
Skeleton<uplink_bpf> load_uplink_skeleton(const Skeleton<endpoint_bpf>& shared);
// The same for reap.bpf.o, and one run of its ct_reap (ct6_reap for an
// IPv6 key) on `key`: its `reaped` (1: the flow had expired and was ended).
Skeleton<reap_bpf> load_reap_skeleton(const Skeleton<endpoint_bpf>& shared);
// The same for bridge.bpf.o (from_bridge, a guarded network's bridge).
Skeleton<bridge_bpf> load_bridge_skeleton(const Skeleton<endpoint_bpf>& shared);
// The same for sock.bpf.o (the cgroup socket hooks); attaching is the test's.
Skeleton<sock_bpf> load_sock_skeleton(const Skeleton<endpoint_bpf>& shared);
uint32_t reap(const Skeleton<reap_bpf>& skel, const moat_ct_key& key);
uint32_t reap(const Skeleton<reap_bpf>& skel, const moat_ct6_key& key);

// ---- hooks ----------------------------------------------------------------------

// The four TC programs, by the direction they judge (enum moat_dir).
enum class Hook { FromContainer, ToContainer, FromWorld, ToWorld };
moat_dir dir_of(Hook h);
const char* hook_name(Hook h);  // the program's name: "from_container", ...

// endpoint.bpf.o and uplink.bpf.o loaded over one set of maps: seed and
// read the maps through `ep`.
struct Programs {
  Skeleton<endpoint_bpf> ep = load_skeleton();
  Skeleton<uplink_bpf> up = load_uplink_skeleton(ep);

  const bpf_program* prog(Hook h) const;
};

// ---- map seeding, in the layout userspace writes -----------------------------

struct Network {
  uint32_t id;
  in_addr_t subnet;
  uint32_t prefixlen;
  in_addr_t gateway;
  uint32_t flags;  // MOAT_NET_F_*
};

// The network's subnet (SUBNET) and gateway /32 (GATEWAY) into `addrs`,
// both carrying the network's flags.
void add_network(const Skeleton<endpoint_bpf>& skel, const Network& net);
// The network's IPv6 subnet (SUBNET) and gateway /128 (GATEWAY) into
// `addrs6`, as the planner writes a dual-stack network's.
void add_network6(const Skeleton<endpoint_bpf>& skel, const Network& net, const char* subnet,
                  uint32_t prefixlen, const char* gateway);
// The endpoint at `ifindex` gets IPv6 address `ip6` (it must exist).
void set_endpoint_ipv6(const Skeleton<endpoint_bpf>& skel, uint32_t ifindex, const char* ip6);
// The counter slot of interface `ifindex`: given on first use, for the whole
// test run; 0 (nobody's) for an ifindex no device has.
uint32_t stats_slot_of(uint32_t ifindex);
// An attachment of `ip` to `net` on interface `ifindex` into `endpoints`.
void add_endpoint(const Skeleton<endpoint_bpf>& skel, uint32_t ifindex, const Network& net, in_addr_t ip);
// Another host address (an uplink's): a /32 HOST entry in `addrs`.
void add_host_addr(const Skeleton<endpoint_bpf>& skel, in_addr_t addr);
// Interface `ifindex` as an uplink masquerading behind `ipv4` (and `ipv6`).
void add_uplink(const Skeleton<endpoint_bpf>& skel, uint32_t ifindex, in_addr_t ipv4,
                const char* ipv6 = nullptr);
// An IPv6 host address (an uplink's): a /128 HOST entry in `addrs6`.
void add_host_addr6(const Skeleton<endpoint_bpf>& skel, const char* addr);
// A published port over IPv6 (host_ip "::": every host IPv6 address).
void add_publish6(const Skeleton<endpoint_bpf>& skel, const char* host_ip, uint16_t port,
                  uint8_t proto, const char* backend, uint16_t backend_port, uint32_t container_id,
                  uint32_t net_id);

// A published port: host_ip:port/proto (host_ip 0: every host address).
struct Publish {
  in_addr_t host_ip;
  uint16_t port;  // host order
  uint8_t proto;
  in_addr_t backend_ip;
  uint16_t backend_port;  // host order
  uint32_t container_id;
  uint32_t net_id;
};
void add_publish(const Skeleton<endpoint_bpf>& skel, const Publish& p);

// ---- connection tracking -----------------------------------------------------

// A ct key from text addresses and host-order ports.
moat_ct_key ct_key(const char* saddr, uint16_t sport, const char* daddr, uint16_t dport,
                   uint8_t proto);
moat_ct_key ct_key(in_addr_t saddr, uint16_t sport, in_addr_t daddr, uint16_t dport,
                   uint8_t proto);
moat_ct_key reversed(const moat_ct_key& k);
std::optional<moat_ct_entry> ct_get(const Skeleton<endpoint_bpf>& skel, const moat_ct_key& key);
std::vector<std::pair<moat_ct_key, moat_ct_entry>> ct_entries(const Skeleton<endpoint_bpf>& skel);
void ct_put(const Skeleton<endpoint_bpf>& skel, const moat_ct_key& key, const moat_ct_entry& e);
// The same for IPv6 (`ct6`).
moat_ct6_key ct6_key(const char* saddr, uint16_t sport, const char* daddr, uint16_t dport,
                     uint8_t proto);
std::optional<moat_ct6_entry> ct6_get(const Skeleton<endpoint_bpf>& skel, const moat_ct6_key& key);
std::vector<std::pair<moat_ct6_key, moat_ct6_entry>> ct6_entries(
    const Skeleton<endpoint_bpf>& skel);
void ct6_put(const Skeleton<endpoint_bpf>& skel, const moat_ct6_key& key, const moat_ct6_entry& e);
void ct_clear(const Skeleton<endpoint_bpf>& skel);  // both families, the quota's maps too
// Forgets every flow count and empties the ring (ct itself untouched).
void ct_quota_clear(const Skeleton<endpoint_bpf>& skel);
std::vector<in_addr_t> ct_owners(const Skeleton<endpoint_bpf>& skel);
uint32_t ct_owned(const Skeleton<endpoint_bpf>& skel, in_addr_t owner);  // 0 if none
// The same for IPv6 owners (`ct6_owned`, keyed by the whole address).
std::vector<moat_ip> ct6_owners(const Skeleton<endpoint_bpf>& skel);
uint32_t ct6_owned(const Skeleton<endpoint_bpf>& skel, const char* owner);  // 0 if none
// Makes the published flow whose DNAT entry is keyed `orig` cycle under
// BPF_PROG_TEST_RUN's repeat, which runs the program again on the skb the
// previous repetition rewrote: a second DNAT entry, for the rewritten tuple
// and pointing back, makes every repetition a real ct hit plus DNAT rewrite
// (address, port, both checksums). Throws when `orig` has no DNAT entry.
void loop_published_flow(const Skeleton<endpoint_bpf>& skel, const moat_ct_key& orig);
void loop_published_flow6(const Skeleton<endpoint_bpf>& skel, const moat_ct6_key& orig);

// ---- segmentation policies ---------------------------------------------------

// One generation's entries, as moat::PolicyPlan holds them (abi.h layouts).
using moat::Ipcache6Entries;
using moat::IpcacheEntries;
using moat::PolicyEntries;

// Production's moat::write_policy_generation(): the entries into fresh inner
// maps in slot rev & 1 of `ipcache_gens` and `policy_gens`, then `rev` into
// `policy_rev`. rev must not be 0.
void install_policy(const Skeleton<endpoint_bpf>& skel, uint32_t rev, const IpcacheEntries& ipcache,
                    const PolicyEntries& entries, const Ipcache6Entries& ipcache6 = {});
// moat::set_policy_rev(): `policy_rev` alone (0: policy off everywhere).
void set_policy_rev(const Skeleton<endpoint_bpf>& skel, uint32_t rev);
// moat::read_policy_rev().
uint32_t policy_rev(const Skeleton<endpoint_bpf>& skel);

// The data path's clock (moat::datapath_now_ns()): ct expiry and event times.
uint64_t monotonic_ns();

// ---- running ------------------------------------------------------------------

struct RunResult {
  int err;               // errno of BPF_PROG_TEST_RUN, 0 when the program ran
  uint32_t retval;       // TC_ACT_*
  pkt::Bytes out;        // the packet as the program left it
  uint32_t duration_ns;  // kernel's average per repetition
  uint32_t mark = 0;     // skb->mark as the program left it
  uint32_t priority = 0;  // skb->priority as the program left it
};

// BPF_PROG_TEST_RUN of `prog` on `frame` as if it arrived on `ifindex`,
// having entered the host by `ingress_ifindex` (0: the host sent it).
// Does not throw: some frames are refused by the kernel (see err).
RunResult run(const bpf_program* prog, uint32_t ifindex, const pkt::Bytes& frame, int repeat = 1,
              uint32_t mark = 0, uint32_t ingress_ifindex = 0);
// The same on a CHECKSUM_COMPLETE skb (BPF_F_TEST_SKB_CHECKSUM_COMPLETE): the
// kernel refuses the run with EBADMSG when the program leaves skb->csum
// stale, as a rewrite with the wrong checksum helper flags would.
RunResult run_complete(const bpf_program* prog, uint32_t ifindex, const pkt::Bytes& frame);
// The same as run() with a GSO packet's gso_size and gso_segs in the context.
RunResult run_gso(const bpf_program* prog, uint32_t ifindex, const pkt::Bytes& frame, uint32_t mark,
                  uint32_t gso_size, uint32_t gso_segs);
// The same as run() on an skb whose priority is already `priority`: a path
// that must leave the packet alone must leave it that too.
RunResult run_prio(const bpf_program* prog, uint32_t ifindex, const pkt::Bytes& frame,
                   uint32_t mark, uint32_t priority);

// The expected TC action of one run and, for a drop, its counter slot
// (= -moat_verdict, 0 for a pass or redirect).
struct Expect {
  uint32_t action;
  unsigned reason;
};
inline constexpr Expect pass = {TC_ACT_OK, 0};
inline constexpr Expect redirect = {TC_ACT_REDIRECT, 0};
constexpr Expect drop(moat_verdict v) { return {TC_ACT_SHOT, unsigned(-v)}; }

// ---- counters -----------------------------------------------------------------

// A `stats` value summed across CPUs.
struct Counters {
  uint64_t packets = 0;
  uint64_t bytes = 0;
  std::array<uint64_t, MOAT_NR_DROP_SLOTS> drops{};

  bool operator==(const Counters&) const = default;
  bool is_zero() const { return *this == Counters{}; }
};
std::ostream& operator<<(std::ostream& os, const Counters& c);

// "network-isolation" for slot 4: the ABI's metric names, for messages.
std::string reason_name(unsigned slot);

using StatsKey = std::pair<uint32_t, uint32_t>;  // {ifindex, enum moat_dir}
using StatsSnapshot = std::map<StatsKey, Counters>;

// Where packets of an interface that is no attachment are counted (slot 0):
// {0, dir & 1}, ingress hooks and egress hooks.
StatsKey unattributed(uint32_t dir);

Counters sum_stats(const bpf_map* stats, StatsKey key);
StatsSnapshot read_stats(const bpf_map* stats);
// after - before, keeping only the keys whose counters moved.
StatsSnapshot stats_delta(const StatsSnapshot& before, const StatsSnapshot& after);

// One run and the counters it moved (stats_delta around it).
struct CountedRun {
  RunResult run;
  StatsSnapshot moved;
};
CountedRun run_counted(const bpf_map* stats, const bpf_program* prog, uint32_t ifindex,
                       const pkt::Bytes& frame, uint32_t ingress_ifindex = 0);
// What one run of `frame_bytes` bytes judged `e` at `ifindex` in `dir` must
// move, and nothing else: the packet and its bytes on a pass, the reason's
// slot on a drop, in the interface's counters; an interface that is no
// attachment has none, its unknown-endpoint drop counts in unattributed(dir).
StatsSnapshot counted(Expect e, uint32_t ifindex, uint32_t dir, size_t frame_bytes);

// ---- observation (abi.h, "Observation") --------------------------------------

// A `stats` value with every field (Counters leaves out new_flows and
// drop_bytes), summed across CPUs.
moat_stats sum_obs_stats(const bpf_map* stats, StatsKey key);
// Slot `key` of a per-CPU array of __u64 (`events_lost`, `rule_hits`),
// summed across CPUs.
uint64_t percpu_u64(const bpf_map* map, uint32_t key);
// Every non-zero slot of such an array, summed across CPUs (one batch read).
std::map<uint32_t, uint64_t> percpu_u64_nonzero(const bpf_map* map);
// obs_cfg[0]: 0 observes, MOAT_OBS_F_OFF switches counters and events off.
void set_obs_flags(const Skeleton<endpoint_bpf>& skel, uint32_t flags);

// A consumer of the `events` ring buffer (ring_buffer__new on its fd).
// drain() returns the events submitted since the last drain(), in order;
// a record whose size is not sizeof(moat_event) makes it throw.
class EventReader {
 public:
  explicit EventReader(const bpf_map* events);
  ~EventReader();
  EventReader(const EventReader&) = delete;
  EventReader& operator=(const EventReader&) = delete;
  std::vector<moat_event> drain();

 private:
  static int on_sample(void* ctx, void* data, size_t size);
  ring_buffer* rb_ = nullptr;
  std::vector<moat_event> got_;
  size_t bad_size_ = 0;  // size of a malformed record, 0 if none
};

}  // namespace moat_test

// In the ABI types' own (global) namespace, where gtest's lookup finds them.
bool operator==(const moat_ct_key& a, const moat_ct_key& b);
std::ostream& operator<<(std::ostream& os, const moat_ct_key& k);
std::ostream& operator<<(std::ostream& os, const moat_ct_entry& e);
std::ostream& operator<<(std::ostream& os, const moat_event& ev);
