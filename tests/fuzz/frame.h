// frame.h - reading and patching raw frames for the fuzzer: big-endian field
// access, a parse of the headers the model and the comparison need (Ethernet,
// IPv4 with its L4 header, an ICMP error's quoted packet), checksum
// validity, the offsets of every checksum field, and hex text.
//
// Written for the fuzzer alone (not shared with the programs): its parse is
// the model's own reading of a frame. Addresses are host order here.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace fuzz {

using Bytes = std::vector<uint8_t>;
using Mac = std::array<uint8_t, 6>;
using Ip6Addr = std::array<uint8_t, 16>;  // network byte order

inline constexpr uint16_t kEthIp = 0x0800, kEthArp = 0x0806, kEthIp6 = 0x86dd;
inline constexpr uint16_t kEthVlan = 0x8100, kEthQinQ = 0x88a8;
inline constexpr uint8_t kTcpFin = 0x01, kTcpSyn = 0x02, kTcpRst = 0x04, kTcpPsh = 0x08,
                         kTcpAck = 0x10;

uint16_t get16(const Bytes& b, size_t off);
uint32_t get32(const Bytes& b, size_t off);
void put16(Bytes& b, size_t off, uint16_t v);
void put32(Bytes& b, size_t off, uint32_t v);
Mac mac_at(const Bytes& b, size_t off);
void put_mac(Bytes& b, size_t off, const Mac& m);
bool is_unicast(const Mac& m);

// A flow's addresses, ports and protocol (host order). For ICMP echo the
// identifier is the request's source "port" and the reply's destination one.
struct Tuple {
  uint32_t saddr = 0, daddr = 0;
  uint16_t sport = 0, dport = 0;
  uint8_t proto = 0;
  auto operator<=>(const Tuple&) const = default;
  Tuple reversed() const { return {daddr, saddr, dport, sport, proto}; }
};

// An IPv4 header at `off` and what follows it, as far as the frame goes.
struct Ip4 {
  size_t off = 0;    // of the IPv4 header in the frame (or quote)
  size_t hlen = 0;   // ihl * 4
  size_t avail = 0;  // bytes from `off` to the end of the buffer
  uint8_t version = 0, ihl = 0, ttl = 0, proto = 0;
  uint16_t tot_len = 0, id = 0, frag = 0;  // frag: flags + offset, as on the wire
  uint32_t src = 0, dst = 0;
  bool header_ok = false;  // version 4, ihl >= 5, the header present, tot_len >= ihl*4

  size_t l4_off() const { return off + hlen; }
  size_t l4_avail() const { return avail > hlen ? avail - hlen : 0; }
  uint16_t frag_offset() const { return frag & 0x1fff; }
  bool more_fragments() const { return frag & 0x2000; }
  bool later_fragment() const { return frag_offset() != 0; }
  bool fragment() const { return frag_offset() != 0 || more_fragments(); }
};

// The IPv4 header at `off` of `b` (header_ok false when it is not one).
Ip4 parse_ip4(const Bytes& b, size_t off);

// The L4 facts of a first (or only) fragment.
struct L4 {
  bool complete = false;  // the protocol's fixed header is all there
  uint16_t sport = 0, dport = 0;
  uint8_t tcp_flags = 0;
  uint32_t tcp_seq = 0;
  uint8_t icmp_type = 0, icmp_code = 0;
  uint16_t icmp_id = 0;
};
// TCP 20 bytes, UDP 8, ICMP 8, SCTP 12 (its common header); other protocols
// have no header of their own and are "complete" with nothing.
L4 parse_l4(const Bytes& b, const Ip4& ip);
bool is_icmp_error(uint8_t type);  // 3, 11, 12
bool has_ports(uint8_t proto);     // TCP, UDP, SCTP

// The tuple of a packet whose L4 header is known (echo ids as ports).
Tuple tuple_of(const Ip4& ip, const L4& l4);

// Where each checksum of an IPv4 frame sits (IP header, L4, an ICMP error's
// quoted IP header), for comparisons that let a rewrite change them.
std::vector<size_t> checksum_offsets(const Bytes& frame);
// "" when the IPv4 header checksum and the L4 checksum (TCP/UDP with the
// pseudo header, UDP 0 meaning none; ICMP) of a frame are right; non-IPv4
// frames and later fragments' L4 are not checked.
std::string checksum_errors(const Bytes& frame);
bool ip_header_checksum_ok(const Bytes& b, size_t off, size_t hlen);

// ---- IPv6 (the generator's and the script's reading; the model walks headers itself) --

Ip6Addr ip6_at(const Bytes& b, size_t off);  // zero where the frame ends
void put_ip6(Bytes& b, size_t off, const Ip6Addr& a);
Ip6Addr ip6_from_text(const char* text);  // throws on a malformed literal
std::string ip6_text(const Ip6Addr& a);
bool ip6_link_local(const Ip6Addr& a);  // fe80::/10
bool ip6_multicast(const Ip6Addr& a);   // ff00::/8
bool ip6_unspecified(const Ip6Addr& a);
// Modified EUI-64 (RFC 4291 appendix A) of `m` under fe80::/64.
Ip6Addr eui64_link_local(const Mac& m);

// An IPv6 packet's addresses and its upper layer behind any extension headers.
struct Ip6 {
  bool ok = false;  // a whole fixed header, version 6, the upper layer found
  Ip6Addr src{}, dst{};
  uint8_t hop_limit = 0;
  uint8_t proto = 0;  // the upper layer (after hop-by-hop, routing, fragment, destination options)
  size_t l4 = 0;      // its offset in the frame
  size_t end = 0;     // 14 + 40 + payload length, at most the frame's size
  bool fragment = false, later_fragment = false;
  uint16_t sport = 0, dport = 0;  // TCP, UDP; ICMPv6 echo: the identifier as sport
  uint8_t tcp_flags = 0, icmp_type = 0;
};
bool ipv6_frame(const Bytes& f);
Ip6 parse_ip6(const Bytes& f);

// Recomputes an IPv6 frame's TCP, UDP or ICMPv6 checksum (unfragmented, unextended or behind
// extension headers) over the IPv6 pseudo header.
void fix_checksums6(Bytes& frame);

std::string hex(const Bytes& b);
std::optional<Bytes> from_hex(const std::string& s);

// Recomputes the IPv4 header checksum and, for a first fragment, the L4
// checksum (TCP, UDP unless 0, ICMP), as a host would send the frame.
void fix_checksums(Bytes& frame);

}  // namespace fuzz
