// tree_arena.h - the memory of a parsed JSON tree, taken and given back in
// one piece.
//
// A 1 MB policy file of 10,000 rules parses into some 200,000 heap nodes
// (objects' member vectors, arrays, the node of each string). Taken from
// malloc one by one, each carried a 16-byte header, and freeing them one by
// one after reading was 12% of `moat lab apply`'s samples. In an arena they
// are carved from a few large blocks, their deallocation is a no-op, and
// the blocks go back to malloc at once when the tree is done with, for what
// the compile allocates next: on a VM whose fresh memory costs a millisecond
// a megabyte, memory given back and reused matters as much as the time.
//
// Json (reader.h) allocates through TreeAllocator: from the arena of a
// TreeArena::Building scope on this thread, else from the heap. A node the
// arena holds must be freed on the thread that built it and before the arena
// goes: parse_config() and parse_policy_file() keep tree and arena side by
// side, the arena declared first. Values made from the tree after the scope
// (copies, defaults) come from the heap and are freed as usual. Under ASan
// (the parser fuzzers) the arena's free space and every node given back
// are poisoned, so a use after free of a tree node is still caught.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace moat {

class TreeArena {
 public:
  TreeArena();
  ~TreeArena();
  TreeArena(const TreeArena&) = delete;
  TreeArena& operator=(const TreeArena&) = delete;

  // While one exists, this thread's trees are built in `arena`.
  class Building {
   public:
    explicit Building(TreeArena& arena);
    ~Building();
    Building(const Building&) = delete;
    Building& operator=(const Building&) = delete;

   private:
    TreeArena* outer_;
  };

  // Null for a large request: the heap's (see kLargest).
  void* allocate(std::size_t bytes, std::size_t align);
  bool owns(const void* p) const;
  std::size_t bytes_reserved() const;

  // The arena this thread builds in, if any.
  static TreeArena* building();
  // Whether a live arena of this thread holds `p`.
  static bool any_owns(const void* p);
  // A node of `bytes` at `p` freed: true when an arena holds it (it stays
  // there, poisoned for ASan), false when it is the heap's.
  static bool give_back(const void* p, std::size_t bytes);

 private:
  struct Block {
    char* base;
    std::size_t size;
  };
  std::vector<Block> blocks_;  // sorted by base
  char* at_ = nullptr;
  char* end_ = nullptr;
  std::size_t next_block_;
  TreeArena* older_;  // the live arenas of a thread form a stack
};

template <class T>
struct TreeAllocator {
  using value_type = T;
  TreeAllocator() noexcept = default;
  template <class U>
  TreeAllocator(const TreeAllocator<U>&) noexcept {}

  T* allocate(std::size_t n) {
    if (TreeArena* a = TreeArena::building())
      if (void* p = a->allocate(n * sizeof(T), alignof(T))) return static_cast<T*>(p);
    return std::allocator<T>{}.allocate(n);
  }
  void deallocate(T* p, std::size_t n) noexcept {
    if (TreeArena::give_back(p, n * sizeof(T))) return;  // freed with its arena
    std::allocator<T>{}.deallocate(p, n);
  }
  template <class U>
  bool operator==(const TreeAllocator<U>&) const noexcept {
    return true;
  }
};

}  // namespace moat
