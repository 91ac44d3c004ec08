#include "harness.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <net/if.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "endpoint.skel.h"

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

void add_network(const endpoint_bpf& skel, const Network& net) {
  const auto put = [&](uint32_t prefixlen, in_addr_t addr, moat_addr_kind kind) {
    const moat_lpm_v4_key key = {.prefixlen = prefixlen, .addr = addr};
    const moat_addr_info info = {.net_id = net.id, .kind = uint32_t(kind)};
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
