// Segmentation policies: `moat explain` and `moat policy list`.
#include <netinet/in.h>

#include <algorithm>
#include <iostream>
#include <memory>

#include "cli/common.h"
#include "cli/inputs.h"
#include "dataplane/dataplane.h"
#include "dataplane/host.h"
#include "dataplane/prog_run.h"
#include "observe/snapshot.h"
#include "plan/plan.h"
#include "policy/policy.h"
#include "util/abi_names.h"
#include "util/proto.h"

using nlohmann::json;

namespace moat::cli {

namespace {

struct PolicyArgs {
  std::string instance = "default", lab, from, to, port;
  bool as_json = false;
};

// `moat policy list` as JSON rows: what the saved inputs hold.
json policies_json(const moat::Config& cfg) {
  auto rules = moat::policy_rule_table(cfg);
  json out = json::array();
  for (const auto& p : cfg.policies) {
    json sel = json::array(), rl = json::array();
    for (const auto& c : cfg.containers)
      if (moat::policy_selects(p, c)) sel.push_back(c.name);
    for (size_t i = 0; i < rules.size(); ++i)
      if (rules[i].policy == p.name && rules[i].ns == p.ns)
        rl.push_back({{"rule_id", i},
                      {"direction", rules[i].direction},
                      {"action", rules[i].action},
                      {"text", rules[i].text}});
    json types = json::array();
    if (p.isolates_ingress) types.push_back("Ingress");
    if (p.isolates_egress) types.push_back("Egress");
    out.push_back({{"name", p.name},
                   {"namespace", p.ns},
                   {"kubernetes", p.kubernetes},
                   {"isolates", types},
                   {"selects", sel},
                   {"rules", rl},
                   {"source", p.source + ": " + p.path}});
  }
  return out;
}

// `moat policy list`: what the saved inputs hold, and the revision loaded.
void print_policies(const moat::Config& cfg, const json& st, bool as_json) {
  json out = policies_json(cfg);
  const json& pol = st["policy"];
  if (as_json) {
    std::cout << json{{"revision", pol.value("revision", 0u)}, {"policies", out}}.dump(2) << "\n";
    return;
  }
  if (out.empty()) {
    std::cout << "no policies: containers are limited by network isolation only\n";
    return;
  }
  std::cout << out.size() << " policies, kernel revision " << pol.value("revision", 0u) << ", "
            << pol.value("entries", 0) << " map entries\n";
  for (const auto& p : out) {
    std::cout << "\n"
              << p["namespace"].get<std::string>() << "/" << p["name"].get<std::string>()
              << (p["kubernetes"].get<bool>() ? "  (NetworkPolicy)" : "") << "  isolates "
              << (p["isolates"].empty() ? std::string("nothing") : p["isolates"].dump())
              << "  selects " << p["selects"].dump() << "\n";
    for (const auto& r : p["rules"])
      std::cout << "  #" << r["rule_id"] << "  " << r["text"].get<std::string>() << "\n";
  }
}

// "80/tcp", "53/udp", "icmp", "icmpv6", "80" (TCP). "icmp" is the flow's
// family's: explain_flow() makes it ICMPv6 on an IPv6 flow.
std::pair<uint8_t, uint16_t> parse_port_proto(const std::string& text) {
  std::string port = text, proto = "tcp";
  if (auto slash = text.find('/'); slash != std::string::npos) {
    port = text.substr(0, slash);
    proto = text.substr(slash + 1);
  } else if (text == "icmp") {
    return {IPPROTO_ICMP, 0};
  } else if (text == "icmpv6") {
    return {IPPROTO_ICMPV6, 0};
  }
  std::transform(proto.begin(), proto.end(), proto.begin(), ::tolower);
  uint8_t p = proto == "tcp"      ? IPPROTO_TCP
              : proto == "udp"    ? IPPROTO_UDP
              : proto == "sctp"   ? IPPROTO_SCTP
              : proto == "icmp"   ? IPPROTO_ICMP
              : proto == "icmpv6" ? IPPROTO_ICMPV6
                                  : 0;
  if (!p)
    die("\"" + text + "\": unknown protocol " + proto + " (tcp, udp, sctp, icmp or icmpv6)", 2);
  if (p == IPPROTO_ICMP || p == IPPROTO_ICMPV6) return {p, 0};
  char* end = nullptr;
  long n = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end || n < 1 || n > 65535) die("\"" + text + "\": not PORT/PROTO", 2);
  return {p, static_cast<uint16_t>(n)};
}

struct Isolation {
  bool isolated = false;
  std::string text = "not between two containers: network isolation does not apply";
};

// Isolation, between two containers: by the attachment `to` names.
Isolation judge_isolation(const moat::Config& cfg, const moat::PolicyEndpoint& from,
                          const moat::PolicyEndpoint& to) {
  Isolation out;
  const moat::Container* src = from.kind == moat::PolicyEndpoint::Kind::container
                                   ? cfg.find_container(from.container)
                                   : nullptr;
  const moat::Container* dst =
      to.kind == moat::PolicyEndpoint::Kind::container ? cfg.find_container(to.container) : nullptr;
  if (!dst) return out;
  for (const auto& a : dst->networks) {
    if (a.ip.value != to.ip.value) continue;
    if (src) {
      out.isolated = !moat::isolation_allows(cfg, src, *dst, a);
      out.text = out.isolated ? "network isolation forbids it (" + from.container + " is not on " +
                                    a.network + ", or icc is off there)"
                              : "same network " + a.network + ": isolation allows it";
    } else if (from.kind == moat::PolicyEndpoint::Kind::address) {
      out.text = "an outside address reaches a container only through a published port";
      out.isolated = true;
    }
  }
  return out;
}

// ---- the real programs (dataplane/prog_run.h) ---------------------------------

// The endpoint row (status JSON) of a container endpoint, or null: by the
// address the flow uses (an IPv6 side's is its IPv6 address).
const json* endpoint_row(const json& st, const moat::PolicyEndpoint& e) {
  if (e.kind != moat::PolicyEndpoint::Kind::container) return nullptr;
  const bool v6 = e.v6 && e.ip6;
  const std::string ip = v6 ? e.ip6->str() : e.ip.str();
  for (const auto& r : st["endpoints"])
    if (r.value("container", "") == e.container && r.value(v6 ? "ip6" : "ip", "") == ip) return &r;
  return nullptr;
}

// Where the flow's first packet meets moat's programs: the source's veth
// (or, from an outside address, the uplink), then the destination's veth
// (or, to one, the uplink).
std::vector<std::pair<moat::ProgHop, std::string>> flow_hops(const json& st,
                                                             const moat::PolicyEndpoint& from,
                                                             const moat::PolicyEndpoint& to) {
  std::vector<std::pair<moat::ProgHop, std::string>> hops;
  const json* up = st["uplinks"].empty() ? nullptr : &st["uplinks"][0];
  auto add = [&hops](moat_dir d, const json& row) {
    hops.push_back({{d, static_cast<int>(row.value("ifindex", 0u))}, row.value("name", "")});
  };
  if (const json* r = endpoint_row(st, from))
    add(MOAT_DIR_FROM_CONTAINER, *r);
  else if (from.kind == moat::PolicyEndpoint::Kind::address && up)
    add(MOAT_DIR_FROM_WORLD, *up);
  if (const json* r = endpoint_row(st, to))
    add(MOAT_DIR_TO_CONTAINER, *r);
  else if (to.kind == moat::PolicyEndpoint::Kind::address && up && endpoint_row(st, from))
    add(MOAT_DIR_TO_WORLD, *up);
  return hops;
}

// Why the programs can't be run on an IPv6 flow with address `a` on a side
// (its source when `source`), or "" when they can.
std::string unrunnable_ipv6(const moat::Ipv6& a, bool source) {
  const std::string s = a.str();
  if (a == moat::Ipv6{})
    return s + " is the unspecified address: a source only while an address is being claimed, " +
           "never a flow's side";
  if (a == *moat::Ipv6::parse("::1"))
    return s + " is the loopback address: its packets never leave their own namespace, so no " +
           "moat program sees them (the host's dials to a port published at [::1] are the " +
           "socket hooks' to redirect)";
  if (a.is_v4_mapped())
    return s + " is IPv4-mapped: such a flow is IPv4 on the wire; give the IPv4 address";
  if (a.is_multicast() && source) return s + " is multicast, never a packet's source";
  // As the programs' ip_is_link_scope() (bpf/lib/addr.h): fe80::/10 and
  // multicast of scope 0-2.
  if (a.is_link_local() || (a.is_multicast() && (a.bytes[1] & 0x0f) <= 2))
    return s + " is link-scope (" + (a.is_multicast() ? "multicast" : "link-local") +
           "): never routed, and the programs judge such a peer by the way its packet " +
           "arrives (from the host or over the bridge from another container), which the " +
           "addresses do not tell";
  if (a.is_multicast())
    return s + " is multicast beyond the link: which interfaces its packets cross depends on " +
           "multicast routing, which explain does not follow";
  return "";
}

// The verdicts of the real programs on the flow's first packet, run in the
// instance's network namespace without side effects.
json program_verdict(const std::string& instance, const json& st, const moat::PolicyEndpoint& from,
                     const moat::PolicyEndpoint& to, uint8_t proto, uint16_t port) {
  const bool v6 = from.v6 || to.v6;
  if (v6)
    for (const auto* e : {&from, &to})
      if (std::string why = unrunnable_ipv6(*e->ip6, e == &from); !why.empty())
        return {{"ran", false}, {"text", "not run: " + why}};
  auto hops = flow_hops(st, from, to);
  if (hops.empty()) return {{"ran", false}, {"text", "no moat program is on this flow's path"}};
  if (std::string ns = st.value("netns", ""); !ns.empty()) check(moat::enter_netns(ns));
  std::vector<uint8_t> src_mac = {0x02, 0, 0, 0, 0, 1}, dst_mac = {0x02, 0, 0, 0, 0, 2};
  if (const json* r = endpoint_row(st, from))
    src_mac = check(moat::endpoint_mac(instance, static_cast<int>(r->value("ifindex", 0u))));
  if (const json* r = endpoint_row(st, to))
    dst_mac = check(moat::endpoint_mac(instance, static_cast<int>(r->value("ifindex", 0u))));
  std::vector<moat::ProgHop> plain;
  for (const auto& h : hops) plain.push_back(h.first);
  auto frame =
      v6 ? moat::first_packet(dst_mac, src_mac, *from.ip6, *to.ip6, proto, port)
         : moat::first_packet(dst_mac, src_mac, from.ip.to_be(), to.ip.to_be(), proto, port);
  auto runs = check(moat::run_programs_dry(instance, plain, std::move(frame)));
  json out = {{"ran", true}, {"hops", json::array()}};
  bool passed = true;
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto& v = runs[i];
    json h = {{"program", moat::obs::dir_name(v.dir)},
              {"interface", hops[i].second},
              {"passed", v.passed}};
    if (!v.passed) h["reason"] = moat::drop_reason_names().at(v.reason);
    passed = passed && v.passed;
    out["hops"].push_back(h);
  }
  out["allowed"] = passed;
  return out;
}

std::string program_text(const json& prog) {
  if (!prog.value("ran", false)) return prog.value("text", "");
  std::string t;
  for (const auto& h : prog["hops"]) {
    if (!t.empty()) t += ", then ";
    t += h["program"].get<std::string>() + " on " + h["interface"].get<std::string>() + ": " +
         (h["passed"].get<bool>() ? "pass" : "drop (" + h["reason"].get<std::string>() + ")");
  }
  return t;
}

// `moat explain`: isolation first (policies only narrow it), then the policy
// model, the compiled entries and the kernel's loaded maps, which must agree.
void explain_flow(const moat::Config& cfg, const std::string& instance, const json& st,
                  const std::vector<moat::Ipv4>& host_addrs, const PolicyArgs& a) {
  auto from = check(moat::resolve_endpoint(cfg, a.from, host_addrs));
  auto to = check(moat::resolve_endpoint(cfg, a.to, host_addrs));
  // One IPv6 side makes the flow IPv6: a container or the host on the other
  // side is taken by its IPv6 address.
  const bool v6 = from.v6 || to.v6;
  if (v6) {
    from = check(moat::ipv6_endpoint(cfg, from));
    to = check(moat::ipv6_endpoint(cfg, to));
  }
  auto [proto, port] = parse_port_proto(a.port);
  // The kernel tracks an IPv6 flow's echo, and looks its policy up, as
  // ICMPv6 (58): the model, the maps and the program are asked the same.
  if (v6 && proto == IPPROTO_ICMP) proto = IPPROTO_ICMPV6;
  if (!v6 && proto == IPPROTO_ICMPV6)
    die("icmpv6 is for IPv6 flows: give an IPv6 address on one side (or icmp)", 2);
  Isolation iso = judge_isolation(cfg, from, to);
  auto model = moat::evaluate_model(cfg, from, to, proto, port);
  auto plan = check(moat::compile_policies(cfg, host_addrs));
  auto compiled = moat::evaluate_compiled(plan, from, to, proto, port);
  auto kernel = check(
      v6 ? moat::kernel_policy_verdict(instance, *from.ip6, *to.ip6, proto, port)
         : moat::kernel_policy_verdict(instance, from.ip.to_be(), to.ip.to_be(), proto, port));
  bool kernel_allowed = kernel["allowed"].get<bool>();
  bool agree = model.allowed == compiled.allowed && model.allowed == kernel_allowed;
  bool allowed = !iso.isolated && model.allowed;
  json prog = program_verdict(instance, st, from, to, proto, port);
  if (prog.value("ran", false)) prog["agrees"] = prog["allowed"].get<bool>() == allowed;
  std::string flow = from.str() + " -> " + to.str() + " " +
                     (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6
                          ? proto_name(proto)
                          : std::to_string(port) + "/" + proto_name(proto));
  if (a.as_json) {
    std::cout << json{{"flow", flow},
                      {"allowed", allowed},
                      {"isolation", iso.text},
                      {"isolated", iso.isolated},
                      {"policy", model.text},
                      {"egress", model.egress.text},
                      {"ingress", model.ingress.text},
                      {"compiled_allowed", compiled.allowed},
                      {"kernel", kernel},
                      {"program", prog},
                      {"agree", agree}}
                     .dump(2)
              << "\n";
  } else {
    std::cout << flow << ": " << (allowed ? "ALLOWED" : "DENIED") << "\n"
              << "  isolation: " << iso.text << "\n";
    if (model.egress.applies) std::cout << "  egress:    " << model.egress.text << "\n";
    if (model.ingress.applies) std::cout << "  ingress:   " << model.ingress.text << "\n";
    std::cout << "  policy:    " << model.text << "\n"
              << "  kernel:    revision " << kernel["revision"] << ", "
              << (kernel_allowed ? "allowed" : "denied") << " by the loaded maps"
              << (agree ? " (agrees)" : " — DISAGREES with the model, please report") << "\n"
              << "  program:   " << program_text(prog);
    if (prog.value("ran", false))
      std::cout << (prog["agrees"].get<bool>() ? " (agrees)"
                                               : " — DISAGREES with the verdict, please report");
    std::cout << "\n";
  }
  if (!agree) throw CliError{1, "policy model and kernel maps disagree"};
}

// Both commands judge what the instance was applied from, with the uplink
// addresses of its state as the host's.
int run_policy(const PolicyArgs& a, bool explain) {
  need_root();
  std::string instance = scoped_instance(a.instance, a.lab);
  check_instance(instance);
  auto cfg = load_saved_inputs(instance);
  auto st = check(moat::status(instance));
  std::vector<moat::Ipv4> host_addrs;
  for (const auto& u : st["uplinks"])
    if (auto ip = moat::Ipv4::parse(u.value("ip", std::string()))) host_addrs.push_back(*ip);
  if (explain)
    explain_flow(cfg, instance, st, host_addrs, a);
  else
    print_policies(cfg, st, a.as_json);
  return 0;
}

}  // namespace

void add_policy_commands(CLI::App& app, CommandTable& table) {
  auto a = std::make_shared<PolicyArgs>();
  auto* explain = app.add_subcommand(
      "explain",
      "Would FROM reach TO on PORT/PROTO? The verdict, the isolation rule or the policy and rule\n"
      "that decide, the verdict of the loaded kernel maps, which must agree, and what the\n"
      "loaded programs do with the flow's first packet, IPv4 or IPv6 (run with\n"
      "BPF_PROG_TEST_RUN on a private copy of the programs over the live maps: no conntrack\n"
      "entry, counter or event is left; not run for a loopback, link-local or multicast side).\n"
      "FROM/TO: a container (NAME or NAME@NETWORK), host, world, an IP or a CIDR (IPv4 or\n"
      "IPv6; with one IPv6 side, containers and the host are taken by their IPv6 addresses,\n"
      "and icmp is ICMPv6).\n"
      "  moat explain --lab demo rechnung datenbank 7000/tcp");
  explain->add_option("from", a->from, "source")->required();
  explain->add_option("to", a->to, "destination")->required();
  explain->add_option("port", a->port, "PORT/PROTO: 80/tcp, 53/udp, icmp, icmpv6 (default tcp)")
      ->required();
  auto* policy = app.add_subcommand("policy", "Segmentation policies of an instance");
  policy->require_subcommand(1);
  auto* list = policy->add_subcommand(
      "list", "Policies in force: what each selects, its rules, and the loaded revision");
  for (auto* sub : {explain, list}) {
    add_instance_options(sub, a->instance, a->lab);
    sub->add_flag("--json", a->as_json, "machine-readable output");
  }
  table.push_back({explain, [a] { return run_policy(*a, true); }});
  table.push_back({list, [a] { return run_policy(*a, false); }});
}

}  // namespace moat::cli
