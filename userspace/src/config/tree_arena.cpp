#include "config/tree_arena.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <new>

// Poisoning for ASan (the parser fuzzers): no-ops in other builds.
#include <sanitizer/asan_interface.h>

namespace moat {
namespace {

thread_local TreeArena* t_building = nullptr;
thread_local TreeArena* t_live = nullptr;

// Blocks start small (a small file's tree stays small) and double up to
// 4 MiB. A request above kLargest (the array of a policy's 100,000 rules,
// doubling as it grows) comes from the heap instead, so that the copies a
// vector leaves behind as it grows are freed and reused, not kept.
constexpr std::size_t kFirstBlock = std::size_t{64} << 10;
constexpr std::size_t kLastBlock = std::size_t{4} << 20;
constexpr std::size_t kLargest = std::size_t{16} << 10;

// Every request rounded to 8 bytes and aligned to at least 8: ASan poisons
// whole 8-byte granules, so a node's granules are its own.
std::size_t rounded(std::size_t bytes) { return (bytes + 7) & ~std::size_t{7}; }

}  // namespace

TreeArena::TreeArena() : next_block_(kFirstBlock), older_(t_live) { t_live = this; }

TreeArena::~TreeArena() {
  // Unlinked wherever it is: arenas are scoped and end in reverse order,
  // but one held elsewhere must not cut the others out of the list.
  for (TreeArena** link = &t_live; *link; link = &(*link)->older_)
    if (*link == this) {
      *link = older_;
      break;
    }
  if (t_building == this) t_building = nullptr;
  for (const Block& b : blocks_) {
    ASAN_UNPOISON_MEMORY_REGION(b.base, b.size);
    std::free(b.base);
  }
}

TreeArena::Building::Building(TreeArena& arena) : outer_(t_building) { t_building = &arena; }
TreeArena::Building::~Building() { t_building = outer_; }

TreeArena* TreeArena::building() { return t_building; }

bool TreeArena::any_owns(const void* p) {
  for (const TreeArena* a = t_live; a; a = a->older_)
    if (a->owns(p)) return true;
  return false;
}

bool TreeArena::give_back(const void* p, std::size_t bytes) {
  if (!any_owns(p)) return false;
  // Kept readable only in other builds: under ASan a use after this is caught.
  ASAN_POISON_MEMORY_REGION(p, rounded(bytes));
  return true;
}

bool TreeArena::owns(const void* p) const {
  auto at = reinterpret_cast<std::uintptr_t>(p);
  auto it =
      std::upper_bound(blocks_.begin(), blocks_.end(), at, [](std::uintptr_t x, const Block& b) {
        return x < reinterpret_cast<std::uintptr_t>(b.base);
      });
  if (it == blocks_.begin()) return false;
  --it;
  return at < reinterpret_cast<std::uintptr_t>(it->base) + it->size;
}

std::size_t TreeArena::bytes_reserved() const {
  std::size_t n = 0;
  for (const Block& b : blocks_) n += b.size;
  return n;
}

void* TreeArena::allocate(std::size_t bytes, std::size_t align) {
  if (bytes > kLargest) return nullptr;
  bytes = rounded(bytes);
  align = std::max<std::size_t>(align, 8);
  auto aligned = [&](char* p) {
    auto v = reinterpret_cast<std::uintptr_t>(p);
    return reinterpret_cast<char*>((v + align - 1) & ~(std::uintptr_t{align} - 1));
  };
  char* p = at_ ? aligned(at_) : nullptr;
  if (!p || p + bytes > end_) {
    const std::size_t size = next_block_;
    blocks_.reserve(blocks_.size() + 1);  // a throw here leaves no block unlisted
    auto* base = static_cast<char*>(std::malloc(size));
    if (!base) throw std::bad_alloc();
    next_block_ = std::min(next_block_ * 2, kLastBlock);
    ASAN_POISON_MEMORY_REGION(base, size);
    Block b{base, size};
    blocks_.insert(std::upper_bound(blocks_.begin(), blocks_.end(), b,
                                    [](const Block& x, const Block& y) { return x.base < y.base; }),
                   b);
    at_ = base;
    end_ = base + size;
    p = aligned(at_);
  }
  at_ = p + bytes;
  ASAN_UNPOISON_MEMORY_REGION(p, bytes);
  return p;
}

}  // namespace moat
