// Unit tests for the JSON reader shared by the main file and policy files
// (config/reader.h) and the text helpers it uses (util/text.h). The messages
// themselves are tested through parse_config() in config_test.cpp and
// policy_parse_test.cpp; here are the pieces.
#include "config/reader.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "util/text.h"

namespace moat {
namespace {

std::string render(const std::vector<Problem>& problems) {
  std::string out;
  for (const Problem& p : problems) out += "\n  " + p.format("f.json");
  return out;
}

TEST(Text, Paths) {
  EXPECT_EQ(key_path("", "containers"), "containers");
  EXPECT_EQ(key_path("containers[0]", "name"), "containers[0].name");
  EXPECT_EQ(key_path("labels", "app.kubernetes.io/name"), "labels[\"app.kubernetes.io/name\"]");
  EXPECT_EQ(key_path("x", "0abc"), "x[\"0abc\"]");  // a leading digit would read as an index
  EXPECT_EQ(index_path("networks", 2), "networks[2]");
  EXPECT_EQ(parent_path("containers[0].name"), "containers[0]");
  EXPECT_EQ(parent_path("containers[0]"), "containers");
  EXPECT_EQ(parent_path("containers"), "");
}

TEST(Text, QuoteAndJoin) {
  EXPECT_EQ(quote("a\"b"), "\"a\\\"b\"");
  EXPECT_EQ(quote("stra\xc3\x9f"
                  "e"),
            "\"stra\xc3\x9f"
            "e\"");  // UTF-8 stays as it is
  EXPECT_EQ(did_you_mean("netwroks", {"name", "networks"}), " (did you mean \"networks\"?)");
  EXPECT_EQ(did_you_mean("volumes", {"name", "networks"}), "");
  EXPECT_EQ(join({"a", "b", "c"}, ", "), "a, b, c");
  EXPECT_EQ(join({}, ", "), "");
  EXPECT_EQ(lower("TcP"), "tcp");
  EXPECT_EQ(upper("icmp"), "ICMP");
}

TEST(Reader, UnknownKeysHintsAndMissingKeys) {
  Problems problems;
  auto root = parse_json(R"({"nmae": 1, "spec": {}, "other": 2})", problems);
  ASSERT_TRUE(root.has_value());
  Reader r(problems);
  r.visit("");
  EXPECT_TRUE(r.object(*root, "", {{"name", kRequired}, {"labels"}}, {{"spec", "not here"}}));
  EXPECT_EQ(r.count(), 4u);
  std::vector<Problem> sorted = std::move(problems).in_document_order();
  ASSERT_EQ(sorted.size(), 4u) << render(sorted);
  EXPECT_EQ(sorted[0].message, "unknown key \"nmae\" (did you mean \"name\"?)");
  EXPECT_EQ(sorted[1].message, "unknown key \"spec\" (not here)");
  EXPECT_EQ(sorted[2].message, "unknown key \"other\"");
  EXPECT_EQ(sorted[3].message, "missing required key \"name\"");
}

TEST(Reader, TypedAccessReportsWhatWasFound) {
  Problems problems;
  auto root =
      parse_json(R"({"a": [1, "x"], "b": "yes", "c": "10.0.0.1/8", "d": {"k": 3}})", problems);
  ASSERT_TRUE(root.has_value());
  Reader r(problems);
  r.visit("");
  r.object(*root, "", {{"a"}, {"b"}, {"c"}, {"d"}});  // visits the keys: their order is known
  std::vector<std::string> strings;
  r.member(*root, "", "a", [&](const Json& v, const std::string& p) {
    r.elements(v, p, "strings", [&](const Json& el, const std::string& ep) {
      if (auto s = r.string(el, ep)) strings.push_back(*s);
    });
  });
  bool flag = false;
  r.boolean(*root, "", "b", flag);
  r.member(*root, "", "c", [&](const Json& v, const std::string& p) { EXPECT_FALSE(r.ip(v, p)); });
  std::map<std::string, std::string> labels;
  r.member(*root, "", "d", [&](const Json& v, const std::string& p) { r.labels(v, p, labels); });
  EXPECT_EQ(strings, std::vector<std::string>{"x"});
  std::vector<Problem> sorted = std::move(problems).in_document_order();
  ASSERT_EQ(sorted.size(), 4u) << render(sorted);
  EXPECT_EQ(sorted[0].path, "a[0]");
  EXPECT_EQ(sorted[0].message, "must be a string, not the number 1");
  EXPECT_EQ(sorted[1].path, "b");
  EXPECT_EQ(sorted[1].message, "must be true or false, not the string \"yes\"");
  EXPECT_EQ(sorted[2].path, "c");
  EXPECT_EQ(sorted[2].message,
            "invalid IPv4 address \"10.0.0.1/8\" (write the address without a prefix length)");
  EXPECT_EQ(sorted[3].path, "d.k");
  EXPECT_EQ(sorted[3].message, "must be a string, not the number 3");
}

TEST(Reader, ProblemsAreSortedIntoDocumentOrder) {
  Problems problems;
  auto root = parse_json(R"({"z": {"b": 1, "a": 2}, "y": 3})", problems);
  ASSERT_TRUE(root.has_value());
  Reader r(problems);
  r.visit("");
  r.object(*root, "", {{"z"}, {"y"}});
  r.object((*root)["z"], "z", {{"b"}, {"a"}});
  // Found in another order than written.
  r.problem("y", "third");
  r.problem("z.a", "second");
  r.problem("z.b", "first");
  std::vector<Problem> sorted = std::move(problems).in_document_order();
  ASSERT_EQ(sorted.size(), 3u);
  EXPECT_EQ(sorted[0].message, "first");
  EXPECT_EQ(sorted[1].message, "second");
  EXPECT_EQ(sorted[2].message, "third");
}

TEST(Reader, DuplicateKeysAndSyntaxErrors) {
  Problems problems;
  auto root = parse_json("{\"a\": 1,\n \"a\": 2}", problems);
  ASSERT_TRUE(root.has_value());
  std::vector<Problem> dup = std::move(problems).in_document_order();
  ASSERT_EQ(dup.size(), 1u);
  EXPECT_EQ(dup[0].path, "a");
  EXPECT_EQ(dup[0].message, "duplicate key \"a\"");

  Problems bad;
  EXPECT_FALSE(parse_json("{\n  \"a\": }", bad).has_value());
  std::vector<Problem> syntax = std::move(bad).in_document_order();
  ASSERT_EQ(syntax.size(), 1u);
  EXPECT_EQ(syntax[0].line, 2);
  EXPECT_EQ(syntax[0].column, 8);
  EXPECT_EQ(syntax[0].message.rfind("invalid JSON: ", 0), 0u) << syntax[0].message;
}

// The finder reuses a closed object's frame for the next one at its depth:
// a sibling with the same keys is no duplicate, a duplicate further on is
// found at its own path, in small objects and in ones of over 32 keys
// (which keep their keys in a set).
TEST(Reader, DuplicateKeysInSiblingObjects) {
  std::string many = "{";
  for (int i = 0; i < 40; i++) many += (i ? ", \"k" : "\"k") + std::to_string(i) + "\": 0";
  many += "}";
  const std::string text = "[{\"a\": 1, \"b\": {\"x\": 1}}, {\"a\": 2, \"b\": {\"x\": 2}}, " +
                           many + ", " + many +
                           ", {\"k5\": 1, \"k5\": 2}, {\"a\": 3, \"b\": {\"y\": 1, \"y\": 2}}]";
  Problems problems;
  auto root = parse_json(text, problems);
  ASSERT_TRUE(root.has_value());
  std::vector<Problem> dup = std::move(problems).in_document_order();
  ASSERT_EQ(dup.size(), 2u);
  EXPECT_EQ(dup[0].path, "[4].k5");
  EXPECT_EQ(dup[1].path, "[5].b.y");
  EXPECT_EQ(dup[1].message, "duplicate key \"y\"");
}

TEST(Reader, CheckAddsContext) {
  Problems problems;
  Reader r(problems);
  EXPECT_EQ(r.check(Parsed<int>(7), "p", "ctx: "), 7);
  EXPECT_FALSE(r.check(Parsed<int>(std::unexpected("why")), "p", "ctx: "));
  std::vector<Problem> list = std::move(problems).in_document_order();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].message, "ctx: why");
}

}  // namespace
}  // namespace moat
