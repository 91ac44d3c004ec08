// Unit tests for util/discard.h: a one-shot process leaves what it discards
// to its exit; every other process frees it on the spot.
#include "util/discard.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "config/config.h"

namespace moat {
namespace {

struct Counted {
  int* destroyed;
  bool moved_from = false;
  explicit Counted(int* d) : destroyed(d) {}
  Counted(Counted&& o) noexcept : destroyed(o.destroyed) { o.moved_from = true; }
  ~Counted() {
    if (!moved_from) ++*destroyed;
  }
};

class Discard : public ::testing::Test {
 protected:
  void TearDown() override { one_shot_process() = false; }
};

TEST_F(Discard, FreesOnTheSpotByDefault) {
  int destroyed = 0;
  Counted c(&destroyed);
  discard(std::move(c));
  EXPECT_EQ(destroyed, 1);
}

TEST_F(Discard, OneShotProcessLeavesItToTheExit) {
  one_shot_process() = true;
  int destroyed = 0;
  {
    Counted c(&destroyed);
    discard(std::move(c));
  }
  EXPECT_EQ(destroyed, 0);
}

// The readers discard their JSON tree once the model is built: what they
// return must not point into it (a one-shot process and any other read the
// same file the same way).
TEST_F(Discard, ReadersKeepNothingOfTheTree) {
  const std::string cfg_text = R"({"networks": [{"name": "front", "subnet": "172.30.0.0/24"}],
    "containers": [{"name": "web", "networks": ["front"], "labels": {"app": "web"}}]})";
  const std::string pol_text = R"({"policies": [{"name": "web-in",
    "podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
    "ingress": [{"from": [{"ipBlock": {"cidr": "10.1.2.0/24"}}],
                 "ports": [{"protocol": "TCP", "port": 80}]}]}]})";
  std::vector<std::string> seen;
  for (bool one_shot : {false, true}) {
    one_shot_process() = one_shot;
    auto cfg = parse_config(cfg_text, "lab.json");
    ASSERT_TRUE(cfg.config) << one_shot;
    auto pf = parse_policy_file(pol_text, "p.json");
    ASSERT_TRUE(pf.file) << one_shot;
    ASSERT_EQ(pf.file->policies.size(), 1u);
    seen.push_back(cfg.config->containers.at(0).name + " " + pf.file->policies[0].name + " " +
                   pf.file->policies[0].ingress.at(0).str(PolicyDirection::ingress));
  }
  EXPECT_EQ(seen[0], seen[1]);
  EXPECT_NE(seen[0].find("10.1.2.0/24"), std::string::npos) << seen[0];
}

}  // namespace
}  // namespace moat
