// inputs.h - the files an instance is applied from, in order: the main
// file, then policy files merged into it. Kept with the instance's state so
// that explain, `policy list` and `lab probe` judge exactly what the kernel
// holds. Pure: reading files from disk is the caller's business.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"

namespace moat {

struct InputFile {
  std::string name;  // as given, for messages
  std::string text;
};

struct Inputs {
  std::vector<InputFile> files;  // the main file first
  // The main file's own policies are dropped when policy files follow (`moat
  // lab apply` puts other policies on the lab's topology).
  bool replace_policies = false;
  // What a producer that updates the instance piece by piece (a CNI plugin,
  // one attachment per call) keeps to build the next files from: saved with
  // them in one record, so the two cannot disagree. Null for `moat apply`.
  nlohmann::json producer;
};

struct LoadedInputs {
  std::optional<Config> config;   // set only when problems is empty
  std::string file;               // the file the problems are in
  std::vector<Problem> problems;  // of the first file that has any
};

// The main file plus the policy files merged into it.
LoadedInputs load_inputs(const Inputs& in);

// Every problem, one per line, then "N problem(s) in FILE; nothing was applied".
std::string problems_message(const std::vector<Problem>& problems, const std::string& file);

nlohmann::json inputs_json(const Inputs& in);
// nullopt (and *why) when `j` is not what inputs_json() writes.
std::optional<Inputs> inputs_from_json(const nlohmann::json& j, std::string* why);

}  // namespace moat
