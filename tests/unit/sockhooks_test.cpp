// Unit tests for the pure parts of sockhooks.h: reading /proc/net/{tcp,udp}[6]
// lines and the collision rule the bind hook shares with check_ports_free.
// The kernel prints addresses as 32-bit words in the machine's byte order, so
// the sample lines below are those of a little-endian machine.
#include "dataplane/sockhooks.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <bit>
#include <string>

namespace moat {
namespace {

constexpr const char* kTail =
    " 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0";

std::string line4(const char* local, const char* state) {
  return std::string("   3: ") + local + " 00000000:0000 " + state + kTail;
}
std::string line6(const char* local, const char* state) {
  return std::string("  12: ") + local + " 00000000000000000000000000000000:0000 " + state + kTail;
}

uint32_t be(const char* text) {
  in_addr a{};
  inet_pton(AF_INET, text, &a);
  return a.s_addr;
}

class ProcNet : public ::testing::Test {
 protected:
  void SetUp() override {
    if constexpr (std::endian::native != std::endian::little)
      GTEST_SKIP() << "samples are little-endian";
  }
};

TEST_F(ProcNet, ParsesIpv4Listener) {
  auto s = parse_proc_net_line(line4("0100007F:1388", "0A"), false);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->ip_be, be("127.0.0.1"));
  EXPECT_EQ(s->port, 5000);
  EXPECT_EQ(s->state, 0x0A);
  EXPECT_TRUE(s->holds_ipv4);
  EXPECT_FALSE(s->v6);
  EXPECT_EQ(s->address(), "127.0.0.1:5000");
}

TEST_F(ProcNet, ParsesWildcardAndOtherAddresses) {
  auto any = parse_proc_net_line(line4("00000000:FFFF", "07"), false);
  ASSERT_TRUE(any);
  EXPECT_EQ(any->ip_be, 0u);
  EXPECT_EQ(any->port, 65535);
  EXPECT_EQ(any->state, 0x07);
  auto gw = parse_proc_net_line(line4("010014AC:0050", "0A"), false);
  ASSERT_TRUE(gw);
  EXPECT_EQ(gw->address(), "172.20.0.1:80");
}

TEST_F(ProcNet, Ipv6WildcardAndMappedCoverIpv4) {
  auto any = parse_proc_net_line(line6("00000000000000000000000000000000:1388", "0A"), true);
  ASSERT_TRUE(any);
  EXPECT_TRUE(any->holds_ipv4);
  EXPECT_EQ(any->ip_be, 0u);
  EXPECT_EQ(any->address(), "[::]:5000");

  auto mapped = parse_proc_net_line(line6("0000000000000000FFFF00000100007F:1388", "0A"), true);
  ASSERT_TRUE(mapped);
  EXPECT_TRUE(mapped->holds_ipv4);
  EXPECT_EQ(mapped->ip_be, be("127.0.0.1"));
  EXPECT_EQ(mapped->address(), "[::ffff:127.0.0.1]:5000");
}

TEST_F(ProcNet, OtherIpv6AddressesDoNotCoverIpv4) {
  auto lo6 = parse_proc_net_line(line6("00000000000000000000000001000000:1388", "0A"), true);
  ASSERT_TRUE(lo6);
  EXPECT_FALSE(lo6->holds_ipv4);
}

TEST_F(ProcNet, Ipv6AddressesAreKept) {
  auto lo6 = parse_proc_net_line(line6("00000000000000000000000001000000:1F90", "0A"), true);
  ASSERT_TRUE(lo6 && lo6->ip6);
  EXPECT_EQ(lo6->ip6->str(), "::1");
  EXPECT_EQ(lo6->address(), "[::1]:8080");
  auto any = parse_proc_net_line(line6("00000000000000000000000000000000:1F90", "0A"), true);
  ASSERT_TRUE(any && any->ip6);
  EXPECT_EQ(*any->ip6, Ipv6{});
  auto gw = parse_proc_net_line(line6("616F6DFD000085000000000001000000:1F90", "0A"), true);
  ASSERT_TRUE(gw && gw->ip6);
  EXPECT_EQ(gw->address(), "[fd6d:6f61:85::1]:8080");
  EXPECT_FALSE(gw->holds_ipv4);
  auto mapped = parse_proc_net_line(line6("0000000000000000FFFF00000100007F:1388", "0A"), true);
  ASSERT_TRUE(mapped);
  EXPECT_FALSE(mapped->ip6) << "an IPv4 port, not an IPv6 one";
  EXPECT_FALSE(parse_proc_net_line(line4("0100007F:1388", "0A"), false)->ip6);
}

TEST_F(ProcNet, RejectsHeaderAndGarbage) {
  EXPECT_FALSE(parse_proc_net_line(
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid", false));
  EXPECT_FALSE(parse_proc_net_line("", false));
  EXPECT_FALSE(parse_proc_net_line("   0: 0100007F:1388", false));          // no state
  EXPECT_FALSE(parse_proc_net_line(line4("0100007G:1388", "0A"), false));   // not hex
  EXPECT_FALSE(parse_proc_net_line(line4("0100007F:11388", "0A"), false));  // port too long
  EXPECT_FALSE(parse_proc_net_line(line4("0100007F1388", "0A"), false));    // no colon
  // An IPv6 line read as IPv4 and the other way round.
  EXPECT_FALSE(parse_proc_net_line(line6("00000000000000000000000000000000:1388", "0A"), false));
  EXPECT_FALSE(parse_proc_net_line(line4("0100007F:1388", "0A"), true));
}

PublishedPort pub(const char* host, uint16_t port, uint8_t proto) {
  return {host ? be(host) : 0u, port, proto, "x", "c"};
}

TEST(BindCollides, WildcardPublishTakesEveryAddress) {
  auto p = pub(nullptr, 5000, IPPROTO_TCP);
  EXPECT_TRUE(bind_collides(p, 0, 5000, IPPROTO_TCP));
  EXPECT_TRUE(bind_collides(p, be("127.0.0.1"), 5000, IPPROTO_TCP));
  EXPECT_TRUE(bind_collides(p, be("198.18.0.1"), 5000, IPPROTO_TCP));
  EXPECT_FALSE(bind_collides(p, 0, 5001, IPPROTO_TCP));
}

TEST(BindCollides, AddressPublishTakesItsAddressAndTheWildcard) {
  auto p = pub("127.0.0.1", 8080, IPPROTO_TCP);
  EXPECT_TRUE(bind_collides(p, be("127.0.0.1"), 8080, IPPROTO_TCP));
  EXPECT_TRUE(bind_collides(p, 0, 8080, IPPROTO_TCP));
  EXPECT_FALSE(bind_collides(p, be("127.0.0.2"), 8080, IPPROTO_TCP));
  EXPECT_FALSE(bind_collides(p, be("198.18.0.1"), 8080, IPPROTO_TCP));
}

TEST(BindCollides, ProtocolsAreIndependent) {
  EXPECT_FALSE(bind_collides(pub(nullptr, 53, IPPROTO_UDP), 0, 53, IPPROTO_TCP));
  EXPECT_FALSE(bind_collides(pub(nullptr, 53, IPPROTO_TCP), 0, 53, IPPROTO_UDP));
  EXPECT_TRUE(bind_collides(pub(nullptr, 53, IPPROTO_UDP), 0, 53, IPPROTO_UDP));
}

PublishedPort pub6(const char* host, uint16_t port, uint8_t proto) {
  PublishedPort p{0, port, proto, "x", "c"};
  p.host_ip6 = Ipv6::parse(host);
  return p;
}

TEST(BindCollides, Ipv6PortsByTheSameRule) {
  auto any = pub6("::", 8080, IPPROTO_TCP), lo = pub6("::1", 8080, IPPROTO_TCP);
  EXPECT_TRUE(bind_collides(any, *Ipv6::parse("::1"), 8080, IPPROTO_TCP));
  EXPECT_TRUE(bind_collides(any, *Ipv6::parse("fd00::1"), 8080, IPPROTO_TCP));
  EXPECT_TRUE(bind_collides(lo, Ipv6{}, 8080, IPPROTO_TCP));
  EXPECT_TRUE(bind_collides(lo, *Ipv6::parse("::1"), 8080, IPPROTO_TCP));
  EXPECT_FALSE(bind_collides(lo, *Ipv6::parse("fd00::1"), 8080, IPPROTO_TCP));
  EXPECT_FALSE(bind_collides(lo, *Ipv6::parse("::1"), 8080, IPPROTO_UDP));
  EXPECT_FALSE(bind_collides(lo, *Ipv6::parse("::1"), 8081, IPPROTO_TCP));
  // Each family's ports are its own.
  EXPECT_FALSE(bind_collides(pub(nullptr, 8080, IPPROTO_TCP), Ipv6{}, 8080, IPPROTO_TCP));
}

TEST(PublishedPorts, ConvertsPlanEntries6) {
  Publish6Entry e;
  e.container = "web";
  e.text = "[::1]:8080:80/udp";
  e.key.host_ip.b[15] = 1;
  e.key.port = htons(8080);
  e.key.proto = IPPROTO_UDP;
  auto v = published_ports(std::vector<Publish6Entry>{e});
  ASSERT_EQ(v.size(), 1u);
  ASSERT_TRUE(v[0].host_ip6);
  EXPECT_EQ(v[0].host_ip6->str(), "::1");
  EXPECT_EQ(v[0].port, 8080);
  EXPECT_EQ(v[0].proto, IPPROTO_UDP);
  EXPECT_EQ(v[0].text, e.text);
  EXPECT_EQ(v[0].container, "web");
}

TEST(PublishedPorts, ConvertsPlanEntries) {
  PublishEntry e;
  e.container = "rechnung";
  e.text = "127.0.0.1:5000:5000/tcp";
  e.key.host_ip = be("127.0.0.1");
  e.key.port = htons(5000);
  e.key.proto = IPPROTO_TCP;
  auto v = published_ports({e});
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].host_ip_be, be("127.0.0.1"));
  EXPECT_EQ(v[0].port, 5000);
  EXPECT_EQ(v[0].proto, IPPROTO_TCP);
  EXPECT_EQ(v[0].text, e.text);
  EXPECT_EQ(v[0].container, "rechnung");
}

// The record's account of the socket hooks: read back as written, and
// anything else (an older record, a hand-edited one) is no account at all,
// so the next apply loads and judges every link.
TEST(SockLinksRecord, ReadsBackWhatItWrites) {
  SockLinks l;
  l.objects = "00ff00ff00ff00ff";
  l.links["connect4"] = {17, 11};
  l.links["bind6"] = {23, 9};
  auto back = SockLinks::from_json(nlohmann::json::parse(l.to_json().dump()));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->objects, l.objects);
  ASSERT_EQ(back->links.size(), 2u);
  EXPECT_EQ(back->links["connect4"].prog_id, 17u);
  EXPECT_EQ(back->links["connect4"].attach_type, 11u);
  EXPECT_EQ(back->links["bind6"].prog_id, 23u);
}

TEST(SockLinksRecord, AnythingElseIsNoRecord) {
  for (const char* bad :
       {"null", "{}", "[]", R"({"objects": 5, "links": {}})", R"({"objects": "x"})",
        R"({"objects": "x", "links": {"connect4": {"prog_id": -1, "attach_type": 1}}})",
        R"({"objects": "x", "links": {"connect4": {"prog_id": 3}}})",
        R"({"objects": "x", "links": {"connect4": 3}})"})
    EXPECT_FALSE(SockLinks::from_json(nlohmann::json::parse(bad))) << bad;
}

}  // namespace
}  // namespace moat
