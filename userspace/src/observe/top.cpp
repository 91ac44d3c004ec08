// `moat top`: rates between snapshots, and the table of them.
#include "observe/top.h"

#include <algorithm>
#include <iomanip>
#include <sstream>
#include <tuple>

#include "observe/detail.h"

namespace moat::obs {

using detail::human;

std::vector<TopRow> top_rows(const Snapshot& before, const Snapshot& after, double seconds,
                             const std::string& sort) {
  std::vector<TopRow> rows;
  if (seconds <= 0) seconds = 1;
  auto rate = [&](uint64_t a, uint64_t b) {
    return b >= a ? static_cast<double>(b - a) / seconds : 0.0;  // a counter reset: 0
  };
  for (const auto& a : after.attachments) {
    if (a.uplink) continue;
    const AttachmentStats* b = nullptr;
    for (const auto& x : before.attachments)
      if (x.ifindex == a.ifindex && x.interface == a.interface) b = &x;
    AttachmentStats zero;
    if (!b) b = &zero;
    TopRow r{a.container, a.network, a.interface};
    r.tx_pps = rate(b->dir[0].packets, a.dir[0].packets);
    r.tx_bps = rate(b->dir[0].bytes, a.dir[0].bytes);
    r.rx_pps = rate(b->dir[1].packets, a.dir[1].packets);
    r.rx_bps = rate(b->dir[1].bytes, a.dir[1].bytes);
    r.drops_ps = rate(b->dir[0].drops_total() + b->dir[1].drops_total(),
                      a.dir[0].drops_total() + a.dir[1].drops_total());
    r.conns = a.active_connections;
    rows.push_back(r);
  }
  auto name_key = [](const TopRow& r) { return std::tie(r.container, r.network, r.interface); };
  std::stable_sort(rows.begin(), rows.end(), [&](const TopRow& x, const TopRow& y) {
    double kx = 0, ky = 0;
    if (sort == "rx")
      kx = x.rx_bps, ky = y.rx_bps;
    else if (sort == "tx")
      kx = x.tx_bps, ky = y.tx_bps;
    else if (sort == "drops")
      kx = x.drops_ps, ky = y.drops_ps;
    else if (sort == "conns")
      kx = static_cast<double>(x.conns), ky = static_cast<double>(y.conns);
    if (kx != ky) return kx > ky;  // biggest first
    return name_key(x) < name_key(y);
  });
  return rows;
}

std::string top_table(const std::vector<TopRow>& rows, const std::string& title) {
  std::ostringstream o;
  o << title << "\n\n"
    << std::left << std::setw(14) << "CONTAINER" << std::setw(16) << "NETWORK" << std::setw(10)
    << "IFACE" << std::right << std::setw(9) << "RX pkt/s" << std::setw(9) << "RX B/s"
    << std::setw(9) << "TX pkt/s" << std::setw(9) << "TX B/s" << std::setw(9) << "DROP/s"
    << std::setw(7) << "CONNS"
    << "\n";
  for (const auto& r : rows)
    o << std::left << std::setw(14) << r.container << std::setw(16) << r.network << std::setw(10)
      << r.interface << std::right << std::setw(9) << human(r.rx_pps) << std::setw(9)
      << human(r.rx_bps) << std::setw(9) << human(r.tx_pps) << std::setw(9) << human(r.tx_bps)
      << std::setw(9) << human(r.drops_ps) << std::setw(7) << r.conns << "\n";
  if (rows.empty()) o << "(no container attachments)\n";
  return o.str();
}

TopSampler::TopSampler(Snapshot before, std::chrono::steady_clock::time_point t0)
    : before_(std::move(before)), t0_(t0) {}

Result<TopSampler> TopSampler::start(const Names& names) {
  auto first = read_snapshot(names);
  if (!first) return std::unexpected(first.error());
  return TopSampler(std::move(*first), std::chrono::steady_clock::now());
}

Result<TopFrame> TopSampler::next(const std::function<Names()>& names, const std::string& sort) {
  auto t1 = std::chrono::steady_clock::now();
  auto after = read_snapshot(names());
  if (!after) return std::unexpected(after.error());
  TopFrame f;
  f.seconds = std::chrono::duration<double>(t1 - t0_).count();
  f.rows = top_rows(before_, *after, f.seconds, sort);
  f.events_lost = after->lost_full + after->lost_rate;
  before_ = std::move(*after);
  t0_ = t1;
  return f;
}

}  // namespace moat::obs
