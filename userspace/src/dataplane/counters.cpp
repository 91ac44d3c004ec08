#include "dataplane/counters.h"

#include <bpf/libbpf.h>

#include <string>
#include <vector>

#include "util/abi_names.h"

using nlohmann::json;

namespace moat {

Result<moat_stats> read_stats(const bpf_map* m, uint32_t slot, uint32_t dir) {
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return fail_errno("count possible CPUs", ncpu);
  std::vector<moat_stats> per_cpu(static_cast<size_t>(ncpu));
  uint32_t key = moat_stats_index(slot, dir);
  moat_stats sum{};
  if (bpf_map__lookup_elem(m, &key, sizeof(key), per_cpu.data(), per_cpu.size() * sizeof(moat_stats),
                           0) != 0)
    return sum;  // nothing counted yet
  for (const auto& s : per_cpu) {
    sum.packets += s.packets;
    sum.bytes += s.bytes;
    for (int i = 0; i < MOAT_NR_DROP_SLOTS; ++i) sum.drops[i] += s.drops[i];
  }
  return sum;
}

Result<void> zero_stats_slot(const bpf_map* m, uint32_t slot) {
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return fail_errno("count possible CPUs", ncpu);
  std::vector<moat_stats> zeros(static_cast<size_t>(ncpu));
  for (uint32_t dir : {0u, 1u}) {
    uint32_t key = moat_stats_index(slot, dir);
    if (int rc = bpf_map__update_elem(m, &key, sizeof(key), zeros.data(),
                                      zeros.size() * sizeof(moat_stats), BPF_ANY);
        rc != 0)
      return fail_errno("reset counter slot " + std::to_string(slot), rc);
  }
  return {};
}

Result<void> set_uplink_slot(const bpf_map* m, int ifindex, uint32_t slot) {
  if (ifindex <= 0 || ifindex >= MOAT_UPLINK_SLOTS_IFINDEX) return {};
  uint32_t key = static_cast<uint32_t>(ifindex);
  if (int rc = bpf_map__update_elem(m, &key, sizeof(key), &slot, sizeof(slot), BPF_ANY); rc != 0)
    return fail_errno("set the counter slot of uplink ifindex " + std::to_string(ifindex), rc);
  return {};
}

json stats_json(const moat_stats& s) {
  json drops = json::object();
  const auto& names = drop_reason_names();
  for (int i = 1; i < MOAT_NR_DROP_SLOTS; ++i)
    if (s.drops[i]) drops[names[i].empty() ? std::to_string(i) : names[i]] = s.drops[i];
  return {{"packets", s.packets}, {"bytes", s.bytes}, {"drops", drops}};
}

}  // namespace moat
