// fast_route_test.cpp - the routed fast path (bpf/lib/fast_route.h): a
// judged frame the bridge hands to the host goes straight to an uplink
// (TC_ACT_REDIRECT, TTL decremented, header checksum kept right) only when
// the kernel's own route would forward it there, and everything the stack
// must see takes the plain path unchanged (TC_ACT_OK, not a byte touched).
// The routes are real: a bridge stand-in, an uplink and another way out
// with their addresses, neighbours and routes in the tests' private network
// namespace, which bpf_fib_lookup() consults during the test run.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bridge.skel.h"
#include "endpoint.skel.h"
#include "harness.h"
#include "packet.h"
#include "uplink.skel.h"

using namespace pkt;
using namespace moat_test;

namespace {

constexpr const char* kBridge = "moat-rbr";  // stands for a network's bridge
constexpr const char* kUplink = "moat-rup";  // one of moat's uplinks
constexpr const char* kOther = "moat-roth";  // a way out that is no uplink
constexpr const char* kCtr = "moat-rct";     // the host side of the container's veth
constexpr Mac kBridgeMac = {0x02, 0x42, 0x0a, 0x1e, 0x00, 0x01};
constexpr const char* C = "172.30.0.2";          // a container behind the bridge
constexpr const char* WORLD = "198.19.0.1";      // via the uplink's default route
constexpr const char* OTHER = "203.0.113.5";     // via kOther
constexpr const char* UNRESOLVED = "192.0.2.5";  // via a gateway with no neighbour entry
constexpr const char* UNREACHABLE = "100.64.0.5";
// A priority rt_tos2priority() never gives (0, 2, 4, 6): where a refused
// packet starts, so that a fast path that set it anyway shows.
constexpr uint32_t kUntouchedPriority = 7;

void sysctl(const std::string& key, const char* value) {
  std::string path = "/proc/sys/" + key;
  for (char& ch : path)
    if (ch == '.') ch = '/';
  std::ofstream f(path);
  f << value;
  f.close();
  if (!f) throw std::runtime_error("cannot write " + path);
}

std::string read_sysctl(const std::string& key) {
  std::string path = "/proc/sys/" + key, v;
  for (char& ch : path)
    if (ch == '.') ch = '/';
  std::ifstream f(path);
  f >> v;
  return v;
}

// Puts a setting back however the test leaves.
struct Restore {
  std::function<void()> undo;
  ~Restore() { undo(); }
};

// `f` (an IPv4 frame) with TOS `tos`, its header checksum made again.
Bytes with_tos(Bytes f, uint8_t tos) {
  f[14 + 1] = tos;
  f[14 + 10] = f[14 + 11] = 0;
  const uint16_t s = inet_checksum(std::span(f).subspan(14, 20));
  f[14 + 10] = uint8_t(s >> 8);
  f[14 + 11] = uint8_t(s);
  return f;
}

Bytes tcp4(const char* s, const char* d, Ip4 h = {}, const Mac& dst = kBridgeMac) {
  h.src = ip4(s);
  h.dst = ip4(d);
  h.proto = IPPROTO_TCP;
  return eth(ETH_P_IP, ipv4(h, tcp(40000, 443)), dst, kContainerMac);
}

// `f` with its IP id chosen so that its header checksum is `sum` (the id
// enters the ones'-complement sum linearly: every value but 0xffff is made).
Bytes with_header_checksum(Bytes f, uint16_t sum) {
  for (uint32_t id = 0; id <= 0xffff; id++) {
    f[14 + 4] = uint8_t(id >> 8);
    f[14 + 5] = uint8_t(id);
    f[14 + 10] = f[14 + 11] = 0;
    const uint16_t s = inet_checksum(std::span(f).subspan(14, 20));
    if (s == sum) {
      f[14 + 10] = uint8_t(s >> 8);
      f[14 + 11] = uint8_t(s);
      return f;
    }
  }
  throw std::runtime_error("no IP id gives header checksum " + std::to_string(sum));
}

// Four bytes of IP options (end of list: zero, so the checksum of the first
// 20 bytes still holds), the header checksum recomputed over all 24.
Bytes with_empty_options(const Bytes& plain) {
  Bytes f(plain.begin(), plain.begin() + 14 + 20);
  f.insert(f.end(), {0, 0, 0, 0});
  f.insert(f.end(), plain.begin() + 14 + 20, plain.end());
  f[14] = 0x46;
  const uint16_t len = uint16_t(f.size() - 14);
  f[14 + 2] = uint8_t(len >> 8);
  f[14 + 3] = uint8_t(len);
  f[14 + 10] = f[14 + 11] = 0;
  const uint16_t s = inet_checksum(std::span(f).subspan(14, 24));
  f[14 + 10] = uint8_t(s >> 8);
  f[14 + 11] = uint8_t(s);
  return f;
}

class FastRoute : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    forwarding_was_ = read_sysctl("net.ipv4.ip_forward");
    for (const char* dev : {kBridge, kUplink, kOther, kCtr}) {
      ip({"link", "add", dev, "type", "veth", "peer", "name", std::string(dev) + "-c"});
      ip({"link", "set", std::string(dev) + "-c", "up"});
    }
    ip({"link", "set", kBridge, "address", "02:42:0a:1e:00:01", "up"});
    ip({"link", "set", kUplink, "address", "02:42:c6:12:00:02", "up"});
    ip({"link", "set", kCtr, "up"});
    ip({"link", "set", kOther, "up"});
    ip({"addr", "add", "172.30.0.1/16", "dev", kBridge});
    ip({"addr", "add", "198.18.0.2/24", "dev", kUplink});
    ip({"addr", "add", "198.51.100.2/24", "dev", kOther});
    ip({"neigh", "add", "198.18.0.1", "lladdr", "02:00:00:00:00:01", "nud", "permanent", "dev",
        kUplink});
    ip({"neigh", "add", "198.51.100.1", "lladdr", "02:00:00:00:00:02", "nud", "permanent", "dev",
        kOther});
    ip({"route", "add", "default", "via", "198.18.0.1", "dev", kUplink});
    ip({"route", "add", "203.0.113.0/24", "via", "198.51.100.1", "dev", kOther});
    ip({"route", "add", "192.0.2.0/24", "via", "198.18.0.99", "dev", kUplink});
    ip({"route", "add", "unreachable", "100.64.0.0/10"});
    // The container behind the bridge, as the host's neighbour table has it.
    ip({"neigh", "add", C, "lladdr", "02:42:ac:14:00:02", "nud", "permanent", "dev", kBridge});
    // RFC 5549: an IPv4 route whose gateway is an IPv6 neighbour.
    ip({"-6", "neigh", "add", "fe80::1", "lladdr", "02:00:00:00:00:03", "nud", "permanent", "dev",
        kUplink});
    ip({"route", "add", "10.9.0.0/16", "via", "inet6", "fe80::1", "dev", kUplink});
    sysctl("net.ipv4.ip_forward", "1");
  }

  static void TearDownTestSuite() {
    sysctl("net.ipv4.ip_forward", forwarding_was_.c_str());
    ip({"route", "del", "unreachable", "100.64.0.0/10"});
    for (const char* dev : {kBridge, kUplink, kOther, kCtr}) ip({"link", "del", dev});
  }

  void SetUp() override {
    add_uplink(ep_, ifindex_of(kUplink), ip4("198.18.0.2"));
    set_flags(MOAT_FAST_F_ROUTED_ON);
  }

  void set_flags(uint32_t flags) {
    const uint32_t zero = 0;
    ASSERT_EQ(bpf_map__update_elem(ep_->maps.fast_cfg, &zero, 4, &flags, 4, BPF_ANY), 0);
  }

  uint64_t routed_packets() { return percpu_u64(ep_->maps.fast_stats, MOAT_FAST_ROUTED_PACKETS); }

  RunResult from_bridge(const Bytes& frame, uint32_t mark = MOAT_MARK_JUDGED) {
    RunResult r = run(br_->progs.from_bridge, ifindex_of(kBridge), frame, 1, mark);
    EXPECT_EQ(r.err, 0) << std::strerror(r.err);
    return r;
  }

  // The plain path: passed as it came, the judged bit cleared, not counted.
  // Its priority too: it starts at one no TOS maps to (kUntouchedPriority).
  void expect_plain(const Bytes& frame, uint32_t mark = MOAT_MARK_JUDGED) {
    const uint64_t before = routed_packets();
    RunResult r =
        run_prio(br_->progs.from_bridge, ifindex_of(kBridge), frame, mark, kUntouchedPriority);
    EXPECT_EQ(r.err, 0) << std::strerror(r.err);
    EXPECT_EQ(r.retval, uint32_t(TC_ACT_OK));
    EXPECT_EQ(r.out, frame) << "a refused frame must not be touched";
    EXPECT_EQ(r.priority, kUntouchedPriority)
        << "ip_forward() sets the priority, not the plain path";
    EXPECT_EQ(r.mark, mark & ~MOAT_MARK_JUDGED);
    EXPECT_EQ(routed_packets(), before);
  }

  RunResult from_bridge_gso(const Bytes& frame, uint32_t gso_size, uint32_t gso_segs) {
    RunResult r = run_gso(br_->progs.from_bridge, ifindex_of(kBridge), frame, MOAT_MARK_JUDGED,
                          gso_size, gso_segs);
    EXPECT_EQ(r.err, 0) << std::strerror(r.err);
    return r;
  }

  // The uplink's MTU, put back to 1500 however the test leaves.
  Restore uplink_mtu(const char* mtu) {
    ip({"link", "set", kUplink, "mtu", mtu});
    return Restore{[] { ip({"link", "set", kUplink, "mtu", "1500"}); }};
  }

  static inline std::string forwarding_was_;
  Skeleton<endpoint_bpf> ep_ = load_skeleton();
  Skeleton<bridge_bpf> br_ = load_bridge_skeleton(ep_);
  Skeleton<uplink_bpf> up_ = load_uplink_skeleton(ep_);
};

TEST_F(FastRoute, AFrameRoutedToAnUplinkGoesStraightThereOneHopOlder) {
  const Bytes frame = tcp4(C, WORLD, {.ttl = 64});
  const uint64_t before = routed_packets();
  RunResult r = from_bridge(frame);
  ASSERT_EQ(r.retval, uint32_t(TC_ACT_REDIRECT));
  EXPECT_EQ(r.mark, 0u);
  EXPECT_EQ(routed_packets(), before + 1);
  ASSERT_EQ(r.out.size(), frame.size());
  Bytes want = frame;
  want[14 + 8] = 63;  // the TTL; the neighbour layer writes the MACs
  EXPECT_EQ(std::vector<uint8_t>(r.out.begin() + 14 + 8, r.out.begin() + 14 + 9),
            std::vector<uint8_t>(want.begin() + 14 + 8, want.begin() + 14 + 9));
  EXPECT_EQ(inet_checksum(std::span(r.out).subspan(14, 20)), 0)
      << "the header checksum must follow the TTL";
  // Everything but the TTL and the checksum as it came.
  for (size_t i = 0; i < frame.size(); i++)
    if (i != 14 + 8 && i != 14 + 10 && i != 14 + 11) EXPECT_EQ(r.out[i], frame[i]) << "byte " << i;
}

TEST_F(FastRoute, TheChecksumCarriesAroundWhereTheTtlsByteOverflows) {
  // The decrement adds 0x0100 to the header checksum (RFC 1624): from
  // 0xfeXX and 0xffXX on it wraps, and the end-around carry must follow.
  for (uint16_t sum : {0x0000, 0x00ff, 0x7f80, 0xfe00, 0xfeff, 0xff00, 0xff01, 0xfffe}) {
    for (int ttl : {2, 64, 255}) {
      const Bytes frame = with_header_checksum(tcp4(C, WORLD, {.ttl = uint8_t(ttl)}), sum);
      RunResult r = from_bridge(frame);
      ASSERT_EQ(r.retval, uint32_t(TC_ACT_REDIRECT)) << "checksum " << sum << ", ttl " << ttl;
      EXPECT_EQ(r.out[14 + 8], ttl - 1);
      // As a fresh computation writes it (ip_decrease_ttl() too): zero as
      // 0x0000, never 0xffff, which a sum that ignores the carry leaves.
      Bytes fresh(r.out.begin() + 14, r.out.begin() + 14 + 20);
      fresh[10] = fresh[11] = 0;
      const uint16_t want = inet_checksum(fresh);
      EXPECT_EQ(uint16_t(r.out[14 + 10] << 8 | r.out[14 + 11]), want)
          << "checksum " << sum << ", ttl " << ttl;
    }
  }
}

TEST_F(FastRoute, OffByDefaultAndWithThePeerSwitchAlone) {
  set_flags(0);
  expect_plain(tcp4(C, WORLD));
  set_flags(MOAT_FAST_F_PEER_OFF);
  expect_plain(tcp4(C, WORLD));
}

TEST_F(FastRoute, WhatTheStackMustSeeTakesThePlainPath) {
  struct Case {
    const char* what;
    Bytes frame;
  };
  Bytes bad_sum = tcp4(C, WORLD);
  bad_sum[14 + 11] ^= 0x5a;
  Bytes trailing = tcp4(C, WORLD);
  trailing.insert(trailing.end(), {0, 0, 0, 0});
  const Case cases[] = {
      {"TTL 1: the host answers time exceeded", tcp4(C, WORLD, {.ttl = 1})},
      {"TTL 0", tcp4(C, WORLD, {.ttl = 0})},
      {"IP options (NOP)", tcp4(C, WORLD, {.option_words = 1})},
      {"IP options (end of list, a checksum that holds over 20 bytes too)",
       with_empty_options(tcp4(C, WORLD))},
      {"a bad header checksum, which ip_rcv() drops", bad_sum},
      {"bytes beyond the IP length, which ip_rcv() trims", trailing},
      {"not addressed to the bridge (PACKET_OTHERHOST)", tcp4(C, WORLD, {}, kPeerMac)},
      {"broadcast", tcp4(C, WORLD, {}, kBroadcast)},
      {"routed to a way out that is no uplink", tcp4(C, OTHER)},
      {"a gateway whose neighbour is not resolved yet", tcp4(C, UNRESOLVED)},
      {"an unreachable destination: the host answers", tcp4(C, UNREACHABLE)},
      {"the host itself (its bridge address)", tcp4(C, "172.30.0.1")},
      {"another container of the network", tcp4(C, "172.30.0.3")},
      {"not IPv4", eth(ETH_P_ARP, arp({.spa = ip4(C), .tpa = ip4("172.30.0.1")}), kBridgeMac)},
      // Never forwarded (ip_route_input()), though the default route would
      // take them: the bridge's MAC is the container's to choose.
      {"the limited broadcast", tcp4(C, "255.255.255.255")},
      {"multicast (mDNS)", tcp4(C, "224.0.0.251")},
      {"multicast (SSDP)", tcp4(C, "239.255.255.250")},
      {"0.0.0.0/8", tcp4(C, "0.1.2.3")},
      {"loopback", tcp4(C, "127.0.0.1")},
      {"a multicast source", tcp4("224.0.0.9", WORLD)},
      {"an IPv4 route whose gateway is IPv6", tcp4(C, "10.9.0.1")},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    expect_plain(c.frame);
  }
}

TEST_F(FastRoute, AnotherMarkKeepsThePlainPath) {
  // Policy routing may route by the mark; the lookup here does not know it.
  expect_plain(tcp4(C, WORLD), MOAT_MARK_JUDGED | 0x1);
}

TEST_F(FastRoute, NotWhereTheBridgeDoesNotForward) {
  const std::string key = "net.ipv4.conf." + std::string(kBridge) + ".forwarding";
  sysctl(key, "0");
  {
    Restore back{[&] { sysctl(key, "1"); }};
    expect_plain(tcp4(C, WORLD));
  }
  EXPECT_EQ(from_bridge(tcp4(C, WORLD)).retval, uint32_t(TC_ACT_REDIRECT));
}

// UDP of IP length `ip_len` to the world.
Bytes udp_of_length(size_t ip_len) {
  return eth(ETH_P_IP,
             ipv4({.src = ip4(C), .dst = ip4(WORLD), .proto = IPPROTO_UDP},
                  udp(40000, 53, Bytes(ip_len - 28, 0))),
             kBridgeMac, kContainerMac);
}

TEST_F(FastRoute, NotOverTheUplinksMtuByAByte) {
  Restore mtu = uplink_mtu("1280");
  EXPECT_EQ(from_bridge(udp_of_length(1280)).retval, uint32_t(TC_ACT_REDIRECT))
      << "a packet of the MTU goes";
  for (size_t len : {1281, 1284, 1400}) {
    SCOPED_TRACE(len);
    expect_plain(udp_of_length(len));
  }
}

TEST_F(FastRoute, AGsoPacketGoesWhenEachSegmentFits) {
  // 3,000 bytes of TCP in segments of 1,448: IP length 1,488 each.
  const Bytes frame = eth(ETH_P_IP,
                          ipv4({.src = ip4(C), .dst = ip4(WORLD), .proto = IPPROTO_TCP},
                               tcp(40000, 443, kAck, Bytes(3000, 0))),
                          kBridgeMac, kContainerMac);
  EXPECT_EQ(from_bridge_gso(frame, 1448, 3).retval, uint32_t(TC_ACT_REDIRECT));
  {
    Restore mtu = uplink_mtu("1487");
    RunResult r = from_bridge_gso(frame, 1448, 3);
    EXPECT_EQ(r.retval, uint32_t(TC_ACT_OK)) << "segments a byte over the MTU";
    EXPECT_EQ(r.out, frame);
  }
  {
    Restore mtu = uplink_mtu("1488");
    EXPECT_EQ(from_bridge_gso(frame, 1448, 3).retval, uint32_t(TC_ACT_REDIRECT));
  }
  // UDP segments of 1,200: IP length 1,228.
  const Bytes dgram = udp_of_length(3628);
  {
    Restore mtu = uplink_mtu("1227");
    EXPECT_EQ(from_bridge_gso(dgram, 1200, 3).retval, uint32_t(TC_ACT_OK));
  }
  EXPECT_EQ(from_bridge_gso(dgram, 1200, 3).retval, uint32_t(TC_ACT_REDIRECT));
  // GSO of another protocol: nothing to tell its segments by.
  const Bytes icmp =
      eth(ETH_P_IP, ipv4({.src = ip4(C), .dst = ip4(WORLD), .proto = IPPROTO_ICMP}, Bytes(3000, 0)),
          kBridgeMac, kContainerMac);
  EXPECT_EQ(from_bridge_gso(icmp, 1400, 3).retval, uint32_t(TC_ACT_OK));
}

TEST_F(FastRoute, ThePriorityFollowsTheTosAsIpForwardSetsIt) {
  // rt_tos2priority(): TOS 0x00 best effort (0), 0x08 bulk (2), 0x10
  // interactive (6), 0x18 interactive bulk (4).
  for (auto [tos, prio] : {std::pair{0x00, 0}, {0x08, 2}, {0x10, 6}, {0x18, 4}, {0x1c, 4}}) {
    RunResult r = from_bridge(with_tos(tcp4(C, WORLD), uint8_t(tos)));
    ASSERT_EQ(r.retval, uint32_t(TC_ACT_REDIRECT));
    EXPECT_EQ(r.priority, uint32_t(prio)) << "tos " << tos;
  }
}

TEST_F(FastRoute, UnjudgedFramesAreStillDropped) {
  RunResult r = from_bridge(tcp4(C, WORLD), 0);
  EXPECT_EQ(r.retval, uint32_t(TC_ACT_SHOT));
}

// ---- the way back (bpf/lib/fast_reply.h) ----------------------------------------------
//
// A reply from the world to the container's masqueraded flow, translated by
// from_world, goes straight into the container's namespace
// (TC_ACT_REDIRECT: bpf_redirect_peer() to its veth) one hop older, with
// the MACs the host's neighbour table gives and the container's counters
// moved as its to_container would; whatever the host or to_container must
// see takes the plain path: translated, but left as the host receives it.

constexpr Mac kUplinkMac = {0x02, 0x42, 0xc6, 0x12, 0x00, 0x02};
constexpr Mac kRouterMac = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};  // 198.18.0.1's
constexpr const char* UPLINK_IP = "198.18.0.2";
constexpr uint16_t kCport = 40000, kWport = 443;
// The masquerade keeps the container's port's image (nat_port_offset()).
constexpr uint16_t kNatPort = kCport - 32768 + MOAT_NAT_PORT_MIN;
const Network kNet = {.id = 7,
                      .subnet = ip4("172.30.0.0"),
                      .prefixlen = 16,
                      .gateway = ip4("172.30.0.1"),
                      .flags = MOAT_NET_F_MASQUERADE};

// One packet of the flow from the world: to the uplink's address and the
// masquerade's port, or (`translated`) to the container, as from_world
// leaves it.
struct Reply {
  uint8_t proto = IPPROTO_TCP;
  uint8_t flags = kSyn | kAck;
  Ip4 ip{};
  Mac dst = kUplinkMac;
  size_t payload = 0;
  size_t trailing = 0;      // bytes after the IP packet, which ip_rcv() trims
  bool bad_ip_sum = false;  // which ip_rcv() drops
  bool empty_options = false;  // 4 bytes of options whose first 20 bytes' checksum holds too
  bool routed = false;         // a routed flow's: to the container's own address and port
  const char* world = WORLD;   // where the flow went, and the reply comes from
};
Bytes reply_frame(const Reply& r, bool translated) {
  Ip4 h = r.ip;
  h.src = ip4(r.world);
  const bool to_container = translated || r.routed;
  h.dst = ip4(to_container ? C : UPLINK_IP);
  h.proto = r.proto;
  h.l4_checksum = true;
  const uint16_t port = to_container ? kCport : kNatPort;
  const Bytes data(r.payload, 0x5a);
  Bytes l4 = r.proto == IPPROTO_TCP   ? tcp(kWport, port, r.flags, data)
             : r.proto == IPPROTO_UDP ? udp(kWport, port, data)
                                      : icmp_echo(kEchoReply, port, 1, data);
  Bytes f = eth(ETH_P_IP, ipv4(h, l4), r.dst, kRouterMac);
  f.insert(f.end(), r.trailing, 0);
  if (r.bad_ip_sum) f[14 + 11] ^= 0x5a;
  if (r.empty_options) f = with_empty_options(f);
  return f;
}

class FastReply : public FastRoute {
 protected:
  void SetUp() override {
    FastRoute::SetUp();
    add_network(ep_, kNet);
    add_endpoint(ep_, ifindex_of(kCtr), kNet, ip4(C));
    set_peer(true);
  }

  void set_peer(bool on) {
    const moat_peer_key k{kNet.id, ip4(C)};
    const uint32_t ifindex = ifindex_of(kCtr);
    if (on)
      ASSERT_EQ(bpf_map__update_elem(ep_->maps.local_peers, &k, sizeof k, &ifindex, 4, BPF_ANY), 0);
    else
      ASSERT_EQ(bpf_map__delete_elem(ep_->maps.local_peers, &k, sizeof k, 0), 0);
  }

  // The container's flow of `proto` out through the uplink, masqueraded
  // behind kNatPort (`routed`: from a network that does not masquerade,
  // routed as it is), its entries the only ones.
  void open_flow(uint8_t proto = IPPROTO_TCP, bool routed = false, const char* world = WORLD) {
    ct_clear(ep_);
    Network net = kNet;
    net.flags = routed ? 0 : MOAT_NET_F_MASQUERADE;
    add_network(ep_, net);
    add_endpoint(ep_, ifindex_of(kCtr), net, ip4(C));
    Ip4 h{.src = ip4(C), .dst = ip4(world), .proto = proto, .l4_checksum = true};
    Bytes l4 = proto == IPPROTO_TCP   ? tcp(kCport, kWport, kSyn)
               : proto == IPPROTO_UDP ? udp(kCport, kWport)
                                      : icmp_echo(kEchoRequest, kCport, 1, {});
    RunResult r = run(up_->progs.to_world, ifindex_of(kUplink),
                      eth(ETH_P_IP, ipv4(h, l4), kRouterMac, kUplinkMac));
    ASSERT_EQ(r.err, 0);
    ASSERT_EQ(r.retval, uint32_t(TC_ACT_OK));
    ASSERT_EQ(ct_entries(ep_).size(), 2u);
    // The reply's entry: the masquerade kept the container's port's image.
    const uint16_t dport = proto == IPPROTO_ICMP ? 0 : kWport;
    ASSERT_TRUE(ct_get(ep_, reversed(routed ? ct_key(C, kCport, world, dport, proto)
                                            : ct_key(UPLINK_IP, kNatPort, world, dport, proto))))
        << "masqueraded behind another port";
  }

  uint64_t routed_in() { return percpu_u64(ep_->maps.fast_stats, MOAT_FAST_ROUTED_IN_PACKETS); }

  CountedRun from_world(const Bytes& frame, uint32_t mark = 0, uint32_t priority = 0) {
    const StatsSnapshot before = read_stats(ep_->maps.stats);
    RunResult r = run_prio(up_->progs.from_world, ifindex_of(kUplink), frame, mark, priority);
    EXPECT_EQ(r.err, 0) << std::strerror(r.err);
    return {r, stats_delta(before, read_stats(ep_->maps.stats))};
  }

  // The plain path: translated, the MACs and the TTL as they came, counted
  // at the uplink only.
  void expect_plain(const Reply& rp, uint32_t mark = 0) {
    const uint64_t before = routed_in();
    const Bytes in = reply_frame(rp, false);
    CountedRun c = from_world(in, mark, kUntouchedPriority);
    EXPECT_EQ(c.run.retval, uint32_t(TC_ACT_OK));
    EXPECT_EQ(c.run.priority, kUntouchedPriority)
        << "the plain path leaves the priority to the host";
    ASSERT_EQ(c.run.out.size(), in.size());
    EXPECT_EQ(Bytes(c.run.out.begin(), c.run.out.begin() + 12), Bytes(in.begin(), in.begin() + 12))
        << "the MACs must be left to the host";
    EXPECT_EQ(c.run.out[14 + 8], in[14 + 8]) << "the TTL must be left to the host";
    EXPECT_EQ(ip4_at(c.run.out, 14 + 16), ip4(C)) << "translated all the same";
    EXPECT_EQ(routed_in(), before);
    EXPECT_EQ(c.moved, counted(pass, ifindex_of(kUplink), MOAT_DIR_FROM_WORLD, in.size()));
  }

  // Reply `rp` (TTL 60) goes: one hop older, to the host's neighbour entry
  // for the container from the bridge's MAC, counted at the uplink and at
  // the container as its to_container would count it.
  void expect_redirected(const Reply& rp) {
    const uint64_t before = routed_in();
    CountedRun c = from_world(reply_frame(rp, false));
    ASSERT_EQ(c.run.retval, uint32_t(TC_ACT_REDIRECT));
    Reply want = rp;
    want.ip.ttl = 59;
    Bytes expect = reply_frame(want, true);
    std::copy(kContainerMac.begin(), kContainerMac.end(), expect.begin());
    std::copy(kBridgeMac.begin(), kBridgeMac.end(), expect.begin() + 6);
    EXPECT_EQ(c.run.out, expect);
    EXPECT_EQ(checksum_errors(c.run.out), "");
    EXPECT_EQ(routed_in(), before + 1);
    StatsSnapshot moved = counted(pass, ifindex_of(kUplink), MOAT_DIR_FROM_WORLD, expect.size());
    for (const auto& [k, v] : counted(pass, ifindex_of(kCtr), MOAT_DIR_TO_CONTAINER, expect.size()))
      moved[k] = v;
    EXPECT_EQ(c.moved, moved);
  }

  static in_addr_t ip4_at(const Bytes& b, size_t off) {
    in_addr_t a;
    std::memcpy(&a, &b[off], 4);
    return a;
  }
};

TEST_F(FastReply, AReplyGoesStraightToTheContainerOneHopOlder) {
  for (uint8_t proto : {IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP}) {
    SCOPED_TRACE(int(proto));
    open_flow(proto);
    expect_redirected({.proto = proto, .ip = {.ttl = 60}, .payload = 100});
  }
}

// A network that does not masquerade: its replies come to the container's
// own address, and to_container would pass them on their own entry.
TEST_F(FastReply, ARoutedReplyGoesStraightToTheContainerToo) {
  for (uint8_t proto : {IPPROTO_TCP, IPPROTO_UDP}) {
    SCOPED_TRACE(int(proto));
    open_flow(proto, true);
    expect_redirected({.proto = proto, .ip = {.ttl = 60}, .payload = 100, .routed = true});
  }
}

TEST_F(FastReply, ThePriorityFollowsTheTos) {
  open_flow();
  RunResult r = from_world(reply_frame({.flags = kAck, .ip = {}}, false)).run;
  ASSERT_EQ(r.retval, uint32_t(TC_ACT_REDIRECT));
  EXPECT_EQ(r.priority, 0u);
  Bytes bulk = with_tos(reply_frame({.flags = kAck}, false), 0x08);
  r = from_world(bulk).run;
  ASSERT_EQ(r.retval, uint32_t(TC_ACT_REDIRECT));
  EXPECT_EQ(r.priority, 2u);
}

TEST_F(FastReply, WhatTheHostOrTheContainersHookMustSeeTakesThePlainPath) {
  struct Case {
    const char* what;
    Reply reply;
    std::function<void()> before;  // undone by `after`
    std::function<void()> after;
    uint32_t mark = 0;
  };
  const auto none = [] {};
  static const moat_ct_key kOrig = ct_key(C, kCport, WORLD, kWport, IPPROTO_TCP);
  const auto entry_rev = [this](uint32_t rev) {
    const moat_ct_key k = ct_key(C, kCport, WORLD, kWport, IPPROTO_TCP);
    auto e = ct_get(ep_, k);
    ASSERT_TRUE(e);
    e->policy_rev = rev;
    ct_put(ep_, k, *e);
  };
  const Case cases[] = {
      {"the routed fast path off",
       {},
       [this] { set_flags(0); },
       [this] { set_flags(MOAT_FAST_F_ROUTED_ON); }},
      {"TTL 1: the host answers time exceeded", {.ip = {.ttl = 1}}, none, none},
      {"a mark (policy routing may route by it)", {}, none, none, 0x1},
      {"not addressed to the uplink (PACKET_OTHERHOST)", {.dst = kPeerMac}, none, none},
      {"IP options (NOP)", {.ip = {.option_words = 1}}, none, none},
      {"IP options (end of list: the first 20 bytes' checksum holds)",
       {.empty_options = true},
       none,
       none},
      {"a first fragment (its ports serve the later ones)",
       {.ip = {.frag = kMoreFragments}},
       none,
       none},
      {"bytes beyond the IP length", {.trailing = 4}, none, none},
      // ip_route_input() drops a martian source before any route: a reply
      // of a flow the container opened to 0.0.0.0/8 or loopback never
      // reaches it by the plain path either.
      {"a martian source (0.0.0.0/8)", {.world = "0.1.2.3"}, none, none},
      {"a martian source (loopback)", {.world = "127.0.0.1"}, none, none},
      {"a martian source (multicast)", {.world = "224.0.0.9"}, none, none},
      {"a bad header checksum", {.bad_ip_sum = true}, none, none},
      {"a later fragment, its ports from the first",
       {.proto = IPPROTO_UDP, .ip = {.frag = 8}},
       [this] {
         ASSERT_EQ(
             from_world(reply_frame({.proto = IPPROTO_UDP, .ip = {.frag = kMoreFragments}}, false))
                 .run.retval,
             uint32_t(TC_ACT_OK));
       },
       none},
      {"the flow's original entry gone",
       {},
       [this] { ASSERT_EQ(bpf_map__delete_elem(ep_->maps.ct, &kOrig, sizeof kOrig, 0), 0); },
       none},
      {"the flow's original entry of another kind",
       {},
       [this] {
         auto e = ct_get(ep_, kOrig);
         ASSERT_TRUE(e);
         e->kind = MOAT_CT_TRACK;
         ct_put(ep_, kOrig, *e);
       },
       none},
      {"the endpoint at that address says another network",
       {},
       [this] {
         Network other = kNet;
         other.id = kNet.id + 1;
         add_endpoint(ep_, ifindex_of(kCtr), other, ip4(C));
       },
       none},
      {"the route back out of the uplink itself",
       {},
       [] {
         ip({"route", "add", std::string(C) + "/32", "dev", kUplink});
         ip({"neigh", "add", C, "lladdr", "02:42:ac:14:00:02", "nud", "permanent", "dev", kUplink});
       },
       [] {
         ip({"neigh", "del", C, "dev", kUplink});
         ip({"route", "del", std::string(C) + "/32"});
       }},
      // A gateway whose neighbour entry holds the container's MAC: only
      // the route tells it is not the container's own address.
      {"the container's address routed through a gateway on the bridge",
       {},
       [] {
         ip({"neigh", "add", "172.30.0.9", "lladdr", "02:42:ac:14:00:02", "nud", "permanent", "dev",
             kBridge});
         ip({"route", "add", std::string(C) + "/32", "via", "172.30.0.9", "dev", kBridge});
       },
       [] {
         ip({"route", "del", std::string(C) + "/32"});
         ip({"neigh", "del", "172.30.0.9", "dev", kBridge});
       }},
      // An IPv6 gateway whose first four bytes are the container's address
      // (ac1e:0002:: is 172.30.0.2), its neighbour entry the container's
      // MAC: only the family tells.
      {"an IPv4 route whose gateway is IPv6, looking like the container",
       {},
       [] {
         ip({"-6", "addr", "add", "ac1e:2::9/64", "dev", kBridge, "nodad"});
         ip({"-6", "neigh", "add", "ac1e:2::1", "lladdr", "02:42:ac:14:00:02", "nud", "permanent",
             "dev", kBridge});
         ip({"route", "add", std::string(C) + "/32", "via", "inet6", "ac1e:2::1", "dev", kBridge});
       },
       [] {
         ip({"route", "del", std::string(C) + "/32"});
         ip({"-6", "neigh", "del", "ac1e:2::1", "dev", kBridge});
         ip({"-6", "addr", "del", "ac1e:2::9/64", "dev", kBridge});
       }},
      {"an IPv4 route whose gateway is IPv6",
       {},
       [] {
         ip({"route", "add", std::string(C) + "/32", "via", "inet6", "fe80::1", "dev", kUplink});
       },
       [] {
         ip({"route", "del", std::string(C) + "/32"});
       }},
      {"the flow judged under another policy revision: to_container judges it again",
       {},
       [&] { entry_rev(7); },
       none},
      {"the packet's own tuple is tracked: to_container looks at that first",
       {},
       [this] {
         moat_ct_entry e{};
         e.kind = MOAT_CT_TRACK;
         e.expires_ns = ~0ull;
         ct_put(ep_, ct_key(WORLD, kWport, C, kCport, IPPROTO_TCP), e);
       },
       none},
      {"a container moat does not know at that address",
       {},
       [this] { set_peer(false); },
       [this] { set_peer(true); }},
      {"the neighbour entry holds another MAC",
       {},
       [] {
         ip({"neigh", "replace", C, "lladdr", "02:42:ac:14:00:03", "dev", kBridge});
       },
       [] {
         ip({"neigh", "replace", C, "lladdr", "02:42:ac:14:00:02", "dev", kBridge});
       }},
      {"no neighbour entry yet: the stack resolves it",
       {},
       [] {
         ip({"neigh", "del", C, "dev", kBridge});
       },
       [] {
         ip({"neigh", "add", C, "lladdr", "02:42:ac:14:00:02", "nud", "permanent", "dev", kBridge});
       }},
      {"the container's address routed through a gateway elsewhere",
       {},
       [] {
         ip({"route", "add", std::string(C) + "/32", "via", "198.51.100.1", "dev", kOther});
       },
       [] {
         ip({"route", "del", std::string(C) + "/32"});
       }},
      {"the uplink does not forward",
       {},
       [] { sysctl("net.ipv4.conf." + std::string(kUplink) + ".forwarding", "0"); },
       [] { sysctl("net.ipv4.conf." + std::string(kUplink) + ".forwarding", "1"); }},
      {"over the bridge's MTU by a byte",
       {.proto = IPPROTO_UDP, .payload = 1281 - 28},
       [] {
         ip({"link", "set", kBridge, "mtu", "1280"});
       },
       [] {
         ip({"link", "set", kBridge, "mtu", "1500"});
       }},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    // Without what the case changes, the same flow's reply goes: the
    // refusal below is the case's.
    open_flow(c.reply.proto);
    Reply plain{.proto = c.reply.proto, .payload = c.reply.payload};
    ASSERT_EQ(from_world(reply_frame(plain, false)).run.retval, uint32_t(TC_ACT_REDIRECT));
    open_flow(c.reply.proto, false, c.reply.world);
    c.before();
    Restore undo{c.after};
    expect_plain(c.reply, c.mark);
  }
  // Of the MTU exactly: it goes.
  open_flow(IPPROTO_UDP);
  ip({"link", "set", kBridge, "mtu", "1280"});
  Restore mtu{[] { ip({"link", "set", kBridge, "mtu", "1500"}); }};
  EXPECT_EQ(from_world(reply_frame({.proto = IPPROTO_UDP, .payload = 1280 - 28}, false)).run.retval,
            uint32_t(TC_ACT_REDIRECT));
}

TEST_F(FastReply, AGsoReplyGoesWhenEachSegmentFitsTheBridge) {
  open_flow();
  // 3,000 bytes of TCP in segments of 1,448: IP length 1,488 each.
  const Bytes frame = reply_frame({.flags = kAck, .payload = 3000}, false);
  const auto gso = [&] {
    RunResult r = run_gso(up_->progs.from_world, ifindex_of(kUplink), frame, 0, 1448, 3);
    EXPECT_EQ(r.err, 0);
    return r.retval;
  };
  EXPECT_EQ(gso(), uint32_t(TC_ACT_REDIRECT));
  {
    ip({"link", "set", kBridge, "mtu", "1487"});
    Restore mtu{[] { ip({"link", "set", kBridge, "mtu", "1500"}); }};
    EXPECT_EQ(gso(), uint32_t(TC_ACT_OK)) << "segments a byte over the bridge's MTU";
  }
  EXPECT_EQ(gso(), uint32_t(TC_ACT_REDIRECT));
}

TEST_F(FastReply, OnlyRepliesOfAFlowTheContainerOpened) {
  open_flow();
  // A packet to a masquerade port no flow holds is not the container's.
  Bytes stray = reply_frame({}, false);
  stray[14 + 20 + 3] ^= 1;  // the destination port
  RunResult r = from_world(stray).run;
  EXPECT_EQ(r.retval, uint32_t(TC_ACT_OK));
  EXPECT_EQ(ip4_at(r.out, 14 + 16), ip4(UPLINK_IP)) << "for the host, untranslated";
  // Straight to the container's address: not published, dropped.
  const Bytes direct = reply_frame({}, true);
  EXPECT_EQ(from_world(direct).run.retval, uint32_t(TC_ACT_SHOT));
}

}  // namespace
