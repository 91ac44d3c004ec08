// status.cpp - what an instance holds (`moat status`), reading the kernel
// first and the record for names; and `moat down`, which removes what the
// kernel holds for the instance, found by what it is (sweep.h).
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>

#include "dataplane/counters.h"
#include "dataplane/dataplane.h"
#include "dataplane/features.h"
#include "dataplane/host.h"
#include "dataplane/map_sync.h"
#include "dataplane/policy_gen.h"
#include "dataplane/programs.h"
#include "dataplane/reconcile.h"
#include "dataplane/skeleton.h"
#include "dataplane/sockhooks.h"
#include "dataplane/state.h"
#include "dataplane/sweep.h"
#include "dataplane/tc.h"
#include "plan/limits.h"
#include "util/fd.h"
#include "util/paths.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace moat {
namespace {

json programs_json(const std::string& instance) {
  json progs = json::array();
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(pin_dir(instance), ec)) {
    std::string file = e.path().filename();
    if (file.rfind("prog_", 0) != 0) continue;
    Fd fd(bpf_obj_get(e.path().c_str()));
    if (!fd.ok()) continue;
    auto info = prog_info(fd.get());
    if (!info) continue;
    char tag[17] = {};
    for (int i = 0; i < 8; ++i) snprintf(tag + 2 * i, 3, "%02x", info->tag[i]);
    progs.push_back({{"name", file.substr(5)},
                     {"id", info->id},
                     {"tag", tag},
                     {"pin", e.path().string()},
                     {"run_count", info->run_cnt},
                     {"run_time_ns", info->run_time_ns}});
  }
  return progs;
}

// What the kernel charges for the map behind `fd` (fdinfo's memlock, the
// map's own memory accounting since Linux 6.2), 0 when it does not say.
uint64_t map_memlock(int fd) {
  std::ifstream in("/proc/self/fdinfo/" + std::to_string(fd));
  std::string key;
  uint64_t value = 0;
  while (in >> key) {
    if (key == "memlock:") {
      in >> value;
      return value;
    }
    in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return 0;
}

// Every map with its size and memory; the policy generations (inner maps of
// the *_gens maps, made by userspace) are listed under their outer map.
json maps_json(const Skeleton<endpoint_bpf>& skel, const std::string& instance, uint64_t* total) {
  json map_list = json::array();
  bpf_map* m;
  bpf_object__for_each_map(m, skel->obj) {
    bpf_map_info info{};
    uint32_t len = sizeof(info);
    bpf_obj_get_info_by_fd(bpf_map__fd(m), &info, &len);
    uint64_t bytes = map_memlock(bpf_map__fd(m));
    json row = {{"name", bpf_map__name(m)},
                {"id", info.id},
                {"max_entries", info.max_entries},
                {"bytes", bytes},
                {"pin", pin_dir(instance) + "/" + bpf_map__name(m)}};
    if (info.type == BPF_MAP_TYPE_ARRAY_OF_MAPS) {
      json gens = json::array();
      for (uint32_t slot = 0; slot < info.max_entries; ++slot) {
        uint32_t id = 0;
        if (bpf_map_lookup_elem(bpf_map__fd(m), &slot, &id) != 0 || id == 0) continue;
        Fd inner(bpf_map_get_fd_by_id(id));
        if (!inner.ok()) continue;
        bpf_map_info ii{};
        uint32_t ilen = sizeof(ii);
        bpf_obj_get_info_by_fd(inner.get(), &ii, &ilen);
        uint64_t ib = map_memlock(inner.get());
        gens.push_back(
            {{"slot", slot}, {"id", id}, {"max_entries", ii.max_entries}, {"bytes", ib}});
        bytes += ib;
      }
      row["generations"] = gens;
    }
    *total += bytes;
    map_list.push_back(row);
  }
  return map_list;
}

// The state file's rows of interfaces (containers) or uplinks, with what the
// kernel holds for each: the program ids in our filter slots (only when run
// in the instance's namespace, where the names mean something) and counters.
Result<json> attachment_rows(const json& state_rows, const bpf_map* stats, bool same_ns,
                             bool uplink) {
  const std::pair<uint32_t, const char*> dirs[2] = {
      uplink ? std::pair{uint32_t{MOAT_DIR_FROM_WORLD}, "from_world"}
             : std::pair{uint32_t{MOAT_DIR_FROM_CONTAINER}, "from_container"},
      uplink ? std::pair{uint32_t{MOAT_DIR_TO_WORLD}, "to_world"}
             : std::pair{uint32_t{MOAT_DIR_TO_CONTAINER}, "to_container"}};
  json rows = json::array();
  for (const auto& i : state_rows) {
    json row = i;
    row.erase("qdisc_created");
    int idx = static_cast<int>(i.value("ifindex", 0u));
    if (same_ns)
      row["attached"] = {{"ingress", attached_prog_id(idx, BPF_TC_INGRESS)},
                         {"egress", attached_prog_id(idx, BPF_TC_EGRESS)}};
    json counters;
    for (auto [dir, name] : dirs) {
      auto s = read_stats(stats, row.value("stats_slot", 0u), dir);
      if (!s) return std::unexpected(s.error());
      counters[name] = stats_json(*s);
    }
    row["counters"] = counters;
    rows.push_back(row);
  }
  return rows;
}

// When the record cannot be trusted: what the kernel holds, found by what it
// is, and how to repair.
json damaged_status(const std::string& instance, const Error& why) {
  auto found = find_filters(instance_prog_ids(instance), {"", true});
  auto hooks = sock_hooks_status(pin_dir(instance));
  return {{"instance", instance},
          {"record",
           {{"ok", false},
            {"file", record_file(instance)},
            {"problem", why.message()},
            {"repair", repair_hint(instance)}}},
          {"pin_dir", pin_dir(instance)},
          {"pins_exist", fs::exists(pin_dir(instance))},
          {"programs", programs_json(instance)},
          {"filters", found ? found_json(*found) : json::array()},
          {"socket_hooks", hooks ? *hooks : json::array()}};
}

}  // namespace

Result<json> status(const std::string& instance) {
  if (auto r = settle(instance); !r) return damaged_status(instance, r.error());
  auto st = read_state(instance);
  if (!st) return damaged_status(instance, st.error());
  if (!fs::exists(pin_dir(instance)) && st->empty())
    return fail("no moat instance \"" + instance + "\" (nothing applied; see `moat apply --help`)");
  auto skel = open_pinned_maps<endpoint_bpf>(pin_dir(instance));
  if (!skel) return std::unexpected(skel.error());
  auto& maps = (*skel)->maps;
  auto eps = dump_map<uint32_t, moat_endpoint>(maps.endpoints);
  if (!eps) return std::unexpected(eps.error());

  bool same_ns = st->value("netns_inode", uint64_t{0}) == current_netns_inode();
  auto ifaces = attachment_rows(st->value("interfaces", json::array()), maps.stats, same_ns, false);
  if (!ifaces) return std::unexpected(ifaces.error());
  for (auto& row : *ifaces) row["in_map"] = eps->contains(key_bytes(row.value("ifindex", 0u)));
  auto uplinks = attachment_rows(st->value("uplinks", json::array()), maps.stats, same_ns, true);
  if (!uplinks) return std::unexpected(uplinks.error());
  auto hooks = sock_hooks_status(pin_dir(instance));
  if (!hooks) return std::unexpected(hooks.error());
  auto flows = ct_entries(instance);
  if (!flows) return std::unexpected(flows.error());
  auto rev = read_policy_rev(*skel->get());
  if (!rev) return std::unexpected(rev.error());
  json policy = st->value("policy", json::object());
  policy["revision"] = *rev;
  policy["recorded_revision"] = st->value("policy_rev", 0u);
  uint64_t map_bytes = 0;
  json map_rows = maps_json(*skel, instance, &map_bytes);
  std::vector<std::pair<std::string, uint32_t>> sizes;
  for (const auto& row : map_rows) sizes.emplace_back(row["name"], row["max_entries"]);
  auto limits = sizes_from_maps(sizes);

  return json{{"instance", instance},
              {"record", {{"ok", true}, {"file", record_file(instance)}}},
              {"policy", policy},
              {"source", st->value("source", "")},
              {"netns", st->value("netns_path", "")},
              {"pin_dir", pin_dir(instance)},
              {"programs", programs_json(instance)},
              {"maps", map_rows},
              {"memory",
               {{"map_bytes", map_bytes}, {"limits", limits ? limits->to_json() : json(nullptr)}}},
              {"networks", st->value("networks", json::array())},
              {"endpoints", *ifaces},
              {"endpoint_entries", eps->size()},
              {"uplinks", *uplinks},
              {"bridges", st->value("bridges", json::array())},
              {"published", st->value("published", json::array())},
              {"socket_hooks", *hooks},
              {"tracked_entries", flows->size()},
              {"kernel", kernel_features_json()}};
}

// Works from the kernel: the record (when readable) only says which clsact
// qdiscs were there before moat, so that those stay.
Result<void> down(const std::string& instance) {
  auto rec = read_record(instance);
  json st = rec ? rec->value("state", json::object()) : json::object();
  if (!rec)
    std::fprintf(stderr, "moat: %s; removing what the kernel holds for the instance instead\n",
                 rec.error().message().c_str());
  uint64_t home = st.value("netns_inode", uint64_t{0});
  std::set<std::string> theirs;  // interfaces whose clsact moat did not create
  for (const char* list : {"interfaces", "uplinks", "bridges"})
    for (const auto& i : st.value(list, json::array()))
      if (!i.value("qdisc_created", false)) theirs.insert(i.value("name", ""));
  // Without a readable record, the instance may live in any namespace.
  Where where{st.value("netns_path", std::string()), !rec || rec->empty()};
  auto removed = remove_filters(
      instance_prog_ids(instance), where,
      [&](uint64_t ino, const std::string& n) { return ino == home && theirs.contains(n); });
  if (!removed) return std::unexpected(removed.error());

  std::error_code ec;
  fs::remove_all(pin_dir(instance), ec);
  if (ec) return fail("remove " + pin_dir(instance), ec.value());
  fs::remove(paths::kPinRoot, ec);  // only if empty
  fs::remove_all(state_dir(instance), ec);
  if (ec) return fail("remove " + state_dir(instance), ec.value());
  fs::remove(paths::kRunDir, ec);  // only if empty
  return {};
}

Result<PinnedMaps> open_pinned(const std::string& instance) {
  if (!fs::exists(pin_dir(instance))) return fail("no moat instance \"" + instance + "\"");
  return open_pinned_maps<endpoint_bpf>(pin_dir(instance));
}

}  // namespace moat
