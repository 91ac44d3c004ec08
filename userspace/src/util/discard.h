// discard.h - large temporaries a one-shot command need not free.
//
// A parsed JSON tree of 10,000 rules is some 200,000 heap nodes; freeing
// them one by one was 12% of `moat lab apply`'s samples at 10,000 rules, all
// spent just before the process exits and the kernel takes back its memory
// in one go (compilers skip the same frees for the same reason: clang's
// -disable-free). A command that runs once and exits says so at start-up;
// everything else (the Docker agent, the CNI plugin, the tests and fuzzers,
// which look for leaks) keeps freeing.
#pragma once

#include <atomic>
#include <type_traits>
#include <utility>

namespace moat {

inline std::atomic<bool>& one_shot_process() {
  static std::atomic<bool> flag{false};
  return flag;
}

// Takes `v` away: destroyed here, or, in a one-shot process, left to the
// process's exit (moved into an object nobody frees).
template <class T>
void discard(T&& v) {
  static_assert(!std::is_lvalue_reference_v<T>, "discard(std::move(x))");
  if (one_shot_process().load(std::memory_order_relaxed)) {
    new T(std::move(v));  // never freed on purpose: see above
  } else {
    T gone(std::move(v));
  }
}

}  // namespace moat
