// fuzz_config.cpp - libFuzzer target: the main file's reader (parse_config).
#include <cstddef>
#include <cstdint>
#include <string>

#include "invariants.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  moat::ParseResult r = moat::parse_config(text, "f.json");
  if (r.config)
    moat_fuzz::check_accepted_text_saves(text);
  else
    moat_fuzz::check_problems_print(r.problems, "f.json");
  return 0;
}
