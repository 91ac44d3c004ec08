// result.h - the one error type at the OS boundary.
//
// Every function that talks to the kernel, the filesystem or another process
// returns Result<T>: the value, or an Error carrying errno (0 when the failure
// is not a system error) and a context sentence that names what was being
// done. Exceptions are used only at the CLI edge.
#pragma once

#include <cerrno>
#include <cstring>
#include <expected>
#include <string>
#include <utility>

namespace moat {

struct Error {
  int err = 0;          // errno value, 0 if not a system error
  std::string context;  // what was being done, e.g. "attach to mve0n0 ingress"

  std::string message() const {
    if (err == 0) return context;
    return context + ": " + std::strerror(err);
  }
};

template <class T>
using Result = std::expected<T, Error>;

inline std::unexpected<Error> fail(std::string context, int err = 0) {
  return std::unexpected(Error{err, std::move(context)});
}

// For libbpf/libc calls that return -errno or set errno and return -1.
inline std::unexpected<Error> fail_errno(std::string context, int rc_or_errno) {
  int e = rc_or_errno < 0 ? -rc_or_errno : rc_or_errno;
  if (e == 0 || e == 1) e = errno;  // a plain -1 return: the code is in errno
  return std::unexpected(Error{e, std::move(context)});
}

}  // namespace moat
