#include "dataplane/failpoint.h"

#include <signal.h>

#include <cstdlib>
#include <string>

namespace moat {

Result<void> failpoint(const char* point) {
  if (const char* at = std::getenv("MOAT_CRASH_AT"); at && std::string(at) == point) raise(SIGKILL);
  // Once: what the failed apply does next (undo itself) must not fail too.
  if (const char* at = std::getenv("MOAT_FAIL_AT"); at && std::string(at) == point) {
    unsetenv("MOAT_FAIL_AT");
    return fail(std::string("failing at ") + point + " (MOAT_FAIL_AT)");
  }
  return {};
}

bool pretend_kernel_lacks(const char* feature) {
  const char* lacks = std::getenv("MOAT_KERNEL_LACKS");
  if (!lacks) return false;
  std::string list = std::string(",") + lacks + ",";
  return list.find(std::string(",") + feature + ",") != std::string::npos;
}

}  // namespace moat
