// events.h - flow and drop events of the ring buffer as JSON and as lines
// for people, and the filters of `moat flows`. Pure. Part of observe.h.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "abi.h"
#include "observe/names.h"

namespace moat::obs {

// `wall_offset_ns`: wall clock minus the data path's clock (datapath_now_ns()),
// to print event times as wall-clock times.
nlohmann::json event_json(const moat_event& ev, const Names& names, int64_t wall_offset_ns);
// One line for people, from event_json()'s output (`utc`: times in UTC, not local).
std::string event_text(const nlohmann::json& ev, bool utc = false);
int64_t wall_offset_ns();

struct FlowFilter {
  std::string container;        // the event involves it (interface, or either end)
  std::optional<bool> dropped;  // --verdict
  std::string reason;           // drop reason name (implies dropped)
};
bool matches(const nlohmann::json& ev, const FlowFilter& f);
// Empty when fine, else why (for exit code 2).
std::string check_filter(const FlowFilter& f);

}  // namespace moat::obs
