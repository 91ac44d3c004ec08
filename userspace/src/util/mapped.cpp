#include "util/mapped.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

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

void MappedFile::reset() {
  if (data_) munmap(data_, size_);
  fd_.reset();
  data_ = nullptr;
  size_ = 0;
}

}  // namespace moat
