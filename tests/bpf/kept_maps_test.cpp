// The Docker agent keeps the endpoint object's maps open between syncs
// (apply.cpp, keep_kernel_handles()) only while they are the very maps
// pinned: Skeleton::same_pins() must say no once one was unpinned and made
// anew (a `moat down` and a new instance under the agent's feet), or the
// agent would write into maps no program reads.
#include <bpf/bpf.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>

#include "dataplane/policy_gen.h"
#include "dataplane/skeleton.h"

namespace moat {
namespace {

// A pin directory of its own with the endpoint object's maps pinned
// (`made`), and a second skeleton holding them as the agent does (`kept`).
class KeptMaps : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir);
    auto m = load_pinned<endpoint_bpf>(dir);
    ASSERT_TRUE(m) << m.error().message();
    made = std::move(*m);
    auto k = open_pinned_maps<endpoint_bpf>(dir);
    ASSERT_TRUE(k) << k.error().message();
    kept = std::move(*k);
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  const std::string dir = "/sys/fs/bpf/moat-test-kept-" + std::to_string(getpid());
  Skeleton<endpoint_bpf> made, kept;
};

TEST_F(KeptMaps, SamePinsOnlyWhileEveryMapIsThePinnedOne) {
  EXPECT_TRUE(kept.same_pins(dir));

  // One map unpinned and made anew by the next load: the kept handle is stale.
  ASSERT_EQ(unlink((dir + "/policy_rev").c_str()), 0);
  auto remade = load_pinned<endpoint_bpf>(dir);
  ASSERT_TRUE(remade) << remade.error().message();
  EXPECT_FALSE(kept.same_pins(dir));

  // A map gone altogether is no match either.
  auto fresh = open_pinned_maps<endpoint_bpf>(dir);
  ASSERT_TRUE(fresh) << fresh.error().message();
  EXPECT_TRUE(fresh->same_pins(dir));
  ASSERT_EQ(unlink((dir + "/endpoints").c_str()), 0);
  EXPECT_FALSE(fresh->same_pins(dir));
}

// The agent asks same_pins() before every sync; it opens the pins only
// when the directory's stamp (its times, every entry's inode) differs from
// the one taken before the last check that found them ours. The stamp must
// change with anything that could make a kept map stale.
void StampVouchesOnlyForAnUnchangedDirectory(const std::string& dir,
                                             const Skeleton<endpoint_bpf>& kept) {
  auto before = pin_dir_stamp(dir);
  ASSERT_TRUE(before);
  EXPECT_EQ(before, pin_dir_stamp(dir));
  EXPECT_FALSE(kept.pins_vouched_by_stamp(dir));  // nothing checked yet
  EXPECT_TRUE(kept.same_pins(dir));
  EXPECT_TRUE(kept.pins_vouched_by_stamp(dir));

  // Unpinned and made anew under the same name: another inode.
  ASSERT_EQ(unlink((dir + "/policy_rev").c_str()), 0);
  auto remade = load_pinned<endpoint_bpf>(dir);
  ASSERT_TRUE(remade) << remade.error().message();
  EXPECT_NE(before, pin_dir_stamp(dir));
  EXPECT_FALSE(kept.pins_vouched_by_stamp(dir));
  EXPECT_FALSE(kept.same_pins(dir));

  // A pin added beside ours ends the vouching; a check finds the maps ours
  // still and vouches again.
  auto fresh = open_pinned_maps<endpoint_bpf>(dir);
  ASSERT_TRUE(fresh) << fresh.error().message();
  EXPECT_TRUE(fresh->same_pins(dir));
  EXPECT_TRUE(fresh->pins_vouched_by_stamp(dir));
  ASSERT_EQ(bpf_obj_pin(bpf_map__fd((*fresh)->maps.endpoints), (dir + "/extra").c_str()), 0);
  EXPECT_FALSE(fresh->pins_vouched_by_stamp(dir));
  EXPECT_TRUE(fresh->same_pins(dir));
  EXPECT_TRUE(fresh->pins_vouched_by_stamp(dir));

  // Two maps swapped between their names: the same inodes, other names.
  ASSERT_EQ(rename((dir + "/addrs").c_str(), (dir + "/tmp").c_str()), 0);
  ASSERT_EQ(rename((dir + "/addrs6").c_str(), (dir + "/addrs").c_str()), 0);
  ASSERT_EQ(rename((dir + "/tmp").c_str(), (dir + "/addrs6").c_str()), 0);
  EXPECT_FALSE(fresh->pins_vouched_by_stamp(dir));
  EXPECT_FALSE(fresh->same_pins(dir));

  EXPECT_FALSE(pin_dir_stamp(dir + "/none"));
}

// map_id(): the id of the map behind `fd`, 0 for none.
uint32_t map_id(int fd) {
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  return fd >= 0 && bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.id : 0;
}

// A process that only changes the policy opens the policy maps alone: each
// the very map pinned, every other map of the object unopened (an access
// to one fails instead of reaching some other map), and a named map that
// is not pinned fails the open.
TEST_F(KeptMaps, OnlyTheNamedMapsAreOpened) {
  auto some = open_pinned_maps<endpoint_bpf>(dir, kPolicyMaps);
  ASSERT_TRUE(some) << some.error().message();
  size_t opened = 0, all = 0;
  bpf_map* m;
  bpf_object__for_each_map(m, (*some)->obj) {
    ++all;
    const std::string name = bpf_map__name(m);
    const bool named =
        std::find(std::begin(kPolicyMaps), std::end(kPolicyMaps), name) != std::end(kPolicyMaps);
    bpf_map* pinned = bpf_object__find_map_by_name(made->obj, name.c_str());
    ASSERT_NE(pinned, nullptr) << name;
    if (named) {
      ++opened;
      EXPECT_EQ(map_id(bpf_map__fd(m)), map_id(bpf_map__fd(pinned))) << name;
    } else {
      EXPECT_LT(bpf_map__fd(m), 0) << name;
    }
  }
  EXPECT_EQ(opened, std::size(kPolicyMaps));
  EXPECT_GT(all, opened + 20);
  EXPECT_TRUE(read_policy_rev(*some->get()));

  ASSERT_EQ(unlink((dir + "/rule_hits").c_str()), 0);
  EXPECT_FALSE(open_pinned_maps<endpoint_bpf>(dir, kPolicyMaps));
  const std::string_view others[] = {"endpoints"};
  EXPECT_TRUE(open_pinned_maps<endpoint_bpf>(dir, others));
}

TEST_F(KeptMaps, TheStampVouchesOnlyForAnUnchangedDirectory) {
  StampVouchesOnlyForAnUnchangedDirectory(dir, kept);
}

// The agent's stamps come from an inotify watch on the directory
// (watch_pin_dirs()): every change above must end the vouching as well.
struct Watching {
  Watching() { watch_pin_dirs(true); }
  ~Watching() { watch_pin_dirs(false); }
};

TEST_F(KeptMaps, TheWatchedStampVouchesOnlyForAnUnchangedDirectory) {
  Watching w;
  StampVouchesOnlyForAnUnchangedDirectory(dir, kept);
}

// And so must the path naming another directory (made anew, the same maps
// moved into it under the same names), and the directory's own times.
TEST_F(KeptMaps, TheWatchedStampEndsWithTheDirectory) {
  Watching w;
  EXPECT_TRUE(kept.same_pins(dir));
  EXPECT_TRUE(kept.pins_vouched_by_stamp(dir));
  const std::string moved = dir + "-moved";
  ASSERT_EQ(rename(dir.c_str(), moved.c_str()), 0);
  std::filesystem::create_directories(dir);
  for (const auto& e : std::filesystem::directory_iterator(moved))
    ASSERT_EQ(rename(e.path().c_str(), (dir + "/" + e.path().filename().string()).c_str()), 0);
  std::filesystem::remove(moved);
  EXPECT_FALSE(kept.pins_vouched_by_stamp(dir));
  EXPECT_TRUE(kept.same_pins(dir));  // the same maps: ours again
  EXPECT_TRUE(kept.pins_vouched_by_stamp(dir));
  // Times of its own, not "now": bpffs keeps a coarse clock, and now may be
  // the very tick the directory last changed in.
  const timespec long_ago[2] = {{1000, 0}, {1000, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, dir.c_str(), long_ago, 0), 0);
  EXPECT_FALSE(kept.pins_vouched_by_stamp(dir));
}

}  // namespace
}  // namespace moat
