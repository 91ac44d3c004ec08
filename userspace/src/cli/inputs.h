// inputs.h - an instance's input files at the CLI edge: read from disk,
// loaded through config/inputs.h, problems turned into exit code 2. Saving
// them is reconcile()'s (dataplane/reconcile.h), with the state they made.
#pragma once

#include <string>
#include <vector>

#include "config/config.h"
#include "config/inputs.h"

namespace moat::cli {

Config load_config_text(const std::string& text, const std::string& path);
Config load_config(const std::string& path);

// The files, read in order: the main file, then policy files.
Inputs read_inputs(const std::vector<std::string>& files, bool replace_policies = false);
// The main file plus the policy files merged into it; exit 2 on a problem.
Config config_from_inputs(const Inputs& in);
// What the instance was last reconciled from (explain, policy list, probes).
Config load_saved_inputs(const std::string& instance);

}  // namespace moat::cli
