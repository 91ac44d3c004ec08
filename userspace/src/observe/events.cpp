// Flow and drop events: the kernel's struct moat_event as JSON with names,
// as one line for people, and the filters of `moat flows`.
#include "observe/events.h"

#include <netinet/in.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <sstream>

#include "dataplane/dataplane.h"
#include "observe/detail.h"
#include "observe/snapshot.h"

namespace moat::obs {

using detail::ip6_str;
using detail::ip_str;
using nlohmann::json;

namespace {

const char* type_name(uint32_t t) {
  switch (t) {
    case MOAT_EV_FLOW_NEW:
      return "flow_new";
    case MOAT_EV_FLOW_UPDATE:
      return "flow_update";
    case MOAT_EV_FLOW_END:
      return "flow_end";
    case MOAT_EV_DROP:
      return "drop";
    default:
      return "unknown";
  }
}

bool has_ports(uint8_t p) { return p == IPPROTO_TCP || p == IPPROTO_UDP || p == IPPROTO_SCTP; }

// The container's namespace and, for a Compose container, its project and service.
void add_container_facts(json& j, const std::string& container, const Names& names) {
  auto it = names.containers.find(container);
  if (it == names.containers.end()) return;
  if (!it->second.ns.empty()) j["namespace"] = it->second.ns;
  if (auto s = compose_service(it->second.labels); !s.empty()) {
    j["service"] = s;
    if (auto p = compose_project(it->second.labels); !p.empty()) j["project"] = p;
  }
}

json endpoint_json(const std::string& ip, uint16_t port_be, uint8_t proto, const Names& names) {
  json e = {{"ip", ip}};
  if (has_ports(proto)) e["port"] = ntohs(port_be);
  if (const auto* a = names.addr(e["ip"].get<std::string>())) {
    e["container"] = a->container;
    if (!a->network.empty()) e["network"] = a->network;
    add_container_facts(e, a->container, names);
  }
  return e;
}

// Where the event was seen: an uplink, or a container's attachment.
void add_interface(json& j, uint32_t ifindex, const Names& names) {
  const auto* f = names.iface(ifindex);
  if (!f) return;
  j["interface"] = f->name;
  if (f->uplink) {
    j["uplink"] = f->name;
    return;
  }
  if (f->bridge) {  // a port moat has not identified: no container to name
    j["bridge"] = f->name;
    j["network"] = f->network;
    return;
  }
  j["container"] = f->container;
  j["network"] = f->network;
  add_container_facts(j, f->container, names);
}

void add_drop(json& j, const moat_event& ev, const Names& names) {
  const auto& reasons = drop_reason_names();
  j["reason"] = ev.reason < reasons.size() && !reasons[ev.reason].empty()
                    ? reasons[ev.reason]
                    : std::to_string(ev.reason);
  if (ev.reason != static_cast<uint8_t>(-MOAT_DROP_POLICY_DEFAULT_DENY)) return;
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

// A tuple's addresses as text: IPv4's are in the tuple itself, IPv6's beside
// it (MOAT_EV_F_IPV6), the tuple keeping protocol and ports.
struct Addrs {
  std::string src, dst;
};

Addrs tuple_addrs(const moat_event& ev) {
  if (ev.flags & MOAT_EV_F_IPV6) return {ip6_str(ev.src6), ip6_str(ev.dst6)};
  return {ip_str(ev.tuple.saddr), ip_str(ev.tuple.daddr)};
}

Addrs xlated_addrs(const moat_event& ev) {
  if (ev.flags & MOAT_EV_F_IPV6) return {ip6_str(ev.xlated_src6), ip6_str(ev.xlated_dst6)};
  return {ip_str(ev.xlated.saddr), ip_str(ev.xlated.daddr)};
}

// `t`, `a`: the flow's original tuple and its addresses. What it becomes is
// shown alike for either family.
void add_flow(json& j, const moat_event& ev, const moat_ct_key& t, const Addrs& a,
              const Names& names) {
  j["kind"] = ct_kind_name(ev.ct_kind);
  if (ev.tuple.proto == IPPROTO_TCP) j["tcp_state"] = tcp_state_name(ev.tcp_state);
  const moat_ct_key& x = ev.xlated;
  const Addrs xa = xlated_addrs(ev);
  if (xa.src != a.src || xa.dst != a.dst || x.sport != t.sport || x.dport != t.dport)
    j["translated"] = {{"src", endpoint_json(xa.src, x.sport, t.proto, names)},
                       {"dst", endpoint_json(xa.dst, x.dport, t.proto, names)}};
  if (ev.ct_kind == MOAT_CT_DNAT && has_ports(t.proto))
    j["published"] = {
        {"host_ip", a.dst}, {"host_port", ntohs(t.dport)}, {"container_port", ntohs(x.dport)}};
  if (ev.ct_kind == MOAT_CT_SNAT) j["masquerade_as"] = xa.src;
  j["packets"] = ev.packets;
  j["bytes"] = ev.bytes;
  j["reply_packets"] = ev.reply_packets;
  j["reply_bytes"] = ev.reply_bytes;
}

json rule_json(uint32_t id, const Names& names) {
  json r = {{"id", id}};
  if (const auto* rn = names.rule(id)) {
    r["policy"] = rn->policy;
    r["namespace"] = rn->ns;
    r["direction"] = rn->direction;
    r["action"] = rn->action;
    r["text"] = rn->text;
  }
  return r;
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

}  // namespace

int64_t wall_offset_ns() {
  timespec rt{}, mono{};
  // Both coarse: the tick updates them together, so the difference is exact.
  clock_gettime(CLOCK_REALTIME_COARSE, &rt);
  clock_gettime(CLOCK_MONOTONIC_COARSE, &mono);
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
  add_interface(j, ev.ifindex, names);
  // A tracked flow's entry is keyed by its original tuple, which it keeps in
  // `xlated`; the kernel may report it with the tuple of a reply packet.
  const bool tracked = ev.type != MOAT_EV_DROP && ev.ct_kind == MOAT_CT_TRACK;
  const moat_ct_key& t = tracked ? ev.xlated : ev.tuple;
  const Addrs a = tracked ? xlated_addrs(ev) : tuple_addrs(ev);
  j["protocol"] = proto_name(t.proto);
  if (ev.flags & MOAT_EV_F_IPV6) j["family"] = "ipv6";
  j["src"] = endpoint_json(a.src, t.sport, t.proto, names);
  j["dst"] = endpoint_json(a.dst, t.dport, t.proto, names);
  if (t.proto == IPPROTO_ICMP || t.proto == IPPROTO_ICMPV6) {
    if (drop) {
      const auto* b = reinterpret_cast<const uint8_t*>(&t.dport);
      j["icmp"] = {{"type", b[0]}, {"code", b[1]}};
    } else {
      j["icmp"] = {{"echo_id", ntohs(t.sport)}};
    }
  }
  if (drop)
    add_drop(j, ev, names);
  else
    add_flow(j, ev, t, a, names);
  if (ev.rule_id != MOAT_RULE_NONE) j["rule"] = rule_json(ev.rule_id, names);
  return j;
}

namespace {

std::string ep_text(const json& e) {
  std::string addr = e["ip"].get<std::string>();
  if (e.contains("port"))
    addr = (addr.find(':') != std::string::npos ? "[" + addr + "]" : addr) + ":" +
           std::to_string(e["port"].get<int>());
  if (e.contains("container")) return e["container"].get<std::string>() + "(" + addr + ")";
  return addr;
}

std::string count_text(uint64_t p, uint64_t b) {
  return std::to_string(p) + "p/" + std::to_string(b) + "B";
}

// Back from the ISO time is lossy; event_json keeps ts_ns and time, so
// recompute from "time" only for display.
int64_t wall_ns_of(const json& j) {
  std::string t = j.value("time", "");
  tm tmv{};
  if (t.size() >= 23 && strptime(t.c_str(), "%Y-%m-%dT%H:%M:%S", &tmv)) {
    int ms = std::atoi(t.substr(20, 3).c_str());
    return (static_cast<int64_t>(timegm(&tmv)) * 1000 + ms) * 1000000ll;
  }
  return 0;
}

// " (ingress of db isolated by default/p1, default/p2; egress of ...)"
std::string isolated_by_text(const json& list) {
  std::string o = " (";
  bool first = true;
  for (const auto& i : list) {
    o += (first ? "" : "; ") + i["direction"].get<std::string>() + " of " +
         i["container"].get<std::string>() + " isolated by ";
    bool f2 = true;
    for (const auto& p : i["policies"]) {
      o += (f2 ? "" : ", ") + p.get<std::string>();
      f2 = false;
    }
    first = false;
  }
  return o + ")";
}

// After the tuple: translation, kind, state, reason, rule.
void flow_details_text(std::ostringstream& o, const json& j) {
  if (j.contains("icmp") && j["icmp"].contains("type"))
    o << " (type " << j["icmp"]["type"] << " code " << j["icmp"]["code"] << ")";
  if (j.contains("translated"))
    o << " => " << ep_text(j["translated"]["src"]) << " > " << ep_text(j["translated"]["dst"]);
  if (j.value("kind", "") != "") o << " [" << j["kind"].get<std::string>() << "]";
  if (j.contains("published")) o << " published :" << j["published"]["host_port"];
  if (j.value("tcp_state", "") != "") o << " " << j["tcp_state"].get<std::string>();
  if (j.contains("reason")) o << " reason " << j["reason"].get<std::string>();
  if (j.contains("rule")) {
    const auto& r = j["rule"];
    if (r.contains("text"))
      o << " rule #" << r["id"] << " " << r["text"].get<std::string>();
    else
      o << " rule #" << r["id"];
  }
}

}  // namespace

std::string event_text(const json& j, bool utc) {
  std::ostringstream o;
  static const std::map<std::string, std::string> short_type = {
      {"flow_new", "NEW "}, {"flow_update", "UPD "}, {"flow_end", "END "}, {"drop", "DROP"}};
  std::string type = j.value("type", "");
  auto st = short_type.find(type);
  o << iso_time(wall_ns_of(j), utc, false) << " " << (st != short_type.end() ? st->second : type)
    << " ";
  if (j.contains("container"))
    o << j["container"].get<std::string>() << "@" << j["network"].get<std::string>();
  else if (j.contains("uplink"))
    o << "uplink " << j["uplink"].get<std::string>();
  else
    o << "ifindex " << j["ifindex"];
  o << " " << j["direction"].get<std::string>() << " " << j["protocol"].get<std::string>() << " "
    << ep_text(j["src"]) << " > " << ep_text(j["dst"]);
  flow_details_text(o, j);
  if (j.contains("isolated_by")) o << isolated_by_text(j["isolated_by"]);
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
    auto is = [&](const json& e) {
      return e.is_object() && e.value("container", "") == f.container;
    };
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

}  // namespace moat::obs
