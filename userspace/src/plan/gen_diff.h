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

// Sorted by key bytes, no key twice.
template <class K, class V>
bool strictly_by_key(std::span<const std::pair<K, V>> v) {
  for (size_t i = 1; i < v.size(); ++i)
    if (!bytes_less(v[i - 1].first, v[i].first)) return false;
  return true;
}

// `v` ordered by key bytes, one entry per key (the last one given wins, as
// it would in a map written entry by entry). Callers usually hand sorted
// entries: then nothing is copied.
template <class K, class V>
std::span<const std::pair<K, V>> by_key(std::span<const std::pair<K, V>> v,
                                        std::vector<std::pair<K, V>>& scratch) {
  auto less = [](const auto& a, const auto& b) { return bytes_less(a.first, b.first); };
  if (strictly_by_key(v)) return v;
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

// How many entries `a` and `b` share byte for byte at their starts, and
// then at their ends (never counting one entry twice). memcmp() a block at
// a time: two versions of a generation of 100,000 entries mostly differ in
// a few, and this is the pass that touches all of them.
template <class E>
std::pair<size_t, size_t> equal_ends(std::span<const E> a, std::span<const E> b) {
  constexpr size_t kBlock = 256;
  const size_t n = std::min(a.size(), b.size());
  size_t pre = 0;
  while (pre < n) {
    const size_t k = std::min(kBlock, n - pre);
    if (std::memcmp(&a[pre], &b[pre], k * sizeof(E)) != 0) {
      while (bytes_equal(a[pre], b[pre])) ++pre;  // stops inside the block
      break;
    }
    pre += k;
  }
  const size_t room = n - pre;
  size_t suf = 0;
  while (suf < room) {
    const size_t k = std::min(kBlock, room - suf);
    if (std::memcmp(&a[a.size() - suf - k], &b[b.size() - suf - k], k * sizeof(E)) != 0) {
      while (bytes_equal(a[a.size() - 1 - suf], b[b.size() - 1 - suf])) ++suf;
      break;
    }
    suf += k;
  }
  return {pre, suf};
}

// Both strictly increasing by key: one merge.
template <class K, class V>
void merge_diff(std::span<const std::pair<K, V>> have, std::span<const std::pair<K, V>> want,
                EntryDiff<K, V>& d) {
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
}

}  // namespace detail

// Entries in key-byte order, one per key: checked once, and then not
// again by every comparison they take part in (a pass over 100,000 each).
template <class K, class V>
class KeyOrdered {
 public:
  // `v` itself when it is in that order, else a sorted copy of it (the
  // last of a key given twice kept).
  explicit KeyOrdered(std::span<const std::pair<K, V>> v) : v_(detail::by_key(v, own_)) {}
  explicit KeyOrdered(const std::vector<std::pair<K, V>>& v)
      : KeyOrdered(std::span<const std::pair<K, V>>(v)) {}
  KeyOrdered(std::vector<std::pair<K, V>>&&) = delete;  // the view would outlive it
  KeyOrdered(const KeyOrdered&) = delete;
  KeyOrdered& operator=(const KeyOrdered&) = delete;
  std::span<const std::pair<K, V>> span() const { return v_; }
  size_t size() const { return v_.size(); }

 private:
  std::vector<std::pair<K, V>> own_;
  std::span<const std::pair<K, V>> v_;
};

// The difference from `have`, in any order, to `want`: the entries both
// share at their ends are compared as bytes, and only those between are
// merged (`have` sorted too; else a sorted copy of it is merged whole).
template <class K, class V>
EntryDiff<K, V> diff_entries(std::span<const std::pair<K, V>> have,
                             const KeyOrdered<K, V>& want_ordered) {
  EntryDiff<K, V> d;
  const std::span<const std::pair<K, V>> want = want_ordered.span();
  const auto [pre, suf] = detail::equal_ends(have, want);
  // `have` is the wanted entries at both ends with others between: in
  // order when those are, together with an end's entry either side.
  const size_t lo = pre > 0 ? pre - 1 : 0;
  const size_t hi = suf > 0 ? have.size() - suf + 1 : have.size();
  if (detail::strictly_by_key(have.subspan(lo, hi - lo))) {
    detail::merge_diff(have.subspan(pre, have.size() - pre - suf),
                       want.subspan(pre, want.size() - pre - suf), d);
    return d;
  }
  std::vector<std::pair<K, V>> scratch;
  detail::merge_diff(detail::by_key(have, scratch), want, d);
  return d;
}

// The same, both in any order.
template <class K, class V>
EntryDiff<K, V> diff_entries(std::span<const std::pair<K, V>> have,
                             std::span<const std::pair<K, V>> want) {
  return diff_entries(have, KeyOrdered<K, V>(want));
}

template <class K, class V>
EntryDiff<K, V> diff_entries(const std::vector<std::pair<K, V>>& have,
                             const std::vector<std::pair<K, V>>& want) {
  return diff_entries(std::span<const std::pair<K, V>>(have),
                      std::span<const std::pair<K, V>>(want));
}

// Whether `a` and `b` hold the same entries (in any order).
template <class K, class V>
bool same_entries(std::span<const std::pair<K, V>> a, const KeyOrdered<K, V>& b) {
  return diff_entries(a, b).empty();
}

template <class K, class V>
bool same_entries(std::span<const std::pair<K, V>> a, std::span<const std::pair<K, V>> b) {
  return diff_entries(a, b).empty();
}

template <class K, class V>
bool same_entries(const std::vector<std::pair<K, V>>& a, const std::vector<std::pair<K, V>>& b) {
  return same_entries(std::span<const std::pair<K, V>>(a), std::span<const std::pair<K, V>>(b));
}

}  // namespace moat
