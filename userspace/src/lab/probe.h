// probe.h - reachability probes from inside namespaces: TCP connect, UDP
// request/response and ICMP (ICMPv6) echo, over IPv4 or IPv6, all in flight
// at once so that a matrix of blocked pairs costs one timeout, not one per
// pair.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "util/net.h"
#include "util/proto.h"
#include "util/result.h"

namespace moat {


struct Probe {
  std::string src;      // label of the source (container name, "host")
  std::string src_ns;   // /run/netns/... path the probe is sent from
  std::string dst;      // label of the destination
  Ipv4 dst_ip;
  Protocol proto = Protocol::tcp;  // tcp, udp or icmp
  uint16_t port = 0;    // unused for icmp
  bool expected = false;
  std::string expect_reply;  // TCP/UDP: what the listener answers ("" = anything)
  // Set: an IPv6 probe to this address (dst_ip is then unused), ICMPv6 for
  // icmp. Last, so the IPv4 probes' positional initializers stay as they are.
  std::optional<Ipv6> dst_ip6;

  bool ipv6() const { return dst_ip6.has_value(); }
  const char* family() const { return ipv6() ? "ipv6" : "ipv4"; }
  std::string dst_ip_str() const { return ipv6() ? dst_ip6->str() : dst_ip.str(); }
};

struct ProbeOutcome {
  bool reached = false;
  std::string detail;  // "ok", "timeout", "refused", "unreachable", "wrong reply: ..."
};

// Runs every probe; a probe that fails is tried again in the next round
// (bounded), so what must pass survives a lost packet on a busy machine while
// what must fail costs `timeout` per round.
Result<std::vector<ProbeOutcome>> run_probes(const std::vector<Probe>& probes,
                                             std::chrono::milliseconds timeout, int rounds);

}  // namespace moat
