// Unit tests for util/windowed.h: texts in pieces (memory, a file, a file
// with a patch) read a window at a time, or compared where they lie in
// memory, must give the bytes and shared ends that the texts whole give,
// across windows and pieces.
#include "util/windowed.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <random>
#include <string>

#include "dataplane/state.h"
#include "temp_file.h"
#include "util/spliced.h"

namespace moat {
namespace {

std::string random_text(std::mt19937& rng, size_t n) {
  std::string s(n, 'a');
  for (char& c : s) c = static_cast<char>('a' + rng() % 3);  // long shared runs are likely
  return s;
}

// Each way of holding a text gives its bytes at any offset.
TEST(Windowed, PiecesReadAsTheWholeText) {
  std::mt19937 rng(55);
  for (int i = 0; i < 40; ++i) {
    const std::string base = random_text(rng, 1 + rng() % 400000);
    const size_t at = rng() % (base.size() + 1), cut = rng() % (base.size() - at + 1);
    const std::string bytes = random_text(rng, rng() % 300);
    std::string whole = base;
    whole.replace(at, cut, bytes);
    TempFile f(base);
    const TextPieces spliced = TextPieces::spliced_file(f.fd(), base.size(), at, cut, bytes);
    ASSERT_EQ(spliced.size(), whole.size());
    for (int k = 0; k < 30; ++k) {
      const size_t from = rng() % (whole.size() + 1), n = rng() % (whole.size() - from + 1);
      std::string got(n, '\0');
      ASSERT_TRUE(spliced.read(from, n, got.data()));
      EXPECT_EQ(got, whole.substr(from, n)) << i << " " << from << " " << n;
    }
    std::string past(2, '\0');
    EXPECT_FALSE(spliced.read(whole.size() - 1, 2, past.data()));
    // Its start, over windows and pieces; one byte off anywhere is not.
    const size_t n = rng() % (whole.size() + 1);
    EXPECT_TRUE(spliced.starts_with(whole.substr(0, n))) << i << " " << n;
    if (n > 0) {
      std::string off = whole.substr(0, n);
      off[rng() % n] ^= 0x20;
      EXPECT_FALSE(spliced.starts_with(off)) << i << " " << n;
    }
    EXPECT_FALSE(spliced.starts_with(whole + "x"));
  }
}

// A range of a file, and any part of a text in pieces, read as those bytes
// of the text whole.
TEST(Windowed, RangesAndPartsReadAsTheirBytes) {
  std::mt19937 rng(56);
  for (int i = 0; i < 40; ++i) {
    const std::string file = random_text(rng, 1 + rng() % 300000);
    TempFile f(file);
    const size_t off = rng() % (file.size() + 1), size = rng() % (file.size() - off + 1);
    const TextPieces range = TextPieces::file_range(f.fd(), off, size);
    ASSERT_EQ(range.size(), size);
    std::string got(size, '\0');
    ASSERT_TRUE(range.read(0, size, got.data()));
    EXPECT_EQ(got, file.substr(off, size)) << i;
    // Parts of a blob with its patch, across its three pieces.
    const size_t at = rng() % (file.size() + 1), cut = rng() % (file.size() - at + 1);
    const std::string bytes = random_text(rng, rng() % 300);
    std::string whole = file;
    whole.replace(at, cut, bytes);
    const TextPieces spliced = TextPieces::spliced_file(f.fd(), file.size(), at, cut, bytes);
    for (int k = 0; k < 20; ++k) {
      const size_t from = rng() % (whole.size() + 2), n = rng() % (whole.size() + 2);
      const TextPieces part = spliced.sub(from, n);
      const std::string want = from > whole.size() ? "" : whole.substr(from, n);
      ASSERT_EQ(part.size(), want.size()) << i << " " << from << " " << n;
      std::string have(want.size(), '\0');
      ASSERT_TRUE(part.read(0, want.size(), have.data()));
      EXPECT_EQ(have, want) << i << " " << from << " " << n;
    }
  }
}

// shared_ends() against a byte by byte count, for changes anywhere in
// texts of up to several windows, and at window edges.
TEST(Windowed, SharedEndsAreTheWholeTextsOnes) {
  std::mt19937 rng(56);
  for (int i = 0; i < 120; ++i) {
    const std::string a = random_text(rng, rng() % 600000);
    std::string b = a;
    size_t at = a.empty() ? 0 : rng() % (a.size() + 1);
    if (i % 4 == 0) at = std::min(a.size(), (size_t{128} << 10) * (1 + rng() % 3) - rng() % 2);
    const int kind = static_cast<int>(rng() % 4);
    if (kind == 0 && at < b.size()) b[at] = 'z';
    if (kind == 1) b.insert(at, random_text(rng, 1 + rng() % 50));
    if (kind == 2 && at < b.size()) b.erase(at, 1 + rng() % 5000);
    // kind 3: the same text
    const SplicedText whole(a);
    const size_t prefix = whole.common_prefix(b);
    const size_t suffix = whole.common_suffix(b, std::min(a.size(), b.size()) - prefix);
    TempFile fa(a), fb(b);
    for (int way = 0; way < 4; ++way) {  // way 3: both compared where they lie
      const TextPieces pa =
          way == 0 || way == 3 ? TextPieces::memory(a) : TextPieces::file(fa.fd(), a.size());
      const TextPieces pb = way >= 2 ? TextPieces::memory(b) : TextPieces::file(fb.fd(), b.size());
      auto ends = shared_ends(pa, pb);
      ASSERT_TRUE(ends);
      EXPECT_EQ(ends->prefix, prefix) << i << " way " << way;
      EXPECT_EQ(ends->suffix, suffix) << i << " way " << way;
    }
  }
}

// A recorded blob and its patch, compared a window at a time, against the
// text they make.
TEST(Windowed, APatchedBlobComparesAsItsText) {
  std::mt19937 rng(58);
  for (int i = 0; i < 60; ++i) {
    const std::string base = random_text(rng, 1 + rng() % 500000);
    const size_t at = rng() % (base.size() + 1),
                 cut = rng() % std::min<size_t>(base.size() - at + 1, 5000);
    const std::string bytes = random_text(rng, rng() % 3000);
    std::string text = base;
    text.replace(at, cut, bytes);
    std::string other = text;
    const size_t k = rng() % (other.size() + 1);
    if (i % 3 == 0 && k < other.size()) other[k] = 'z';
    if (i % 3 == 1) other.insert(k, "zz");
    TempFile f(base);
    const TextPieces recorded = TextPieces::spliced_file(f.fd(), base.size(), at, cut, bytes);
    const SplicedText whole(text);
    auto ends = shared_ends(recorded, TextPieces::memory(other));
    ASSERT_TRUE(ends);
    const size_t prefix = whole.common_prefix(other);
    EXPECT_EQ(ends->prefix, prefix) << i;
    EXPECT_EQ(ends->suffix,
              whole.common_suffix(other, std::min(text.size(), other.size()) - prefix))
        << i;
  }
}

// Bytes in memory are where they lie only within one piece; a file's are
// always read.
TEST(Windowed, InMemoryOnlyWithinOnePiece) {
  std::mt19937 rng(60);
  const std::string a = random_text(rng, 3000), b = random_text(rng, 2000);
  TempFile f(b);
  for (int i = 0; i < 200; ++i) {
    const size_t at = rng() % a.size(), n = 1 + rng() % (a.size() - at);
    EXPECT_EQ(TextPieces::memory(a).in_memory(at, n), a.data() + at);
    EXPECT_EQ(TextPieces::memory(a).sub(at, n).in_memory(0, n), a.data() + at);
    EXPECT_EQ(TextPieces::memory(a).in_memory(at, a.size() - at + 1), nullptr);
    EXPECT_EQ(TextPieces::file(f.fd(), b.size()).in_memory(at % b.size(), 1), nullptr);
    // A file's patch in memory between two ranges of the file.
    const TextPieces spliced = TextPieces::spliced_file(f.fd(), b.size(), 100, 50, a);
    const size_t in = rng() % a.size(), k = 1 + rng() % (a.size() - in);
    EXPECT_EQ(spliced.in_memory(100 + in, k), a.data() + in);
    EXPECT_EQ(spliced.in_memory(99, k + 1), nullptr);  // from the file into the patch
    EXPECT_EQ(spliced.in_memory(100 + in, a.size() - in + 1), nullptr);
  }
}

// Views of one text at one place share all their bytes (shared_ends()
// takes them without comparing); a copy with one byte changed, however
// alike, is compared.
TEST(Windowed, ViewsAtOnePlaceAndCopiesShareTheirBytes) {
  std::mt19937 rng(59);
  const std::string text = random_text(rng, 700000);
  const TextPieces whole = TextPieces::memory(text);
  for (int i = 0; i < 40; ++i) {
    const size_t at = rng() % text.size(), n = rng() % (text.size() - at + 1);
    const std::string_view view = std::string_view(text).substr(at, n);
    auto ends = shared_ends(whole.sub(at, n), TextPieces::memory(view));
    ASSERT_TRUE(ends);
    EXPECT_EQ(ends->prefix, n);
    EXPECT_EQ(ends->suffix, 0u);
    // A copy of those bytes with one of them changed: compared, not taken
    // for the view at that place.
    if (n == 0) continue;
    std::string copy(view);
    const size_t k = rng() % n;
    copy[k] ^= 0x40;
    ends = shared_ends(whole.sub(at, n), TextPieces::memory(copy));
    ASSERT_TRUE(ends);
    EXPECT_EQ(ends->prefix, k) << i;
    EXPECT_EQ(ends->suffix, n - k - 1) << i;
  }
}

// read_whole() reads what a pipe gives (`moat apply -f <(...)`): there is
// no start to seek to.
TEST(Windowed, AWholeReadTakesAPipe) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  // Within the pipe's buffer, written and closed before the read: nothing
  // waits on a reader that fails.
  const std::string text(60000, 'p');
  ASSERT_EQ(write(p[1], text.data(), text.size()), static_cast<ssize_t>(text.size()));
  close(p[1]);
  auto got = read_whole("/proc/self/fd/" + std::to_string(p[0]));
  close(p[0]);
  ASSERT_TRUE(got) << got.error().message();
  ASSERT_TRUE(*got);
  EXPECT_EQ(**got, text);
}

// A file that holds fewer bytes than it was said to: no ends.
TEST(Windowed, AShortFileIsNoText) {
  const std::string a(300000, 'a');
  TempFile f(a.substr(0, 1000));
  EXPECT_FALSE(shared_ends(TextPieces::memory(a), TextPieces::file(f.fd(), a.size())));
  EXPECT_TRUE(shared_ends(TextPieces::memory(a.substr(0, 1000)), TextPieces::file(f.fd(), 1000)));
}

}  // namespace
}  // namespace moat
