// invariants.h - what every accepted input must also satisfy, beyond not
// crashing: it can be saved (the instance's record keeps the input files'
// text as JSON strings; invalid UTF-8 there failed after the kernel took
// the file) and every problem of a refused one prints.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "config/config.h"

namespace moat_fuzz {

[[noreturn]] inline void broken(const char* what) {
  std::fprintf(stderr, "invariant broken: %s\n", what);
  std::abort();
}

inline void check_accepted_text_saves(const std::string& text) {
  try {
    (void)nlohmann::json(text).dump();
  } catch (const nlohmann::json::exception&) {
    broken("an accepted file cannot be saved as JSON (invalid UTF-8 got through)");
  }
}

inline void check_problems_print(const std::vector<moat::Problem>& problems,
                                 const std::string& file) {
  if (problems.empty()) broken("refused without a problem");
  for (const moat::Problem& p : problems) {
    const std::string line = p.format(file);
    if (line.size() > 4096) broken("a problem's message is longer than 4 KiB");
  }
}

}  // namespace moat_fuzz
