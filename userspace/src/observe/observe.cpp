#include "observe/observe.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <netinet/in.h>
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iomanip>
#include <set>
#include <sstream>

#include "dataplane/dataplane.h"
#include "endpoint.skel.h"
#include "util/net.h"
#include "policy/policy.h"

namespace moat::obs {

using nlohmann::json;

// ---- names -----------------------------------------------------------------------

const Iface* Names::iface(uint32_t ifindex) const {
  auto it = ifaces.find(ifindex);
  return it == ifaces.end() ? nullptr : &it->second;
}
const AddrName* Names::addr(const std::string& ip) const {
  auto it = addrs.find(ip);
  return it == addrs.end() ? nullptr : &it->second;
}
const RuleName* Names::rule(uint32_t id) const {
  return id < rules.size() ? &rules[id] : nullptr;
}

Names names_from_state(const std::string& instance, const json& st) {
  Names n;
  n.instance = instance;
  for (const auto& i : st.value("interfaces", json::array())) {
    Iface f{i.value("name", ""), false, i.value("container", ""), i.value("network", ""),
            i.value("ip", ""), i.value("stats_slot", 0u)};
    n.ifaces[i.value("ifindex", 0u)] = f;
    if (!f.ip.empty()) n.addrs[f.ip] = {f.container, f.network};
  }
  for (const auto& net : st.value("networks", json::array()))
    if (auto gw = net.value("gateway", std::string()); !gw.empty())
      n.addrs.emplace(gw, AddrName{"host", net.value("name", "")});
  for (const auto& u : st.value("uplinks", json::array())) {
    Iface f{u.value("name", ""), true, "", "", u.value("ip", ""), u.value("stats_slot", 0u)};
    n.ifaces[u.value("ifindex", 0u)] = f;
    if (!f.ip.empty()) n.addrs.emplace(f.ip, AddrName{"host", f.name});
  }
  for (const auto& r : st.value("policy", json::object()).value("rules", json::array()))
    n.rules.push_back({r.value("policy", ""), r.value("namespace", ""), r.value("direction", ""),
                       r.value("action", ""), r.value("text", ""), r.value("index", 0)});
  json ids = st.value("ids", json::object()).value("containers", json::object());
  for (const auto& [name, id] : ids.items()) n.containers[name];
  return n;
}

void add_config(Names& names, const Config& cfg) {
  for (const auto& c : cfg.containers) {
    auto& info = names.containers[c.name];
    info.ns = c.ns;
    info.labels = c.labels;
    info.ingress_isolated_by.clear();
    info.egress_isolated_by.clear();
    for (const auto& p : cfg.policies) {
      if (!policy_selects(p, c)) continue;
      if (p.isolates_ingress) info.ingress_isolated_by.push_back(p.ns + "/" + p.name);
      if (p.isolates_egress) info.egress_isolated_by.push_back(p.ns + "/" + p.name);
    }
  }
}

// ---- counters ---------------------------------------------------------------------

const char* dir_name(uint32_t dir) {
  switch (dir) {
    case MOAT_DIR_FROM_CONTAINER: return "from_container";
    case MOAT_DIR_TO_CONTAINER: return "to_container";
    case MOAT_DIR_FROM_WORLD: return "from_world";
    case MOAT_DIR_TO_WORLD: return "to_world";
    default: return "?";
  }
}

uint64_t Counters::drops_total() const {
  uint64_t n = 0;
  for (auto d : drops) n += d;
  return n;
}

namespace {

std::string ip_str(uint32_t be) { return Ipv4{ntohl(be)}.str(); }

uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

int ncpus() {
  int n = libbpf_num_possible_cpus();
  return n > 0 ? n : 1;
}

Counters read_counters(const bpf_map* m, uint32_t slot, uint32_t dir) {
  std::vector<moat_stats> per_cpu(static_cast<size_t>(ncpus()));
  uint32_t key = moat_stats_index(slot, dir);
  Counters c;
  if (bpf_map__lookup_elem(m, &key, sizeof(key), per_cpu.data(),
                           per_cpu.size() * sizeof(moat_stats), 0) != 0)
    return c;  // nothing counted yet
  for (const auto& s : per_cpu) {
    c.packets += s.packets;
    c.bytes += s.bytes;
    c.new_flows += s.new_flows;
    c.drop_bytes += s.drop_bytes;
    for (int i = 0; i < MOAT_NR_DROP_SLOTS; ++i) c.drops[i] += s.drops[i];
  }
  return c;
}

uint64_t read_u64_sum(const bpf_map* m, uint32_t key) {
  std::vector<uint64_t> per_cpu(static_cast<size_t>(ncpus()));
  if (bpf_map__lookup_elem(m, &key, sizeof(key), per_cpu.data(),
                           per_cpu.size() * sizeof(uint64_t), 0) != 0)
    return 0;
  uint64_t n = 0;
  for (auto v : per_cpu) n += v;
  return n;
}

}  // namespace

Result<Snapshot> read_snapshot(const Names& names) {
  auto skel = open_pinned(names.instance);
  if (!skel) return std::unexpected(skel.error());
  auto& maps = (*skel)->maps;
  Snapshot s;
  s.instance = names.instance;
  uint32_t zero = 0, rev = 0;
  if (bpf_map__lookup_elem(maps.policy_rev, &zero, sizeof(zero), &rev, sizeof(rev), 0) == 0)
    s.policy_revision = rev;

  std::map<std::string, size_t> by_ip;  // container address -> attachment
  for (bool uplinks : {false, true}) {
    for (const auto& [idx, f] : names.ifaces) {
      if (f.uplink != uplinks) continue;
      AttachmentStats a;
      a.uplink = f.uplink;
      a.interface = f.name;
      a.ifindex = idx;
      a.container = f.container;
      a.network = f.network;
      a.ip = f.ip;
      if (auto it = names.containers.find(f.container); !f.uplink && it != names.containers.end()) {
        a.ns = it->second.ns;
        a.labels = it->second.labels;
      }
      uint32_t d0 = f.uplink ? MOAT_DIR_FROM_WORLD : MOAT_DIR_FROM_CONTAINER;
      // Slot 0 is what no attachment claims: an attachment without a slot
      // of its own (state written by an older moat) shows nothing counted.
      if (f.stats_slot != 0) {
        a.dir[0] = read_counters(maps.stats, f.stats_slot, d0);
        a.dir[1] = read_counters(maps.stats, f.stats_slot, d0 + 1);
      }
      if (!f.uplink) by_ip[f.ip] = s.attachments.size();
      s.attachments.push_back(std::move(a));
    }
  }
  for (uint32_t id = 0; id < names.rules.size() && id < MOAT_MAX_RULES; ++id)
    s.rules.push_back({id, names.rules[id], read_u64_sum(maps.rule_hits, id)});
  s.lost_full = read_u64_sum(maps.events_lost, MOAT_EV_LOST_FULL);
  s.lost_rate = read_u64_sum(maps.events_lost, MOAT_EV_LOST_RATE);
  s.unattributed[0] = read_counters(maps.stats, 0, MOAT_DIR_FROM_CONTAINER);
  s.unattributed[1] = read_counters(maps.stats, 0, MOAT_DIR_TO_CONTAINER);

  // Live flows: each counted once per attachment it touches.
  int fd = bpf_map__fd(maps.ct);
  uint64_t now = monotonic_ns();
  moat_ct_key key{}, next{};
  bool first = true;
  while (bpf_map_get_next_key(fd, first ? nullptr : &key, &next) == 0) {
    first = false;
    key = next;
    moat_ct_entry e{};
    if (bpf_map_lookup_elem(fd, &key, &e) != 0) continue;
    if (e.expires_ns < now) continue;
    if (e.kind != MOAT_CT_DNAT && e.kind != MOAT_CT_SNAT && e.kind != MOAT_CT_TRACK) continue;
    std::set<size_t> touched;
    for (uint32_t a : {key.saddr, key.daddr, e.xlated.saddr, e.xlated.daddr})
      if (auto it = by_ip.find(ip_str(a)); it != by_ip.end()) touched.insert(it->second);
    for (size_t i : touched) s.attachments[i].active_connections++;
  }
  return s;
}

namespace {

json counters_json(const Counters& c) {
  json drops = json::object();
  const auto& names = drop_reason_names();
  for (int i = 1; i < MOAT_NR_DROP_SLOTS; ++i)
    if (!names[i].empty()) drops[names[i]] = c.drops[i];
  return {{"packets", c.packets},         {"bytes", c.bytes},
          {"new_connections", c.new_flows}, {"drops_total", c.drops_total()},
          {"drop_bytes", c.drop_bytes},   {"drops", drops}};
}

std::string human(double v) {
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

std::string drops_text(const Counters& c) {
  std::string out;
  const auto& names = drop_reason_names();
  for (int i = 1; i < MOAT_NR_DROP_SLOTS; ++i)
    if (c.drops[i])
      out += (out.empty() ? "" : ", ") + (names[i].empty() ? std::to_string(i) : names[i]) + " " +
             std::to_string(c.drops[i]);
  return out;
}

}  // namespace

json snapshot_json(const Snapshot& s) {
  json atts = json::array(), ups = json::array(), rules = json::array();
  for (const auto& a : s.attachments) {
    json dirs = json::object();
    dirs[a.uplink ? "from_world" : "from_container"] = counters_json(a.dir[0]);
    dirs[a.uplink ? "to_world" : "to_container"] = counters_json(a.dir[1]);
    if (a.uplink) {
      ups.push_back({{"interface", a.interface}, {"ifindex", a.ifindex}, {"ip", a.ip},
                     {"directions", dirs}});
    } else {
      atts.push_back({{"container", a.container}, {"network", a.network}, {"namespace", a.ns},
                      {"labels", a.labels}, {"interface", a.interface}, {"ifindex", a.ifindex},
                      {"ip", a.ip}, {"active_connections", a.active_connections},
                      {"directions", dirs}});
    }
  }
  for (const auto& r : s.rules)
    rules.push_back({{"rule_id", r.id}, {"policy", r.rule.policy}, {"namespace", r.rule.ns},
                     {"direction", r.rule.direction}, {"index", r.rule.index},
                     {"action", r.rule.action}, {"text", r.rule.text}, {"hits", r.hits}});
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
  o << std::left << std::setw(14) << "CONTAINER" << std::setw(16) << "NETWORK" << std::setw(10)
    << "IFACE" << std::setw(16) << "DIRECTION" << std::right << std::setw(10) << "PACKETS"
    << std::setw(10) << "BYTES" << std::setw(10) << "NEW-CONN" << std::setw(8) << "DROPS"
    << std::setw(7) << "LIVE" << "  DROP REASONS\n";
  auto row = [&](const AttachmentStats& a, int d) {
    bool first = d == 0;
    std::string who = a.uplink ? "(uplink)" : a.container;
    const char* dn = a.uplink ? dir_name(MOAT_DIR_FROM_WORLD + d) : dir_name(static_cast<uint32_t>(d));
    o << std::left << std::setw(14) << (first ? who : "") << std::setw(16)
      << (first ? (a.uplink ? "" : a.network) : "") << std::setw(10) << (first ? a.interface : "")
      << std::setw(16) << dn << std::right << std::setw(10) << a.dir[d].packets << std::setw(10)
      << human(static_cast<double>(a.dir[d].bytes)) << std::setw(10) << a.dir[d].new_flows
      << std::setw(8) << a.dir[d].drops_total() << std::setw(7)
      << (first && !a.uplink ? std::to_string(a.active_connections) : "") << "  "
      << drops_text(a.dir[d]) << "\n";
  };
  for (const auto& a : s.attachments)
    for (int d = 0; d < 2; ++d) row(a, d);
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

// ---- Prometheus -------------------------------------------------------------------

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
  }
  l.push_back({"interface", a.interface});
  l.push_back({"direction", a.uplink ? dir_name(MOAT_DIR_FROM_WORLD + d) : dir_name(static_cast<uint32_t>(d))});
  return l;
}

}  // namespace

std::string render_prometheus(const Snapshot& s) {
  PromWriter w;
  w.family("moat_info", "gauge",
           "The moat instance exported and its loaded policy revision (value always 1).");
  w.sample("moat_info", {{"moat_instance", s.instance},
                         {"policy_revision", std::to_string(s.policy_revision)}}, 1);
  struct Family {
    const char* name;
    const char* help;
    uint64_t Counters::*field;
  };
  for (const auto& f : {
           Family{"moat_packets_total",
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
    l.push_back({"interface", a.interface});
    w.sample("moat_active_connections", l, a.active_connections);
  }
  w.family("moat_policy_hits_total", "counter",
           "Connections a policy rule decided (allowed or denied); restarts at 0 when a new "
           "policy revision is loaded.");
  for (const auto& r : s.rules)
    w.sample("moat_policy_hits_total",
             {{"policy", r.rule.policy}, {"namespace", r.rule.ns}, {"direction", r.rule.direction},
              {"action", r.rule.action}, {"rule", r.rule.text}, {"rule_id", std::to_string(r.id)}},
             r.hits);
  w.family("moat_flow_events_lost_total", "counter",
           "Flow and drop events not queued: the ring buffer was full, or drop events were over "
           "the per-CPU rate limit.");
  w.sample("moat_flow_events_lost_total", {{"cause", "buffer_full"}}, s.lost_full);
  w.sample("moat_flow_events_lost_total", {{"cause", "rate_limited"}}, s.lost_rate);
  return w.o.str();
}

// ---- events -----------------------------------------------------------------------

namespace {

const char* type_name(uint32_t t) {
  switch (t) {
    case MOAT_EV_FLOW_NEW: return "flow_new";
    case MOAT_EV_FLOW_UPDATE: return "flow_update";
    case MOAT_EV_FLOW_END: return "flow_end";
    case MOAT_EV_DROP: return "drop";
    default: return "unknown";
  }
}

bool has_ports(uint8_t p) { return p == IPPROTO_TCP || p == IPPROTO_UDP || p == IPPROTO_SCTP; }

json endpoint_json(uint32_t ip_be, uint16_t port_be, uint8_t proto, const Names& names) {
  json e = {{"ip", ip_str(ip_be)}};
  if (has_ports(proto)) e["port"] = ntohs(port_be);
  if (const auto* a = names.addr(e["ip"].get<std::string>())) {
    e["container"] = a->container;
    if (!a->network.empty()) e["network"] = a->network;
    if (auto it = names.containers.find(a->container);
        it != names.containers.end() && !it->second.ns.empty())
      e["namespace"] = it->second.ns;
  }
  return e;
}

std::string iso_time(int64_t wall_ns, bool utc, bool date) {
  time_t secs = static_cast<time_t>(wall_ns / 1000000000);
  int ms = static_cast<int>((wall_ns / 1000000) % 1000);
  tm t{};
  if (utc)
    gmtime_r(&secs, &t);
  else
    localtime_r(&secs, &t);
  char buf[64];
  strftime(buf, sizeof(buf), date ? "%Y-%m-%dT%H:%M:%S" : "%H:%M:%S", &t);
  char out[80];
  snprintf(out, sizeof(out), "%s.%03d%s", buf, ms, date && utc ? "Z" : "");
  return out;
}

std::string ep_text(const json& e) {
  std::string addr = e["ip"].get<std::string>();
  if (e.contains("port")) addr += ":" + std::to_string(e["port"].get<int>());
  if (e.contains("container")) return e["container"].get<std::string>() + "(" + addr + ")";
  return addr;
}

std::string count_text(uint64_t p, uint64_t b) {
  return std::to_string(p) + "p/" + std::to_string(b) + "B";
}

}  // namespace

int64_t wall_offset_ns() {
  timespec rt{}, mono{};
  clock_gettime(CLOCK_REALTIME, &rt);
  clock_gettime(CLOCK_MONOTONIC, &mono);
  return (static_cast<int64_t>(rt.tv_sec) - mono.tv_sec) * 1000000000ll +
         (static_cast<int64_t>(rt.tv_nsec) - mono.tv_nsec);
}

json event_json(const moat_event& ev, const Names& names, int64_t wall_offset) {
  bool drop = ev.type == MOAT_EV_DROP;
  int64_t wall = static_cast<int64_t>(ev.ts_ns) + wall_offset;
  json j = {{"time", iso_time(wall, true, true)},
            {"ts_ns", ev.ts_ns},
            {"type", type_name(ev.type)},
            {"verdict", drop ? "dropped" : "allowed"},
            {"ifindex", ev.ifindex},
            {"direction", dir_name(ev.dir)}};
  if (const auto* f = names.iface(ev.ifindex)) {
    j["interface"] = f->name;
    if (f->uplink) {
      j["uplink"] = f->name;
    } else {
      j["container"] = f->container;
      j["network"] = f->network;
      if (auto it = names.containers.find(f->container);
          it != names.containers.end() && !it->second.ns.empty())
        j["namespace"] = it->second.ns;
    }
  }
  // A tracked flow's entry is keyed by its original tuple, which it keeps in
  // `xlated`; the kernel may report it with the tuple of a reply packet.
  const moat_ct_key& t = ev.type != MOAT_EV_DROP && ev.ct_kind == MOAT_CT_TRACK ? ev.xlated : ev.tuple;
  j["protocol"] = proto_name(t.proto);
  j["src"] = endpoint_json(t.saddr, t.sport, t.proto, names);
  j["dst"] = endpoint_json(t.daddr, t.dport, t.proto, names);
  if (t.proto == IPPROTO_ICMP) {
    if (drop) {
      const auto* b = reinterpret_cast<const uint8_t*>(&t.dport);
      j["icmp"] = {{"type", b[0]}, {"code", b[1]}};
    } else {
      j["icmp"] = {{"echo_id", ntohs(t.sport)}};
    }
  }
  if (drop) {
    const auto& reasons = drop_reason_names();
    j["reason"] = ev.reason < reasons.size() && !reasons[ev.reason].empty()
                      ? reasons[ev.reason]
                      : std::to_string(ev.reason);
    if (ev.reason == static_cast<uint8_t>(-MOAT_DROP_POLICY_DEFAULT_DENY)) {
      // No rule decided: name the policies that isolate either end.
      json iso = json::array();
      auto add = [&](const json& end, const char* direction) {
        if (!end.contains("container")) return;
        auto it = names.containers.find(end["container"].get<std::string>());
        if (it == names.containers.end()) return;
        const auto& by = std::string(direction) == "ingress" ? it->second.ingress_isolated_by
                                                             : it->second.egress_isolated_by;
        if (!by.empty())
          iso.push_back({{"container", it->first}, {"direction", direction}, {"policies", by}});
      };
      add(j["src"], "egress");
      add(j["dst"], "ingress");
      if (!iso.empty()) j["isolated_by"] = iso;
    }
  } else {
    j["kind"] = ct_kind_name(ev.ct_kind);
    if (ev.tuple.proto == IPPROTO_TCP) j["tcp_state"] = tcp_state_name(ev.tcp_state);
    const moat_ct_key& x = ev.xlated;
    if (x.saddr != t.saddr || x.daddr != t.daddr || x.sport != t.sport || x.dport != t.dport)
      j["translated"] = {{"src", endpoint_json(x.saddr, x.sport, t.proto, names)},
                         {"dst", endpoint_json(x.daddr, x.dport, t.proto, names)}};
    if (ev.ct_kind == MOAT_CT_DNAT && has_ports(t.proto))
      j["published"] = {{"host_ip", ip_str(t.daddr)}, {"host_port", ntohs(t.dport)},
                        {"container_port", ntohs(x.dport)}};
    if (ev.ct_kind == MOAT_CT_SNAT) j["masquerade_as"] = ip_str(x.saddr);
    j["packets"] = ev.packets;
    j["bytes"] = ev.bytes;
    j["reply_packets"] = ev.reply_packets;
    j["reply_bytes"] = ev.reply_bytes;
  }
  if (ev.rule_id != MOAT_RULE_NONE) {
    json r = {{"id", ev.rule_id}};
    if (const auto* rn = names.rule(ev.rule_id)) {
      r["policy"] = rn->policy;
      r["namespace"] = rn->ns;
      r["direction"] = rn->direction;
      r["action"] = rn->action;
      r["text"] = rn->text;
    }
    j["rule"] = r;
  }
  return j;
}

std::string event_text(const json& j, bool utc) {
  std::ostringstream o;
  static const std::map<std::string, std::string> short_type = {
      {"flow_new", "NEW "}, {"flow_update", "UPD "}, {"flow_end", "END "}, {"drop", "DROP"}};
  int64_t wall_ns = 0;
  {
    // Back from the ISO time is lossy; event_json keeps ts_ns and time, so
    // recompute from "time" only for display.
    std::string t = j.value("time", "");
    tm tmv{};
    int ms = 0;
    if (t.size() >= 23 && strptime(t.c_str(), "%Y-%m-%dT%H:%M:%S", &tmv)) {
      ms = std::atoi(t.substr(20, 3).c_str());
      wall_ns = (static_cast<int64_t>(timegm(&tmv)) * 1000 + ms) * 1000000ll;
    }
  }
  std::string type = j.value("type", "");
  auto st = short_type.find(type);
  o << iso_time(wall_ns, utc, false) << " " << (st != short_type.end() ? st->second : type) << " ";
  if (j.contains("container"))
    o << j["container"].get<std::string>() << "@" << j["network"].get<std::string>();
  else if (j.contains("uplink"))
    o << "uplink " << j["uplink"].get<std::string>();
  else
    o << "ifindex " << j["ifindex"];
  o << " " << j["direction"].get<std::string>() << " " << j["protocol"].get<std::string>() << " "
    << ep_text(j["src"]) << " > " << ep_text(j["dst"]);
  if (j.contains("icmp") && j["icmp"].contains("type"))
    o << " (type " << j["icmp"]["type"] << " code " << j["icmp"]["code"] << ")";
  if (j.contains("translated"))
    o << " => " << ep_text(j["translated"]["src"]) << " > " << ep_text(j["translated"]["dst"]);
  if (j.value("kind", "") != "") o << " [" << j["kind"].get<std::string>() << "]";
  if (j.contains("published"))
    o << " published :" << j["published"]["host_port"];
  if (j.value("tcp_state", "") != "") o << " " << j["tcp_state"].get<std::string>();
  if (j.contains("reason")) o << " reason " << j["reason"].get<std::string>();
  if (j.contains("rule")) {
    const auto& r = j["rule"];
    if (r.contains("text"))
      o << " rule #" << r["id"] << " " << r["text"].get<std::string>();
    else
      o << " rule #" << r["id"];
  }
  if (j.contains("isolated_by")) {
    o << " (";
    bool first = true;
    for (const auto& i : j["isolated_by"]) {
      o << (first ? "" : "; ") << i["direction"].get<std::string>() << " of "
        << i["container"].get<std::string>() << " isolated by ";
      bool f2 = true;
      for (const auto& p : i["policies"]) {
        o << (f2 ? "" : ", ") << p.get<std::string>();
        f2 = false;
      }
      first = false;
    }
    o << ")";
  }
  if (j.contains("packets") && j["verdict"] == "allowed")
    o << " " << count_text(j["packets"], j["bytes"]) << " <> "
      << count_text(j["reply_packets"], j["reply_bytes"]);
  return o.str();
}

bool matches(const json& ev, const FlowFilter& f) {
  bool dropped = ev.value("verdict", "") == "dropped";
  if (f.dropped && *f.dropped != dropped) return false;
  if (!f.reason.empty() && (!dropped || ev.value("reason", "") != f.reason)) return false;
  if (!f.container.empty()) {
    auto is = [&](const json& e) { return e.is_object() && e.value("container", "") == f.container; };
    bool hit = is(ev) || is(ev.value("src", json())) || is(ev.value("dst", json()));
    if (ev.contains("translated"))
      hit = hit || is(ev["translated"]["src"]) || is(ev["translated"]["dst"]);
    if (!hit) return false;
  }
  return true;
}

std::string check_filter(const FlowFilter& f) {
  if (!f.reason.empty()) {
    const auto& names = drop_reason_names();
    if (std::find(names.begin(), names.end(), f.reason) == names.end() || f.reason.empty()) {
      std::string all;
      for (const auto& n : names)
        if (!n.empty()) all += (all.empty() ? "" : ", ") + n;
      return "unknown drop reason \"" + f.reason + "\" (one of: " + all + ")";
    }
    if (f.dropped && !*f.dropped) return "--reason selects drops; it contradicts --verdict allowed";
  }
  return "";
}

// ---- top --------------------------------------------------------------------------

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
    if (sort == "rx") kx = x.rx_bps, ky = y.rx_bps;
    else if (sort == "tx") kx = x.tx_bps, ky = y.tx_bps;
    else if (sort == "drops") kx = x.drops_ps, ky = y.drops_ps;
    else if (sort == "conns") kx = static_cast<double>(x.conns), ky = static_cast<double>(y.conns);
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
    << std::setw(7) << "CONNS" << "\n";
  for (const auto& r : rows)
    o << std::left << std::setw(14) << r.container << std::setw(16) << r.network << std::setw(10)
      << r.interface << std::right << std::setw(9) << human(r.rx_pps) << std::setw(9)
      << human(r.rx_bps) << std::setw(9) << human(r.tx_pps) << std::setw(9) << human(r.tx_bps)
      << std::setw(9) << human(r.drops_ps) << std::setw(7) << r.conns << "\n";
  if (rows.empty()) o << "(no container attachments)\n";
  return o.str();
}

std::optional<std::pair<std::string, int>> parse_listen_addr(const std::string& text) {
  std::string host, port;
  if (!text.empty() && text[0] == '[') {
    auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return std::nullopt;
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos || text.find(':') != colon) return std::nullopt;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (host.empty() || port.empty() || port.size() > 5) return std::nullopt;
  for (char c : port)
    if (c < '0' || c > '9') return std::nullopt;
  int p = std::stoi(port);
  if (p < 1 || p > 65535) return std::nullopt;
  return std::pair{host, p};
}

bool is_loopback_host(const std::string& host) {
  if (host == "localhost" || host == "::1") return true;
  auto ip = Ipv4::parse(host);
  return ip && (ip->value >> 24) == 127;
}

}  // namespace moat::obs
