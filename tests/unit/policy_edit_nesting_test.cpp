// find_changed_rule() and read_rule_text() (policy/edit.h) against the
// reader's nesting limit (config/reader.h), apart from policy_edit_test.cpp,
// whose JSON type is not the reader's.
#include <gtest/gtest.h>

#include <string>

#include "config/reader.h"
#include "policy/edit.h"
#include "policy/read.h"

namespace moat {
namespace {

// The new text is scanned before anything checked it: nesting past what
// the reader takes stops the scan (its frames would otherwise grow with
// the file), and a rule's own nesting counts from the file's root when it
// is read, skipped by its brackets or not.
TEST(RuleEdit, NestingPastTheReadersLimitIsRefused) {
  const std::string before =
      R"({"policies":[{"name":"p","podSelector":{},"ingress":[{"ports":[{"port":80}]}]}]})";
  ASSERT_TRUE(parse_policy_file(before, "p.json").problems.empty());
  auto nested = [&](size_t n) {
    std::string after = before;
    const std::string port = "{\"port\":80}";
    after.replace(after.find(port), port.size(), std::string(n, '[') + "1" + std::string(n, ']'));
    return after;
  };
  EXPECT_TRUE(find_changed_rule(before, nested(10)));  // found; the rule reader refuses it
  EXPECT_FALSE(find_changed_rule(before, nested(70)));
  EXPECT_FALSE(find_changed_rule(before, nested(1 << 20)));
  RuleSpan span;
  span.path = "policies[0].ingress[0]";
  const std::string rule = R"({"ports":[{"port":81}]})";  // 3 deep
  span.depth = 3;
  ASSERT_TRUE(read_rule_text(rule, span));
  span.depth = kMaxNesting - 3;
  EXPECT_TRUE(read_rule_text(rule, span));
  span.depth = kMaxNesting - 2;
  EXPECT_FALSE(read_rule_text(rule, span));
}

}  // namespace
}  // namespace moat
