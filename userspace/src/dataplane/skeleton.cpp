#include "dataplane/skeleton.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

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

namespace {

// The directory open at `fd`, read from its start.
std::optional<PinDirStamp> read_pin_dir_stamp(const Fd& fd, struct stat& st) {
  // getdents64() into a buffer on the stack: opendir()'s allocation and
  // fcntl() were a third of its cost, and an agent sync takes two stamps.
  PinDirStamp s;
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

std::optional<PinDirStamp> read_pin_dir_stamp(const std::string& dir) {
  Fd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  struct stat st {};
  if (!fd.ok()) return std::nullopt;
  return read_pin_dir_stamp(fd, st);
}

// What changes a stamp raises an inotify event on the directory: a pin
// (vfs_mkobj()), link, unlink or rename in it, its own times or mode, its
// removal or move. The Docker agent stamps the pin directory twice a sync;
// reading it was a fifth of the compile-and-plan step of its way to the
// kernel. One inotify instance for every directory watched: any event
// forgets every stamp kept.
class PinDirWatch {
 public:
  std::optional<PinDirStamp> stamp(const std::string& dir) {
    std::lock_guard<std::mutex> hold(mu_);
    // The path may name another directory than the one watched (one
    // removed and made anew, a bpffs mounted over it): no event tells.
    struct stat st {};
    if (stat(dir.c_str(), &st) != 0) return std::nullopt;
    if (drained_events()) kept_.clear();
    for (const auto& k : kept_)
      if (k.dir == dir && k.dev == st.st_dev && k.ino == st.st_ino) return k.stamp;
    if (!fd_.ok()) fd_ = Fd(inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
    constexpr uint32_t kMask = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB |
                               IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR;
    // Watched before it is read, and the very directory read (by its open
    // fd, whatever the path names meanwhile): a change while reading leaves
    // an event, and the next call reads the directory again.
    Fd dfd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dfd.ok()) return std::nullopt;
    const std::string by_fd = "/proc/self/fd/" + std::to_string(dfd.get());
    if (!fd_.ok() || inotify_add_watch(fd_.get(), by_fd.c_str(), kMask) < 0)
      return read_pin_dir_stamp(dfd, st);
    if (drained_events()) kept_.clear();
    auto s = read_pin_dir_stamp(dfd, st);
    if (!s) return s;
    std::erase_if(kept_, [&](const Kept& k) { return k.dir == dir; });
    kept_.push_back({dir, st.st_dev, st.st_ino, *s});
    return s;
  }

  void stop() {
    std::lock_guard<std::mutex> hold(mu_);
    kept_.clear();
    fd_ = Fd();
  }

 private:
  struct Kept {
    std::string dir;
    dev_t dev;
    ino_t ino;
    PinDirStamp stamp;
  };

  // Whether any event (or an overflow of the queue) came since the last call.
  bool drained_events() {
    if (!fd_.ok()) return false;
    bool any = false;
    alignas(inotify_event) char buf[4096];
    for (;;) {
      ssize_t n = read(fd_.get(), buf, sizeof buf);
      if (n > 0) {
        any = true;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno != EAGAIN) any = true;  // unreadable: trust nothing kept
      return any;
    }
  }

  std::mutex mu_;
  Fd fd_;
  std::vector<Kept> kept_;
};

PinDirWatch g_watch;
bool g_watching = false;

}  // namespace

std::optional<PinDirStamp> pin_dir_stamp(const std::string& dir) {
  return g_watching ? g_watch.stamp(dir) : read_pin_dir_stamp(dir);
}

void watch_pin_dirs(bool on) {
  g_watching = on;
  if (!on) g_watch.stop();
}

void init_libbpf() {
  static bool done = false;
  if (done) return;
  libbpf_set_print(libbpf_log);
  done = true;
}

}  // namespace moat
