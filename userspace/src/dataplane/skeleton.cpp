#include "dataplane/skeleton.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "util/fd.h"

namespace moat {
namespace {

// libbpf reports an empty TC filter slot as a kernel error; moat queries
// empty slots on purpose, so those lines are noise unless MOAT_DEBUG is set.
int libbpf_log(enum libbpf_print_level level, const char* fmt, va_list ap) {
  if (getenv("MOAT_DEBUG")) return vfprintf(stderr, fmt, ap);
  if (level != LIBBPF_WARN) return 0;
  char line[1024];
  vsnprintf(line, sizeof(line), fmt, ap);
  if (strstr(line, "Cannot find specified filter chain") ||
      strstr(line, "Parent Qdisc doesn't exists") ||  // no clsact: `moat down` asks everywhere
      strstr(line, "Exclusivity flag on, cannot modify") ||  // clsact already there
      // libbpf 1.1 parsing the TC dump of a newer kernel, which repeats an
      // attribute it does not use: harmless.
      strstr(line, "found multiple times in message"))
    return 0;
  return fputs(line, stderr);
}

}  // namespace

Result<uint32_t> pinned_max_entries(const std::string& path) {
  Fd fd(bpf_obj_get(path.c_str()));
  if (!fd.ok()) {
    if (errno == ENOENT) return 0u;
    return fail_errno("open pinned map " + path, errno);
  }
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0)
    return fail_errno("read map " + path, errno);
  return info.max_entries;
}

std::optional<PinDirStamp> pin_dir_stamp(const std::string& dir) {
  // getdents64() into a buffer on the stack: opendir()'s allocation and
  // fcntl() were a third of its cost, and an agent sync takes two stamps.
  Fd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.ok()) return std::nullopt;
  PinDirStamp s;
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return std::nullopt;
  s.dir_ino = st.st_ino;
  s.mtime_s = st.st_mtim.tv_sec;
  s.mtime_ns = st.st_mtim.tv_nsec;
  s.ctime_s = st.st_ctim.tv_sec;
  s.ctime_ns = st.st_ctim.tv_nsec;
  alignas(dirent64) char buf[8192];
  for (;;) {
    ssize_t n = getdents64(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    if (n == 0) break;
    for (ssize_t at = 0; at < n;) {
      const auto* e = reinterpret_cast<const dirent64*>(buf + at);
      at += e->d_reclen;
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0)
        s.entries.emplace_back(e->d_name, e->d_ino);
    }
  }
  std::sort(s.entries.begin(), s.entries.end());
  return s;
}

void init_libbpf() {
  static bool done = false;
  if (done) return;
  libbpf_set_print(libbpf_log);
  done = true;
}

}  // namespace moat
