// frame.cpp - field access, header parsing, checksums and hex for frame.h.
#include "frame.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>

namespace fuzz {

uint16_t get16(const Bytes& b, size_t off) {
  return off + 2 <= b.size() ? uint16_t(b[off] << 8 | b[off + 1]) : 0;
}

uint32_t get32(const Bytes& b, size_t off) {
  return off + 4 <= b.size() ? uint32_t(get16(b, off)) << 16 | get16(b, off + 2) : 0;
}

void put16(Bytes& b, size_t off, uint16_t v) {
  if (off + 2 > b.size()) return;
  b[off] = uint8_t(v >> 8);
  b[off + 1] = uint8_t(v);
}

void put32(Bytes& b, size_t off, uint32_t v) {
  put16(b, off, uint16_t(v >> 16));
  put16(b, off + 2, uint16_t(v));
}

Mac mac_at(const Bytes& b, size_t off) {
  Mac m{};
  for (size_t i = 0; i < 6 && off + i < b.size(); i++) m[i] = b[off + i];
  return m;
}

void put_mac(Bytes& b, size_t off, const Mac& m) {
  for (size_t i = 0; i < 6 && off + i < b.size(); i++) b[off + i] = m[i];
}

bool is_unicast(const Mac& m) { return (m[0] & 1) == 0; }

Ip4 parse_ip4(const Bytes& b, size_t off) {
  Ip4 ip;
  ip.off = off;
  ip.avail = b.size() > off ? b.size() - off : 0;
  if (ip.avail < 20) return ip;
  ip.version = b[off] >> 4;
  ip.ihl = b[off] & 0x0f;
  ip.hlen = size_t(ip.ihl) * 4;
  ip.tot_len = get16(b, off + 2);
  ip.id = get16(b, off + 4);
  ip.frag = get16(b, off + 6);
  ip.ttl = b[off + 8];
  ip.proto = b[off + 9];
  ip.src = get32(b, off + 12);
  ip.dst = get32(b, off + 16);
  ip.header_ok = ip.version == 4 && ip.ihl >= 5 && ip.hlen <= ip.avail && ip.tot_len >= ip.hlen;
  return ip;
}

bool is_icmp_error(uint8_t type) { return type == 3 || type == 11 || type == 12; }

bool has_ports(uint8_t proto) {
  return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP;
}

L4 parse_l4(const Bytes& b, const Ip4& ip) {
  L4 l4;
  const size_t o = ip.l4_off(), n = ip.l4_avail();
  switch (ip.proto) {
    case IPPROTO_TCP:
      // Within the IP length too: a header in the frame's padding (a
      // tiny first fragment) is not what the receiver reassembles.
      l4.complete = n >= 20 && ip.tot_len >= ip.hlen + 20;
      if (n >= 14) l4.tcp_flags = b[o + 13];
      if (n >= 8) l4.tcp_seq = get32(b, o + 4);
      break;
    case IPPROTO_UDP:
      l4.complete = n >= 8;
      break;
    case IPPROTO_SCTP:
      l4.complete = n >= 12;
      break;
    case IPPROTO_ICMP:
      l4.complete = n >= 8;
      if (n >= 2) {
        l4.icmp_type = b[o];
        l4.icmp_code = b[o + 1];
      }
      if (n >= 6) l4.icmp_id = get16(b, o + 4);
      return l4;
    default:
      l4.complete = true;
      return l4;
  }
  if (n >= 4) {
    l4.sport = get16(b, o);
    l4.dport = get16(b, o + 2);
  }
  return l4;
}

Tuple tuple_of(const Ip4& ip, const L4& l4) {
  Tuple t{ip.src, ip.dst, 0, 0, ip.proto};
  if (has_ports(ip.proto)) {
    t.sport = l4.sport;
    t.dport = l4.dport;
  } else if (ip.proto == IPPROTO_ICMP) {
    if (l4.icmp_type == 8) t.sport = l4.icmp_id;
    if (l4.icmp_type == 0) t.dport = l4.icmp_id;
  }
  return t;
}

namespace {

uint32_t add_words(uint32_t sum, const Bytes& b, size_t off, size_t len) {
  for (size_t i = 0; i < len; i += 2)
    sum += uint32_t(b[off + i]) << 8 | (i + 1 < len ? b[off + i + 1] : 0);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return sum;
}

uint32_t pseudo_sum(const Bytes& b, const Ip4& ip, size_t l4_len) {
  uint32_t sum = add_words(0, b, ip.off + 12, 8);
  sum += ip.proto;
  sum += uint32_t(l4_len);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return sum;
}

// The IPv4 frame's header and L4 extent, when it is one whose checksums mean something.
std::optional<std::pair<Ip4, size_t>> ipv4_extent(const Bytes& frame) {
  if (frame.size() < 14 || get16(frame, 12) != kEthIp) return std::nullopt;
  const Ip4 ip = parse_ip4(frame, 14);
  if (!ip.header_ok || ip.tot_len > ip.avail) return std::nullopt;
  return std::pair{ip, size_t(ip.tot_len) - ip.hlen};
}

}  // namespace

bool ip_header_checksum_ok(const Bytes& b, size_t off, size_t hlen) {
  return off + hlen <= b.size() && add_words(0, b, off, hlen) == 0xffff;
}

std::vector<size_t> checksum_offsets(const Bytes& frame) {
  std::vector<size_t> out;
  if (frame.size() < 14 || get16(frame, 12) != kEthIp) return out;
  const Ip4 ip = parse_ip4(frame, 14);
  if (!ip.header_ok) return out;
  out.push_back(ip.off + 10);
  if (ip.later_fragment()) return out;
  const size_t o = ip.l4_off(), n = ip.l4_avail();
  if (ip.proto == IPPROTO_TCP && n >= 18) out.push_back(o + 16);
  if (ip.proto == IPPROTO_UDP && n >= 8) out.push_back(o + 6);
  if (ip.proto == IPPROTO_ICMP && n >= 4) {
    out.push_back(o + 2);
    if (n >= 8 + 20 && is_icmp_error(frame[o])) out.push_back(o + 8 + 10);
  }
  return out;
}

std::string checksum_errors(const Bytes& frame) {
  const auto ext = ipv4_extent(frame);
  if (!ext) return "";
  const auto& [ip, l4_len] = *ext;
  std::string why;
  if (!ip_header_checksum_ok(frame, ip.off, ip.hlen)) why += "IPv4 header checksum bad; ";
  if (ip.fragment()) return why;
  const size_t o = ip.l4_off();
  if (ip.proto == IPPROTO_TCP && l4_len >= 20) {
    if (add_words(pseudo_sum(frame, ip, l4_len), frame, o, l4_len) != 0xffff)
      why += "TCP checksum bad; ";
  } else if (ip.proto == IPPROTO_UDP && l4_len >= 8 && get16(frame, o + 6) != 0) {
    if (add_words(pseudo_sum(frame, ip, l4_len), frame, o, l4_len) != 0xffff)
      why += "UDP checksum bad; ";
  } else if (ip.proto == IPPROTO_ICMP && l4_len >= 8) {
    if (add_words(0, frame, o, l4_len) != 0xffff) why += "ICMP checksum bad; ";
    if (is_icmp_error(frame[o]) && l4_len >= 28) {
      const Ip4 q = parse_ip4(frame, o + 8);
      if (q.header_ok && !ip_header_checksum_ok(frame, q.off, q.hlen))
        why += "quoted IPv4 header checksum bad; ";
    }
  }
  return why;
}

void fix_checksums(Bytes& frame) {
  if (frame.size() < 14 || get16(frame, 12) != kEthIp) return;
  const Ip4 ip = parse_ip4(frame, 14);
  if (!ip.header_ok) return;
  put16(frame, ip.off + 10, 0);
  put16(frame, ip.off + 10, uint16_t(~add_words(0, frame, ip.off, ip.hlen)));
  if (ip.fragment() || ip.tot_len > ip.avail) return;
  const size_t o = ip.l4_off(), len = size_t(ip.tot_len) - ip.hlen;
  if (ip.proto == IPPROTO_TCP && len >= 20) {
    put16(frame, o + 16, 0);
    put16(frame, o + 16, uint16_t(~add_words(pseudo_sum(frame, ip, len), frame, o, len)));
  } else if (ip.proto == IPPROTO_UDP && len >= 8 && get16(frame, o + 6) != 0) {
    put16(frame, o + 6, 0);
    uint16_t sum = uint16_t(~add_words(pseudo_sum(frame, ip, len), frame, o, len));
    put16(frame, o + 6, sum ? sum : 0xffff);
  } else if (ip.proto == IPPROTO_ICMP && len >= 4) {
    put16(frame, o + 2, 0);
    put16(frame, o + 2, uint16_t(~add_words(0, frame, o, len)));
  }
}

Ip6Addr ip6_at(const Bytes& b, size_t off) {
  Ip6Addr a{};
  for (size_t i = 0; i < 16 && off + i < b.size(); i++) a[i] = b[off + i];
  return a;
}

void put_ip6(Bytes& b, size_t off, const Ip6Addr& a) {
  for (size_t i = 0; i < 16 && off + i < b.size(); i++) b[off + i] = a[i];
}

Ip6Addr ip6_from_text(const char* text) {
  Ip6Addr a{};
  if (inet_pton(AF_INET6, text, a.data()) != 1)
    throw std::invalid_argument(std::string("not an IPv6 address: ") + text);
  return a;
}

std::string ip6_text(const Ip6Addr& a) {
  char buf[INET6_ADDRSTRLEN];
  return inet_ntop(AF_INET6, a.data(), buf, sizeof buf) ? buf : "?";
}

bool ip6_link_local(const Ip6Addr& a) { return a[0] == 0xfe && (a[1] & 0xc0) == 0x80; }
bool ip6_multicast(const Ip6Addr& a) { return a[0] == 0xff; }
bool ip6_unspecified(const Ip6Addr& a) { return a == Ip6Addr{}; }

Ip6Addr eui64_link_local(const Mac& m) {
  return {0xfe, 0x80, 0,    0,    0,    0,    0,   0, uint8_t(m[0] ^ 2),
          m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]};
}

bool ipv6_frame(const Bytes& f) { return f.size() >= 14 + 40 && get16(f, 12) == kEthIp6; }

Ip6 parse_ip6(const Bytes& f) {
  Ip6 p;
  if (!ipv6_frame(f) || f[14] >> 4 != 6) return p;
  p.src = ip6_at(f, 14 + 8);
  p.dst = ip6_at(f, 14 + 24);
  p.hop_limit = f[14 + 7];
  p.end = std::min(f.size(), size_t(14 + 40 + get16(f, 14 + 4)));
  uint8_t next = f[14 + 6];
  size_t off = 14 + 40;
  for (int i = 0; i < 10 && !p.later_fragment; i++) {
    if (next == 44) {
      if (off + 8 > f.size()) return p;
      p.fragment = true;
      p.later_fragment = (get16(f, off + 2) & 0xfff8) != 0;
      next = f[off];
      off += 8;
    } else if (next == 0 || next == 43 || next == 60 || next == 51) {
      if (off + 2 > f.size()) return p;
      const size_t len = next == 51 ? (size_t(f[off + 1]) + 2) * 4 : (size_t(f[off + 1]) + 1) * 8;
      next = f[off];
      off += len;
    } else {
      break;
    }
  }
  p.proto = next;
  p.l4 = off;
  p.ok = off <= f.size();
  if (!p.ok || p.later_fragment) return p;
  if ((next == IPPROTO_TCP || next == IPPROTO_UDP) && off + 4 <= f.size()) {
    p.sport = get16(f, off);
    p.dport = get16(f, off + 2);
    if (next == IPPROTO_TCP && off + 14 <= f.size()) p.tcp_flags = f[off + 13];
  }
  if (next == IPPROTO_ICMPV6 && off + 1 <= f.size()) {
    p.icmp_type = f[off];
    if (off + 6 <= f.size()) p.sport = get16(f, off + 4);
  }
  return p;
}

void fix_checksums6(Bytes& f) {
  const Ip6 p = parse_ip6(f);
  if (!p.ok || p.fragment || p.l4 > p.end) return;
  const size_t len = p.end - p.l4;
  size_t sum_at = 0;
  if (p.proto == IPPROTO_TCP && len >= 20)
    sum_at = p.l4 + 16;
  else if (p.proto == IPPROTO_UDP && len >= 8)
    sum_at = p.l4 + 6;
  else if (p.proto == IPPROTO_ICMPV6 && len >= 4)
    sum_at = p.l4 + 2;
  else
    return;
  put16(f, sum_at, 0);
  uint32_t sum = add_words(0, f, 14 + 8, 32);
  sum += uint32_t(len >> 16) + uint32_t(len & 0xffff) + p.proto;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  uint16_t c = uint16_t(~add_words(sum, f, p.l4, len));
  if (c == 0 && p.proto == IPPROTO_UDP) c = 0xffff;
  put16(f, sum_at, c);
}

std::string hex(const Bytes& b) {
  static const char* const digits = "0123456789abcdef";
  std::string s;
  s.reserve(b.size() * 2);
  for (uint8_t c : b) {
    s.push_back(digits[c >> 4]);
    s.push_back(digits[c & 15]);
  }
  return s;
}

std::optional<Bytes> from_hex(const std::string& s) {
  if (s.size() % 2) return std::nullopt;
  Bytes b;
  for (size_t i = 0; i < s.size(); i += 2) {
    unsigned v;
    if (std::sscanf(s.substr(i, 2).c_str(), "%2x", &v) != 1) return std::nullopt;
    b.push_back(uint8_t(v));
  }
  return b;
}

}  // namespace fuzz
