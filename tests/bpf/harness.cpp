#include "harness.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <net/if.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "dataplane/dataplane.h"
#include "observe/snapshot.h"
#include "util/fd.h"

extern char** environ;

namespace moat_test {
namespace {

[[noreturn]] void fail(const std::string& what, int err) {
  throw std::runtime_error(what + ": " + std::strerror(err));
}

}  // namespace

// fork+exec of ip(8): the child inherits our (private) network namespace.
void ip(std::vector<std::string> args) {
  args.insert(args.begin(), "ip");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  pid_t pid;
  if (int err = posix_spawnp(&pid, "ip", nullptr, nullptr, argv.data(), environ))
    fail("spawning ip", err);
  int status;
  if (waitpid(pid, &status, 0) < 0) fail("waiting for ip", errno);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string cmd;
    for (auto& a : args) cmd += a + " ";
    throw std::runtime_error("command failed: " + cmd);
  }
}

void create_devices() {
  // veth, because that is what moat attaches to (and this kernel has no
  // dummy driver). Only the host side is ever named in a test run.
  for (const char* dev : kDevices) {
    std::vector<std::string> args = {"link", "add", dev};
    // Beyond `uplink_slots`: the programs find its counters through `uplinks`.
    if (std::string(dev) == kLargeIfindexDevice)
      args.insert(args.end(), {"index", std::to_string(kLargeIfindex)});
    args.insert(args.end(), {"type", "veth", "peer", "name", std::string(dev) + "-c"});
    ip(args);
  }
}

uint32_t ifindex_of(const char* device) {
  const uint32_t ifindex = if_nametoindex(device);
  if (!ifindex) fail(std::string("if_nametoindex ") + device, errno);
  return ifindex;
}

namespace {

// The value of a moat::Result, or its error thrown.
template <class T>
T ok(moat::Result<T> r, const std::string& what) {
  if (!r) throw std::runtime_error(what + ": " + r.error().message());
  if constexpr (!std::is_void_v<T>) return std::move(*r);
}

MapEntries g_sizes;  // LimitedSizes

template <class S>
Skeleton<S> load_sharing(const Skeleton<endpoint_bpf>* shared, const char* object) {
  const std::string what = std::string("loading ") + object;
  Skeleton<S> skel = ok(Skeleton<S>::open(), what);
  if (shared) ok(skel.reuse_maps_of(*shared), what);
  for (const auto& [name, n] : shared ? MapEntries{} : g_sizes) {
    bpf_map* m = bpf_object__find_map_by_name(skel->obj, name.c_str());
    if (!m || bpf_map__set_max_entries(m, n) != 0)
      throw std::runtime_error(what + ": size " + name);
  }
  ok(skel.load(), what);
  return skel;
}

}  // namespace

LimitedSizes::LimitedSizes(MapEntries sizes) { g_sizes = std::move(sizes); }
LimitedSizes::~LimitedSizes() { g_sizes.clear(); }

Skeleton<endpoint_bpf> load_skeleton() { return load_sharing<endpoint_bpf>(nullptr, "endpoint.bpf.o"); }

Skeleton<uplink_bpf> load_uplink_skeleton(const Skeleton<endpoint_bpf>& shared) {
  return load_sharing<uplink_bpf>(&shared, "uplink.bpf.o");
}

Skeleton<reap_bpf> load_reap_skeleton(const Skeleton<endpoint_bpf>& shared) {
  return load_sharing<reap_bpf>(&shared, "reap.bpf.o");
}

Skeleton<bridge_bpf> load_bridge_skeleton(const Skeleton<endpoint_bpf>& shared) {
  return load_sharing<bridge_bpf>(&shared, "bridge.bpf.o");
}

Skeleton<sock_bpf> load_sock_skeleton(const Skeleton<endpoint_bpf>& shared) {
  return load_sharing<sock_bpf>(&shared, "sock.bpf.o");
}

moat_dir dir_of(Hook h) {
  switch (h) {
    case Hook::FromContainer:
      return MOAT_DIR_FROM_CONTAINER;
    case Hook::ToContainer:
      return MOAT_DIR_TO_CONTAINER;
    case Hook::FromWorld:
      return MOAT_DIR_FROM_WORLD;
    case Hook::ToWorld:
      return MOAT_DIR_TO_WORLD;
  }
  return MOAT_DIR_MAX;
}

const char* hook_name(Hook h) { return moat::obs::dir_name(dir_of(h)); }

const bpf_program* Programs::prog(Hook h) const {
  switch (h) {
    case Hook::FromContainer:
      return ep->progs.from_container;
    case Hook::ToContainer:
      return ep->progs.to_container;
    case Hook::FromWorld:
      return up->progs.from_world;
    case Hook::ToWorld:
      return up->progs.to_world;
  }
  return nullptr;
}

uint32_t reap(const Skeleton<reap_bpf>& skel, const moat_ct_key& key) {
  moat_ct_reap_args args = {.key = key, .reaped = 7, .pad = 0, .now_ns = monotonic_ns()};
  // A syscall program's context is written back into ctx_in (ctx_out is refused).
  LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &args, .ctx_size_in = sizeof args);
  if (int rc = bpf_prog_test_run_opts(bpf_program__fd(skel->progs.ct_reap), &opts))
    fail("running ct_reap", -rc);
  return args.reaped;
}

uint32_t reap(const Skeleton<reap_bpf>& skel, const moat_ct6_key& key) {
  moat_ct6_reap_args args = {.key = key, .reaped = 7, .pad = 0, .now_ns = monotonic_ns()};
  LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &args, .ctx_size_in = sizeof args);
  if (int rc = bpf_prog_test_run_opts(bpf_program__fd(skel->progs.ct6_reap), &opts))
    fail("running ct6_reap", -rc);
  return args.reaped;
}

void add_network(const Skeleton<endpoint_bpf>& skel, const Network& net) {
  const auto put = [&](uint32_t prefixlen, in_addr_t addr, moat_addr_kind kind) {
    const moat_lpm_v4_key key = {.prefixlen = prefixlen, .addr = addr};
    const moat_addr_info info = {
        .net_id = net.id, .kind = uint32_t(kind), .net_flags = net.flags};
    if (bpf_map__update_elem(skel->maps.addrs, &key, sizeof key, &info, sizeof info, BPF_ANY))
      fail("addrs update", errno);
  };
  put(net.prefixlen, net.subnet, MOAT_ADDR_SUBNET);
  put(32, net.gateway, MOAT_ADDR_GATEWAY);
}

void add_network6(const Skeleton<endpoint_bpf>& skel, const Network& net, const char* subnet,
                  uint32_t prefixlen, const char* gateway) {
  const auto put = [&](uint32_t len, const char* text, moat_addr_kind kind) {
    moat_lpm_v6_key key = {.prefixlen = len, .addr = {}};
    const in6_addr a = pkt::ip6(text);
    std::memcpy(key.addr.b, &a, sizeof a);
    const moat_addr_info info = {.net_id = net.id, .kind = uint32_t(kind), .net_flags = net.flags};
    if (bpf_map__update_elem(skel->maps.addrs6, &key, sizeof key, &info, sizeof info, BPF_ANY))
      fail("addrs6 update", errno);
  };
  put(prefixlen, subnet, MOAT_ADDR_SUBNET);
  put(128, gateway, MOAT_ADDR_GATEWAY);
}

void set_endpoint_ipv6(const Skeleton<endpoint_bpf>& skel, uint32_t ifindex, const char* ip6) {
  moat_endpoint ep;
  if (bpf_map__lookup_elem(skel->maps.endpoints, &ifindex, sizeof ifindex, &ep, sizeof ep, 0))
    fail("endpoints lookup", errno);
  const in6_addr a = pkt::ip6(ip6);
  std::memcpy(ep.ipv6.b, &a, sizeof a);
  if (bpf_map__update_elem(skel->maps.endpoints, &ifindex, sizeof ifindex, &ep, sizeof ep, BPF_ANY))
    fail("endpoints update", errno);
}

namespace {

// Slots by ifindex, given in order of first use, as moat gives them.
std::map<uint32_t, uint32_t>& slots_by_ifindex() {
  static std::map<uint32_t, uint32_t> m;
  return m;
}

}  // namespace

uint32_t stats_slot_of(uint32_t ifindex) {
  auto& m = slots_by_ifindex();
  if (auto it = m.find(ifindex); it != m.end()) return it->second;
  char name[IF_NAMESIZE];
  if (!if_indextoname(ifindex, name)) return 0;  // a made-up ifindex (table-size filler)
  if (m.size() + 1 >= MOAT_MAX_ATTACHMENTS) fail("out of counter slots", ENOSPC);
  const uint32_t slot = static_cast<uint32_t>(m.size()) + 1;
  m[ifindex] = slot;
  return slot;
}

namespace {
// Interfaces given to add_uplink(): their slots count FROM_WORLD/TO_WORLD.
std::set<uint32_t>& uplink_ifindexes() {
  static std::set<uint32_t> s;
  return s;
}
}  // namespace

void add_endpoint(const Skeleton<endpoint_bpf>& skel, uint32_t ifindex, const Network& net, in_addr_t ip) {
  moat_endpoint ep = {.net_id = net.id,
                      .ipv4 = ip,
                      .net_flags = net.flags,
                      .container_id = ifindex,
                      .stats_slot = stats_slot_of(ifindex),
                      .mac = {},
                      .pad = {},
                      .ipv6 = {}};
  std::copy(pkt::kContainerMac.begin(), pkt::kContainerMac.end(), ep.mac);
  if (bpf_map__update_elem(skel->maps.endpoints, &ifindex, sizeof ifindex, &ep, sizeof ep, BPF_ANY))
    fail("endpoints update", errno);
}

void add_host_addr(const Skeleton<endpoint_bpf>& skel, in_addr_t addr) {
  const moat_lpm_v4_key key = {.prefixlen = 32, .addr = addr};
  const moat_addr_info info = {.net_id = 0, .kind = MOAT_ADDR_HOST, .net_flags = 0};
  if (bpf_map__update_elem(skel->maps.addrs, &key, sizeof key, &info, sizeof info, BPF_ANY))
    fail("addrs update", errno);
}

void add_host_addr6(const Skeleton<endpoint_bpf>& skel, const char* addr) {
  moat_lpm_v6_key key = {.prefixlen = 128, .addr = {}};
  const in6_addr a = pkt::ip6(addr);
  std::memcpy(key.addr.b, &a, 16);
  const moat_addr_info info = {.net_id = 0, .kind = MOAT_ADDR_HOST, .net_flags = 0};
  if (bpf_map__update_elem(skel->maps.addrs6, &key, sizeof key, &info, sizeof info, BPF_ANY))
    fail("addrs6 update", errno);
}

void add_publish6(const Skeleton<endpoint_bpf>& skel, const char* host_ip, uint16_t port,
                  uint8_t proto, const char* backend, uint16_t backend_port, uint32_t container_id,
                  uint32_t net_id) {
  moat_publish6_key k = {.host_ip = {}, .port = htons(port), .proto = proto, .pad = 0};
  moat_publish6_val v = {.backend_ip = {},
                         .backend_port = htons(backend_port),
                         .pad = 0,
                         .container_id = container_id,
                         .net_id = net_id};
  const in6_addr h = pkt::ip6(host_ip), b = pkt::ip6(backend);
  std::memcpy(k.host_ip.b, &h, 16);
  std::memcpy(v.backend_ip.b, &b, 16);
  if (bpf_map__update_elem(skel->maps.publish6, &k, sizeof k, &v, sizeof v, BPF_ANY))
    fail("publish6 update", errno);
}

void add_uplink(const Skeleton<endpoint_bpf>& skel, uint32_t ifindex, in_addr_t ipv4,
                const char* ipv6) {
  moat_uplink up = {.ipv4 = ipv4, .stats_slot = stats_slot_of(ifindex), .ipv6 = {}};
  if (ipv6) {
    const in6_addr a = pkt::ip6(ipv6);
    std::memcpy(up.ipv6.b, &a, 16);
  }
  if (bpf_map__update_elem(skel->maps.uplinks, &ifindex, sizeof ifindex, &up, sizeof up, BPF_ANY))
    fail("uplinks update", errno);
  if (ifindex < MOAT_UPLINK_SLOTS_IFINDEX &&
      bpf_map__update_elem(skel->maps.uplink_slots, &ifindex, sizeof ifindex, &up.stats_slot,
                           sizeof up.stats_slot, BPF_ANY))
    fail("uplink_slots update", errno);
  uplink_ifindexes().insert(ifindex);
}

void add_publish(const Skeleton<endpoint_bpf>& skel, const Publish& p) {
  const moat_publish_key key = {
      .host_ip = p.host_ip, .port = htons(p.port), .proto = p.proto, .pad = 0};
  const moat_publish_val val = {.backend_ip = p.backend_ip,
                                .backend_port = htons(p.backend_port),
                                .pad = 0,
                                .container_id = p.container_id,
                                .net_id = p.net_id};
  if (bpf_map__update_elem(skel->maps.publish, &key, sizeof key, &val, sizeof val, BPF_ANY))
    fail("publish update", errno);
}

moat_ct_key ct_key(in_addr_t saddr, uint16_t sport, in_addr_t daddr, uint16_t dport,
                   uint8_t proto) {
  moat_ct_key k = {};
  k.saddr = saddr;
  k.daddr = daddr;
  k.sport = htons(sport);
  k.dport = htons(dport);
  k.proto = proto;
  return k;
}

moat_ct_key ct_key(const char* saddr, uint16_t sport, const char* daddr, uint16_t dport,
                   uint8_t proto) {
  return ct_key(pkt::ip4(saddr), sport, pkt::ip4(daddr), dport, proto);
}

moat_ct_key reversed(const moat_ct_key& k) {
  moat_ct_key r = {};
  r.saddr = k.daddr;
  r.daddr = k.saddr;
  r.sport = k.dport;
  r.dport = k.sport;
  r.proto = k.proto;
  return r;
}

namespace {
template <class K, class V>
std::optional<V> map_get(const bpf_map* m, const K& key, const char* what) {
  V v;
  if (bpf_map__lookup_elem(m, &key, sizeof key, &v, sizeof v, 0)) {
    if (errno == ENOENT) return std::nullopt;
    fail(what, errno);
  }
  return v;
}

template <class K, class V>
std::vector<std::pair<K, V>> map_entries(const bpf_map* m, const char* what) {
  std::vector<std::pair<K, V>> all;
  K key, next;
  const K* prev = nullptr;
  while (bpf_map__get_next_key(m, prev, &next, sizeof next) == 0) {
    if (auto v = map_get<K, V>(m, next, what)) all.emplace_back(next, *v);
    key = next;
    prev = &key;
  }
  if (errno != ENOENT) fail(what, errno);
  return all;
}

template <class K, class V>
void map_clear(const bpf_map* m, const char* what) {
  for (const auto& [key, v] : map_entries<K, V>(m, what))
    if (bpf_map__delete_elem(m, &key, sizeof key, 0) && errno != ENOENT) fail(what, errno);
}
}  // namespace

std::optional<moat_ct_entry> ct_get(const Skeleton<endpoint_bpf>& skel, const moat_ct_key& key) {
  return map_get<moat_ct_key, moat_ct_entry>(skel->maps.ct, key, "ct lookup");
}

std::vector<std::pair<moat_ct_key, moat_ct_entry>> ct_entries(const Skeleton<endpoint_bpf>& skel) {
  return map_entries<moat_ct_key, moat_ct_entry>(skel->maps.ct, "ct iteration");
}

std::optional<moat_ct6_entry> ct6_get(const Skeleton<endpoint_bpf>& skel, const moat_ct6_key& key) {
  return map_get<moat_ct6_key, moat_ct6_entry>(skel->maps.ct6, key, "ct6 lookup");
}

std::vector<std::pair<moat_ct6_key, moat_ct6_entry>> ct6_entries(
    const Skeleton<endpoint_bpf>& skel) {
  return map_entries<moat_ct6_key, moat_ct6_entry>(skel->maps.ct6, "ct6 iteration");
}

moat_ct6_key ct6_key(const char* saddr, uint16_t sport, const char* daddr, uint16_t dport,
                     uint8_t proto) {
  moat_ct6_key k{};
  if (inet_pton(AF_INET6, saddr, k.saddr.b) != 1 || inet_pton(AF_INET6, daddr, k.daddr.b) != 1)
    throw std::runtime_error(std::string("ct6_key: bad address ") + saddr + " or " + daddr);
  k.sport = htons(sport);
  k.dport = htons(dport);
  k.proto = proto;
  return k;
}

void ct_put(const Skeleton<endpoint_bpf>& skel, const moat_ct_key& key, const moat_ct_entry& e) {
  if (bpf_map__update_elem(skel->maps.ct, &key, sizeof key, &e, sizeof e, BPF_ANY))
    fail("ct update", errno);
}

void ct6_put(const Skeleton<endpoint_bpf>& skel, const moat_ct6_key& key, const moat_ct6_entry& e) {
  if (bpf_map__update_elem(skel->maps.ct6, &key, sizeof key, &e, sizeof e, BPF_ANY))
    fail("ct6 update", errno);
}

void ct_clear(const Skeleton<endpoint_bpf>& skel) {
  map_clear<moat_ct_key, moat_ct_entry>(skel->maps.ct, "ct delete");
  map_clear<moat_ct6_key, moat_ct6_entry>(skel->maps.ct6, "ct6 delete");
  ct_quota_clear(skel);
}

void ct_quota_clear(const Skeleton<endpoint_bpf>& skel) {
  const uint32_t zero = 0;
  const moat_ct_ring_pos start{};
  if (bpf_map__update_elem(skel->maps.ct_ring_pos, &zero, sizeof zero, &start, sizeof start, 0) ||
      bpf_map__update_elem(skel->maps.ct6_ring_pos, &zero, sizeof zero, &start, sizeof start, 0))
    fail("ct_ring_pos reset", errno);
  for (uint32_t owner : ct_owners(skel))
    if (bpf_map__delete_elem(skel->maps.ct_owned, &owner, sizeof owner, 0) && errno != ENOENT)
      fail("ct_owned delete", errno);
  for (const moat_ip& owner : ct6_owners(skel))
    if (bpf_map__delete_elem(skel->maps.ct6_owned, &owner, sizeof owner, 0) && errno != ENOENT)
      fail("ct6_owned delete", errno);
}

std::vector<in_addr_t> ct_owners(const Skeleton<endpoint_bpf>& skel) {
  std::vector<in_addr_t> out;
  in_addr_t next = 0;
  const in_addr_t* prev = nullptr;
  while (bpf_map__get_next_key(skel->maps.ct_owned, prev, &next, sizeof next) == 0) {
    out.push_back(next);
    prev = &out.back();
  }
  return out;
}

uint32_t ct_owned(const Skeleton<endpoint_bpf>& skel, in_addr_t owner) {
  uint32_t n = 0;
  bpf_map__lookup_elem(skel->maps.ct_owned, &owner, sizeof owner, &n, sizeof n, 0);
  return n;
}

std::vector<moat_ip> ct6_owners(const Skeleton<endpoint_bpf>& skel) {
  std::vector<moat_ip> out;
  moat_ip next{};
  const moat_ip* prev = nullptr;
  while (bpf_map__get_next_key(skel->maps.ct6_owned, prev, &next, sizeof next) == 0) {
    out.push_back(next);
    prev = &out.back();
  }
  return out;
}

uint32_t ct6_owned(const Skeleton<endpoint_bpf>& skel, const char* owner) {
  moat_ip key{};
  if (inet_pton(AF_INET6, owner, key.b) != 1)
    throw std::runtime_error(std::string("ct6_owned: bad address ") + owner);
  uint32_t n = 0;
  bpf_map__lookup_elem(skel->maps.ct6_owned, &key, sizeof key, &n, sizeof n, 0);
  return n;
}

namespace {
template <class K, class E>
void loop_published(const bpf_map* ct, const K& orig) {
  std::optional<E> e = map_get<K, E>(ct, orig, "ct lookup");
  if (!e || e->kind != MOAT_CT_DNAT)
    throw std::runtime_error("looping a published flow: no DNAT entry for it");
  const K xlated = e->xlated;
  e->xlated = orig;
  if (bpf_map__update_elem(ct, &xlated, sizeof xlated, &*e, sizeof *e, BPF_ANY))
    fail("ct update", errno);
}
}  // namespace

void loop_published_flow(const Skeleton<endpoint_bpf>& skel, const moat_ct_key& orig) {
  loop_published<moat_ct_key, moat_ct_entry>(skel->maps.ct, orig);
}

void loop_published_flow6(const Skeleton<endpoint_bpf>& skel, const moat_ct6_key& orig) {
  loop_published<moat_ct6_key, moat_ct6_entry>(skel->maps.ct6, orig);
}

void install_policy(const Skeleton<endpoint_bpf>& skel, uint32_t rev, const IpcacheEntries& ipcache,
                    const PolicyEntries& entries, const Ipcache6Entries& ipcache6) {
  ok(moat::write_policy_generation(*skel.get(), rev, ipcache, entries, ipcache6),
     "installing policy revision " + std::to_string(rev));
}

void set_policy_rev(const Skeleton<endpoint_bpf>& skel, uint32_t rev) {
  ok(moat::set_policy_rev(*skel.get(), rev), "setting policy_rev");
}

uint32_t policy_rev(const Skeleton<endpoint_bpf>& skel) {
  return ok(moat::read_policy_rev(*skel.get()), "reading policy_rev");
}

uint64_t monotonic_ns() { return moat::datapath_now_ns(); }

namespace {
RunResult run_with(const bpf_program* prog, uint32_t ifindex, const pkt::Bytes& frame, int repeat,
                   uint32_t mark, uint32_t ingress_ifindex, uint32_t flags, uint32_t gso_size,
                   uint32_t gso_segs, uint32_t priority = 0);
}  // namespace

RunResult run(const bpf_program* prog, uint32_t ifindex, const pkt::Bytes& frame, int repeat,
              uint32_t mark, uint32_t ingress_ifindex) {
  return run_with(prog, ifindex, frame, repeat, mark, ingress_ifindex, 0, 0, 0);
}

RunResult run_gso(const bpf_program* prog, uint32_t ifindex, const pkt::Bytes& frame, uint32_t mark,
                  uint32_t gso_size, uint32_t gso_segs) {
  return run_with(prog, ifindex, frame, 1, mark, 0, 0, gso_size, gso_segs);
}

RunResult run_complete(const bpf_program* prog, uint32_t ifindex, const pkt::Bytes& frame) {
  return run_with(prog, ifindex, frame, 1, 0, 0, BPF_F_TEST_SKB_CHECKSUM_COMPLETE, 0, 0);
}

RunResult run_prio(const bpf_program* prog, uint32_t ifindex, const pkt::Bytes& frame,
                   uint32_t mark, uint32_t priority) {
  return run_with(prog, ifindex, frame, 1, mark, 0, 0, 0, 0, priority);
}

namespace {
RunResult run_with(const bpf_program* prog, uint32_t ifindex, const pkt::Bytes& frame, int repeat,
                   uint32_t mark, uint32_t ingress_ifindex, uint32_t flags, uint32_t gso_size,
                   uint32_t gso_segs, uint32_t priority) {
  // Only ifindex, ingress_ifindex, mark, priority and the GSO fields are set: the
  // kernel places ifindex in skb->ifindex (it must name a device in our
  // netns), takes ingress_ifindex as is, and requires the fields it does
  // not support to be zero.
  __sk_buff ctx = {};
  ctx.ifindex = ifindex;
  ctx.ingress_ifindex = ingress_ifindex;
  ctx.mark = mark;
  ctx.priority = priority;
  ctx.gso_size = gso_size;
  ctx.gso_segs = gso_segs;
  __sk_buff ctx_out = {};

  // Room to spare, so a program that grew the packet would show as a
  // length mismatch rather than ENOSPC.
  RunResult r = {.err = 0, .retval = 0, .out = pkt::Bytes(frame.size() + 256), .duration_ns = 0};
  bpf_test_run_opts opts = {};
  opts.sz = sizeof opts;
  opts.data_in = frame.data();
  opts.data_size_in = uint32_t(frame.size());
  opts.data_out = r.out.data();
  opts.data_size_out = uint32_t(r.out.size());
  opts.ctx_in = &ctx;
  opts.ctx_size_in = sizeof ctx;
  opts.ctx_out = &ctx_out;
  opts.ctx_size_out = sizeof ctx_out;
  opts.repeat = repeat;
  opts.flags = flags;
  if (bpf_prog_test_run_opts(bpf_program__fd(prog), &opts)) {
    r.err = errno;
    r.out.clear();
    return r;
  }
  r.retval = opts.retval;
  r.out.resize(opts.data_size_out);
  r.duration_ns = opts.duration;
  r.mark = ctx_out.mark;
  r.priority = ctx_out.priority;
  return r;
}
}  // namespace

std::string reason_name(unsigned slot) {
  switch (slot) {
#define MOAT_X_NAME(name, num, metric, text) \
  case num:                                  \
    return metric;
    MOAT_DROP_REASONS(MOAT_X_NAME)
#undef MOAT_X_NAME
  }
  return "slot-" + std::to_string(slot);
}

std::ostream& operator<<(std::ostream& os, const Counters& c) {
  os << "{packets " << c.packets << ", bytes " << c.bytes;
  for (unsigned slot = 0; slot < c.drops.size(); slot++)
    if (c.drops[slot]) os << ", " << reason_name(slot) << " " << c.drops[slot];
  return os << "}";
}

namespace {

uint32_t stats_index(StatsKey key) { return moat_stats_index(stats_slot_of(key.first), key.second); }

// The key a `stats` index stands for.
StatsKey stats_key_of(uint32_t index) {
  const uint32_t slot = index / 2, low = index & 1;
  if (slot == 0) return unattributed(low);
  for (const auto& [ifindex, s] : slots_by_ifindex())
    if (s == slot) return {ifindex, low + (uplink_ifindexes().contains(ifindex) ? MOAT_DIR_FROM_WORLD : 0)};
  fail("counts in slot " + std::to_string(slot) + ", which no interface was given", EINVAL);
}

Counters counters_of(const moat_stats& s) {
  Counters c;
  c.packets = s.packets;
  c.bytes = s.bytes;
  for (unsigned slot = 0; slot < c.drops.size(); slot++) c.drops[slot] = s.drops[slot];
  return c;
}

// The per-CPU values of one `stats` entry.
std::vector<moat_stats> per_cpu_stats(const bpf_map* stats, uint32_t index) {
  // A per-CPU map returns one value per possible CPU (each 8-byte aligned,
  // which moat_stats already is).
  static_assert(sizeof(moat_stats) % 8 == 0);
  std::vector<moat_stats> per_cpu(libbpf_num_possible_cpus());
  if (bpf_map__lookup_elem(stats, &index, sizeof index, per_cpu.data(),
                           per_cpu.size() * sizeof(moat_stats), 0))
    fail("stats lookup", errno);
  return per_cpu;
}

}  // namespace

StatsKey unattributed(uint32_t dir) { return {0, dir & 1}; }

Counters sum_stats(const bpf_map* stats, StatsKey key) {
  return counters_of(sum_obs_stats(stats, key));
}

StatsSnapshot read_stats(const bpf_map* stats) {
  // One batch read of the whole array: a count landing in any slot shows.
  const size_t ncpu = libbpf_num_possible_cpus();
  std::vector<uint32_t> keys(MOAT_STATS_ENTRIES);
  std::vector<moat_stats> values(MOAT_STATS_ENTRIES * ncpu);
  uint32_t out_batch = 0, count = MOAT_STATS_ENTRIES;
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  if (bpf_map_lookup_batch(bpf_map__fd(stats), nullptr, &out_batch, keys.data(), values.data(),
                           &count, &opts) &&
      errno != ENOENT)
    fail("stats batch lookup", errno);
  StatsSnapshot snap;
  for (uint32_t i = 0; i < count; i++) {
    Counters sum;
    for (size_t cpu = 0; cpu < ncpu; cpu++) {
      const Counters c = counters_of(values[i * ncpu + cpu]);
      sum.packets += c.packets;
      sum.bytes += c.bytes;
      for (unsigned r = 0; r < sum.drops.size(); r++) sum.drops[r] += c.drops[r];
    }
    if (!sum.is_zero()) snap[stats_key_of(keys[i])] = sum;
  }
  return snap;
}

StatsSnapshot stats_delta(const StatsSnapshot& before, const StatsSnapshot& after) {
  StatsSnapshot delta;
  for (const auto& [key, now] : after) {
    const auto it = before.find(key);
    const Counters was = it == before.end() ? Counters{} : it->second;
    Counters d;
    d.packets = now.packets - was.packets;
    d.bytes = now.bytes - was.bytes;
    for (unsigned slot = 0; slot < d.drops.size(); slot++)
      d.drops[slot] = now.drops[slot] - was.drops[slot];
    if (!d.is_zero()) delta[key] = d;
  }
  return delta;
}

CountedRun run_counted(const bpf_map* stats, const bpf_program* prog, uint32_t ifindex,
                       const pkt::Bytes& frame, uint32_t ingress_ifindex) {
  const StatsSnapshot before = read_stats(stats);
  CountedRun c{.run = run(prog, ifindex, frame, 1, 0, ingress_ifindex), .moved = {}};
  c.moved = stats_delta(before, read_stats(stats));
  return c;
}

StatsSnapshot counted(Expect e, uint32_t ifindex, uint32_t dir, size_t frame_bytes) {
  Counters want;
  if (e.reason == 0) {
    want.packets = 1;
    want.bytes = frame_bytes;
  } else {
    want.drops[e.reason] = 1;
  }
  const StatsKey where = e.reason == unsigned(-MOAT_DROP_UNKNOWN_ENDPOINT) ? unattributed(dir)
                                                                             : StatsKey{ifindex, dir};
  return {{where, want}};
}

moat_stats sum_obs_stats(const bpf_map* stats, StatsKey key) {
  moat_stats sum = {};
  for (const moat_stats& s : per_cpu_stats(stats, stats_index(key))) {
    sum.packets += s.packets;
    sum.bytes += s.bytes;
    sum.new_flows += s.new_flows;
    sum.drop_bytes += s.drop_bytes;
    for (unsigned slot = 0; slot < MOAT_NR_DROP_SLOTS; slot++) sum.drops[slot] += s.drops[slot];
  }
  return sum;
}

uint64_t percpu_u64(const bpf_map* map, uint32_t key) {
  std::vector<uint64_t> per_cpu(libbpf_num_possible_cpus());
  if (bpf_map__lookup_elem(map, &key, sizeof key, per_cpu.data(),
                           per_cpu.size() * sizeof(uint64_t), 0))
    fail(std::string("lookup in ") + bpf_map__name(map), errno);
  uint64_t sum = 0;
  for (uint64_t v : per_cpu) sum += v;
  return sum;
}

std::map<uint32_t, uint64_t> percpu_u64_nonzero(const bpf_map* map) {
  const size_t ncpu = libbpf_num_possible_cpus();
  const uint32_t n = bpf_map__max_entries(map);
  std::vector<uint32_t> keys(n);
  std::vector<uint64_t> values(size_t(n) * ncpu);
  std::map<uint32_t, uint64_t> out;
  uint32_t batch = 0, done = 0;
  bool first = true;
  while (done < n) {
    uint32_t count = n - done;
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    const int rc = bpf_map_lookup_batch(bpf_map__fd(map), first ? nullptr : &batch, &batch,
                                        keys.data() + done, values.data() + size_t(done) * ncpu,
                                        &count, &opts);
    const int err = errno;
    done += count;
    first = false;
    if (rc) {
      if (err == ENOENT) break;
      fail(std::string("batch lookup in ") + bpf_map__name(map), err);
    }
  }
  for (uint32_t i = 0; i < done; i++) {
    uint64_t sum = 0;
    for (size_t c = 0; c < ncpu; c++) sum += values[size_t(i) * ncpu + c];
    if (sum) out[keys[i]] = sum;
  }
  return out;
}

void set_obs_flags(const Skeleton<endpoint_bpf>& skel, uint32_t flags) {
  const uint32_t zero = 0;
  if (bpf_map__update_elem(skel->maps.obs_cfg, &zero, sizeof zero, &flags, sizeof flags, BPF_ANY))
    fail("obs_cfg update", errno);
}

EventReader::EventReader(const bpf_map* events) {
  rb_ = ring_buffer__new(bpf_map__fd(events), &EventReader::on_sample, this, nullptr);
  if (!rb_) fail("ring_buffer__new", errno);
}

EventReader::~EventReader() { ring_buffer__free(rb_); }

int EventReader::on_sample(void* ctx, void* data, size_t size) {
  auto* self = static_cast<EventReader*>(ctx);
  if (size != sizeof(moat_event)) {
    self->bad_size_ = size ? size : SIZE_MAX;
    return -EINVAL;
  }
  moat_event ev;
  std::memcpy(&ev, data, sizeof ev);
  self->got_.push_back(ev);
  return 0;
}

std::vector<moat_event> EventReader::drain() {
  const int rc = ring_buffer__consume(rb_);
  if (bad_size_)
    throw std::runtime_error("events: a record of " + std::to_string(bad_size_) +
                             " bytes, not sizeof(moat_event)");
  if (rc < 0) fail("ring_buffer__consume", -rc);
  return std::exchange(got_, {});
}

}  // namespace moat_test

bool operator==(const moat_ct_key& a, const moat_ct_key& b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

std::ostream& operator<<(std::ostream& os, const moat_ct_key& k) {
  char s[INET_ADDRSTRLEN], d[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &k.saddr, s, sizeof s);
  inet_ntop(AF_INET, &k.daddr, d, sizeof d);
  os << s << ":" << ntohs(k.sport) << " -> " << d << ":" << ntohs(k.dport) << " proto "
     << unsigned(k.proto);
  if (k.pad[0] || k.pad[1] || k.pad[2]) os << " (pad not zero)";
  return os;
}

std::ostream& operator<<(std::ostream& os, const moat_ct_entry& e) {
  return os << "{xlated " << e.xlated << ", ifindex " << e.ifindex << ", dir " << unsigned(e.dir)
            << ", kind " << unsigned(e.kind) << ", tcp_state " << unsigned(e.tcp_state)
            << ", flags " << unsigned(e.flags) << ", container " << e.container_id
            << ", packets " << e.packets << ", bytes " << e.bytes << "}";
}

std::ostream& operator<<(std::ostream& os, const moat_event& ev) {
  static const char* const kTypes[] = {"?", "FLOW_NEW", "FLOW_UPDATE", "FLOW_END", "DROP"};
  os << "{" << (ev.type < 5 ? kTypes[ev.type] : "type?") << " ifindex " << ev.ifindex << " dir "
     << unsigned(ev.dir);
  if (ev.reason) os << " reason " << moat_test::reason_name(ev.reason);
  os << " kind " << unsigned(ev.ct_kind) << " tcp_state " << unsigned(ev.tcp_state) << " rule ";
  if (ev.rule_id == MOAT_RULE_NONE)
    os << "none";
  else
    os << ev.rule_id;
  os << " tuple " << ev.tuple << " xlated " << ev.xlated;
  if (ev.flags & MOAT_EV_F_IPV6) {
    char a[4][INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, ev.src6.b, a[0], sizeof a[0]);
    inet_ntop(AF_INET6, ev.dst6.b, a[1], sizeof a[1]);
    inet_ntop(AF_INET6, ev.xlated_src6.b, a[2], sizeof a[2]);
    inet_ntop(AF_INET6, ev.xlated_dst6.b, a[3], sizeof a[3]);
    os << " ipv6 " << a[0] << " -> " << a[1] << " xlated " << a[2] << " -> " << a[3];
  }
  return os << " packets " << ev.packets << "/" << ev.bytes << " reply " << ev.reply_packets << "/"
            << ev.reply_bytes << "}";
}
