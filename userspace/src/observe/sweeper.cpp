#include "observe/sweeper.h"

#include "dataplane/dataplane.h"

namespace moat::obs {

Sweeper::Sweeper(const std::string& instance, Warn warn) : warn_(std::move(warn)) {
  auto r = CtReaper::open(instance);
  if (r)
    reaper_ = std::make_unique<CtReaper>(std::move(*r));
  else
    warn_(r.error().message());
}

Sweeper::~Sweeper() = default;

void Sweeper::maybe_sweep() {
  auto now = std::chrono::steady_clock::now();
  if (!reaper_ || now - last_ < std::chrono::seconds(2)) return;
  last_ = now;
  if (auto n = reaper_->sweep(); !n) {
    warn_(n.error().message());
    reaper_.reset();
  }
}

}  // namespace moat::obs
