// isolation_test.cpp - the verdict of endpoint.bpf.c for every kind of frame
// a container can send or receive, as tables of
//     {what, program, endpoint, frame, expected verdict}
// run with BPF_PROG_TEST_RUN against a fixed topology. For every row the
// test checks the TC action, that the frame comes out unchanged (moat never
// rewrites packets) and that exactly one counter moved: packets/bytes on a
// pass, the drop reason's slot on a drop, for that interface and direction.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "endpoint.skel.h"
#include "harness.h"
#include "packet.h"

using namespace pkt;
using namespace moat_test;

namespace {

// ---- topology -------------------------------------------------------------------

const Network kNet1 = {1, ip4("172.20.0.0"), 16, ip4("172.20.0.1"), MOAT_NET_F_ICC};
const Network kNet2 = {2, ip4("172.21.0.0"), 16, ip4("172.21.0.1"), MOAT_NET_F_ICC};
const Network kNet3 = {3, ip4("172.22.0.0"), 16, ip4("172.22.0.1"), 0};  // icc off
// Docker's internal networks keep icc on: members talk, nothing else.
const Network kNet4 = {4, ip4("172.23.0.0"), 16, ip4("172.23.0.1"),
                       MOAT_NET_F_ICC | MOAT_NET_F_INTERNAL};

// Endpoint addresses (each on its own host-side veth, see kEndpoints).
constexpr const char* A = "172.20.0.2";  // net 1
constexpr const char* B = "172.20.0.3";  // net 1
constexpr const char* C = "172.21.0.2";  // net 2
constexpr const char* D = "172.22.0.2";  // net 3, icc off
constexpr const char* E = "172.23.0.2";  // net 4, internal
// Other addresses.
constexpr const char* GW1 = "172.20.0.1";
constexpr const char* GW2 = "172.21.0.1";
constexpr const char* GW3 = "172.22.0.1";
constexpr const char* GW4 = "172.23.0.1";
constexpr const char* D_PEER = "172.22.0.3";  // a container on net 3 with no entry here
constexpr const char* E_PEER = "172.23.0.3";  // same, net 4
constexpr const char* WORLD = "198.18.0.2";   // matches no moat network

struct EndpointSpec {
  char name;
  const char* device;
  const Network* net;
  const char* ip;
};
const EndpointSpec kEndpoints[] = {
    {'A', "moat-a", &kNet1, A}, {'B', "moat-b", &kNet1, B}, {'C', "moat-c", &kNet2, C},
    {'D', "moat-d", &kNet3, D}, {'E', "moat-e", &kNet4, E},
};
// 'X' is a device carrying the program without an endpoint entry.
constexpr const char* kUnknownDevice = "moat-x";

// ---- table rows -----------------------------------------------------------------

constexpr moat_dir FROM = MOAT_DIR_FROM_CONTAINER;
constexpr moat_dir TO = MOAT_DIR_TO_CONTAINER;

struct Case {
  std::string what;
  moat_dir dir;
  char ep;  // 'A'..'E', or 'X'
  Bytes frame;
  Expect expect;
  char via = 0;  // the endpoint whose port it entered the host by; 0: the host sent it
};

// ---- frame shorthands -------------------------------------------------------------

Bytes ip4_frame(const Ip4& h, const Bytes& l4) { return eth(ETH_P_IP, ipv4(h, l4)); }
Bytes tcp4(const char* s, const char* d, uint8_t flags = kAck) {
  return ip4_frame({.src = ip4(s), .dst = ip4(d)}, tcp(40000, 80, flags));
}
Bytes udp4(const char* s, const char* d) {
  return ip4_frame({.src = ip4(s), .dst = ip4(d), .proto = IPPROTO_UDP},
                   udp(40000, 53, Bytes(12, 0)));
}
Bytes icmp4(const char* s, const char* d) {
  return ip4_frame({.src = ip4(s), .dst = ip4(d), .proto = IPPROTO_ICMP}, icmp(8));  // echo request
}
Bytes arp_frame(const Arp& a) { return eth(ETH_P_ARP, arp(a), kBroadcast); }
Bytes ip6_frame(const Ip6& h, const Bytes& payload) { return eth(ETH_P_IPV6, ipv6(h, payload)); }

// Bytes after an IPv4 header that a non-first fragment carries: no L4 header.
const Bytes kFragmentData(64, 0xab);

// ---- the fixture ----------------------------------------------------------------

class Verdicts : public ::testing::Test {
 protected:
  void SetUp() override {
    skel_ = load_skeleton();
    for (const Network* net : {&kNet1, &kNet2, &kNet3, &kNet4}) add_network(skel_, *net);
    for (const EndpointSpec& ep : kEndpoints) {
      ifindex_[ep.name] = ifindex_of(ep.device);
      add_endpoint(skel_, ifindex_[ep.name], *ep.net, ip4(ep.ip));
    }
    ifindex_['X'] = ifindex_of(kUnknownDevice);
  }

  void check(const Case& c) {
    SCOPED_TRACE(c.what);
    const uint32_t ifindex = ifindex_.at(c.ep);
    const bpf_program* prog =
        c.dir == FROM ? skel_->progs.from_container : skel_->progs.to_container;

    const uint32_t via = c.via ? ifindex_.at(c.via) : 0;
    const auto [r, moved] = run_counted(skel_->maps.stats, prog, ifindex, c.frame, via);
    ASSERT_EQ(r.err, 0) << "BPF_PROG_TEST_RUN refused the frame: " << std::strerror(r.err);

    EXPECT_EQ(r.retval, c.expect.action);
    EXPECT_EQ(r.out, c.frame) << "the programs must never rewrite a packet";
    // An interface that is no attachment has no counters of its own.
    EXPECT_EQ(moved, counted(c.expect, ifindex, c.dir, c.frame.size()));
  }

  void check_all(const std::vector<Case>& table) {
    for (const Case& c : table) check(c);
  }

  Skeleton<endpoint_bpf> skel_;
  std::map<char, uint32_t> ifindex_;
};

// ---- the tables -----------------------------------------------------------------

TEST_F(Verdicts, SameNetworkPassesBothWays) {
  check_all({
      {"A->B tcp syn", FROM, 'A', tcp4(A, B, kSyn), pass},
      {"A->B tcp ack", FROM, 'A', tcp4(A, B), pass},
      {"A->B udp", FROM, 'A', udp4(A, B), pass},
      {"A->B icmp", FROM, 'A', icmp4(A, B), pass},
      {"B->A tcp, to A", TO, 'A', tcp4(B, A), pass},
      {"B->A udp, to A", TO, 'A', udp4(B, A), pass},
      {"B->A icmp, to A", TO, 'A', icmp4(B, A), pass},
      {"A->B tcp, to B", TO, 'B', tcp4(A, B), pass},
      {"B->A tcp, from B", FROM, 'B', tcp4(B, A), pass},
  });
}

TEST_F(Verdicts, NetworksAreIsolated) {
  check_all({
      {"A->C tcp", FROM, 'A', tcp4(A, C), drop(MOAT_DROP_ISOLATION)},
      {"A->C udp", FROM, 'A', udp4(A, C), drop(MOAT_DROP_ISOLATION)},
      {"A->C icmp", FROM, 'A', icmp4(A, C), drop(MOAT_DROP_ISOLATION)},
      {"C->A tcp, to A", TO, 'A', tcp4(C, A), drop(MOAT_DROP_ISOLATION)},
      {"C->A tcp, from C", FROM, 'C', tcp4(C, A), drop(MOAT_DROP_ISOLATION)},
      {"A->D (icc-off net) tcp", FROM, 'A', tcp4(A, D), drop(MOAT_DROP_ISOLATION)},
      {"D->A tcp", FROM, 'D', tcp4(D, A), drop(MOAT_DROP_ISOLATION)},
      // A peer inside another network is isolation, even for an internal one.
      {"E->A tcp", FROM, 'E', tcp4(E, A), drop(MOAT_DROP_ISOLATION)},
      {"A->E tcp", FROM, 'A', tcp4(A, E), drop(MOAT_DROP_ISOLATION)},
  });
}

TEST_F(Verdicts, GatewaysAndTheWorld) {
  check_all({
      {"A->own gateway", FROM, 'A', tcp4(A, GW1), pass},
      // Another network's gateway is a host address, reachable like the host.
      {"A->net2 gateway", FROM, 'A', tcp4(A, GW2), pass},
      {"net2 gateway->A, to A", TO, 'A', tcp4(GW2, A), pass},
      {"A->world", FROM, 'A', tcp4(A, WORLD, kSyn), pass},
      {"world->A, to A", TO, 'A', tcp4(WORLD, A), pass},
      {"A->world udp", FROM, 'A', udp4(A, WORLD), pass},
  });
}

TEST_F(Verdicts, IccOff) {
  check_all({
      {"D->net3 peer", FROM, 'D', tcp4(D, D_PEER), drop(MOAT_DROP_ICC_DISABLED)},
      {"D->net3 peer icmp", FROM, 'D', icmp4(D, D_PEER), drop(MOAT_DROP_ICC_DISABLED)},
      {"net3 peer->D, to D", TO, 'D', tcp4(D_PEER, D), drop(MOAT_DROP_ICC_DISABLED)},
      {"D->own gateway", FROM, 'D', tcp4(D, GW3), pass},
      {"own gateway->D, to D", TO, 'D', tcp4(GW3, D), pass},
      {"D->world", FROM, 'D', tcp4(D, WORLD), pass},
  });
}

TEST_F(Verdicts, InternalNetwork) {
  check_all({
      {"E->world", FROM, 'E', tcp4(E, WORLD), drop(MOAT_DROP_INTERNAL_NETWORK)},
      {"E->net4 peer", FROM, 'E', tcp4(E, E_PEER), pass},
      {"net4 peer->E, to E", TO, 'E', tcp4(E_PEER, E), pass},
      {"E->net1 gateway", FROM, 'E', tcp4(E, GW1), drop(MOAT_DROP_INTERNAL_NETWORK)},
      {"E->own gateway", FROM, 'E', tcp4(E, GW4), pass},
      {"own gateway->E, to E", TO, 'E', tcp4(GW4, E), pass},
      {"world->E, to E", TO, 'E', tcp4(WORLD, E), drop(MOAT_DROP_INTERNAL_NETWORK)},
      {"net1 gateway->E, to E", TO, 'E', tcp4(GW1, E), drop(MOAT_DROP_INTERNAL_NETWORK)},
  });
}

TEST_F(Verdicts, SpoofedSources) {
  check_all({
      {"A with unassigned source ->B", FROM, 'A', tcp4("172.20.0.99", B),
       drop(MOAT_DROP_SPOOFED_SOURCE)},
      {"A with B's source ->world", FROM, 'A', tcp4(B, WORLD), drop(MOAT_DROP_SPOOFED_SOURCE)},
      {"A with B's source ->B", FROM, 'A', udp4(B, B), drop(MOAT_DROP_SPOOFED_SOURCE)},
      {"A with C's source ->C", FROM, 'A', tcp4(C, C), drop(MOAT_DROP_SPOOFED_SOURCE)},
      // Sources are checked where the sender's identity is known: on its own
      // interface. Inbound, only the network the source is in matters.
      {"unassigned net1 source->A, to A", TO, 'A', tcp4("172.20.0.99", A), pass},
  });
}

TEST_F(Verdicts, Arp) {
  const Bytes request = arp_frame({.spa = ip4(A), .tpa = ip4(GW1)});
  check_all({
      {"A request, own spa", FROM, 'A', request, pass},
      {"A reply, own spa", FROM, 'A', arp_frame({.op = 2, .spa = ip4(A), .tpa = ip4(B)}), pass},
      {"A probe, spa 0.0.0.0", FROM, 'A', arp_frame({.spa = 0, .tpa = ip4(A)}), pass},
      {"A request, spa of B", FROM, 'A', arp_frame({.spa = ip4(B), .tpa = ip4(GW1)}),
       drop(MOAT_DROP_SPOOFED_SOURCE)},
      {"A request, spa of C", FROM, 'A', arp_frame({.spa = ip4(C), .tpa = ip4(C)}),
       drop(MOAT_DROP_SPOOFED_SOURCE)},
      {"B request, to A", TO, 'A', arp_frame({.spa = ip4(B), .tpa = ip4(A)}), pass},
      {"A request, hlen 8", FROM, 'A', arp_frame({.spa = ip4(A), .tpa = ip4(GW1), .hlen = 8}),
       drop(MOAT_DROP_INVALID_PACKET)},
      {"A request, 20 of 28 bytes", FROM, 'A', truncated(request, 14 + 20),
       drop(MOAT_DROP_INVALID_PACKET)},
      {"A request, 27 of 28 bytes", FROM, 'A', truncated(request, 14 + 27),
       drop(MOAT_DROP_INVALID_PACKET)},
      {"request to A, hlen 8", TO, 'A', arp_frame({.spa = ip4(B), .tpa = ip4(A), .hlen = 8}),
       drop(MOAT_DROP_INVALID_PACKET)},
  });
}

// Issue 13 item 4: a container that sends from another's MAC makes the
// bridge forward that one's frames to it; a frame for another MAC must not
// reach a container however the bridge forwards it.
TEST_F(Verdicts, MacOwnership) {
  const Bytes to_b = ipv4({.src = ip4(A), .dst = ip4(B)}, tcp(40000, 80));
  const Bytes from_b = ipv4({.src = ip4(B), .dst = ip4(A)}, tcp(80, 40000));
  const Mac ipv4_mcast = {0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb};
  check_all({
      {"A from its own MAC", FROM, 'A', eth(ETH_P_IP, to_b, kPeerMac, kContainerMac), pass},
      {"A from B's MAC, own IP", FROM, 'A', eth(ETH_P_IP, to_b, kContainerMac, kPeerMac),
       drop(MOAT_DROP_SPOOFED_MAC)},
      {"A from a group MAC", FROM, 'A', eth(ETH_P_IP, to_b, kPeerMac, kBroadcast),
       drop(MOAT_DROP_SPOOFED_MAC)},
      {"A's ARP from B's MAC", FROM, 'A',
       eth(ETH_P_ARP, arp({.spa = ip4(A), .tpa = ip4(GW1)}), kBroadcast, kPeerMac),
       drop(MOAT_DROP_SPOOFED_MAC)},
      {"A's ARP claiming B's MAC inside", FROM, 'A',
       arp_frame({.spa = ip4(A), .tpa = ip4(GW1), .sha = kPeerMac}), drop(MOAT_DROP_SPOOFED_MAC)},
      {"to A, for A's MAC", TO, 'A', eth(ETH_P_IP, from_b, kContainerMac, kPeerMac), pass},
      {"to A, for B's MAC", TO, 'A', eth(ETH_P_IP, from_b, kPeerMac, kPeerMac),
       drop(MOAT_DROP_FOREIGN_MAC)},
      {"to A, broadcast", TO, 'A', eth(ETH_P_IP, from_b, kBroadcast, kPeerMac), pass},
      {"to A, IPv4 multicast MAC", TO, 'A', eth(ETH_P_IP, from_b, ipv4_mcast, kPeerMac), pass},
      {"ARP to A for B's MAC", TO, 'A',
       eth(ETH_P_ARP, arp({.op = 2, .spa = ip4(B), .tpa = ip4(A)}), kPeerMac, kPeerMac),
       drop(MOAT_DROP_FOREIGN_MAC)},
  });
}

// Issue 13 item 4: ARP is padded to 60 bytes at most, and a container hears
// ARP only from peers it may talk to (kilobyte trailers crossed icc off).
TEST_F(Verdicts, ArpCarriesNothingAndFollowsIsolation) {
  const auto padded = [](const Arp& a, size_t frame_len) {
    Bytes f = arp_frame(a);
    f.resize(frame_len, 0x5a);
    return f;
  };
  check_all({
      {"A request padded to 60", FROM, 'A', padded({.spa = ip4(A), .tpa = ip4(GW1)}, 60), pass},
      {"A request of 61 bytes", FROM, 'A', padded({.spa = ip4(A), .tpa = ip4(GW1)}, 61),
       drop(MOAT_DROP_INVALID_PACKET)},
      {"A request with a 1000-byte trailer", FROM, 'A',
       padded({.spa = ip4(A), .tpa = ip4(GW1)}, 42 + 1000), drop(MOAT_DROP_INVALID_PACKET)},
      {"B request with a trailer, to A", TO, 'A', padded({.spa = ip4(B), .tpa = ip4(A)}, 1042),
       drop(MOAT_DROP_INVALID_PACKET)},
      {"net2 request, to A", TO, 'A', arp_frame({.spa = ip4(C), .tpa = ip4(A)}),
       drop(MOAT_DROP_ISOLATION)},
      {"net3 peer request, to D (icc off)", TO, 'D',
       arp_frame({.spa = ip4(D_PEER), .tpa = ip4(GW3)}), drop(MOAT_DROP_ICC_DISABLED)},
      {"net3 peer probe, to D (icc off)", TO, 'D', arp_frame({.spa = 0, .tpa = ip4(D_PEER)}),
       drop(MOAT_DROP_ICC_DISABLED)},
      {"own gateway request, to D", TO, 'D', arp_frame({.spa = ip4(GW3), .tpa = ip4(D)}), pass},
      {"probe, to A (icc on)", TO, 'A', arp_frame({.spa = 0, .tpa = ip4(B)}), pass},
      {"world sender, to E (internal)", TO, 'E', arp_frame({.spa = ip4(WORLD), .tpa = ip4(E)}),
       drop(MOAT_DROP_INTERNAL_NETWORK)},
      {"own gateway, to E (internal)", TO, 'E', arp_frame({.spa = ip4(GW4), .tpa = ip4(E)}), pass},
  });
}

TEST_F(Verdicts, Ipv4HeaderChecks) {
  const Ip4 ab = {.src = ip4(A), .dst = ip4(B)};
  const Bytes l4 = tcp(40000, 80);
  std::vector<Case> table;

  // Options do not change the verdict: every legal header length.
  for (uint8_t words = 1; words <= 10; words++) {
    const std::string ihl = "ihl " + std::to_string(5 + words);
    table.push_back({"A->B with options, " + ihl, FROM, 'A',
                     ip4_frame({.src = ip4(A), .dst = ip4(B), .option_words = words}, l4), pass});
    table.push_back({"A->C with options, " + ihl, FROM, 'A',
                     ip4_frame({.src = ip4(A), .dst = ip4(C), .option_words = words}, l4),
                     drop(MOAT_DROP_ISOLATION)});
  }

  const Bytes good = ip4_frame(ab, l4);
  table.insert(
      table.end(),
      {
          // Protocols moat has no parser for pass on their addresses alone...
          {"A->B protocol 253, header only", FROM, 'A',
           ip4_frame({.src = ip4(A), .dst = ip4(B), .proto = 253}, {}), pass},
          // ...but a TCP, UDP or ICMP header that is not there is a broken packet.
          {"A->B TCP without its header", FROM, 'A', ip4_frame(ab, {}),
           drop(MOAT_DROP_INVALID_PACKET)},
          {"A->B TCP header cut at 12 bytes", FROM, 'A', ip4_frame(ab, Bytes(12, 0)),
           drop(MOAT_DROP_INVALID_PACKET)},
          {"A->B UDP header cut at 6 bytes", FROM, 'A',
           ip4_frame({.src = ip4(A), .dst = ip4(B), .proto = IPPROTO_UDP}, Bytes(6, 0)),
           drop(MOAT_DROP_INVALID_PACKET)},
          {"A with options and a spoofed source", FROM, 'A',
           ip4_frame({.src = ip4(B), .dst = ip4(B), .option_words = 3}, l4),
           drop(MOAT_DROP_SPOOFED_SOURCE)},
          {"ihl 4", FROM, 'A', ip4_frame({.src = ip4(A), .dst = ip4(B), .ihl = 4}, l4),
           drop(MOAT_DROP_INVALID_PACKET)},
          {"ihl 0", FROM, 'A', ip4_frame({.src = ip4(A), .dst = ip4(B), .ihl = 0}, l4),
           drop(MOAT_DROP_INVALID_PACKET)},
          {"ihl 4, to A", TO, 'A', ip4_frame({.src = ip4(B), .dst = ip4(A), .ihl = 4}, l4),
           drop(MOAT_DROP_INVALID_PACKET)},
          {"version 6 in an IPv4 frame", FROM, 'A', patched(good, 14, 0x65),
           drop(MOAT_DROP_INVALID_PACKET)},
          {"tot_len 19 < ihl*4 20", FROM, 'A',
           ip4_frame({.src = ip4(A), .dst = ip4(B), .tot_len = 19}, l4),
           drop(MOAT_DROP_INVALID_PACKET)},
          {"tot_len 20 < ihl*4 24", FROM, 'A',
           ip4_frame({.src = ip4(A), .dst = ip4(B), .option_words = 1, .tot_len = 20}, l4),
           drop(MOAT_DROP_INVALID_PACKET)},
          {"tot_len 0", FROM, 'A', ip4_frame({.src = ip4(A), .dst = ip4(B), .tot_len = 0}, l4),
           drop(MOAT_DROP_INVALID_PACKET)},
          // The header claims 60 bytes (tot_len agrees) but the frame ends after 20.
          {"ihl 15 past the end", FROM, 'A',
           ip4_frame({.src = ip4(A), .dst = ip4(B), .ihl = 15, .tot_len = 60}, {}),
           drop(MOAT_DROP_INVALID_PACKET)},
          {"ihl 6 past the end by 4", FROM, 'A',
           ip4_frame({.src = ip4(A), .dst = ip4(B), .ihl = 6, .tot_len = 24}, {}),
           drop(MOAT_DROP_INVALID_PACKET)},
      });
  check_all(table);
}

// Frames whose IPv4/IPv6 header is cut short. Since a 2026 syzkaller fix
// (in 6.18 stable) BPF_PROG_TEST_RUN itself refuses, with EINVAL, an
// ETH_P_IP frame with fewer than 20 bytes after the Ethernet header and an
// ETH_P_IPV6 one with fewer than 40, so on such kernels these rows cannot run
// here. The programs' bounds checks are still forced by the verifier, and the
// rows run on kernels that accept the frames.
TEST_F(Verdicts, TruncatedL3Headers) {
  const Bytes v4 = tcp4(A, B);
  const Bytes v6 =
      ip6_frame({.src = ip6("fe80::2"), .dst = ip6("ff02::1:ff00:3")}, icmp(135, 0, Bytes(16, 0)));
  if (run(skel_->progs.from_container, ifindex_.at('A'), truncated(v4, 14 + 10)).err == EINVAL)
    GTEST_SKIP() << "this kernel's BPF_PROG_TEST_RUN refuses truncated IPv4/IPv6 frames";

  check_all({
      {"only 10 bytes of IPv4", FROM, 'A', truncated(v4, 14 + 10), drop(MOAT_DROP_INVALID_PACKET)},
      {"only 19 bytes of IPv4", FROM, 'A', truncated(v4, 14 + 19), drop(MOAT_DROP_INVALID_PACKET)},
      {"only 10 bytes of IPv4, to A", TO, 'A', truncated(tcp4(B, A), 14 + 10),
       drop(MOAT_DROP_INVALID_PACKET)},
      {"IPv4 ethertype, nothing after", FROM, 'A', truncated(v4, 14),
       drop(MOAT_DROP_INVALID_PACKET)},
      {"only 30 bytes of IPv6", FROM, 'A', truncated(v6, 14 + 30), drop(MOAT_DROP_INVALID_PACKET)},
      {"IPv6 ethertype, nothing after", FROM, 'A', truncated(v6, 14),
       drop(MOAT_DROP_INVALID_PACKET)},
  });
}

TEST_F(Verdicts, FragmentsAreJudgedByAddress) {
  // Fragments carry the addresses in every piece, so they need no special
  // casing: a non-first fragment (no L4 header) gets the first one's verdict.
  const auto frag = [](const char* s, const char* d, uint16_t frag, const Bytes& data) {
    return ip4_frame({.src = ip4(s), .dst = ip4(d), .proto = IPPROTO_UDP, .frag = frag}, data);
  };
  const Bytes first = udp(40000, 53, Bytes(64, 0));
  check_all({
      {"A->B first fragment (MF)", FROM, 'A', frag(A, B, kMoreFragments, first), pass},
      {"A->B middle fragment", FROM, 'A', frag(A, B, kMoreFragments | 9, kFragmentData), pass},
      {"A->B last fragment", FROM, 'A', frag(A, B, 185, kFragmentData), pass},
      {"B->A last fragment, to A", TO, 'A', frag(B, A, 185, kFragmentData), pass},
      {"A->B DF set", FROM, 'A', frag(A, B, kDontFragment, first), pass},
      {"A->C first fragment (MF)", FROM, 'A', frag(A, C, kMoreFragments, first),
       drop(MOAT_DROP_ISOLATION)},
      {"A->C last fragment", FROM, 'A', frag(A, C, 185, kFragmentData), drop(MOAT_DROP_ISOLATION)},
      {"C->A last fragment, to A", TO, 'A', frag(C, A, 185, kFragmentData),
       drop(MOAT_DROP_ISOLATION)},
      {"spoofed last fragment", FROM, 'A', frag(B, C, 185, kFragmentData),
       drop(MOAT_DROP_SPOOFED_SOURCE)},
      {"E->world last fragment", FROM, 'E', frag(E, WORLD, 185, kFragmentData),
       drop(MOAT_DROP_INTERNAL_NETWORK)},
  });
}

// A TCP header that only the frame's Ethernet padding completes (a first
// fragment claiming 8 bytes of TCP, RFC 1858): its flags are not what the
// receiver reassembles, so nothing is judged or tracked by them.
TEST_F(Verdicts, TcpHeaderInThePaddingIsInvalid) {
  const auto first = [](uint16_t tot_len) {
    return ip4_frame({.src = ip4(A),
                      .dst = ip4(B),
                      .proto = IPPROTO_TCP,
                      .frag = kMoreFragments,
                      .tot_len = tot_len},
                     tcp(40000, 80, kSyn));
  };
  check_all({
      {"8 bytes of TCP by its IP length", FROM, 'A', first(20 + 8), drop(MOAT_DROP_INVALID_PACKET)},
      {"19 bytes", FROM, 'A', first(20 + 19), drop(MOAT_DROP_INVALID_PACKET)},
      {"the whole header", FROM, 'A', first(20 + 20), pass},
  });
}

TEST_F(Verdicts, Ipv6OnlyNeighbourDiscoveryAndMld) {
  const in6_addr own = ip6("fe80::42:acff:fe14:2");
  const in6_addr router = ip6("fe80::1");
  const in6_addr peer = ip6("fe80::42:acff:fe14:3");
  const in6_addr solicited = ip6("ff02::1:ff14:3");
  const in6_addr all_nodes = ip6("ff02::1");
  const in6_addr all_routers = ip6("ff02::2");
  const in6_addr mldv2 = ip6("ff02::16");

  const Bytes target(16, 0xfe);  // ND target address / MLD body stand-in
  const auto nd = [&](const in6_addr& s, const in6_addr& d, uint8_t type, uint8_t hop_limit = 255) {
    return ip6_frame({.src = s, .dst = d, .hop_limit = hop_limit}, icmp(type, 0, target));
  };
  // MLD goes out with hop limit 1 behind a hop-by-hop router-alert header.
  const auto mld = [&](const in6_addr& s, const in6_addr& d, uint8_t type) {
    return ip6_frame({.src = s, .dst = d, .next = IPPROTO_HOPOPTS, .hop_limit = 1},
                     hop_by_hop(IPPROTO_ICMPV6, icmp(type, 0, target)));
  };
  const Bytes ns = nd(own, solicited, 135);

  check_all({
      {"NS hop limit 255", FROM, 'A', ns, pass},
      {"NS hop limit 64", FROM, 'A', nd(own, solicited, 135, 64), drop(MOAT_DROP_INVALID_PACKET)},
      {"NS, to A", TO, 'A', nd(peer, own, 135), pass},
      {"NA for an address not its own", FROM, 'A', nd(own, peer, 136),
       drop(MOAT_DROP_SPOOFED_SOURCE)},
      {"NA, to A", TO, 'A', nd(peer, own, 136), pass},
      {"NA hop limit 254, to A", TO, 'A', nd(peer, own, 136, 254), drop(MOAT_DROP_INVALID_PACKET)},
      {"RS", FROM, 'A', ip6_frame({.src = own, .dst = all_routers}, icmp(133)), pass},
      {"RA from the container", FROM, 'A', nd(own, all_nodes, 134), drop(MOAT_DROP_ROUTER_ADVERT)},
      {"redirect from the container", FROM, 'A', nd(own, peer, 137), drop(MOAT_DROP_ROUTER_ADVERT)},
      {"RA, to A", TO, 'A', nd(router, all_nodes, 134), pass},
      {"RA hop limit 64, to A", TO, 'A', nd(router, all_nodes, 134, 64),
       drop(MOAT_DROP_INVALID_PACKET)},
      {"redirect, to A", TO, 'A', nd(router, own, 137), pass},
      {"MLDv2 report", FROM, 'A', mld(own, mldv2, 143), pass},
      {"MLDv1 report", FROM, 'A', mld(own, solicited, 131), pass},
      {"MLD done", FROM, 'A', mld(own, all_routers, 132), pass},
      {"MLD query, to A", TO, 'A', mld(router, all_nodes, 130), pass},
      {"echo request", FROM, 'A', nd(own, peer, 128, 64), drop(MOAT_DROP_IPV6_NOT_ENABLED)},
      {"TCP", FROM, 'A', ip6_frame({.src = own, .dst = peer, .next = IPPROTO_TCP}, tcp(40000, 80)),
       drop(MOAT_DROP_IPV6_NOT_ENABLED)},
      {"TCP, to A", TO, 'A',
       ip6_frame({.src = peer, .dst = own, .next = IPPROTO_TCP}, tcp(80, 40000)),
       drop(MOAT_DROP_IPV6_NOT_ENABLED)},
      {"hop-by-hop then UDP", FROM, 'A',
       ip6_frame({.src = own, .dst = peer, .next = IPPROTO_HOPOPTS},
                 hop_by_hop(IPPROTO_UDP, udp(40000, 53))),
       drop(MOAT_DROP_IPV6_NOT_ENABLED)},
      {"NS with 2 bytes of ICMPv6", FROM, 'A', truncated(ns, 14 + 40 + 2),
       drop(MOAT_DROP_INVALID_PACKET)},
      {"hop-by-hop header cut short", FROM, 'A', truncated(mld(own, mldv2, 143), 14 + 40 + 6),
       drop(MOAT_DROP_INVALID_PACKET)},
      {"MLD with ICMPv6 cut short", FROM, 'A', truncated(mld(own, mldv2, 143), 14 + 40 + 8 + 3),
       drop(MOAT_DROP_INVALID_PACKET)},
      {"version 4 in an IPv6 frame", FROM, 'A', patched(ns, 14, 0x40),
       drop(MOAT_DROP_INVALID_PACKET)},
  });
}

// Issue 16: the extension-header chain is walked to its end, within
// MOAT_IPV6_MAX_EXT headers, and what an ND message claims (its source, an
// advertised target, link-layer address options) is the container's own.
TEST_F(Verdicts, Ipv6ExtensionHeadersAndNeighbourClaims) {
  const in6_addr own = ip6("fe80::42:acff:fe14:2");  // EUI-64 of kContainerMac
  const in6_addr other = ip6("fe80::42:acff:fe14:3");
  const in6_addr any = ip6("::");
  const in6_addr peer = ip6("fe80::1");
  const in6_addr solicited = ip6("ff02::1:ff14:3");
  const Mac other_mac = {0x02, 0x42, 0xac, 0x14, 0x00, 0x03};
  const auto opt = [](uint8_t type, const Mac& m) {
    Bytes b = {type, 1};
    b.insert(b.end(), m.begin(), m.end());
    return b;
  };
  const auto addr = [](const in6_addr& a) {
    return Bytes(reinterpret_cast<const uint8_t*>(&a), reinterpret_cast<const uint8_t*>(&a) + 16);
  };
  const auto cat = [](Bytes a, const Bytes& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  // An 8-byte extension header (hop-by-hop, routing or destination options): next, length 0, PadN.
  const auto ext = [&](uint8_t next, const Bytes& rest) {
    return cat(Bytes{next, 0, 1, 4, 0, 0, 0, 0}, rest);
  };
  const auto frag = [&](uint8_t next, uint16_t offset8, bool more, const Bytes& rest) {
    const uint16_t v = uint16_t(offset8 << 3) | (more ? 1 : 0);
    return cat(Bytes{next, 0, uint8_t(v >> 8), uint8_t(v), 0, 0, 0, 7}, rest);
  };
  const auto frame = [&](const in6_addr& s, const in6_addr& d, uint8_t next, const Bytes& payload,
                         uint8_t hop_limit = 255) {
    return ip6_frame({.src = s, .dst = d, .next = next, .hop_limit = hop_limit}, payload);
  };
  const auto ns = [&](const Bytes& options) { return icmp(135, 0, cat(addr(other), options)); };
  const auto na = [&](const in6_addr& target, const Bytes& options) {
    return icmp(136, 0, cat(addr(target), options));
  };
  const Bytes udp6 = udp(40000, 53);
  // A chain of `n` destination-options headers ending in UDP.
  const auto chain = [&](int n) {
    Bytes b = udp6;
    uint8_t next = IPPROTO_UDP;
    for (int i = 0; i < n; ++i) {
      b = ext(next, b);
      next = IPPROTO_DSTOPTS;
    }
    return frame(own, peer, next, b);
  };
  const auto chain_to_a = [&](int n) {
    Bytes f = chain(n);
    std::copy(reinterpret_cast<const uint8_t*>(&peer), reinterpret_cast<const uint8_t*>(&peer) + 16,
              f.begin() + 14 + 8);
    std::copy(reinterpret_cast<const uint8_t*>(&own), reinterpret_cast<const uint8_t*>(&own) + 16,
              f.begin() + 14 + 24);
    return f;
  };
  // A routing header that claims 88 bytes where 8 follow.
  Bytes long_routing = ext(IPPROTO_ICMPV6, ns({}));
  long_routing[1] = 10;
  // AH: 12 bytes (length field 1: (1 + 2) * 4).
  const Bytes ah = cat(Bytes{IPPROTO_UDP, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1}, udp6);

  check_all({
      {"NS behind a destination-options header", FROM, 'A',
       frame(own, solicited, IPPROTO_DSTOPTS, ext(IPPROTO_ICMPV6, ns({}))), pass},
      {"UDP behind 8 extension headers", FROM, 'A', chain(8), drop(MOAT_DROP_IPV6_NOT_ENABLED)},
      {"UDP behind 9 extension headers", FROM, 'A', chain(9), drop(MOAT_DROP_IPV6_EXT_HEADERS)},
      {"UDP behind 9 extension headers, to A", TO, 'A', chain_to_a(9),
       drop(MOAT_DROP_IPV6_EXT_HEADERS)},
      {"hop-by-hop after a destination-options header", FROM, 'A',
       frame(own, peer, IPPROTO_DSTOPTS, ext(IPPROTO_HOPOPTS, ext(IPPROTO_UDP, udp6))),
       drop(MOAT_DROP_IPV6_EXT_HEADERS)},
      {"two fragment headers", FROM, 'A',
       frame(own, peer, IPPROTO_FRAGMENT,
             frag(IPPROTO_FRAGMENT, 0, true, frag(IPPROTO_UDP, 0, true, udp6))),
       drop(MOAT_DROP_IPV6_EXT_HEADERS)},
      {"routing header longer than the packet", FROM, 'A',
       frame(own, solicited, IPPROTO_ROUTING, long_routing), drop(MOAT_DROP_IPV6_EXT_HEADERS)},
      {"AH then UDP", FROM, 'A', frame(own, peer, IPPROTO_AH, ah),
       drop(MOAT_DROP_IPV6_NOT_ENABLED)},
      {"first fragment of an NS (RFC 6980)", FROM, 'A',
       frame(own, solicited, IPPROTO_FRAGMENT, frag(IPPROTO_ICMPV6, 0, true, ns({}))),
       drop(MOAT_DROP_INVALID_PACKET)},
      {"later fragment", FROM, 'A',
       frame(own, peer, IPPROTO_FRAGMENT, frag(IPPROTO_ICMPV6, 3, false, Bytes(16, 0))),
       drop(MOAT_DROP_IPV6_NOT_ENABLED)},
      {"NA for its own address, its MAC as target", FROM, 'A',
       frame(own, peer, IPPROTO_ICMPV6, na(own, opt(2, kContainerMac))), pass},
      {"NA for its own address, another MAC as target", FROM, 'A',
       frame(own, peer, IPPROTO_ICMPV6, na(own, opt(2, other_mac))), drop(MOAT_DROP_SPOOFED_MAC)},
      {"NA for another container's address", FROM, 'A',
       frame(own, peer, IPPROTO_ICMPV6, na(other, opt(2, kContainerMac))),
       drop(MOAT_DROP_SPOOFED_SOURCE)},
      {"NA from ::", FROM, 'A', frame(any, peer, IPPROTO_ICMPV6, na(own, {})),
       drop(MOAT_DROP_SPOOFED_SOURCE)},
      {"NS with its MAC as source", FROM, 'A',
       frame(own, solicited, IPPROTO_ICMPV6, ns(opt(1, kContainerMac))), pass},
      {"NS with another MAC as source", FROM, 'A',
       frame(own, solicited, IPPROTO_ICMPV6, ns(opt(1, other_mac))), drop(MOAT_DROP_SPOOFED_MAC)},
      {"NS with a zero-length option", FROM, 'A',
       frame(own, solicited, IPPROTO_ICMPV6, ns(Bytes{1, 0, 0, 0, 0, 0, 0, 0})),
       drop(MOAT_DROP_INVALID_PACKET)},
      {"NS from another container's link-local address", FROM, 'A',
       frame(other, solicited, IPPROTO_ICMPV6, ns({})), drop(MOAT_DROP_SPOOFED_SOURCE)},
      {"duplicate address detection: NS from ::", FROM, 'A',
       frame(any, solicited, IPPROTO_ICMPV6, ns({})), pass},
      {"RS with another MAC as source", FROM, 'A',
       frame(own, ip6("ff02::2"), IPPROTO_ICMPV6, icmp(133, 0, opt(1, other_mac))),
       drop(MOAT_DROP_SPOOFED_MAC)},
      {"MLDv2 report from ::", FROM, 'A',
       frame(any, ip6("ff02::16"), IPPROTO_HOPOPTS, hop_by_hop(IPPROTO_ICMPV6, icmp(143)), 1),
       pass},
      {"UDP from ::", FROM, 'A', frame(any, peer, IPPROTO_UDP, udp6),
       drop(MOAT_DROP_SPOOFED_SOURCE)},
  });
}

// Issue 13 item 3: with icc off, ND and MLD from other containers carried
// up to 1,000 bytes to a raw ICMPv6 socket. Nothing of theirs arrives now.
TEST_F(Verdicts, Ipv6LinkMessagesFollowIcc) {
  const in6_addr own = ip6("fe80::42:acff:fe14:2");  // EUI-64 of kContainerMac
  const in6_addr peer = ip6("fe80::42:acff:fe16:3");
  const Bytes body(1000, 0xee);
  const auto nd = [&](const in6_addr& s, const in6_addr& d, uint8_t type) {
    return ip6_frame({.src = s, .dst = d, .hop_limit = 255}, icmp(type, 0, body));
  };
  const auto mld = [&](const in6_addr& s, const in6_addr& d, uint8_t type) {
    return ip6_frame({.src = s, .dst = d, .next = IPPROTO_HOPOPTS, .hop_limit = 1},
                     hop_by_hop(IPPROTO_ICMPV6, icmp(type, 0, body)));
  };
  check_all({
      {"NS with 1000 bytes, to D", TO, 'D', nd(peer, own, 135), drop(MOAT_DROP_ICC_DISABLED), 'B'},
      {"NA with 1000 bytes, to D", TO, 'D', nd(peer, own, 136), drop(MOAT_DROP_ICC_DISABLED), 'B'},
      {"RS, to D", TO, 'D', nd(peer, ip6("ff02::2"), 133), drop(MOAT_DROP_ICC_DISABLED), 'B'},
      {"MLDv2 report, to D", TO, 'D', mld(peer, ip6("ff02::16"), 143), drop(MOAT_DROP_ICC_DISABLED),
       'B'},
      {"MLD query, to D", TO, 'D', mld(peer, ip6("ff02::1"), 130), drop(MOAT_DROP_ICC_DISABLED),
       'B'},
      // Sent, they reach only the host; the network's containers drop them.
      {"D's NS", FROM, 'D',
       ip6_frame({.src = own, .dst = peer, .hop_limit = 255}, icmp(135, 0, Bytes(16, 0xfe))), pass},
      // The host's own (nothing forwarded it from a port) arrive: the
      // host reaches every container, as over IPv4.
      {"the host's NS, to D", TO, 'D', nd(peer, own, 135), pass},
      {"the host's MLD query, to D", TO, 'D', mld(peer, ip6("ff02::1"), 130), pass},
      // icc on: the same peer may send anything anyway.
      {"NS with 1000 bytes, to A (icc on)", TO, 'A', nd(peer, own, 135), pass, 'B'},
  });
}

// Issue 16: IPv6 data between containers with IPv6 addresses is judged as
// IPv4 is (the same networks, kNet1..4, given IPv6 subnets), with what moat
// does not carry over IPv6 yet dropped: the world, containers under policy.
TEST_F(Verdicts, Ipv6DataFollowsIsolation) {
  add_network6(skel_, kNet1, "fd00:1::", 64, "fd00:1::1");
  add_network6(skel_, kNet2, "fd00:2::", 64, "fd00:2::1");
  add_network6(skel_, kNet3, "fd00:3::", 64, "fd00:3::1");
  add_network6(skel_, kNet4, "fd00:4::", 64, "fd00:4::1");
  for (const auto& [name, a] : std::map<char, const char*>{{'A', "fd00:1::2"},
                                                           {'B', "fd00:1::3"},
                                                           {'C', "fd00:2::2"},
                                                           {'D', "fd00:3::2"},
                                                           {'E', "fd00:4::2"}})
    set_endpoint_ipv6(skel_, ifindex_.at(name), a);
  const char *A6 = "fd00:1::2", *B6 = "fd00:1::3", *C6 = "fd00:2::2", *D6 = "fd00:3::2",
             *E6 = "fd00:4::2", *GW1_6 = "fd00:1::1", *GW3_6 = "fd00:3::1", *GW4_6 = "fd00:4::1",
             *D_PEER6 = "fd00:3::3", *E_PEER6 = "fd00:4::3", *WORLD6 = "2001:db8::2",
             *LL = "fe80::42:acff:fe14:2", *LL_PEER = "fe80::42:acff:fe14:9";
  const auto v6 = [&](const char* s6, const char* d6, uint8_t next, const Bytes& l4,
                      uint8_t hop_limit = 64) {
    return ip6_frame({.src = ip6(s6), .dst = ip6(d6), .next = next, .hop_limit = hop_limit}, l4);
  };
  const auto udp6 = [&](const char* s6, const char* d6) {
    return v6(s6, d6, IPPROTO_UDP, udp(40000, 53, Bytes(12, 0)));
  };
  const auto tcp6 = [&](const char* s6, const char* d6) {
    return v6(s6, d6, IPPROTO_TCP, tcp(40000, 80, kSyn));
  };
  const auto echo6 = [&](const char* s6, const char* d6) {
    return v6(s6, d6, IPPROTO_ICMPV6, icmp(128, 0, Bytes(8, 0)));
  };
  // A later fragment: fragment header (offset 8 x 8 bytes), then data only.
  const auto later_fragment = [&](const char* s6, const char* d6) {
    Bytes b = {IPPROTO_UDP, 0, 0, 64, 0, 0, 0, 9};
    b.insert(b.end(), 32, 0xab);
    return v6(s6, d6, IPPROTO_FRAGMENT, b);
  };

  check_all({
      {"A->B udp", FROM, 'A', udp6(A6, B6), pass},
      {"A->B tcp syn", FROM, 'A', tcp6(A6, B6), pass},
      {"A->B echo request", FROM, 'A', echo6(A6, B6), pass},
      {"B->A udp, to A", TO, 'A', udp6(B6, A6), pass, 'B'},
      {"A->its gateway", FROM, 'A', tcp6(A6, GW1_6), pass},
      {"gateway->A, to A", TO, 'A', tcp6(GW1_6, A6), pass},
      {"A->B later fragment", FROM, 'A', later_fragment(A6, B6), pass},
      // Isolation.
      {"A->C udp", FROM, 'A', udp6(A6, C6), drop(MOAT_DROP_ISOLATION)},
      {"A->C echo request", FROM, 'A', echo6(A6, C6), drop(MOAT_DROP_ISOLATION)},
      {"A->C later fragment", FROM, 'A', later_fragment(A6, C6), drop(MOAT_DROP_ISOLATION)},
      {"C->A, to A", TO, 'A', udp6(C6, A6), drop(MOAT_DROP_ISOLATION), 'C'},
      {"A->another network's gateway", FROM, 'A', tcp6(A6, GW3_6), pass},
      // icc off.
      {"D->its peer", FROM, 'D', tcp6(D6, D_PEER6), drop(MOAT_DROP_ICC_DISABLED)},
      {"its peer->D, to D", TO, 'D', tcp6(D_PEER6, D6), drop(MOAT_DROP_ICC_DISABLED), 'B'},
      {"D->its gateway", FROM, 'D', tcp6(D6, GW3_6), pass},
      {"gateway->D, to D", TO, 'D', tcp6(GW3_6, D6), pass},
      // Internal.
      {"E->its peer", FROM, 'E', udp6(E6, E_PEER6), pass},
      {"E->its gateway", FROM, 'E', udp6(E6, GW4_6), pass},
      {"E->another network's gateway", FROM, 'E', udp6(E6, GW1_6),
       drop(MOAT_DROP_INTERNAL_NETWORK)},
      {"E->the world", FROM, 'E', udp6(E6, WORLD6), drop(MOAT_DROP_INTERNAL_NETWORK)},
      {"the world->E, to E", TO, 'E', udp6(WORLD6, E6), drop(MOAT_DROP_INTERNAL_NETWORK)},
      // The world: no IPv6 masquerade or published ports yet.
      {"A->the world: judged at the uplink (masquerade)", FROM, 'A', tcp6(A6, WORLD6), pass},
      {"the world->A, to A: the uplink let it in", TO, 'A', tcp6(WORLD6, A6), pass},
      // Spoofing.
      {"A sends as B", FROM, 'A', udp6(B6, C6), drop(MOAT_DROP_SPOOFED_SOURCE)},
      {"A sends as an unused address", FROM, 'A', udp6("fd00:1::99", B6),
       drop(MOAT_DROP_SPOOFED_SOURCE)},
      {"A sends as the gateway", FROM, 'A', udp6(GW1_6, B6), drop(MOAT_DROP_SPOOFED_SOURCE)},
      // The link: link-local and multicast peers.
      {"A->a link-local peer", FROM, 'A', udp6(LL, LL_PEER), pass},
      {"A->mDNS multicast", FROM, 'A', udp6(A6, "ff02::fb"), pass},
      // Multicast beyond the link may be routed: judged as any destination.
      {"E->link-scope multicast", FROM, 'E', udp6(E6, "ff02::fb"), pass},
      {"E->site-scope multicast: beyond its internal network", FROM, 'E', udp6(E6, "ff05::1:3"),
       drop(MOAT_DROP_INTERNAL_NETWORK)},
      {"E->global-scope multicast", FROM, 'E', udp6(E6, "ff0e::101"),
       drop(MOAT_DROP_INTERNAL_NETWORK)},
      {"A->global-scope multicast: judged at the uplink", FROM, 'A', udp6(A6, "ff0e::101"), pass},
      {"link-local from the host, to D", TO, 'D', udp6(LL_PEER, LL), pass},
      {"link-local from a container, to D", TO, 'D', udp6(LL_PEER, LL),
       drop(MOAT_DROP_ICC_DISABLED), 'B'},
      {"link-local from a container, to A", TO, 'A', udp6(LL_PEER, LL), pass, 'B'},
      {"multicast from D's peer, to D", TO, 'D', udp6(D_PEER6, "ff02::fb"),
       drop(MOAT_DROP_ICC_DISABLED), 'B'},
      // MLD is link-local by its source: one with C's global address was
      // routed from another network (ICMPv6 of C's choice, 1000 bytes).
      {"an MLD report from C's global address, to A", TO, 'A',
       v6(C6, A6, IPPROTO_ICMPV6, icmp(131, 0, Bytes(1000, 0xee)), 1),
       drop(MOAT_DROP_INVALID_PACKET), 'C'},
      {"an MLD query from C's global address, to A", TO, 'A',
       v6(C6, A6, IPPROTO_ICMPV6, icmp(130, 0, Bytes(20, 0)), 1), drop(MOAT_DROP_INVALID_PACKET),
       'C'},
      {"A's MLD report from its global address", FROM, 'A',
       v6(A6, C6, IPPROTO_ICMPV6, icmp(131, 0, Bytes(20, 0)), 1), drop(MOAT_DROP_INVALID_PACKET)},
      {"A's MLD report from its link-local address", FROM, 'A',
       v6(LL, "ff02::16", IPPROTO_ICMPV6, icmp(143, 0, Bytes(20, 0)), 1), pass},
  });

  // A policy that selects A for egress (and allows nothing): its IPv6 is
  // judged by it as its IPv4 is, through its IPv6 address's identity, the
  // same as its IPv4 address's (no ipBlock tells them apart); B's towards A
  // is not (A is not selected for ingress). Link messages are no policy's
  // business.
  const moat_ipcache_val a_id = {.identity = MOAT_ID_FIRST_DYNAMIC,
                                 .flags = MOAT_ID_F_CONTAINER | MOAT_ID_F_EGRESS_ISOLATED};
  moat_lpm_v6_key a6 = {.prefixlen = 128, .addr = {}};
  const in6_addr a6_addr = ip6(A6);
  std::memcpy(a6.addr.b, &a6_addr, 16);
  install_policy(skel_, 1, {{{.prefixlen = 32, .addr = ip4(A)}, a_id}}, {}, {{a6, a_id}});
  check_all({
      {"A->B under an egress policy", FROM, 'A', udp6(A6, B6), drop(MOAT_DROP_POLICY_DEFAULT_DENY)},
      {"A->B under an egress policy, at B", TO, 'B', udp6(A6, B6),
       drop(MOAT_DROP_POLICY_DEFAULT_DENY), 'A'},
      {"B->A, A selected for egress only", FROM, 'B', udp6(B6, A6), pass},
      {"B->A, to A", TO, 'A', udp6(B6, A6), pass, 'B'},
      {"A's NS under an egress policy", FROM, 'A',
       v6(LL, "ff02::1:ff00:3", IPPROTO_ICMPV6, icmp(135, 0, Bytes(16, 0)), 255), pass},
  });
  // A generation without an IPv6 identity map (one an older moat wrote)
  // fails closed.
  ct_clear(skel_);
  install_policy(skel_, 2, {{{.prefixlen = 32, .addr = ip4(A)}, a_id}}, {});
  const uint32_t slot = 0;
  ASSERT_EQ(bpf_map__delete_elem(skel_->maps.ipcache6_gens, &slot, sizeof slot, 0), 0);
  check_all({
      {"B->A with no IPv6 identity map in force", FROM, 'B', udp6(B6, A6),
       drop(MOAT_DROP_POLICY_DEFAULT_DENY)},
  });
}

TEST_F(Verdicts, OtherEthertypes) {
  const Bytes inner = ipv4({.src = ip4(A), .dst = ip4(B)}, tcp(40000, 80));
  check_all({
      {"802.1Q-tagged IPv4", FROM, 'A', eth(0x8100, vlan(10, ETH_P_IP, inner)),
       drop(MOAT_DROP_UNSUPPORTED_L3)},
      {"802.1Q-tagged IPv4, to A", TO, 'A', eth(0x8100, vlan(10, ETH_P_IP, inner)),
       drop(MOAT_DROP_UNSUPPORTED_L3)},
      {"802.1ad-tagged IPv4", FROM, 'A', eth(0x88a8, vlan(10, ETH_P_IP, inner)),
       drop(MOAT_DROP_UNSUPPORTED_L3)},
      {"local experimental ethertype", FROM, 'A', eth(0x88b5, Bytes(46, 0)),
       drop(MOAT_DROP_UNSUPPORTED_L3)},
      {"LLDP", FROM, 'A', eth(0x88cc, Bytes(46, 0), kBroadcast), drop(MOAT_DROP_UNSUPPORTED_L3)},
      {"802.3 length field", FROM, 'A', eth(46, Bytes(46, 0)), drop(MOAT_DROP_UNSUPPORTED_L3)},
  });
}

// Fail closed: an interface that carries the program but has no endpoint
// entry (a race with userspace, or a stale attachment) passes nothing.
TEST_F(Verdicts, UnknownEndpointFailsClosed) {
  check_all({
      {"tcp from unknown", FROM, 'X', tcp4(A, B), drop(MOAT_DROP_UNKNOWN_ENDPOINT)},
      {"tcp to unknown", TO, 'X', tcp4(B, A), drop(MOAT_DROP_UNKNOWN_ENDPOINT)},
      {"ARP from unknown", FROM, 'X', arp_frame({.spa = ip4(A), .tpa = ip4(GW1)}),
       drop(MOAT_DROP_UNKNOWN_ENDPOINT)},
      {"garbage from unknown", FROM, 'X', Bytes(14, 0), drop(MOAT_DROP_UNKNOWN_ENDPOINT)},
  });
}

// The counters are per interface and direction and accumulate.
TEST_F(Verdicts, CountersAccumulate) {
  const uint32_t a = ifindex_.at('A');
  const Bytes ok = tcp4(A, B), bad = tcp4(A, C);
  for (int i = 0; i < 3; i++) run(skel_->progs.from_container, a, ok);
  run(skel_->progs.from_container, a, bad);
  run(skel_->progs.to_container, a, ok);

  Counters from, to;
  from.packets = 3;
  from.bytes = 3 * ok.size();
  from.drops[-MOAT_DROP_ISOLATION] = 1;
  to.packets = 1;
  to.bytes = ok.size();
  EXPECT_EQ(read_stats(skel_->maps.stats), (StatsSnapshot{{{a, FROM}, from}, {{a, TO}, to}}));
}

}  // namespace
