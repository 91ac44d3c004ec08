// `moat serve`'s page: a snapshot in the Prometheus text exposition format.
#include <sstream>

#include "dataplane/dataplane.h"
#include "observe/snapshot.h"

namespace moat::obs {

std::string prometheus_escape_label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

namespace {

using Labels = std::vector<std::pair<std::string, std::string>>;

struct PromWriter {
  std::ostringstream o;
  void family(const char* name, const char* type, const char* help) {
    o << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
  }
  void sample(const char* name, const Labels& labels, uint64_t v) {
    o << name;
    bool first = true;
    for (const auto& [k, val] : labels) {
      o << (first ? "{" : ",") << k << "=\"" << prometheus_escape_label(val) << "\"";
      first = false;
    }
    if (!first) o << "}";
    o << " " << v << "\n";
  }
};

Labels att_labels(const AttachmentStats& a, int d) {
  Labels l;
  if (!a.uplink) {
    l.push_back({"container", a.container});
    l.push_back({"network", a.network});
    if (!a.ns.empty()) l.push_back({"namespace", a.ns});
    if (auto s = compose_service(a.labels); !s.empty()) l.push_back({"service", s});
  }
  l.push_back({"interface", a.interface});
  l.push_back({"direction",
               a.uplink ? dir_name(MOAT_DIR_FROM_WORLD + d) : dir_name(static_cast<uint32_t>(d))});
  return l;
}

}  // namespace

std::string render_prometheus(const Snapshot& s) {
  PromWriter w;
  w.family("moat_info", "gauge",
           "The moat instance exported and its loaded policy revision (value always 1).");
  w.sample("moat_info",
           {{"moat_instance", s.instance}, {"policy_revision", std::to_string(s.policy_revision)}},
           1);
  struct Family {
    const char* name;
    const char* help;
    uint64_t Counters::*field;
  };
  for (const auto& f :
       {Family{"moat_packets_total",
               "Packets moat let pass, per container attachment or uplink and direction.",
               &Counters::packets},
        Family{"moat_bytes_total", "Bytes moat let pass (IP packet length plus link header).",
               &Counters::bytes},
        Family{"moat_new_connections_total",
               "Connections admitted (tracked or translated) at this attachment and direction.",
               &Counters::new_flows},
        Family{"moat_dropped_bytes_total", "Bytes of the packets moat dropped.",
               &Counters::drop_bytes}}) {
    w.family(f.name, "counter", f.help);
    for (const auto& a : s.attachments)
      for (int d = 0; d < 2; ++d) w.sample(f.name, att_labels(a, d), a.dir[d].*f.field);
  }
  w.family("moat_drops_total", "counter",
           "Packets moat dropped, by reason (see `moat --help`, bpf/abi.h MOAT_DROP_REASONS).");
  const auto& reasons = drop_reason_names();
  for (const auto& a : s.attachments)
    for (int d = 0; d < 2; ++d)
      for (int i = 1; i < MOAT_NR_DROP_SLOTS; ++i) {
        if (reasons[i].empty()) continue;
        auto l = att_labels(a, d);
        l.push_back({"reason", reasons[i]});
        w.sample("moat_drops_total", l, a.dir[d].drops[i]);
      }
  w.family("moat_active_connections", "gauge",
           "Live tracked or translated connections with this container attachment at either end.");
  for (const auto& a : s.attachments) {
    if (a.uplink) continue;
    Labels l{{"container", a.container}, {"network", a.network}};
    if (!a.ns.empty()) l.push_back({"namespace", a.ns});
    if (auto s = compose_service(a.labels); !s.empty()) l.push_back({"service", s});
    l.push_back({"interface", a.interface});
    w.sample("moat_active_connections", l, a.active_connections);
  }
  w.family("moat_policy_hits_total", "counter",
           "Connections a policy rule decided (allowed or denied); restarts at 0 when a new "
           "policy revision renumbers the rules (a one-rule change: that rule's only).");
  for (const auto& r : s.rules)
    w.sample("moat_policy_hits_total",
             {{"policy", r.rule.policy},
              {"namespace", r.rule.ns},
              {"direction", r.rule.direction},
              {"action", r.rule.action},
              {"rule", r.rule.text},
              {"rule_id", std::to_string(r.id)}},
             r.hits);
  w.family("moat_flow_events_lost_total", "counter",
           "Flow and drop events not queued: the ring buffer was full, or drop events were over "
           "the per-CPU rate limit.");
  w.sample("moat_flow_events_lost_total", {{"cause", "buffer_full"}}, s.lost_full);
  w.sample("moat_flow_events_lost_total", {{"cause", "rate_limited"}}, s.lost_rate);
  return w.o.str();
}

}  // namespace moat::obs
