// parse_ok.h - a moat file a test starts from: every problem in it fails
// the test, which then goes on with an empty Config.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "config/config.h"

namespace moat {

inline Config parse_ok(const std::string& text) {
  auto r = parse_config(text, "t.json");
  for (const auto& p : r.problems) ADD_FAILURE() << p.format("t.json");
  return r.config.value_or(Config{});
}

}  // namespace moat
