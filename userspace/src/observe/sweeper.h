// sweeper.h - ends stopped flows now and then while someone reads events.
// Part of observe.h.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace moat {
class CtReaper;
}

namespace moat::obs {

// Ends stopped flows now and then (moat::CtReaper), so that their flow-end
// events come while someone reads them. Without it they still end, silently,
// when the LRU evicts them or a packet meets them. A sweeper that cannot
// sweep says why once through `warn` and goes on without sweeping: reading
// matters more than sweeping.
class Sweeper {
 public:
  using Warn = std::function<void(const std::string& why)>;
  Sweeper(const std::string& instance, Warn warn);
  ~Sweeper();
  // Sweeps when the last sweep is 2 s old.
  void maybe_sweep();

 private:
  Warn warn_;
  std::unique_ptr<CtReaper> reaper_;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace moat::obs
