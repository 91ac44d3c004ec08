// packet.h - a small builder for the frames the BPF tests feed to
// BPF_PROG_TEST_RUN.
//
// Each function builds one header and appends the payload it is given, so a
// frame reads inside out:
//     eth(ETH_P_IP, ipv4({.src = a, .dst = b}, tcp(40000, 80)))
// Lengths that depend on the payload (IPv4 tot_len, IPv6 payload_len, UDP
// length) are filled in, and the IPv4 header checksum is correct, unless a
// field is explicitly overridden to build a malformed packet. L4 checksums are
// left zero unless Ip4::l4_checksum asks ipv4() to fill in the TCP, UDP or
// ICMP checksum of its payload (the NAT tests, which must see the programs
// keep them right). checksum_errors() checks a finished frame's checksums
// independently of the builder.
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

// The defaults make a frame both from and to the container under test (the
// harness gives every endpoint kContainerMac), so one table row works at
// either hook; the MAC tests pass their own.
inline Bytes eth(uint16_t ethertype, std::span<const uint8_t> payload,
                 const Mac& dst = kContainerMac, const Mac& src = kContainerMac) {
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
  Mac sha = kContainerMac;
};

inline Bytes arp(const Arp& a) {
  Bytes b;
  detail::put16(b, 1);       // Ethernet
  detail::put16(b, 0x0800);  // IPv4
  detail::put8(b, a.hlen);
  detail::put8(b, 4);
  detail::put16(b, a.op);
  detail::put_raw(b, a.sha.data(), 6);
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
  // Fill in the L4 checksum of the payload (TCP and UDP with the pseudo
  // header, ICMP over the message). Ignored for fragments, whose L4 header
  // and data are not all here.
  bool l4_checksum = false;
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
  const size_t l4_off = b.size();
  detail::append(b, payload);
  if (h.l4_checksum && (h.frag & 0x3fff) == 0) {
    std::span<uint8_t> l4(b.begin() + l4_off, b.end());
    size_t csum_off = 0;
    Bytes summed;  // pseudo header (TCP, UDP) + the L4 bytes
    if (h.proto == IPPROTO_TCP || h.proto == IPPROTO_UDP) {
      csum_off = h.proto == IPPROTO_TCP ? 16 : 6;
      detail::put_raw(summed, &h.src, 4);
      detail::put_raw(summed, &h.dst, 4);
      detail::put8(summed, 0);
      detail::put8(summed, h.proto);
      detail::put16(summed, uint16_t(l4.size()));
    } else if (h.proto == IPPROTO_ICMP) {
      csum_off = 2;
    } else {
      throw std::invalid_argument("ipv4(): no L4 checksum for this protocol");
    }
    if (l4.size() < csum_off + 2) throw std::invalid_argument("ipv4(): L4 header too short");
    l4[csum_off] = l4[csum_off + 1] = 0;
    detail::append(summed, l4);
    uint16_t l4sum = inet_checksum(summed);
    if (h.proto == IPPROTO_UDP && l4sum == 0) l4sum = 0xffff;  // 0 means "none"
    l4[csum_off] = uint8_t(l4sum >> 8);
    l4[csum_off + 1] = uint8_t(l4sum);
  }
  return b;
}

// ---- L4 ---------------------------------------------------------------------

inline constexpr uint8_t kSyn = 0x02;
inline constexpr uint8_t kAck = 0x10;

// A TCP header with sequence number `seq` and acknowledgement `ack`.
inline Bytes tcp_at(uint16_t sport, uint16_t dport, uint8_t flags, uint32_t seq, uint32_t ack,
                    std::span<const uint8_t> payload = {}) {
  Bytes b;
  detail::put16(b, sport);
  detail::put16(b, dport);
  detail::put16(b, uint16_t(seq >> 16));
  detail::put16(b, uint16_t(seq));
  detail::put16(b, uint16_t(ack >> 16));
  detail::put16(b, uint16_t(ack));
  detail::put8(b, 5 << 4);  // data offset
  detail::put8(b, flags);
  detail::put16(b, 64240);  // window
  detail::put16(b, 0);      // checksum
  detail::put16(b, 0);      // urgent
  detail::append(b, payload);
  return b;
}

// Both sides of a connection whose initial sequence numbers are 0: a SYN
// (and a SYN-ACK) at 0, every later segment at 1, acknowledging 1. So the
// conntrack's window (abi.h, MOAT_CT_TCP_AHEAD) takes tests' RSTs and FINs
// as real ones.
inline Bytes tcp(uint16_t sport, uint16_t dport, uint8_t flags = kAck,
                std::span<const uint8_t> payload = {}) {
  const bool syn = flags & kSyn;
  return tcp_at(sport, dport, flags, syn ? 0 : 1, syn && !(flags & kAck) ? 0 : 1, payload);
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

// The SCTP common header (ports, verification tag, CRC32c left 0) and a
// chunk's worth of bytes. The CRC32c does not cover the IP addresses, so an
// address rewrite must leave all of these bytes alone.
inline Bytes sctp(uint16_t sport, uint16_t dport, std::span<const uint8_t> chunks = {}) {
  Bytes b;
  detail::put16(b, sport);
  detail::put16(b, dport);
  detail::put_raw(b, "\x12\x34\x56\x78\0\0\0\0", 8);  // vtag, crc32c
  detail::append(b, chunks);
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

inline constexpr uint8_t kEchoReply = 0;
inline constexpr uint8_t kDestUnreach = 3;
inline constexpr uint8_t kEchoRequest = 8;
inline constexpr uint8_t kTimeExceeded = 11;
inline constexpr uint8_t kPortUnreach = 3;  // codes of kDestUnreach
inline constexpr uint8_t kFragNeeded = 4;

// An ICMP echo request or reply with its identifier and sequence number.
inline Bytes icmp_echo(uint8_t type, uint16_t id, uint16_t seq,
                       std::span<const uint8_t> payload = {}) {
  Bytes b;
  detail::put8(b, type);
  detail::put8(b, 0);
  detail::put16(b, 0);  // checksum
  detail::put16(b, id);
  detail::put16(b, seq);
  detail::append(b, payload);
  return b;
}

// An ICMP error quoting `quoted` (an IPv4 header and what follows of it);
// `mtu` is the next-hop MTU of a fragmentation-needed, 0 otherwise.
inline Bytes icmp_error(uint8_t type, uint8_t code, std::span<const uint8_t> quoted,
                        uint16_t mtu = 0) {
  Bytes b;
  detail::put8(b, type);
  detail::put8(b, code);
  detail::put16(b, 0);  // checksum
  detail::put16(b, 0);  // unused
  detail::put16(b, mtu);
  detail::append(b, quoted);
  return b;
}

// ---- IPv6 -------------------------------------------------------------------

struct Ip6 {
  in6_addr src{};
  in6_addr dst{};
  uint8_t next = IPPROTO_ICMPV6;
  uint8_t hop_limit = 255;
  // Fill in the checksum of a TCP, UDP or ICMPv6 payload right after the
  // fixed header: all three cover the pseudo header (RFC 8200 8.1).
  bool l4_checksum = false;
};

namespace detail {
inline size_t l6_csum_off(uint8_t next) {
  return next == IPPROTO_TCP ? 16 : next == IPPROTO_UDP ? 6 : next == IPPROTO_ICMPV6 ? 2 : 0;
}
// The IPv6 pseudo header of an upper-layer packet of `len` bytes.
inline Bytes pseudo6(const uint8_t* src, const uint8_t* dst, uint8_t next, size_t len) {
  Bytes b(src, src + 16);
  b.insert(b.end(), dst, dst + 16);
  put16(b, uint16_t(len >> 16));
  put16(b, uint16_t(len));
  put16(b, 0);
  put8(b, 0);
  put8(b, next);
  return b;
}
}  // namespace detail

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
  if (h.l4_checksum) {
    const size_t off = detail::l6_csum_off(h.next);
    if (!off || payload.size() < off + 2)
      throw std::invalid_argument("ipv6(): no L4 checksum for this payload");
    std::span<uint8_t> l4(b.begin() + 40, b.end());
    l4[off] = l4[off + 1] = 0;
    Bytes summed = detail::pseudo6(&b[8], &b[24], h.next, l4.size());
    detail::append(summed, l4);
    uint16_t sum = inet_checksum(summed);
    if (h.next == IPPROTO_UDP && sum == 0) sum = 0xffff;
    l4[off] = uint8_t(sum >> 8);
    l4[off + 1] = uint8_t(sum);
  }
  return b;
}

// The 8-byte hop-by-hop header MLD carries: a router-alert option + PadN.
inline Bytes hop_by_hop(uint8_t next, std::span<const uint8_t> payload) {
  Bytes b = {next, 0, 5, 2, 0, 0, 1, 0};
  detail::append(b, payload);
  return b;
}

// ---- checking ---------------------------------------------------------------

namespace detail {
// Big-endian 16-bit words summed with end-around carry; a correct checksum
// makes a covered range sum to 0xffff.
inline uint32_t add_words(uint32_t sum, std::span<const uint8_t> d) {
  for (size_t i = 0; i < d.size(); i += 2)
    sum += uint32_t(d[i]) << 8 | (i + 1 < d.size() ? d[i + 1] : 0);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return sum;
}
inline bool ipv4_header_ok(std::span<const uint8_t> ip, std::string& why, const char* which) {
  if (ip.size() < 20 || ip[0] >> 4 != 4) {
    why += std::string(which) + " IPv4 header missing; ";
    return false;
  }
  const size_t hlen = size_t(ip[0] & 0x0f) * 4;
  if (hlen < 20 || ip.size() < hlen) {
    why += std::string(which) + " IPv4 header length bad; ";
    return false;
  }
  if (add_words(0, ip.first(hlen)) != 0xffff) why += std::string(which) + " IPv4 header checksum bad; ";
  return true;
}
}  // namespace detail

// Verifies, from nothing but the frame's bytes, the IPv4 header checksum and
// the L4 checksum (TCP and UDP with their pseudo header, a UDP checksum of 0
// accepted as "none"; ICMP over the message, and for ICMP errors also the
// quoted IPv4 header's checksum). Returns "" when all are right, else what is
// wrong. Fragments' L4 is not checked. IPv6 (checksum_errors6): the
// TCP, UDP or ICMPv6 checksum right after the fixed header, with the
// pseudo header; an ICMPv6 error's quote is payload to it.
inline std::string checksum_errors6(std::span<const uint8_t> ip) {
  if (ip.size() < 40) return "IPv6 header missing; ";
  const size_t len = size_t(ip[4]) << 8 | ip[5];
  if (40 + len > ip.size()) return "IPv6 payload length bad; ";
  const uint8_t next = ip[6];
  const size_t off = detail::l6_csum_off(next);
  if (!off) return "";  // extension headers, or a protocol without a checksum
  const std::span<const uint8_t> l4 = ip.subspan(40, len);
  if (l4.size() < off + 2) return "L4 header missing; ";
  if (next == IPPROTO_UDP && l4[6] == 0 && l4[7] == 0) return "UDP over IPv6 without checksum; ";
  if (detail::add_words(detail::add_words(0, detail::pseudo6(&ip[8], &ip[24], next, l4.size())),
                        l4) != 0xffff)
    return next == IPPROTO_TCP   ? "TCP checksum bad; "
           : next == IPPROTO_UDP ? "UDP checksum bad; "
                                 : "ICMPv6 checksum bad; ";
  return "";
}

inline std::string checksum_errors(std::span<const uint8_t> frame) {
  std::string why;
  if (frame.size() >= 14 && frame[12] == 0x86 && frame[13] == 0xdd)
    return checksum_errors6(frame.subspan(14));
  if (frame.size() < 14 || frame[12] != 0x08 || frame[13] != 0x00) return why;
  const std::span<const uint8_t> ip = frame.subspan(14);
  if (!detail::ipv4_header_ok(ip, why, "outer")) return why;
  const size_t hlen = size_t(ip[0] & 0x0f) * 4;
  const size_t tot = size_t(ip[2]) << 8 | ip[3];
  if (tot < hlen || tot > ip.size()) return why + "IPv4 total length bad; ";
  if ((size_t(ip[6]) << 8 | ip[7]) & 0x3fff) return why;  // a fragment
  const std::span<const uint8_t> l4 = ip.subspan(hlen, tot - hlen);
  const uint8_t proto = ip[9];
  if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
    if (proto == IPPROTO_UDP && l4.size() >= 8 && l4[6] == 0 && l4[7] == 0) return why;
    const uint8_t pseudo[] = {ip[12], ip[13], ip[14], ip[15], ip[16], ip[17], ip[18], ip[19], 0,
                              proto,  uint8_t(l4.size() >> 8), uint8_t(l4.size())};
    if (detail::add_words(detail::add_words(0, pseudo), l4) != 0xffff)
      why += proto == IPPROTO_TCP ? "TCP checksum bad; " : "UDP checksum bad; ";
  } else if (proto == IPPROTO_ICMP) {
    if (l4.size() < 8) return why + "ICMP header missing; ";
    if (detail::add_words(0, l4) != 0xffff) why += "ICMP checksum bad; ";
    if (l4[0] == 3 || l4[0] == 11 || l4[0] == 12) detail::ipv4_header_ok(l4.subspan(8), why, "quoted");
  }
  return why;
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
