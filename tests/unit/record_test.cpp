// The record's rule table (dataplane/state.h): what encode_rule_rows()
// writes, decode_rule_rows() reads back, whatever a policy's text holds.
#include <gtest/gtest.h>

#include "dataplane/state.h"

namespace moat {
namespace {

RuleInfo rule(std::string text, int index) {
  RuleInfo r;
  r.policy = "web";
  r.ns = "default";
  r.direction = "ingress";
  r.rule_index = index;
  r.action = "allow";
  r.text = std::move(text);
  return r;
}

TEST(RecordRuleRows, RoundTripKeepsEveryField) {
  std::vector<RuleInfo> rows = {
      rule("default/web ingress[0]: allow from pods {app=a} on 80/TCP", 0),
      rule("tab\there, newline\nthere, back\\slash\\t", 7)};
  auto back = decode_rule_rows(encode_rule_rows(rows));
  ASSERT_TRUE(back) << back.error().message();
  ASSERT_EQ(back->size(), 2u);
  for (size_t i = 0; i < rows.size(); i++) {
    const auto& j = (*back)[i];
    EXPECT_EQ(j["policy"], rows[i].policy);
    EXPECT_EQ(j["namespace"], rows[i].ns);
    EXPECT_EQ(j["direction"], rows[i].direction);
    EXPECT_EQ(j["index"], rows[i].rule_index);
    EXPECT_EQ(j["action"], rows[i].action);
    EXPECT_EQ(j["text"], rows[i].text);
  }
}

TEST(RecordRuleRows, NoRulesIsAnEmptyTable) {
  EXPECT_EQ(encode_rule_rows({}), "");
  auto back = decode_rule_rows("");
  ASSERT_TRUE(back);
  EXPECT_TRUE(back->empty());
}

TEST(RecordRuleRows, DamageIsAnErrorNotAGuess) {
  std::string text = encode_rule_rows({rule("a", 1), rule("b", 2)});
  EXPECT_FALSE(decode_rule_rows(text.substr(0, text.size() - 1)));         // the last line cut
  EXPECT_FALSE(decode_rule_rows("web\tdefault\tingress\tallow\n"));        // fields missing
  EXPECT_FALSE(decode_rule_rows("web\tdefault\tingress\tallow\ta\tx\n"));  // no index
}

}  // namespace
}  // namespace moat
