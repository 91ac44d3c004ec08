#include "config/inputs.h"

#include <sstream>
#include <utility>

#include "policy/policy.h"

namespace moat {

LoadedInputs load_inputs(const Inputs& in) {
  LoadedInputs out;
  if (in.files.empty()) {
    out.problems.push_back({"", "no file given"});
    return out;
  }
  const auto& main = in.files.front();
  auto res = parse_config(main.text, main.name);
  if (!res.problems.empty()) {
    out.file = main.name;
    out.problems = std::move(res.problems);
    return out;
  }
  Config cfg = std::move(*res.config);
  if (in.replace_policies && in.files.size() > 1) cfg.policies.clear();
  for (size_t i = 1; i < in.files.size(); ++i) {
    const auto& f = in.files[i];
    auto pf = parse_policy_file(f.text, f.name);
    auto problems =
        pf.problems.empty() ? merge_policy_file(cfg, std::move(*pf.file)) : std::move(pf.problems);
    if (!problems.empty()) {
      out.file = f.name;
      out.problems = std::move(problems);
      return out;
    }
  }
  out.config = std::move(cfg);
  return out;
}

std::string problems_message(const std::vector<Problem>& problems, const std::string& file) {
  std::ostringstream msg;
  for (size_t i = 0; i < problems.size(); ++i) msg << (i ? "\n" : "") << problems[i].format(file);
  msg << "\n"
      << problems.size() << " problem" << (problems.size() == 1 ? "" : "s") << " in " << file
      << "; nothing was applied";
  return msg.str();
}

nlohmann::json inputs_json(const Inputs& in) {
  nlohmann::json files = nlohmann::json::array();
  for (const auto& f : in.files) files.push_back({{"name", f.name}, {"text", f.text}});
  nlohmann::json j = {{"files", files}, {"replace_policies", in.replace_policies}};
  if (!in.producer.is_null()) j["producer"] = in.producer;
  return j;
}

std::optional<Inputs> inputs_from_json(const nlohmann::json& j, std::string* why) {
  Inputs in;
  try {
    for (const auto& f : j.at("files"))
      in.files.push_back({f.at("name").get<std::string>(), f.at("text").get<std::string>()});
    in.replace_policies = j.value("replace_policies", false);
    if (j.contains("producer")) in.producer = j["producer"];
  } catch (const nlohmann::json::exception& e) {
    if (why) *why = e.what();
    return std::nullopt;
  }
  if (in.files.empty()) {
    if (why) *why = "no files";
    return std::nullopt;
  }
  return in;
}

}  // namespace moat
