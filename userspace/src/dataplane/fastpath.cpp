#include "dataplane/fastpath.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>

#include <cerrno>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
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

// nullopt: the pinned map has no such slot. An instance keeps the maps it
// was made with, and one made by an older moat has fewer counters.
Result<std::optional<uint64_t>> read_sum(const bpf_map* m, uint32_t key) {
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return fail_errno("count possible CPUs", -ncpu);
  std::vector<uint64_t> v(static_cast<size_t>(ncpu));
  if (bpf_map__lookup_elem(m, &key, sizeof key, v.data(), v.size() * sizeof(uint64_t), 0)) {
    if (errno == ENOENT) return std::nullopt;
    return fail_errno("read map fast_stats", errno);
  }
  uint64_t sum = 0;
  for (uint64_t x : v) sum += x;
  return sum;
}

// Whether TC programs may call one helper: asked of the kernel once per
// process; MOAT_KERNEL_LACKS=<name> makes the answer false (failpoint.h).
class KernelHelper {
 public:
  KernelHelper(const char* name, bpf_func_id id) : name_(name), id_(id) {}
  Result<bool> present() {
    std::lock_guard lock(mu_);
    if (known_) return *known_;
    if (pretend_kernel_lacks(name_)) return *(known_ = false);
    int rc = libbpf_probe_bpf_helper(BPF_PROG_TYPE_SCHED_CLS, id_, nullptr);
    if (rc < 0) return fail_errno(std::string("probe the kernel for bpf_") + name_, -rc);
    known_ = rc > 0;
    return *known_;
  }

 private:
  const char* name_;
  bpf_func_id id_;
  std::mutex mu_;
  std::optional<bool> known_;
};

}  // namespace

Result<bool> kernel_redirect_peer() {
  static KernelHelper helper{"redirect_peer", BPF_FUNC_redirect_peer};
  return helper.present();
}

Result<bool> kernel_redirect_neigh() {
  static KernelHelper helper{"redirect_neigh", BPF_FUNC_redirect_neigh};
  return helper.present();
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

Result<nlohmann::json> fast_path(const std::string& instance, const FastPathSwitches& set) {
  auto skel = open_pinned(instance);
  if (!skel) return std::unexpected(skel.error());
  auto& maps = (*skel)->maps;
  auto kernel = kernel_redirect_peer();
  if (!kernel) return std::unexpected(kernel.error());
  auto neigh = kernel_redirect_neigh();
  if (!neigh) return std::unexpected(neigh.error());
  auto flags = read_flags(maps.fast_cfg);
  if (!flags) return std::unexpected(flags.error());
  if (set.peer && *set.peer && !*kernel)
    return fail("the fast path needs bpf_redirect_peer(), which " + kernel_name() + " lacks");
  if (set.routed && *set.routed && !*neigh)
    return fail("the routed fast path needs bpf_redirect_neigh(), which " + kernel_name() +
                " lacks");
  uint32_t want = *flags;
  if (set.peer) want = *set.peer ? want & ~MOAT_FAST_F_PEER_OFF : want | MOAT_FAST_F_PEER_OFF;
  if (set.routed) want = *set.routed ? want | MOAT_FAST_F_ROUTED_ON : want & ~MOAT_FAST_F_ROUTED_ON;
  if (want != *flags) {
    if (auto r = write_flags(maps.fast_cfg, want); !r) return std::unexpected(r.error());
    flags = want;
  }
  nlohmann::json out{{"peer", !(*flags & MOAT_FAST_F_PEER_OFF)},
                     {"kernel_redirect_peer", *kernel},
                     {"routed", (*flags & MOAT_FAST_F_ROUTED_ON) != 0},
                     {"kernel_redirect_neigh", *neigh}};
  for (auto [name, key] : {std::pair{"peer_packets", MOAT_FAST_PEER_PACKETS},
                           std::pair{"peer_bytes", MOAT_FAST_PEER_BYTES},
                           std::pair{"routed_packets", MOAT_FAST_ROUTED_PACKETS},
                           std::pair{"routed_bytes", MOAT_FAST_ROUTED_BYTES},
                           std::pair{"routed_in_packets", MOAT_FAST_ROUTED_IN_PACKETS},
                           std::pair{"routed_in_bytes", MOAT_FAST_ROUTED_IN_BYTES}}) {
    auto n = read_sum(maps.fast_stats, key);
    if (!n) return std::unexpected(n.error());
    out[name] = *n ? nlohmann::json(**n) : nlohmann::json();
  }
  return out;
}

}  // namespace moat
