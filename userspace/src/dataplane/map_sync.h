// map_sync.h - reading a whole map and writing only what differs: how
// every apply touches exactly the entries that changed (and nothing when a
// file is applied twice). Keys are compared as bytes, values with memcmp, so
// abi.h structs must have no uninitialised padding (they are value-initialised).
#pragma once

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "plan/map_plan.h"
#include "util/result.h"

namespace moat {

// Every entry of a (non-per-CPU) map, keyed by the key's bytes.
template <class K, class V>
std::map<std::vector<uint8_t>, V> dump_fd(int fd) {
  std::map<std::vector<uint8_t>, V> out;
  K key{}, next{};
  K* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    V val{};
    if (bpf_map_lookup_elem(fd, &next, &val) == 0) {
      auto* p = reinterpret_cast<const uint8_t*>(&next);
      out.emplace(std::vector<uint8_t>(p, p + sizeof(K)), val);
    }
    key = next;
    prev = &key;
  }
  return out;
}

template <class K, class V>
Result<std::map<std::vector<uint8_t>, V>> dump_map(const bpf_map* m) {
  return dump_fd<K, V>(bpf_map__fd(m));
}

// Writes `want` into map `m` (whose current content is `have`), touching only
// entries that differ. Deletions are returned for the caller to do last.
template <class K, class V>
Result<void> upsert(bpf_map* m, const std::map<std::vector<uint8_t>, V>& have,
                    const std::map<std::vector<uint8_t>, V>& want, int* added, int* updated,
                    bool dry_run) {
  for (const auto& [k, v] : want) {
    auto it = have.find(k);
    if (it != have.end() && memcmp(&it->second, &v, sizeof(V)) == 0) continue;
    (it == have.end() ? *added : *updated) += 1;
    if (dry_run) continue;
    if (int rc = bpf_map__update_elem(m, k.data(), k.size(), &v, sizeof(V), BPF_ANY); rc)
      return fail_errno(std::string("update map ") + bpf_map__name(m), rc);
  }
  return {};
}

template <class V>
Result<void> remove_stale(bpf_map* m, const std::map<std::vector<uint8_t>, V>& have,
                          const std::map<std::vector<uint8_t>, V>& want, int* removed,
                          bool dry_run) {
  for (const auto& [k, v] : have) {
    if (want.contains(k)) continue;
    *removed += 1;
    if (dry_run) continue;
    if (int rc = bpf_map__delete_elem(m, k.data(), k.size(), 0); rc && rc != -ENOENT)
      return fail_errno(std::string("delete from map ") + bpf_map__name(m), rc);
  }
  return {};
}

// Whether map `fd` holds exactly `want`, byte for byte.
template <class K, class V>
bool holds_exactly(int fd, const std::vector<std::pair<K, V>>& want) {
  auto have = dump_fd<K, V>(fd);
  if (have.size() != want.size()) return false;
  for (const auto& [k, v] : want) {
    auto it = have.find(key_bytes(k));
    if (it == have.end() || memcmp(&it->second, &v, sizeof(V)) != 0) return false;
  }
  return true;
}

}  // namespace moat
