#include <gtest/gtest.h>
#include <algorithm>
#include <cstdio>
#include "endpoint.skel.h"
#include "harness.h"
using namespace pkt; using namespace moat_test;
namespace {
Network network(uint32_t i) {
  in_addr_t subnet = htonl(0x0a000000u | i << 8);
  return {.id = i + 1, .subnet = subnet, .prefixlen = 24, .gateway = subnet | htonl(1), .flags = MOAT_NET_F_ICC};
}
uint32_t best(const endpoint_bpf& s, uint32_t dev, const Bytes& f) {
  uint32_t b = UINT32_MAX;
  for (int r = 0; r < 5; r++) b = std::min(b, run(s.progs.from_container, dev, f, 100000).duration_ns);
  return b;
}
TEST(Exp, Same) {
  const uint32_t dev = ifindex_of("moat-a");
  for (int load = 0; load < 6; load++) {
    uint32_t m = 2000;
    Network meas = network(m);
    Bytes frame = eth(ETH_P_IP, ipv4({.src = meas.subnet | htonl(2), .dst = meas.subnet | htonl(3)}, tcp(1, 2)));
    Skeleton s = load_skeleton();
    add_network(*s, meas);
    add_endpoint(*s, dev, meas, meas.subnet | htonl(2));
    uint32_t a = best(*s, dev, frame);
    for (uint32_t i = 0; i < 4000; i++) { add_network(*s, network(i)); add_endpoint(*s, 100000+i, network(i), network(i).subnet|htonl(2)); }
    add_endpoint(*s, dev, meas, meas.subnet | htonl(2));
    uint32_t b = best(*s, dev, frame);
    printf("load %d: small %u large %u\n", load, a, b);
  }
}
}
