#include "harness.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <net/if.h>
#include <spawn.h>
#include <sys/wait.h>

#include <time.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "endpoint.skel.h"
#include "uplink.skel.h"

extern char** environ;

namespace moat_test {
namespace {

[[noreturn]] void fail(const std::string& what, int err) {
  throw std::runtime_error(what + ": " + std::strerror(err));
}

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

}  // namespace

void create_devices() {
  // veth, because that is what moat attaches to (and this kernel has no
  // dummy driver). Only the host side is ever named in a test run.
  for (const char* dev : kDevices)
    ip({"link", "add", dev, "type", "veth", "peer", "name", std::string(dev) + "-c"});
}

uint32_t ifindex_of(const char* device) {
  const uint32_t ifindex = if_nametoindex(device);
  if (!ifindex) fail(std::string("if_nametoindex ") + device, errno);
  return ifindex;
}

Skeleton load_skeleton() {
  endpoint_bpf* skel = endpoint_bpf__open_and_load();
  if (!skel) fail("loading endpoint.bpf.o", errno);
  return Skeleton(skel, endpoint_bpf__destroy);
}

UplinkSkeleton load_uplink_skeleton(const endpoint_bpf& shared) {
  UplinkSkeleton skel(uplink_bpf__open(), uplink_bpf__destroy);
  if (!skel) fail("opening uplink.bpf.o", errno);
  bpf_map* m;
  bpf_object__for_each_map(m, skel->obj) {
    const bpf_map* theirs = bpf_object__find_map_by_name(shared.obj, bpf_map__name(m));
    if (!theirs) continue;  // a map only the uplink object has (none today)
    if (int rc = bpf_map__reuse_fd(m, bpf_map__fd(theirs)))
      fail(std::string("reusing map ") + bpf_map__name(m), -rc);
  }
  if (int rc = uplink_bpf__load(skel.get())) fail("loading uplink.bpf.o", -rc);
  return skel;
}

void add_network(const endpoint_bpf& skel, const Network& net) {
  const auto put = [&](uint32_t prefixlen, in_addr_t addr, moat_addr_kind kind) {
    const moat_lpm_v4_key key = {.prefixlen = prefixlen, .addr = addr};
    const moat_addr_info info = {
        .net_id = net.id, .kind = uint32_t(kind), .net_flags = net.flags};
    if (bpf_map__update_elem(skel.maps.addrs, &key, sizeof key, &info, sizeof info, BPF_ANY))
      fail("addrs update", errno);
  };
  put(net.prefixlen, net.subnet, MOAT_ADDR_SUBNET);
  put(32, net.gateway, MOAT_ADDR_GATEWAY);
}

void add_endpoint(const endpoint_bpf& skel, uint32_t ifindex, const Network& net, in_addr_t ip) {
  const moat_endpoint ep = {
      .net_id = net.id, .ipv4 = ip, .net_flags = net.flags, .container_id = ifindex};
  if (bpf_map__update_elem(skel.maps.endpoints, &ifindex, sizeof ifindex, &ep, sizeof ep, BPF_ANY))
    fail("endpoints update", errno);
}

void add_host_addr(const endpoint_bpf& skel, in_addr_t addr) {
  const moat_lpm_v4_key key = {.prefixlen = 32, .addr = addr};
  const moat_addr_info info = {.net_id = 0, .kind = MOAT_ADDR_HOST, .net_flags = 0};
  if (bpf_map__update_elem(skel.maps.addrs, &key, sizeof key, &info, sizeof info, BPF_ANY))
    fail("addrs update", errno);
}

void add_uplink(const endpoint_bpf& skel, uint32_t ifindex, in_addr_t ipv4) {
  const moat_uplink up = {.ipv4 = ipv4, .flags = 0};
  if (bpf_map__update_elem(skel.maps.uplinks, &ifindex, sizeof ifindex, &up, sizeof up, BPF_ANY))
    fail("uplinks update", errno);
}

void add_publish(const endpoint_bpf& skel, const Publish& p) {
  const moat_publish_key key = {
      .host_ip = p.host_ip, .port = htons(p.port), .proto = p.proto, .pad = 0};
  const moat_publish_val val = {.backend_ip = p.backend_ip,
                                .backend_port = htons(p.backend_port),
                                .pad = 0,
                                .container_id = p.container_id,
                                .net_id = p.net_id};
  if (bpf_map__update_elem(skel.maps.publish, &key, sizeof key, &val, sizeof val, BPF_ANY))
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

std::optional<moat_ct_entry> ct_get(const endpoint_bpf& skel, const moat_ct_key& key) {
  moat_ct_entry e;
  if (bpf_map__lookup_elem(skel.maps.ct, &key, sizeof key, &e, sizeof e, 0)) {
    if (errno == ENOENT) return std::nullopt;
    fail("ct lookup", errno);
  }
  return e;
}

std::vector<std::pair<moat_ct_key, moat_ct_entry>> ct_entries(const endpoint_bpf& skel) {
  std::vector<std::pair<moat_ct_key, moat_ct_entry>> all;
  moat_ct_key key, next;
  const moat_ct_key* prev = nullptr;
  while (bpf_map__get_next_key(skel.maps.ct, prev, &next, sizeof next) == 0) {
    if (auto e = ct_get(skel, next)) all.emplace_back(next, *e);
    key = next;
    prev = &key;
  }
  if (errno != ENOENT) fail("ct iteration", errno);
  return all;
}

void ct_put(const endpoint_bpf& skel, const moat_ct_key& key, const moat_ct_entry& e) {
  if (bpf_map__update_elem(skel.maps.ct, &key, sizeof key, &e, sizeof e, BPF_ANY))
    fail("ct update", errno);
}

void ct_clear(const endpoint_bpf& skel) {
  for (const auto& [key, e] : ct_entries(skel))
    if (bpf_map__delete_elem(skel.maps.ct, &key, sizeof key, 0) && errno != ENOENT)
      fail("ct delete", errno);
}

uint64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

RunResult run(const bpf_program* prog, uint32_t ifindex, const pkt::Bytes& frame, int repeat) {
  // Only ifindex is set: the kernel places it in skb->ifindex (it must name
  // a device in our netns) and requires the fields it does not support to
  // be zero.
  __sk_buff ctx = {};
  ctx.ifindex = ifindex;

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
  opts.repeat = repeat;
  if (bpf_prog_test_run_opts(bpf_program__fd(prog), &opts)) {
    r.err = errno;
    r.out.clear();
    return r;
  }
  r.retval = opts.retval;
  r.out.resize(opts.data_size_out);
  r.duration_ns = opts.duration;
  return r;
}

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

Counters sum_stats(const bpf_map* stats, StatsKey key) {
  const moat_stats_key k = {.ifindex = key.first, .dir = key.second};
  // A per-CPU map returns one value per possible CPU (each 8-byte aligned,
  // which moat_stats already is).
  static_assert(sizeof(moat_stats) % 8 == 0);
  std::vector<moat_stats> per_cpu(libbpf_num_possible_cpus());
  Counters sum;
  if (bpf_map__lookup_elem(stats, &k, sizeof k, per_cpu.data(), per_cpu.size() * sizeof(moat_stats),
                           0)) {
    if (errno == ENOENT) return sum;
    fail("stats lookup", errno);
  }
  for (const moat_stats& s : per_cpu) {
    sum.packets += s.packets;
    sum.bytes += s.bytes;
    for (unsigned slot = 0; slot < sum.drops.size(); slot++) sum.drops[slot] += s.drops[slot];
  }
  return sum;
}

StatsSnapshot read_stats(const bpf_map* stats) {
  StatsSnapshot snap;
  moat_stats_key key, next;
  const moat_stats_key* prev = nullptr;
  while (bpf_map__get_next_key(stats, prev, &next, sizeof next) == 0) {
    snap[{next.ifindex, next.dir}] = sum_stats(stats, {next.ifindex, next.dir});
    key = next;
    prev = &key;
  }
  if (errno != ENOENT) fail("stats iteration", errno);
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
