// policy_gen_test.cpp - policy generations written in place (only the
// difference, into the idle slot) hold exactly what fresh maps would, and
// never let a packet see half of one generation and half of another.
//
//   - A sequence of generations with entries added, changed and removed in
//     all three maps: after each write the slot holds exactly the wanted
//     entries and the other slot still holds the previous generation; from
//     the third on the write was a diff. A slot whose maps were replaced
//     behind the store's back is written fresh, and holds exactly too.
//   - The idle slot mirrored after a switch holds the generation in force,
//     and the next revision goes into it as a diff.
//   - A flood of new flows judged while 150 generations follow each other:
//     every generation admits the flow, but through identities of its own,
//     so a packet judged by one generation's identities and another's
//     policy entries would be dropped. None may be.
#include "dataplane/policy_gen.h"

#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "dataplane/map_sync.h"
#include "harness.h"

using namespace pkt;
using namespace moat_test;

namespace {

namespace fs = std::filesystem;

// A store directory of its own, removed afterwards.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/moat-gen-test.XXXXXX";
    if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

moat_lpm_v6_key v6_key(uint32_t n, uint32_t prefixlen) {
  moat_lpm_v6_key k{};
  k.prefixlen = prefixlen;
  k.addr.b[0] = 0xfd;
  // Bits past the prefix stay zero, as the compiler writes them.
  k.addr.b[8] = static_cast<uint8_t>(n >> 24);
  k.addr.b[9] = static_cast<uint8_t>(n >> 16);
  k.addr.b[10] = static_cast<uint8_t>(n >> 8);
  k.addr.b[11] = static_cast<uint8_t>(n);
  return k;
}

struct Gen {
  IpcacheEntries ipcache;
  Ipcache6Entries ipcache6;
  PolicyEntries entries;
};

// Key i of a generation's window: `subjects` subjects, peers in turn, both
// directions, one of `ports` ports from `port`.
moat_policy_key window_key(uint32_t i, uint32_t subjects, uint8_t proto, uint16_t port,
                           uint16_t ports) {
  moat_policy_key k{};
  k.subject = MOAT_ID_FIRST_DYNAMIC + i % subjects;
  k.peer = MOAT_ID_FIRST_DYNAMIC + i / subjects;
  k.dir = static_cast<uint8_t>(i % 2);
  k.proto = proto;
  k.port = htons(static_cast<uint16_t>(port + i % ports));
  return k;
}

// Generation g: a window of keys that slides with g (some leave, some
// arrive), values that change with g for every third key, and an empty
// IPv6 cache now and then.
Gen generation(uint32_t g) {
  Gen out;
  for (uint32_t i = g * 7; i < g * 7 + 300; ++i) {
    moat_ipcache_val v{MOAT_ID_FIRST_DYNAMIC + i, i % 3 == 0 ? g : 0};
    out.ipcache.push_back({{32, htonl(0x0a000000 + i)}, v});
    if (g % 4 != 3) out.ipcache6.push_back({v6_key(i, 96 + i % 9), v});
  }
  for (uint32_t i = g * 50; i < g * 50 + 3000; ++i) {
    moat_policy_key k = window_key(i, 40, IPPROTO_TCP, 1000, 7);
    moat_policy_val v{};
    v.action = i % 3 == 0 ? MOAT_POLICY_ALLOW : (g + i) % 2;
    v.rule_id = i % 5 == 0 ? g : i;
    out.entries.push_back({k, v});
  }
  return out;
}

moat::Fd inner(const bpf_map* outer, uint32_t slot) {
  uint32_t id = 0;
  if (bpf_map__lookup_elem(outer, &slot, sizeof slot, &id, sizeof id, 0) != 0 || id == 0)
    return moat::Fd();
  return moat::Fd(bpf_map_get_fd_by_id(id));
}

// Whether slot `slot` holds exactly generation `g`.
::testing::AssertionResult slot_holds(const Skeleton<endpoint_bpf>& skel, uint32_t slot,
                                      const Gen& g) {
  moat::Fd ic = inner(skel->maps.ipcache_gens, slot);
  moat::Fd ic6 = inner(skel->maps.ipcache6_gens, slot);
  moat::Fd pc = inner(skel->maps.policy_gens, slot);
  if (!ic.ok() || !ic6.ok() || !pc.ok()) return ::testing::AssertionFailure() << "a map is missing";
  if (!moat::holds_exactly(ic.get(), g.ipcache))
    return ::testing::AssertionFailure() << "the IPv4 identity cache differs";
  if (!moat::holds_exactly(ic6.get(), g.ipcache6))
    return ::testing::AssertionFailure() << "the IPv6 identity cache differs";
  if (!moat::holds_exactly(pc.get(), g.entries))
    return ::testing::AssertionFailure() << "the policy entries differ";
  return ::testing::AssertionSuccess();
}

void write_gen(const Skeleton<endpoint_bpf>& skel, uint32_t rev, const Gen& g,
               const moat::GenerationStore& store) {
  auto r = moat::write_policy_generation(*skel.get(), rev, g.ipcache, g.entries, g.ipcache6, store);
  if (!r)
    throw std::runtime_error("write generation " + std::to_string(rev) + ": " +
                             r.error().message());
}

// Revisions 1 to `last` of `gen`, each written and checked: the first two
// into fresh maps, the others in place, the slot in force before untouched.
void write_and_check(const Skeleton<endpoint_bpf>& skel, const moat::GenerationStore& store,
                     Gen (*gen)(uint32_t), uint32_t last) {
  for (uint32_t rev = 1; rev <= last; ++rev) {
    SCOPED_TRACE("revision " + std::to_string(rev));
    Gen want = gen(rev);
    write_gen(skel, rev, want, store);
    EXPECT_STREQ(moat::last_generation_write(), rev <= 2 ? "fresh" : "diff");
    EXPECT_EQ(policy_rev(skel), rev);
    EXPECT_TRUE(slot_holds(skel, rev & 1, want));
    if (rev > 1)
      EXPECT_TRUE(slot_holds(skel, (rev - 1) & 1, gen(rev - 1)))
          << "the slot in force before the switch was touched";
  }
}

TEST(PolicyGenerations, WrittenInPlaceTheyHoldExactlyWhatFreshMapsWould) {
  if (sysconf(_SC_NPROCESSORS_ONLN) < 2) GTEST_SKIP() << "one CPU: every generation is fresh";
  Skeleton<endpoint_bpf> skel = load_skeleton();
  TempDir dir;
  moat::GenerationStore store{dir.path()};
  write_and_check(skel, store, generation, 8);
  // Slot 1 refilled without the store: its copy names maps it no longer
  // has, so the next write there starts from fresh maps.
  write_gen(skel, 9, generation(20), moat::GenerationStore{});
  write_gen(skel, 10, generation(21), store);
  EXPECT_STREQ(moat::last_generation_write(), "diff");
  write_gen(skel, 11, generation(22), store);
  EXPECT_STREQ(moat::last_generation_write(), "fresh");
  EXPECT_TRUE(slot_holds(skel, 1, generation(22)));
  // The same generation twice more: the second time the slot holds it
  // already, and only the switch happens.
  write_gen(skel, 12, generation(23), store);
  write_gen(skel, 13, generation(23), store);
  write_gen(skel, 14, generation(23), store);
  EXPECT_STREQ(moat::last_generation_write(), "diff");
  EXPECT_TRUE(slot_holds(skel, 0, generation(23)));
  EXPECT_TRUE(slot_holds(skel, 1, generation(23)));
}

// Generation g of 40,000 policy entries, the window sliding by 20,000: the
// slot written two revisions later gets 40,000 puts and 40,000 deletes,
// enough to be written in two halves on two threads (policy_gen.cpp).
Gen large_generation(uint32_t g) {
  Gen out;
  out.ipcache = generation(g).ipcache;
  for (uint32_t i = g * 20000; i < g * 20000 + 40000; ++i)
    out.entries.push_back(
        {window_key(i, 64, IPPROTO_UDP, 2000, 11), {static_cast<uint8_t>((g + i) % 2), i}});
  return out;
}

TEST(PolicyGenerations, LargeDiffsWrittenOnTwoThreadsHoldExactly) {
  if (sysconf(_SC_NPROCESSORS_ONLN) < 2) GTEST_SKIP() << "one CPU: every generation is fresh";
  Skeleton<endpoint_bpf> skel = load_skeleton();
  TempDir dir;
  write_and_check(skel, moat::GenerationStore{dir.path()}, large_generation, 5);
}

// After a switch to revision r, the idle slot mirrored: both slots hold r's
// entries, the slot in force untouched, and the next revision, written
// into the mirrored slot, is a diff from it that holds exactly. A revision
// not in force, or no grace period to wait for, is refused and the idle
// slot left as it was.
TEST(PolicyGenerations, AMirroredIdleSlotTakesTheNextRevisionAsADiff) {
  if (sysconf(_SC_NPROCESSORS_ONLN) < 2) GTEST_SKIP() << "one CPU: every generation is fresh";
  Skeleton<endpoint_bpf> skel = load_skeleton();
  TempDir dir;
  moat::GenerationStore store{dir.path()};
  write_gen(skel, 1, large_generation(1), store);
  write_gen(skel, 2, large_generation(2), store);  // slot 1 still holds revision 1
  const Gen two = large_generation(2);
  moat::Fd in_force = inner(skel->maps.policy_gens, 0);
  ASSERT_TRUE(in_force.ok());

  auto refused = moat::mirror_generation(*skel.get(), 3, two.ipcache, two.ipcache6, two.entries,
                                         store, moat::GracePeriod::begin());
  EXPECT_FALSE(refused);
  EXPECT_TRUE(slot_holds(skel, 1, large_generation(1))) << "a refused mirror wrote";

  // Without a grace period it cannot know: it refuses too.
  EXPECT_FALSE(moat::mirror_generation(*skel.get(), 2, two.ipcache, two.ipcache6, two.entries,
                                       store, moat::GracePeriod{}));
  EXPECT_TRUE(slot_holds(skel, 1, large_generation(1))) << "a mirror without a grace period wrote";
  auto r = moat::mirror_generation(*skel.get(), 2, two.ipcache, two.ipcache6, two.entries, store,
                                   moat::GracePeriod::begin());
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(policy_rev(skel), 2u);
  EXPECT_TRUE(slot_holds(skel, 0, two));
  EXPECT_TRUE(slot_holds(skel, 1, two));
  moat::Fd still = inner(skel->maps.policy_gens, 0);
  ASSERT_TRUE(still.ok());
  bpf_map_info a{}, b{};
  uint32_t la = sizeof a, lb = sizeof b;
  ASSERT_EQ(bpf_obj_get_info_by_fd(in_force.get(), &a, &la), 0);
  ASSERT_EQ(bpf_obj_get_info_by_fd(still.get(), &b, &lb), 0);
  EXPECT_EQ(a.id, b.id) << "the slot in force got other maps";

  // One entry changed: revision 3 goes into the mirrored slot as a diff.
  Gen three = two;
  three.entries[17].second.rule_id ^= 0x5a5a;
  write_gen(skel, 3, three, store);
  EXPECT_STREQ(moat::last_generation_write(), "diff");
  EXPECT_TRUE(slot_holds(skel, 1, three));
  EXPECT_TRUE(slot_holds(skel, 0, two));
}

const Network kNet = {1, ip4("172.20.0.0"), 16, ip4("172.20.0.1"), MOAT_NET_F_ICC};
constexpr const char* A = "172.20.0.2";
constexpr const char* B = "172.20.0.3";

// Generation `rev` admits A -> B:80 (B is isolated for ingress) through
// identities only it uses, among 2,000 entries that change with it too.
Gen flood_generation(uint32_t rev) {
  Gen g;
  uint32_t a_id = MOAT_ID_FIRST_DYNAMIC + 2 * rev, b_id = a_id + 1;
  g.ipcache.push_back({{32, ip4(A)}, {a_id, MOAT_ID_F_CONTAINER}});
  g.ipcache.push_back({{32, ip4(B)}, {b_id, MOAT_ID_F_CONTAINER | MOAT_ID_F_INGRESS_ISOLATED}});
  moat_policy_key k{};
  k.subject = b_id;
  k.peer = a_id;
  k.dir = MOAT_POLICY_INGRESS;
  k.proto = IPPROTO_TCP;
  k.port = htons(80);
  g.entries.push_back({k, {MOAT_POLICY_ALLOW, 0}});
  for (uint32_t i = 0; i < 2000; ++i) {
    k.subject = 100000 + rev % 3;
    k.peer = 100000 + i;
    g.entries.push_back({k, {MOAT_POLICY_ALLOW, i}});
  }
  return g;
}

TEST(PolicyGenerations, NoPacketSeesHalfOfOneAndHalfOfAnother) {
  if (sysconf(_SC_NPROCESSORS_ONLN) < 2) GTEST_SKIP() << "one CPU: nothing runs beside the writer";
  Skeleton<endpoint_bpf> skel = load_skeleton();
  add_network(skel, kNet);
  uint32_t a_if = ifindex_of("moat-a"), b_if = ifindex_of("moat-b");
  add_endpoint(skel, a_if, kNet, ip4(A));
  add_endpoint(skel, b_if, kNet, ip4(B));
  TempDir dir;
  moat::GenerationStore store{dir.path()};
  write_gen(skel, 1, flood_generation(1), store);

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> runs{0}, drops{0}, errors{0};
  std::thread flood([&] {
    for (uint16_t sport = 1; !stop; sport = sport == 200 ? 1 : sport + 1) {
      // 200 flows (a container's connection-tracking quota would refuse
      // more): each is judged again by the generation in force whenever
      // the revision moved since its last packet.
      Bytes f = eth(ETH_P_IP, ipv4({.src = ip4(A), .dst = ip4(B)}, tcp(sport, 80, kSyn)));
      RunResult r = run(skel->progs.from_container, a_if, f);
      if (r.err)
        ++errors;
      else if (r.retval != TC_ACT_OK)
        ++drops;
      ++runs;
    }
  });
  int diffs = 0;
  for (uint32_t rev = 2; rev <= 150; ++rev) {
    write_gen(skel, rev, flood_generation(rev), store);
    diffs += std::strcmp(moat::last_generation_write(), "diff") == 0;
  }
  stop = true;
  flood.join();
  EXPECT_EQ(errors.load(), 0u);
  EXPECT_GT(runs.load(), 1000u) << "too few packets ran beside the writes to tell";
  EXPECT_EQ(drops.load(), 0u) << "of " << runs.load() << " packets";
  EXPECT_GE(diffs, 140) << "the generations were not written in place";
}

}  // namespace
