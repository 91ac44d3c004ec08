// conntrack.cpp - reading the connection-tracking map for people (`moat ct
// list`) and ending expired flows through reap.bpf.c (`moat ct gc`, sweeps).
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <netinet/in.h>
#include <time.h>

#include <cstring>
#include <filesystem>

#include "dataplane/dataplane.h"
#include "dataplane/map_sync.h"
#include "dataplane/skeleton.h"
#include "util/abi_names.h"
#include "util/net.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace moat {
namespace {

std::string endpoint_str(uint32_t ip, uint16_t port_be, uint8_t proto) {
  if (proto == IPPROTO_ICMP) return Ipv4::from_be(ip).str();
  return Ipv4::from_be(ip).str() + ":" + std::to_string(ntohs(port_be));
}

// bpf_ktime_get_ns() runs on CLOCK_MONOTONIC.
uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace

Result<json> ct_entries(const std::string& instance) {
  auto skel = open_pinned_maps<endpoint_bpf>(pin_dir(instance));
  if (!skel) return std::unexpected(skel.error());
  auto all = dump_map<moat_ct_key, moat_ct_entry>((*skel)->maps.ct);
  if (!all) return std::unexpected(all.error());
  uint64_t now = monotonic_ns();
  json out = json::array();
  for (const auto& [kb, e] : *all) {
    moat_ct_key k{};
    memcpy(&k, kb.data(), sizeof(k));
    if (e.expires_ns < now) continue;  // expired, waiting for gc
    json row = {{"kind", ct_kind_name(e.kind)},
                {"protocol", proto_name(k.proto)},
                {"from", endpoint_str(k.saddr, k.sport, k.proto)},
                {"to", endpoint_str(k.daddr, k.dport, k.proto)},
                {"becomes_from", endpoint_str(e.xlated.saddr, e.xlated.sport, k.proto)},
                {"becomes_to", endpoint_str(e.xlated.daddr, e.xlated.dport, k.proto)},
                {"expires_in_s", (e.expires_ns - now) / 1000000000ull},
                {"packets", e.packets},
                {"bytes", e.bytes}};
    if (k.proto == IPPROTO_ICMP) row["echo_id"] = ntohs(k.sport);
    if (e.tcp_state) row["tcp_state"] = tcp_state_name(e.tcp_state);
    out.push_back(row);
  }
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

Result<int> CtReaper::sweep() {
  auto all = dump_map<moat_ct_key, moat_ct_entry>(impl_->skel->maps.ct);
  if (!all) return std::unexpected(all.error());
  uint64_t now = monotonic_ns();
  int prog = bpf_program__fd(impl_->skel->progs.ct_reap);
  int ended = 0;
  for (const auto& [kb, e] : *all) {
    if (e.expires_ns >= now) continue;
    // The program decides (partner alive, already ended with its partner).
    moat_ct_reap_args args{};
    std::memcpy(&args.key, kb.data(), sizeof(args.key));
    LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &args, .ctx_size_in = sizeof(args));
    if (int rc = bpf_prog_test_run_opts(prog, &opts); rc != 0)
      return fail_errno("run ct_reap", rc);
    ended += static_cast<int>(args.reaped);
  }
  return ended;
}

Result<int> ct_gc(const std::string& instance) {
  auto reaper = CtReaper::open(instance);
  if (!reaper) return std::unexpected(reaper.error());
  return reaper->sweep();
}

}  // namespace moat
