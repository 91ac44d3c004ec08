// skeleton.h - the one owner of a libbpf skeleton (bpftool's generated
// open/load/destroy), for every object moat builds: endpoint, uplink,
// bridge, sock, reap and probe. Destroying it closes the programs and map fds this process
// holds; what is pinned or attached stays, so the owner never detaches
// anything it did not create.
//
// Maps are shared between objects through pins: load_pinned() reuses every
// map already pinned in a directory and pins the ones that are not, so the
// object loaded first creates them; open_pinned_maps() opens the pinned maps
// without loading a program (for readers).
#pragma once

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bridge.skel.h"
#include "endpoint.skel.h"
#include "probe.skel.h"
#include "reap.skel.h"
#include "sock.skel.h"
#include "uplink.skel.h"
#include "util/fd.h"
#include "util/result.h"

namespace moat {

// max_entries by map name (plan/limits.h's MapSizes::by_map()).
using MapEntries = std::vector<std::pair<std::string, uint32_t>>;

// The max_entries of the map pinned at `path`, 0 when nothing is pinned there.
Result<uint32_t> pinned_max_entries(const std::string& path);

// A pin directory as bpffs holds it: the directory's inode and times and
// every entry's name and inode number. A pin is its own inode: unpinning
// and pinning anew gives the name another inode number (bpffs numbers its
// inodes from a counter) and sets the directory's mtime. Two equal stamps
// mean the same objects under the same names, unless the inode counter
// went round its 2^32 values within one tick of the directory's clock;
// a stamp taken before a check that the pins are ours vouches for them
// while it stays equal, for the cost of one directory read instead of
// opening every pin (45 maps: 135 system calls an apply).
struct PinDirStamp {
  uint64_t dir_ino = 0;
  int64_t mtime_s = 0, mtime_ns = 0, ctime_s = 0, ctime_ns = 0;
  std::vector<std::pair<std::string, uint64_t>> entries;  // sorted by name
  bool operator==(const PinDirStamp&) const = default;
};
// nullopt when the directory cannot be read.
std::optional<PinDirStamp> pin_dir_stamp(const std::string& dir);
// For a process that stamps the same directories again and again (the
// Docker agent, keep_kernel_handles()): each directory stamped is watched
// (inotify), and its last stamp is the answer while no event came and the
// path still names the directory watched. Off: every stamp reads the
// directory, and the watches are closed.
void watch_pin_dirs(bool on);

// bpftool names a skeleton's functions after its object; one specialisation
// per object maps them to one spelling.
template <class S>
struct SkeletonOps;

#define MOAT_SKELETON_OPS(obj)                                                 \
  template <>                                                                  \
  struct SkeletonOps<obj> {                                                    \
    static obj* open() { return obj##__open(); }                               \
    static int load(obj* s) { return obj##__load(s); }                         \
    static void destroy(obj* s) { obj##__destroy(s); }                         \
  };
MOAT_SKELETON_OPS(endpoint_bpf)
MOAT_SKELETON_OPS(uplink_bpf)
MOAT_SKELETON_OPS(sock_bpf)
MOAT_SKELETON_OPS(reap_bpf)
MOAT_SKELETON_OPS(bridge_bpf)
MOAT_SKELETON_OPS(probe_bpf)
#undef MOAT_SKELETON_OPS

// Quiets libbpf's expected complaints (an empty TC filter slot queried on
// purpose) unless MOAT_DEBUG is set; called before any object is opened.
void init_libbpf();

template <class S>
class Skeleton {
 public:
  Skeleton() = default;

  // Opened, nothing loaded: set pin paths or reuse fds, then load().
  static Result<Skeleton> open() {
    init_libbpf();
    Skeleton s;
    s.skel_.reset(SkeletonOps<S>::open());
    if (!s.skel_) return fail_errno("open BPF skeleton", errno);
    return s;
  }

  // Every map of the object pinned at `dir`/<map name>: reused when the pin
  // exists, at the size it has; created and pinned there by load()
  // otherwise, at its size in `sizes` (by map name) or its compiled one.
  Result<void> pin_maps_in(const std::string& dir, const MapEntries& sizes = {}) {
    bpf_map* m;
    bpf_object__for_each_map(m, skel_->obj) {
      std::string path = dir + "/" + bpf_map__name(m);
      if (int rc = bpf_map__set_pin_path(m, path.c_str()); rc)
        return fail_errno("set pin path " + path, rc);
      auto size = pinned_max_entries(path);
      if (!size) return std::unexpected(size.error());
      if (!*size)
        for (const auto& [name, n] : sizes)
          if (name == bpf_map__name(m)) *size = n;
      if (*size && bpf_map__max_entries(m) != *size)
        if (int rc = bpf_map__set_max_entries(m, *size); rc)
          return fail_errno("size map " + path, rc);
    }
    return {};
  }

  // Every map of the object from its pin at `dir`/<map name>, or those
  // named in `only`; fails when one is missing. A map not reused has no
  // file descriptor: libbpf's lookups and updates of it fail with ENOENT,
  // as for a key that is not there, so only the named maps may be used.
  Result<void> reuse_pinned_maps(const std::string& dir,
                                 std::span<const std::string_view> only = {}) {
    bpf_map* m;
    bpf_object__for_each_map(m, skel_->obj) {
      if (!only.empty() && std::find(only.begin(), only.end(), bpf_map__name(m)) == only.end())
        continue;
      std::string path = dir + "/" + bpf_map__name(m);
      Fd fd(bpf_obj_get(path.c_str()));
      if (!fd.ok()) return fail_errno("open pinned map " + path, errno);
      if (int rc = bpf_map__reuse_fd(m, fd.get()); rc) return fail_errno("reuse " + path, rc);
    }
    return {};
  }

  // Whether every map of the object is the very map pinned at
  // `dir`/<map name> (by id): nothing was unpinned or re-created since.
  // Our own maps' ids are asked once: an id stays with its map while we
  // hold it (the agent asks before every apply). The pins are opened only
  // when the directory's stamp differs from the one taken before the last
  // check that found them ours.
  // `taken`: the directory's stamp, when the caller took one before
  // reading any pin in this same pass (else it is taken here).
  bool same_pins(const std::string& dir,
                 const std::optional<PinDirStamp>& taken = std::nullopt) const {
    auto stamp = taken ? taken : pin_dir_stamp(dir);
    if (stamp && pins_checked_ && pins_dir_ == dir && *stamp == *pins_checked_) return true;
    pins_checked_.reset();
    if (!pins_opened(dir)) return false;
    if (stamp) pins_checked_ = std::move(stamp), pins_dir_ = dir;
    return true;
  }

  // Whether same_pins() would answer now from the directory's stamp alone,
  // opening no pin (for tests).
  bool pins_vouched_by_stamp(const std::string& dir) const {
    auto stamp = pin_dir_stamp(dir);
    return stamp && pins_checked_ && pins_dir_ == dir && *stamp == *pins_checked_;
  }

 private:
  bool pins_opened(const std::string& dir) const {
    bpf_map* m;
    if (map_ids_.empty()) {
      std::vector<uint32_t> ids;
      bpf_object__for_each_map(m, skel_->obj) {
        bpf_map_info b{};
        uint32_t lb = sizeof(b);
        if (bpf_obj_get_info_by_fd(bpf_map__fd(m), &b, &lb) != 0) return false;
        ids.push_back(b.id);
      }
      map_ids_ = std::move(ids);
    }
    size_t i = 0;
    bpf_object__for_each_map(m, skel_->obj) {
      Fd pinned(bpf_obj_get((dir + "/" + bpf_map__name(m)).c_str()));
      bpf_map_info a{};
      uint32_t la = sizeof(a);
      if (!pinned.ok() || bpf_obj_get_info_by_fd(pinned.get(), &a, &la) != 0 ||
          a.id != map_ids_[i++])
        return false;
    }
    return true;
  }

 public:
  // Every map of the object as the same-named map of `other` (already
  // loaded): how objects share maps without pins (the BPF tests).
  template <class O>
  Result<void> reuse_maps_of(const Skeleton<O>& other) {
    bpf_map* m;
    bpf_object__for_each_map(m, skel_->obj) {
      const bpf_map* theirs = bpf_object__find_map_by_name(other->obj, bpf_map__name(m));
      if (!theirs) return fail(std::string("no map ") + bpf_map__name(m) + " to share");
      if (int rc = bpf_map__reuse_fd(m, bpf_map__fd(theirs)); rc)
        return fail_errno(std::string("reuse map ") + bpf_map__name(m), rc);
    }
    return {};
  }

  Result<void> load() {
    if (int rc = SkeletonOps<S>::load(skel_.get()); rc) return fail_errno("load BPF programs", rc);
    return {};
  }

  S* get() const { return skel_.get(); }
  S* operator->() const { return skel_.get(); }
  explicit operator bool() const { return static_cast<bool>(skel_); }

 private:
  struct Destroy {
    void operator()(S* s) const { SkeletonOps<S>::destroy(s); }
  };
  std::unique_ptr<S, Destroy> skel_;
  mutable std::vector<uint32_t> map_ids_;  // same_pins()
  mutable std::optional<PinDirStamp> pins_checked_;
  mutable std::string pins_dir_;
};

// Programs loaded, maps reused from `pin_dir` or created and pinned there.
// Maps not pinned yet are made at their size in `sizes`.
template <class S>
Result<Skeleton<S>> load_pinned(const std::string& pin_dir, const MapEntries& sizes = {}) {
  auto s = Skeleton<S>::open();
  if (!s) return s;
  if (auto r = s->pin_maps_in(pin_dir, sizes); !r) return std::unexpected(r.error());
  if (auto r = s->load(); !r)
    return fail(r.error().message() + " for " + pin_dir +
                " (after an upgrade that changed a map layout, run `moat down` first)");
  return s;
}

// The maps pinned in `pin_dir` (those named in `only`, else all), no
// program loaded. Each map costs four system calls (40 maps of the
// endpoint object: 0.4 ms of a one-rule change, README stop 59).
template <class S>
Result<Skeleton<S>> open_pinned_maps(const std::string& pin_dir,
                                     std::span<const std::string_view> only = {}) {
  auto s = Skeleton<S>::open();
  if (!s) return s;
  if (auto r = s->reuse_pinned_maps(pin_dir, only); !r) return std::unexpected(r.error());
  return s;
}

}  // namespace moat
