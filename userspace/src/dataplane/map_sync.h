// map_sync.h - reading a whole map and writing only what differs: how
// every apply touches exactly the entries that changed (and nothing when a
// file is applied twice). Keys are compared as bytes, values with memcmp, so
// abi.h structs must have no uninitialised padding (they are value-initialised).
#pragma once

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "plan/map_plan.h"
#include "util/result.h"

namespace moat {

namespace detail {

// Every entry of map `fd` into `out` by BPF_MAP_LOOKUP_BATCH, a few hundred
// a system call: the Docker agent reads nine maps at every sync, two system
// calls an entry by bpf_map_get_next_key(). False, with `out` as it was,
// where the kernel cannot (LPM tries have batch operations only since Linux
// 6.x).
template <class K, class V>
bool dump_batched(int fd, std::map<std::vector<uint8_t>, V>& out) {
  std::map<std::vector<uint8_t>, V> got;
  std::vector<K> keys(256);
  std::vector<V> vals(256);
  // The position between calls: a bucket (hash maps, 4 bytes) or a key
  // (the kernel's generic batch, arrays); the first call starts at the
  // beginning (no position).
  struct alignas(8) Position {
    uint8_t bytes[std::max<size_t>(8, sizeof(K))];
  };
  Position at{}, next{};
  bool first = true;
  for (;;) {
    uint32_t count = static_cast<uint32_t>(keys.size());
    int rc = bpf_map_lookup_batch(fd, first ? nullptr : &at, &next, keys.data(), vals.data(),
                                  &count, nullptr);
    int err = rc == 0 ? 0 : errno;
    if (err == ENOSPC && count == 0) {  // one bucket holds more than the buffers
      keys.resize(keys.size() * 2);
      vals.resize(vals.size() * 2);
      continue;
    }
    if (err != 0 && err != ENOENT) return false;
    for (uint32_t i = 0; i < count; ++i) {
      auto* p = reinterpret_cast<const uint8_t*>(&keys[i]);
      got.emplace(std::vector<uint8_t>(p, p + sizeof(K)), vals[i]);
    }
    if (err == ENOENT) break;  // the end
    at = next;
    first = false;
  }
  out = std::move(got);
  return true;
}

// The same entry by entry, for maps without batch operations.
template <class K, class V>
std::map<std::vector<uint8_t>, V> dump_each(int fd) {
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

}  // namespace detail

// Every entry of a (non-per-CPU) map, keyed by the key's bytes.
template <class K, class V>
std::map<std::vector<uint8_t>, V> dump_fd(int fd) {
  std::map<std::vector<uint8_t>, V> out;
  if (detail::dump_batched<K, V>(fd, out)) return out;
  return detail::dump_each<K, V>(fd);
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
bool holds_exactly(int fd, std::span<const std::pair<K, V>> want) {
  auto have = dump_fd<K, V>(fd);
  if (have.size() != want.size()) return false;
  for (const auto& [k, v] : want) {
    auto it = have.find(key_bytes(k));
    if (it == have.end() || memcmp(&it->second, &v, sizeof(V)) != 0) return false;
  }
  return true;
}

template <class K, class V>
bool holds_exactly(int fd, const std::vector<std::pair<K, V>>& want) {
  return holds_exactly(fd, std::span<const std::pair<K, V>>(want));
}

}  // namespace moat
