// windowed.h - two texts compared a window at a time, never whole in
// memory: a text is its pieces, bytes in memory or ranges of an open file.
// On this VM a process pays for each page it touches first, fresh memory
// or a file's mapping alike: a changed 10 MB policy file read whole (5-8
// ms) and compared with its mapped 10 MB blob (about 6 ms) cost more than
// the rest of a one-rule change; read through two small buffers the
// comparison takes about 2-5 ms (README, stop 55).
// Bytes already in memory are compared where they lie, and bytes at the
// same place are not compared at all: a saved policy image's mapping and
// the sections of an image read from it (README, stop 59).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace moat {

class TextPieces {
 public:
  // The text in memory.
  static TextPieces memory(std::string_view text);
  // The first `size` bytes of the file open as `fd`.
  static TextPieces file(int fd, size_t size);
  // The file's first `base_size` bytes with [at, at + cut) replaced by
  // `bytes` (a blob and its patch).
  static TextPieces spliced_file(int fd, size_t base_size, size_t at, size_t cut,
                                 std::string_view bytes);
  // Bytes [offset, offset + size) of the file open as `fd`.
  static TextPieces file_range(int fd, size_t offset, size_t size);
  // Bytes [at, at + n) of this text (clipped to it).
  TextPieces sub(size_t at, size_t n) const;

  size_t size() const { return size_; }
  // Bytes [at, at + n) into `out`; false when the file gave fewer (it
  // shrank) or failed.
  bool read(size_t at, size_t n, char* out) const;
  // Whether the text begins with `bytes` (read a window at a time); false
  // when it could not be read.
  bool starts_with(std::string_view bytes) const;
  // Bytes [at, at + n) where they lie, when one piece in memory holds
  // them all; else nullptr (they are read()).
  const char* in_memory(size_t at, size_t n) const;

 private:
  struct Piece {
    const char* mem = nullptr;  // else from the file at `offset`
    uint64_t offset = 0;
    size_t size = 0;
  };
  void add(Piece p);
  int fd_ = -1;
  std::array<Piece, 3> pieces_{};
  size_t count_ = 0, size_ = 0;
};

// The bytes two texts share at their start, and then at their end (the
// end's count stops where the two would overlap the start's); nullopt
// when one could not be read.
struct SharedEnds {
  size_t prefix = 0, suffix = 0;
};
std::optional<SharedEnds> shared_ends(const TextPieces& a, const TextPieces& b);

}  // namespace moat
