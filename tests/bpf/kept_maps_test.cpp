// The Docker agent keeps the endpoint object's maps open between syncs
// (apply.cpp, keep_kernel_handles()) only while they are the very maps
// pinned: Skeleton::same_pins() must say no once one was unpinned and made
// anew (a `moat down` and a new instance under the agent's feet), or the
// agent would write into maps no program reads.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "dataplane/skeleton.h"

namespace moat {
namespace {

struct RemoveDir {
  std::string dir;
  ~RemoveDir() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

TEST(KeptMaps, SamePinsOnlyWhileEveryMapIsThePinnedOne) {
  const std::string dir = "/sys/fs/bpf/moat-test-kept-" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  RemoveDir cleanup{dir};

  auto made = load_pinned<endpoint_bpf>(dir);
  ASSERT_TRUE(made) << made.error().message();
  auto kept = open_pinned_maps<endpoint_bpf>(dir);
  ASSERT_TRUE(kept) << kept.error().message();
  EXPECT_TRUE(kept->same_pins(dir));

  // One map unpinned and made anew by the next load: the kept handle is stale.
  ASSERT_EQ(unlink((dir + "/policy_rev").c_str()), 0);
  auto remade = load_pinned<endpoint_bpf>(dir);
  ASSERT_TRUE(remade) << remade.error().message();
  EXPECT_FALSE(kept->same_pins(dir));

  // A map gone altogether is no match either.
  auto fresh = open_pinned_maps<endpoint_bpf>(dir);
  ASSERT_TRUE(fresh) << fresh.error().message();
  EXPECT_TRUE(fresh->same_pins(dir));
  ASSERT_EQ(unlink((dir + "/endpoints").c_str()), 0);
  EXPECT_FALSE(fresh->same_pins(dir));
}

}  // namespace
}  // namespace moat
