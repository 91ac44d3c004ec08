// Reading a whole map (dataplane/map_sync.h): every apply diffs what the
// kernel holds against the plan, so a reader that lost or invented an entry
// would make the apply write the wrong difference. Maps are read in batches
// (BPF_MAP_LOOKUP_BATCH) where the kernel can, entry by entry elsewhere (LPM
// tries before Linux 6.x); both readers must give exactly what the map holds.
#include <bpf/bpf.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <vector>

#include "dataplane/map_sync.h"
#include "util/fd.h"

namespace moat {
namespace {

Fd make_map(bpf_map_type type, uint32_t key_size, uint32_t value_size, uint32_t max) {
  LIBBPF_OPTS(bpf_map_create_opts, opts);
  if (type == BPF_MAP_TYPE_LPM_TRIE) opts.map_flags = BPF_F_NO_PREALLOC;
  return Fd(bpf_map_create(type, "moat_dump_test", key_size, value_size, max, &opts));
}

std::vector<uint8_t> bytes_of(uint32_t k) {
  auto* p = reinterpret_cast<const uint8_t*>(&k);
  return {p, p + sizeof(k)};
}

// A hash map bigger than one batch (256), with values that tell the keys apart.
TEST(MapDump, HashMapInBatchesHoldsEveryEntry) {
  Fd m = make_map(BPF_MAP_TYPE_HASH, sizeof(uint32_t), sizeof(uint64_t), 4096);
  ASSERT_TRUE(m.ok()) << errno;
  std::map<std::vector<uint8_t>, uint64_t> want;
  for (uint32_t k = 1; k <= 3000; ++k) {
    uint64_t v = uint64_t{k} * 7919;
    ASSERT_EQ(bpf_map_update_elem(m.get(), &k, &v, BPF_ANY), 0);
    want[bytes_of(k)] = v;
  }
  std::map<std::vector<uint8_t>, uint64_t> got;
  ASSERT_TRUE((detail::dump_batched<uint32_t, uint64_t>(m.get(), got)));
  EXPECT_EQ(got, want);
  EXPECT_EQ((detail::dump_each<uint32_t, uint64_t>(m.get())), want);
  EXPECT_EQ((dump_fd<uint32_t, uint64_t>(m.get())), want);
}

TEST(MapDump, EmptyHashMapIsEmpty) {
  Fd m = make_map(BPF_MAP_TYPE_HASH, sizeof(uint32_t), sizeof(uint64_t), 64);
  ASSERT_TRUE(m.ok()) << errno;
  std::map<std::vector<uint8_t>, uint64_t> got{{bytes_of(1), 1}};
  ASSERT_TRUE((detail::dump_batched<uint32_t, uint64_t>(m.get(), got)));
  EXPECT_TRUE(got.empty());
}

// An LPM trie, batched or not as the kernel can.
TEST(MapDump, LpmTrieEitherWay) {
  struct Key {
    uint32_t prefixlen;
    uint32_t addr;
  };
  Fd m = make_map(BPF_MAP_TYPE_LPM_TRIE, sizeof(Key), sizeof(uint32_t), 1024);
  ASSERT_TRUE(m.ok()) << errno;
  std::map<std::vector<uint8_t>, uint32_t> want;
  for (uint32_t i = 0; i < 300; ++i) {
    Key k{32, 0x0a000000u + i};
    uint32_t v = i + 1;
    ASSERT_EQ(bpf_map_update_elem(m.get(), &k, &v, BPF_ANY), 0);
    auto* p = reinterpret_cast<const uint8_t*>(&k);
    want[std::vector<uint8_t>(p, p + sizeof(k))] = v;
  }
  EXPECT_EQ((detail::dump_each<Key, uint32_t>(m.get())), want);
  EXPECT_EQ((dump_fd<Key, uint32_t>(m.get())), want);
}

}  // namespace
}  // namespace moat
