// harness.h - what every BPF test needs: the interfaces main() created in
// the test's private network namespace, a loaded copy of endpoint.bpf.o (and
// of uplink.bpf.o sharing its maps), map seeding, one BPF_PROG_TEST_RUN
// wrapper, per-CPU counter reading and connection-tracking access.
//
// Helpers throw std::runtime_error on a failed system call; gtest turns that
// into a failure of the running test with the message.
#pragma once

#include <bpf/libbpf.h>
#include <linux/pkt_cls.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "abi.h"
#include "packet.h"

struct endpoint_bpf;  // the skeletons, from endpoint.skel.h
struct uplink_bpf;    // uplink.skel.h
struct reap_bpf;      // and reap.skel.h

namespace moat_test {

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
uint32_t ifindex_of(const char* device);

// One loaded copy of the programs with private, unpinned maps: destroying it
// leaves nothing behind in the kernel.
using Skeleton = std::unique_ptr<endpoint_bpf, void (*)(endpoint_bpf*)>;
Skeleton load_skeleton();

// A loaded uplink.bpf.o whose maps are `shared`'s (bpf_map__reuse_fd before
// load), as in production, where both objects open the same pins: seed and
// inspect the maps through either skeleton.
using UplinkSkeleton = std::unique_ptr<uplink_bpf, void (*)(uplink_bpf*)>;
UplinkSkeleton load_uplink_skeleton(const endpoint_bpf& shared);
// The same for reap.bpf.o, and one run of its ct_reap on `key`: its
// `reaped` (1: the flow had expired and was ended).
using ReapSkeleton = std::unique_ptr<reap_bpf, void (*)(reap_bpf*)>;
ReapSkeleton load_reap_skeleton(const endpoint_bpf& shared);
uint32_t reap(const reap_bpf& skel, const moat_ct_key& key);

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
void add_network(const endpoint_bpf& skel, const Network& net);
// The counter slot of interface `ifindex`: given on first use, for the whole
// test run; 0 (nobody's) for an ifindex no device has.
uint32_t stats_slot_of(uint32_t ifindex);
// An attachment of `ip` to `net` on interface `ifindex` into `endpoints`.
void add_endpoint(const endpoint_bpf& skel, uint32_t ifindex, const Network& net, in_addr_t ip);
// Another host address (an uplink's): a /32 HOST entry in `addrs`.
void add_host_addr(const endpoint_bpf& skel, in_addr_t addr);
// Interface `ifindex` as an uplink masquerading behind `ipv4`.
void add_uplink(const endpoint_bpf& skel, uint32_t ifindex, in_addr_t ipv4);

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
void add_publish(const endpoint_bpf& skel, const Publish& p);

// ---- connection tracking -----------------------------------------------------

// A ct key from text addresses and host-order ports.
moat_ct_key ct_key(const char* saddr, uint16_t sport, const char* daddr, uint16_t dport,
                   uint8_t proto);
moat_ct_key ct_key(in_addr_t saddr, uint16_t sport, in_addr_t daddr, uint16_t dport,
                   uint8_t proto);
moat_ct_key reversed(const moat_ct_key& k);
std::optional<moat_ct_entry> ct_get(const endpoint_bpf& skel, const moat_ct_key& key);
std::vector<std::pair<moat_ct_key, moat_ct_entry>> ct_entries(const endpoint_bpf& skel);
void ct_put(const endpoint_bpf& skel, const moat_ct_key& key, const moat_ct_entry& e);
void ct_clear(const endpoint_bpf& skel);

// ---- segmentation policies ---------------------------------------------------

// One generation's entries, as moat::PolicyPlan holds them (abi.h layouts).
using IpcacheEntries = std::vector<std::pair<moat_lpm_v4_key, moat_ipcache_val>>;
using PolicyEntries = std::vector<std::pair<moat_policy_key, moat_policy_val>>;

// Installs a policy generation the way dataplane.cpp's install_policy() does:
// fresh inner maps (LPM trie and hash, BPF_F_NO_PREALLOC, the templates' key
// and value sizes and max_entries) go into slot rev & 1 of `ipcache_gens` and
// `policy_gens`, then `rev` is written to `policy_rev`. rev must not be 0.
void install_policy(const endpoint_bpf& skel, uint32_t rev, const IpcacheEntries& ipcache,
                    const PolicyEntries& entries);
// Writes `policy_rev` alone (0: policy off everywhere).
void set_policy_rev(const endpoint_bpf& skel, uint32_t rev);
uint32_t policy_rev(const endpoint_bpf& skel);

// CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns() and ct expiry.
uint64_t monotonic_ns();

// ---- running ------------------------------------------------------------------

struct RunResult {
  int err;               // errno of BPF_PROG_TEST_RUN, 0 when the program ran
  uint32_t retval;       // TC_ACT_*
  pkt::Bytes out;        // the packet as the program left it
  uint32_t duration_ns;  // kernel's average per repetition
};

// BPF_PROG_TEST_RUN of `prog` on `frame` as if it arrived on `ifindex`.
// Does not throw: some frames are refused by the kernel (see err).
RunResult run(const bpf_program* prog, uint32_t ifindex, const pkt::Bytes& frame, int repeat = 1);

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
void set_obs_flags(const endpoint_bpf& skel, uint32_t flags);

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
