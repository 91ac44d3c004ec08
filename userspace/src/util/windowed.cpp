#include "util/windowed.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace moat {

TextPieces TextPieces::memory(std::string_view text) {
  TextPieces t;
  t.add({text.data(), 0, text.size()});
  return t;
}

TextPieces TextPieces::file(int fd, size_t size) { return file_range(fd, 0, size); }

TextPieces TextPieces::spliced_file(int fd, size_t base_size, size_t at, size_t cut,
                                    std::string_view bytes) {
  TextPieces t;
  t.fd_ = fd;
  at = std::min(at, base_size);
  cut = std::min(cut, base_size - at);
  t.add({nullptr, 0, at});
  t.add({bytes.data(), 0, bytes.size()});
  t.add({nullptr, at + cut, base_size - at - cut});
  return t;
}

TextPieces TextPieces::file_range(int fd, size_t offset, size_t size) {
  TextPieces t;
  t.fd_ = fd;
  t.add({nullptr, offset, size});
  return t;
}

TextPieces TextPieces::sub(size_t at, size_t n) const {
  TextPieces t;
  t.fd_ = fd_;
  at = std::min(at, size_);
  n = std::min(n, size_ - at);
  for (size_t i = 0, start = 0; i < count_ && n > 0; start += pieces_[i++].size) {
    const Piece& p = pieces_[i];
    if (at >= start + p.size) continue;
    const size_t in = at - start, take = std::min(n, p.size - in);
    t.add({p.mem ? p.mem + in : nullptr, p.offset + (p.mem ? 0 : in), take});
    at += take, n -= take;
  }
  return t;
}

void TextPieces::add(Piece p) {
  if (p.size == 0) return;
  pieces_[count_++] = p;
  size_ += p.size;
}

const char* TextPieces::in_memory(size_t at, size_t n) const {
  for (size_t i = 0, start = 0; i < count_; start += pieces_[i++].size) {
    const Piece& p = pieces_[i];
    if (at >= start + p.size) continue;
    return p.mem && n <= p.size - (at - start) ? p.mem + (at - start) : nullptr;
  }
  return nullptr;
}

bool TextPieces::read(size_t at, size_t n, char* out) const {
  if (at > size_ || n > size_ - at) return false;
  for (size_t i = 0, start = 0; i < count_ && n > 0; start += pieces_[i++].size) {
    const Piece& p = pieces_[i];
    if (at >= start + p.size) continue;
    const size_t in = at - start, take = std::min(n, p.size - in);
    if (p.mem) {
      std::memcpy(out, p.mem + in, take);
    } else {
      for (size_t got = 0; got < take;) {
        ssize_t r = pread(fd_, out + got, take - got, static_cast<off_t>(p.offset + in + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        got += static_cast<size_t>(r);
      }
    }
    out += take, at += take, n -= take;
  }
  return n == 0;
}

namespace {

// Small enough to stay in the CPU's cache, large enough that a 10 MB text
// is some 80 reads.
constexpr size_t kWindow = size_t{128} << 10;

size_t same_from_front(const char* a, const char* b, size_t n) {
  size_t i = 0;
  constexpr size_t kBlock = 4096;
  while (i + kBlock <= n && std::memcmp(a + i, b + i, kBlock) == 0) i += kBlock;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

size_t same_from_back(const char* a, const char* b, size_t n) {
  size_t i = 0;
  constexpr size_t kBlock = 4096;
  while (i + kBlock <= n && std::memcmp(a + n - i - kBlock, b + n - i - kBlock, kBlock) == 0)
    i += kBlock;
  while (i < n && a[n - 1 - i] == b[n - 1 - i]) ++i;
  return i;
}

}  // namespace

bool TextPieces::starts_with(std::string_view bytes) const {
  if (bytes.size() > size_) return false;
  std::string window(std::min(kWindow, bytes.size()), '\0');
  for (size_t at = 0; at < bytes.size(); at += window.size()) {
    const size_t n = std::min(window.size(), bytes.size() - at);
    if (!read(at, n, window.data()) || bytes.substr(at, n) != std::string_view(window.data(), n))
      return false;
  }
  return true;
}

std::optional<SharedEnds> shared_ends(const TextPieces& a, const TextPieces& b) {
  SharedEnds s;
  const size_t common = std::min(a.size(), b.size());
  std::string wa, wb;  // buffers for what is read, made when first needed
  // Bytes [at, at + n) of `t`: where they lie, else read into `w`.
  auto window = [](const TextPieces& t, size_t at, size_t n, std::string& w) -> const char* {
    if (const char* p = t.in_memory(at, n)) return p;
    if (w.size() < n) w.resize(kWindow);
    return t.read(at, n, w.data()) ? w.data() : nullptr;
  };
  while (s.prefix < common) {
    const size_t n = std::min(kWindow, common - s.prefix);
    const char* x = window(a, s.prefix, n, wa);
    const char* y = x ? window(b, s.prefix, n, wb) : nullptr;
    if (!y) return std::nullopt;
    const size_t same = x == y ? n : same_from_front(x, y, n);
    s.prefix += same;
    if (same < n) break;
  }
  const size_t limit = common - s.prefix;
  while (s.suffix < limit) {
    const size_t n = std::min(kWindow, limit - s.suffix);
    const char* x = window(a, a.size() - s.suffix - n, n, wa);
    const char* y = x ? window(b, b.size() - s.suffix - n, n, wb) : nullptr;
    if (!y) return std::nullopt;
    const size_t same = x == y ? n : same_from_back(x, y, n);
    s.suffix += same;
    if (same < n) break;
  }
  return s;
}

}  // namespace moat
