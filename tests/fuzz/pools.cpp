// pools.cpp - the interesting values of pools.h.
#include "pools.h"

#include <algorithm>

#include "policy/model.h"

namespace fuzz {

uint64_t mix(uint64_t a, uint64_t b) {
  uint64_t z = a * 0x9e3779b97f4a7c15ull + b + 0x632be59bd9b4e019ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

namespace {

void add_prefix_addrs(const moat::Ipv4Prefix& p, std::vector<uint32_t>& out) {
  out.push_back(p.addr.value + (p.len < 32 ? 5 : 0));
  if (p.len > 0) out.push_back(p.broadcast().value + 1);  // just outside
}

// An address inside an IPv6 prefix and one just past its end.
void add_prefix_addrs(const moat::Ipv6Prefix& p, std::vector<Ip6Addr>& out) {
  Ip6Addr in = p.addr.bytes;
  if (p.len < 128) in[15] |= 5;
  out.push_back(in);
  if (p.len == 0) return;
  Ip6Addr past = p.addr.bytes;
  for (int bit = p.len; bit < 128; bit++) past[bit / 8] |= uint8_t(0x80 >> (bit % 8));
  for (int i = 15; i >= 0 && ++past[i] == 0; i--) {
  }
  out.push_back(past);
}

// An ipBlock's addresses, each family to its own list.
void add_block_addrs(const moat::IpBlock& b, std::vector<uint32_t>& out4,
                     std::vector<Ip6Addr>& out6) {
  auto add = [&](const moat::IpPrefix& p) {
    if (const auto* v4 = std::get_if<moat::Ipv4Prefix>(&p))
      add_prefix_addrs(*v4, out4);
    else
      add_prefix_addrs(std::get<moat::Ipv6Prefix>(p), out6);
  };
  add(b.cidr);
  for (const auto& e : b.except) add(e);
}

}  // namespace

Pools Pools::of(const Topology& topo, const std::vector<moat::Config>& variants) {
  Pools p;
  p.world = {0x08080808u, 0xc6130001u, 0xcb007107u, 0xc6336407u, 0x01010101u, 0x64400007u};
  p.routers = {0xc61300feu, 0x64400001u};
  std::vector<uint32_t> blocks;
  std::vector<Ip6Addr> blocks6;
  for (const auto& cfg : variants)
    for (const auto& pol : cfg.policies)
      for (auto d : {moat::PolicyDirection::ingress, moat::PolicyDirection::egress})
        for (const auto& r : pol.rules(d))
          for (const auto& peer : r.peers)
            if (peer.kind == moat::PolicyPeer::Kind::ip_block)
              add_block_addrs(peer.ip_block, blocks, blocks6);
  p.addrs = blocks;
  for (uint32_t a : blocks)
    if (topo.classify(a).kind == AddrKind::World && (a >> 24) != 127 && a < 0xe0000000u)
      p.world.push_back(a);
  p.addrs.insert(p.addrs.end(), p.world.begin(), p.world.end());
  for (const auto& a : topo.atts) p.addrs.push_back(a.ip);
  for (const auto& n : topo.nets) {
    p.addrs.push_back(n.gateway);
    p.addrs.push_back(n.subnet.addr.value + 200);
    p.addrs.push_back(n.subnet.broadcast().value);
  }
  for (const auto& u : topo.uplinks) p.addrs.push_back(u.ip);
  for (uint32_t a : {0x7f000001u, 0u, 0xffffffffu, 0xe00000fbu}) p.addrs.push_back(a);
  p.world6 = {ip6_from_text("2001:db8::1"), ip6_from_text("2606:4700:4700::1111"),
              ip6_from_text("2001:4860:4860::8888"), ip6_from_text("fd99::7")};
  for (const auto& a : blocks6)
    if (topo.classify6(a).kind == AddrKind::World && !ip6_multicast(a) && !ip6_link_local(a) &&
        !ip6_unspecified(a))
      p.world6.push_back(a);
  p.addrs6 = p.world6;
  for (const char* t : {"ff02::1", "ff02::2", "ff02::fb", "ff05::1:3", "ff02::1:ff00:2",
                        "::", "::1", "::ffff:10.100.0.2", "fe80::dead:beef", "fe80::1"})
    p.addrs6.push_back(ip6_from_text(t));
  for (const auto& a : topo.atts) {
    if (a.ip6) p.addrs6.push_back(*a.ip6);
    p.addrs6.push_back(a.ll);
  }
  for (const auto& n : topo.nets) {
    p.addrs6.push_back(eui64_link_local(n.gateway_mac));
    if (!n.subnet6) continue;
    p.addrs6.push_back(n.gateway6);
    Ip6Addr spare = n.subnet6->addr.bytes;
    spare[15] = 0xc8;
    spare[14] = 0x01;
    p.addrs6.push_back(spare);
  }
  p.ports = {0, 1, 22, 53, 80, 443, 8080, 32768, 40000, 61000, 61001, 65535};
  for (const auto& pub : topo.publishes) {
    p.ports.push_back(pub.host_port);
    p.ports.push_back(pub.container_port);
  }
  for (const auto& c : topo.cfg.containers)
    for (const auto& e : c.expose) p.ports.push_back(e.port);
  for (const auto& cfg : variants)
    for (const auto& pol : cfg.policies)
      for (auto d : {moat::PolicyDirection::ingress, moat::PolicyDirection::egress})
        for (const auto& r : pol.rules(d))
          for (const auto& pp : r.ports)
            for (int v : {pp.port - 1, int(pp.port), int(pp.end_port), pp.end_port + 1})
              if (v > 0 && v < 65536) p.ports.push_back(uint16_t(v));
  std::sort(p.ports.begin(), p.ports.end());
  p.ports.erase(std::unique(p.ports.begin(), p.ports.end()), p.ports.end());
  return p;
}

}  // namespace fuzz
