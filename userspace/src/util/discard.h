// discard.h - large temporaries a one-shot command need not free.
//
// A parsed JSON tree of 10,000 rules is some 200,000 nodes; freeing them
// one by one was 12% of `moat lab apply`'s samples at 10,000 rules. Their
// memory now goes back with their arena (config/tree_arena.h), but
// destroying the tree still walks every node and frees its long strings,
// which a process about to exit need not do (compilers skip such frees
// too: clang's -disable-free). Anything discarded that is not in an arena
// stays allocated until the exit, so only small or arena-held objects are
// worth discarding. A command that runs once and exits says so at
// start-up; everything else (the Docker agent, the CNI plugin, the tests
// and fuzzers, which look for leaks) keeps freeing.
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
