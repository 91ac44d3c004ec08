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

}  // namespace moat
