// sweep.h - an instance's kernel objects found by what they are, not by
// what its record says: programs by the maps pinned for the instance, TC
// filters by the programs they run, in the network namespaces this process
// can reach. `moat down` removes what it finds here, so a lost, truncated
// or stale record (a crash, a hand-deleted file) leaves nothing behind, and
// `moat status` shows it when the record cannot be trusted.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "util/result.h"

namespace moat {

// The instance's programs: those pinned under its pin directory, and every
// loaded program that uses one of its pinned maps (an older generation
// still attached somewhere after a crash in the middle of an upgrade).
std::set<uint32_t> instance_prog_ids(const std::string& instance);

struct FoundFilter {
  std::string netns;  // /run/netns/NAME, or /proc/PID/ns/net for unnamed ones
  uint64_t netns_inode = 0;
  std::string ifname;
  int ifindex = 0;
  uint32_t ingress = 0, egress = 0;  // ids of our programs there, 0: none
};

// Where to look: always the current namespace, the one the record names and
// the named ones (/run/netns); those of every process too when the record
// cannot say where the instance lives (lost or damaged). Namespaces that are
// none of moat's business (other runtimes' containers) are entered only
// then, and only read unless they hold one of the instance's programs.
struct Where {
  std::string recorded_netns;  // "" when unknown
  bool processes = false;
};

// Interfaces whose filter slot runs one of `ours`.
Result<std::vector<FoundFilter>> find_filters(const std::set<uint32_t>& ours, const Where& where);

// Removes those filters. An interface's clsact qdisc goes too when no other
// filter is left on it, unless `keep_qdisc(netns_inode, ifname)` says moat did
// not create it. Returns what was removed.
Result<std::vector<FoundFilter>> remove_filters(
    const std::set<uint32_t>& ours, const Where& where,
    const std::function<bool(uint64_t netns_inode, const std::string& ifname)>& keep_qdisc);

nlohmann::json found_json(const std::vector<FoundFilter>& found);

}  // namespace moat
