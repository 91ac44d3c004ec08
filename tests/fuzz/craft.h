// craft.h - building the frames the generator sends: IPv4 packets of every
// protocol the programs know (with correct checksums), ICMP errors quoting
// a packet, ARP and IPv6 neighbour discovery/MLD. Built on the BPF tests'
// packet builder (tests/bpf/packet.h).
#pragma once

#include <cstdint>

#include "frame.h"

namespace fuzz {

struct Craft {
  Mac dst_mac{}, src_mac{};
  uint32_t src = 0, dst = 0;  // host order
  uint8_t proto = 6;
  uint16_t sport = 0, dport = 0;  // ICMP echo: sport is the identifier
  uint8_t tcp_flags = kTcpSyn;
  uint8_t icmp_type = 8, icmp_code = 0;
  uint16_t ip_id = 1;
  uint8_t ttl = 64;
  uint16_t frag = 0;  // flags and offset as on the wire
  Bytes payload;
  Bytes quoted;  // ICMP errors: what they quote
};

Bytes build(const Craft& c);

// The IPv4 packet of `frame` (no Ethernet header), cut to its header and 8
// bytes of L4 unless `full`, as an ICMP error quotes it.
Bytes quote_of(const Bytes& frame, bool full);

struct ArpCraft {
  Mac eth_dst{}, eth_src{};
  uint16_t op = 1;
  Mac sha{};
  uint32_t spa = 0;
  Mac tha{};
  uint32_t tpa = 0;
  size_t trailer = 0;  // padding bytes after the 28-byte message
};
Bytes build_arp(const ArpCraft& a);

// An IPv6 packet: TCP, UDP, ICMPv6 (echo, errors quoting a packet, link
// messages with a body), or another protocol's bytes, behind optional
// extension headers, checksummed over the IPv6 pseudo header.
struct Craft6 {
  Mac dst_mac{}, src_mac{};
  Ip6Addr src{}, dst{};
  uint8_t proto = 6;
  uint16_t sport = 0, dport = 0;  // ICMPv6 echo: sport is the identifier
  uint8_t tcp_flags = kTcpSyn;
  uint8_t icmp_type = 128, icmp_code = 0;
  uint8_t hop_limit = 64;
  // Extension headers in order: 0 hop-by-hop (router alert), 60 destination
  // options, 43 routing (type 0, segments left 0), 44 fragment (frag_offset, more).
  std::vector<uint8_t> ext;
  uint16_t frag_offset = 0;  // in 8-byte units
  bool more_fragments = false;
  Bytes body;     // ICMPv6: what follows its first 8 bytes (echo: id sport, seq 7, payload)
  Bytes payload;  // TCP, UDP, other protocols
};
Bytes build6(const Craft6& c);

// An ICMPv6 message of `type` from the container's link-local address.
// hop_by_hop: behind a hop-by-hop header, as MLD is sent.
Bytes build_icmp6(const Mac& eth_dst, const Mac& eth_src, uint8_t type, uint8_t hop_limit,
                  bool hop_by_hop, uint8_t next_header = 58);

}  // namespace fuzz
