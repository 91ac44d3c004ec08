// inputs.h - an instance's input files at the CLI edge: read from disk,
// loaded through config/inputs.h, problems turned into exit code 2. Saving
// them is reconcile()'s (dataplane/reconcile.h), with the state they made.
#pragma once

#include <string>
#include <vector>

#include "config/config.h"
#include "config/inputs.h"
#include "util/fd.h"

namespace moat::cli {

Config load_config_text(const std::string& text, const std::string& path);
Config load_config(const std::string& path);

// The files, read in order: the main file, then policy files.
Inputs read_inputs(const std::vector<std::string>& files, bool replace_policies = false);
// An apply's files, when it may change one rule: those of kUnreadBytes or
// more opened, not read. reconcile_one_rule() compares them with the
// recorded ones a window at a time (`unread_fds()`); a whole apply reads
// them first (read_rest()).
inline constexpr size_t kUnreadBytes = size_t{1} << 20;
struct OpenedInputs {
  Inputs inputs;           // the texts of the files read; empty for the others
  std::vector<Fd> unread;  // per file: open when not read
  std::vector<int> unread_fds() const;
  // A file read already, put first (`lab apply`'s lab file).
  void put_first(InputFile f);
};
OpenedInputs open_inputs(const std::vector<std::string>& files, bool replace_policies = false);
// Every file's text; exit 2 when one cannot be read.
Inputs read_rest(OpenedInputs in);
// The main file plus the policy files merged into it; exit 2 on a problem.
Config config_from_inputs(const Inputs& in);
// What the instance was last reconciled from (explain, policy list, probes).
Config load_saved_inputs(const std::string& instance);

}  // namespace moat::cli
