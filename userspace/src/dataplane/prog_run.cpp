#include "dataplane/prog_run.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <netinet/in.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string_view>

#include "dataplane/skeleton.h"
#include "util/fd.h"
#include "util/paths.h"

namespace moat {

namespace {

// The maps the programs only read: shared with the instance. Every other
// map (what the programs write) stays private to the copy.
constexpr std::array<std::string_view, 16> kConfigMaps = {
    "endpoints",    "addrs",           "addrs6",           "publish",
    "publish6",     "container_addrs", "container_addrs6", "uplinks",
    "uplink_slots", "ipcache_gens",    "ipcache6_gens",    "policy_gens",
    "policy_rev",   "host_cfg",        "local_peers",      "fast_cfg"};

bool is_config_map(std::string_view name) {
  for (auto m : kConfigMaps)
    if (m == name) return true;
  return false;
}

// The private state maps need only room for one packet's worth of state.
void shrink_private(bpf_map* m) {
  std::string_view name = bpf_map__name(m);
  if (name == "ct" || name == "ct_ring" || name == "ct_owned" || name == "frags" ||
      name == "sock_rnat" || name == "sock_rnat6" || name == "ct6" || name == "ct6_ring" ||
      name == "ct6_owned" || name == "frags6")
    bpf_map__set_max_entries(m, 64);
}

template <class S>
Result<void> share_config_maps(Skeleton<S>& s, const std::string& dir) {
  bpf_map* m;
  bpf_object__for_each_map(m, s->obj) {
    if (!is_config_map(bpf_map__name(m))) {
      shrink_private(m);
      continue;
    }
    std::string path = dir + "/" + bpf_map__name(m);
    Fd fd(bpf_obj_get(path.c_str()));
    if (!fd.ok()) return fail_errno("open pinned map " + path, errno);
    if (int rc = bpf_map__reuse_fd(m, fd.get()); rc) return fail_errno("reuse " + path, rc);
  }
  return {};
}

// The endpoint and uplink objects over the instance's configuration and
// one set of private state maps (the uplink object takes the endpoint
// object's, as the pins make them share in production).
struct DryPrograms {
  Skeleton<endpoint_bpf> ep;
  Skeleton<uplink_bpf> up;
};

Result<DryPrograms> load_dry(const std::string& instance) {
  const std::string dir = paths::pin_dir(instance);
  auto ep = Skeleton<endpoint_bpf>::open();
  if (!ep) return std::unexpected(ep.error());
  if (auto r = share_config_maps(*ep, dir); !r) return std::unexpected(r.error());
  if (auto r = ep->load(); !r)
    return fail(r.error().message() + " (a private copy of the programs of " + instance + ")");
  auto up = Skeleton<uplink_bpf>::open();
  if (!up) return std::unexpected(up.error());
  if (auto r = up->reuse_maps_of(*ep); !r) return std::unexpected(r.error());
  if (auto r = up->load(); !r) return std::unexpected(r.error());
  return DryPrograms{std::move(*ep), std::move(*up)};
}

const bpf_program* program_for(const DryPrograms& p, moat_dir dir) {
  switch (dir) {
    case MOAT_DIR_FROM_CONTAINER:
      return p.ep->progs.from_container;
    case MOAT_DIR_TO_CONTAINER:
      return p.ep->progs.to_container;
    case MOAT_DIR_FROM_WORLD:
      return p.up->progs.from_world;
    default:
      return p.up->progs.to_world;
  }
}

// The counter slot the programs count `hop` in (0: an interface that is no
// attachment), from the shared configuration.
uint32_t slot_of(const DryPrograms& p, const ProgHop& hop) {
  uint32_t key = static_cast<uint32_t>(hop.ifindex);
  if (hop.dir == MOAT_DIR_FROM_CONTAINER || hop.dir == MOAT_DIR_TO_CONTAINER) {
    moat_endpoint e{};
    if (bpf_map__lookup_elem(p.ep->maps.endpoints, &key, sizeof(key), &e, sizeof(e), 0)) return 0;
    return e.stats_slot;
  }
  uint32_t slot = 0;
  if (key < MOAT_UPLINK_SLOTS_IFINDEX)
    bpf_map__lookup_elem(p.ep->maps.uplink_slots, &key, sizeof(key), &slot, sizeof(slot), 0);
  return slot;
}

// The drop reason of a run: the slot of the private counters that moved.
unsigned drop_reason(const DryPrograms& p, const ProgHop& hop) {
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return 0;
  std::vector<moat_stats> per_cpu(static_cast<size_t>(ncpu));
  uint32_t k = moat_stats_index(slot_of(p, hop), hop.dir);
  if (bpf_map__lookup_elem(p.ep->maps.stats, &k, sizeof(k), per_cpu.data(),
                           per_cpu.size() * sizeof(moat_stats), 0))
    return 0;
  for (unsigned r = 1; r < MOAT_NR_DROP_SLOTS; ++r)
    for (const auto& s : per_cpu)
      if (s.drops[r]) return r;
  return 0;
}

Result<ProgVerdict> run_hop(const DryPrograms& p, const ProgHop& hop,
                            const std::vector<uint8_t>& frame) {
  ProgVerdict v{hop.dir, hop.ifindex, false, 0, {}};
  std::vector<uint8_t> out(frame.size() + 256);
  __sk_buff ctx{};
  ctx.ifindex = static_cast<uint32_t>(hop.ifindex);
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(), .data_out = out.data(),
              .data_size_in = static_cast<uint32_t>(frame.size()),
              .data_size_out = static_cast<uint32_t>(out.size()), .ctx_in = &ctx,
              .ctx_size_in = sizeof(ctx), .repeat = 1);
  if (bpf_prog_test_run_opts(bpf_program__fd(program_for(p, hop.dir)), &opts))
    return fail_errno("run " + std::string(bpf_program__name(program_for(p, hop.dir))) +
                          " on ifindex " + std::to_string(hop.ifindex),
                      errno);
  out.resize(opts.data_size_out);
  v.out = std::move(out);
  v.passed = opts.retval == TC_ACT_OK || opts.retval == TC_ACT_REDIRECT;
  if (!v.passed) v.reason = drop_reason(p, hop);
  return v;
}

}  // namespace

Result<std::vector<ProgVerdict>> run_programs_dry(const std::string& instance,
                                                  const std::vector<ProgHop>& hops,
                                                  std::vector<uint8_t> frame) {
  auto p = load_dry(instance);
  if (!p) return std::unexpected(p.error());
  std::vector<ProgVerdict> out;
  for (const auto& hop : hops) {
    auto v = run_hop(*p, hop, frame);
    if (!v) return std::unexpected(v.error());
    frame = v->out;
    out.push_back(std::move(*v));
    if (!out.back().passed) break;
  }
  return out;
}

namespace {

// The L4 header of a flow's first packet, its checksum zero: a SYN, a UDP
// (or SCTP, framed as UDP) header with four bytes of data, or an echo
// request of type `echo` (ICMP 8, ICMPv6 128), id 0x6d74, seq 1.
std::vector<uint8_t> first_segment(uint8_t proto, uint16_t port, uint8_t echo) {
  std::vector<uint8_t> l4;
  auto put16 = [&l4](uint16_t v) {
    l4.push_back(static_cast<uint8_t>(v >> 8));
    l4.push_back(static_cast<uint8_t>(v));
  };
  if (proto == IPPROTO_TCP) {
    put16(40000), put16(port);
    l4.insert(l4.end(), {0, 0, 0, 1, 0, 0, 0, 0, 5 << 4, 0x02 /* SYN */, 0xfa, 0xf0, 0, 0, 0, 0});
  } else if (proto == IPPROTO_UDP || proto == IPPROTO_SCTP) {
    put16(40000), put16(port), put16(8 + 4), put16(0);
    l4.insert(l4.end(), {'m', 'o', 'a', 't'});
  } else {
    l4 = {echo, 0, 0, 0, 0x6d, 0x74, 0, 1};
  }
  return l4;
}

// The Internet checksum's running sum: big-endian 16-bit words, an odd
// last byte padded with zero.
uint32_t add_words(uint32_t sum, const uint8_t* p, size_t n) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += uint32_t(p[i]) << 8 | p[i + 1];
  if (n % 2) sum += uint32_t(p[n - 1]) << 8;
  return sum;
}

uint16_t complement(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// Writes the checksum of `l4` over `pseudo` (the running sum of the
// pseudo-header, 0 for ICMP over IPv4). SCTP, framed as UDP, gets none: its
// CRC32c has no pseudo-header and the programs read only its ports.
void set_l4_checksum(std::vector<uint8_t>& l4, uint8_t proto, uint32_t pseudo) {
  if (proto == IPPROTO_SCTP) return;
  size_t at = proto == IPPROTO_TCP ? 16 : proto == IPPROTO_UDP ? 6 : 2;
  uint16_t c = complement(add_words(pseudo, l4.data(), l4.size()));
  if (proto == IPPROTO_UDP && c == 0) c = 0xffff;  // 0 means "no checksum"
  l4[at] = static_cast<uint8_t>(c >> 8);
  l4[at + 1] = static_cast<uint8_t>(c);
}

std::vector<uint8_t> ethernet_frame(const std::vector<uint8_t>& dst_mac,
                                    const std::vector<uint8_t>& src_mac, uint16_t ethertype,
                                    const std::vector<uint8_t>& ip,
                                    const std::vector<uint8_t>& l4) {
  std::vector<uint8_t> f(dst_mac.begin(), dst_mac.end());
  f.insert(f.end(), src_mac.begin(), src_mac.end());
  f.insert(f.end(), {static_cast<uint8_t>(ethertype >> 8), static_cast<uint8_t>(ethertype)});
  f.insert(f.end(), ip.begin(), ip.end());
  f.insert(f.end(), l4.begin(), l4.end());
  return f;
}

}  // namespace

std::vector<uint8_t> first_packet(const std::vector<uint8_t>& dst_mac,
                                  const std::vector<uint8_t>& src_mac, uint32_t src_be,
                                  uint32_t dst_be, uint8_t proto, uint16_t port) {
  std::vector<uint8_t> l4 = first_segment(proto, port, 8 /* echo request */);
  std::vector<uint8_t> ip(20, 0);
  const size_t total = ip.size() + l4.size();
  ip[0] = 0x45;
  ip[2] = static_cast<uint8_t>(total >> 8);
  ip[3] = static_cast<uint8_t>(total);
  ip[5] = 1;
  ip[6] = 0x40;  // don't fragment
  ip[8] = 64;
  ip[9] = proto;
  std::memcpy(&ip[12], &src_be, 4);
  std::memcpy(&ip[16], &dst_be, 4);
  uint16_t c = complement(add_words(0, ip.data(), ip.size()));
  ip[10] = static_cast<uint8_t>(c >> 8);
  ip[11] = static_cast<uint8_t>(c);
  // TCP and UDP sum the pseudo-header too (RFC 793), ICMP its message alone.
  uint32_t pseudo = proto == IPPROTO_TCP || proto == IPPROTO_UDP
                        ? add_words(0, &ip[12], 8) + proto + static_cast<uint32_t>(l4.size())
                        : 0;
  set_l4_checksum(l4, proto, pseudo);
  return ethernet_frame(dst_mac, src_mac, 0x0800, ip, l4);
}

std::vector<uint8_t> first_packet(const std::vector<uint8_t>& dst_mac,
                                  const std::vector<uint8_t>& src_mac, const Ipv6& src,
                                  const Ipv6& dst, uint8_t proto, uint16_t port) {
  const bool ports = proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP;
  const uint8_t next = ports ? proto : static_cast<uint8_t>(IPPROTO_ICMPV6);
  std::vector<uint8_t> l4 = first_segment(next, port, 128 /* echo request */);
  std::vector<uint8_t> ip(40, 0);
  ip[0] = 0x60;  // version 6, traffic class and flow label 0
  ip[4] = static_cast<uint8_t>(l4.size() >> 8);
  ip[5] = static_cast<uint8_t>(l4.size());
  ip[6] = next;
  ip[7] = 64;
  std::copy(src.bytes.begin(), src.bytes.end(), ip.begin() + 8);
  std::copy(dst.bytes.begin(), dst.bytes.end(), ip.begin() + 24);
  // RFC 8200 8.1: both addresses, the upper-layer length, the next header.
  uint32_t pseudo = add_words(0, &ip[8], 32) + next + static_cast<uint32_t>(l4.size());
  set_l4_checksum(l4, next, pseudo);
  return ethernet_frame(dst_mac, src_mac, 0x86dd, ip, l4);
}

Result<std::vector<uint8_t>> endpoint_mac(const std::string& instance, int ifindex) {
  auto skel = open_pinned_maps<endpoint_bpf>(paths::pin_dir(instance));
  if (!skel) return std::unexpected(skel.error());
  uint32_t key = static_cast<uint32_t>(ifindex);
  moat_endpoint ep{};
  if (bpf_map__lookup_elem((*skel)->maps.endpoints, &key, sizeof(key), &ep, sizeof(ep), 0))
    return fail_errno("no endpoint entry for ifindex " + std::to_string(ifindex), errno);
  return std::vector<uint8_t>(ep.mac, ep.mac + 6);
}

}  // namespace moat
