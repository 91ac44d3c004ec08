// craft.cpp - frame construction for craft.h, through tests/bpf/packet.h.
#include "craft.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

#include "packet.h"

namespace fuzz {
namespace {

pkt::Mac pmac(const Mac& m) { return pkt::Mac{m[0], m[1], m[2], m[3], m[4], m[5]}; }

Bytes l4_of(const Craft& c) {
  switch (c.proto) {
    case IPPROTO_TCP:
      return pkt::tcp(c.sport, c.dport, c.tcp_flags, c.payload);
    case IPPROTO_UDP:
      return pkt::udp(c.sport, c.dport, c.payload);
    case IPPROTO_SCTP:
      return pkt::sctp(c.sport, c.dport, c.payload);
    case IPPROTO_ICMP:
      if (is_icmp_error(c.icmp_type))
        return pkt::icmp_error(c.icmp_type, c.icmp_code, c.quoted,
                               c.icmp_type == 3 && c.icmp_code == 4 ? 1400 : 0);
      return pkt::icmp_echo(c.icmp_type, c.sport, 7, c.payload);
    default:
      return c.payload;
  }
}

}  // namespace

Bytes build(const Craft& c) {
  pkt::Ip4 h;
  h.src = htonl(c.src);
  h.dst = htonl(c.dst);
  h.proto = c.proto;
  h.frag = c.frag;
  h.ttl = c.ttl;
  h.l4_checksum = c.proto == IPPROTO_TCP || c.proto == IPPROTO_UDP || c.proto == IPPROTO_ICMP;
  Bytes f = pkt::eth(kEthIp, pkt::ipv4(h, l4_of(c)), pmac(c.dst_mac), pmac(c.src_mac));
  put16(f, 14 + 4, c.ip_id);
  fix_checksums(f);
  return f;
}

Bytes quote_of(const Bytes& frame, bool full) {
  const Ip4 ip = parse_ip4(frame, 14);
  size_t end = frame.size();
  if (ip.header_ok && ip.tot_len <= ip.avail) end = ip.off + ip.tot_len;
  if (!full && ip.header_ok) end = std::min(end, ip.l4_off() + 8);
  if (end <= 14) return {};
  return Bytes(frame.begin() + 14, frame.begin() + long(end));
}

Bytes build_arp(const ArpCraft& a) {
  Bytes b;
  pkt::detail::put16(b, 1);
  pkt::detail::put16(b, kEthIp);
  b.push_back(6);
  b.push_back(4);
  pkt::detail::put16(b, a.op);
  b.insert(b.end(), a.sha.begin(), a.sha.end());
  const uint32_t spa = htonl(a.spa), tpa = htonl(a.tpa);
  pkt::detail::put_raw(b, &spa, 4);
  b.insert(b.end(), a.tha.begin(), a.tha.end());
  pkt::detail::put_raw(b, &tpa, 4);
  b.resize(b.size() + a.trailer, 0);
  return pkt::eth(kEthArp, b, pmac(a.eth_dst), pmac(a.eth_src));
}

Bytes build6(const Craft6& c) {
  Bytes l4;
  switch (c.proto) {
    case IPPROTO_TCP:
      l4 = pkt::tcp(c.sport, c.dport, c.tcp_flags, c.payload);
      break;
    case IPPROTO_UDP:
      l4 = pkt::udp(c.sport, c.dport, c.payload);
      break;
    case IPPROTO_ICMPV6:
      if (c.body.empty() && (c.icmp_type == 128 || c.icmp_type == 129)) {
        l4 = pkt::icmp_echo(c.icmp_type, c.sport, 7, c.payload);
        l4[1] = c.icmp_code;
      } else {
        l4 = pkt::icmp(c.icmp_type, c.icmp_code, c.body);
      }
      break;
    default:
      l4 = c.payload;
  }
  if (c.proto == IPPROTO_UDP && l4.size() >= 6) put16(l4, 4, uint16_t(l4.size()));
  // Extension headers, innermost first.
  uint8_t next = c.proto;
  for (auto it = c.ext.rbegin(); it != c.ext.rend(); ++it) {
    Bytes h;
    switch (*it) {
      case 0:
        h = {next, 0, 5, 2, 0, 0, 1, 0};  // router alert + PadN
        break;
      case 43:
        h = {next, 0, 0, 0, 0, 0, 0, 0};  // type 0, segments left 0
        break;
      case 44: {
        const uint16_t off = uint16_t(c.frag_offset << 3 | (c.more_fragments ? 1 : 0));
        h = {next, 0, uint8_t(off >> 8), uint8_t(off), 0x12, 0x34, 0x56, 0x78};
        break;
      }
      default:
        h = {next, 0, 1, 4, 0, 0, 0, 0};  // PadN
    }
    h.insert(h.end(), l4.begin(), l4.end());
    l4 = std::move(h);
    next = *it;
  }
  pkt::Ip6 h;
  std::memcpy(&h.src, c.src.data(), 16);
  std::memcpy(&h.dst, c.dst.data(), 16);
  h.next = next;
  h.hop_limit = c.hop_limit;
  Bytes f = pkt::eth(kEthIp6, pkt::ipv6(h, l4), pmac(c.dst_mac), pmac(c.src_mac));
  fix_checksums6(f);
  return f;
}

Bytes build_icmp6(const Mac& eth_dst, const Mac& eth_src, uint8_t type, uint8_t hop_limit,
                  bool hop_by_hop, uint8_t next_header) {
  pkt::Ip6 h;
  h.src = pkt::ip6("fe80::42:acff:fe14:2");
  h.dst = type == 135 ? pkt::ip6("ff02::1:ff14:3") : pkt::ip6("ff02::1");
  h.hop_limit = hop_limit;
  Bytes body = next_header == IPPROTO_ICMPV6 ? pkt::icmp(type, 0, Bytes(16, 0xfe))
                                             : pkt::udp(40000, 53, Bytes(8, 1));
  if (hop_by_hop) {
    h.next = IPPROTO_HOPOPTS;
    body = pkt::hop_by_hop(next_header, body);
  } else {
    h.next = next_header;
  }
  return pkt::eth(kEthIp6, pkt::ipv6(h, body), pmac(eth_dst), pmac(eth_src));
}

}  // namespace fuzz
