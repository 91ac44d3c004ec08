// nat6_test.cpp - IPv6 at the uplink: masquerade (NAT66) behind the uplink's
// IPv6 address, published ports over IPv6 from the world, routed networks,
// and ICMPv6 errors of translated flows, with BPF_PROG_TEST_RUN on
// uplink.bpf.o over the maps endpoint.bpf.o shares.
//
// Every row gives the whole expected output frame, built with its checksums
// computed from scratch by the packet builder (pseudo header included), so
// a byte comparison checks the rewrite and the checksum arithmetic both;
// checksum_errors() re-verifies the output from its bytes alone. Every
// rewriting row runs a second time on a CHECKSUM_COMPLETE skb
// (run_complete()): the kernel fails that run when the program leaves
// skb->csum stale, which the BPF_F_IPV6 flag of the rewrite is for.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/icmpv6.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "endpoint.skel.h"
#include "harness.h"
#include "packet.h"
#include "uplink.skel.h"

using namespace pkt;
using namespace moat_test;

namespace {

constexpr uint32_t kMasqIcc = MOAT_NET_F_ICC | MOAT_NET_F_MASQUERADE;
const Network kNet1 = {1, ip4("172.20.0.0"), 16, ip4("172.20.0.1"), kMasqIcc};
const Network kNet3 = {3, ip4("172.22.0.0"), 16, ip4("172.22.0.1"), MOAT_NET_F_ICC};  // routed
const Network kNet4 = {4, ip4("172.23.0.0"), 16, ip4("172.23.0.1"),
                       MOAT_NET_F_ICC | MOAT_NET_F_INTERNAL};

constexpr const char* A6 = "fd00:20::2";         // net 1, publishes
constexpr const char* D6 = "fd00:22::2";         // net 3, routed
constexpr const char* E6 = "fd00:23::2";         // net 4, internal
constexpr const char* HOST6 = "2001:db8:ff::1";  // moat-u's IPv6 address
constexpr const char* CLIENT6 = "2001:db8:1::7";
constexpr const char* WORLD6 = "2001:db8:2::53";
constexpr const char* ROUTER6 = "2001:db8:ff::fe";

constexpr const char* kUplink = "moat-u";
constexpr const char* kUplinkNo6 = "moat-v";  // an uplink without an IPv6 address
constexpr uint32_t kCidA = 0xa1;

const Bytes kData = {'h', 'e', 'l', 'l', 'o'};  // odd length: the checksum's odd tail

Bytes frame6(const char* s, const char* d, uint8_t next, const Bytes& l4, bool csum = true) {
  return eth(
      ETH_P_IPV6,
      ipv6({.src = ip6(s), .dst = ip6(d), .next = next, .hop_limit = 64, .l4_checksum = csum}, l4));
}
Bytes tcp6(const char* s, uint16_t sp, const char* d, uint16_t dp, uint8_t flags = kAck) {
  return frame6(s, d, IPPROTO_TCP, tcp(sp, dp, flags, kData));
}
Bytes udp6(const char* s, uint16_t sp, const char* d, uint16_t dp) {
  return frame6(s, d, IPPROTO_UDP, udp(sp, dp, kData));
}
Bytes echo6(const char* s, const char* d, uint8_t type, uint16_t id) {
  return frame6(s, d, IPPROTO_ICMPV6, icmp_echo(type, id, 7, kData));
}
Bytes flow6(uint8_t proto, const char* s, uint16_t sp, const char* d, uint16_t dp, bool reply) {
  if (proto == IPPROTO_TCP) return tcp6(s, sp, d, dp, reply ? uint8_t(kSyn | kAck) : kSyn);
  if (proto == IPPROTO_UDP) return udp6(s, sp, d, dp);
  return echo6(s, d, reply ? ICMPV6_ECHO_REPLY : ICMPV6_ECHO_REQUEST, reply ? dp : sp);
}
// An ICMPv6 error from `s` to `d` quoting a UDP packet (fixed header and
// all of it, as far as it goes).
Bytes error6(const char* s, const char* d, uint8_t type, const char* qs, uint16_t qsp,
             const char* qd, uint16_t qdp) {
  const Bytes quoted = ipv6(
      {.src = ip6(qs), .dst = ip6(qd), .next = IPPROTO_UDP, .hop_limit = 63, .l4_checksum = true},
      udp(qsp, qdp, kData));
  Bytes msg = icmp_error(type, 0, quoted, type == ICMPV6_PKT_TOOBIG ? 1280 : 0);
  return frame6(s, d, IPPROTO_ICMPV6, msg);
}
// A quote's UDP checksum stays as it was (as for IPv4): the expected frame
// carries the original quote's checksum over the rewritten quote.
Bytes with_quoted_udp_csum(Bytes f, const Bytes& from) {
  const size_t off = 14 + 40 + 8 + 40 + 6;
  f.at(off) = from.at(off);
  f.at(off + 1) = from.at(off + 1);
  // The outer ICMPv6 checksum covers that quote: recompute it over the frame.
  const size_t icmp = 14 + 40;
  f.at(icmp + 2) = f.at(icmp + 3) = 0;
  Bytes summed = detail::pseudo6(&f[14 + 8], &f[14 + 24], IPPROTO_ICMPV6, f.size() - icmp);
  summed.insert(summed.end(), f.begin() + icmp, f.end());
  const uint16_t sum = inet_checksum(summed);
  f.at(icmp + 2) = uint8_t(sum >> 8);
  f.at(icmp + 3) = uint8_t(sum);
  return f;
}

constexpr size_t kL4 = 14 + 40;
uint16_t be16_at(const Bytes& f, size_t off) { return uint16_t(f.at(off) << 8 | f.at(off + 1)); }
size_t sport_off(uint8_t p) { return p == IPPROTO_ICMPV6 ? kL4 + 4 : kL4; }

struct Case {
  std::string what;
  Hook hook;
  const char* dev;
  Bytes in;
  Expect expect;
  std::optional<Bytes> out = std::nullopt;
  int ct_delta = 0;
};

struct Dataplane : Programs {
  Dataplane() {
    const struct {
      const char* dev;
      const Network* net;
      const char* ip4;
      const char* ip6;
      const char* subnet6;
    } eps[] = {{"moat-a", &kNet1, "172.20.0.2", A6, "fd00:20::"},
               {"moat-d", &kNet3, "172.22.0.2", D6, "fd00:22::"},
               {"moat-e", &kNet4, "172.23.0.2", E6, "fd00:23::"}};
    for (const auto& e : eps) {
      add_network(ep, *e.net);
      const std::string gw = std::string(e.subnet6) + "1";
      add_network6(ep, *e.net, e.subnet6, 64, gw.c_str());
      add_endpoint(ep, ifindex_of(e.dev), *e.net, ip4(e.ip4));
      set_endpoint_ipv6(ep, ifindex_of(e.dev), e.ip6);
    }
    add_uplink(ep, ifindex_of(kUplink), ip4("198.18.0.1"), HOST6);
    add_uplink(ep, ifindex_of(kUplinkNo6), ip4("198.51.100.1"));
    add_host_addr(ep, ip4("198.18.0.1"));
    add_host_addr6(ep, HOST6);
    add_publish6(ep, "::", 5000, IPPROTO_TCP, A6, 5000, kCidA, 1);
    add_publish6(ep, "::", 8080, IPPROTO_UDP, A6, 80, kCidA, 1);
  }
};

class Nat6 : public ::testing::Test {
 protected:
  Bytes check(const Case& c) {
    SCOPED_TRACE(c.what);
    EXPECT_EQ(checksum_errors(c.in), "") << "the input frame itself is broken";
    const uint32_t ifindex = ifindex_of(c.dev);
    const size_t before = ct6_entries(dp_.ep).size();
    const auto [r, moved] = run_counted(dp_.ep->maps.stats, dp_.prog(c.hook), ifindex, c.in);
    EXPECT_EQ(r.err, 0) << std::strerror(r.err);
    if (r.err) return {};
    EXPECT_EQ(r.retval, c.expect.action);
    EXPECT_EQ(moved, counted(c.expect, ifindex, dir_of(c.hook), c.in.size()));
    const Bytes want = c.expect.reason == 0 ? c.out.value_or(c.in) : c.in;
    EXPECT_EQ(r.out, want) << "the output frame";
    EXPECT_EQ(checksum_errors(r.out), "");
    EXPECT_EQ(int(ct6_entries(dp_.ep).size()) - int(before), c.ct_delta) << "ct6 entries added";
    return r.out;
  }

  // The same packet again on a CHECKSUM_COMPLETE skb, for a row that
  // rewrites: the kernel checks skb->csum is still right afterwards.
  void check_complete(const Case& c) {
    SCOPED_TRACE(c.what + " (CHECKSUM_COMPLETE)");
    const RunResult r = run_complete(dp_.prog(c.hook), ifindex_of(c.dev), c.in);
    EXPECT_EQ(r.err, 0) << "the run failed: " << std::strerror(r.err)
                        << " (EBADMSG: skb->csum left stale)";
    EXPECT_EQ(r.out, c.out.value_or(c.in));
  }

  Dataplane dp_;
};

TEST_F(Nat6, MasqueradeBothWays) {
  for (uint8_t p : {uint8_t(IPPROTO_TCP), uint8_t(IPPROTO_UDP), uint8_t(IPPROTO_ICMPV6)}) {
    SCOPED_TRACE(int(p));
    ct_clear(dp_.ep);
    const uint16_t cport = 33333, sport = p == IPPROTO_ICMPV6 ? cport : 443;
    const Bytes in = flow6(p, A6, cport, WORLD6, sport, false);
    const RunResult r = run(dp_.prog(Hook::ToWorld), ifindex_of(kUplink), in);
    ASSERT_EQ(r.err, 0);
    ASSERT_EQ(r.retval, uint32_t(TC_ACT_OK));
    const uint16_t P = be16_at(r.out, sport_off(p));
    EXPECT_GE(P, MOAT_NAT_PORT_MIN);
    EXPECT_LE(P, MOAT_NAT_PORT_MAX);
    EXPECT_EQ(r.out, flow6(p, HOST6, P, WORLD6, sport, false)) << "masqueraded behind " << P;
    EXPECT_EQ(checksum_errors(r.out), "");

    const uint16_t kd = p == IPPROTO_ICMPV6 ? 0 : sport;
    const moat_ct6_key orig = ct6_key(A6, cport, WORLD6, kd, p);
    const std::optional<moat_ct6_entry> e = ct6_get(dp_.ep, orig);
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->kind, MOAT_CT_SNAT);
    EXPECT_EQ(e->dir, MOAT_DIR_TO_WORLD);
    const moat_ct6_key xl = ct6_key(HOST6, P, WORLD6, kd, p);
    EXPECT_EQ(std::memcmp(&e->xlated, &xl, sizeof xl), 0);
    EXPECT_EQ(ct6_entries(dp_.ep).size(), 2u);
    EXPECT_TRUE(ct_entries(dp_.ep).empty()) << "nothing in the IPv4 table";

    const Case reply = {"the reply goes back to the container",
                        Hook::FromWorld,
                        kUplink,
                        flow6(p, WORLD6, sport, HOST6, P, true),
                        pass,
                        flow6(p, WORLD6, sport, A6, cport, true)};
    check(reply);
    check_complete(reply);
    const Case again = {"the next packet out takes the same port", Hook::ToWorld, kUplink, in, pass,
                        flow6(p, HOST6, P, WORLD6, sport, false)};
    check(again);
    check_complete(again);
    check({"a reply to another port of the uplink is not the flow's", Hook::FromWorld, kUplink,
           flow6(p, WORLD6, sport, HOST6, uint16_t(P == 65535 ? P - 1 : P + 1), true), pass});
  }
}

TEST_F(Nat6, PublishedPortsFromTheWorld) {
  const Case syn = {"SYN to [uplink]:5000: to the container",
                    Hook::FromWorld,
                    kUplink,
                    tcp6(CLIENT6, 40000, HOST6, 5000, kSyn),
                    pass,
                    tcp6(CLIENT6, 40000, A6, 5000, kSyn),
                    2};
  check(syn);
  const Case synack = {"SYN-ACK back: from the published address",
                       Hook::ToWorld,
                       kUplink,
                       tcp6(A6, 5000, CLIENT6, 40000, kSyn | kAck),
                       pass,
                       tcp6(HOST6, 5000, CLIENT6, 40000, kSyn | kAck)};
  check(synack);
  check_complete(synack);
  const Case udp = {"UDP to [uplink]:8080: to the container's port 80",
                    Hook::FromWorld,
                    kUplink,
                    udp6(CLIENT6, 41000, HOST6, 8080),
                    pass,
                    udp6(CLIENT6, 41000, A6, 80),
                    2};
  check(udp);
  check({"UDP answer from port 80: leaves as 8080", Hook::ToWorld, kUplink,
         udp6(A6, 80, CLIENT6, 41000), pass, udp6(HOST6, 8080, CLIENT6, 41000)});
  check({"a port nobody published: the host's business", Hook::FromWorld, kUplink,
         tcp6(CLIENT6, 40001, HOST6, 5001, kSyn), pass});
  check({"straight to the container's address: not published", Hook::FromWorld, kUplink,
         tcp6(CLIENT6, 40002, A6, 5000, kSyn), drop(MOAT_DROP_NOT_PUBLISHED)});
  check({"a mid-stream segment opens nothing", Hook::FromWorld, kUplink,
         tcp6(CLIENT6, 40003, HOST6, 5000, kAck), drop(MOAT_DROP_NO_FLOW)});
  check({"from a container's address, from the world: forged", Hook::FromWorld, kUplink,
         tcp6("fd00:22::9", 40004, HOST6, 5000, kSyn), drop(MOAT_DROP_SPOOFED_SOURCE)});
}

TEST_F(Nat6, RoutedNetworksAreTrackedNotTranslated) {
  check({"a routed network's SYN leaves as it is, tracked", Hook::ToWorld, kUplink,
         tcp6(D6, 40000, WORLD6, 443, kSyn), pass, std::nullopt, 2});
  check({"its reply comes in", Hook::FromWorld, kUplink, tcp6(WORLD6, 443, D6, 40000, kSyn | kAck),
         pass});
  check({"anything else to it does not", Hook::FromWorld, kUplink,
         tcp6(WORLD6, 443, D6, 40001, kSyn), drop(MOAT_DROP_NOT_PUBLISHED)});
  check({"an internal network reaches no uplink", Hook::ToWorld, kUplink,
         tcp6(E6, 40000, WORLD6, 443, kSyn), drop(MOAT_DROP_INTERNAL_NETWORK)});
  check({"an uplink without an IPv6 address masquerades no IPv6", Hook::ToWorld, kUplinkNo6,
         tcp6(A6, 40000, WORLD6, 443, kSyn), drop(MOAT_DROP_IPV6_NOT_ENABLED)});
  check({"the host's own IPv6 is its business", Hook::ToWorld, kUplink,
         tcp6(HOST6, 40000, WORLD6, 443, kSyn), pass});
}

TEST_F(Nat6, IcmpErrorsOfMasqueradedFlowsComeBackTranslated) {
  const RunResult r =
      run(dp_.prog(Hook::ToWorld), ifindex_of(kUplink), udp6(A6, 33333, WORLD6, 53));
  ASSERT_EQ(r.retval, uint32_t(TC_ACT_OK));
  const uint16_t P = be16_at(r.out, kL4);
  const Bytes in = error6(ROUTER6, HOST6, ICMPV6_PKT_TOOBIG, HOST6, P, WORLD6, 53);
  const Case err = {
      "a router's packet too big about it: to the container, quote translated",
      Hook::FromWorld,
      kUplink,
      in,
      pass,
      with_quoted_udp_csum(error6(ROUTER6, A6, ICMPV6_PKT_TOOBIG, A6, 33333, WORLD6, 53), in)};
  check(err);
  check_complete(err);
  const Bytes unreach = error6(WORLD6, HOST6, ICMPV6_DEST_UNREACH, HOST6, P, WORLD6, 53);
  check({"the server's port unreachable: the same", Hook::FromWorld, kUplink, unreach, pass,
         with_quoted_udp_csum(error6(WORLD6, A6, ICMPV6_DEST_UNREACH, A6, 33333, WORLD6, 53),
                              unreach)});
  check({"an error quoting a flow of nobody: the host's business", Hook::FromWorld, kUplink,
         error6(ROUTER6, HOST6, ICMPV6_PKT_TOOBIG, HOST6, 40000, WORLD6, 53), pass});
  check({"an error to a container's address quoting no flow of the uplink's: not published",
         Hook::FromWorld, kUplink, error6(ROUTER6, A6, ICMPV6_PKT_TOOBIG, A6, 33333, WORLD6, 53),
         drop(MOAT_DROP_NOT_PUBLISHED)});
}

// ---- a container dialling a published port at a host IPv6 address ---------------------------

constexpr const char* GW1_6 = "fd00:20::1";
constexpr const char* GW3_6 = "fd00:22::1";
constexpr const char* GW4_6 = "fd00:23::1";

Bytes swap_macs(Bytes f) {
  std::swap_ranges(f.begin(), f.begin() + 6, f.begin() + 6);
  return f;
}

TEST_F(Nat6, ContainerOfAnotherNetworkDialsThePublishedPort) {
  const Case syn = {"D dials its own gateway:5000: DNAT to A",
                    Hook::FromContainer,
                    "moat-d",
                    tcp6(D6, 40000, GW3_6, 5000, kSyn),
                    pass,
                    tcp6(D6, 40000, A6, 5000, kSyn),
                    2};
  check(syn);
  const std::optional<moat_ct6_entry> e =
      ct6_get(dp_.ep, ct6_key(D6, 40000, GW3_6, 5000, IPPROTO_TCP));
  ASSERT_TRUE(e.has_value()) << "the original direction's entry";
  EXPECT_EQ(e->kind, MOAT_CT_DNAT);
  EXPECT_EQ(e->ifindex, ifindex_of("moat-d"));
  EXPECT_EQ(e->xlated.daddr.b[15], 2) << "to A6";
  const Case synack = {"and reaches D from the address D dialled",
                       Hook::ToContainer,
                       "moat-d",
                       tcp6(A6, 5000, D6, 40000, kSyn | kAck),
                       pass,
                       tcp6(GW3_6, 5000, D6, 40000, kSyn | kAck)};
  const std::vector<Case> table = {
      {"delivered to A although the networks are isolated (a tracked flow)", Hook::ToContainer,
       "moat-a", tcp6(D6, 40000, A6, 5000, kSyn), pass},
      {"A's reply leaves A unchanged (rewritten on D's side)", Hook::FromContainer, "moat-a",
       tcp6(A6, 5000, D6, 40000, kSyn | kAck), pass},
      synack,
      {"D's next packet", Hook::FromContainer, "moat-d", tcp6(D6, 40000, GW3_6, 5000), pass,
       tcp6(D6, 40000, A6, 5000)},
      {"without the flow, D cannot reach A directly", Hook::FromContainer, "moat-d",
       tcp6(D6, 40001, A6, 5000, kSyn), drop(MOAT_DROP_ISOLATION)},
      {"nor with the flow's tuple, straight to the backend", Hook::FromContainer, "moat-d",
       tcp6(D6, 40000, A6, 5000), drop(MOAT_DROP_ISOLATION)},
      {"the published port dialled at another network's gateway", Hook::FromContainer, "moat-d",
       tcp6(D6, 40002, GW1_6, 5000, kSyn), pass, tcp6(D6, 40002, A6, 5000, kSyn), 2},
      {"and at the uplink's address, UDP 8080 -> 80", Hook::FromContainer, "moat-d",
       udp6(D6, 40003, HOST6, 8080), pass, udp6(D6, 40003, A6, 80), 2},
      {"a mid-stream segment opens nothing", Hook::FromContainer, "moat-d",
       tcp6(D6, 40004, GW3_6, 5000, kAck), drop(MOAT_DROP_NO_FLOW)},
      {"a port nobody published: the host's", Hook::FromContainer, "moat-d",
       tcp6(D6, 40005, GW3_6, 5001, kSyn), pass},
      {"an internal network's container cannot use another network's published port",
       Hook::FromContainer, "moat-e", tcp6(E6, 40000, GW4_6, 5000, kSyn),
       drop(MOAT_DROP_INTERNAL_NETWORK)},
  };
  for (const Case& c : table) check(c);
  check_complete(syn);
  check_complete(synack);
}

TEST_F(Nat6, IcmpErrorOfAContainerDialledFlow) {
  check({"D sends UDP to its gateway:8080: DNAT to A:80", Hook::FromContainer, "moat-d",
         udp6(D6, 40000, GW3_6, 8080), pass, udp6(D6, 40000, A6, 80), 2});
  const Bytes err = error6(A6, D6, ICMPV6_DEST_UNREACH, D6, 40000, A6, 80);
  check({"A answers port unreachable: passes A's ingress as it is", Hook::FromContainer, "moat-a",
         err, pass});
  check(
      {"and reaches D about the address and port D dialled", Hook::ToContainer, "moat-d", err, pass,
       with_quoted_udp_csum(error6(GW3_6, D6, ICMPV6_DEST_UNREACH, D6, 40000, GW3_6, 8080), err)});
}

TEST_F(Nat6, ASharedNetworkIsDialledDirectly) {
  // A is attached to D's network too, there as fd00:22::5.
  const moat_container_net_key k = {.container_id = kCidA, .net_id = kNet3.id};
  moat_ip shared = {};
  const in6_addr a = ip6("fd00:22::5");
  std::memcpy(shared.b, &a, 16);
  ASSERT_EQ(bpf_map__update_elem(dp_.ep->maps.container_addrs6, &k, sizeof k, &shared,
                                 sizeof shared, BPF_ANY),
            0);
  check({"D dials the uplink's address:5000: to A's address on D's own network",
         Hook::FromContainer, "moat-d", tcp6(D6, 40000, HOST6, 5000, kSyn), pass,
         tcp6(D6, 40000, "fd00:22::5", 5000, kSyn), 2});
}

TEST_F(Nat6, HairpinToTheContainersOwnPublishedPort) {
  check({"A dials its own published port at its gateway: source becomes the gateway, back out",
         Hook::FromContainer, "moat-a", tcp6(A6, 40000, GW1_6, 5000, kSyn), redirect,
         swap_macs(tcp6(GW1_6, 40000, A6, 5000, kSyn)), 2});
  const std::optional<moat_ct6_entry> e =
      ct6_get(dp_.ep, ct6_key(A6, 40000, GW1_6, 5000, IPPROTO_TCP));
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->flags & MOAT_CT_F_HAIRPIN, MOAT_CT_F_HAIRPIN);
  const std::vector<Case> table = {
      {"the redirected packet passes A's egress", Hook::ToContainer, "moat-a",
       swap_macs(tcp6(GW1_6, 40000, A6, 5000, kSyn)), pass},
      {"A's reply: back to the gateway:5000 it dialled, back out", Hook::FromContainer, "moat-a",
       tcp6(A6, 5000, GW1_6, 40000, kSyn | kAck), redirect,
       swap_macs(tcp6(GW1_6, 5000, A6, 40000, kSyn | kAck))},
      {"which passes A's egress too", Hook::ToContainer, "moat-a",
       swap_macs(tcp6(GW1_6, 5000, A6, 40000, kSyn | kAck)), pass},
      {"A's next packet", Hook::FromContainer, "moat-a", tcp6(A6, 40000, GW1_6, 5000), redirect,
       swap_macs(tcp6(GW1_6, 40000, A6, 5000))},
      {"at the uplink's address, UDP 8080 -> 80", Hook::FromContainer, "moat-a",
       udp6(A6, 40002, HOST6, 8080), redirect, swap_macs(udp6(HOST6, 40002, A6, 80)), 2},
      {"its reply", Hook::FromContainer, "moat-a", udp6(A6, 80, HOST6, 40002), redirect,
       swap_macs(udp6(HOST6, 8080, A6, 40002))},
  };
  for (const Case& c : table) check(c);
}

// ---- the extension headers the world may not use ----------------------------------------------

TEST_F(Nat6, RoutingHeadersFromTheWorldAreDropped) {
  // A type-4 (segment routing) header: the host would forward the packet to
  // the next segment, here a container's address, unjudged.
  const auto routed = [](uint8_t segments_left, uint16_t dport) {
    Bytes p = {IPPROTO_TCP, 2, 4, segments_left, 0, 0, 0, 0};  // 24 bytes, type 4
    const in6_addr seg = ip6(A6);
    p.insert(p.end(), reinterpret_cast<const uint8_t*>(&seg),
             reinterpret_cast<const uint8_t*>(&seg) + 16);
    const Bytes l4 = tcp(40000, dport, kSyn, kData);
    p.insert(p.end(), l4.begin(), l4.end());
    return eth(
        ETH_P_IPV6,
        ipv6({.src = ip6(CLIENT6), .dst = ip6(HOST6), .next = IPPROTO_ROUTING, .hop_limit = 64},
             p));
  };
  check({"to the host with a segment left", Hook::FromWorld, kUplink, routed(1, 5001),
         drop(MOAT_DROP_IPV6_EXT_HEADERS)});
  check({"even to a published port", Hook::FromWorld, kUplink, routed(1, 5000),
         drop(MOAT_DROP_IPV6_EXT_HEADERS)});
  check({"with none left the host is the destination: its business", Hook::FromWorld, kUplink,
         routed(0, 5001), pass});
}

TEST_F(Nat6, NeighbourDiscoveryAtTheUplinkIsTheHosts) {
  const Bytes ns = eth(ETH_P_IPV6, ipv6({.src = ip6("fe80::1"),
                                         .dst = ip6("ff02::1:ff00:1"),
                                         .next = IPPROTO_ICMPV6,
                                         .l4_checksum = true},
                                        icmp(135, 0, Bytes(20, 0))));
  check({"a neighbour solicitation for the uplink", Hook::FromWorld, kUplink, ns, pass});
  check({"and the host's own", Hook::ToWorld, kUplink, ns, pass});
}

// ---- what a flow becomes, in its events (issue 16) ---------------------------------------

// An IPv6 flow's event holds its addresses beside the tuples (src6, dst6)
// and, like IPv4's xlated tuple, those it becomes (xlated_src6,
// xlated_dst6): a masqueraded flow's source becomes the uplink's IPv6
// address, a published one's destination the backend. Before, the event
// had the original addresses only and did not say what the flow became.
class Nat6Events : public Nat6 {
 protected:
  struct Ends {
    const char* src;
    uint16_t sport;
    const char* dst;
    uint16_t dport;
  };
  // The one event the last run emitted.
  moat_event one_event() {
    std::vector<moat_event> got = events_.drain();
    EXPECT_EQ(got.size(), 1u) << "events of the run";
    return got.empty() ? moat_event{} : got[0];
  }
  static void expect_flow6(const moat_event& ev, moat_event_type type, uint8_t kind, moat_dir dir,
                           uint8_t proto, const Ends& orig, const Ends& xl) {
    SCOPED_TRACE(::testing::Message() << "event " << ev);
    EXPECT_EQ(ev.type, uint32_t(type));
    EXPECT_EQ(ev.ct_kind, kind);
    EXPECT_EQ(ev.ifindex, ifindex_of(kUplink));
    EXPECT_EQ(ev.dir, dir);
    EXPECT_EQ(ev.flags, uint32_t(MOAT_EV_F_IPV6));
    auto ip = [](const moat_ip& a) {
      char s[INET6_ADDRSTRLEN];
      return std::string(inet_ntop(AF_INET6, a.b, s, sizeof s));
    };
    EXPECT_EQ(ip(ev.src6), orig.src);
    EXPECT_EQ(ip(ev.dst6), orig.dst);
    EXPECT_EQ(ip(ev.xlated_src6), xl.src) << "the translated source";
    EXPECT_EQ(ip(ev.xlated_dst6), xl.dst) << "the translated destination";
    moat_ct_key t{}, x{};  // IPv6's tuples: protocol and ports, no addresses
    t.sport = htons(orig.sport);
    t.dport = htons(orig.dport);
    x.sport = htons(xl.sport);
    x.dport = htons(xl.dport);
    t.proto = x.proto = proto;
    EXPECT_EQ(ev.tuple, t);
    EXPECT_EQ(ev.xlated, x);
  }

  EventReader events_{dp_.ep->maps.events};
};

constexpr uint8_t kRst = 0x04;

TEST_F(Nat6Events, MasqueradedFlowBecomesTheUplinksAddress) {
  const RunResult r =
      run(dp_.prog(Hook::ToWorld), ifindex_of(kUplink), tcp6(A6, 33333, WORLD6, 443, kSyn));
  ASSERT_EQ(r.err, 0);
  ASSERT_EQ(r.retval, uint32_t(TC_ACT_OK));
  const uint16_t P = be16_at(r.out, kL4);
  expect_flow6(one_event(), MOAT_EV_FLOW_NEW, MOAT_CT_SNAT, MOAT_DIR_TO_WORLD, IPPROTO_TCP,
               {A6, 33333, WORLD6, 443}, {HOST6, P, WORLD6, 443});
  // Ended by the world's RST: told by the reply's entry, of the original.
  ASSERT_EQ(
      run(dp_.prog(Hook::FromWorld), ifindex_of(kUplink), tcp6(WORLD6, 443, HOST6, P, kRst | kAck))
          .retval,
      uint32_t(TC_ACT_OK));
  expect_flow6(one_event(), MOAT_EV_FLOW_END, MOAT_CT_SNAT, MOAT_DIR_TO_WORLD, IPPROTO_TCP,
               {A6, 33333, WORLD6, 443}, {HOST6, P, WORLD6, 443});
}

// IPv6 segments carry their sequence numbers to the same window (abi.h,
// MOAT_CT_TCP_AHEAD): a RST that does not acknowledge the SYN it would
// answer ends nothing and tells nothing.
TEST_F(Nat6Events, ForgedRstEndsNothing) {
  const RunResult r =
      run(dp_.prog(Hook::ToWorld), ifindex_of(kUplink), tcp6(A6, 33334, WORLD6, 443, kSyn));
  ASSERT_EQ(r.retval, uint32_t(TC_ACT_OK));
  const uint16_t P = be16_at(r.out, kL4);
  one_event();
  for (uint32_t ack : {0u, 7u, 100u, 0x80000001u}) {
    const Bytes forged = frame6(WORLD6, HOST6, IPPROTO_TCP, tcp_at(443, P, kRst | kAck, 0, ack));
    EXPECT_EQ(run(dp_.prog(Hook::FromWorld), ifindex_of(kUplink), forged).retval,
              uint32_t(TC_ACT_OK));
  }
  EXPECT_TRUE(events_.drain().empty()) << "no flow end";
  EXPECT_EQ(ct6_get(dp_.ep, ct6_key(A6, 33334, WORLD6, 443, IPPROTO_TCP))->tcp_state,
            MOAT_TCP_SYN_SENT);
  // The SYN took 0 and its 5 bytes: 1 acknowledges the SYN alone, 6 its data too.
  const Bytes real = frame6(WORLD6, HOST6, IPPROTO_TCP, tcp_at(443, P, kRst | kAck, 0, 1));
  EXPECT_EQ(run(dp_.prog(Hook::FromWorld), ifindex_of(kUplink), real).retval, uint32_t(TC_ACT_OK));
  expect_flow6(one_event(), MOAT_EV_FLOW_END, MOAT_CT_SNAT, MOAT_DIR_TO_WORLD, IPPROTO_TCP,
               {A6, 33334, WORLD6, 443}, {HOST6, P, WORLD6, 443});
}

TEST_F(Nat6Events, PublishedFlowBecomesTheBackend) {
  ASSERT_EQ(
      run(dp_.prog(Hook::FromWorld), ifindex_of(kUplink), tcp6(CLIENT6, 40000, HOST6, 5000, kSyn))
          .retval,
      uint32_t(TC_ACT_OK));
  expect_flow6(one_event(), MOAT_EV_FLOW_NEW, MOAT_CT_DNAT, MOAT_DIR_FROM_WORLD, IPPROTO_TCP,
               {CLIENT6, 40000, HOST6, 5000}, {CLIENT6, 40000, A6, 5000});
  ASSERT_EQ(
      run(dp_.prog(Hook::FromWorld), ifindex_of(kUplink), udp6(CLIENT6, 41000, HOST6, 8080)).retval,
      uint32_t(TC_ACT_OK));
  expect_flow6(one_event(), MOAT_EV_FLOW_NEW, MOAT_CT_DNAT, MOAT_DIR_FROM_WORLD, IPPROTO_UDP,
               {CLIENT6, 41000, HOST6, 8080}, {CLIENT6, 41000, A6, 80});
  // A routed network's flow is tracked as it is: it becomes itself.
  ASSERT_EQ(
      run(dp_.prog(Hook::ToWorld), ifindex_of(kUplink), tcp6(D6, 40000, WORLD6, 443, kSyn)).retval,
      uint32_t(TC_ACT_OK));
  expect_flow6(one_event(), MOAT_EV_FLOW_NEW, MOAT_CT_SNAT, MOAT_DIR_TO_WORLD, IPPROTO_TCP,
               {D6, 40000, WORLD6, 443}, {D6, 40000, WORLD6, 443});
}

// ---- the conntrack quota of IPv6 owners (issue 16) ---------------------------------------

// A container on net 1 whose address xors, word by word, to A6's: the
// 32-bit fold that once keyed IPv6's quota counts.
constexpr const char* A6_TWIN = "fd00:20::1:0:3";

uint32_t fold(const char* a) {
  const in6_addr x = ip6(a);
  uint32_t w[4];
  std::memcpy(w, &x, sizeof w);
  return w[0] ^ w[1] ^ w[2] ^ w[3];
}

// A masqueraded UDP packet from `src`:`sport` to WORLD6:`dport` at to_world.
RunResult masquerade6_from(Dataplane& dp, const char* src, uint16_t sport, uint16_t dport) {
  return run(dp.prog(Hook::ToWorld), ifindex_of(kUplink), udp6(src, sport, WORLD6, dport));
}

// Each IPv6 address has its own quota (`ct6_owned`, keyed by the whole
// address). Before, IPv6 flows counted per 32-bit fold of the address, so
// a container could pick an address folding to another's and use up that
// one's quota: A6 at its quota refused its twin's first flow as
// conntrack-quota. The ring's sweeper gives expired flows back to their
// own owner's count.
TEST_F(Nat6, EachIpv6AddressHasItsOwnQuota) {
  ASSERT_EQ(fold(A6), fold(A6_TWIN)) << "the test's addresses must collide";
  const int held = MOAT_CT_FLOW_QUOTA + MOAT_CT_QUOTA_FROM;
  for (int i = 0; i < held; i++)
    ASSERT_EQ(masquerade6_from(dp_, A6, uint16_t(1024 + i % 1000), uint16_t(1 + i / 1000)).retval,
              uint32_t(TC_ACT_OK))
        << "flow " << i;
  check({"A at its quota", Hook::ToWorld, kUplink, udp6(A6, 60000, WORLD6, 7),
         drop(MOAT_DROP_CT_QUOTA)});
  const RunResult twin = masquerade6_from(dp_, A6_TWIN, 60000, 7);
  EXPECT_EQ(twin.retval, uint32_t(TC_ACT_OK)) << "the twin's first flow is its own";
  EXPECT_EQ(masquerade6_from(dp_, A6_TWIN, 60001, 7).retval, uint32_t(TC_ACT_OK))
      << "and its second";
  EXPECT_EQ(ct6_owned(dp_.ep, A6), uint32_t(MOAT_CT_FLOW_QUOTA));
  EXPECT_EQ(ct6_owned(dp_.ep, A6_TWIN), 2u);
  EXPECT_EQ(ct6_owners(dp_.ep).size(), 2u) << "one count per address";
  EXPECT_EQ(ct_owners(dp_.ep).size(), 0u) << "nothing in IPv4's counts";

  // 100 of A's counted flows (i = 10000..10099) expire, both entries.
  const size_t before = ct6_entries(dp_.ep).size();
  const in6_addr a6 = ip6(A6);
  for (auto [key, e] : ct6_entries(dp_.ep)) {
    const bool orig = e.kind == MOAT_CT_SNAT;
    const moat_ct6_key& o = orig ? key : e.xlated;  // the reply's xlated: the original reversed
    const uint16_t dport = ntohs(orig ? o.dport : o.sport), sport = ntohs(orig ? o.sport : o.dport);
    if (std::memcmp(&(orig ? o.saddr : o.daddr), &a6, 16) == 0 && dport == 11 &&
        sport < 1024 + 100) {
      e.expires_ns = 1;
      ct6_put(dp_.ep, key, e);
    }
  }
  const auto turn = std::chrono::milliseconds(MOAT_CT_SWEEP_TICK_MS * MOAT_CT_SWEEP_TURN);
  const auto deadline = std::chrono::steady_clock::now() + 4 * turn;
  while (ct6_owned(dp_.ep, A6) > uint32_t(MOAT_CT_FLOW_QUOTA - 100) &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(ct6_owned(dp_.ep, A6), uint32_t(MOAT_CT_FLOW_QUOTA - 100)) << "the sweeper gave back";
  EXPECT_EQ(ct6_owned(dp_.ep, A6_TWIN), 2u) << "and took nothing from the twin";
  EXPECT_EQ(ct6_entries(dp_.ep).size(), before - 200) << "100 expired pairs ended";
  EXPECT_EQ(masquerade6_from(dp_, A6, 60002, 7).retval, uint32_t(TC_ACT_OK)) << "A has room again";
}

}  // namespace
