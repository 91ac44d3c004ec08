// The host's own choice of source ports (ip_local_port_range, less
// ip_local_reserved_ports) must stay out of the ports moat masquerades with,
// or a reply to a host connection is taken for a container's flow.
#include <gtest/gtest.h>

#include "parse_ok.h"
#include "plan/plan.h"

namespace moat {
namespace {

const char* kMasquerading = R"({
    "networks": [{"name": "front", "subnet": "10.1.0.0/24"}],
    "containers": [{"name": "web", "networks": ["front"]}],
    "host": {"uplinks": ["uplink0"]}})";

TEST(MasqueradePorts, LinuxDefaultRangeLeavesThemAlone) {
  auto cfg = parse_ok(kMasquerading);
  EXPECT_TRUE(require_masquerade_ports(cfg, "32768\t60999\n", "\n"));
}

TEST(MasqueradePorts, AWideRangeIsRefusedNamingThePortsAndTheFixes) {
  auto cfg = parse_ok(kMasquerading);
  auto r = require_masquerade_ports(cfg, "1024\t65535\n", "\n");
  ASSERT_FALSE(r);
  const std::string& m = r.error().message();
  EXPECT_NE(m.find("network \"front\" masquerades"), std::string::npos) << m;
  EXPECT_NE(m.find("(1024-65535)"), std::string::npos) << m;
  EXPECT_NE(m.find("lets the host pick 31744 of them (1024 to 32767)"), std::string::npos) << m;
  EXPECT_NE(m.find("ip_local_port_range=\"32768 60999\""), std::string::npos) << m;
  EXPECT_NE(m.find("ip_local_reserved_ports=1024-32767"), std::string::npos) << m;
}

// The last port of the masquerade's range is enough to refuse: the host
// picks any port of its range.
TEST(MasqueradePorts, OneSharedPortIsRefused) {
  auto cfg = parse_ok(kMasquerading);
  auto r = require_masquerade_ports(cfg, "32767 60999", "");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("pick port 32767 for"), std::string::npos)
      << r.error().message();
}

TEST(MasqueradePorts, ReservedPortsAreNeverPicked) {
  auto cfg = parse_ok(kMasquerading);
  EXPECT_TRUE(require_masquerade_ports(cfg, "1024 65535", "1024-32767\n"));
  EXPECT_TRUE(require_masquerade_ports(cfg, "20000 40000", "1000-25000,25001-32767"));
  auto r = require_masquerade_ports(cfg, "20000 40000", "20000-30000,30002-32767");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("pick port 30001 for"), std::string::npos)
      << r.error().message();
}

TEST(MasqueradePorts, NothingMasqueradedNothingChecked) {
  // No uplink: nothing is masqueraded anywhere.
  auto none = parse_ok(R"({"networks": [{"name": "front", "subnet": "10.1.0.0/24"}]})");
  EXPECT_TRUE(require_masquerade_ports(none, "1024 65535", ""));
  auto off = parse_ok(R"({
    "networks": [{"name": "front", "subnet": "10.1.0.0/24", "masquerade": false},
                 {"name": "back", "subnet": "10.2.0.0/24", "internal": true}],
    "host": {"uplinks": ["uplink0"]}})");
  EXPECT_TRUE(require_masquerade_ports(off, "1024 65535", ""));
}

TEST(MasqueradePorts, UnreadableSysctlsFailClosed) {
  auto cfg = parse_ok(kMasquerading);
  EXPECT_FALSE(require_masquerade_ports(cfg, "", ""));
  EXPECT_FALSE(require_masquerade_ports(cfg, "60999 32768", ""));
  EXPECT_FALSE(require_masquerade_ports(cfg, "32768 60999 1", ""));
  EXPECT_FALSE(require_masquerade_ports(cfg, "32768 60999", "1024-"));
  EXPECT_FALSE(require_masquerade_ports(cfg, "32768 60999", "70000"));
  EXPECT_FALSE(require_masquerade_ports(cfg, "32768 60999", "5-3"));
}

}  // namespace
}  // namespace moat
