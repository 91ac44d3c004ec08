// prog_run.h - a packet through an instance's real TC programs, with
// BPF_PROG_TEST_RUN and without side effects: a private copy of the
// programs whose configuration maps (endpoints, addresses, published ports,
// uplinks, policy generations) are the instance's pinned ones, which the
// programs only read, and whose state maps (connection tracking, fragments,
// counters, events, socket NAT, scratch) are fresh and private. So the run
// sees the live configuration, judges the packet as the first of a new flow,
// and leaves no conntrack entry, counter or event behind. `moat explain`
// prints its verdicts next to the policy models.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "abi.h"
#include "util/net.h"
#include "util/result.h"

namespace moat {

struct ProgHop {
  moat_dir dir;     // which program: from_container, to_container, from_world, to_world
  int ifindex = 0;  // the interface it runs as attached to (in the caller's namespace)
};

struct ProgVerdict {
  moat_dir dir = MOAT_DIR_FROM_CONTAINER;
  int ifindex = 0;
  bool passed = false;
  unsigned reason = 0;       // drop reason slot (abi.h), 0 on a pass
  std::vector<uint8_t> out;  // the frame as the program left it
};

// Runs `frame` through `hops` in order, each hop fed the previous one's
// output, and stops at the first drop. The caller must be in the
// instance's network namespace: the kernel resolves each ifindex there.
Result<std::vector<ProgVerdict>> run_programs_dry(const std::string& instance,
                                                  const std::vector<ProgHop>& hops,
                                                  std::vector<uint8_t> frame);

// The first packet of a flow as its source sends it, between the given MACs
// (addresses in network order, port in host order): a TCP SYN, a UDP or SCTP
// datagram (SCTP framed as UDP: the programs read only its ports) or an ICMP
// echo request. TCP, UDP and ICMP carry correct checksums.
std::vector<uint8_t> first_packet(const std::vector<uint8_t>& dst_mac,
                                  const std::vector<uint8_t>& src_mac, uint32_t src_be,
                                  uint32_t dst_be, uint8_t proto, uint16_t port);

// The same over IPv6 (ethertype 0x86DD, hop limit 64, no extension header):
// a TCP SYN, a UDP or SCTP datagram, or, for any other `proto`, an ICMPv6
// echo request (next header 58). TCP, UDP and ICMPv6 checksums cover the
// IPv6 pseudo-header.
std::vector<uint8_t> first_packet(const std::vector<uint8_t>& dst_mac,
                                  const std::vector<uint8_t>& src_mac, const Ipv6& src,
                                  const Ipv6& dst, uint8_t proto, uint16_t port);

// The container-side MAC the instance's endpoint entry holds for `ifindex`.
Result<std::vector<uint8_t>> endpoint_mac(const std::string& instance, int ifindex);

}  // namespace moat
