// failpoint.h - named points of an apply where a test makes moat crash or
// fail: MOAT_CRASH_AT=<point> kills the process there (SIGKILL, as a power
// cut or the OOM killer would), MOAT_FAIL_AT=<point> returns an error there, once.
// They let the tests prove "a crash anywhere leaves a true record" at every
// point, not only where a random kill happens to land. Unset, they cost a
// getenv().
//
// MOAT_KERNEL_LACKS=<feature>[,<feature>...] makes the kernel probes
// (features.h) answer "no" for those features ("nat66"), so the refusals an
// older kernel causes can be tested on a newer one.
#pragma once

#include "util/result.h"

namespace moat {

Result<void> failpoint(const char* point);

// Whether MOAT_KERNEL_LACKS names `feature`.
bool pretend_kernel_lacks(const char* feature);

}  // namespace moat
