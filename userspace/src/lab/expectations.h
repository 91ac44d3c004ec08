// expectations.h - who should reach whom in a lab: the probes `moat lab
// probe` sends and what each must observe, from the topology (network
// isolation, published ports) narrowed by the policies in force. Pure: the
// probes are run by probe.h, the verdicts come from plan/ and policy/.
#pragma once

#include <string>
#include <vector>

#include "config/config.h"
#include "lab/lab.h"
#include "lab/probe.h"

namespace moat {

// Every container (and the host) against every other container's addresses,
// on its exposed and published ports over TCP/UDP and with ICMP; expected
// as network isolation decides. The IPv4 probes, then the same to every
// IPv6 address from the host and each container with an IPv6 address (a
// container reaches a network over IPv6 only from its IPv6 address there).
std::vector<Probe> lab_probes(const Config& cfg, const std::string& lab);

// Published ports the way `docker run -p` users reach them: from the outside
// at the uplink address, from the host at 127.0.0.1 and at the uplink
// address, from every container at its gateway. Ports a container exposes
// but does not publish must stay closed from outside. In a dual-stack lab
// the same over IPv6: the uplink's IPv6 address, [::1], each container's
// IPv6 gateway; a publish bound to an address of one family is probed in
// that family only.
std::vector<Probe> lab_publish_probes(const Config& cfg, const std::string& lab,
                                      const LabInfo& info);

// Narrows the probes' expectations by the policies in force (isolation
// already decided the rest): who dials whom, with published ports resolved
// to the container behind them, as the kernel judges it.
void expect_policy(const Config& cfg, const LabInfo& info, std::vector<Probe>& isolation,
                   std::vector<Probe>& published);

}  // namespace moat
