// Unit tests for first_packet() (dataplane/prog_run.h): the frames `moat
// explain` runs through the programs, byte by byte, with every checksum
// verified here from scratch (RFC 1071 over the RFC 793 / RFC 8200
// pseudo-headers), not by the builder's own helpers.
#include "dataplane/prog_run.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <cstdint>
#include <vector>

namespace moat {
namespace {

using Bytes = std::vector<uint8_t>;

const Bytes kDstMac = {0x02, 0x42, 0xac, 0x11, 0x00, 0x02};
const Bytes kSrcMac = {0x02, 0x42, 0xac, 0x11, 0x00, 0x03};

Ipv6 v6(const char* text) { return *Ipv6::parse(text); }

uint32_t be4(const char* text) {
  in_addr a{};
  inet_pton(AF_INET, text, &a);
  return a.s_addr;
}

uint16_t get16(const Bytes& b, size_t at) { return static_cast<uint16_t>(b[at] << 8 | b[at + 1]); }

// The one's complement sum of `b` as 16-bit big-endian words (RFC 1071),
// folded: a region whose checksum is right sums to 0xffff.
uint16_t ones_sum(const Bytes& b) {
  uint64_t sum = 0;
  for (size_t i = 0; i < b.size(); i += 2) {
    uint16_t hi = b[i];
    uint16_t lo = i + 1 < b.size() ? b[i + 1] : 0;
    sum += static_cast<uint64_t>(hi << 8 | lo);
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

// The RFC 8200 8.1 pseudo-header, then the upper-layer packet as sent.
Bytes pseudo6(const Ipv6& src, const Ipv6& dst, uint8_t next, const Bytes& l4) {
  Bytes b(src.bytes.begin(), src.bytes.end());
  b.insert(b.end(), dst.bytes.begin(), dst.bytes.end());
  uint32_t len = static_cast<uint32_t>(l4.size());
  b.insert(b.end(), {static_cast<uint8_t>(len >> 24), static_cast<uint8_t>(len >> 16),
                     static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len), 0, 0, 0, next});
  b.insert(b.end(), l4.begin(), l4.end());
  return b;
}

// The RFC 793 pseudo-header (source, destination, zero, protocol, length).
Bytes pseudo4(const Bytes& ip, const Bytes& l4) {
  Bytes b(ip.begin() + 12, ip.begin() + 20);
  b.insert(b.end(),
           {0, ip[9], static_cast<uint8_t>(l4.size() >> 8), static_cast<uint8_t>(l4.size())});
  b.insert(b.end(), l4.begin(), l4.end());
  return b;
}

struct Frame6 {
  Bytes eth, ip, l4;
};

Frame6 split6(const Bytes& f) {
  EXPECT_GE(f.size(), 14u + 40u);
  return {Bytes(f.begin(), f.begin() + 14), Bytes(f.begin() + 14, f.begin() + 54),
          Bytes(f.begin() + 54, f.end())};
}

// What every IPv6 first packet shares: Ethernet to the given MACs as IPv6,
// version 6 with traffic class and flow label 0, no extension header,
// hop limit 64, the addresses, and a payload length that is the L4 size.
void expect_ipv6_header(const Frame6& f, const Ipv6& src, const Ipv6& dst, uint8_t next) {
  EXPECT_EQ(Bytes(f.eth.begin(), f.eth.begin() + 6), kDstMac);
  EXPECT_EQ(Bytes(f.eth.begin() + 6, f.eth.begin() + 12), kSrcMac);
  EXPECT_EQ(get16(f.eth, 12), 0x86dd);
  EXPECT_EQ(f.ip[0], 0x60);
  EXPECT_EQ(f.ip[1], 0);
  EXPECT_EQ(get16(f.ip, 2), 0);
  EXPECT_EQ(get16(f.ip, 4), f.l4.size());
  EXPECT_EQ(f.ip[6], next);
  EXPECT_EQ(f.ip[7], 64);
  EXPECT_EQ(Bytes(f.ip.begin() + 8, f.ip.begin() + 24), Bytes(src.bytes.begin(), src.bytes.end()));
  EXPECT_EQ(Bytes(f.ip.begin() + 24, f.ip.end()), Bytes(dst.bytes.begin(), dst.bytes.end()));
}

TEST(FirstPacket6, TcpSyn) {
  const Ipv6 src = v6("fd6d:6f61:88::3"), dst = v6("fd6d:6f61:88::2");
  auto f = split6(first_packet(kDstMac, kSrcMac, src, dst, IPPROTO_TCP, 80));
  expect_ipv6_header(f, src, dst, IPPROTO_TCP);
  ASSERT_EQ(f.l4.size(), 20u);
  EXPECT_EQ(get16(f.l4, 0), 40000);
  EXPECT_EQ(get16(f.l4, 2), 80);
  EXPECT_EQ(f.l4[12], 5 << 4);  // data offset: 20 bytes, no options
  EXPECT_EQ(f.l4[13], 0x02);    // SYN alone
  EXPECT_NE(get16(f.l4, 14), 0);
  EXPECT_EQ(ones_sum(pseudo6(src, dst, IPPROTO_TCP, f.l4)), 0xffff);
  // The value itself, as a Python one's complement sum over the same
  // pseudo-header and segment computes it.
  EXPECT_EQ(get16(f.l4, 16), 0x3dad);
}

TEST(FirstPacket6, Udp) {
  const Ipv6 src = v6("2001:db8:2::53"), dst = v6("fd6d:6f61:88::8");
  auto f = split6(first_packet(kDstMac, kSrcMac, src, dst, IPPROTO_UDP, 53));
  expect_ipv6_header(f, src, dst, IPPROTO_UDP);
  ASSERT_EQ(f.l4.size(), 12u);
  EXPECT_EQ(get16(f.l4, 0), 40000);
  EXPECT_EQ(get16(f.l4, 2), 53);
  EXPECT_EQ(get16(f.l4, 4), 12);  // UDP length
  EXPECT_EQ(Bytes(f.l4.begin() + 8, f.l4.end()), (Bytes{'m', 'o', 'a', 't'}));
  // Over IPv6 a UDP checksum is mandatory (RFC 8200 8.1): never 0.
  EXPECT_NE(get16(f.l4, 6), 0);
  EXPECT_EQ(ones_sum(pseudo6(src, dst, IPPROTO_UDP, f.l4)), 0xffff);
}

TEST(FirstPacket6, SctpFramedAsIpv4s) {
  const Ipv6 src = v6("fd6d:6f61:88::4"), dst = v6("fd6d:6f61:88::2");
  auto f = split6(first_packet(kDstMac, kSrcMac, src, dst, IPPROTO_SCTP, 9000));
  expect_ipv6_header(f, src, dst, IPPROTO_SCTP);
  // The same L4 bytes as the IPv4 packet's: the programs read the ports.
  auto f4 = first_packet(kDstMac, kSrcMac, be4("10.88.0.4"), be4("10.88.0.2"), IPPROTO_SCTP, 9000);
  EXPECT_EQ(f.l4, Bytes(f4.begin() + 14 + 20, f4.end()));
  EXPECT_EQ(get16(f.l4, 0), 40000);
  EXPECT_EQ(get16(f.l4, 2), 9000);
}

TEST(FirstPacket6, Icmpv6EchoRequest) {
  const Ipv6 src = v6("fd6d:6f61:88::8"), dst = v6("fd6d:6f61:88::4");
  for (uint8_t proto : {uint8_t{IPPROTO_ICMPV6}, uint8_t{IPPROTO_ICMP}}) {
    SCOPED_TRACE(int{proto});
    auto f = split6(first_packet(kDstMac, kSrcMac, src, dst, proto, 0));
    expect_ipv6_header(f, src, dst, IPPROTO_ICMPV6);  // next header 58 either way
    ASSERT_EQ(f.l4.size(), 8u);
    EXPECT_EQ(f.l4[0], 128);  // echo request
    EXPECT_EQ(f.l4[1], 0);
    EXPECT_EQ(get16(f.l4, 4), 0x6d74);  // identifier
    EXPECT_EQ(get16(f.l4, 6), 1);       // sequence
    // ICMPv6 sums the pseudo-header too (RFC 4443 2.3), unlike ICMP.
    EXPECT_EQ(ones_sum(pseudo6(src, dst, IPPROTO_ICMPV6, f.l4)), 0xffff);
    EXPECT_NE(ones_sum(f.l4), 0xffff);
  }
}

// Addresses of all ones make the sums carry many times: the fold must hold.
TEST(FirstPacket6, ChecksumsCarry) {
  const Ipv6 src = v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe");
  const Ipv6 dst = v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
  for (uint8_t proto : {uint8_t{IPPROTO_TCP}, uint8_t{IPPROTO_UDP}, uint8_t{IPPROTO_ICMPV6}}) {
    SCOPED_TRACE(int{proto});
    auto f = split6(first_packet(kDstMac, kSrcMac, src, dst, proto, 65535));
    EXPECT_EQ(ones_sum(pseudo6(src, dst, f.ip[6], f.l4)), 0xffff);
  }
}

TEST(FirstPacket4, HeaderAndL4Checksums) {
  for (uint8_t proto : {uint8_t{IPPROTO_TCP}, uint8_t{IPPROTO_UDP}, uint8_t{IPPROTO_ICMP}}) {
    SCOPED_TRACE(int{proto});
    auto f = first_packet(kDstMac, kSrcMac, be4("10.88.0.3"), be4("10.88.0.2"), proto, 80);
    ASSERT_GE(f.size(), 14u + 20u + 8u);
    EXPECT_EQ(get16(f, 12), 0x0800);
    Bytes ip(f.begin() + 14, f.begin() + 34), l4(f.begin() + 34, f.end());
    EXPECT_EQ(ip[0], 0x45);
    EXPECT_EQ(ip[8], 64);
    EXPECT_EQ(ip[9], proto);
    EXPECT_EQ(get16(ip, 2), ip.size() + l4.size());
    EXPECT_EQ(ones_sum(ip), 0xffff);
    if (proto == IPPROTO_ICMP) {
      EXPECT_EQ(l4[0], 8);              // echo request
      EXPECT_EQ(ones_sum(l4), 0xffff);  // its message alone
    } else {
      EXPECT_EQ(ones_sum(pseudo4(ip, l4)), 0xffff);
    }
  }
}

}  // namespace
}  // namespace moat
