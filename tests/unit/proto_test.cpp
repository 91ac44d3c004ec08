// Unit tests for util/proto.h: the one protocol enum and its name table.
#include "util/proto.h"

#include <gtest/gtest.h>
#include <netinet/in.h>

namespace moat {
namespace {

TEST(Protocol, ValuesAreIpprotoNumbers) {
  EXPECT_EQ(ip_protocol_number(Protocol::tcp), IPPROTO_TCP);
  EXPECT_EQ(ip_protocol_number(Protocol::udp), IPPROTO_UDP);
  EXPECT_EQ(ip_protocol_number(Protocol::sctp), IPPROTO_SCTP);
  EXPECT_EQ(ip_protocol_number(Protocol::icmp), IPPROTO_ICMP);
}

TEST(Protocol, Names) {
  EXPECT_EQ(to_string(Protocol::tcp), "tcp");
  EXPECT_EQ(to_string(Protocol::udp), "udp");
  EXPECT_EQ(to_string(Protocol::sctp), "sctp");
  EXPECT_EQ(to_string(Protocol::icmp), "icmp");
  EXPECT_EQ(to_string_upper(Protocol::tcp), "TCP");
  EXPECT_EQ(to_string_upper(Protocol::icmp), "ICMP");
}

TEST(Protocol, ParsesItsOwnNames) {
  for (Protocol p : {Protocol::tcp, Protocol::udp, Protocol::sctp, Protocol::icmp}) {
    EXPECT_EQ(parse_protocol(to_string(p)), p);
    EXPECT_EQ(parse_protocol(to_string_upper(p), true), p);
  }
}

TEST(Protocol, CaseMattersUnlessAsked) {
  EXPECT_EQ(parse_protocol("TCP"), std::nullopt);
  EXPECT_EQ(parse_protocol("Udp", true), Protocol::udp);
  EXPECT_EQ(parse_protocol("http", true), std::nullopt);
  EXPECT_EQ(parse_protocol(""), std::nullopt);
  EXPECT_EQ(parse_protocol("tcp "), std::nullopt);
}

TEST(Protocol, IpprotoNames) {
  EXPECT_EQ(proto_name(IPPROTO_TCP), "tcp");
  EXPECT_EQ(proto_name(IPPROTO_UDP), "udp");
  EXPECT_EQ(proto_name(IPPROTO_ICMP), "icmp");
  EXPECT_EQ(proto_name(IPPROTO_SCTP), "sctp");
  EXPECT_EQ(proto_name(0), "");
  EXPECT_EQ(proto_name(47), "47");  // GRE: not moat's, shown as the number
  EXPECT_EQ(proto_name(255), "255");
}

}  // namespace
}  // namespace moat
