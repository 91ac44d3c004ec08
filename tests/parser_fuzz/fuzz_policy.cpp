// fuzz_policy.cpp - libFuzzer target: the policy-file reader. The first
// byte picks the file's name, so the same bytes are read as YAML (.yaml),
// as JSON (.json) and sniffed (no extension).
#include <cstddef>
#include <cstdint>
#include <string>

#include "invariants.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const char* const kNames[] = {"p.yaml", "p.json", "p"};
  const std::string name = kNames[data[0] % 3];
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  moat::PolicyFileResult r = moat::parse_policy_file(text, name);
  if (r.file)
    moat_fuzz::check_accepted_text_saves(text);
  else
    moat_fuzz::check_problems_print(r.problems, name);
  return 0;
}
