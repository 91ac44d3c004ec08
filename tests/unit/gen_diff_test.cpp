// gen_diff_test.cpp - the difference an incremental policy write puts into
// the idle generation: puts for new and changed entries, deletes for gone
// ones, nothing for equal ones, whatever order the entries come in.
#include "plan/gen_diff.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "abi.h"

namespace moat {
namespace {

using Entries = std::vector<std::pair<moat_policy_key, moat_policy_val>>;

moat_policy_key key(uint32_t subject, uint32_t peer, uint16_t port) {
  moat_policy_key k{};
  k.subject = subject;
  k.peer = peer;
  k.dir = MOAT_POLICY_INGRESS;
  k.proto = 6;
  k.port = port;
  return k;
}

moat_policy_val val(uint32_t rule) { return {MOAT_POLICY_ALLOW, rule}; }

// `have` with `d` applied, as the kernel would hold it.
Entries applied(const Entries& have, const EntryDiff<moat_policy_key, moat_policy_val>& d) {
  Entries out;
  for (const auto& e : have) {
    bool gone = std::any_of(d.del_keys.begin(), d.del_keys.end(),
                            [&](const auto& k) { return bytes_equal(k, e.first); });
    bool put = std::any_of(d.put_keys.begin(), d.put_keys.end(),
                           [&](const auto& k) { return bytes_equal(k, e.first); });
    if (!gone && !put) out.push_back(e);
  }
  for (size_t i = 0; i < d.put_keys.size(); ++i) out.push_back({d.put_keys[i], d.put_vals[i]});
  return out;
}

// bytes_less() is memcmp()'s order, for keys of every size moat has and
// odd ones: random bytes, and keys alike but for one byte anywhere.
template <size_t N>
void expect_memcmp_order(std::mt19937& rng) {
  struct Key {
    unsigned char b[N];
  };
  for (int i = 0; i < 20000; ++i) {
    Key a, b;
    for (auto& c : a.b) c = static_cast<unsigned char>(rng() % (i % 2 ? 256 : 3));
    b = a;
    if (i % 3) b.b[rng() % N] = static_cast<unsigned char>(rng() % 256);
    ASSERT_EQ(bytes_less(a, b), std::memcmp(&a, &b, N) < 0) << N << " " << i;
    ASSERT_EQ(bytes_less(b, a), std::memcmp(&b, &a, N) < 0) << N << " " << i;
  }
}

TEST(GenDiff, BytesLessIsMemcmpOrder) {
  std::mt19937 rng(9);
  expect_memcmp_order<1>(rng);
  expect_memcmp_order<3>(rng);
  expect_memcmp_order<sizeof(moat_lpm_v4_key)>(rng);
  expect_memcmp_order<sizeof(moat_policy_key)>(rng);
  expect_memcmp_order<sizeof(moat_lpm_v6_key)>(rng);
  expect_memcmp_order<23>(rng);
}

TEST(GenDiff, EqualGenerationsNeedNothing) {
  Entries a = {{key(1, 2, 80), val(0)}, {key(1, 3, 80), val(1)}};
  EXPECT_TRUE(diff_entries(a, a).empty());
  Entries shuffled = {a[1], a[0]};
  EXPECT_TRUE(diff_entries(a, shuffled).empty());
  EXPECT_TRUE(same_entries(a, shuffled));
}

TEST(GenDiff, PutsNewAndChangedDeletesGone) {
  Entries have = {{key(1, 2, 80), val(0)}, {key(1, 3, 80), val(1)}, {key(1, 4, 80), val(2)}};
  Entries want = {{key(1, 2, 80), val(0)}, {key(1, 3, 80), val(7)}, {key(1, 5, 80), val(2)}};
  auto d = diff_entries(have, want);
  ASSERT_EQ(d.put_keys.size(), 2u);
  ASSERT_EQ(d.put_vals.size(), 2u);
  ASSERT_EQ(d.del_keys.size(), 1u);
  EXPECT_TRUE(bytes_equal(d.del_keys[0], key(1, 4, 80)));
  EXPECT_TRUE(same_entries(applied(have, d), want));
}

TEST(GenDiff, FromAndToNothing) {
  Entries some = {{key(9, 2, 80), val(0)}, {key(1, 3, 443), val(1)}};
  auto fill = diff_entries(Entries{}, some);
  EXPECT_EQ(fill.put_keys.size(), 2u);
  EXPECT_TRUE(fill.del_keys.empty());
  auto clear = diff_entries(some, Entries{});
  EXPECT_TRUE(clear.put_keys.empty());
  EXPECT_EQ(clear.del_keys.size(), 2u);
}

TEST(GenDiff, AKeyGivenTwiceEndsWithItsLastValue) {
  Entries have = {{key(1, 2, 80), val(5)}};
  Entries want = {{key(1, 2, 80), val(1)}, {key(1, 2, 80), val(5)}};
  EXPECT_TRUE(diff_entries(have, want).empty());
  Entries want2 = {{key(1, 2, 80), val(5)}, {key(1, 2, 80), val(1)}};
  auto d = diff_entries(have, want2);
  ASSERT_EQ(d.put_vals.size(), 1u);
  EXPECT_EQ(d.put_vals[0].rule_id, 1u);
}

// Random generations, in random order: applying the diff always gives
// exactly the wanted entries, and never touches an entry that is equal.
TEST(GenDiff, RandomGenerationsApplyExactly) {
  std::mt19937 rng(17);
  for (int round = 0; round < 200; ++round) {
    auto gen = [&] {
      Entries e;
      int n = static_cast<int>(rng() % 60);
      for (int i = 0; i < n; ++i) e.push_back({key(rng() % 4, rng() % 8, 80), val(rng() % 3)});
      // One value per key, as the compiler emits.
      std::sort(e.begin(), e.end(), [](auto& a, auto& b) { return bytes_less(a.first, b.first); });
      e.erase(std::unique(e.begin(), e.end(),
                          [](auto& a, auto& b) { return bytes_equal(a.first, b.first); }),
              e.end());
      std::shuffle(e.begin(), e.end(), rng);
      return e;
    };
    Entries have = gen(), want = gen();
    auto d = diff_entries(have, want);
    EXPECT_TRUE(same_entries(applied(have, d), want));
    for (size_t i = 0; i < d.put_keys.size(); ++i)
      for (const auto& [k, v] : have)
        if (bytes_equal(k, d.put_keys[i])) EXPECT_FALSE(bytes_equal(v, d.put_vals[i]));
  }
}

// What the diff must be, from maps (the last of a key given twice wins):
// puts for keys new or changed, deletes for keys gone, as sorted bytes.
std::pair<std::vector<std::string>, std::vector<std::string>> model_diff(const Entries& have,
                                                                         const Entries& want) {
  auto bytes = [](const auto& x) {
    return std::string(reinterpret_cast<const char*>(&x), sizeof x);
  };
  std::map<std::string, std::string> h, w;
  for (const auto& [k, v] : have) h[bytes(k)] = bytes(v);
  for (const auto& [k, v] : want) w[bytes(k)] = bytes(v);
  std::vector<std::string> puts, dels;
  for (const auto& [k, v] : w)
    if (auto it = h.find(k); it == h.end() || it->second != v) puts.push_back(k + v);
  for (const auto& [k, v] : h)
    if (!w.count(k)) dels.push_back(k);
  return {puts, dels};
}

std::pair<std::vector<std::string>, std::vector<std::string>> as_bytes(
    const EntryDiff<moat_policy_key, moat_policy_val>& d) {
  std::vector<std::string> puts, dels;
  for (size_t i = 0; i < d.put_keys.size(); ++i)
    puts.push_back(
        std::string(reinterpret_cast<const char*>(&d.put_keys[i]), sizeof d.put_keys[i]) +
        std::string(reinterpret_cast<const char*>(&d.put_vals[i]), sizeof d.put_vals[i]));
  for (const auto& k : d.del_keys)
    dels.push_back(std::string(reinterpret_cast<const char*>(&k), sizeof k));
  std::sort(puts.begin(), puts.end());
  std::sort(dels.begin(), dels.end());
  return {puts, dels};
}

// Two versions of a sorted generation share most entries at both ends:
// only what lies between is merged. Whatever `have` holds there (in
// order, out of order, a key twice, an end's entry repeated), the diff is
// the maps' difference.
TEST(GenDiff, SharedEndsAreSkippedOnlyWhereThatIsRight) {
  std::mt19937 rng(23);
  auto sorted = [](Entries e) {
    std::sort(e.begin(), e.end(), [](auto& a, auto& b) { return bytes_less(a.first, b.first); });
    e.erase(std::unique(e.begin(), e.end(),
                        [](auto& a, auto& b) { return bytes_equal(a.first, b.first); }),
            e.end());
    return e;
  };
  int skipped = 0;
  for (int round = 0; round < 3000; ++round) {
    Entries want;
    const int n = static_cast<int>(rng() % 1500);
    for (int i = 0; i < n; ++i)
      want.push_back(
          {key(rng() % 16, rng() % 64, static_cast<uint16_t>(rng() % 8)), val(rng() % 3)});
    want = sorted(want);
    Entries have = want;
    const size_t at = have.empty() ? 0 : rng() % have.size();
    const size_t span = std::min(have.size() - at, static_cast<size_t>(rng() % 6));
    switch (round % 8) {
      case 0:  // values changed
        for (size_t i = at; i < at + span; ++i) have[i].second = val(7);
        break;
      case 1:  // entries gone from `have`
        have.erase(have.begin() + static_cast<ptrdiff_t>(at),
                   have.begin() + static_cast<ptrdiff_t>(at + span));
        break;
      case 2:  // entries only `have` holds, in order
        for (int i = 0; i < 3; ++i)
          have.push_back(
              {key(rng() % 16, rng() % 64, static_cast<uint16_t>(8 + rng() % 8)), val(1)});
        have = sorted(have);
        break;
      case 3:  // two of them swapped: out of order
        if (span >= 2) std::swap(have[at], have[at + 1]);
        break;
      case 4:  // an entry given twice, the second value wins
        if (!have.empty())
          have.insert(have.begin() + static_cast<ptrdiff_t>(at + 1), {have[at].first, val(9)});
        break;
      case 5:  // an entry repeated, same value, next to the shared end
        if (!have.empty()) have.insert(have.begin() + static_cast<ptrdiff_t>(at), have[at]);
        break;
      case 6:  // an entry given twice, the first value loses: before the shared end
        if (!have.empty())
          have.insert(have.begin() + static_cast<ptrdiff_t>(at), {have[at].first, val(9)});
        break;
      case 7:  // an entry of the end moved into the middle
        if (have.size() > 2) {
          auto e = have.front();
          have.erase(have.begin());
          have.insert(have.begin() + static_cast<ptrdiff_t>(std::min(at, have.size())), e);
        }
        break;
    }
    const auto d = diff_entries(have, want);
    ASSERT_EQ(as_bytes(d), model_diff(have, want)) << "round " << round;
    EXPECT_EQ(same_entries(have, want),
              model_diff(have, want) == decltype(model_diff(have, want)){})
        << "round " << round;
    skipped +=
        detail::strictly_by_key(std::span<const std::pair<moat_policy_key, moat_policy_val>>(have));
    // And the other way round: `want` out of order takes the sort.
    const auto back = diff_entries(want, have);
    ASSERT_EQ(as_bytes(back), model_diff(want, have)) << "round " << round;
  }
  EXPECT_GT(skipped, 1000);  // the shared-ends path was taken
}

}  // namespace
}  // namespace moat
