// packet.h - a small builder for the frames the BPF tests feed to
// BPF_PROG_TEST_RUN.
//
// Each function builds one header and appends the payload it is given, so a
// frame reads inside out:
//     eth(ETH_P_IP, ipv4({.src = a, .dst = b}, tcp(40000, 80)))
// Lengths that depend on the payload (IPv4 tot_len, IPv6 payload_len, UDP
// length) are filled in, and the IPv4 header checksum is correct, unless a
// field is explicitly overridden to build a malformed packet. L4 checksums are
// left zero: moat's programs never read them.
#pragma once

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <netinet/in.h>

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace pkt {

using Bytes = std::vector<uint8_t>;

// Network-byte-order addresses from text, so tables can say "172.20.0.2".
inline in_addr_t ip4(const char* text) {
  in_addr a{};
  if (inet_pton(AF_INET, text, &a) != 1)
    throw std::invalid_argument(std::string("bad IPv4 address: ") + text);
  return a.s_addr;
}

inline in6_addr ip6(const char* text) {
  in6_addr a{};
  if (inet_pton(AF_INET6, text, &a) != 1)
    throw std::invalid_argument(std::string("bad IPv6 address: ") + text);
  return a;
}

namespace detail {
inline void put8(Bytes& b, uint8_t v) { b.push_back(v); }
inline void put16(Bytes& b, uint16_t v)  // host order in, big endian out
{
  b.push_back(uint8_t(v >> 8));
  b.push_back(uint8_t(v));
}
inline void put_raw(Bytes& b, const void* p, size_t n) {
  auto* c = static_cast<const uint8_t*>(p);
  b.insert(b.end(), c, c + n);
}
inline void append(Bytes& b, std::span<const uint8_t> tail) {
  b.insert(b.end(), tail.begin(), tail.end());
}
}  // namespace detail

// RFC 1071 ones'-complement sum, returned ready to store (host order).
inline uint16_t inet_checksum(std::span<const uint8_t> data) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < data.size(); i += 2) sum += uint32_t(data[i]) << 8 | data[i + 1];
  if (data.size() % 2) sum += uint32_t(data.back()) << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return uint16_t(~sum);
}

// ---- L2 ---------------------------------------------------------------------

using Mac = std::array<uint8_t, 6>;
inline constexpr Mac kContainerMac = {0x02, 0x42, 0xac, 0x14, 0x00, 0x02};
inline constexpr Mac kPeerMac = {0x02, 0x42, 0xac, 0x14, 0x00, 0x03};
inline constexpr Mac kBroadcast = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

inline Bytes eth(uint16_t ethertype, std::span<const uint8_t> payload, const Mac& dst = kPeerMac,
                 const Mac& src = kContainerMac) {
  Bytes b;
  detail::put_raw(b, dst.data(), dst.size());
  detail::put_raw(b, src.data(), src.size());
  detail::put16(b, ethertype);
  detail::append(b, payload);
  return b;
}

// An 802.1Q tag: goes between eth(0x8100, ...) and the inner payload.
inline Bytes vlan(uint16_t vid, uint16_t inner_ethertype, std::span<const uint8_t> payload) {
  Bytes b;
  detail::put16(b, vid & 0x0fff);
  detail::put16(b, inner_ethertype);
  detail::append(b, payload);
  return b;
}

struct Arp {
  uint16_t op = 1;  // 1 request, 2 reply
  in_addr_t spa = 0;
  in_addr_t tpa = 0;
  uint8_t hlen = 6;  // overridable to build a malformed request
};

inline Bytes arp(const Arp& a) {
  Bytes b;
  detail::put16(b, 1);       // Ethernet
  detail::put16(b, 0x0800);  // IPv4
  detail::put8(b, a.hlen);
  detail::put8(b, 4);
  detail::put16(b, a.op);
  detail::put_raw(b, kContainerMac.data(), 6);
  detail::put_raw(b, &a.spa, 4);
  detail::put_raw(b, Mac{}.data(), 6);
  detail::put_raw(b, &a.tpa, 4);
  return b;
}

// ---- IPv4 -------------------------------------------------------------------

struct Ip4 {
  in_addr_t src = 0;
  in_addr_t dst = 0;
  uint8_t proto = IPPROTO_TCP;
  uint8_t option_words = 0;  // 4-byte words of (NOP) options actually emitted
  uint16_t frag = 0;         // flags + fragment offset, host order: IP_MF | offset/8
  uint8_t ttl = 64;
  // Lies, for malformed packets: written instead of the computed values.
  std::optional<uint8_t> ihl = std::nullopt;
  std::optional<uint16_t> tot_len = std::nullopt;
};

inline constexpr uint16_t kMoreFragments = 0x2000;
inline constexpr uint16_t kDontFragment = 0x4000;

inline Bytes ipv4(const Ip4& h, std::span<const uint8_t> payload) {
  const size_t hlen = 20 + 4 * size_t(h.option_words);
  Bytes b;
  detail::put8(b, uint8_t(0x40 | (h.ihl.value_or(uint8_t(hlen / 4)) & 0x0f)));
  detail::put8(b, 0);  // DSCP/ECN
  detail::put16(b, h.tot_len.value_or(uint16_t(hlen + payload.size())));
  detail::put16(b, 0x1234);  // id
  detail::put16(b, h.frag);
  detail::put8(b, h.ttl);
  detail::put8(b, h.proto);
  detail::put16(b, 0);  // checksum, filled below
  detail::put_raw(b, &h.src, 4);
  detail::put_raw(b, &h.dst, 4);
  b.resize(hlen, 1);  // options: IPOPT_NOP (1) padding
  const uint16_t sum = inet_checksum(b);
  b[10] = uint8_t(sum >> 8);
  b[11] = uint8_t(sum);
  detail::append(b, payload);
  return b;
}

// ---- L4 ---------------------------------------------------------------------

inline constexpr uint8_t kSyn = 0x02;
inline constexpr uint8_t kAck = 0x10;

inline Bytes tcp(uint16_t sport, uint16_t dport, uint8_t flags = kAck) {
  Bytes b;
  detail::put16(b, sport);
  detail::put16(b, dport);
  detail::put_raw(b, "\0\0\0\1\0\0\0\1", 8);  // seq, ack
  detail::put8(b, 5 << 4);                    // data offset
  detail::put8(b, flags);
  detail::put16(b, 64240);  // window
  detail::put16(b, 0);      // checksum
  detail::put16(b, 0);      // urgent
  return b;
}

inline Bytes udp(uint16_t sport, uint16_t dport, std::span<const uint8_t> payload = {}) {
  Bytes b;
  detail::put16(b, sport);
  detail::put16(b, dport);
  detail::put16(b, uint16_t(8 + payload.size()));
  detail::put16(b, 0);  // checksum: optional in IPv4
  detail::append(b, payload);
  return b;
}

// ICMP (v4) and ICMPv6 share the type/code/checksum/4-byte-rest layout.
inline Bytes icmp(uint8_t type, uint8_t code = 0, std::span<const uint8_t> body = {}) {
  Bytes b;
  detail::put8(b, type);
  detail::put8(b, code);
  detail::put16(b, 0);                // checksum
  detail::put_raw(b, "\0\1\0\1", 4);  // id/seq, or reserved
  detail::append(b, body);
  return b;
}

// ---- IPv6 -------------------------------------------------------------------

struct Ip6 {
  in6_addr src{};
  in6_addr dst{};
  uint8_t next = IPPROTO_ICMPV6;
  uint8_t hop_limit = 255;
};

inline Bytes ipv6(const Ip6& h, std::span<const uint8_t> payload) {
  Bytes b;
  detail::put16(b, 0x6000);  // version 6, traffic class, flow label
  detail::put16(b, 0);
  detail::put16(b, uint16_t(payload.size()));
  detail::put8(b, h.next);
  detail::put8(b, h.hop_limit);
  detail::put_raw(b, &h.src, 16);
  detail::put_raw(b, &h.dst, 16);
  detail::append(b, payload);
  return b;
}

// The 8-byte hop-by-hop header MLD carries: a router-alert option + PadN.
inline Bytes hop_by_hop(uint8_t next, std::span<const uint8_t> payload) {
  Bytes b = {next, 0, 5, 2, 0, 0, 1, 0};
  detail::append(b, payload);
  return b;
}

// ---- helpers ----------------------------------------------------------------

inline Bytes truncated(Bytes b, size_t len) {
  if (len > b.size()) throw std::invalid_argument("truncated(): frame is already shorter");
  b.resize(len);
  return b;
}

// One byte overwritten, for fields the builders always get right (versions).
inline Bytes patched(Bytes b, size_t offset, uint8_t value) {
  b.at(offset) = value;
  return b;
}

}  // namespace pkt
