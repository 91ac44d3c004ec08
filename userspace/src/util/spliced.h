// spliced.h - a text laid out as up to three pieces end to end: a saved
// blob's base with a patch's bytes in place of one range (dataplane/state.h).
// The one-rule apply reads 10 MB texts this way, mapped and never copied
// whole: comparisons and the few bytes it needs are taken piece by piece.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>

namespace moat {

class SplicedText {
 public:
  SplicedText() = default;
  // One piece: a whole text. Implicit, so a text is spliced text of itself.
  SplicedText(std::string_view whole);  // NOLINT(google-explicit-constructor)
  SplicedText(const std::string& whole) : SplicedText(std::string_view(whole)) {}  // NOLINT
  // `base` with its bytes [at, at + cut) replaced by `bytes`. The caller
  // has checked the range lies in `base`.
  SplicedText(std::string_view base, size_t at, size_t cut, std::string_view bytes);

  size_t size() const { return size_; }
  // Bytes [from, from + n), clipped at the end.
  std::string substr(size_t from, size_t n) const;
  std::string str() const { return substr(0, size_); }
  // Byte `i` (< size()).
  char at(size_t i) const;
  // The first `c` at or after `from`; npos when none.
  size_t find(char c, size_t from = 0) const;
  // How many first bytes this and `other` share.
  size_t common_prefix(std::string_view other) const;
  // How many last bytes they share, at most `limit`.
  size_t common_suffix(std::string_view other, size_t limit) const;
  bool operator==(std::string_view other) const {
    return size_ == other.size() && common_prefix(other) == size_;
  }

 private:
  std::array<std::string_view, 3> parts_{};
  size_t count_ = 0, size_ = 0;
};

}  // namespace moat
