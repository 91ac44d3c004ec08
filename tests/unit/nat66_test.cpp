// Which desired states need IPv6 NAT (NAT66), and the refusal of those on a
// kernel that cannot do it (before Linux 6.16, bpf_l4_csum_replace() rejects
// BPF_F_IPV6 and every rewritten IPv6 packet would be dropped).
#include <gtest/gtest.h>

#include "parse_ok.h"
#include "plan/plan.h"

namespace moat {
namespace {

std::vector<std::string> uses(const Config& cfg) {
  std::vector<std::string> out;
  for (const auto& u : nat66_uses(cfg)) out.push_back(u.what);
  return out;
}

using Strings = std::vector<std::string>;

TEST(Nat66, Ipv4OnlyNeedsNoneAndPassesWithoutIt) {
  auto cfg = parse_ok(R"({
    "networks": [{"name": "front", "subnet": "10.1.0.0/24"}],
    "containers": [{"name": "web", "networks": ["front"], "publish": ["8080:80", "53:53/udp"]}],
    "host": {"uplinks": ["uplink0"]}})");
  EXPECT_EQ(uses(cfg), Strings{});
  EXPECT_TRUE(require_nat66(cfg, false, "Linux 6.1.0"));
}

// The lab's dual-stack seeds: masquerade is on by default and the lab has an
// uplink, and a publish without an address goes to both families.
TEST(Nat66, DualStackMasqueradeAndPublishAreRefusedWithoutIt) {
  auto cfg = parse_ok(R"({
    "networks": [{"name": "dual", "subnet": "10.85.0.0/24", "ipv6_subnet": "fd00:85::/64"}],
    "containers": [{"name": "web", "networks": ["dual"], "publish": ["8080:80"]}],
    "host": {"uplinks": ["uplink0"]}})");
  EXPECT_EQ(uses(cfg), (Strings{"network \"dual\" masquerades IPv6 behind the uplinks",
                                "container \"web\" publishes \"8080:80\" over IPv6"}));
  EXPECT_TRUE(require_nat66(cfg, true, "Linux 6.18.0"));
  auto r = require_nat66(cfg, false, "Linux 6.1.0");
  ASSERT_FALSE(r);
  const std::string m = r.error().message();
  EXPECT_EQ(m.rfind("t.json needs IPv6 NAT, which this kernel (Linux 6.1.0) cannot do", 0), 0u)
      << m;
  for (const char* part :
       {"bpf_l4_csum_replace() and BPF_F_IPV6, which Linux 6.16 or later has",
        "Nothing was changed",
        "\n  network \"dual\" masquerades IPv6 behind the uplinks: \"masquerade\": false on it "
        "routes its IPv6 addresses as they are",
        "\n  container \"web\" publishes \"8080:80\" over IPv6: publish it on an IPv4 address or "
        "on [::1] only, or give the container no IPv6 address (\"ipv6\": false on its "
        "attachment to \"dual\")"})
    EXPECT_NE(m.find(part), std::string::npos) << "missing: " << part << "\nin: " << m;
}

// What the programs never rewrite: a routed network, an internal one, a
// network without an uplink to masquerade behind, an IPv4-only or [::1]
// publish (the host's socket hooks serve it), a container without IPv6.
TEST(Nat66, WhatNeverRewritesIpv6Passes) {
  auto cfg = parse_ok(R"({
    "networks": [{"name": "routed", "subnet": "10.1.0.0/24", "ipv6": true, "masquerade": false},
                 {"name": "inside", "subnet": "10.2.0.0/24", "ipv6": true, "internal": true},
                 {"name": "old", "subnet": "10.3.0.0/24"}],
    "containers": [
      {"name": "a", "networks": ["routed"],
       "publish": ["127.0.0.1:8082:80", "[::1]:8081:80", "10.9.9.9:8083:80"]},
      {"name": "b", "networks": [{"network": "routed", "ipv6": false}], "publish": ["9090:80"]},
      {"name": "c", "networks": ["old"], "publish": ["7070:80"]}],
    "host": {"uplinks": ["uplink0"]}})");
  EXPECT_EQ(uses(cfg), Strings{});
  EXPECT_TRUE(require_nat66(cfg, false, "Linux 6.1.0"));

  auto no_uplink = parse_ok(R"({"networks": [{"name": "dual", "ipv6": true}],
                                "containers": [{"name": "a", "networks": ["dual"]}]})");
  EXPECT_EQ(uses(no_uplink), Strings{});
  EXPECT_TRUE(require_nat66(no_uplink, false, "Linux 6.1.0"));
}

// Each IPv6 publish a packet can reach is named, on a routed network too:
// [::] and a host IPv6 address are rewritten by the programs.
TEST(Nat66, EveryIpv6PublishPacketsReachIsNamed) {
  auto cfg = parse_ok(R"({
    "networks": [{"name": "routed", "subnet": "10.1.0.0/24", "ipv6_subnet": "fd00:1::/64",
                  "masquerade": false}],
    "containers": [{"name": "a", "networks": ["routed"],
                    "publish": ["[::]:8080:80", "[fd00:1::1]:8083:80", "[::1]:8081:80",
                                "127.0.0.1:8082:80"]}]})");
  EXPECT_EQ(uses(cfg), (Strings{"container \"a\" publishes \"[::]:8080:80\" over IPv6",
                                "container \"a\" publishes \"[fd00:1::1]:8083:80\" over IPv6"}));
  EXPECT_FALSE(require_nat66(cfg, false, "Linux 6.1.0"));
  EXPECT_TRUE(require_nat66(cfg, true, "Linux 6.16.0"));
}

}  // namespace
}  // namespace moat
