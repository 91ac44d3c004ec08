// harness.h - what every BPF test needs: the interfaces main() created in
// the test's private network namespace, a loaded copy of endpoint.bpf.o,
// map seeding, one BPF_PROG_TEST_RUN wrapper and per-CPU counter reading.
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
#include <ostream>
#include <string>
#include <utility>

#include "abi.h"
#include "packet.h"

struct endpoint_bpf;  // the skeleton, from endpoint.skel.h

namespace moat_test {

// Host-side veths main() creates before any test runs. The kernel lets a test
// run claim an ifindex only if that device exists in the caller's netns.
inline constexpr const char* kDevices[] = {"moat-a", "moat-b", "moat-c",
                                           "moat-d", "moat-e", "moat-x"};

// Creates kDevices in the current network namespace (main() unshares first).
void create_devices();
uint32_t ifindex_of(const char* device);

// One loaded copy of the programs with private, unpinned maps: destroying it
// leaves nothing behind in the kernel.
using Skeleton = std::unique_ptr<endpoint_bpf, void (*)(endpoint_bpf*)>;
Skeleton load_skeleton();

// ---- map seeding, in the layout userspace writes -----------------------------

struct Network {
  uint32_t id;
  in_addr_t subnet;
  uint32_t prefixlen;
  in_addr_t gateway;
  uint32_t flags;  // MOAT_NET_F_*
};

// The network's subnet (SUBNET) and gateway /32 (GATEWAY) into `addrs`.
void add_network(const endpoint_bpf& skel, const Network& net);
// An attachment of `ip` to `net` on interface `ifindex` into `endpoints`.
void add_endpoint(const endpoint_bpf& skel, uint32_t ifindex, const Network& net, in_addr_t ip);

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

Counters sum_stats(const bpf_map* stats, StatsKey key);
StatsSnapshot read_stats(const bpf_map* stats);
// after - before, keeping only the keys whose counters moved.
StatsSnapshot stats_delta(const StatsSnapshot& before, const StatsSnapshot& after);

}  // namespace moat_test
