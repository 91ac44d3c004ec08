#include "util/mapped.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "util/fd.h"

namespace moat {

Result<std::optional<MappedFile>> MappedFile::open(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.ok()) {
    if (errno == ENOENT) return std::nullopt;
    return fail_errno("open " + path, errno);
  }
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return fail_errno("stat " + path, errno);
  if (!S_ISREG(st.st_mode)) return fail(path + " is not a regular file");
  MappedFile m;
  if (st.st_size == 0) return m;
  m.fd_ = std::move(fd);
  const size_t size = static_cast<size_t>(st.st_size);
  void* p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, m.fd_.get(), 0);
  if (p == MAP_FAILED) return fail_errno("map " + path, errno);
  m.data_ = p;
  m.size_ = size;
  return m;
}

bool MappedFile::read_at(void* to, size_t n, size_t offset) const {
  if (offset > size_ || n > size_ - offset) return false;
  char* out = static_cast<char*>(to);
  while (n > 0) {
    const ssize_t r = pread(fd_.get(), out, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    out += r, n -= static_cast<size_t>(r), offset += static_cast<size_t>(r);
  }
  return true;
}

void MappedFile::touch() const {
  const volatile char* p = static_cast<const char*>(data_);
  for (size_t at = 0; at < size_; at += 4096) (void)p[at];
}

void MappedFile::reset() {
  if (data_) munmap(data_, size_);
  fd_.reset();
  data_ = nullptr;
  size_ = 0;
}

}  // namespace moat
