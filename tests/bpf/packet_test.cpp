// packet_test.cpp - the packet builder's checksums and checksum_errors()
// against values computed outside this code (RFC 1071 by hand / a Python
// one-liner), so the NAT tests' "expected frame" and "checksums verify"
// cannot both be wrong the same way. Needs no BPF; lives in this binary
// because packet.h is the BPF tier's.
#include <gtest/gtest.h>

#include "packet.h"

using namespace pkt;

namespace {

const Bytes kData = {'h', 'e', 'l', 'l', 'o'};

// The header of the usual textbook example: checksum 0xb861.
TEST(PacketBuilder, Ipv4HeaderChecksumKnownVector) {
  const Bytes header = {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                        0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
  EXPECT_EQ(inet_checksum(header), 0xb861);
}

// Expected values: struct.pack + the RFC 1071 sum in Python over the same
// pseudo header and segment.
TEST(PacketBuilder, L4ChecksumsKnownVectors) {
  const in_addr_t s = ip4("198.18.0.2"), d = ip4("198.18.0.1");
  const Bytes u = ipv4({.src = s, .dst = d, .proto = IPPROTO_UDP, .l4_checksum = true},
                       udp(40000, 8080, kData));
  EXPECT_EQ(u[20 + 6] << 8 | u[20 + 7], 0x7409);
  // seq 1, ack 1: the header the vector was computed for.
  const Bytes t = ipv4({.src = s, .dst = d, .proto = IPPROTO_TCP, .l4_checksum = true},
                       tcp_at(40000, 5000, kSyn, 1, 1, kData));
  EXPECT_EQ(t[20 + 16] << 8 | t[20 + 17], 0x3528);
  const Bytes i = ipv4({.src = s, .dst = d, .proto = IPPROTO_ICMP, .l4_checksum = true},
                       icmp_echo(kEchoRequest, 0x4242, 7, kData));
  EXPECT_EQ(i[20 + 2] << 8 | i[20 + 3], 0x71e4);
}

TEST(PacketBuilder, ChecksumErrorsFindsEveryBrokenSum) {
  const in_addr_t s = ip4("198.18.0.2"), d = ip4("198.18.0.1");
  const Bytes t = eth(ETH_P_IP, ipv4({.src = s, .dst = d, .proto = IPPROTO_TCP, .l4_checksum = true},
                                     tcp(40000, 5000, kSyn, kData)));
  const Bytes u = eth(ETH_P_IP, ipv4({.src = s, .dst = d, .proto = IPPROTO_UDP, .l4_checksum = true},
                                     udp(40000, 8080, kData)));
  const Bytes u0 = eth(ETH_P_IP, ipv4({.src = s, .dst = d, .proto = IPPROTO_UDP}, udp(1, 2, kData)));
  const Bytes quoted = ipv4({.src = d, .dst = s, .proto = IPPROTO_UDP}, udp(8080, 40000, kData));
  const Bytes e = eth(ETH_P_IP, ipv4({.src = s, .dst = d, .proto = IPPROTO_ICMP, .l4_checksum = true},
                                     icmp_error(kDestUnreach, kPortUnreach, quoted)));
  for (const Bytes* f : {&t, &u, &u0, &e}) EXPECT_EQ(checksum_errors(*f), "");

  EXPECT_EQ(checksum_errors(patched(t, 14 + 15, 3)), "outer IPv4 header checksum bad; TCP checksum bad; ")
      << "a source address byte is in both sums";
  EXPECT_EQ(checksum_errors(patched(t, t.size() - 1, 'O')), "TCP checksum bad; ");
  EXPECT_EQ(checksum_errors(patched(u, u.size() - 1, 'O')), "UDP checksum bad; ");
  EXPECT_EQ(checksum_errors(patched(u0, u0.size() - 1, 'O')), "") << "UDP checksum 0 is none";
  // A quoted address byte: the quoted header's sum and the ICMP sum break.
  EXPECT_EQ(checksum_errors(patched(e, 14 + 20 + 8 + 12, 1)),
            "ICMP checksum bad; quoted IPv4 header checksum bad; ");
  // The same byte with the ICMP sum fixed up: only the quoted header's.
  Bytes e2 = patched(e, 14 + 20 + 8 + 12, 1);
  e2[14 + 20 + 2] = e2[14 + 20 + 3] = 0;
  const uint16_t sum = inet_checksum(std::span(e2).subspan(14 + 20));
  e2[14 + 20 + 2] = uint8_t(sum >> 8);
  e2[14 + 20 + 3] = uint8_t(sum);
  EXPECT_EQ(checksum_errors(e2), "quoted IPv4 header checksum bad; ");
}

}  // namespace
