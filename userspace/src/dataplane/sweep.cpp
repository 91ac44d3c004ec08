#include "dataplane/sweep.h"

#include <bpf/bpf.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <memory>

#include "dataplane/dataplane.h"
#include "dataplane/programs.h"
#include "dataplane/skeleton.h"
#include "dataplane/tc.h"
#include "util/fd.h"
#include "util/paths.h"

namespace fs = std::filesystem;

namespace moat {
namespace {

std::set<uint32_t> pinned_map_ids(const std::string& instance) {
  std::set<uint32_t> ids;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(pin_dir(instance), ec)) {
    std::string file = e.path().filename();
    if (file.rfind("prog_", 0) == 0 || file.rfind("link_", 0) == 0) continue;
    Fd fd(bpf_obj_get(e.path().c_str()));
    if (!fd.ok()) continue;
    bpf_map_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) == 0) ids.insert(info.id);
  }
  return ids;
}

bool uses_any(int prog_fd, const std::set<uint32_t>& maps) {
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(prog_fd, &info, &len) != 0 || info.nr_map_ids == 0) return false;
  std::vector<uint32_t> ids(info.nr_map_ids);
  bpf_prog_info again{};
  again.nr_map_ids = info.nr_map_ids;
  again.map_ids = reinterpret_cast<uintptr_t>(ids.data());
  len = sizeof(again);
  if (bpf_obj_get_info_by_fd(prog_fd, &again, &len) != 0) return false;
  ids.resize(std::min<size_t>(ids.size(), again.nr_map_ids));
  for (uint32_t id : ids)
    if (maps.contains(id)) return true;
  return false;
}

struct Netns {
  std::string path;
  uint64_t inode = 0;
};

// The network namespaces to look in, once each: the current one first, the
// recorded one, the named ones, then (when asked) those only a process holds.
std::vector<Netns> reachable_netns(const std::string& recorded, bool processes) {
  std::vector<Netns> out;
  std::set<std::pair<uint64_t, uint64_t>> seen;
  auto add = [&](const std::string& path) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) return;
    if (seen.insert({st.st_dev, st.st_ino}).second) out.push_back({path, st.st_ino});
  };
  add("/proc/self/ns/net");
  if (!recorded.empty()) add(recorded);
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(paths::kNetnsDir, ec)) add(e.path());
  if (!processes) return out;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    std::string pid = e.path().filename();
    if (pid.find_first_not_of("0123456789") == std::string::npos)
      add(e.path().string() + "/ns/net");
  }
  return out;
}

// Runs fn(netns) inside each reachable namespace, and comes back.
Result<void> in_each_netns(const Where& where,
                           const std::function<Result<void>(const Netns&)>& fn) {
  init_libbpf();  // most interfaces have no clsact qdisc: not worth a line each
  Fd home(open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!home.ok()) return fail_errno("open the current network namespace", errno);
  Result<void> result;
  for (const auto& ns : reachable_netns(where.recorded_netns, where.processes)) {
    Fd fd(open(ns.path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.ok() || setns(fd.get(), CLONE_NEWNET) != 0) continue;  // the process is gone
    std::string path = ns.path == "/proc/self/ns/net" ? "current" : ns.path;
    if (auto r = fn({path, ns.inode}); !r && result) result = r;
    if (setns(home.get(), CLONE_NEWNET) != 0)
      return fail_errno("return to the original network namespace", errno);
  }
  return result;
}

using Interfaces = std::unique_ptr<struct if_nameindex, decltype(&if_freenameindex)>;

}  // namespace

std::set<uint32_t> instance_prog_ids(const std::string& instance) {
  std::set<uint32_t> ours = pinned_prog_ids(instance);
  auto maps = pinned_map_ids(instance);
  if (maps.empty()) return ours;
  for (uint32_t id = 0; bpf_prog_get_next_id(id, &id) == 0;) {
    Fd fd(bpf_prog_get_fd_by_id(id));
    if (fd.ok() && uses_any(fd.get(), maps)) ours.insert(id);
  }
  return ours;
}

namespace {

// Our filters holding one of `ours` on every interface of every reachable
// namespace; removed (and the clsact qdiscs they leave empty, unless
// keep_qdisc) when `keep_qdisc` is given.
Result<std::vector<FoundFilter>> scan(
    const std::set<uint32_t>& ours, const Where& where,
    const std::function<bool(uint64_t, const std::string&)>* keep_qdisc) {
  std::vector<FoundFilter> found;
  if (ours.empty()) return found;
  auto r = in_each_netns(where, [&](const Netns& ns) -> Result<void> {
    Interfaces ifs(if_nameindex(), if_freenameindex);
    for (auto* i = ifs.get(); i && i->if_index; ++i) {
      int idx = static_cast<int>(i->if_index);
      FoundFilter f{ns.path,
                    ns.inode,
                    i->if_name,
                    idx,
                    attached_prog_id(idx, BPF_TC_INGRESS),
                    attached_prog_id(idx, BPF_TC_EGRESS)};
      f.ingress = ours.contains(f.ingress) ? f.ingress : 0;
      f.egress = ours.contains(f.egress) ? f.egress : 0;
      if (!f.ingress && !f.egress) continue;
      found.push_back(f);
      if (!keep_qdisc) continue;
      if (auto d = detach_at(idx, ours); !d) return std::unexpected(d.error());
      if ((*keep_qdisc)(ns.inode, f.ifname)) continue;
      auto left = clsact_filters(idx);
      if (!left) return std::unexpected(left.error());
      if (*left == 0)
        if (auto rc = remove_clsact(idx); !rc) return rc;
    }
    return {};
  });
  if (!r) return std::unexpected(r.error());
  return found;
}

}  // namespace

Result<std::vector<FoundFilter>> find_filters(const std::set<uint32_t>& ours, const Where& where) {
  return scan(ours, where, nullptr);
}

Result<std::vector<FoundFilter>> remove_filters(
    const std::set<uint32_t>& ours, const Where& where,
    const std::function<bool(uint64_t, const std::string&)>& keep_qdisc) {
  return scan(ours, where, &keep_qdisc);
}

nlohmann::json found_json(const std::vector<FoundFilter>& found) {
  auto rows = nlohmann::json::array();
  for (const auto& f : found)
    rows.push_back({{"netns", f.netns},
                    {"interface", f.ifname},
                    {"ifindex", f.ifindex},
                    {"ingress_prog", f.ingress},
                    {"egress_prog", f.egress}});
  return rows;
}

}  // namespace moat
