// The record's rule table (dataplane/state.h): what encode_rule_rows()
// writes, decode_rule_rows() reads back, whatever a policy's text holds.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

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

std::string content(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

ino_t inode(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

// The Docker agent writes its intents again and again, and clears each by
// moving it back to `.tmp` (clear_intent()): the next is written over that
// file, shorter or longer, and renamed, so that no intent makes or frees an
// inode, and `path` always holds a whole content.
TEST(StateFiles, RewrittenOverTheClearedFile) {
  auto dir = std::filesystem::temp_directory_path() / ("moat-rewrite-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  struct Gone {
    std::filesystem::path d;
    ~Gone() { std::filesystem::remove_all(d); }
  } gone{dir};
  const std::string path = (dir / "intent.json").string(), tmp = path + ".tmp";
  auto clear = [&] { ASSERT_EQ(rename(path.c_str(), tmp.c_str()), 0); };

  ASSERT_TRUE(rewrite_file_atomic(path, "first, and long\n"));  // nothing to write over
  EXPECT_EQ(content(path), "first, and long\n");
  EXPECT_FALSE(std::filesystem::exists(tmp));
  const ino_t first = inode(path);

  clear();
  ASSERT_TRUE(rewrite_file_atomic(path, "second\n"));  // shorter than what it overwrites
  EXPECT_EQ(content(path), "second\n");
  EXPECT_EQ(inode(path), first);
  EXPECT_FALSE(std::filesystem::exists(tmp));

  clear();
  ASSERT_TRUE(rewrite_file_atomic(path, "the third, longer than all\n"));
  EXPECT_EQ(content(path), "the third, longer than all\n");
  EXPECT_EQ(inode(path), first);

  // Not cleared: written anew, the old one replaced whole.
  ASSERT_TRUE(rewrite_file_atomic(path, "fourth\n"));
  EXPECT_EQ(content(path), "fourth\n");
  EXPECT_NE(inode(path), first);
}

}  // namespace
}  // namespace moat
