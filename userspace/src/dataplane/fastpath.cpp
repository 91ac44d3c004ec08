#include "dataplane/fastpath.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>

#include <cerrno>
#include <cstdint>
#include <mutex>
#include <vector>

#include "abi.h"
#include "dataplane/dataplane.h"
#include "dataplane/failpoint.h"
#include "dataplane/features.h"

namespace moat {
namespace {

Result<uint32_t> read_flags(const bpf_map* m) {
  uint32_t zero = 0, flags = 0;
  if (bpf_map__lookup_elem(m, &zero, sizeof zero, &flags, sizeof flags, 0))
    return fail_errno("read map fast_cfg", errno);
  return flags;
}

Result<void> write_flags(const bpf_map* m, uint32_t flags) {
  uint32_t zero = 0;
  if (bpf_map__update_elem(m, &zero, sizeof zero, &flags, sizeof flags, BPF_ANY))
    return fail_errno("write map fast_cfg", errno);
  return {};
}

Result<uint64_t> read_sum(const bpf_map* m, uint32_t key) {
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return fail_errno("count possible CPUs", -ncpu);
  std::vector<uint64_t> v(static_cast<size_t>(ncpu));
  if (bpf_map__lookup_elem(m, &key, sizeof key, v.data(), v.size() * sizeof(uint64_t), 0))
    return fail_errno("read map fast_stats", errno);
  uint64_t sum = 0;
  for (uint64_t x : v) sum += x;
  return sum;
}

}  // namespace

Result<bool> kernel_redirect_peer() {
  static std::mutex mu;
  static std::optional<bool> known;
  std::lock_guard lock(mu);
  if (known) return *known;
  if (pretend_kernel_lacks("redirect_peer")) return *(known = false);
  int rc = libbpf_probe_bpf_helper(BPF_PROG_TYPE_SCHED_CLS, BPF_FUNC_redirect_peer, nullptr);
  if (rc < 0) return fail_errno("probe the kernel for bpf_redirect_peer", -rc);
  known = rc > 0;
  return *known;
}

Result<void> fast_path_default(const bpf_map* fast_cfg) {
  auto ok = kernel_redirect_peer();
  if (!ok) return std::unexpected(ok.error());
  if (*ok) return {};
  auto flags = read_flags(fast_cfg);
  if (!flags) return std::unexpected(flags.error());
  if (*flags & MOAT_FAST_F_PEER_OFF) return {};
  return write_flags(fast_cfg, *flags | MOAT_FAST_F_PEER_OFF);
}

Result<nlohmann::json> fast_path(const std::string& instance, std::optional<bool> set) {
  auto skel = open_pinned(instance);
  if (!skel) return std::unexpected(skel.error());
  auto& maps = (*skel)->maps;
  auto kernel = kernel_redirect_peer();
  if (!kernel) return std::unexpected(kernel.error());
  auto flags = read_flags(maps.fast_cfg);
  if (!flags) return std::unexpected(flags.error());
  if (set) {
    if (*set && !*kernel)
      return fail("the fast path needs bpf_redirect_peer(), which " + kernel_name() + " lacks");
    uint32_t want = *set ? *flags & ~MOAT_FAST_F_PEER_OFF : *flags | MOAT_FAST_F_PEER_OFF;
    if (want != *flags) {
      if (auto r = write_flags(maps.fast_cfg, want); !r) return std::unexpected(r.error());
      flags = want;
    }
  }
  auto packets = read_sum(maps.fast_stats, MOAT_FAST_PEER_PACKETS);
  if (!packets) return std::unexpected(packets.error());
  auto bytes = read_sum(maps.fast_stats, MOAT_FAST_PEER_BYTES);
  if (!bytes) return std::unexpected(bytes.error());
  return nlohmann::json{{"peer", !(*flags & MOAT_FAST_F_PEER_OFF)},
                        {"kernel_redirect_peer", *kernel},
                        {"peer_packets", *packets},
                        {"peer_bytes", *bytes}};
}

}  // namespace moat
