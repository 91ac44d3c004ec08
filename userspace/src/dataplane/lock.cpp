#include "dataplane/lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "dataplane/host.h"
#include "util/paths.h"

namespace moat {

std::string lock_path(const std::string& instance) {
  return std::string(paths::kRunDir) + "/" + instance + ".lock";
}

// The lock file is removed on release, so nothing is left behind. A waiter
// may then hold a lock on a file that is gone (or replaced by a newer one):
// it checks, after flock() returns, that the path still names the file it
// locked, and starts over if not.
Result<InstanceLock> InstanceLock::acquire(const std::string& instance) {
  return acquire_at(lock_path(instance));
}

Result<InstanceLock> InstanceLock::acquire_at(const std::string& path) {
  std::string dir = path.substr(0, path.rfind('/'));
  for (;;) {
    if (auto r = mkdirs(dir); !r) return std::unexpected(r.error());
    Fd fd(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd.ok()) {
      if (errno == ENOENT) continue;  // the directory went away in between
      return fail_errno("open lock " + path, errno);
    }
    while (flock(fd.get(), LOCK_EX) != 0)
      if (errno != EINTR) return fail_errno("lock " + path, errno);
    struct stat held {}, named {};
    if (fstat(fd.get(), &held) != 0) return fail_errno("stat lock " + path, errno);
    if (stat(path.c_str(), &named) == 0 && named.st_ino == held.st_ino && named.st_dev == held.st_dev)
      return InstanceLock(path, std::move(fd));
  }
}

InstanceLock::~InstanceLock() {
  if (!fd_.ok()) return;
  unlink(path_.c_str());
  fd_.reset();
  rmdir(path_.substr(0, path_.rfind('/')).c_str());  // only if empty: nothing else is left
}

}  // namespace moat
