// mutate.cpp - the mutations of mutate.h, one function each.
#include "mutate.h"

#include <netinet/in.h>

#include <functional>
#include <vector>

namespace fuzz {
namespace {

constexpr size_t kIp = 14;

bool is_ipv4(const Bytes& f) { return f.size() >= kIp + 20 && get16(f, 12) == kEthIp; }

// How a mutation leaves the checksums: fixed afterwards, or left as it made them.
enum class After { Fix, Keep };

using Mutation = std::function<After(Bytes&, Rng&, const Pools&)>;

After tcp_flags(Bytes& f, Rng& r, const Pools&) {
  const Ip4 ip = parse_ip4(f, kIp);
  if (!ip.header_ok || ip.proto != IPPROTO_TCP || ip.l4_avail() < 14) return After::Fix;
  static const uint8_t kCombos[] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x06, 0x07, 0x10, 0x11,
                                    0x12, 0x14, 0x16, 0x18, 0x29, 0x3f, 0xff, 0xc2, 0x42};
  f[ip.l4_off() + 13] = r.chance(0.7) ? kCombos[r.below(sizeof kCombos)] : uint8_t(r.next());
  return After::Fix;
}

After address(Bytes& f, Rng& r, const Pools& p) {
  if (!is_ipv4(f)) return After::Fix;
  put32(f, kIp + (r.chance(0.5) ? 12 : 16), r.pick(p.addrs));
  return After::Fix;
}

After port(Bytes& f, Rng& r, const Pools& p) {
  const Ip4 ip = parse_ip4(f, kIp);
  if (!ip.header_ok || ip.l4_avail() < 4) return After::Fix;
  const uint16_t v = r.chance(0.8) ? r.pick(p.ports) : uint16_t(r.next());
  put16(f, ip.l4_off() + (r.chance(0.5) ? 0 : 2), v);
  return After::Fix;
}

After truncate(Bytes& f, Rng& r, const Pools&) {
  if (f.size() > 15) f.resize(14 + r.below(uint32_t(f.size() - 14)));
  return After::Keep;
}

After trailer(Bytes& f, Rng& r, const Pools&) {
  const uint32_t n = 1 + r.below(64);
  for (uint32_t i = 0; i < n; i++) f.push_back(r.chance(0.5) ? 0 : uint8_t(r.next()));
  return After::Keep;
}

After options(Bytes& f, Rng& r, const Pools&) {
  const Ip4 ip = parse_ip4(f, kIp);
  if (!ip.header_ok || ip.ihl >= 15) return After::Fix;
  const uint32_t words = 1 + r.below(15 - ip.ihl);
  Bytes opt(words * 4, 1);  // NOPs
  switch (r.below(5)) {
    case 0:  // record route
      if (opt.size() >= 8) opt[0] = 7, opt[1] = uint8_t(opt.size() - 1), opt[2] = 4;
      break;
    case 1:  // loose source route: hosts refuse it
      if (opt.size() >= 8) opt[0] = 131, opt[1] = 7, opt[2] = 4;
      break;
    case 2:  // a length running past the header
      opt[0] = 68, opt[1] = uint8_t(opt.size() + 4);
      break;
    case 3:
      for (auto& b : opt) b = uint8_t(r.next());
      break;
    default:
      opt.back() = 0;  // NOPs then end of list
  }
  f.insert(f.begin() + long(ip.off + ip.hlen), opt.begin(), opt.end());
  f[ip.off] = uint8_t(0x40 | (ip.ihl + words));
  put16(f, ip.off + 2, uint16_t(ip.tot_len + opt.size()));
  return After::Fix;
}

After fragment(Bytes& f, Rng& r, const Pools&) {
  if (!is_ipv4(f)) return After::Fix;
  static const uint16_t kFrags[] = {0x2000, 0x0001, 0x2001, 0x00b9, 0x4000, 0x1fff, 0x8000};
  put16(f, kIp + 6, kFrags[r.below(sizeof kFrags / sizeof kFrags[0])]);
  return After::Fix;
}

After lie(Bytes& f, Rng& r, const Pools&) {
  if (!is_ipv4(f)) return After::Keep;
  switch (r.below(4)) {
    case 0:
      f[kIp] = uint8_t((f[kIp] & 0xf0) | r.below(16));  // ihl
      break;
    case 1:
      put16(f, kIp + 2, uint16_t(r.chance(0.5) ? r.below(uint32_t(f.size())) : r.next()));
      break;
    case 2:
      f[kIp] = uint8_t((r.below(16) << 4) | (f[kIp] & 0x0f));  // version
      break;
    default: {
      const Ip4 ip = parse_ip4(f, kIp);
      if (ip.header_ok && ip.proto == IPPROTO_TCP && ip.l4_avail() >= 13)
        f[ip.l4_off() + 12] = uint8_t(r.below(16) << 4);  // data offset
    }
  }
  return r.chance(0.5) ? After::Fix : After::Keep;
}

After header_field(Bytes& f, Rng& r, const Pools&) {
  if (!is_ipv4(f)) return After::Fix;
  switch (r.below(3)) {
    case 0:
      f[kIp + 8] = uint8_t(r.below(3));  // ttl 0-2
      break;
    case 1: {
      static const uint8_t kProtos[] = {1, 6, 17, 132, 47, 50, 253, 0, 41, 58};
      f[kIp + 9] = kProtos[r.below(sizeof kProtos)];
      break;
    }
    default:
      f[kIp + 1] = uint8_t(r.next());  // DSCP/ECN
  }
  return After::Fix;
}

After checksum(Bytes& f, Rng& r, const Pools&) {
  const auto offs = checksum_offsets(f);
  if (!offs.empty()) put16(f, r.pick(offs), uint16_t(r.next()));
  return After::Keep;
}

After vlan(Bytes& f, Rng& r, const Pools&) {
  const uint16_t inner = get16(f, 12);
  const Bytes tag = {uint8_t(r.below(16)), uint8_t(r.next()), uint8_t(inner >> 8), uint8_t(inner)};
  put16(f, 12, r.chance(0.8) ? kEthVlan : kEthQinQ);
  f.insert(f.begin() + 14, tag.begin(), tag.end());
  return After::Keep;
}

After macs(Bytes& f, Rng& r, const Pools&) {
  static const Mac kOthers[] = {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
                                {0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb},
                                {0x33, 0x33, 0x00, 0x00, 0x00, 0x01},
                                {0x02, 0x42, 0xde, 0xad, 0xbe, 0xef},
                                {0x00, 0x00, 0x00, 0x00, 0x00, 0x00}};
  Mac m = kOthers[r.below(5)];
  if (r.chance(0.3)) m[5] ^= uint8_t(1 + r.below(255));
  put_mac(f, r.chance(0.5) ? 0 : 6, m);
  return After::Fix;
}

After random_bytes(Bytes& f, Rng& r, const Pools&) {
  const uint32_t n = 1 + r.below(3);
  for (uint32_t i = 0; i < n; i++)
    f[r.below(uint32_t(std::min<size_t>(f.size(), 80)))] = uint8_t(r.next());
  return r.chance(0.5) ? After::Fix : After::Keep;
}

After icmp_fields(Bytes& f, Rng& r, const Pools&) {
  const Ip4 ip = parse_ip4(f, kIp);
  if (!ip.header_ok || ip.proto != IPPROTO_ICMP || ip.l4_avail() < 2) return After::Fix;
  static const uint8_t kTypes[] = {0, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 17, 255};
  f[ip.l4_off()] = kTypes[r.below(sizeof kTypes)];
  f[ip.l4_off() + 1] = uint8_t(r.below(16));
  return After::Fix;
}

// IPv6: hop limit, payload length, next header, an address, the version,
// a fragment header's offset.
After ipv6_fields(Bytes& f, Rng& r, const Pools& p) {
  if (!ipv6_frame(f)) return After::Fix;
  switch (r.below(6)) {
    case 0:
      f[kIp + 7] = r.pick(std::vector<uint8_t>{0, 1, 2, 64, 254, 255});
      break;
    case 1:
      put16(f, kIp + 4, uint16_t(r.chance(0.5) ? r.below(uint32_t(f.size())) : r.next()));
      return After::Keep;
    case 2:
      f[kIp + 6] = r.pick(std::vector<uint8_t>{0, 6, 17, 43, 44, 50, 51, 58, 59, 60, 135, 253});
      break;
    case 3:
      if (!p.addrs6.empty()) put_ip6(f, kIp + (r.chance(0.5) ? 8 : 24), r.pick(p.addrs6));
      break;
    case 4:
      f[kIp] = uint8_t((r.below(16) << 4) | (f[kIp] & 0x0f));
      break;
    default: {
      const Ip6 ip = parse_ip6(f);
      if (ip.fragment && ip.l4 >= kIp + 48) put16(f, ip.l4 - 6, uint16_t(r.next()));
    }
  }
  return After::Fix;
}

const std::vector<std::pair<const char*, Mutation>>& mutations() {
  static const std::vector<std::pair<const char*, Mutation>> all = {
      {"tcp-flags", tcp_flags},       {"address", address},         {"port", port},
      {"truncate", truncate},         {"trailer", trailer},         {"ip-options", options},
      {"fragment", fragment},         {"length-lie", lie},          {"header-field", header_field},
      {"checksum", checksum},         {"vlan-tag", vlan},           {"mac", macs},
      {"random-bytes", random_bytes}, {"icmp-fields", icmp_fields}, {"ipv6-fields", ipv6_fields},
  };
  return all;
}

}  // namespace

std::string mutate(Bytes& frame, uint64_t seed, const Pools& pools) {
  Rng r(seed);
  std::string names;
  const uint32_t n = r.chance(0.7) ? 1 : 2 + r.below(2);
  bool fix = true;
  for (uint32_t i = 0; i < n && frame.size() >= 14; i++) {
    const auto& [name, m] = mutations()[r.below(uint32_t(mutations().size()))];
    if (m(frame, r, pools) == After::Keep) fix = false;
    names += std::string(names.empty() ? "" : "+") + name;
  }
  if (fix) {
    fix_checksums(frame);
    fix_checksums6(frame);
  }
  return names;
}

}  // namespace fuzz
