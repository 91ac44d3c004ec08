// state.h - an instance's record on disk, /run/moat/<instance>/: what the
// kernel cannot tell us (names of interfaces, ids given to networks and
// containers, which qdiscs moat created, the files applied). Written only
// after the kernel holds what it says, always as a whole (temporary file +
// rename), so a crash leaves the old record or the new one, never half.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "plan/plan.h"
#include "util/result.h"

namespace moat {

std::string state_file(const std::string& instance);  // <state_dir>/state.json

// {} when the instance has no record.
Result<nlohmann::json> read_state(const std::string& instance);
Result<void> write_state(const std::string& instance, const nlohmann::json& st);

// `text` into `path` through `path`.tmp and rename(2), after an fsync of
// the data: readers see the old or the new content, never a truncated file.
Result<void> write_file_atomic(const std::string& path, const std::string& text);

// The ids a previous apply gave, so a changed file rewrites only what changed.
IdTable ids_from_state(const nlohmann::json& st);

}  // namespace moat
