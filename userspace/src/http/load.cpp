// load.cpp - finds and loads moat-http.so (see transport.h for why it is a
// module): once per process, on the first call of a command that speaks HTTP.
#include <dlfcn.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mutex>
#include <vector>

#include "http/transport.h"

namespace moat::http {
namespace {

constexpr const char* kModule = "moat-http.so";

Result<std::string> exe_dir() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return fail("find the running binary (/proc/self/exe)", errno);
  std::string path(buf, static_cast<size_t>(n));
  return path.substr(0, path.rfind('/'));
}

// Code loaded into a root process must be no easier to replace than the
// binary itself.
Result<void> check_module_file(const std::string& path, const struct stat& st) {
  if (!S_ISREG(st.st_mode)) return fail(path + " is not a regular file");
  if (st.st_uid != 0 && st.st_uid != ::geteuid())
    return fail("refusing to load " + path + ": owned by uid " + std::to_string(st.st_uid) +
                ", not by root or the user running moat");
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    return fail("refusing to load " + path +
                ": writable by its group or by others (chmod go-w it)");
  return {};
}

Result<const Transport*> load() {
  auto dir = exe_dir();
  if (!dir) return std::unexpected(dir.error());
  std::vector<std::string> candidates = {*dir + "/" + kModule, *dir + "/../lib/moat/" + kModule};
  for (const auto& path : candidates) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) continue;
    if (auto ok = check_module_file(path, st); !ok) return std::unexpected(ok.error());
    void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) return fail(std::string("load ") + path + ": " + ::dlerror());
    // Kept loaded for the process's life: its objects may outlive any caller.
    auto entry = reinterpret_cast<const Transport* (*)()>(::dlsym(handle, "moat_http_transport"));
    if (!entry) return fail(path + " has no moat_http_transport(): not moat's HTTP module");
    const Transport* t = entry();
    if (!t || t->abi != kTransportAbi)
      return fail(path + " is from another build of moat (interface " +
                  std::to_string(t ? t->abi : -1) + ", this binary speaks " +
                  std::to_string(kTransportAbi) + "): install the two together");
    return t;
  }
  return fail(std::string("moat docker and moat serve speak HTTP through ") + kModule +
              ", which is neither beside " + *dir + "/moat nor in " + *dir +
              "/../lib/moat/: install it with the binary (cmake --install puts it in lib/moat)");
}

}  // namespace

Result<const Transport*> transport() {
  static std::once_flag once;
  static Result<const Transport*> loaded = fail("not loaded");
  std::call_once(once, [] { loaded = load(); });
  return loaded;
}

}  // namespace moat::http
