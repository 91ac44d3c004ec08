// Unit tests for net.h. Decision on odd spellings: Ipv4::parse is strict, so
// leading zeros ("01.2.3.4", which inet_aton reads as octal), surrounding
// whitespace and anything but four decimal octets are rejected.
#include "util/net.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace moat {
namespace {

Ipv4 ip(const char* text) { return Ipv4::parse(text).value(); }
Ipv4Prefix prefix(const char* text) { return Ipv4Prefix::parse(text).value(); }

TEST(Ipv4, ParsesAndPrintsRoundTrip) {
  for (const char* text : {"0.0.0.0", "255.255.255.255", "172.20.0.1", "10.0.0.255", "1.2.3.4"}) {
    auto parsed = Ipv4::parse(text);
    ASSERT_TRUE(parsed) << text;
    EXPECT_EQ(parsed->str(), text);
  }
}

TEST(Ipv4, KeepsHostByteOrder) {
  EXPECT_EQ(ip("1.2.3.4").value, 0x01020304u);
  EXPECT_EQ(ip("255.0.0.1").value, 0xff000001u);
}

TEST(Ipv4, RejectsMalformedText) {
  for (const char* text : {"", "1.2.3", "256.1.1.1", "1.2.3.4.5", " 1.2.3.4", "1.2.3.4 ",
                           "01.2.3.4", "1.2.3.04", "1..2.3", "a.b.c.d", "1.2.3.-4", "1.2.3.4/24",
                           "1234.1.1.1", "1.2.3.", ".1.2.3", "0x1.2.3.4", "1.2.3.+4"}) {
    EXPECT_FALSE(Ipv4::parse(text)) << '"' << text << '"';
  }
}

TEST(Ipv4, ToBeGivesNetworkByteOrderInMemory) {
  uint32_t be = ip("1.2.3.4").to_be();
  unsigned char bytes[4];
  std::memcpy(bytes, &be, sizeof bytes);
  EXPECT_EQ(bytes[0], 1);
  EXPECT_EQ(bytes[1], 2);
  EXPECT_EQ(bytes[2], 3);
  EXPECT_EQ(bytes[3], 4);
}

TEST(Ipv4, OrdersByNumericValue) {
  EXPECT_LT(ip("9.255.255.255"), ip("10.0.0.0"));
  EXPECT_EQ(ip("10.0.0.1"), Ipv4{0x0a000001});
}

TEST(Ipv4Prefix, ParsesAndPrintsRoundTrip) {
  for (const char* text : {"172.20.0.0/16", "0.0.0.0/0", "10.0.0.1/32", "192.168.16.0/20"}) {
    std::string why;
    auto parsed = Ipv4Prefix::parse(text, &why);
    ASSERT_TRUE(parsed) << text << ": " << why;
    EXPECT_EQ(parsed->str(), text);
  }
  Ipv4Prefix p = prefix("172.20.0.0/16");
  EXPECT_EQ(p.addr, ip("172.20.0.0"));
  EXPECT_EQ(p.len, 16);
}

TEST(Ipv4Prefix, RejectsMalformedTextWithAReason) {
  struct Case {
    const char* text;
    const char* reason;
  };
  const Case cases[] = {
      {"172.20.0.0/33", "from 0 to 32"},
      {"172.20.0.1/16", "host bits are set (did you mean 172.20.0.0/16?)"},
      {"10.1.2.3/8", "did you mean 10.0.0.0/8?"},
      {"banana", "missing the prefix length"},
      {"banana/16", "\"banana\" is not an IPv4 address"},
      {"172.20.0.0/", "from 0 to 32"},
      {"172.20.0.0/016", "from 0 to 32"},
      {"172.20.0.0/16 ", "from 0 to 32"},
      {"172.20.0.0/-1", "from 0 to 32"},
      {"172.20.0/16", "is not an IPv4 address"},
  };
  for (const Case& c : cases) {
    std::string why;
    EXPECT_FALSE(Ipv4Prefix::parse(c.text, &why)) << c.text;
    EXPECT_NE(why.find(c.reason), std::string::npos) << c.text << ": " << why;
  }
  EXPECT_FALSE(Ipv4Prefix::parse("banana"));  // the reason is optional
}

TEST(Ipv4Prefix, MaskFirstHostAndBroadcast) {
  Ipv4Prefix p = prefix("172.20.0.0/16");
  EXPECT_EQ(p.mask(), 0xffff0000u);
  EXPECT_EQ(p.first_host(), ip("172.20.0.1"));
  EXPECT_EQ(p.broadcast(), ip("172.20.255.255"));

  Ipv4Prefix small = prefix("192.168.1.4/30");
  EXPECT_EQ(small.first_host(), ip("192.168.1.5"));
  EXPECT_EQ(small.broadcast(), ip("192.168.1.7"));

  Ipv4Prefix all = prefix("0.0.0.0/0");
  EXPECT_EQ(all.mask(), 0u);
  EXPECT_EQ(all.broadcast(), ip("255.255.255.255"));

  Ipv4Prefix host = prefix("10.0.0.7/32");
  EXPECT_EQ(host.mask(), 0xffffffffu);
  EXPECT_EQ(host.broadcast(), ip("10.0.0.7"));
}

TEST(Ipv4Prefix, Contains) {
  Ipv4Prefix p = prefix("172.20.0.0/16");
  EXPECT_TRUE(p.contains(ip("172.20.0.0")));
  EXPECT_TRUE(p.contains(ip("172.20.255.255")));
  EXPECT_FALSE(p.contains(ip("172.21.0.0")));
  EXPECT_FALSE(p.contains(ip("172.19.255.255")));
  EXPECT_TRUE(prefix("0.0.0.0/0").contains(ip("8.8.8.8")));
  EXPECT_TRUE(prefix("10.0.0.7/32").contains(ip("10.0.0.7")));
  EXPECT_FALSE(prefix("10.0.0.7/32").contains(ip("10.0.0.6")));
}

TEST(Ipv4Prefix, OverlapsIsSymmetric) {
  struct Case {
    const char* a;
    const char* b;
    bool overlap;
  };
  const Case cases[] = {
      {"172.20.0.0/16", "172.20.5.0/24", true},     {"172.20.0.0/16", "172.20.0.0/16", true},
      {"172.20.0.0/16", "172.21.0.0/16", false},    {"0.0.0.0/0", "10.0.0.0/8", true},
      {"10.0.0.0/31", "10.0.0.2/31", false},        {"192.168.0.0/20", "192.168.15.0/24", true},
      {"192.168.0.0/20", "192.168.16.0/24", false},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(prefix(c.a).overlaps(prefix(c.b)), c.overlap) << c.a << " " << c.b;
    EXPECT_EQ(prefix(c.b).overlaps(prefix(c.a)), c.overlap) << c.b << " " << c.a;
  }
}

}  // namespace
}  // namespace moat
