// The file's `limits` (config), the map sizes they give (plan/limits.h):
// defaults for a small host, the memory formula, and the refusals.
#include "plan/limits.h"

#include <gtest/gtest.h>

#include <string>

#include "config/values.h"
#include "parse_ok.h"
#include "plan/plan.h"

namespace moat {
namespace {

constexpr uint64_t kMiB = 1 << 20;

TEST(Limits, DefaultsFitASmallHost) {
  MapSizes s = resolve_limits({}, {24 * 1024 * kMiB, 2});
  EXPECT_EQ(s, (MapSizes{16384, 1024, 4096, 4096}));
  // The issue's bound: a 10-container host under 16 MiB of maps.
  EXPECT_LT(estimated_bytes(s, 2), 16 * kMiB);
  EXPECT_EQ(s.stats_slots(), 2048u);
  EXPECT_EQ(s.fragments(), 1024u);
}

TEST(Limits, LessMemoryLessConntrack) {
  EXPECT_EQ(resolve_limits({}, {256 * kMiB, 1}).conntrack, 4096u);  // RAM / 64 KiB
  EXPECT_EQ(resolve_limits({}, {700 * kMiB, 1}).conntrack, 8192u);  // rounded down to 2^n
  EXPECT_EQ(resolve_limits({}, {32 * kMiB, 1}).conntrack, 1024u);   // never below 1,024
  EXPECT_EQ(resolve_limits({}, {0, 1}).conntrack, 16384u);          // unknown: the default
}

TEST(Limits, TheFileWins) {
  Limits l;
  l.conntrack = 100000;
  l.socket_nat = 64;
  MapSizes s = resolve_limits(l, {256 * kMiB, 4});
  EXPECT_EQ(s.conntrack, 100000u);
  EXPECT_EQ(s.socket_nat, 64u);
  EXPECT_EQ(s.endpoints, 1024u);
  EXPECT_EQ(s.fragments(), 6250u);
}

TEST(Limits, EveryLimitedMapHasItsSize) {
  MapSizes s{20000, 100, 300, 400};
  auto maps = s.by_map();
  auto size = [&](const std::string& name) {
    for (const auto& [n, v] : maps)
      if (n == name) return v;
    ADD_FAILURE() << "no map " << name;
    return 0u;
  };
  EXPECT_EQ(size("ct"), 20000u);
  EXPECT_EQ(size("ct6_ring"), 20000u);
  EXPECT_EQ(size("stats"), 200u);
  EXPECT_EQ(size("publish6"), 300u);
  EXPECT_EQ(size("sock_rnat6"), 400u);
  EXPECT_EQ(size("frags6"), 1250u);
  EXPECT_EQ(sizes_from_maps(maps), s);
  maps.erase(maps.begin());  // no `ct`: not an instance's maps
  EXPECT_FALSE(sizes_from_maps(maps));
}

TEST(Limits, TooMuchForTheHostIsRefusedNamingTheBiggest) {
  Limits l;
  l.conntrack = 4 << 20;
  MapSizes s = resolve_limits(l, {1024 * kMiB, 2});
  auto r = check_fits(s, {1024 * kMiB, 2});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("conntrack 4194304"), std::string::npos)
      << r.error().message();
  EXPECT_TRUE(check_fits(resolve_limits({}, {1024 * kMiB, 2}), {1024 * kMiB, 2}));
}

TEST(Limits, AnInstanceKeepsItsSizes) {
  MapSizes have{16384, 1024, 4096, 4096}, want = have;
  EXPECT_TRUE(check_same_sizes(want, have, {}, "lab-x"));
  want.conntrack = 65536;
  Limits given;
  given.conntrack = 65536;
  auto r = check_same_sizes(want, have, given, "lab-x");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("limits.conntrack 65536 where its maps hold 16384"),
            std::string::npos)
      << r.error().message();
  EXPECT_NE(r.error().message().find("moat down --instance lab-x"), std::string::npos);
  // A limit left out is the default, and says so.
  r = check_same_sizes(have, MapSizes{65536, 1024, 4096, 4096}, {}, "lab-x");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("16384 (the default)"), std::string::npos);
}

TEST(Limits, PolicyGenerationsAreSizedToWhatTheyHold) {
  EXPECT_EQ(generation_capacity(0, 1u << 20), 1024u);
  EXPECT_EQ(generation_capacity(10, 1u << 20), 1024u);
  EXPECT_EQ(generation_capacity(600, 1u << 20), 2048u);
  EXPECT_EQ(generation_capacity(100000, 1u << 20), 262144u);
  EXPECT_EQ(generation_capacity(900000, 1u << 20), 1u << 20) << "never beyond the compiled size";
}

TEST(LimitsFile, ReadWrittenAndRoundTripped) {
  Config c = parse_ok(R"({"limits": {"conntrack": 65536, "published_ports": 128}})");
  EXPECT_EQ(c.limits.conntrack, 65536u);
  EXPECT_EQ(c.limits.published_ports, 128u);
  EXPECT_FALSE(c.limits.endpoints);
  Config back = parse_ok(config_to_json(c));
  EXPECT_EQ(back.limits, c.limits);
}

TEST(LimitsFile, WrongValuesAreProblemsAtTheirPlace) {
  auto r = parse_config(
      R"({"limits": {"conntrack": 100, "endpoints": "many", "socket_nat": 2.5, "conntrak": 1}})",
      "t.json");
  ASSERT_EQ(r.problems.size(), 4u);
  std::string all;
  for (const auto& p : r.problems) all += p.format("t.json") + "\n";
  EXPECT_NE(all.find("limits.conntrack: must be a whole number from 1024 to"), std::string::npos)
      << all;
  EXPECT_NE(all.find("limits.endpoints: must be a whole number"), std::string::npos) << all;
  EXPECT_NE(all.find("limits.socket_nat"), std::string::npos) << all;
  EXPECT_NE(all.find("conntrack"), std::string::npos) << all;  // did you mean
}

TEST(LimitsFile, AttachmentsAndPortsBeyondTheirLimitsFail) {
  std::string containers;
  for (int i = 0; i < 16; ++i)
    containers += std::string(i ? "," : "") + R"({"name": "c)" + std::to_string(i) +
                  R"(", "networks": [{"network": "n", "interface": "v)" + std::to_string(i) +
                  R"("}]})";
  std::string text = R"({"limits": {"endpoints": 16}, "networks": [{"name": "n"}],
                         "containers": [)" +
                     containers + "]}";
  auto plan = compile(parse_ok(text), {});
  ASSERT_FALSE(plan);
  EXPECT_NE(plan.error().message().find("limits.endpoints, 16"), std::string::npos)
      << plan.error().message();
  auto ports = compile(parse_ok(R"({"limits": {"published_ports": 64},
      "networks": [{"name": "n"}],
      "containers": [{"name": "c", "networks": [{"network": "n", "interface": "v0"}],
                      "publish": ["8000-8064:8000-8064"]}]})"),
                       {});
  ASSERT_FALSE(ports);
  EXPECT_NE(ports.error().message().find("limits.published_ports, 64"), std::string::npos)
      << ports.error().message();
}

// `moat validate` refuses what apply would, before the lab has named the
// attachments' interfaces.
TEST(LimitsFile, ValidateRefusesWhatApplyWouldWithoutInterfaces) {
  auto file = [](int n) {
    std::string containers;
    for (int i = 0; i < n; ++i)
      containers += std::string(i ? "," : "") + R"({"name": "c)" + std::to_string(i) +
                    R"(", "networks": ["n"]})";
    return R"({"limits": {"endpoints": 16}, "networks": [{"name": "n"}], "containers": [)" +
           containers + "]}";
  };
  auto ok = check_plannable(parse_ok(file(15)));
  EXPECT_TRUE(ok) << ok.error().message();
  auto over = check_plannable(parse_ok(file(16)));
  ASSERT_FALSE(over);
  EXPECT_NE(over.error().message().find("16 container attachments exceed limits.endpoints, 16"),
            std::string::npos)
      << over.error().message();
  // apply still needs the interfaces.
  EXPECT_FALSE(compile(parse_ok(file(1)), {}));
  auto ports = check_plannable(parse_ok(R"({"limits": {"published_ports": 64},
      "networks": [{"name": "n"}],
      "containers": [{"name": "c", "networks": ["n"], "publish": ["8000-8064:8000-8064"]}]})"));
  ASSERT_FALSE(ports);
  EXPECT_NE(ports.error().message().find("limits.published_ports, 64"), std::string::npos)
      << ports.error().message();
}

TEST(LimitsFlags, TheAgentsFlagsReadLikeTheFile) {
  auto l = parse_limit_flags({"conntrack=65536", "socket_nat=128"});
  ASSERT_TRUE(l) << l.error();
  EXPECT_EQ(l->conntrack, 65536u);
  EXPECT_EQ(l->socket_nat, 128u);
  EXPECT_FALSE(l->endpoints);
  for (const char* bad : {"conntrak=1", "conntrack", "conntrack=12", "conntrack=abc",
                          "endpoints=99999999999", "conntrack=-5"}) {
    auto r = parse_limit_flags({bad});
    EXPECT_FALSE(r) << bad;
    if (!r)
      EXPECT_NE(r.error().find(std::string("--limit ") + bad), std::string::npos) << r.error();
  }
}

}  // namespace
}  // namespace moat
