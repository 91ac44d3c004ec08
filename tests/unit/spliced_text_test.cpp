// SplicedText (util/spliced.h) against the text it stands for, put
// together; MappedFile (util/mapped.h) against the file's bytes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include "util/mapped.h"
#include "util/spliced.h"

namespace moat {
namespace {

std::string random_text(std::mt19937& rng, size_t n) {
  std::string s(n, 'a');
  for (char& c : s) c = "ab\n"[rng() % 3];
  return s;
}

// Every splice of random bases (empty ones, empty cuts and bytes, at either
// end, across 4 KiB blocks) reads as the text put together.
TEST(SplicedText, ReadsAsTheTextPutTogether) {
  std::mt19937 rng(99);
  for (int i = 0; i < 400; ++i) {
    const size_t size = i % 4 == 0 ? rng() % 4 : rng() % 20000;
    const std::string base = random_text(rng, size);
    const size_t at = rng() % (size + 1), cut = rng() % (size - at + 1);
    const std::string bytes = random_text(rng, rng() % 3 == 0 ? 0 : rng() % 5000);
    std::string whole = base;
    whole.replace(at, cut, bytes);
    const SplicedText t(base, at, cut, bytes);
    const std::string what = "case " + std::to_string(i);
    ASSERT_EQ(t.size(), whole.size()) << what;
    EXPECT_EQ(t.str(), whole) << what;
    for (int k = 0; k < 20; ++k) {
      const size_t from = rng() % (whole.size() + 2), n = rng() % 6000;
      EXPECT_EQ(t.substr(from, n), from > whole.size() ? "" : whole.substr(from, n)) << what;
      EXPECT_EQ(t.find('\n', from), whole.find('\n', from)) << what << " from " << from;
      if (from < whole.size()) EXPECT_EQ(t.at(from), whole[from]) << what;
    }
    // Against the text with one byte changed, one cut off, one added: the
    // shared first and last bytes are those of the texts put together.
    for (int k = 0; k < 10; ++k) {
      std::string other = whole;
      const size_t p = rng() % (other.size() + 1);
      if (k % 3 == 0 && p < other.size()) other[p] = 'z';
      if (k % 3 == 1 && p < other.size()) other.erase(p, 1);
      if (k % 3 == 2) other.insert(p, 1, 'z');
      size_t pre = 0;
      while (pre < std::min(other.size(), whole.size()) && other[pre] == whole[pre]) ++pre;
      EXPECT_EQ(t.common_prefix(other), pre) << what;
      const size_t limit = std::min(other.size(), whole.size()) - pre;
      size_t suf = 0;
      while (suf < limit && other[other.size() - 1 - suf] == whole[whole.size() - 1 - suf]) ++suf;
      EXPECT_EQ(t.common_suffix(other, limit), suf) << what;
      EXPECT_EQ(t == other, other == whole) << what;
    }
    EXPECT_TRUE(t == whole) << what;
    if (HasFailure()) return;
  }
}

TEST(MappedFile, HoldsTheFilesBytesAndSaysWhenThereIsNone) {
  const std::string dir = ::testing::TempDir() + "/mapped." + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  const std::string bytes(100000, 'x');
  std::ofstream(dir + "/f") << bytes << "end";
  std::ofstream(dir + "/empty").flush();
  auto m = MappedFile::open(dir + "/f");
  ASSERT_TRUE(m && *m);
  EXPECT_EQ((*m)->view(), bytes + "end");
  // A file replaced by rename (as moat writes its state) leaves the mapping
  // the bytes it had.
  std::ofstream(dir + "/g") << "other";
  std::filesystem::rename(dir + "/g", dir + "/f");
  EXPECT_EQ((*m)->view(), bytes + "end");
  auto e = MappedFile::open(dir + "/empty");
  ASSERT_TRUE(e && *e);
  EXPECT_EQ((*e)->view(), "");
  auto none = MappedFile::open(dir + "/none");
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
  EXPECT_FALSE(MappedFile::open(dir));  // a directory is no file to map
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace moat
