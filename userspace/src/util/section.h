// section.h - an array that is a read-only view of memory someone else
// owns until it is written to or resized, and then a vector of its own.
// A one-rule change of 100,000 rules read its 8 MB policy image into fresh
// memory, and on this VM fresh memory is what a change costs, the more so
// after a pause (README, stop 57). Its sections are now read where they
// lie, in the saved file's mapping (2 MiB page-cache folios, mapped whole),
// and only the ones a change writes are copied (README, stop 58).
//
// Const access reads the view; any non-const access (data(), begin(),
// end(), operator[], push_back(), own()) copies first, so a store can
// never reach the viewed memory. Code that only reads a section it holds
// non-const must read it through std::as_const(), or it copies it.
#pragma once

#include <cstddef>
#include <span>
#include <utility>
#include <vector>

namespace moat {

template <class T>
class Section {
 public:
  using value_type = T;
  using iterator = T*;
  using const_iterator = const T*;

  Section() = default;
  // `n` elements at `p`, which must outlive the section and be aligned
  // for T (the caller checks).
  static Section view(const T* p, size_t n) {
    Section s;
    s.view_ = p;
    s.view_n_ = n;
    return s;
  }
  Section(Section&&) noexcept = default;
  Section& operator=(Section&&) noexcept = default;
  // Never copied by accident: a copy of an 800 KB view is fresh memory.
  Section(const Section&) = delete;
  Section& operator=(const Section&) = delete;
  Section& operator=(std::vector<T>&& v) {
    own_ = std::move(v);
    view_ = nullptr;
    view_n_ = 0;
    return *this;
  }

  size_t size() const { return view_ ? view_n_ : own_.size(); }
  bool empty() const { return size() == 0; }
  const T* data() const { return view_ ? view_ : own_.data(); }
  const T* begin() const { return data(); }
  const T* end() const { return data() + size(); }
  const T& operator[](size_t i) const { return data()[i]; }
  std::span<const T> span() const { return {data(), size()}; }

  // Writable: a view is copied first.
  std::vector<T>& own() {
    if (view_) {
      own_.assign(view_, view_ + view_n_);
      view_ = nullptr;
      view_n_ = 0;
    }
    return own_;
  }
  T* data() { return own().data(); }
  T* begin() { return data(); }
  T* end() {
    auto& v = own();
    return v.data() + v.size();
  }
  T& operator[](size_t i) { return own()[i]; }
  void push_back(const T& v) { own().push_back(v); }

 private:
  const T* view_ = nullptr;
  size_t view_n_ = 0;
  std::vector<T> own_;
};

// A vector as it is, a section as its own vector: for code that grows
// either.
template <class T>
std::vector<T>& grown(std::vector<T>& v) {
  return v;
}
template <class T>
std::vector<T>& grown(Section<T>& s) {
  return s.own();
}

}  // namespace moat
