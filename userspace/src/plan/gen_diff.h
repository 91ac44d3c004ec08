// gen_diff.h - what turns one version of a policy generation's map into
// another: the entries to put (new or changed) and the keys to delete. An
// apply writes only this into the idle generation instead of filling fresh
// maps, so changing one rule among 100,000 writes two entries, not 100,000.
// Keys and values are compared as bytes, as the kernel compares keys (abi.h
// structs are value-initialised: no stray padding).
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <span>
#include <utility>
#include <vector>

namespace moat {

template <class K, class V>
struct EntryDiff {
  std::vector<K> put_keys;  // new or changed, with their values
  std::vector<V> put_vals;
  std::vector<K> del_keys;  // in `have`, not in `want`
  bool empty() const { return put_keys.empty() && del_keys.empty(); }
};

// memcmp()'s order, without its call: 8 and then 4 bytes at a time, read
// as big-endian numbers. Sorting and merging 100,000 entries compares them
// a million times; through memcmp() that was a tenth of a one-rule change.
template <class T>
bool bytes_less(const T& a, const T& b) {
  if constexpr (std::endian::native != std::endian::little)
    return std::memcmp(&a, &b, sizeof(T)) < 0;
  const auto* pa = reinterpret_cast<const unsigned char*>(&a);
  const auto* pb = reinterpret_cast<const unsigned char*>(&b);
  size_t i = 0;
  for (; i + 8 <= sizeof(T); i += 8) {
    uint64_t x, y;
    std::memcpy(&x, pa + i, 8);
    std::memcpy(&y, pb + i, 8);
    if (x != y) return __builtin_bswap64(x) < __builtin_bswap64(y);
  }
  for (; i + 4 <= sizeof(T); i += 4) {
    uint32_t x, y;
    std::memcpy(&x, pa + i, 4);
    std::memcpy(&y, pb + i, 4);
    if (x != y) return __builtin_bswap32(x) < __builtin_bswap32(y);
  }
  for (; i < sizeof(T); ++i)
    if (pa[i] != pb[i]) return pa[i] < pb[i];
  return false;
}

template <class T>
bool bytes_equal(const T& a, const T& b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

namespace detail {

// `v` ordered by key bytes, one entry per key (the last one given wins, as
// it would in a map written entry by entry). Callers usually hand sorted
// entries: then nothing is copied.
template <class K, class V>
std::span<const std::pair<K, V>> by_key(std::span<const std::pair<K, V>> v,
                                        std::vector<std::pair<K, V>>& scratch) {
  auto less = [](const auto& a, const auto& b) { return bytes_less(a.first, b.first); };
  // Strictly increasing: sorted and no key twice.
  bool strict = std::adjacent_find(v.begin(), v.end(), [&](const auto& a, const auto& b) {
                  return !less(a, b);
                }) == v.end();
  if (strict) return v;
  scratch.assign(v.begin(), v.end());
  std::stable_sort(scratch.begin(), scratch.end(), less);
  // Keep the last of equal keys.
  std::vector<std::pair<K, V>> out;
  out.reserve(scratch.size());
  for (auto& e : scratch) {
    if (!out.empty() && bytes_equal(out.back().first, e.first))
      out.back() = e;
    else
      out.push_back(e);
  }
  scratch = std::move(out);
  return scratch;
}

template <class K, class V>
const std::vector<std::pair<K, V>>& by_key(const std::vector<std::pair<K, V>>& v,
                                           std::vector<std::pair<K, V>>& scratch) {
  auto s = by_key(std::span<const std::pair<K, V>>(v), scratch);
  return s.data() == v.data() ? v : scratch;
}

}  // namespace detail

// The difference from `have` to `want`, in any order (sorted by key bytes
// is cheapest).
template <class K, class V>
EntryDiff<K, V> diff_entries(std::span<const std::pair<K, V>> have_in,
                             std::span<const std::pair<K, V>> want_in) {
  std::vector<std::pair<K, V>> s1, s2;
  const auto have = detail::by_key(have_in, s1);
  const auto want = detail::by_key(want_in, s2);
  EntryDiff<K, V> d;
  size_t i = 0, j = 0;
  while (i < have.size() || j < want.size()) {
    if (j == want.size() || (i < have.size() && bytes_less(have[i].first, want[j].first))) {
      d.del_keys.push_back(have[i++].first);
    } else if (i == have.size() || bytes_less(want[j].first, have[i].first)) {
      d.put_keys.push_back(want[j].first);
      d.put_vals.push_back(want[j++].second);
    } else {
      if (!bytes_equal(have[i].second, want[j].second)) {
        d.put_keys.push_back(want[j].first);
        d.put_vals.push_back(want[j].second);
      }
      ++i, ++j;
    }
  }
  return d;
}

template <class K, class V>
EntryDiff<K, V> diff_entries(const std::vector<std::pair<K, V>>& have,
                             const std::vector<std::pair<K, V>>& want) {
  return diff_entries(std::span<const std::pair<K, V>>(have),
                      std::span<const std::pair<K, V>>(want));
}

// Whether `a` and `b` hold the same entries (in any order).
template <class K, class V>
bool same_entries(std::span<const std::pair<K, V>> a, std::span<const std::pair<K, V>> b) {
  return diff_entries(a, b).empty();
}

template <class K, class V>
bool same_entries(const std::vector<std::pair<K, V>>& a, const std::vector<std::pair<K, V>>& b) {
  return same_entries(std::span<const std::pair<K, V>>(a), std::span<const std::pair<K, V>>(b));
}

}  // namespace moat
