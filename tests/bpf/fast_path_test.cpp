// fast_path_test.cpp - from_container's fast path between containers of one
// network (bpf/lib/redirect.h): a packet of an established, tracked flow
// goes straight into the destination's namespace (TC_ACT_REDIRECT through
// bpf_redirect_peer), counted at the destination's to-container side as
// its to_container would have counted it; everything the destination's
// own hook would judge differently, or that the fast path cannot know to
// be harmless, takes the plain path (TC_ACT_OK, or the sender's drop).
//
// Every row runs one frame at one container's from_container after the
// fixture opened a TCP flow A:40000 -> B:80 and saw its SYN-ACK, and checks
// the TC action and exactly which counters moved: the sender's from-
// container side alone on the plain path; that, the destination's
// to-container side and the fast path's own counter on the fast path.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "endpoint.skel.h"
#include "harness.h"
#include "packet.h"

using namespace pkt;
using namespace moat_test;

namespace {

const Network kNet1 = {1, ip4("172.20.0.0"), 16, ip4("172.20.0.1"), MOAT_NET_F_ICC};
const Network kNet2 = {2, ip4("172.21.0.0"), 16, ip4("172.21.0.1"), MOAT_NET_F_ICC};

constexpr const char* A = "172.20.0.2";  // moat-a, net 1
constexpr const char* B = "172.20.0.3";  // moat-b, net 1
constexpr const char* C = "172.21.0.2";  // moat-c, net 2
constexpr const char* N = "172.20.0.9";  // net 1, no endpoint here
constexpr const char* HOST = "192.0.2.1";

const Mac kMacA = {0x02, 0x42, 0xac, 0x14, 0x00, 0x02};
const Mac kMacB = {0x02, 0x42, 0xac, 0x14, 0x00, 0x03};
const Mac kMacC = {0x02, 0x42, 0xac, 0x15, 0x00, 0x02};
const Mac kGatewayMac = {0x02, 0x42, 0x11, 0x11, 0x11, 0x11};
const Mac kOtherMac = {0x02, 0x42, 0xac, 0x14, 0x00, 0x63};  // no endpoint's

constexpr uint16_t kClientPort = 40000;

Bytes frame(const Mac& src_mac, const Mac& dst_mac, const Ip4& ip, const Bytes& l4) {
  return eth(ETH_P_IP, ipv4(ip, l4), dst_mac, src_mac);
}
// A:40000 -> B:80 and back, the fixture's flow.
Bytes a_to_b(uint8_t flags = kAck, const Mac& dst = kMacB) {
  return frame(kMacA, dst, {.src = ip4(A), .dst = ip4(B)}, tcp(kClientPort, 80, flags));
}
Bytes b_to_a(uint8_t flags = kAck) {
  return frame(kMacB, kMacA, {.src = ip4(B), .dst = ip4(A)}, tcp(80, kClientPort, flags));
}

class FastPath : public ::testing::Test {
 public:  // the rows' set-ups reach the maps through it
  void SetUp() override {
    add_network(dp_.ep, kNet1);
    add_network(dp_.ep, kNet2);
    add_host_addr(dp_.ep, ip4(HOST));
    endpoint('A', "moat-a", kNet1, A, kMacA);
    endpoint('B', "moat-b", kNet1, B, kMacB);
    endpoint('C', "moat-c", kNet2, C, kMacC);
    // Rules that admit everything: flows are tracked from revision 1 on.
    install_policy(dp_.ep, 1, {}, {});
    set_fast(0);
    // The flow every row starts from: SYN at A, through B's to_container,
    // SYN-ACK back from B.
    ASSERT_EQ(run(skel_from(), if_['A'], a_to_b(kSyn)).retval, uint32_t(TC_ACT_OK));
    ASSERT_EQ(run(dp_.prog(Hook::ToContainer), if_['B'], a_to_b(kSyn)).retval, uint32_t(TC_ACT_OK));
    ASSERT_EQ(run(skel_from(), if_['B'], b_to_a(kSyn | kAck)).retval, uint32_t(TC_ACT_REDIRECT));
  }

  const bpf_program* skel_from() const { return dp_.prog(Hook::FromContainer); }

  // An endpoint with its own MAC, and its `local_peers` entry, as apply writes them.
  void endpoint(char name, const char* dev, const Network& net, const char* ip, const Mac& mac) {
    const uint32_t ifindex = ifindex_of(dev);
    if_[name] = ifindex;
    add_endpoint(dp_.ep, ifindex, net, ip4(ip));
    moat_endpoint ep{};
    ASSERT_EQ(bpf_map__lookup_elem(dp_.ep->maps.endpoints, &ifindex, 4, &ep, sizeof ep, 0), 0);
    std::copy(mac.begin(), mac.end(), ep.mac);
    ASSERT_EQ(bpf_map__update_elem(dp_.ep->maps.endpoints, &ifindex, 4, &ep, sizeof ep, BPF_ANY),
              0);
    const moat_peer_key k = {net.id, ip4(ip)};
    ASSERT_EQ(bpf_map__update_elem(dp_.ep->maps.local_peers, &k, sizeof k, &ifindex, 4, BPF_ANY),
              0);
  }

  void set_fast(uint32_t flags) {
    const uint32_t zero = 0;
    ASSERT_EQ(bpf_map__update_elem(dp_.ep->maps.fast_cfg, &zero, 4, &flags, 4, BPF_ANY), 0);
  }

  uint64_t fast_packets() { return percpu_u64(dp_.ep->maps.fast_stats, MOAT_FAST_PEER_PACKETS); }

  struct Row {
    std::string what;
    char from;
    Bytes frame;
    Expect expect;  // at the sender's from_container
    char to = 0;    // the fast path's destination; 0: the plain path
    std::function<void(FastPath&)> before = nullptr;
  };

  void check(const Row& row) {
    SCOPED_TRACE(row.what);
    if (row.before) row.before(*this);
    const uint32_t ifindex = if_.at(row.from);
    const uint64_t fast_before = fast_packets();
    const auto [r, moved] = run_counted(dp_.ep->maps.stats, skel_from(), ifindex, row.frame);
    ASSERT_EQ(r.err, 0) << std::strerror(r.err);
    const Expect want = row.to ? redirect : row.expect;
    EXPECT_EQ(r.retval, want.action);
    EXPECT_EQ(r.out, row.frame) << "the fast path never rewrites";
    StatsSnapshot expected = counted(want, ifindex, MOAT_DIR_FROM_CONTAINER, row.frame.size());
    if (row.to) {
      Counters at_dest;
      at_dest.packets = 1;
      at_dest.bytes = row.frame.size();
      expected[{if_.at(row.to), MOAT_DIR_TO_CONTAINER}] = at_dest;
    }
    EXPECT_EQ(moved, expected);
    EXPECT_EQ(fast_packets() - fast_before, row.to ? 1u : 0u);
  }

  Programs dp_;
  std::map<char, uint32_t> if_;
};

TEST_F(FastPath, EstablishedFlowGoesStraightToThePeer) {
  const std::vector<Row> rows = {
      {"A->B ack of the established flow", 'A', a_to_b(), pass, 'B'},
      {"B->A reply", 'B', b_to_a(), pass, 'A'},
      {"A->B data", 'A',
       frame(kMacA, kMacB, {.src = ip4(A), .dst = ip4(B)},
             tcp(kClientPort, 80, kAck, Bytes(1000, 7))),
       pass, 'B'},
      {"A->B fin", 'A', a_to_b(kAck | 0x01), pass, 'B'},
  };
  for (const Row& r : rows) check(r);
}

// The destination's to_container accounts a reply where the flow was admitted:
// the fast path does it for the hook it skips.
TEST_F(FastPath, ReplyAccountedAsToContainerWould) {
  const moat_ct_key key = ct_key(A, kClientPort, B, 80, IPPROTO_TCP);
  const auto before = ct_get(dp_.ep, key);
  ASSERT_TRUE(before.has_value());
  EXPECT_EQ(before->tcp_state, MOAT_TCP_ESTABLISHED) << "the SYN-ACK took the fast path";
  EXPECT_EQ(before->reply_packets, 1u);
  check({"B->A reply", 'B', b_to_a(), pass, 'A'});
  const auto after = ct_get(dp_.ep, key);
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->reply_packets, 2u);
  check({"B->A rst", 'B', b_to_a(0x04), pass, 'A'});
  EXPECT_EQ(ct_get(dp_.ep, key)->tcp_state, MOAT_TCP_CLOSING);
}

// A tracked flow's one entry follows both directions' sequence numbers
// (abi.h, MOAT_CT_TCP_AHEAD), on the fast path too: a RST of B's at a number
// B is not at passes and ends nothing; B's own ends the flow.
TEST_F(FastPath, ForgedRstEndsNothing) {
  const moat_ct_key key = ct_key(A, kClientPort, B, 80, IPPROTO_TCP);
  for (uint32_t seq : {0u, 2u, 1000u, 0x80000001u})
    check({"B->A rst at " + std::to_string(seq), 'B',
           frame(kMacB, kMacA, {.src = ip4(B), .dst = ip4(A)},
                 tcp_at(80, kClientPort, 0x04, seq, 0)),
           pass, 'A'});
  EXPECT_EQ(ct_get(dp_.ep, key)->tcp_state, MOAT_TCP_ESTABLISHED);
  check({"B->A rst at B's number", 'B', b_to_a(0x04), pass, 'A'});
  EXPECT_EQ(ct_get(dp_.ep, key)->tcp_state, MOAT_TCP_CLOSING);
}

TEST_F(FastPath, EverythingElseTakesThePlainPath) {
  Bytes icmp_quote = ipv4({.src = ip4(B), .dst = ip4(A)}, tcp(80, kClientPort));
  icmp_quote.resize(28);
  const std::vector<Row> rows = {
      {"new flow: SYN on another port", 'A',
       frame(kMacA, kMacB, {.src = ip4(A), .dst = ip4(B)}, tcp(kClientPort + 1, 80, kSyn)), pass},
      {"new flow: SYN of a tuple already tracked", 'A', a_to_b(kSyn), pass},
      {"new flow: first UDP datagram", 'A',
       frame(kMacA, kMacB, {.src = ip4(A), .dst = ip4(B), .proto = IPPROTO_UDP}, udp(5353, 53)),
       pass},
      {"new flow: UDP with no reply yet", 'A',
       frame(kMacA, kMacB, {.src = ip4(A), .dst = ip4(B), .proto = IPPROTO_UDP}, udp(5353, 53)),
       pass},
      {"new flow: ICMP echo request", 'A',
       frame(kMacA, kMacB, {.src = ip4(A), .dst = ip4(B), .proto = IPPROTO_ICMP},
             icmp_echo(8, 7, 1)),
       pass},
      {"foreign MAC: not the destination's", 'A', a_to_b(kAck, kOtherMac), pass},
      {"the gateway's MAC: routed by the host", 'A', a_to_b(kAck, kGatewayMac), pass},
      {"broadcast MAC", 'A', a_to_b(kAck, kBroadcast), pass},
      {"first fragment", 'A',
       frame(kMacA, kMacB, {.src = ip4(A), .dst = ip4(B), .frag = kMoreFragments},
             tcp(kClientPort, 80)),
       pass},
      {"ICMP error about the flow", 'A',
       frame(kMacA, kMacB, {.src = ip4(A), .dst = ip4(B), .proto = IPPROTO_ICMP},
             icmp_error(3, 3, icmp_quote)),
       pass},
      {"no endpoint at the destination address", 'A',
       frame(kMacA, kMacB, {.src = ip4(A), .dst = ip4(N)}, tcp(kClientPort, 80)), pass, 0,
       [](FastPath& t) {
         // A tracked flow to it, answered: only the missing endpoint stops it.
         moat_ct_entry e{};
         e.xlated = ct_key(A, kClientPort, N, 80, IPPROTO_TCP);
         e.expires_ns = monotonic_ns() + 60'000'000'000ull;
         e.ifindex = t.if_['A'];
         e.dir = MOAT_DIR_FROM_CONTAINER;
         e.kind = MOAT_CT_TRACK;
         e.tcp_state = MOAT_TCP_ESTABLISHED;
         e.policy_rev = 1;
         e.reply_packets = 1;
         ct_put(t.dp_.ep, e.xlated, e);
       }},
  };
  for (const Row& r : rows) check(r);
}

// A flow the sender's hook passes to a container of another network (a
// tracked one: isolation judges new flows only) is routed by the host.
TEST_F(FastPath, OtherNetworkTakesThePlainPath) {
  moat_ct_entry e{};
  e.xlated = ct_key(A, kClientPort, C, 80, IPPROTO_TCP);
  e.expires_ns = monotonic_ns() + 60'000'000'000ull;
  e.ifindex = if_['A'];
  e.dir = MOAT_DIR_FROM_CONTAINER;
  e.kind = MOAT_CT_TRACK;
  e.tcp_state = MOAT_TCP_ESTABLISHED;
  e.policy_rev = 1;
  e.reply_packets = 1;
  ct_put(dp_.ep, e.xlated, e);
  check({"A->C, C's MAC", 'A',
         frame(kMacA, kMacC, {.src = ip4(A), .dst = ip4(C)}, tcp(kClientPort, 80)), pass});
  // Even with an entry claiming C for A's network, C's own says otherwise.
  const moat_peer_key k = {kNet1.id, ip4(C)};
  const uint32_t c = if_['C'];
  ASSERT_EQ(bpf_map__update_elem(dp_.ep->maps.local_peers, &k, sizeof k, &c, 4, BPF_ANY), 0);
  check({"A->C, C listed under A's network", 'A',
         frame(kMacA, kMacC, {.src = ip4(A), .dst = ip4(C)}, tcp(kClientPort, 80)), pass});
}

// A flow whose entry rewrites at the destination's hook: B dialled a port A
// publishes at a host address; A's replies reach B straight by MAC, and
// B's to_container must turn them back into the host's address.
TEST_F(FastPath, FlowRewrittenAtTheDestinationTakesThePlainPath) {
  add_publish(dp_.ep, {0, 8080, IPPROTO_TCP, ip4(A), 80, if_['A'], kNet1.id});
  const Bytes dial =
      frame(kMacB, kGatewayMac, {.src = ip4(B), .dst = ip4(HOST)}, tcp(41000, 8080, kSyn));
  ASSERT_EQ(run(skel_from(), if_['B'], dial).retval, uint32_t(TC_ACT_OK));
  const Bytes reply =
      frame(kMacA, kMacB, {.src = ip4(A), .dst = ip4(B)}, tcp(80, 41000, kSyn | kAck));
  check({"A->B SYN-ACK of B's published dial", 'A', reply, pass});
  check({"A->B ack of B's published dial", 'A',
         frame(kMacA, kMacB, {.src = ip4(A), .dst = ip4(B)}, tcp(80, 41000)), pass});
  // The same entry kind at the destination for a plain tracked flow.
  moat_ct_entry e{};
  e.xlated = ct_key(A, 42000, B, 80, IPPROTO_TCP);
  e.expires_ns = monotonic_ns() + 60'000'000'000ull;
  e.ifindex = if_['B'];
  e.dir = MOAT_DIR_TO_CONTAINER;
  e.kind = MOAT_CT_TRACK;
  e.tcp_state = MOAT_TCP_ESTABLISHED;
  e.policy_rev = 1;
  e.reply_packets = 1;
  ct_put(dp_.ep, e.xlated, e);
  check({"A->B of a flow B's hook admitted (and updates)", 'A',
         frame(kMacA, kMacB, {.src = ip4(A), .dst = ip4(B)}, tcp(42000, 80)), pass});
}

// The fast path takes only what the sender's hook passed as it is: a packet
// it rewrote is never offered, even one rewritten onto the tuple of an
// answered flow to a container of its network, addressed to that
// container's MAC (A dialling a port B publishes at a host address, from
// the port of A's flow to B).
TEST_F(FastPath, RewrittenBySenderTakesThePlainPath) {
  add_publish(dp_.ep, {0, 8080, IPPROTO_TCP, ip4(B), 80, if_['B'], kNet1.id});
  auto dial = [](uint8_t flags) {
    return frame(kMacA, kMacB, {.src = ip4(A), .dst = ip4(HOST), .l4_checksum = true},
                 tcp(kClientPort, 8080, flags));
  };
  ASSERT_EQ(run(skel_from(), if_['A'], dial(kSyn)).retval, uint32_t(TC_ACT_OK));
  const uint64_t fast_before = fast_packets();
  const RunResult r = run(skel_from(), if_['A'], dial(kAck));
  ASSERT_EQ(r.err, 0) << std::strerror(r.err);
  EXPECT_EQ(r.retval, uint32_t(TC_ACT_OK));
  const Bytes rewritten = frame(kMacA, kMacB, {.src = ip4(A), .dst = ip4(B), .l4_checksum = true},
                                tcp(kClientPort, 80, kAck));
  EXPECT_EQ(r.out, rewritten) << "DNAT onto the fixture's tuple";
  EXPECT_EQ(fast_packets(), fast_before);
}

// A policy change: the sender's hook judges the flow again under the new
// revision; a flow the destination's ingress now refuses is dropped there,
// one it still admits goes on by the fast path.
TEST_F(FastPath, PolicyChange) {
  // Revision 2: the same everything-goes policy.
  install_policy(dp_.ep, 2, {}, {});
  check({"still admitted under revision 2", 'A', a_to_b(), pass, 'B'});
  // Revision 3: B is an isolated container with no rule admitting A.
  const IpcacheEntries ipcache = {
      {{32, ip4(A)}, {MOAT_ID_FIRST_DYNAMIC, MOAT_ID_F_CONTAINER}},
      {{32, ip4(B)}, {MOAT_ID_FIRST_DYNAMIC + 1, MOAT_ID_F_CONTAINER | MOAT_ID_F_INGRESS_ISOLATED}},
  };
  install_policy(dp_.ep, 3, ipcache, {});
  check({"revoked by B's ingress", 'A', a_to_b(), drop(MOAT_DROP_POLICY_REVOKED)});
  // Its entry is gone: B's next segment is judged as a packet of no flow
  // (B's egress to A is not isolated), never by the fast path.
  check({"its replies, of no flow now", 'B', b_to_a(), pass});
}

// An entry judged under another revision than the one in force is judged
// again by the sender's hook, which moves it to the current one: only then
// may the fast path take it (it never judges an entry itself).
TEST_F(FastPath, StaleEntryRejudgedBySenderFirst) {
  const moat_ct_key key = ct_key(A, kClientPort, B, 80, IPPROTO_TCP);
  auto e = ct_get(dp_.ep, key);
  ASSERT_TRUE(e.has_value());
  e->policy_rev = 7;  // not the revision in force (1)
  ct_put(dp_.ep, key, *e);
  check({"re-judged by the sender's hook, then fast", 'A', a_to_b(), pass, 'B'});
  EXPECT_EQ(ct_get(dp_.ep, key)->policy_rev, 1u);
}

// ICMP echo: the request opens the flow (plain path), the reply is fast.
TEST_F(FastPath, EchoReply) {
  check({"echo request A->B", 'A',
         frame(kMacA, kMacB, {.src = ip4(A), .dst = ip4(B), .proto = IPPROTO_ICMP},
               icmp_echo(8, 7, 1)),
         pass});
  check({"echo reply B->A", 'B',
         frame(kMacB, kMacA, {.src = ip4(B), .dst = ip4(A), .proto = IPPROTO_ICMP},
               icmp_echo(0, 7, 1)),
         pass, 'A'});
}

TEST_F(FastPath, KillSwitch) {
  set_fast(MOAT_FAST_F_PEER_OFF);
  check({"A->B, fast path off", 'A', a_to_b(), pass});
  check({"B->A, fast path off", 'B', b_to_a(), pass});
  set_fast(0);
  check({"A->B, on again", 'A', a_to_b(), pass, 'B'});
}

// Without counting (obs_cfg off) the fast path still goes, counting nothing.
TEST_F(FastPath, ObservationOff) {
  set_obs_flags(dp_.ep, MOAT_OBS_F_OFF);
  const auto [r, moved] = run_counted(dp_.ep->maps.stats, skel_from(), if_['A'], a_to_b());
  EXPECT_EQ(r.retval, uint32_t(TC_ACT_REDIRECT));
  EXPECT_TRUE(moved.empty());
  set_obs_flags(dp_.ep, 0);
}

}  // namespace
