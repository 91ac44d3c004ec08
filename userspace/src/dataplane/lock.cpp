#include "dataplane/lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <optional>

#include "dataplane/host.h"
#include "util/paths.h"

namespace moat {

std::string lock_path(const std::string& instance) {
  return std::string(paths::kRunDir) + "/" + instance + ".lock";
}

// The lock file is removed on release (by a keeper, keep_instance_locks(),
// when it stops keeping), so nothing is left behind. A waiter
// may then hold a lock on a file that is gone (or replaced by a newer one):
// it checks, after flock() returns, that the path still names the file it
// locked, and starts over if not.
Result<InstanceLock> InstanceLock::acquire(const std::string& instance) {
  return acquire_at(lock_path(instance));
}

namespace {

bool g_keep_locks = false;

// The lock file a keeper holds open while unlocked.
struct KeptLock {
  std::string path;
  Fd fd;
};
std::optional<KeptLock> g_kept_lock;

// `waited`: set when another held it (tried without blocking first).
Result<void> lock_exclusive(int fd, const std::string& path, bool wait, bool& waited) {
  while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno != EWOULDBLOCK || !wait) return fail_errno("lock " + path, errno);
    waited = true;
    while (flock(fd, LOCK_EX) != 0)
      if (errno != EINTR) return fail_errno("lock " + path, errno);
    return {};
  }
  return {};
}

// Whether `path` still names the file `fd` has open.
Result<bool> still_named(int fd, const std::string& path) {
  struct stat held {};
  struct stat named {};
  if (fstat(fd, &held) != 0) return fail_errno("stat lock " + path, errno);
  return stat(path.c_str(), &named) == 0 && named.st_ino == held.st_ino &&
         named.st_dev == held.st_dev;
}

// Unlinks the file while holding its lock: a waiter on it then finds it
// gone and starts over.
void remove_locked(const std::string& path, Fd fd) {
  unlink(path.c_str());
  fd.reset();
  rmdir(path.substr(0, path.rfind('/')).c_str());  // only if empty: nothing else is left
}

}  // namespace

Result<InstanceLock> InstanceLock::acquire_at(const std::string& path, bool wait) {
  bool waited = false;
  if (g_kept_lock && g_kept_lock->path == path) {
    Fd fd = std::move(g_kept_lock->fd);
    g_kept_lock.reset();
    if (auto r = lock_exclusive(fd.get(), path, wait, waited); !r) {
      g_kept_lock = KeptLock{path, std::move(fd)};
      return std::unexpected(r.error());
    }
    auto named = still_named(fd.get(), path);
    if (!named) return std::unexpected(named.error());
    if (*named) return InstanceLock(path, std::move(fd), waited);
    // Removed by another process's release meanwhile: a fresh file below,
    // and another writer was here.
    waited = true;
  }
  std::string dir = path.substr(0, path.rfind('/'));
  for (;;) {
    if (auto r = mkdirs(dir); !r) return std::unexpected(r.error());
    Fd fd(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd.ok()) {
      if (errno == ENOENT) continue;  // the directory went away in between
      return fail_errno("open lock " + path, errno);
    }
    // When not waiting and refused, the file is left: its holder removes it.
    if (auto r = lock_exclusive(fd.get(), path, wait, waited); !r)
      return std::unexpected(r.error());
    auto named = still_named(fd.get(), path);
    if (!named) return std::unexpected(named.error());
    if (*named) return InstanceLock(path, std::move(fd), waited);
  }
}

InstanceLock::~InstanceLock() {
  if (!fd_.ok()) return;
  if (g_keep_locks && !g_kept_lock) {
    flock(fd_.get(), LOCK_UN);
    g_kept_lock = KeptLock{std::move(path_), std::move(fd_)};
    return;
  }
  remove_locked(path_, std::move(fd_));
}

void keep_instance_locks(bool on) {
  g_keep_locks = on;
  if (on || !g_kept_lock) return;
  KeptLock k = std::move(*g_kept_lock);
  g_kept_lock.reset();
  // Held by another process: it removes the file when it releases it.
  if (flock(k.fd.get(), LOCK_EX | LOCK_NB) != 0) return;
  auto named = still_named(k.fd.get(), k.path);
  if (named && *named) remove_locked(k.path, std::move(k.fd));
}

}  // namespace moat
