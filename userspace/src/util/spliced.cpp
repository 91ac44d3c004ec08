#include "util/spliced.h"

#include <algorithm>
#include <cstring>

namespace moat {

SplicedText::SplicedText(std::string_view whole) : parts_{whole}, count_(1), size_(whole.size()) {}

SplicedText::SplicedText(std::string_view base, size_t at, size_t cut, std::string_view bytes) {
  for (std::string_view p : {base.substr(0, at), bytes, base.substr(at + cut)})
    if (!p.empty()) parts_[count_++] = p;
  size_ = base.size() - cut + bytes.size();
}

std::string SplicedText::substr(size_t from, size_t n) const {
  std::string out;
  if (from >= size_) return out;
  n = std::min(n, size_ - from);
  out.reserve(n);
  for (size_t i = 0, at = 0; i < count_ && n > 0; at += parts_[i++].size()) {
    const std::string_view p = parts_[i];
    if (from >= at + p.size()) continue;
    const size_t take = std::min(n, at + p.size() - from);
    out.append(p.substr(from - at, take));
    from += take, n -= take;
  }
  return out;
}

char SplicedText::at(size_t i) const {
  for (size_t k = 0; k < count_; i -= parts_[k++].size())
    if (i < parts_[k].size()) return parts_[k][i];
  return '\0';
}

size_t SplicedText::find(char c, size_t from) const {
  for (size_t i = 0, at = 0; i < count_; at += parts_[i++].size()) {
    const std::string_view p = parts_[i];
    if (from >= at + p.size()) continue;
    const size_t lo = from > at ? from - at : 0;
    if (const void* hit = std::memchr(p.data() + lo, c, p.size() - lo))
      return at + static_cast<size_t>(static_cast<const char*>(hit) - p.data());
  }
  return std::string_view::npos;
}

namespace {

// Shared first bytes of two views, a block at a time (memcmp's speed), then
// byte by byte within the block that differs.
size_t shared_prefix(std::string_view a, std::string_view b) {
  constexpr size_t kBlock = 4096;
  const size_t limit = std::min(a.size(), b.size());
  size_t n = 0;
  while (n + kBlock <= limit && std::memcmp(a.data() + n, b.data() + n, kBlock) == 0) n += kBlock;
  while (n < limit && a[n] == b[n]) ++n;
  return n;
}

size_t shared_suffix(std::string_view a, std::string_view b, size_t limit) {
  constexpr size_t kBlock = 4096;
  limit = std::min({limit, a.size(), b.size()});
  size_t n = 0;
  while (n + kBlock <= limit && std::memcmp(a.data() + a.size() - n - kBlock,
                                            b.data() + b.size() - n - kBlock, kBlock) == 0)
    n += kBlock;
  while (n < limit && a[a.size() - 1 - n] == b[b.size() - 1 - n]) ++n;
  return n;
}

}  // namespace

size_t SplicedText::common_prefix(std::string_view other) const {
  size_t n = 0;
  for (size_t i = 0; i < count_; ++i) {
    const std::string_view p = parts_[i];
    const size_t same = shared_prefix(p, other.substr(n));
    n += same;
    if (same < p.size()) break;
  }
  return n;
}

size_t SplicedText::common_suffix(std::string_view other, size_t limit) const {
  size_t n = 0;
  for (size_t i = count_; i-- > 0 && n < limit;) {
    const std::string_view p = parts_[i];
    const std::string_view o = other.substr(0, other.size() - std::min(n, other.size()));
    const size_t same = shared_suffix(p, o, limit - n);
    n += same;
    if (same < p.size()) break;
  }
  return n;
}

}  // namespace moat
