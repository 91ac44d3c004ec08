// top.h - per-container rates between two snapshots (`moat top`). Part of
// observe.h.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "observe/snapshot.h"

namespace moat::obs {

struct TopRow {
  std::string container, network, interface;
  double rx_pps = 0, rx_bps = 0, tx_pps = 0, tx_bps = 0, drops_ps = 0;
  uint64_t conns = 0;
};
// Rates between two snapshots `seconds` apart, per container attachment;
// rx: to the container, tx: from it. sort: rx|tx|drops|conns|name.
std::vector<TopRow> top_rows(const Snapshot& before, const Snapshot& after, double seconds,
                             const std::string& sort);
std::string top_table(const std::vector<TopRow>& rows, const std::string& title);

struct TopFrame {
  std::vector<TopRow> rows;
  double seconds = 0;        // the window the rates are over
  uint64_t events_lost = 0;  // flow events lost so far (buffer full + rate limited)
};

// Each frame's rates are over the time since the previous one, so a slow
// reader never averages over more than it shows.
class TopSampler {
 public:
  // The first snapshot: the start of the first window.
  static Result<TopSampler> start(const Names& names);
  // Closes the window now; `names` is asked after the clock is read, since
  // containers come and go while top runs.
  Result<TopFrame> next(const std::function<Names()>& names, const std::string& sort);

 private:
  TopSampler(Snapshot before, std::chrono::steady_clock::time_point t0);
  Snapshot before_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace moat::obs
