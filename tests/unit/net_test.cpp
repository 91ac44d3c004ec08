// Unit tests for net.h. Decision on odd spellings: Ipv4::parse is strict, so
// leading zeros ("01.2.3.4", which inet_aton reads as octal), surrounding
// whitespace and anything but four decimal octets are rejected. Ipv6::parse
// takes every RFC 4291 form but no zone id and nothing around the address;
// its dotted quad is read by Ipv4::parse, so it is as strict.
#include "util/net.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace moat {
namespace {

Ipv4 ip(const char* text) { return Ipv4::parse(text).value(); }
Ipv4Prefix prefix(const char* text) { return Ipv4Prefix::parse(text).value(); }
Ipv6 ip6(const char* text) { return Ipv6::parse(text).value(); }
Ipv6Prefix prefix6(const char* text) { return Ipv6Prefix::parse(text).value(); }

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

TEST(Ipv6, PrintsTheCanonicalForm) {
  struct Case {
    const char* text;
    const char* canonical;
  };
  const Case cases[] = {
      // RFC 5952's examples.
      {"2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"},  // the first of two equal runs
      {"2001:0db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"},
      {"2001:db8::0:1", "2001:db8::1"},
      {"2001:db8:0:0:0::1", "2001:db8::1"},
      {"2001:db8:0000:0:1::1", "2001:db8::1:0:0:1"},
      {"2001:DB8:0:0:1:0:0:1", "2001:db8::1:0:0:1"},
      {"2001:db8:aaaa:bbbb:cccc:dddd:eeee:0001", "2001:db8:aaaa:bbbb:cccc:dddd:eeee:1"},
      {"2001:db8::aaaa:0:0:1", "2001:db8::aaaa:0:0:1"},
      {"2001:db8:0:0:aaaa::1", "2001:db8::aaaa:0:0:1"},
      {"2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"},  // one zero group stays
      {"2001:0:0:1:0:0:0:1", "2001:0:0:1::1"},           // the longest run
      {"2001:DB8::AAAA", "2001:db8::aaaa"},
      {"::ffff:c000:0201", "::ffff:192.0.2.1"},  // IPv4-mapped: dotted
      // The edges.
      {"0:0:0:0:0:0:0:0", "::"},
      {"0:0:0:0:0:0:0:1", "::1"},
      {"1:0:0:0:0:0:0:0", "1::"},
      {"1:0:1:0:1:0:1:0", "1:0:1:0:1:0:1:0"},
      {"0:0:1:0:0:1:0:0", "::1:0:0:1:0:0"},
      {"1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"},
      {"::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8"},
      {"fd00:0:0:1:0:0:0:0", "fd00:0:0:1::"},
      {"FE80::0202:B3FF:FE1E:8329", "fe80::202:b3ff:fe1e:8329"},
      {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
      // Dotted quads anywhere they may stand.
      {"::192.0.2.1", "::c000:201"},
      {"1:2:3:4:5:6:192.0.2.1", "1:2:3:4:5:6:c000:201"},
      {"64:ff9b::192.0.2.33", "64:ff9b::c000:221"},
      {"::ffff:0.0.0.0", "::ffff:0.0.0.0"},
  };
  for (const Case& c : cases) {
    auto parsed = Ipv6::parse(c.text);
    ASSERT_TRUE(parsed) << c.text;
    EXPECT_EQ(parsed->str(), c.canonical) << c.text;
    // The canonical form is read back as the same address.
    auto again = Ipv6::parse(parsed->str());
    ASSERT_TRUE(again) << c.canonical;
    EXPECT_EQ(*again, *parsed) << c.canonical;
  }
}

TEST(Ipv6, KeepsNetworkByteOrder) {
  Ipv6 a = ip6("2001:db8::102:304");
  EXPECT_EQ(a.bytes[0], 0x20);
  EXPECT_EQ(a.bytes[1], 0x01);
  EXPECT_EQ(a.bytes[2], 0x0d);
  EXPECT_EQ(a.bytes[3], 0xb8);
  EXPECT_EQ(a.bytes[12], 1);
  EXPECT_EQ(a.bytes[15], 4);
  EXPECT_EQ(ip6("::1.2.3.4"), ip6("::102:304"));
}

TEST(Ipv6, RejectsMalformedText) {
  for (const char* text : {"",
                           ":",
                           ":::",
                           "1:2:3:4:5:6:7",          // too few groups
                           "1:2:3:4:5:6:7:8:9",      // too many
                           "1:2:3:4::5:6:7:8",       // "::" must stand for a group
                           "::1:2:3:4:5:6:7:8",      // likewise
                           "1:2:3:4:5:6:7:8::",      // likewise
                           "1::2::3",                // two "::"
                           "1:::2",                  // three colons
                           "12345::",                // five digits
                           "00000::1",               // five digits, zeros too
                           "g::1",                   // not hex
                           "fe80::1%eth0",           // zone id
                           "fe80::1%1",              // zone index
                           ":1::",                   // a single leading colon
                           "1::2:",                  // a single trailing colon
                           ":1:2:3:4:5:6:7",         // likewise
                           "1:2:3:4:5:6:7:",         // likewise
                           " ::1",                   // whitespace
                           "::1 ",                   //
                           "[::1]",                  // URL brackets
                           "fd00::/64",              // a prefix
                           "1.2.3.4",                // IPv4
                           "::1.2.3",                // a short dotted quad
                           "::1.2.3.04",             // a leading zero, as in Ipv4::parse
                           "::256.1.1.1",            //
                           "1.2.3.4::",              // a dotted quad not at the end
                           "::1.2.3.4:1",            //
                           "1:2:3:4:5:6:7:1.2.3.4",  // nine groups
                           "1:2:3:4:5:6:7::1.2.3.4",
                           "::-1",
                           "::+1",
                           "0x1::"}) {
    EXPECT_FALSE(Ipv6::parse(text)) << '"' << text << '"';
  }
}

TEST(Ipv6, OrdersByTheNumberItSpells) {
  EXPECT_LT(ip6("::1"), ip6("::2"));
  EXPECT_LT(ip6("::ffff"), ip6("::1:0"));
  EXPECT_LT(ip6("fd00::ffff:ffff"), ip6("fd00:0:0:1::"));
  EXPECT_EQ(ip6("fd00::1"), ip6("FD00:0:0:0:0:0:0:01"));
  EXPECT_EQ(Ipv6{}, ip6("::"));
}

TEST(Ipv6, LinkLocalAndMulticast) {
  EXPECT_TRUE(ip6("fe80::1").is_link_local());
  EXPECT_TRUE(ip6("febf:ffff::1").is_link_local());  // fe80::/10 ends here
  EXPECT_FALSE(ip6("fec0::1").is_link_local());
  EXPECT_FALSE(ip6("fe7f::1").is_link_local());
  EXPECT_FALSE(ip6("fd00::1").is_link_local());
  EXPECT_FALSE(ip6("ff02::1").is_link_local());
  EXPECT_TRUE(ip6("ff02::1").is_multicast());
  EXPECT_TRUE(ip6("ff02::1:ff00:1").is_multicast());
  EXPECT_TRUE(ip6("ffff::").is_multicast());
  EXPECT_FALSE(ip6("fe80::1").is_multicast());
  EXPECT_FALSE(ip6("::").is_multicast());
}

TEST(Ipv6, LinkLocalOfAMacIsModifiedEui64) {
  EXPECT_EQ(link_local_of(parse_mac("02:42:ac:12:00:02").value()).str(), "fe80::42:acff:fe12:2");
  EXPECT_EQ(link_local_of(parse_mac("00:11:22:33:44:55").value()).str(),
            "fe80::211:22ff:fe33:4455");
  EXPECT_EQ(link_local_of(parse_mac("ff:ff:ff:ff:ff:ff").value()).str(),
            "fe80::fdff:ffff:feff:ffff");
  EXPECT_TRUE(link_local_of(Mac{}).is_link_local());
}

TEST(Ipv6Prefix, ParsesAndPrintsRoundTrip) {
  for (const char* text : {"fd00:1::/64", "::/0", "fd00::1/128", "fe80::/10", "fd6d:6f61:7400::/48",
                           "2001:db8::/32", "fd00::100/120", "::ffff:0.0.0.0/96"}) {
    std::string why;
    auto parsed = Ipv6Prefix::parse(text, &why);
    ASSERT_TRUE(parsed) << text << ": " << why;
    EXPECT_EQ(parsed->str(), text);
  }
  Ipv6Prefix p = prefix6("FD00:0001:0:0::/64");
  EXPECT_EQ(p.addr, ip6("fd00:1::"));
  EXPECT_EQ(p.len, 64);
  EXPECT_EQ(p.str(), "fd00:1::/64");
}

TEST(Ipv6Prefix, RejectsMalformedTextWithAReason) {
  struct Case {
    const char* text;
    const char* reason;
  };
  const Case cases[] = {
      {"fd00::/129", "from 0 to 128"},
      {"fd00::1/64", "host bits are set (did you mean fd00::/64?)"},
      {"fd00:1:2:3:4::/48", "did you mean fd00:1:2::/48?"},
      {"fe80::1/10", "did you mean fe80::/10?"},
      {"fd00::ff/121", "did you mean fd00::80/121?"},
      {"fd00::", "missing the prefix length, e.g. \"/64\""},
      {"banana/64", "\"banana\" is not an IPv6 address"},
      {"172.20.0.0/16", "\"172.20.0.0\" is not an IPv6 address"},
      {"fe80::%eth0/64", "is not an IPv6 address"},
      {"fd00::/", "from 0 to 128"},
      {"fd00::/064", "from 0 to 128"},
      {"fd00::/1000", "from 0 to 128"},
      {"fd00::/64 ", "from 0 to 128"},
      {"fd00::/-1", "from 0 to 128"},
      {"fd00::/6x", "from 0 to 128"},
  };
  for (const Case& c : cases) {
    std::string why;
    EXPECT_FALSE(Ipv6Prefix::parse(c.text, &why)) << c.text;
    EXPECT_NE(why.find(c.reason), std::string::npos) << c.text << ": " << why;
  }
  EXPECT_FALSE(Ipv6Prefix::parse("banana"));  // the reason is optional
}

TEST(Ipv6Prefix, ContainsAndFirstHost) {
  Ipv6Prefix p = prefix6("fd00:1::/64");
  EXPECT_TRUE(p.contains(ip6("fd00:1::")));
  EXPECT_TRUE(p.contains(ip6("fd00:1::ffff:ffff:ffff:ffff")));
  EXPECT_FALSE(p.contains(ip6("fd00:1:0:1::")));
  EXPECT_FALSE(p.contains(ip6("fd00:0:ffff:ffff:ffff:ffff:ffff:ffff")));
  EXPECT_EQ(p.first_host(), ip6("fd00:1::1"));
  EXPECT_TRUE(prefix6("::/0").contains(ip6("2001:db8::1")));
  EXPECT_TRUE(prefix6("fe80::/10").contains(ip6("febf::1")));
  EXPECT_FALSE(prefix6("fe80::/10").contains(ip6("fec0::1")));
  EXPECT_TRUE(prefix6("fd00::7/128").contains(ip6("fd00::7")));
  EXPECT_FALSE(prefix6("fd00::7/128").contains(ip6("fd00::6")));
  EXPECT_EQ(prefix6("fd00::100/120").first_host(), ip6("fd00::101"));
  EXPECT_EQ(prefix6("fd00::ffff/128").first_host(), ip6("fd00::1:0"));  // the carry
}

TEST(Ipv6Prefix, OverlapsIsSymmetric) {
  struct Case {
    const char* a;
    const char* b;
    bool overlap;
  };
  const Case cases[] = {
      {"fd00::/48", "fd00:0:0:5::/64", true},
      {"fd00::/64", "fd00::/64", true},
      {"fd00::/64", "fd00:0:0:1::/64", false},
      {"::/0", "fd00::/8", true},
      {"fd00::/127", "fd00::2/127", false},
      {"fe80::/10", "febf:ffff::/32", true},
      {"fe80::/10", "fec0::/10", false},
      {"fd6d:6f61:7400::/48", "fd6d:6f61:7401::/48", false},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(prefix6(c.a).overlaps(prefix6(c.b)), c.overlap) << c.a << " " << c.b;
    EXPECT_EQ(prefix6(c.b).overlaps(prefix6(c.a)), c.overlap) << c.b << " " << c.a;
  }
}

}  // namespace
}  // namespace moat
