// pools.h - the values worth trying for one configuration: addresses
// (containers', gateways', uplinks', unassigned and broadcast addresses of
// each subnet, addresses inside and outside every policy ipBlock and its
// excepts, loopback, multicast, the world) and ports (published, exposed,
// policy bounds and their neighbours, masquerade range edges), plus a
// seeded random source with the helpers the generator and mutator share.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "topology.h"

namespace fuzz {

struct Pools {
  std::vector<uint32_t> addrs;  // everything below
  std::vector<uint32_t> world;  // addresses no network or host has
  std::vector<uint16_t> ports;
  std::vector<uint32_t> routers;  // world addresses that send ICMP errors
  // IPv6: containers' (global and link-local), gateways', the host's
  // link-local ones, unassigned ones in each subnet, the world's, multicast,
  // ::, ::1, an IPv4-mapped one.
  std::vector<Ip6Addr> addrs6;
  std::vector<Ip6Addr> world6;

  static Pools of(const Topology& topo, const std::vector<moat::Config>& variants);
};

class Rng {
 public:
  explicit Rng(uint64_t seed) : g_(seed) {}
  uint64_t next() { return g_(); }
  uint32_t below(uint32_t n) { return n ? uint32_t(g_() % n) : 0; }
  bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(g_) < p; }
  template <class V>
  const typename V::value_type& pick(const V& v) {
    return v[below(uint32_t(v.size()))];
  }

 private:
  std::mt19937_64 g_;
};

// Seeds of sub-streams: one per case, one per mutation.
uint64_t mix(uint64_t a, uint64_t b);

}  // namespace fuzz
