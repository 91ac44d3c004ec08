// listener.h - the lab's stand-in for a container's service: one process
// answering every TCP connection and UDP datagram on the given ports with a
// fixed reply (the container's name), so a probe proves which container it
// reached. One poll() loop instead of a socat per port: no fork per request,
// nothing to lose under concurrent probes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config.h"
#include "result.h"

namespace moat {

struct ListenPort {
  Protocol protocol = Protocol::tcp;  // tcp or udp
  uint16_t port = 0;
};

// Opens every socket first (so a bind error is reported before anything
// runs), calls `ready` once they all listen, then serves until killed.
Result<void> serve_forever(const std::string& reply, const std::vector<ListenPort>& ports,
                           void (*ready)());

}  // namespace moat
