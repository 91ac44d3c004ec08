// Issue 14: what a file may be. Every case here was a crash, a gigabyte, a
// silent truncation or a message that hid what was wrong; now each is one
// problem, found before anything is read into the model (and so before the
// kernel), in time and memory linear in the file.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "config/config.h"
#include "config/reader.h"
#include "util/text.h"

namespace moat {
namespace {

const char* kMain =
    R"({"networks": [{"name": "a", "subnet": "172.30.0.0/24"}],
        "containers": [{"name": "c", "networks": [{"network": "a", "interface": "v1"}]}]})";

// The one problem a policy file has, "line:column: message" ("" if none).
std::string policy_problem(const std::string& text, const std::string& source) {
  PolicyFileResult r = parse_policy_file(text, source);
  if (r.problems.empty()) return "";
  EXPECT_EQ(r.problems.size(), 1u);
  const Problem& p = r.problems[0];
  return std::to_string(p.line) + ":" + std::to_string(p.column) + ": " + p.message;
}

TEST(InputLimits, InvalidUtf8IsAProblemWhereverItIs) {
  // A label value, a comment: read, applied, and only the saving of the
  // inputs failed (nlohmann type_error.316), after the kernel had the policy.
  EXPECT_EQ(policy_problem("name: p\npodSelector:\n  matchLabels:\n    app: \"x\xff\"\n", "p.yaml"),
            "4:12: invalid UTF-8 (byte 0xFF): JSON and YAML files are UTF-8 text; re-encode the "
            "file");
  EXPECT_EQ(policy_problem("name: p\n# caf\xe9\npodSelector: {}\n", "p.yaml").substr(0, 28),
            "2:6: invalid UTF-8 (byte 0xE");
  // Overlong form, surrogate, past U+10FFFF, a lone continuation byte.
  for (const char* bad : {"\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\x80"}) {
    const std::string text = std::string(R"({"name": "p)") + bad + R"(", "podSelector": {}})";
    EXPECT_NE(policy_problem(text, "p.json").find("invalid UTF-8"), std::string::npos)
        << testing::PrintToString(text);
  }
  EXPECT_EQ(policy_problem("{\"name\": \"caf\xc3\xa9-\xe2\x82\xac\", \"podSelector\": {}}", "p.json")
                .find("UTF-8"),
            std::string::npos)
      << "valid UTF-8 is no problem (the name may be invalid for other reasons)";
  ParseResult main = parse_config(std::string(kMain).insert(20, "\xfe"), "m.json");
  ASSERT_EQ(main.problems.size(), 1u);
  EXPECT_EQ(main.problems[0].message.substr(0, 24), "invalid UTF-8 (byte 0xFE");
}

TEST(InputLimits, ANulByteIsAProblemNotTheEnd) {
  // nlohmann stopped at the NUL: whatever followed was never read.
  const std::string text = std::string(R"({"name": "p", "podSelector": {}})") + '\0' + "{\"x\": 1}";
  EXPECT_EQ(policy_problem(text, "p.json"), "1:33: a NUL byte: a JSON or YAML file has none");
}

TEST(InputLimits, NestingIsBounded) {
  // The reader's paths grew with the depth: 40,000 levels in 80 KB took
  // over a gigabyte.
  const std::string head = R"({"name": "p", "podSelector": {}, "x": )";
  const std::string at_limit =
      std::string(kMaxNesting - 1, '[') + std::string(kMaxNesting - 1, ']');
  EXPECT_EQ(policy_problem(head + at_limit + "}", "p.json").find("nested"), std::string::npos)
      << "64 levels in all are fine (x is an unknown key: that is the problem)";
  const auto t0 = std::chrono::steady_clock::now();
  const std::string bomb = std::string(40000, '[') + std::string(40000, ']');
  EXPECT_EQ(policy_problem(bomb, "p.json"), "1:65: nested deeper than 64 arrays and objects");
  EXPECT_NE(policy_problem("x: " + std::string(100, '[') + std::string(100, ']'), "p.yaml")
                .find("nested deeper than 64 sequences and mappings"),
            std::string::npos);
  EXPECT_NE(policy_problem("x: " + bomb, "p.yaml"), "") << "yaml-cpp's own guard";
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

TEST(InputLimits, YamlAliasesCannotExplode) {
  // Nine levels of nine aliases: 387 million strings written out.
  std::string text = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n";
  for (char c = 'b'; c <= 'j'; ++c) {
    text += std::string(1, c) + ": &" + c + " [";
    for (int i = 0; i < 9; ++i) text += std::string(i ? "," : "") + "*" + char(c - 1);
    text += "]\n";
  }
  text += "name: p\npodSelector: {}\n";
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_NE(policy_problem(text, "p.yaml").find("aliases expand to more than the file"),
            std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  // Aliases as people use them (a shared selector) are fine.
  EXPECT_EQ(policy_problem("- name: p\n  podSelector: &s {matchLabels: {app: x}}\n"
                           "- name: q\n  podSelector: *s\n",
                           "p.yaml"),
            "");
}

// Found by tests/parser_fuzz: yaml-cpp 0.7 never finishes a top-level
// value followed by a comma; `moat validate` ran for minutes and grew
// without bound on a 120-byte file.
TEST(InputLimits, YamlThatYamlCppWouldNeverFinish) {
  const auto t0 = std::chrono::steady_clock::now();
  for (const char* text : {"\"a\",", "[1],", "{a: 1},", "\n  \"a\" ,\n"})
    EXPECT_NE(policy_problem(text, "p.yaml").find("something follows the document's top-level value"),
              std::string::npos)
        << text;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_EQ(policy_problem("name: p\npodSelector: {}\n...\n---\nname: q\npodSelector: {}\n",
                           "p.yaml"),
            "")
      << "documents ended by ... and started by --- are fine";
}

TEST(InputLimits, SizeAndKeysAreBounded) {
  const std::string huge(kMaxInputBytes + 1, ' ');
  EXPECT_EQ(policy_problem(huge, "p.json"),
            "0:0: the file has 16777217 bytes; the limit is 16 MiB");
  const std::string key(5000000, 'k');
  const std::string text = R"({"name": "p", "podSelector": {"matchLabels": {")" + key + R"(": "v"}}})";
  const std::string p = policy_problem(text, "p.json");
  EXPECT_EQ(p.substr(0, 50), "0:0: a key of 5000000 bytes; the limit is 1024: \"k");
  EXPECT_LT(p.size(), 200u) << "the key is cut in the message";
  // The key is checked while the JSON is parsed: the one problem, even after
  // a duplicate key, and in a config file too.
  const std::string dup = R"({"name": "p", "name": "q", ")" + key + R"(": 1})";
  EXPECT_EQ(policy_problem(dup, "p.json").substr(0, 50), p.substr(0, 50));
  ParseResult main = parse_config(R"({"networks": [], ")" + key + R"(": 1})", "m.json");
  ASSERT_EQ(main.problems.size(), 1u);
  EXPECT_EQ(main.problems[0].message.substr(0, 45), p.substr(5, 45));
}

TEST(Text, QuoteCutsLongValuesAndShowsInvisibles) {
  EXPECT_EQ(quote("app"), "\"app\"");
  EXPECT_EQ(quote("\xef\xbb\xbf" "app"), "\"\\uFEFFapp\"") << "a BOM";
  EXPECT_EQ(quote("a\xe2\x80\x8b" "b"), "\"a\\u200Bb\"") << "a zero-width space";
  EXPECT_EQ(quote("caf\xc3\xa9"), "\"caf\xc3\xa9\"") << "visible characters stay as they are";
  const std::string q = quote(std::string(50 << 20, 'v'));
  EXPECT_EQ(q, "\"" + std::string(80, 'v') + "\"... (cut: 52428800 bytes in all)");
  // Cut on a character boundary: 79 bytes of 'x' then a two-byte character.
  EXPECT_EQ(quote(std::string(79, 'x') + "\xc3\xa9" + std::string(10, 'y')),
            "\"" + std::string(79, 'x') + "\"... (cut: 91 bytes in all)");
}

TEST(Text, NoSuggestionForABlob) {
  EXPECT_EQ(closest_match(std::string(1 << 20, 'n'), {"networks"}), "");
  EXPECT_EQ(closest_match("netwroks", {"networks"}), "networks");
}

}  // namespace
}  // namespace moat
