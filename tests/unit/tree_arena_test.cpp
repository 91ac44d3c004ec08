// Unit tests for config/tree_arena.h: a tree parsed in an arena has its
// nodes there, frees nothing of them one by one, and whatever is made from
// it after the build (copies, defaults) is the heap's and outlives the arena.
#include "config/tree_arena.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "config/reader.h"

namespace moat {
namespace {

const Json::object_t* object_of(const Json& j) { return &j.get_ref<const Json::object_t&>(); }

TEST(TreeArena, ATreeBuiltInItHasItsNodesThere) {
  TreeArena arena;
  Json tree;
  {
    TreeArena::Building in(arena);
    tree = Json::parse(R"({"a": {"b": [1, 2, {"c": "a string longer than fifteen bytes"}]}})");
  }
  EXPECT_TRUE(arena.owns(object_of(tree)));
  EXPECT_TRUE(arena.owns(object_of(tree["a"])));
  EXPECT_TRUE(TreeArena::any_owns(&tree["a"]["b"].get_ref<const Json::array_t&>()));
  EXPECT_EQ(tree["a"]["b"][2]["c"], "a string longer than fifteen bytes");
  EXPECT_GT(arena.bytes_reserved(), 0u);
}

TEST(TreeArena, WhatIsMadeAfterTheBuildIsTheHeapsAndOutlivesTheArena) {
  Json copy;
  {
    TreeArena arena;
    Json tree;
    {
      TreeArena::Building in(arena);
      tree = Json::parse(R"({"keep": {"x": [1, 2, 3], "name": "a string longer than fifteen"}})");
    }
    EXPECT_EQ(TreeArena::building(), nullptr);
    copy = tree["keep"];  // a deep copy, outside the build
    EXPECT_FALSE(arena.owns(object_of(copy)));
    Json made = Json::array();
    EXPECT_FALSE(arena.owns(&made.get_ref<const Json::array_t&>()));
  }
  EXPECT_FALSE(TreeArena::any_owns(object_of(copy)));
  EXPECT_EQ(copy.dump(), R"({"x":[1,2,3],"name":"a string longer than fifteen"})");
}

TEST(TreeArena, LargeArraysComeFromTheHeap) {
  TreeArena arena;
  TreeArena::Building in(arena);
  Json big = Json::array();
  for (int i = 0; i < 5000; i++) big.push_back(i);  // 80 KB of elements
  EXPECT_FALSE(arena.owns(big.get_ref<const Json::array_t&>().data()));
  Json small = Json::array({1, 2, 3});
  EXPECT_TRUE(arena.owns(small.get_ref<const Json::array_t&>().data()));
}

TEST(TreeArena, ArenasNestAndEndInOrder) {
  TreeArena outer;
  Json a, b;
  {
    TreeArena::Building in(outer);
    a = Json::parse(R"({"outer": 1})");
    {
      TreeArena inner;
      TreeArena::Building in2(inner);
      b = Json::parse(R"({"inner": 2})");
      EXPECT_TRUE(inner.owns(object_of(b)));
      EXPECT_FALSE(outer.owns(object_of(b)));
      b = nullptr;  // freed before its arena goes
    }
    EXPECT_EQ(TreeArena::building(), &outer);
  }
  EXPECT_TRUE(outer.owns(object_of(a)));
  EXPECT_TRUE(TreeArena::any_owns(object_of(a)));
  EXPECT_EQ(TreeArena::building(), nullptr);
}

// An arena that ends before a younger one (held apart from the scope's
// order) leaves the younger one's nodes known as arena nodes.
TEST(TreeArena, OneEndingOutOfOrderKeepsTheOthersListed) {
  auto older = std::make_unique<TreeArena>();
  auto younger = std::make_unique<TreeArena>();
  void* node = younger->allocate(48, 8);
  ASSERT_NE(node, nullptr);
  older.reset();
  EXPECT_TRUE(TreeArena::any_owns(node));
  EXPECT_TRUE(TreeArena::give_back(node, 48));
  int on_heap = 0;
  EXPECT_FALSE(TreeArena::give_back(&on_heap, sizeof on_heap));
  younger.reset();
  EXPECT_FALSE(TreeArena::any_owns(node));
}

// The readers build in an arena: a policy file of many rules reads the same
// as always, and its model holds nothing of the tree.
TEST(TreeArena, ThePolicyReaderBuildsInOne) {
  std::string text = R"({"policies": [{"name": "p", "podSelector": {"matchLabels": {"app": "x"}},
    "policyTypes": ["Ingress"], "ingress": [)";
  for (int i = 0; i < 2000; i++)
    text += std::string(i ? "," : "") + R"({"from": [{"ipBlock": {"cidr": "10.1.)" +
            std::to_string(i / 250) + "." + std::to_string(i % 250) +
            R"(/32"}}], "ports": [{"protocol": "TCP", "port": )" + std::to_string(1000 + i) + "}]}";
  text += "]}]}";
  auto pf = parse_policy_file(text, "p.json");
  ASSERT_TRUE(pf.file);
  ASSERT_EQ(pf.file->policies.at(0).ingress.size(), 2000u);
  EXPECT_EQ(pf.file->policies[0].ingress[1999].str(PolicyDirection::ingress),
            "allow from 10.1.7.249/32 on 2999/TCP");
  EXPECT_EQ(TreeArena::building(), nullptr);
}

}  // namespace
}  // namespace moat
