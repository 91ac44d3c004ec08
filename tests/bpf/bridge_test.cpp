// bridge_test.cpp - the bridge guard (bridge.bpf.c) and the mark that
// from_container hands it: on a guarded network a judged pass carries
// MOAT_MARK_JUDGED; the bridge lets through what carries it (clearing the
// bit, and only that bit) and drops everything else as
// unidentified-container, counted as unattributed. The last case runs
// both programs in a row, as the kernel does: veth ingress, then the bridge.
#include <gtest/gtest.h>

#include <cstring>

#include "bridge.skel.h"
#include "endpoint.skel.h"
#include "harness.h"
#include "packet.h"

using namespace pkt;
using namespace moat_test;

namespace {

const Network kGuarded = {11, ip4("172.30.0.0"), 16, ip4("172.30.0.1"),
                          MOAT_NET_F_ICC | MOAT_NET_F_MASQUERADE | MOAT_NET_F_GUARDED};
const Network kPlain = {12, ip4("172.31.0.0"), 16, ip4("172.31.0.1"),
                        MOAT_NET_F_ICC | MOAT_NET_F_MASQUERADE};
constexpr const char* G = "172.30.0.2";  // on kGuarded, device moat-a
constexpr const char* P = "172.31.0.2";  // on kPlain, device moat-b
constexpr const char* WORLD = "198.19.0.1";
constexpr const char* kBridgeDevice = "moat-x";  // stands for br-<id>: no endpoint entry

Bytes udp4(const char* s, const char* d) {
  return eth(ETH_P_IP, ipv4({.src = ip4(s), .dst = ip4(d), .proto = IPPROTO_UDP},
                            udp(40000, 53, Bytes(12, 0))));
}

class BridgeGuard : public ::testing::Test {
 protected:
  void SetUp() override {
    add_network(ep_, kGuarded);
    add_network(ep_, kPlain);
    add_endpoint(ep_, ifindex_of("moat-a"), kGuarded, ip4(G));
    add_endpoint(ep_, ifindex_of("moat-b"), kPlain, ip4(P));
  }

  RunResult from_container(const char* device, const Bytes& frame) {
    RunResult r = run(ep_->progs.from_container, ifindex_of(device), frame);
    EXPECT_EQ(r.err, 0) << std::strerror(r.err);
    return r;
  }

  CountedRun from_bridge(const Bytes& frame, uint32_t mark) {
    StatsSnapshot before = read_stats(ep_->maps.stats);
    RunResult r = run(br_->progs.from_bridge, ifindex_of(kBridgeDevice), frame, 1, mark);
    EXPECT_EQ(r.err, 0) << std::strerror(r.err);
    return {r, stats_delta(before, read_stats(ep_->maps.stats))};
  }

  Skeleton<endpoint_bpf> ep_ = load_skeleton();
  Skeleton<bridge_bpf> br_ = load_bridge_skeleton(ep_);
};

TEST_F(BridgeGuard, FromContainerMarksPassesOnGuardedNetworksOnly) {
  RunResult g = from_container("moat-a", udp4(G, WORLD));
  EXPECT_EQ(g.retval, uint32_t(TC_ACT_OK));
  EXPECT_EQ(g.mark, MOAT_MARK_JUDGED);

  RunResult p = from_container("moat-b", udp4(P, WORLD));
  EXPECT_EQ(p.retval, uint32_t(TC_ACT_OK));
  EXPECT_EQ(p.mark, 0u) << "an unguarded network's packets must carry no mark into the host";
}

TEST_F(BridgeGuard, ADropIsNeverMarked) {
  RunResult r = from_container("moat-a", udp4(P, WORLD));  // another container's source
  EXPECT_EQ(r.retval, uint32_t(TC_ACT_SHOT));
  EXPECT_EQ(r.mark, 0u);
}

TEST_F(BridgeGuard, UnmarkedFramesAreDroppedAsUnidentified) {
  const Bytes frames[] = {
      udp4("172.30.0.9", WORLD),                                      // a new container
      udp4(G, WORLD),                                                 // even with a known address
      eth(ETH_P_ARP, arp({.spa = ip4("172.30.0.9"), .tpa = ip4("172.30.0.1")}), kBroadcast),
  };
  for (const Bytes& f : frames) {
    auto [r, moved] = from_bridge(f, 0);
    EXPECT_EQ(r.retval, uint32_t(TC_ACT_SHOT));
    Counters want;
    want.drops[-MOAT_DROP_UNIDENTIFIED] = 1;
    EXPECT_EQ(moved, (StatsSnapshot{{unattributed(MOAT_DIR_FROM_CONTAINER), want}}));
  }
  // Another tool's mark bits are no pass.
  auto [r, moved] = from_bridge(udp4(G, WORLD), ~MOAT_MARK_JUDGED);
  EXPECT_EQ(r.retval, uint32_t(TC_ACT_SHOT));
}

TEST_F(BridgeGuard, MarkedFramesPassWithTheBitCleared) {
  Bytes f = udp4(G, WORLD);
  auto [r, moved] = from_bridge(f, MOAT_MARK_JUDGED | 0x5);
  EXPECT_EQ(r.retval, uint32_t(TC_ACT_OK));
  EXPECT_EQ(r.mark, 0x5u) << "only moat's bit is cleared";
  EXPECT_EQ(r.out, f);
  EXPECT_TRUE(moved.empty()) << "counted once, by the endpoint that judged it";
}

TEST_F(BridgeGuard, VethThenBridgeAsTheKernelRunsThem) {
  RunResult veth = from_container("moat-a", udp4(G, WORLD));
  ASSERT_EQ(veth.retval, uint32_t(TC_ACT_OK));
  auto [r, moved] = from_bridge(veth.out, veth.mark);
  EXPECT_EQ(r.retval, uint32_t(TC_ACT_OK));
  EXPECT_EQ(r.mark, 0u);
}

}  // namespace
