// proc.h - running other programs (iproute2, listeners) without a shell.
#pragma once

#include <string>
#include <vector>

#include "util/result.h"

namespace moat {

struct ProcOutput {
  int status = 0;  // exit code
  std::string out;
  std::string err;
};

// Runs argv[0] (looked up in PATH) with argv, waits, captures stdout/stderr.
// Fails only if the program could not be started; a non-zero exit code is
// reported in ProcOutput::status.
Result<ProcOutput> run_capture(const std::vector<std::string>& argv);

// Like run_capture, but a non-zero exit is an Error whose context holds the
// command line and its stderr.
Result<std::string> run_checked(const std::vector<std::string>& argv);

// Runs in the foreground with inherited stdio and returns the exit code.
Result<int> run_inherit(const std::vector<std::string>& argv);

}  // namespace moat
