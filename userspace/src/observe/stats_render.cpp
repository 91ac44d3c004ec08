// `moat stats`: a snapshot as JSON (stable keys, README "Observation") and
// as a table.
#include <cstdio>
#include <iomanip>
#include <sstream>

#include "dataplane/dataplane.h"
#include "observe/detail.h"
#include "observe/snapshot.h"

namespace moat::obs {

using nlohmann::json;

std::string detail::human(double v) {
  const char* units[] = {"", "k", "M", "G", "T"};
  int u = 0;
  while (v >= 1000 && u < 4) {
    v /= 1000;
    ++u;
  }
  char buf[32];
  if (u == 0)
    snprintf(buf, sizeof(buf), "%.0f", v);
  else
    snprintf(buf, sizeof(buf), v < 10 ? "%.1f%s" : "%.0f%s", v, units[u]);
  return buf;
}

namespace {

json counters_json(const Counters& c) {
  json drops = json::object();
  const auto& names = drop_reason_names();
  for (int i = 1; i < MOAT_NR_DROP_SLOTS; ++i)
    if (!names[i].empty()) drops[names[i]] = c.drops[i];
  return {{"packets", c.packets},           {"bytes", c.bytes},
          {"new_connections", c.new_flows}, {"drops_total", c.drops_total()},
          {"drop_bytes", c.drop_bytes},     {"drops", drops}};
}

std::string drops_text(const Counters& c) {
  std::string out;
  const auto& names = drop_reason_names();
  for (int i = 1; i < MOAT_NR_DROP_SLOTS; ++i)
    if (c.drops[i])
      out += (out.empty() ? "" : ", ") + (names[i].empty() ? std::to_string(i) : names[i]) + " " +
             std::to_string(c.drops[i]);
  return out;
}

// An interface name (15 characters at most, Docker's veth names are 11) and a gap.
constexpr int kIfaceWidth = 17;

json attachment_json(const AttachmentStats& a) {
  json dirs = json::object();
  dirs[a.uplink ? "from_world" : "from_container"] = counters_json(a.dir[0]);
  dirs[a.uplink ? "to_world" : "to_container"] = counters_json(a.dir[1]);
  if (a.uplink)
    return {{"interface", a.interface}, {"ifindex", a.ifindex}, {"ip", a.ip}, {"directions", dirs}};
  json j = {{"container", a.container},
            {"network", a.network},
            {"namespace", a.ns},
            {"labels", a.labels},
            {"interface", a.interface},
            {"ifindex", a.ifindex},
            {"ip", a.ip},
            {"active_connections", a.active_connections},
            {"directions", dirs}};
  if (auto s = compose_service(a.labels); !s.empty()) {
    j["service"] = s;
    j["project"] = compose_project(a.labels);
  }
  return j;
}

// One line per attachment and direction; the attachment's names on its first.
void attachment_row(std::ostringstream& o, const AttachmentStats& a, int d) {
  bool first = d == 0;
  std::string who = a.uplink ? "(uplink)" : a.container;
  const char* dn =
      a.uplink ? dir_name(MOAT_DIR_FROM_WORLD + d) : dir_name(static_cast<uint32_t>(d));
  o << std::left << std::setw(14) << (first ? who : "") << std::setw(16)
    << (first ? (a.uplink ? "" : a.network) : "") << std::setw(kIfaceWidth)
    << (first ? a.interface : "")
    << std::setw(16) << dn << std::right << std::setw(10) << a.dir[d].packets << std::setw(10)
    << detail::human(static_cast<double>(a.dir[d].bytes)) << std::setw(10) << a.dir[d].new_flows
    << std::setw(8) << a.dir[d].drops_total() << std::setw(7)
    << (first && !a.uplink ? std::to_string(a.active_connections) : "") << "  "
    << drops_text(a.dir[d]) << "\n";
}

}  // namespace

json snapshot_json(const Snapshot& s) {
  json atts = json::array(), ups = json::array(), rules = json::array();
  for (const auto& a : s.attachments) (a.uplink ? ups : atts).push_back(attachment_json(a));
  for (const auto& r : s.rules)
    rules.push_back({{"rule_id", r.id},
                     {"policy", r.rule.policy},
                     {"namespace", r.rule.ns},
                     {"direction", r.rule.direction},
                     {"index", r.rule.index},
                     {"action", r.rule.action},
                     {"text", r.rule.text},
                     {"hits", r.hits}});
  return {{"instance", s.instance},
          {"policy_revision", s.policy_revision},
          {"attachments", atts},
          {"uplinks", ups},
          {"policy_rules", rules},
          {"unattributed",
           {{"ingress", counters_json(s.unattributed[0])},
            {"egress", counters_json(s.unattributed[1])}}},
          {"events_lost", {{"buffer_full", s.lost_full}, {"rate_limited", s.lost_rate}}}};
}

std::string snapshot_text(const Snapshot& s) {
  std::ostringstream o;
  o << "instance " << s.instance << ", policy revision " << s.policy_revision
    << "  (totals since the interfaces were attached)\n\n";
  o << std::left << std::setw(14) << "CONTAINER" << std::setw(16) << "NETWORK" << std::setw(kIfaceWidth)
    << "IFACE" << std::setw(16) << "DIRECTION" << std::right << std::setw(10) << "PACKETS"
    << std::setw(10) << "BYTES" << std::setw(10) << "NEW-CONN" << std::setw(8) << "DROPS"
    << std::setw(7) << "LIVE"
    << "  DROP REASONS\n";
  for (const auto& a : s.attachments)
    for (int d = 0; d < 2; ++d) attachment_row(o, a, d);
  for (int d = 0; d < 2; ++d) {
    const Counters& c = s.unattributed[d];
    if (c.packets || c.drops_total())
      o << "\nnot an attachment of this configuration (" << (d ? "egress" : "ingress")
        << "): " << c.packets << " passed, " << c.drops_total() << " dropped  " << drops_text(c)
        << "\n";
  }
  o << "\npolicy rule hits (flows each rule decided):\n";
  if (s.rules.empty()) o << "  no policy rules\n";
  for (const auto& r : s.rules)
    o << "  #" << std::left << std::setw(4) << r.id << std::right << std::setw(8) << r.hits << "  "
      << r.rule.action << "  " << r.rule.text << "\n";
  o << "\nflow events lost: " << s.lost_full << " (ring buffer full), " << s.lost_rate
    << " (drop events over the rate limit)\n";
  return o.str();
}

}  // namespace moat::obs
