// Whether our filters are still on every interface an apply keeps is asked
// of all of them at once (dataplane/tc.cpp, attached_prog_ids(): one
// rtnetlink socket, requests sent in batches). An answer that named the
// wrong program, or lost one across a batch boundary, would leave an
// interface unguarded (a slot taken for ours) or re-attach for nothing: it
// must say what libbpf's one-at-a-time query says.
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "dataplane/programs.h"
#include "dataplane/skeleton.h"
#include "dataplane/tc.h"
#include "harness.h"

namespace moat {
namespace {

struct Cleanup {
  std::string dir;
  std::vector<std::string> links;
  ~Cleanup() {
    for (const auto& l : links) {
      if (unsigned i = if_nametoindex(l.c_str())) (void)remove_clsact(static_cast<int>(i));
      try {
        moat_test::ip({"link", "del", l});
      } catch (...) {
      }
    }
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

PinnedProgs progs_of(bpf_program* ingress, bpf_program* egress) {
  PinnedProgs p;
  p.ingress = Fd(dup(bpf_program__fd(ingress)));
  p.ingress_id = prog_info(p.ingress.get())->id;
  if (egress) {
    p.egress = Fd(dup(bpf_program__fd(egress)));
    p.egress_id = prog_info(p.egress.get())->id;
  }
  return p;
}

TEST(TcQuery, ManyAtOnceAnswerAsOneAtATime) {
  Cleanup c{"/sys/fs/bpf/moat-test-tcq-" + std::to_string(getpid()),
            {"moat-tq", "moat-tr", "moat-ts"}};
  std::filesystem::create_directories(c.dir);
  auto skel = load_pinned<endpoint_bpf>(c.dir);
  ASSERT_TRUE(skel) << skel.error().message();
  for (const auto& l : c.links)
    moat_test::ip({"link", "add", l, "type", "veth", "peer", "name", l + "-c"});
  const int both = static_cast<int>(if_nametoindex("moat-tq"));
  const int in_only = static_cast<int>(if_nametoindex("moat-tr"));
  const int bare = static_cast<int>(if_nametoindex("moat-ts"));  // no clsact qdisc at all
  ASSERT_TRUE(both && in_only && bare);

  PinnedProgs p = progs_of((*skel)->progs.from_container, (*skel)->progs.to_container);
  PinnedProgs q = progs_of((*skel)->progs.to_container, nullptr);
  bool created = false;
  ASSERT_TRUE(attach("moat-tq", both, p, &created).value_or(false));
  ASSERT_TRUE(attach("moat-tr", in_only, q, &created).value_or(false));

  // 40 requests (two per interface): more than two batches of 16, every
  // kind in each, and an interface with both filters last in each batch.
  std::vector<int> ifindexes;
  for (int i = 0; i < 20; ++i)
    ifindexes.push_back(i % 4 == 0 ? in_only : i % 4 == 1 ? bare : i % 4 == 2 ? 999999 : both);
  auto got = attached_prog_ids(ifindexes);
  ASSERT_EQ(got.size(), ifindexes.size());
  for (size_t i = 0; i < ifindexes.size(); ++i) {
    int idx = ifindexes[i];
    SCOPED_TRACE("request " + std::to_string(i) + ", ifindex " + std::to_string(idx));
    EXPECT_EQ(got[i].first, attached_prog_id(idx, BPF_TC_INGRESS));
    EXPECT_EQ(got[i].second, attached_prog_id(idx, BPF_TC_EGRESS));
    auto want = idx == both      ? std::pair{p.ingress_id, p.egress_id}
                : idx == in_only ? std::pair{q.ingress_id, 0u}
                                 : std::pair{0u, 0u};
    EXPECT_EQ(got[i], want);
  }

  // Someone else's program in our slot is told apart from ours.
  bool unused = false;
  PinnedProgs swapped = progs_of((*skel)->progs.to_container, (*skel)->progs.from_container);
  ASSERT_TRUE(attach("moat-tq", both, swapped, &unused).value_or(false));
  got = attached_prog_ids({both});
  EXPECT_EQ(got[0], (std::pair{swapped.ingress_id, swapped.egress_id}));
  EXPECT_NE(got[0], (std::pair{p.ingress_id, p.egress_id}));

  // Our filter removed: an empty slot.
  ASSERT_TRUE(detach_at(in_only, {q.ingress_id}).value_or(false));
  got = attached_prog_ids({in_only, both});
  EXPECT_EQ(got[0], (std::pair{0u, 0u}));
  EXPECT_EQ(got[1], (std::pair{swapped.ingress_id, swapped.egress_id}));

  EXPECT_TRUE(attached_prog_ids({}).empty());
}

// The Docker agent makes a veth's clsact qdisc ahead of its attach
// (make_clsact()): made once, found the next time, and the attach then
// adds both filters to it without making it its own.
TEST(TcQuery, ClsactMadeAheadIsKeptByTheAttach) {
  Cleanup c{"/sys/fs/bpf/moat-test-tcm-" + std::to_string(getpid()), {"moat-tm"}};
  std::filesystem::create_directories(c.dir);
  auto skel = load_pinned<endpoint_bpf>(c.dir);
  ASSERT_TRUE(skel) << skel.error().message();
  moat_test::ip({"link", "add", "moat-tm", "type", "veth", "peer", "name", "moat-tm-c"});
  const int idx = static_cast<int>(if_nametoindex("moat-tm"));
  ASSERT_TRUE(idx);
  EXPECT_EQ(clsact_filters(idx).value_or(-1), 0);
  auto made = make_clsact(idx);
  ASSERT_TRUE(made) << made.error().message();
  EXPECT_TRUE(*made);
  made = make_clsact(idx);
  ASSERT_TRUE(made) << made.error().message();
  EXPECT_FALSE(*made) << "a second call finds the qdisc there";
  EXPECT_EQ(clsact_filters(idx).value_or(-1), 0);

  PinnedProgs p = progs_of((*skel)->progs.from_container, (*skel)->progs.to_container);
  bool created = false;
  ASSERT_TRUE(attach("moat-tm", idx, p, &created).value_or(false));
  EXPECT_FALSE(created) << "the qdisc was there before the attach";
  EXPECT_EQ(attached_prog_ids({idx})[0], (std::pair{p.ingress_id, p.egress_id}));
  EXPECT_GT(clsact_filters(idx).value_or(-1), 0) << "the filters are counted";
  EXPECT_FALSE(make_clsact(999999)) << "no such interface";
}

}  // namespace
}  // namespace moat
