// features.h - what the running kernel can do that moat needs and older
// kernels lack, asked by running a probe program (bpf/probe.bpf.c) once per
// process. An apply whose desired state needs a missing feature is refused
// (plan.h, require_nat66()); `moat status` shows the answers.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "plan/limits.h"
#include "util/result.h"

namespace moat {

// Whether bpf_l4_csum_replace() takes BPF_F_IPV6 (Linux 6.16+), without
// which every NAT66 rewrite fails. One BPF_PROG_TEST_RUN, remembered for
// the process once it answered; MOAT_KERNEL_LACKS=nat66 makes it answer
// false (failpoint.h). Fails when the probe cannot run at all.
Result<bool> kernel_nat66();

// "6.18.0-1-amd64" (uname -r); kernel_name(): "Linux 6.18.0-1-amd64", for messages.
std::string kernel_release();
std::string kernel_name();

// The host's memory and possible CPUs, what map sizes are checked against
// (plan/limits.h). MOAT_HOST_RAM_MIB stands in for the memory in tests.
HostCapacity host_capacity();

// {"release", "nat66": true|false} for `moat status`; "nat66" null and
// "nat66_error" when the probe could not run.
nlohmann::json kernel_features_json();

}  // namespace moat
