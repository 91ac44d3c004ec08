#include "dataplane/skeleton.h"

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

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

void init_libbpf() {
  static bool done = false;
  if (done) return;
  libbpf_set_print(libbpf_log);
  done = true;
}

}  // namespace moat
