// Unit tests for `moat ct list`'s rows (dataplane/conntrack.cpp): both
// families' entries rendered from synthetic map entries, no root, no maps.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include "dataplane/dataplane.h"

namespace moat {
namespace {

using nlohmann::json;

constexpr uint64_t kNow = 1000ull * 1000000000ull;

void ip6(const char* text, moat_ip& out) { ASSERT_EQ(inet_pton(AF_INET6, text, out.b), 1); }

TEST(ConntrackRows, Ipv4Published) {
  moat_ct_key k{};
  inet_pton(AF_INET, "198.18.0.2", &k.saddr);
  inet_pton(AF_INET, "198.18.0.1", &k.daddr);
  k.sport = htons(42000);
  k.dport = htons(8080);
  k.proto = IPPROTO_TCP;
  moat_ct_entry e{};
  e.xlated = k;
  inet_pton(AF_INET, "172.20.0.2", &e.xlated.daddr);
  e.xlated.dport = htons(80);
  e.kind = MOAT_CT_DNAT;
  e.expires_ns = kNow + 30ull * 1000000000ull;
  e.packets = 3;
  e.bytes = 180;
  json row = ct_entry_json(k, e, kNow);
  EXPECT_EQ(row["from"], "198.18.0.2:42000");
  EXPECT_EQ(row["to"], "198.18.0.1:8080");
  EXPECT_EQ(row["becomes_to"], "172.20.0.2:80");
  EXPECT_EQ(row["expires_in_s"], 30);
  EXPECT_EQ(row["kind"], "published");
  EXPECT_FALSE(row.contains("family"));
}

TEST(ConntrackRows, Ipv6EntriesShowIpv6Addresses) {
  moat_ct6_key k{};
  ip6("2001:db8::2", k.saddr);
  ip6("fd00:1::1", k.daddr);
  k.sport = htons(42000);
  k.dport = htons(8080);
  k.proto = IPPROTO_TCP;
  moat_ct6_entry e{};
  e.xlated = k;
  ip6("fd00:1::2", e.xlated.daddr);
  e.xlated.dport = htons(80);
  e.kind = MOAT_CT_DNAT;
  e.tcp_state = MOAT_TCP_SYN_SENT;
  e.expires_ns = kNow + 5ull * 1000000000ull;
  json row = ct_entry_json(k, e, kNow);
  EXPECT_EQ(row["family"], "ipv6");
  EXPECT_EQ(row["protocol"], "tcp");
  EXPECT_EQ(row["from"], "[2001:db8::2]:42000");
  EXPECT_EQ(row["to"], "[fd00:1::1]:8080");
  EXPECT_EQ(row["becomes_from"], "[2001:db8::2]:42000");
  EXPECT_EQ(row["becomes_to"], "[fd00:1::2]:80");
  EXPECT_EQ(row["tcp_state"], "syn-sent");
  EXPECT_EQ(row["expires_in_s"], 5);
  // ICMPv6 echo: the identifier, no ports.
  k.proto = IPPROTO_ICMPV6;
  k.sport = htons(77);
  e.xlated = k;
  e.tcp_state = 0;
  row = ct_entry_json(k, e, kNow);
  EXPECT_EQ(row["protocol"], "icmpv6");
  EXPECT_EQ(row["from"], "2001:db8::2");
  EXPECT_EQ(row["to"], "fd00:1::1");
  EXPECT_EQ(row["echo_id"], 77);
}

}  // namespace
}  // namespace moat
