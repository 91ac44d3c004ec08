// conntrack.cpp - reading the connection-tracking map for people (`moat ct
// list`) and ending expired flows through reap.bpf.c (`moat ct gc`, sweeps).
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <netinet/in.h>
#include <time.h>

#include <cstring>
#include <filesystem>
#include <type_traits>

#include "dataplane/dataplane.h"
#include "dataplane/map_sync.h"
#include "dataplane/skeleton.h"
#include "util/abi_names.h"
#include "util/net.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace moat {
namespace {

bool is_icmp(uint8_t proto) { return proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6; }

std::string endpoint_str(uint32_t ip, uint16_t port_be, uint8_t proto) {
  if (is_icmp(proto)) return Ipv4::from_be(ip).str();
  return Ipv4::from_be(ip).str() + ":" + std::to_string(ntohs(port_be));
}

std::string endpoint_str(const moat_ip& ip, uint16_t port_be, uint8_t proto) {
  Ipv6 a;
  std::memcpy(a.bytes.data(), ip.b, sizeof(ip.b));
  if (is_icmp(proto)) return a.str();
  return "[" + a.str() + "]:" + std::to_string(ntohs(port_be));
}

template <class K, class E>
json entry_json(const K& k, const E& e, uint64_t now_ns) {
  json row = {{"kind", ct_kind_name(e.kind)},
              {"protocol", proto_name(k.proto)},
              {"from", endpoint_str(k.saddr, k.sport, k.proto)},
              {"to", endpoint_str(k.daddr, k.dport, k.proto)},
              {"becomes_from", endpoint_str(e.xlated.saddr, e.xlated.sport, k.proto)},
              {"becomes_to", endpoint_str(e.xlated.daddr, e.xlated.dport, k.proto)},
              {"expires_in_s", e.expires_ns > now_ns ? (e.expires_ns - now_ns) / 1000000000ull : 0},
              {"packets", e.packets},
              {"bytes", e.bytes}};
  if (std::is_same_v<K, moat_ct6_key>) row["family"] = "ipv6";
  if (is_icmp(k.proto)) row["echo_id"] = ntohs(k.sport);
  if (e.tcp_state) row["tcp_state"] = tcp_state_name(e.tcp_state);
  return row;
}

// The live entries of one map into `out`.
template <class K, class E>
Result<void> add_entries(const bpf_map* map, uint64_t now_ns, json& out) {
  auto all = dump_map<K, E>(map);
  if (!all) return std::unexpected(all.error());
  for (const auto& [kb, e] : *all) {
    if (e.expires_ns < now_ns) continue;  // expired, waiting for gc
    K k{};
    memcpy(&k, kb.data(), sizeof(k));
    out.push_back(entry_json(k, e, now_ns));
  }
  return {};
}

}  // namespace

uint64_t datapath_now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

json ct_entry_json(const moat_ct_key& k, const moat_ct_entry& e, uint64_t now_ns) {
  return entry_json(k, e, now_ns);
}

json ct_entry_json(const moat_ct6_key& k, const moat_ct6_entry& e, uint64_t now_ns) {
  return entry_json(k, e, now_ns);
}

Result<json> ct_entries(const std::string& instance) {
  auto skel = open_pinned_maps<endpoint_bpf>(pin_dir(instance));
  if (!skel) return std::unexpected(skel.error());
  uint64_t now = datapath_now_ns();
  json out = json::array();
  if (auto r = add_entries<moat_ct_key, moat_ct_entry>((*skel)->maps.ct, now, out); !r)
    return std::unexpected(r.error());
  if (auto r = add_entries<moat_ct6_key, moat_ct6_entry>((*skel)->maps.ct6, now, out); !r)
    return std::unexpected(r.error());
  return out;
}

struct CtReaper::Impl {
  Skeleton<reap_bpf> skel;
};

CtReaper::CtReaper(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CtReaper::CtReaper(CtReaper&&) noexcept = default;
CtReaper& CtReaper::operator=(CtReaper&&) noexcept = default;
CtReaper::~CtReaper() = default;

Result<CtReaper> CtReaper::open(const std::string& instance) {
  // load_pinned would create and pin maps for an instance that is not there.
  if (!fs::exists(pin_dir(instance))) return fail("no moat instance \"" + instance + "\"");
  auto skel = load_pinned<reap_bpf>(pin_dir(instance));
  if (!skel) return std::unexpected(skel.error());
  return CtReaper(std::make_unique<Impl>(Impl{std::move(*skel)}));
}

namespace {

// Runs `prog` (ct_reap or ct6_reap, whose context is Args) on every expired
// entry of `map`; returns how many flows it ended.
template <class K, class E, class Args>
Result<int> reap_expired(const bpf_map* map, const bpf_program* prog, const char* what) {
  auto all = dump_map<K, E>(map);
  if (!all) return std::unexpected(all.error());
  uint64_t now = datapath_now_ns();
  int fd = bpf_program__fd(prog);
  int ended = 0;
  for (const auto& [kb, e] : *all) {
    if (e.expires_ns >= now) continue;
    // The program decides (partner alive, already ended with its partner).
    Args args{};
    static_assert(sizeof(args.key) == sizeof(K));
    std::memcpy(&args.key, kb.data(), sizeof(args.key));
    args.now_ns = now;
    LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &args, .ctx_size_in = sizeof(args));
    if (int rc = bpf_prog_test_run_opts(fd, &opts); rc != 0)
      return fail_errno(std::string("run ") + what, rc);
    ended += static_cast<int>(args.reaped);
  }
  return ended;
}

}  // namespace

Result<CtSwept> CtReaper::sweep() {
  const auto& skel = impl_->skel;
  auto v4 = reap_expired<moat_ct_key, moat_ct_entry, moat_ct_reap_args>(
      skel->maps.ct, skel->progs.ct_reap, "ct_reap");
  if (!v4) return std::unexpected(v4.error());
  auto v6 = reap_expired<moat_ct6_key, moat_ct6_entry, moat_ct6_reap_args>(
      skel->maps.ct6, skel->progs.ct6_reap, "ct6_reap");
  if (!v6) return std::unexpected(v6.error());
  return CtSwept{.ipv4 = *v4, .ipv6 = *v6};
}

Result<CtSwept> ct_gc(const std::string& instance) {
  auto reaper = CtReaper::open(instance);
  if (!reaper) return std::unexpected(reaper.error());
  return reaper->sweep();
}

}  // namespace moat
