// generator.h - planning one case for a configuration from a seed:
//  - flows: a container, a world client or the host opens a connection
//    (TCP from a SYN or from mid-stream, UDP, ICMP echo, SCTP, a portless
//    protocol) to another container, a gateway, an uplink address, a
//    published port, a broadcast, the world; the packet follows its path
//    through the hooks, the other end answers, both go on, close (FIN,
//    RST), send ICMP errors about each other's packets, genuine or forged
//    (outer addresses that are not the flow's ends, quotes of other
//    tuples), with policy revision changes in between;
//  - link layer: ARP (requests, replies, probes, foreign senders,
//    trailers), IPv6 ND/MLD/RA/redirects and other IPv6, 802.1Q, unknown
//    ethertypes, at container veths, uplinks and a device moat has no entry for;
//  - any step may be mutated (mutate.h).
#pragma once

#include <cstdint>

#include "pools.h"
#include "script.h"
#include "topology.h"

namespace fuzz {

Case plan_case(const Topology& topo, const Pools& pools, size_t variants, uint64_t seed);

}  // namespace fuzz
