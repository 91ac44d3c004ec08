// lock.h - one writer per instance at a time. Two applies (a user's and an
// agent's, or a runtime calling the CNI plugin for several containers at
// once) each read the kernel's maps and write their difference: interleaved,
// one would undo the other. flock(2) on /run/moat/<instance>.lock, held for
// the whole reconcile; the kernel drops it when the process dies, so a
// crashed apply never blocks the next one.
#pragma once

#include <string>

#include "util/fd.h"
#include "util/result.h"

namespace moat {

class InstanceLock {
 public:
  // Waits until no other process holds the instance's lock.
  static Result<InstanceLock> acquire(const std::string& instance);
  // The same on any lock file (its directory is made when missing).
  // `wait` false: fails (EWOULDBLOCK) at once while another holds it.
  static Result<InstanceLock> acquire_at(const std::string& path, bool wait = true);
  InstanceLock(InstanceLock&&) noexcept = default;
  InstanceLock& operator=(InstanceLock&&) noexcept = default;
  ~InstanceLock();
  // Whether another process held the lock when this one was asked for, or
  // had it since the keeper's last release (its file was removed): what
  // the caller saw before may have changed meanwhile.
  bool waited() const { return waited_; }

 private:
  InstanceLock(std::string path, Fd fd, bool waited)
      : path_(std::move(path)), fd_(std::move(fd)), waited_(waited) {}
  std::string path_;
  Fd fd_;
  bool waited_ = false;
};

std::string lock_path(const std::string& instance);

// A process that locks one instance again and again (the Docker agent,
// keep_kernel_handles()) keeps its lock file open and in place between
// locks: a release only unlocks it, and the next acquire locks it again.
// Creating and removing the file each time on /run (ext4 here, not a
// tmpfs) was most of an agent sync's locking. Others lock the same file
// meanwhile as before, and each of them removes it when it releases it;
// the keeper's next acquire then finds its file gone and makes a new one.
// Turned off, the kept file is removed if nobody holds it. One thread's:
// the kept file is not guarded against two threads locking at once.
void keep_instance_locks(bool on);

}  // namespace moat
