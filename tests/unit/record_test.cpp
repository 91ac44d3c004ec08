// The record's rule table (dataplane/state.h): what encode_rule_rows()
// writes, decode_rule_rows() reads back, whatever a policy's text holds.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "dataplane/state.h"
#include "temp_file.h"

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

// A one-rule apply keeps its changed input file and rule table as patches
// of their recorded blobs (put_blob_change()); each patch is made from the
// previous one, so after any chain of changes the base and one patch must
// give the text, byte for byte.
TEST(BlobPatches, AnyChainOfChangesGivesTheText) {
  std::mt19937 rng(17);
  auto text = [&](size_t n) {
    std::string s(n, ' ');
    for (char& c : s) c = static_cast<char>('a' + rng() % 26);
    return s;
  };
  for (int round = 0; round < 50; ++round) {
    const std::string base = text(200 + rng() % 2000);
    std::string cur = base;
    BlobPatch p{base.size(), 0, 0, ""};
    for (int step = 0; step < 40; ++step) {
      const size_t begin = rng() % (cur.size() + 1);
      const size_t cut = rng() % (std::min<size_t>(cur.size() - begin, 40) + 1);
      const std::string bytes = text(rng() % 50);
      p = merge_patch(p, cur, begin, cut, bytes);
      cur.replace(begin, cut, bytes);
      ASSERT_EQ(p.base_size, base.size());
      ASSERT_LE(p.at + p.cut, base.size());
      ASSERT_EQ(apply_patch(base, p), cur) << "round " << round << " step " << step;
    }
  }
}

// The same rule changed back and forth (a flapping rule, the bench's
// change): the patch stays the size of that rule, never the file's.
TEST(BlobPatches, ChangesInOnePlaceStaySmall) {
  const std::string base(100000, 'x');
  std::string cur = base;
  BlobPatch p{base.size(), 0, 0, ""};
  for (int step = 0; step < 100; ++step) {
    const std::string bytes = step % 2 ? "10.0.0.0/8" : "192.168.0.0/16";
    const size_t cut = step == 0 ? 10 : step % 2 ? 14 : 10;
    p = merge_patch(p, cur, 5000, cut, bytes);
    cur.replace(5000, cut, bytes);
    ASSERT_EQ(apply_patch(base, p), cur);
    EXPECT_LE(p.bytes.size(), 14u);
  }
}

// A one-rule apply keeps its policy image as the ranges where it differs
// from the saved one, a range per section that changed (section_splices());
// sections grow, shrink and change anywhere, and the ranges must give the
// new image back exactly, each no longer than its section's change.
TEST(ImageSplices, AnyChangeOfSectionsGivesTheNewImage) {
  std::mt19937 rng(29);
  auto views = [](const std::vector<std::string>& sections) {
    return std::vector<std::string_view>(sections.begin(), sections.end());
  };
  auto image = [](const std::vector<std::string>& sections) {
    std::string out = "moatimgX";
    for (const auto& s : sections) {
      const uint64_t n = s.size();
      out.append(reinterpret_cast<const char*>(&n), sizeof n);
      out += s;
    }
    return out;
  };
  for (int round = 0; round < 300; ++round) {
    std::vector<std::string> a(1 + rng() % 8);
    for (auto& s : a)
      for (size_t n = rng() % 300; n > 0; --n) s += static_cast<char>('a' + rng() % 3);
    std::vector<std::string> b = a;
    size_t changed = 0;
    for (auto& s : b) {
      if (rng() % 2) continue;
      const size_t at = rng() % (s.size() + 1);
      s.replace(at, rng() % (s.size() - at + 1), std::string(rng() % 20, 'z'));
      ++changed;
    }
    const std::string base = image(a), now = image(b);
    auto splices = section_splices(base, "moatimgX", views(b));
    ASSERT_TRUE(splices);
    EXPECT_LE(splices->size(), 2 * changed);  // its size, its bytes
    EXPECT_EQ(apply_splices(base, *splices), now) << "round " << round;
    // The same, the saved image read from its file, behind other bytes.
    const std::string lead(rng() % 40, 't');
    TempFile file(lead + base);
    auto read = section_splices(TextPieces::file_range(file.fd(), lead.size(), base.size()),
                                "moatimgX", views(b));
    ASSERT_TRUE(read);
    ASSERT_EQ(read->size(), splices->size());
    for (size_t k = 0; k < read->size(); ++k) {
      EXPECT_EQ((*read)[k].at, (*splices)[k].at);
      EXPECT_EQ((*read)[k].cut, (*splices)[k].cut);
      EXPECT_EQ((*read)[k].bytes, (*splices)[k].bytes);
    }
  }
  // Not of that shape: refused, not guessed.
  EXPECT_FALSE(section_splices(image({"abc"}), "moatimgX", views({"abc", "d"})));
  EXPECT_FALSE(section_splices(image({"abc", "d"}), "moatimgX", views({"abc"})));
  EXPECT_FALSE(section_splices(image({"abc"}), "moatimgY", views({"abc"})));
  std::string cut = image({"abcdef"});
  EXPECT_FALSE(section_splices(cut.substr(0, cut.size() - 1), "moatimgX", views({"abcdef"})));
  TempFile short_file(cut.substr(0, cut.size() - 1));
  EXPECT_FALSE(section_splices(TextPieces::file_range(short_file.fd(), 0, cut.size()), "moatimgX",
                               views({"abcdef"})));
}

}  // namespace
}  // namespace moat
