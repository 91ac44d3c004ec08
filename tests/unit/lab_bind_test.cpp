// Unit tests for lab_bind_text() (lab/lab.h): the lab file's text with the
// lab's bindings written in reads back into exactly lab_bind() of the file's
// Config. The instance's record keeps that text, and undoing a failed `lab
// apply` rebuilds the Config from the record alone: before, it rebuilt an
// unbound one (no interfaces, no bridges) and the undo failed. No root.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "config/config.h"
#include "lab/lab.h"

namespace moat {
namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Config parsed(const std::string& text) {
  ParseResult r = parse_config(text, "lab.json");
  EXPECT_TRUE(r.problems.empty()) << (r.problems.empty() ? "" : r.problems[0].format("lab.json"));
  return r.config.value_or(Config{});
}

// Every field binding changes is in config_to_json(); the policies, which it
// leaves out, must come through the text untouched.
void expect_bound_alike(const std::string& text, const std::string& what) {
  auto bound = lab_bind_text(text);
  ASSERT_TRUE(bound.has_value()) << what << ": " << bound.error().message();
  Config want = lab_bind(parsed(text));
  Config got = parsed(*bound);
  EXPECT_EQ(config_to_json(got), config_to_json(want)) << what;
  auto before = nlohmann::json::parse(text), after = nlohmann::json::parse(*bound);
  EXPECT_EQ(after.value("policies", nlohmann::json()), before.value("policies", nlohmann::json()))
      << what;
  EXPECT_EQ(after.value("namespaces", nlohmann::json()),
            before.value("namespaces", nlohmann::json()))
      << what;
  EXPECT_EQ(got.policies.size(), want.policies.size()) << what;
  // Binding twice changes nothing: `lab apply` binds the copy `lab up` bound.
  auto again = lab_bind_text(*bound);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(*again, *bound) << what;
}

TEST(LabBindText, ShortAndLongAttachmentsGetInterfacesNetworksBridgesHostAnUplink) {
  const std::string text = R"({
    "networks": [{"name": "front", "subnet": "172.27.0.0/16"},
                 {"name": "back", "subnet": "172.28.0.0/16", "icc": false}],
    "containers": [{"name": "web", "networks": ["front", {"network": "back", "ip": "172.28.0.9"}]},
                   {"name": "db", "networks": [{"network": "back", "interface": "mine0"}]}]})";
  expect_bound_alike(text, "inline");
  Config got = parsed(*lab_bind_text(text));
  ASSERT_EQ(got.networks.size(), 2u);
  EXPECT_EQ(got.networks[0].bridge, "mbr0");
  EXPECT_EQ(got.networks[1].bridge, "mbr1");
  EXPECT_FALSE(got.networks[1].icc);
  EXPECT_EQ(got.containers[0].networks[0].host_interface, "mve0n0");
  EXPECT_EQ(got.containers[0].networks[1].host_interface, "mve0n1");
  EXPECT_EQ(got.containers[0].networks[1].ip.str(), "172.28.0.9");
  // lab_up() builds host_veth_name(i, j): a name of the file's own is not the lab's.
  EXPECT_EQ(got.containers[1].networks[0].host_interface, "mve1n0");
  EXPECT_EQ(got.uplinks, std::vector<std::string>{"uplink0"});
}

TEST(LabBindText, KeepsUplinksTheFileNames) {
  const std::string text = R"({"host": {"uplinks": ["wan7"]},
    "networks": [{"name": "n", "subnet": "10.9.0.0/24"}], "containers": []})";
  expect_bound_alike(text, "uplinks");
  EXPECT_EQ(parsed(*lab_bind_text(text)).uplinks, std::vector<std::string>{"wan7"});
}

TEST(LabBindText, EveryLabFileOfTheRepository) {
  int n = 0;
  for (const char* dir : {"tests/e2e", "policies"}) {
    for (const auto& e : fs::directory_iterator(fs::path(MOAT_SOURCE_DIR) / dir)) {
      if (e.path().extension() != ".json") continue;
      std::string text = slurp(e.path());
      ParseResult r = parse_config(text, e.path().string());
      if (!r.config) continue;  // a file of another kind, or one made invalid on purpose
      expect_bound_alike(text, e.path().string());
      ++n;
    }
  }
  EXPECT_GE(n, 10);
}

TEST(LabBindText, SaysWhatItCannotBind) {
  auto r = lab_bind_text("[1, 2]");
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("not a JSON object"), std::string::npos);
  EXPECT_FALSE(lab_bind_text("{").has_value());
}

}  // namespace
}  // namespace moat
