// mapped.h - the owner of a whole file mapped read-only. For moat's own
// state files (blobs, the policy image): they are written to a temporary
// name and renamed, never changed in place, so a mapping keeps the bytes
// the file had when it was opened, at no copy. Never for a user's file,
// which may shrink under the mapping (a read past its end is SIGBUS).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "util/fd.h"
#include "util/result.h"

namespace moat {

class MappedFile {
 public:
  MappedFile() = default;
  MappedFile(MappedFile&& o) noexcept
      : fd_(std::move(o.fd_)),
        data_(std::exchange(o.data_, nullptr)),
        size_(std::exchange(o.size_, 0)) {}
  MappedFile& operator=(MappedFile&& o) noexcept {
    reset();
    fd_ = std::move(o.fd_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    return *this;
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile() { reset(); }

  // The file at `path` mapped; nullopt when it does not exist. Its pages
  // are mapped at once (the page cache's, not copies).
  static Result<std::optional<MappedFile>> open(const std::string& path);

  std::string_view view() const { return {static_cast<const char*>(data_), size_}; }
  // The file, kept open: a long run of its bytes is cheaper read than
  // touched through the mapping (util/windowed.h says why).
  int fd() const { return fd_.get(); }
  // `n` bytes from `offset` into `to`, read from the file (its bytes are
  // the mapping's): false past its end or on an error.
  bool read_at(void* to, size_t n, size_t offset) const;
  // Reads a byte of every 4 KiB page (the caller says why).
  void touch() const;

 private:
  void reset();
  Fd fd_;
  void* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace moat
