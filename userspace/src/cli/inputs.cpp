#include "cli/inputs.h"

#include "cli/common.h"
#include "dataplane/reconcile.h"

namespace moat::cli {

Config config_from_inputs(const Inputs& in) {
  auto loaded = moat::load_inputs(in);
  if (!loaded.config) die(problems_message(loaded.problems, loaded.file), 2);
  return std::move(*loaded.config);
}

Config load_config_text(const std::string& text, const std::string& path) {
  return config_from_inputs(Inputs{{{path, text}}, false, {}});
}

Config load_config(const std::string& path) { return load_config_text(read_file(path), path); }

Inputs read_inputs(const std::vector<std::string>& files, bool replace_policies) {
  Inputs in;
  in.replace_policies = replace_policies;
  for (const auto& f : files) in.files.push_back({f, read_file(f)});
  return in;
}

Config load_saved_inputs(const std::string& instance) {
  return config_from_inputs(check(moat::saved_inputs(instance)));
}

}  // namespace moat::cli
