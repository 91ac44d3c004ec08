// kernel_bench.cpp - moat_kernel_bench: moat's per-packet cost in the kernel,
// measured with BPF_PROG_TEST_RUN on the real programs over a range of
// policy sizes and published-port counts, printed as one JSON document on
// stdout (progress on stderr).
//
// A benchmark, not a test: it asserts nothing about the numbers. It only
// insists that every run took the path it claims to time (the TC action of
// every run, and once per setup the drop reason, the rewrite or the
// connection-tracking entries), so a broken setup fails instead of
// reporting the cost of the wrong path.
//
// Like moat_bpf_tests, it first moves into a network namespace of its own
// and creates the devices there: nothing is added to the caller's.
//
// Method, the one the cost tests use (policy_test.cpp, nat_test.cpp):
//  - paths that leave no state behind run `repeat` times in one
//    BPF_PROG_TEST_RUN; the kernel reports the average, one sample;
//  - an admitted first packet creates its ct entry, so it cannot repeat:
//    `singles` runs of one packet with the entry deleted before each, the
//    minimum is the sample (a single run's time includes the kernel's clock
//    reads around it, a few tens of ns);
//  - every case gets one sample per round, all cases interleaved in each
//    round, so a drift in the VM's speed hits them alike.
#include <bpf/bpf.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "endpoint.skel.h"
#include "floor.skel.h"
#include "harness.h"
#include "packet.h"
#include "scale.h"
#include "uplink.skel.h"

using namespace pkt;
using namespace moat_test;

namespace {

using Json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

// Past this, a setup is worth a word in the output: the numbers are fine,
// but whoever reruns the default will wait.
constexpr double kSlowSetupS = 60;

struct Options {
  std::vector<uint32_t> rules = {10, 1000, 10000, 100000};
  std::vector<uint32_t> ports = {1, 100, 10000};
  int rounds = 11;
  int repeat = 100000;
  int singles = 400;
  // A host has at most MOAT_MAX_ENDPOINTS attachments; beyond this many
  // containers the rules are spread several to a container (see policy_setup).
  uint32_t containers = 1000;
};

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string str(in_addr_t a) {
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a, buf, sizeof buf);
  return buf;
}

// ---- running, with the action checked every time --------------------------------------

const char* action_name(uint32_t a) {
  return a == TC_ACT_OK         ? "TC_ACT_OK"
         : a == TC_ACT_SHOT     ? "TC_ACT_SHOT"
         : a == TC_ACT_REDIRECT ? "TC_ACT_REDIRECT"
                                : "another action";
}

RunResult checked_run(const std::string& what, const bpf_program* prog, uint32_t ifindex,
                      const Bytes& frame, int repeat, uint32_t want) {
  RunResult r = run(prog, ifindex, frame, repeat);
  if (r.err) throw std::runtime_error(what + ": BPF_PROG_TEST_RUN failed: " + std::strerror(r.err));
  if (r.retval != want)
    throw std::runtime_error(what + ": the program returned " + std::to_string(r.retval) + " (" +
                             action_name(r.retval) + "), expected " + std::to_string(want) + " (" +
                             action_name(want) + ")");
  return r;
}

// What one round of a case does: returns its sample, ns per packet.
using Measure = std::function<uint32_t()>;

Measure repeated(std::string what, const bpf_program* prog, uint32_t ifindex, Bytes frame,
                 int repeat, uint32_t want) {
  return [=] { return checked_run(what, prog, ifindex, frame, repeat, want).duration_ns; };
}

// `before` runs ahead of each single run (outside the timed part): it
// deletes the ct entry the previous one created.
Measure singles(std::string what, const bpf_program* prog, uint32_t ifindex, Bytes frame, int n,
                uint32_t want, std::function<void()> before) {
  return [=] {
    uint32_t best = UINT32_MAX;
    for (int i = 0; i < n; i++) {
      before();
      best = std::min(best, checked_run(what, prog, ifindex, frame, 1, want).duration_ns);
    }
    return best;
  };
}

struct Case {
  Json meta;  // scenario, path and the setup's sizes
  Measure measure;
  std::vector<uint32_t> samples;
};

Json summary(const std::vector<uint32_t>& samples) {
  std::vector<uint32_t> sorted = samples;
  std::sort(sorted.begin(), sorted.end());
  const size_t n = sorted.size();
  const double median =
      n % 2 ? double(sorted[n / 2]) : (double(sorted[n / 2 - 1]) + double(sorted[n / 2])) / 2;
  return {
      {"min", sorted.front()}, {"median", median}, {"max", sorted.back()}, {"samples", samples}};
}

// ---- policy: scale.h's synthetic policies --------------------------------------------

// Everything a policy size's cases need alive while they run.
struct PolicySetup {
  Scale scale;
  uint32_t requested = 0, containers = 0, rules_each = 0;
  uint32_t measured_rule = 0;  // id of the rule admitting the measured flow
  double setup_s = 0;
};

// R rules as R containers of one rule each while that stays within
// `max_containers`, else max_containers (or fewer) containers of
// ceil(R / max_containers) rules each: the compiler's time grows with
// containers x rules, and one host has at most MOAT_MAX_ENDPOINTS
// containers anyway. R that does not divide evenly rounds down; the JSON
// reports the compiled count.
std::unique_ptr<PolicySetup> policy_setup(uint32_t rules, uint32_t max_containers) {
  auto p = std::make_unique<PolicySetup>();
  p->requested = rules;
  p->rules_each = (rules + max_containers - 1) / max_containers;
  p->containers = rules / p->rules_each;
  if (p->containers < 2)
    throw std::invalid_argument("policy with " + std::to_string(rules) +
                                " rules: needs at least "
                                "2 containers (raise --containers or the rule count)");
  // c<kMeasured> and c<kMeasured + 1> inside, kMeasured about in the middle.
  const uint32_t c = p->containers;
  const uint32_t first =
      std::max(kMeasured + 2 > c ? kMeasured + 2 - c : 0, kMeasured - std::min(kMeasured, c / 2));
  std::fprintf(stderr, "policy: %u rules as %u containers x %u rules: compiling, installing...",
               rules, c, p->rules_each);
  const auto t0 = Clock::now();
  p->scale = load_scale(first, c, 1, p->rules_each, /*ipv6=*/true);
  // Rules are numbered policy by policy: c<kMeasured + 1>'s policy, rule 0.
  p->measured_rule = (kMeasured + 1 - first) * p->rules_each;
  p->setup_s = seconds_since(t0);
  std::fprintf(stderr, " %zu rules, %zu entries, %zu ipcache in %.1f s\n", p->scale.rules,
               p->scale.entries, p->scale.ipcache, p->setup_s);
  return p;
}

// The measured pair's flow in one family: its frames, the admitted flow's
// ct key and the family's maps (abi.h: ct and ct6 are separate tables with
// rings of their own; both count in ct_owned).
template <class K>
struct PolicyFlow {
  std::string suffix;  // of the paths: "" (IPv4), "_v6"
  Bytes denied, admitted, established;
  K flow;
  const bpf_map* ct;
  const bpf_map* ring_pos;
  in_addr_t owner;  // whose quota the flow counts in
};

size_t ct_count(const Skeleton<endpoint_bpf>& skel, const moat_ct_key*) {
  return ct_entries(skel).size();
}
size_t ct_count(const Skeleton<endpoint_bpf>& skel, const moat_ct6_key*) {
  return ct6_entries(skel).size();
}
std::optional<uint8_t> ct_kind(const Skeleton<endpoint_bpf>& skel, const moat_ct_key& k) {
  const std::optional<moat_ct_entry> e = ct_get(skel, k);
  return e ? std::optional<uint8_t>(e->kind) : std::nullopt;
}
std::optional<uint8_t> ct_kind(const Skeleton<endpoint_bpf>& skel, const moat_ct6_key& k) {
  const std::optional<moat_ct6_entry> e = ct6_get(skel, k);
  return e ? std::optional<uint8_t>(e->kind) : std::nullopt;
}

// One family's policy cases, in the order they must run in each round:
// new_denied, new_admitted, new_admitted_busy, established (the last
// admitted run leaves the entry established finds). `with` makes a case's
// meta from its path.
template <class K>
std::vector<Case> policy_family_cases(
    const PolicySetup& p, const Options& o, const PolicyFlow<K>& f,
    const std::function<Json(std::string, const char*, std::string)>& with) {
  const Skeleton<endpoint_bpf>& skel = p.scale.skel;
  const bpf_program* prog = skel->progs.from_container;
  const uint32_t dev = ifindex_of("moat-a");
  const std::string tag = "policy " + std::to_string(p.scale.rules) + " rules, ";
  const std::string v6 = f.suffix.empty() ? "" : " (IPv6)";
  const std::string denied_path = "new_denied" + f.suffix,
                    admitted_path = "new_admitted" + f.suffix,
                    busy_path = "new_admitted_busy" + f.suffix,
                    established_path = "established" + f.suffix;

  // Once, that each frame takes the path it stands for.
  const StatsKey stats_key = {dev, MOAT_DIR_FROM_CONTAINER};
  const uint64_t denials =
      sum_stats(skel->maps.stats, stats_key).drops[-MOAT_DROP_POLICY_DEFAULT_DENY];
  const size_t entries = ct_count(skel, &f.flow);
  checked_run(tag + denied_path, prog, dev, f.denied, 1, TC_ACT_SHOT);
  if (sum_stats(skel->maps.stats, stats_key).drops[-MOAT_DROP_POLICY_DEFAULT_DENY] != denials + 1)
    throw std::runtime_error(tag + denied_path + ": not dropped as policy-default-deny");
  if (ct_count(skel, &f.flow) != entries)
    throw std::runtime_error(tag + denied_path + ": left a ct entry");
  std::map<uint32_t, uint64_t> hits = percpu_u64_nonzero(skel->maps.rule_hits);
  checked_run(tag + admitted_path, prog, dev, f.admitted, 1, TC_ACT_OK);
  if (ct_kind(skel, f.flow) != MOAT_CT_TRACK || ct_count(skel, &f.flow) != entries + 1)
    throw std::runtime_error(tag + admitted_path + ": not tracked as one MOAT_CT_TRACK entry");
  hits[p.measured_rule]++;
  if (percpu_u64_nonzero(skel->maps.rule_hits) != hits)
    throw std::runtime_error(tag + admitted_path + ": not admitted by rule " +
                             std::to_string(p.measured_rule));

  const K flow = f.flow;
  const bpf_map *ct = f.ct, *ring_pos = f.ring_pos;
  const in_addr_t owner = f.owner;
  // The setup's run or the previous one left the flow's entry: its absence
  // means a run was not tracked after all.
  auto forget = [ct, flow, tag](const std::string& path) {
    if (bpf_map__delete_elem(ct, &flow, sizeof flow, 0))
      throw std::runtime_error(tag + path + ": deleting the ct entry: " + std::strerror(errno));
  };
  std::vector<Case> cases;
  cases.push_back({with(denied_path, "repeat",
                        "first packet of a flow the policy denies" + v6 +
                            ": ct miss, every policy lookup misses, dropped"),
                   repeated(tag + denied_path, prog, dev, f.denied, o.repeat, TC_ACT_SHOT),
                   {}});
  cases.push_back(
      {with(admitted_path, "single",
            "first packet of a flow the policy admits" + v6 +
                ": ct miss, verdict, ct entry created"),
       singles(tag + admitted_path, prog, dev, f.admitted, o.singles, TC_ACT_OK,
               [ring_pos, tag, forget, admitted_path] {
                 forget(admitted_path);
                 // A quiet host: the ring holds fewer than MOAT_CT_QUOTA_FROM
                 // flows, nothing is swept or counted (abi.h). Only the ring's
                 // position is reset: walking a map here (ct_quota_clear)
                 // would cool the caches and add ~100 ns to the next run.
                 const uint32_t zero = 0;
                 const moat_ct_ring_pos start{};
                 if (bpf_map__update_elem(ring_pos, &zero, sizeof zero, &start, sizeof start, 0))
                   throw std::runtime_error(
                       tag + "resetting the ring's position: " + std::strerror(errno));
               }),
       {}});
  cases.push_back(
      {with(busy_path, "single",
            "new_admitted" + f.suffix +
                " on a busy host: the ring holds more than MOAT_CT_QUOTA_FROM flows, so the "
                "flow is counted for its container (and the ring's sweeper, a timer, runs)"),
       singles(tag + busy_path, prog, dev, f.admitted, o.singles, TC_ACT_OK,
               [&skel, ring_pos, owner, tag, forget, busy_path] {
                 forget(busy_path);
                 // Thousands of singles would reach the container's quota.
                 if (moat_test::ct_owned(skel, owner) > MOAT_CT_FLOW_QUOTA / 2)
                   moat_test::ct_quota_clear(skel);
                 const uint32_t zero = 0;
                 moat_ct_ring_pos pos{};
                 if (bpf_map__lookup_elem(ring_pos, &zero, sizeof zero, &pos, sizeof pos, 0))
                   throw std::runtime_error(tag +
                                            "reading the ring's position: " + std::strerror(errno));
                 if (pos.tail - pos.head < MOAT_CT_QUOTA_FROM + 2 * MOAT_CT_SWEEP_GAP) {
                   // Slots of flows long gone, for the sweeper's timer.
                   pos.tail = pos.head + MOAT_CT_QUOTA_FROM + 1000;
                   if (bpf_map__update_elem(ring_pos, &zero, sizeof zero, &pos, sizeof pos, 0))
                     throw std::runtime_error(
                         tag + "filling the ring's position: " + std::strerror(errno));
                 }
               }),
       {}});
  cases.push_back(
      {with(established_path, "repeat",
            "a packet of an admitted, tracked flow" + v6 + ": ct hit, policy not consulted"),
       repeated(tag + established_path, prog, dev, f.established, o.repeat, TC_ACT_OK),
       {}});
  return cases;
}

// Every policy case in both families, each IPv6 case right after its IPv4
// counterpart (issue 16: each IPv6 path's cost beside its IPv4 one); the
// families' flows are independent, so interleaving them keeps each family's
// order (policy_family_cases).
void add_policy_cases(std::vector<Case>& cases, const PolicySetup& p, const Options& o) {
  const Skeleton<endpoint_bpf>& skel = p.scale.skel;
  const in_addr_t src = scale_ip(kMeasured), dst = scale_ip(kMeasured + 1);
  auto frame = [&](uint16_t sport, uint16_t dport, uint8_t flags) {
    return eth(ETH_P_IP, ipv4({.src = src, .dst = dst}, tcp(sport, dport, flags)));
  };
  const in6_addr src6 = ip6(scale_ip6(kMeasured).c_str()),
                 dst6 = ip6(scale_ip6(kMeasured + 1).c_str());
  auto frame6 = [&](uint16_t sport, uint16_t dport, uint8_t flags) {
    return eth(ETH_P_IPV6, ipv6({.src = src6, .dst = dst6, .next = IPPROTO_TCP, .hop_limit = 64},
                                tcp(sport, dport, flags)));
  };
  // Denied: below every rule's ports: the ct misses, then every policy
  // lookup of both sides misses (the source is not isolated, the
  // destination is). Admitted: c<kMeasured + 1>'s rule 0 admits
  // c<kMeasured> on kScaleFirstPort.
  const PolicyFlow<moat_ct_key> v4 = {"",
                                      frame(40000, kScaleFirstPort - 1, kSyn),
                                      frame(40001, kScaleFirstPort, kSyn),
                                      frame(40001, kScaleFirstPort, kAck),
                                      ct_key(src, 40001, dst, kScaleFirstPort, IPPROTO_TCP),
                                      skel->maps.ct,
                                      skel->maps.ct_ring_pos,
                                      src};
  uint32_t w[4];
  std::memcpy(w, &src6, sizeof w);
  const PolicyFlow<moat_ct6_key> v6 = {
      "_v6",
      frame6(40000, kScaleFirstPort - 1, kSyn),
      frame6(40001, kScaleFirstPort, kSyn),
      frame6(40001, kScaleFirstPort, kAck),
      ct6_key(scale_ip6(kMeasured).c_str(), 40001, scale_ip6(kMeasured + 1).c_str(),
              kScaleFirstPort, IPPROTO_TCP),
      skel->maps.ct6,
      skel->maps.ct6_ring_pos,
      w[0] ^ w[1] ^ w[2] ^ w[3]};  // an IPv6 flow's owner: its address folded (abi.h)

  Json meta = {{"scenario", "policy"},
               {"hook", "from_container"},
               {"rules", p.scale.rules},
               {"containers", p.containers},
               {"rules_per_container", p.rules_each},
               {"entries", p.scale.entries},
               {"ipcache", p.scale.ipcache},
               {"ipcache6", p.scale.ipcache6},
               {"setup_s", std::round(p.setup_s * 100) / 100}};
  if (p.scale.rules != p.requested) meta["rules_requested"] = p.requested;
  std::string note;
  if (p.setup_s > kSlowSetupS)
    note = "setup (compiling and installing the policy) took " + std::to_string(int(p.setup_s)) +
           " s. ";
  // moat compiles and enforces such a policy, but its observation counts
  // rule hits only for the first MOAT_MAX_RULES rule ids.
  if (p.scale.rules > MOAT_MAX_RULES)
    note += "more rules than rule_hits has slots (MOAT_MAX_RULES " +
            std::to_string(MOAT_MAX_RULES) +
            "): rules past that are enforced but not counted; "
            "the measured flow's rule (id " +
            std::to_string(p.measured_rule) + ") is counted.";
  if (!note.empty()) meta["note"] = note;
  auto with = [&](std::string path, const char* runs, std::string what) {
    Json m = meta;
    m["path"] = std::move(path);
    m["runs"] = runs;
    m["what"] = std::move(what);
    return m;
  };
  std::vector<Case> c4 = policy_family_cases(p, o, v4, with);
  std::vector<Case> c6 = policy_family_cases(p, o, v6, with);
  for (size_t i = 0; i < c4.size(); i++) {
    cases.push_back(std::move(c4[i]));
    cases.push_back(std::move(c6.at(i)));
  }
}

// ---- publish and baseline: a plain dataplane without policy ----------------------------

constexpr uint32_t kMasqIcc = MOAT_NET_F_ICC | MOAT_NET_F_MASQUERADE;
const Network kNet = {1, ip4("172.20.0.0"), 16, ip4("172.20.0.1"), kMasqIcc};
constexpr const char* A = "172.20.0.2";       // moat-a: publishes 8080 -> 80
constexpr const char* B = "172.20.0.3";       // moat-b
constexpr const char* HOST = "198.18.0.1";    // moat-u's address
constexpr const char* CLIENT = "198.18.0.2";  // a client in the world
// The same over IPv6: A's and B's addresses, the uplink's, a client's.
constexpr const char* A6 = "fd00:10::2";
constexpr const char* B6 = "fd00:10::3";
constexpr const char* HOST6 = "2001:db8:ff::1";
constexpr const char* CLIENT6 = "2001:db8:1::7";
constexpr uint16_t kPublished = 8080, kUnpublished = 6000;
// Filler publish entries: TCP ports kFillerPort.. to backends 172.20.1.0 + i.
constexpr uint16_t kFillerPort = 10000;
constexpr uint32_t kMaxPorts = 1 + (65535 - kFillerPort + 1);

Bytes tcp4(const char* s, uint16_t sp, const char* d, uint16_t dp, uint8_t flags = kAck,
           const Mac& dst_mac = kContainerMac, const Mac& src_mac = kContainerMac) {
  return eth(ETH_P_IP,
             ipv4({.src = ip4(s), .dst = ip4(d), .proto = IPPROTO_TCP, .l4_checksum = true},
                  tcp(sp, dp, flags)),
             dst_mac, src_mac);
}
Bytes tcp6(const char* s, uint16_t sp, const char* d, uint16_t dp, uint8_t flags = kAck) {
  return eth(
      ETH_P_IPV6,
      ipv6(
          {.src = ip6(s), .dst = ip6(d), .next = IPPROTO_TCP, .hop_limit = 64, .l4_checksum = true},
          tcp(sp, dp, flags)));
}

struct Plane : Programs {
  uint32_t ports = 0;  // publish entries
};

// `ports` publish entries: A's 8080 and ports - 1 fillers.
std::unique_ptr<Plane> plane(uint32_t ports) {
  auto p = std::make_unique<Plane>();
  add_network(p->ep, kNet);
  add_endpoint(p->ep, ifindex_of("moat-a"), kNet, ip4(A));
  add_endpoint(p->ep, ifindex_of("moat-b"), kNet, ip4(B));
  add_uplink(p->ep, ifindex_of("moat-u"), ip4(HOST), HOST6);
  add_host_addr(p->ep, ip4(HOST));
  add_host_addr6(p->ep, HOST6);
  add_network6(p->ep, kNet, "fd00:10::", 64, "fd00:10::1");
  add_publish(p->ep, {0, kPublished, IPPROTO_TCP, ip4(A), 80, ifindex_of("moat-a"), kNet.id});
  add_publish6(p->ep, "::", kPublished, IPPROTO_TCP, A6, 80, ifindex_of("moat-a"), kNet.id);
  for (uint32_t i = 0; i + 1 < ports; i++)
    add_publish(p->ep, {0, uint16_t(kFillerPort + i), IPPROTO_TCP,
                         htonl(ntohl(ip4("172.20.1.0")) + i), 80, 1000 + i, kNet.id});
  p->ports = ports;
  return p;
}

void add_publish_cases(std::vector<Case>& cases, const Plane& p, const Options& o) {
  const bpf_program* in = p.up->progs.from_world;
  const uint32_t up = ifindex_of("moat-u");
  const std::string tag = "publish " + std::to_string(p.ports) + " ports, ";

  // A published flow, as ObservationCost (observe_test.cpp) sets it up,
  // looped (loop_published_flow) so that every repetition is a real ct hit
  // plus DNAT rewrite (address, port, both checksums).
  const RunResult syn =
      checked_run(tag + "SYN", in, up, tcp4(CLIENT, 42000, HOST, kPublished, kSyn), 1, TC_ACT_OK);
  if (syn.out != tcp4(CLIENT, 42000, A, 80, kSyn))
    throw std::runtime_error(tag + "the SYN to the published port was not rewritten to " + A +
                             ":80");
  checked_run(tag + "SYN-ACK", p.up->progs.to_world, up, tcp4(A, 80, CLIENT, 42000, kSyn | kAck),
              1, TC_ACT_OK);
  loop_published_flow(p.ep, ct_key(CLIENT, 42000, HOST, kPublished, IPPROTO_TCP));
  const Bytes established = tcp4(CLIENT, 42000, HOST, kPublished);

  // An unpublished port of the host address: both publish probes miss, the
  // host gets the packet unchanged and nothing is tracked.
  const Bytes miss = tcp4(CLIENT, 40000, HOST, kUnpublished, kSyn);
  const size_t ct_before = ct_entries(p.ep).size();
  if (checked_run(tag + "miss", in, up, miss, 1, TC_ACT_OK).out != miss ||
      ct_entries(p.ep).size() != ct_before)
    throw std::runtime_error(tag + "miss: the packet was rewritten or tracked");

  // The same over IPv6: ct6 hit, NAT66 rewrite of a 16-byte address.
  const RunResult syn6 = checked_run(tag + "SYN over IPv6", in, up,
                                     tcp6(CLIENT6, 42000, HOST6, kPublished, kSyn), 1, TC_ACT_OK);
  if (syn6.out != tcp6(CLIENT6, 42000, A6, 80, kSyn))
    throw std::runtime_error(tag + "the IPv6 SYN to the published port was not rewritten");
  checked_run(tag + "SYN-ACK over IPv6", p.up->progs.to_world, up,
              tcp6(A6, 80, CLIENT6, 42000, kSyn | kAck), 1, TC_ACT_OK);
  loop_published_flow6(p.ep, ct6_key(CLIENT6, 42000, HOST6, kPublished, IPPROTO_TCP));
  const Bytes established6 = tcp6(CLIENT6, 42000, HOST6, kPublished);

  const Json meta = {
      {"scenario", "publish"}, {"hook", "from_world"}, {"ports", p.ports}, {"runs", "repeat"}};
  Json m = meta;
  m["path"] = "established";
  m["what"] = "a packet of an established published flow: ct hit, DNAT rewrite";
  cases.push_back({m, repeated(tag + "established", in, up, established, o.repeat, TC_ACT_OK), {}});
  m = meta;
  m["path"] = "established_v6";
  m["what"] = "the same over IPv6: ct6 hit, NAT66 rewrite";
  cases.push_back(
      {m, repeated(tag + "established_v6", in, up, established6, o.repeat, TC_ACT_OK), {}});
  m = meta;
  m["path"] = "miss";
  m["what"] = "a SYN to an unpublished port of the host address: both publish probes miss";
  cases.push_back({m, repeated(tag + "miss", in, up, miss, o.repeat, TC_ACT_OK), {}});
}

// A packet from moat-a to moat-b on one network, no policy: `path` names
// the family's case.
void add_allowed_case(std::vector<Case>& cases, const Plane& p, const Options& o,
                      const std::string& path, const Bytes& frame, const std::string& what) {
  const uint32_t dev = ifindex_of("moat-a");
  checked_run("baseline " + path, p.ep->progs.from_container, dev, frame, 1, TC_ACT_OK);
  cases.push_back(
      {{{"scenario", "baseline"},
        {"path", path},
        {"hook", "from_container"},
        {"runs", "repeat"},
        {"what", what}},
       repeated("baseline " + path, p.ep->progs.from_container, dev, frame, o.repeat, TC_ACT_OK),
       {}});
}

void add_baseline_cases(std::vector<Case>& cases, const Plane& p, const Options& o) {
  add_allowed_case(cases, p, o, "allowed", tcp4(A, 40000, B, 80),
                   "a packet between two containers of one network, no policy");
  // The same over IPv6 (issue 16: each IPv6 path's cost beside its IPv4
  // one): both containers have addresses in their network's IPv6 subnet.
  set_endpoint_ipv6(p.ep, ifindex_of("moat-a"), A6);
  set_endpoint_ipv6(p.ep, ifindex_of("moat-b"), B6);
  add_allowed_case(cases, p, o, "allowed_v6", tcp6(A6, 40000, B6, 80),
                   "the baseline's packet over IPv6, no policy");
}

// ---- a masqueraded flow's reply ---------------------------------------------------------

// The hardware address of `dev`, in this (the bench's) namespace.
Mac mac_of(const char* dev) {
  ifreq ifr{};
  std::snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", dev);
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  const int rc = fd < 0 ? -1 : ioctl(fd, SIOCGIFHWADDR, &ifr);
  const int err = errno;
  if (fd >= 0) close(fd);
  if (rc) throw std::runtime_error(std::string("the MAC of ") + dev + ": " + std::strerror(err));
  Mac m;
  std::memcpy(m.data(), ifr.ifr_hwaddr.sa_data, m.size());
  return m;
}

// from_world on the reply of a flow A opened to the world, masqueraded
// behind the uplink's address: ct hit (MOAT_CT_SNAT_REPLY), the reverse
// translation, then the routed fast path's way back (lib/fast_reply.h).
// The frames are addressed to the uplink's own MAC, as the world's router
// sends them: the way back refuses any other (PACKET_OTHERHOST) at its
// first check. Looped like a published flow: an entry under the
// translated tuple translates it back, so every repetition takes the same
// path. `routed_on`: the way back's switch on (a plane of its own: the
// switch is the instance's), where an entry under the packet's own tuple
// (the loop's and the flow's own reply entry, repetition by repetition)
// makes it refuse after its frame checks, at the ct lookup.
void add_masquerade_case(std::vector<Case>& cases, const Plane& p, const Options& o,
                         bool routed_on) {
  const bpf_program* in = p.up->progs.from_world;
  const uint32_t up = ifindex_of("moat-u");
  const Mac up_mac = mac_of("moat-u"), router = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
  const auto world = [&](const char* s, uint16_t sp, const char* d, uint16_t dp, uint8_t flags) {
    return tcp4(s, sp, d, dp, flags, up_mac, router);
  };
  const std::string tag =
      std::string("masquerade reply, the way back ") + (routed_on ? "on, " : "off, ");
  if (routed_on) {
    const uint32_t zero = 0, flags = MOAT_FAST_F_ROUTED_ON;
    if (bpf_map__update_elem(p.ep->maps.fast_cfg, &zero, 4, &flags, 4, BPF_ANY))
      throw std::runtime_error(tag + "turning it on: " + std::strerror(errno));
  }
  checked_run(tag + "SYN A->world", p.up->progs.to_world, up, tcp4(A, 40100, CLIENT, 443, kSyn), 1,
              TC_ACT_OK);
  std::optional<std::pair<moat_ct_key, moat_ct_entry>> reply;
  for (const auto& [k, e] : ct_entries(p.ep))
    if (e.kind == MOAT_CT_SNAT_REPLY && e.xlated.daddr == ip4(A) && e.xlated.dport == htons(40100))
      reply = std::pair{k, e};
  if (!reply) throw std::runtime_error(tag + "the flow to the world was not masqueraded");
  const uint16_t nat_port = ntohs(reply->first.dport);
  checked_run(tag + "SYN-ACK world->A", in, up, world(CLIENT, 443, HOST, nat_port, kSyn | kAck), 1,
              TC_ACT_OK);
  checked_run(tag + "ACK A->world", p.up->progs.to_world, up, tcp4(A, 40100, CLIENT, 443), 1,
              TC_ACT_OK);
  if (auto e = ct_get(p.ep, reply->first)) reply->second = *e;
  moat_ct_entry back = reply->second;
  back.xlated = reply->first;
  if (bpf_map__update_elem(p.ep->maps.ct, &reply->second.xlated, sizeof(moat_ct_key), &back,
                           sizeof back, BPF_ANY))
    throw std::runtime_error(tag + "looping the flow: " + std::strerror(errno));
  const Bytes frame = world(CLIENT, 443, HOST, nat_port, kAck);
  // One repetition translates it to A, a second one back.
  if (checked_run(tag + "translated", in, up, frame, 1, TC_ACT_OK).out !=
      world(CLIENT, 443, A, 40100, kAck))
    throw std::runtime_error(tag + "the reply was not translated to " + A + ":40100");
  if (checked_run(tag + "looped", in, up, frame, 2, TC_ACT_OK).out != frame)
    throw std::runtime_error(tag + "the looped reply did not come back to its own bytes");
  Json m = {{"scenario", "masquerade"}, {"hook", "from_world"}, {"runs", "repeat"}};
  m["path"] = routed_on ? "reply_way_back_on" : "reply";
  m["what"] = routed_on ? "the same with the way back on: its frame checks pass, another entry "
                          "under the packet's own tuple refuses it at its ct lookup"
                        : "a reply of a masqueraded flow: ct hit, reverse translation, the routed "
                          "fast path's way back offered it and refused at its switch (off, the "
                          "default)";
  cases.push_back({m, repeated(tag + "reply", in, up, frame, o.repeat, TC_ACT_OK), {}});
}

// ---- the fast path: from_container straight into a peer's namespace -------------------

// lib/redirect.h: a packet of a tracked, answered flow between two
// containers of one network leaves from_container by bpf_redirect_peer();
// every other packet from_container passes is offered to it too and
// refused. Its own plane: the endpoints carry their MACs and `local_peers`
// entries as apply writes them, and a policy that admits everything
// (revision 1) makes flows tracked.
const Mac kFastMacA = {0x02, 0x42, 0xac, 0x14, 0x00, 0x02};
const Mac kFastMacB = {0x02, 0x42, 0xac, 0x14, 0x00, 0x03};
const Mac kFastGatewayMac = {0x02, 0x42, 0x11, 0x11, 0x11, 0x11};

Bytes fast_tcp(const Mac& src_mac, const Mac& dst_mac, const char* s, uint16_t sp, const char* d,
               uint16_t dp, uint8_t flags) {
  return eth(ETH_P_IP,
             ipv4({.src = ip4(s), .dst = ip4(d), .proto = IPPROTO_TCP}, tcp(sp, dp, flags)),
             dst_mac, src_mac);
}

void fast_endpoint(const Programs& p, const char* dev, const char* ip, const Mac& mac) {
  const uint32_t ifindex = ifindex_of(dev);
  add_endpoint(p.ep, ifindex, kNet, ip4(ip));
  moat_endpoint ep{};
  if (bpf_map__lookup_elem(p.ep->maps.endpoints, &ifindex, 4, &ep, sizeof ep, 0) != 0)
    throw std::runtime_error(std::string("fast path: reading ") + dev + "'s endpoint");
  std::copy(mac.begin(), mac.end(), ep.mac);
  const moat_peer_key k = {kNet.id, ip4(ip)};
  if (bpf_map__update_elem(p.ep->maps.endpoints, &ifindex, 4, &ep, sizeof ep, BPF_ANY) != 0 ||
      bpf_map__update_elem(p.ep->maps.local_peers, &k, sizeof k, &ifindex, 4, BPF_ANY) != 0)
    throw std::runtime_error(std::string("fast path: writing ") + dev + "'s endpoint");
}

std::unique_ptr<Programs> fast_plane() {
  auto p = std::make_unique<Programs>();
  add_network(p->ep, kNet);
  add_uplink(p->ep, ifindex_of("moat-u"), ip4(HOST));
  add_host_addr(p->ep, ip4(HOST));
  fast_endpoint(*p, "moat-a", A, kFastMacA);
  fast_endpoint(*p, "moat-b", B, kFastMacB);
  install_policy(p->ep, 1, {}, {});
  return p;
}

void add_fast_path_cases(std::vector<Case>& cases, const Programs& p, const Options& o) {
  const bpf_program* from = p.ep->progs.from_container;
  const bpf_program* to = p.ep->progs.to_container;
  const uint32_t a = ifindex_of("moat-a"), b = ifindex_of("moat-b");
  const std::string tag = "fast path, ";
  // A:40000 -> B:80 opened and answered, as the fast path's BPF test does;
  // A:40001 -> the world (CLIENT:443) opened and answered.
  checked_run(tag + "SYN A->B", from, a, fast_tcp(kFastMacA, kFastMacB, A, 40000, B, 80, kSyn), 1,
              TC_ACT_OK);
  checked_run(tag + "SYN A->B at B", to, b, fast_tcp(kFastMacA, kFastMacB, A, 40000, B, 80, kSyn),
              1, TC_ACT_OK);
  checked_run(tag + "SYN-ACK B->A", from, b,
              fast_tcp(kFastMacB, kFastMacA, B, 80, A, 40000, kSyn | kAck), 1, TC_ACT_REDIRECT);
  checked_run(tag + "SYN A->world", from, a,
              fast_tcp(kFastMacA, kFastGatewayMac, A, 40001, CLIENT, 443, kSyn), 1, TC_ACT_OK);
  checked_run(tag + "SYN-ACK world->A", to, a,
              fast_tcp(kFastGatewayMac, kFastMacA, CLIENT, 443, A, 40001, kSyn | kAck), 1,
              TC_ACT_OK);
  const std::optional<moat_ct_entry> peer = ct_get(p.ep, ct_key(A, 40000, B, 80, IPPROTO_TCP));
  const std::optional<moat_ct_entry> world =
      ct_get(p.ep, ct_key(A, 40001, CLIENT, 443, IPPROTO_TCP));
  if (!peer || peer->kind != MOAT_CT_TRACK || !peer->reply_packets || !world ||
      world->kind != MOAT_CT_TRACK || !world->reply_packets)
    throw std::runtime_error(tag + "the flows are not tracked and answered");

  const Json meta = {{"scenario", "fast_path"}, {"hook", "from_container"}, {"runs", "repeat"}};
  auto add = [&](const char* path, const char* what, uint32_t dev, Bytes frame, uint32_t want) {
    Json m = meta;
    m["path"] = path;
    m["what"] = what;
    checked_run(tag + path, from, dev, frame, 1, want);
    cases.push_back({m, repeated(tag + path, from, dev, std::move(frame), o.repeat, want), {}});
  };
  add("redirected",
      "a packet of an established tracked flow between two containers of one network: "
      "judged, then redirected into the peer's namespace (bpf_redirect_peer)",
      a, fast_tcp(kFastMacA, kFastMacB, A, 40000, B, 80, kAck), TC_ACT_REDIRECT);
  add("redirected_reply",
      "the flow's reply: judged, redirected, and accounted as the peer's to_container would", b,
      fast_tcp(kFastMacB, kFastMacA, B, 80, A, 40000, kAck), TC_ACT_REDIRECT);
  add("outside",
      "a packet of an established tracked flow to the world: judged, offered to the fast path, "
      "refused (no local peer), passed",
      a, fast_tcp(kFastMacA, kFastGatewayMac, A, 40001, CLIENT, 443, kAck), TC_ACT_OK);
}

// ---- the floor: a program that only parses ---------------------------------------

// floor.bpf.c: Ethernet, IPv4 or IPv6 and L4 parsed with lib/parse.h, then
// passed. Every moat case names the floor of its family ("floor_path"), so
// its cost can be read as a multiple of the parsing it cannot skip. The
// lookup floors add one or two hash lookups to the IPv4 one: how much of a
// moat path its design's lookups already are.
using FloorSkeleton = std::unique_ptr<floor_bpf, decltype(&floor_bpf__destroy)>;

FloorSkeleton load_floor() {
  FloorSkeleton f(floor_bpf__open_and_load(), &floor_bpf__destroy);
  if (!f) throw std::runtime_error(std::string("loading floor.bpf.o: ") + std::strerror(errno));
  return f;
}

// The floors' IPv4 packet: A's TCP segment to B, from and to these ports.
constexpr uint16_t kFloorSport = 40000, kFloorDport = 80;

// The IPv4 floor with one or two hash lookups (floor.bpf.c's lookup_ct and
// lookup_endpoint_ct), each table seeded with the entry its run finds.
void add_lookup_floor_cases(std::vector<Case>& cases, const floor_bpf& f, const Options& o,
                            uint32_t dev, const Bytes& frame) {
  moat_endpoint ep{};  // only its address is read
  ep.ipv4 = ip4(A);
  if (bpf_map__update_elem(f.maps.floor_endpoints, &dev, sizeof dev, &ep, sizeof ep, 0))
    throw std::runtime_error(std::string("floor: seeding its endpoint: ") + std::strerror(errno));
  moat_ct_key key{};
  key.saddr = ip4(A);
  key.daddr = ip4(B);
  key.sport = htons(kFloorSport);
  key.dport = htons(kFloorDport);
  key.proto = IPPROTO_TCP;
  moat_ct_entry e{};
  e.xlated = key;
  e.kind = MOAT_CT_TRACK;
  if (bpf_map__update_elem(f.maps.floor_ct, &key, sizeof key, &e, sizeof e, 0))
    throw std::runtime_error(std::string("floor: seeding its flow: ") + std::strerror(errno));
  const struct {
    const char* path;
    const char* hook;
    const bpf_program* prog;
    const char* what;
  } lookups[] = {
      {"ipv4_ct", "lookup_ct", f.progs.lookup_ct,
       "the IPv4 floor and one hash lookup: the flow's tuple in a table like moat's ct (its "
       "size and entry type), the entry refreshed (packets, bytes, expiry): not moat, the least "
       "its connection tracking adds"},
      {"ipv4_endpoint_ct", "lookup_endpoint_ct", f.progs.lookup_endpoint_ct,
       "ipv4_ct after a lookup of the interface in a table like moat's endpoints and a check of "
       "the source address: not moat, the least from_container's established path does"},
  };
  for (const auto& l : lookups) {
    const std::string tag = std::string("floor ") + l.path;
    const RunResult r = checked_run(tag, l.prog, dev, frame, 1, TC_ACT_OK);
    if (r.out != frame) throw std::runtime_error(tag + ": the packet was changed");
    cases.push_back({{{"scenario", "floor"},
                      {"path", l.path},
                      {"hook", l.hook},
                      {"runs", "repeat"},
                      {"what", l.what},
                      {"floor_path", "ipv4"}},
                     repeated(tag, l.prog, dev, frame, o.repeat, TC_ACT_OK),
                     {}});
  }
}

void add_floor_cases(std::vector<Case>& cases, const floor_bpf& f, const Options& o) {
  const uint32_t dev = ifindex_of("moat-a");
  const struct {
    const char* path;
    Bytes frame;
    const char* what;
  } families[] = {
      {"ipv4", tcp4(A, kFloorSport, B, kFloorDport),
       "an IPv4 TCP packet parsed (Ethernet, IPv4, TCP with lib/parse.h) and passed: "
       "no map, no verdict"},
      {"ipv6", tcp6(A6, 40000, B6, 80),
       "an IPv6 TCP packet parsed (Ethernet, IPv6, extension-header walk, TCP) and passed"},
  };
  checked_run("floor empty", f.progs.pass_only, dev, families[0].frame, 1, TC_ACT_OK);
  cases.push_back(
      {{{"scenario", "floor"},
        {"path", "empty"},
        {"hook", "pass_only"},
        {"runs", "repeat"},
        {"what",
         "a program that returns TC_ACT_OK and nothing else: "
         "BPF_PROG_TEST_RUN's own cost per repetition"}},
       repeated("floor empty", f.progs.pass_only, dev, families[0].frame, o.repeat, TC_ACT_OK),
       {}});
  add_lookup_floor_cases(cases, f, o, dev, families[0].frame);
  for (const auto& fam : families) {
    const std::string tag = std::string("floor ") + fam.path;
    const RunResult r = checked_run(tag, f.progs.parse_only, dev, fam.frame, 1, TC_ACT_OK);
    if (r.out != fam.frame) throw std::runtime_error(tag + ": the packet was changed");
    cases.push_back({{{"scenario", "floor"},
                      {"path", fam.path},
                      {"hook", "parse_only"},
                      {"runs", "repeat"},
                      {"what", fam.what}},
                     repeated(tag, f.progs.parse_only, dev, fam.frame, o.repeat, TC_ACT_OK),
                     {}});
  }
}

// The floor a moat case compares with: its family's.
const char* floor_path_of(const Json& meta) {
  const std::string path = meta.value("path", "");
  return path.ends_with("_v6") ? "ipv6" : "ipv4";
}

// ---- the run -------------------------------------------------------------------------

// The CPU the run stays on: per-CPU maps and caches stay warm, and a
// migration cannot land in the middle of a round.
int pin_to_current_cpu() {
  const int cpu = sched_getcpu();
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  return cpu >= 0 && sched_setaffinity(0, sizeof one, &one) == 0 ? cpu : -1;
}

// kernel.bpf_stats_enabled, a machine-wide switch: while it is on, every
// program run also reads the clock twice, and every figure here includes
// that. null when it cannot be read.
Json bpf_stats_enabled() {
  std::ifstream f("/proc/sys/kernel/bpf_stats_enabled");
  int v = -1;
  f >> v;
  return v < 0 ? Json(nullptr) : Json(v != 0);
}

Json bench(const Options& o) {
  const auto t0 = Clock::now();
  const Json stats_at_start = bpf_stats_enabled();
  const int cpu = pin_to_current_cpu();

  // Everything is set up first, so the rounds interleave every case.
  std::vector<Case> cases;
  std::vector<std::unique_ptr<Plane>> planes;
  std::vector<std::unique_ptr<PolicySetup>> policies;
  const FloorSkeleton floor = load_floor();
  add_floor_cases(cases, *floor, o);
  planes.push_back(plane(1));
  add_baseline_cases(cases, *planes.back(), o);
  add_masquerade_case(cases, *planes.back(), o, false);
  planes.push_back(plane(1));
  add_masquerade_case(cases, *planes.back(), o, true);
  const std::unique_ptr<Programs> fast = fast_plane();
  add_fast_path_cases(cases, *fast, o);
  for (uint32_t r : o.rules) {
    policies.push_back(policy_setup(r, o.containers));
    add_policy_cases(cases, *policies.back(), o);
  }
  for (uint32_t ports : o.ports) {
    std::fprintf(stderr, "publish: %u ports...", ports);
    const auto p0 = Clock::now();
    planes.push_back(plane(ports));
    add_publish_cases(cases, *planes.back(), o);
    std::fprintf(stderr, " set up in %.1f s\n", seconds_since(p0));
  }

  for (int round = 0; round < o.rounds; round++) {
    std::fprintf(stderr, "round %d/%d\n", round + 1, o.rounds);
    for (Case& c : cases) c.samples.push_back(c.measure());
  }
  for (const auto& p : policies)
    if (ct_entries(p->scale.skel).size() != 1 || ct6_entries(p->scale.skel).size() != 1)
      throw std::runtime_error("policy " + std::to_string(p->scale.rules) +
                               " rules: the denied runs created ct entries");

  utsname u{};
  uname(&u);
  Json doc = {{"tool", "moat_kernel_bench"},
              {"kernel", u.release},
              {"cpus", sysconf(_SC_NPROCESSORS_ONLN)},
              {"pinned_cpu", cpu},
              {"rounds", o.rounds},
              {"repeat", o.repeat},
              {"singles", o.singles},
              {"unit", "ns per packet (BPF_PROG_TEST_RUN duration)"},
              {"bpf_stats_enabled", {{"start", stats_at_start}, {"end", bpf_stats_enabled()}}},
              {"method",
               "one sample per case per round, cases interleaved in each round; runs=repeat: "
               "the kernel's average over `repeat` repetitions; runs=single: the minimum of "
               "`singles` one-packet runs, the ct entry deleted before each; scenario floor: "
               "bench/floor.bpf.c's parse_only, which only parses and passes, timed in the same "
               "rounds (its lookup floors, ipv4_ct and ipv4_endpoint_ct, add one or two hash "
               "lookups to the IPv4 one); "
               "floor_path names the floor case of a moat case's family"},
              {"policy_layout",
               "containers c<i> at 10.0.0.2+i in 10.0.0.0/16 and fd00:a::2+i in fd00:a::/64, "
               "one identity each, each ingress-isolated by rules_per_container rules allowing "
               "c<i-1> on one TCP port each; measured: c" +
                   std::to_string(kMeasured) + " (" + str(scale_ip(kMeasured)) + ", " +
                   scale_ip6(kMeasured) + ") -> c" + std::to_string(kMeasured + 1) +
                   "; paths ending in _v6 over IPv6"}};
  doc["cases"] = Json::array();
  for (const Case& c : cases) {
    Json j = c.meta;
    if (j["scenario"] != "floor") j["floor_path"] = floor_path_of(j);
    j["ns"] = summary(c.samples);
    doc["cases"].push_back(j);
  }
  doc["duration_s"] = std::round(seconds_since(t0) * 10) / 10;
  return doc;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  bool quick = false;
  CLI::App app{
      "moat_kernel_bench: moat's per-packet cost in the kernel (BPF_PROG_TEST_RUN) over policy "
      "sizes and published-port counts; one JSON document on stdout. Needs root; runs in a "
      "private network namespace."};
  app.add_flag("--quick", quick, "rules 10,100, ports 1,10, few rounds and repetitions (seconds)");
  app.add_option("--rules", o.rules, "policy sizes in rules (default 10,1000,10000,100000)")
      ->delimiter(',')
      ->check(CLI::Range(2u, 10000000u));
  app.add_option("--ports", o.ports, "published-port counts (default 1,100,10000)")
      ->delimiter(',')
      ->check(CLI::Range(1u, kMaxPorts));
  app.add_option("--rounds", o.rounds, "samples per case (default 11)")
      ->check(CLI::Range(1, 10000));
  app.add_option("--repeat", o.repeat, "repetitions per BPF_PROG_TEST_RUN (default 100000)")
      ->check(CLI::Range(1, 100000000));
  app.add_option("--singles", o.singles, "one-packet runs per sample of new_admitted (default 400)")
      ->check(CLI::Range(1, 1000000));
  app.add_option("--containers", o.containers,
                 "most containers a policy spreads its rules over (default 1000)")
      ->check(CLI::Range(2u, uint32_t(MOAT_MAX_ENDPOINTS)));
  CLI11_PARSE(app, argc, argv);
  // --quick only changes what was not given explicitly.
  if (quick) {
    const auto unless_given = [&](const char* opt, auto& field, auto value) {
      if (app.count(opt) == 0) field = value;
    };
    unless_given("--rules", o.rules, std::vector<uint32_t>{10, 100});
    unless_given("--ports", o.ports, std::vector<uint32_t>{1, 10});
    unless_given("--rounds", o.rounds, 3);
    unless_given("--repeat", o.repeat, 1000);
    unless_given("--singles", o.singles, 20);
  }

  if (unshare(CLONE_NEWNET) != 0) {
    std::fprintf(stderr, "moat_kernel_bench: unshare(CLONE_NEWNET): %s (needs root)\n",
                 std::strerror(errno));
    return 1;
  }
  try {
    create_devices();
    const Json doc = bench(o);
    std::printf("%s\n", doc.dump(2).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nmoat_kernel_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
