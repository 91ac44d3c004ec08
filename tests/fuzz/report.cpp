// report.cpp - text and JSON output, replay files (report.h).
#include "report.h"

#include <sstream>
#include <stdexcept>

namespace fuzz {

using nlohmann::json;

namespace {

std::string replay_command(const Finding& f, const RunIdentity& id) {
  return "moat_fuzz --seed " + std::to_string(f.seed) + " --case " + std::to_string(f.case_index) +
         (id.selection_args.empty() ? "" : " ") + id.selection_args;
}

json step_json(const PlayedStep& s) {
  if (s.rev) return {{"rev", s.variant}};
  json j = {{"hook", hook_name(s.hook)}, {"dev", s.dev},     {"ingress_dev", s.ingress_dev},
            {"frame", hex(s.frame)},     {"model", s.model}, {"kernel", s.kernel}};
  if (!s.mutation.empty()) j["mutation"] = s.mutation;
  return j;
}

}  // namespace

void print_finding(std::FILE* out, const Finding& f, size_t n, const RunIdentity& id,
                   const std::string& file) {
  if (f.replayed)
    std::fprintf(out, "\n=== %s #%zu: config %s, replayed\n", outcome_name(f.outcome), n,
                 f.config.c_str());
  else
    std::fprintf(out, "\n=== %s #%zu: config %s, seed %llu, case %llu (%s)\n",
                 outcome_name(f.outcome), n, f.config.c_str(), (unsigned long long)f.seed,
                 (unsigned long long)f.case_index, f.scenario.c_str());
  std::fprintf(out, "  model:  %s\n  kernel: %s\n", model_text(f.model).c_str(),
               kernel_text(f.kernel).c_str());
  if (!f.detail.empty()) std::fprintf(out, "  detail: %s\n", f.detail.c_str());
  std::fprintf(out, "  steps:\n");
  for (const auto& s : f.steps) {
    if (s.rev) {
      std::fprintf(out, "    rev %zu\n", s.variant);
      continue;
    }
    std::fprintf(out, "    step %s %s%s %s%s\n      model %s | kernel %s\n", hook_name(s.hook),
                 s.dev.c_str(),
                 s.ingress_dev.empty() ? "" : (" (entered by " + s.ingress_dev + ")").c_str(),
                 hex(s.frame).c_str(),
                 s.mutation.empty() ? "" : ("   (mutated: " + s.mutation + ")").c_str(),
                 s.model.c_str(), s.kernel.c_str());
  }
  std::fprintf(out, "  config: %s\n", f.config_json.dump().c_str());
  if (!f.replayed) std::fprintf(out, "  replay: %s\n", replay_command(f, id).c_str());
  if (!file.empty()) std::fprintf(out, "  replay: moat_fuzz --replay %s\n", file.c_str());
}

void print_summary(std::FILE* out, const Tally& t, const std::vector<Finding>& kept,
                   const std::map<Outcome, uint64_t>& cases_by_outcome, double seconds,
                   bool ipv6_rules) {
  (void)kept;
  std::fprintf(out,
               "\npackets %llu in %llu cases, %.1f s (%.0f packets/s); refused by "
               "BPF_PROG_TEST_RUN %llu\n",
               (unsigned long long)t.packets, (unsigned long long)t.cases, seconds,
               seconds > 0 ? double(t.packets) / seconds : 0.0, (unsigned long long)t.refused);
  std::fprintf(out, "fast path (from_container straight into a peer's namespace): %llu frames\n",
               (unsigned long long)t.fast_path);
  std::fprintf(out, "kernel verdicts:\n");
  for (const auto& [k, n] : t.kernel)
    std::fprintf(out, "  %10llu  %s\n", (unsigned long long)n, k.c_str());
  std::fprintf(out, "model verdicts:\n");
  for (const auto& [k, n] : t.model)
    std::fprintf(out, "  %10llu  %s\n", (unsigned long long)n, k.c_str());
  std::fprintf(out, "outcomes (packets; cases stop at their first disagreement):\n");
  for (const auto& [o, n] : t.outcomes) {
    const auto it = cases_by_outcome.find(o);
    std::fprintf(out, "  %10llu  %s%s\n", (unsigned long long)n, outcome_name(o),
                 it == cases_by_outcome.end()
                     ? ""
                     : (" (" + std::to_string(it->second) + " cases)").c_str());
  }
  std::fprintf(out, "  %10llu  both dropped, for different reasons\n",
               (unsigned long long)t.reason_mismatches);
  std::fprintf(out, "IPv6 frames %llu; their outcomes:\n", (unsigned long long)t.ipv6_packets);
  for (const auto& [o, n] : t.ipv6_outcomes)
    std::fprintf(out, "  %10llu  %s\n", (unsigned long long)n, outcome_name(o));
  std::fprintf(out, "IPv6 frames, model verdicts:\n");
  for (const auto& [k, n] : t.ipv6_model)
    std::fprintf(out, "  %10llu  %s\n", (unsigned long long)n, k.c_str());
  if (ipv6_rules) {
    std::fprintf(out, "IPv6 frames by hook, the model's rule and the kernel's verdict:\n");
    for (const auto& [k, n] : t.ipv6_rules)
      std::fprintf(out, "  %10llu  %s\n", (unsigned long long)n, k.c_str());
  }
  if (!t.groups.empty()) std::fprintf(out, "disagreements by verdicts:\n");
  for (const auto& [g, n] : t.groups)
    std::fprintf(out, "  %10llu  %s\n", (unsigned long long)n, g.c_str());
  if (!t.reason_pairs.empty()) std::fprintf(out, "different drop reasons:\n");
  for (const auto& [g, n] : t.reason_pairs)
    std::fprintf(out, "  %10llu  %s\n", (unsigned long long)n, g.c_str());
}

json summary_json(const Tally& t, const std::vector<Finding>& kept,
                  const std::map<Outcome, uint64_t>& cases_by_outcome, double seconds,
                  const RunIdentity& id, const std::vector<std::string>& files) {
  json outcomes = json::object(), cases = json::object();
  for (const auto& [o, n] : t.outcomes) outcomes[outcome_name(o)] = n;
  for (const auto& [o, n] : cases_by_outcome) cases[outcome_name(o)] = n;
  json findings = json::array();
  for (size_t i = 0; i < kept.size(); i++) {
    const Finding& f = kept[i];
    json steps = json::array();
    for (const auto& s : f.steps) steps.push_back(step_json(s));
    json j = {{"outcome", outcome_name(f.outcome)},
              {"config", f.config},
              {"seed", f.seed},
              {"case", f.case_index},
              {"scenario", f.scenario},
              {"model", model_text(f.model)},
              {"model_reason", f.model.reason},
              {"issue13_rule", f.model.new_rule},
              {"kernel", kernel_text(f.kernel)},
              {"detail", f.detail},
              {"steps", steps},
              {"config_json", f.config_json}};
    if (!f.replayed) j["replay"] = replay_command(f, id);
    if (i < files.size() && !files[i].empty()) j["replay_file"] = files[i];
    findings.push_back(j);
  }
  return {{"packets", t.packets},
          {"cases", t.cases},
          {"seconds", seconds},
          {"refused", t.refused},
          {"fast_path", t.fast_path},
          {"kernel_verdicts", t.kernel},
          {"model_verdicts", t.model},
          {"outcomes", outcomes},
          {"cases_by_outcome", cases},
          {"failures",
           t.outcomes.contains(Outcome::KernelPass) ? t.outcomes.at(Outcome::KernelPass) : 0},
          {"reason_mismatches", t.reason_mismatches},
          {"disagreement_groups", t.groups},
          {"reason_pairs", t.reason_pairs},
          {"ipv6_packets", t.ipv6_packets},
          {"ipv6_model_verdicts", t.ipv6_model},
          {"ipv6_rules", t.ipv6_rules},
          {"findings", findings}};
}

std::string replay_text(const Finding& f) {
  std::ostringstream o;
  o << "# moat_fuzz case: " << outcome_name(f.outcome) << ", config " << f.config << ", seed "
    << f.seed << ", case " << f.case_index << " (" << f.scenario << ")\n"
    << "# model:  " << model_text(f.model) << "\n# kernel: " << kernel_text(f.kernel) << "\n"
    << "# replay: moat_fuzz --replay THIS_FILE\n"
    << "config " << f.config_json.dump() << "\n"
    << "# The planned steps: replies and forwards are built again from what the kernel\n"
    << "# passes, so a masquerade port it picks anew is followed.\n";
  for (const auto& s : f.plan) o << "plan " << s.dump() << "\n";
  o << "# The frames as they were fed (a file of `step HOOK DEV HEX [INGRESS_DEV]` lines replays\n"
    << "# too; INGRESS_DEV: the veth a to_container frame entered the host by, none: the host):\n";
  for (const auto& s : f.steps) {
    if (s.rev)
      o << "#   rev " << s.variant << "\n";
    else
      o << "#   step " << hook_name(s.hook) << " " << s.dev << " " << hex(s.frame)
        << (s.ingress_dev.empty() ? "" : " " + s.ingress_dev) << "\n";
  }
  return o.str();
}

Replay read_replay(const std::string& text, const std::map<std::string, uint32_t>& ifindex) {
  Replay r;
  r.steps.scenario = "replay";
  bool have_config = false;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream words(line);
    std::string kind;
    words >> kind;
    if (kind == "config") {
      r.config = FuzzConfig::from_json(json::parse(line.substr(7)));
      have_config = true;
    } else if (kind == "plan") {
      r.steps.steps.push_back(step_from_json(json::parse(line.substr(5)), ifindex));
    } else if (kind == "rev") {
      Step s;
      s.kind = Step::Kind::Rev;
      words >> s.variant;
      r.steps.steps.push_back(s);
    } else if (kind == "step") {
      std::string hook, dev, hexed, ingress_dev;
      words >> hook >> dev >> hexed >> ingress_dev;
      const auto h = hook_from_name(hook);
      const auto frame = from_hex(hexed);
      if (!h || !frame || !ifindex.contains(dev))
        throw std::runtime_error("replay: bad step line: " + line);
      Step s;
      s.hook = *h;
      s.ifindex = ifindex.at(dev);
      s.frame = *frame;
      if (!ingress_dev.empty()) {
        if (!ifindex.contains(ingress_dev))
          throw std::runtime_error("replay: bad step line: " + line);
        s.ingress_ifindex = ifindex.at(ingress_dev);
      }
      r.steps.steps.push_back(s);
    } else {
      throw std::runtime_error("replay: unknown line: " + line);
    }
  }
  if (!have_config) throw std::runtime_error("replay: no config line");
  return r;
}

}  // namespace fuzz
