// scale.h - synthetic segmentation policies of any size, compiled by moat's
// real compiler (parse_config, compile_policies) and installed into a fresh
// skeleton, for the cost measurements: PolicyScale in policy_test.cpp and
// the moat_kernel_bench benchmark (bench/kernel_bench.cpp) share this one
// copy, so the benchmark times exactly the policies the test asserts on.
//
// Also the small helpers for writing moat configs in C++ that the policy
// tests use (J, parse, compile).
#pragma once

#include <netinet/in.h>

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "config/config.h"
#include "harness.h"
#include "policy/policy.h"

namespace moat_test {

// ---- compiling real moat configs ---------------------------------------------------

// JSON with single quotes, so documents read well in C++ source.
nlohmann::json J(std::string single_quoted);

// parse_config() of `doc`; a rejected document throws, with the problems
// located in `source` (a file name for the messages only).
moat::Config parse(const nlohmann::json& doc, const std::string& source);

// compile_policies(); throws if it fails or the config has no policy.
moat::PolicyPlan compile(const moat::Config& cfg, const std::vector<moat::Ipv4>& hosts = {});

// ---- the synthetic policy ----------------------------------------------------------

// Containers c<i> at 10.0.0.0 + 2 + i in one /16 (network "scale"), each
// with its own labels (so its own identity), each ingress-isolated by a
// policy p<i> of `rules_each` rules allowing c<i-1> (cyclically within
// [first, first + count)): rule j on TCP 10000 + j * ports .. + ports - 1.
// So count * rules_each rules and about count * rules_each * ports policy
// entries (a range costs one entry per port).
//
// One /16 is as large as moat can go: the ipcache holds MOAT_MAX_IPCACHE
// (65536) entries, the gateway and 127.0.0.0/8 included, so more containers
// than a /16 has addresses would not compile anyway. Throws
// std::invalid_argument beyond it, or when the ports run past 65535.
inline constexpr uint32_t kScaleMaxContainers = 65533;  // 10.0.0.2 .. 10.0.255.254
// The measured pair: c<kMeasured> (on moat-a in load_scale) dials c<kMeasured + 1>.
inline constexpr uint32_t kMeasured = 500;
inline constexpr uint16_t kScaleFirstPort = 10000;

// With `ipv6`, the network is dual-stack (fd00:a::/64) and c<i> has
// scale_ip6(i), fd00:a::2 + i, too: the same policy, the same identities,
// reached over either family (moat_kernel_bench times both).
in_addr_t scale_ip(uint32_t i);
std::string scale_ip6(uint32_t i);
nlohmann::json scale_document(uint32_t first, uint32_t count, uint32_t ports,
                              uint32_t rules_each = 1, bool ipv6 = false);

// A skeleton with scale_document's network, every container's endpoint (only
// c<kMeasured> on a real device, moat-a; the others on made-up ifindexes, so
// at most MOAT_MAX_ENDPOINTS containers) and its compiled policy installed as
// revision 1. The counts are the compiled plan's. With `ipv6`, the IPv6
// half as well: the network's IPv6 subnet and gateway, the endpoints'
// IPv6 addresses, the plan's ipcache6 (ipcache6 counts its entries).
struct Scale {
  Skeleton<endpoint_bpf> skel;
  size_t rules = 0, entries = 0, ipcache = 0, ipcache6 = 0;
};
Scale load_scale(uint32_t first, uint32_t count, uint32_t ports, uint32_t rules_each = 1,
                 bool ipv6 = false);

}  // namespace moat_test
