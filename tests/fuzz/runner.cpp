// runner.cpp - loading a configuration and playing cases (runner.h).
#include "runner.h"

#include <cstdio>
#include <stdexcept>

#include "generator.h"
#include "mutate.h"

namespace fuzz {
namespace {

bool is_ipv6(const Bytes& f) { return f.size() >= 14 && get16(f, 12) == kEthIp6; }

std::string short_kernel(const KernelResult& k) {
  switch (kernel_verdict(k)) {
    case KernelVerdict::Drop:
      return kernel_text(k);
    case KernelVerdict::Redirect:
      return "redirect";
    case KernelVerdict::Pass:
      return "pass";
  }
  return "?";
}

std::string short_model(const Verdict& v) {
  switch (v.kind) {
    case Verdict::Kind::Pass:
      return "pass";
    case Verdict::Kind::Redirect:
      return "redirect";
    case Verdict::Kind::Drop:
      return "drop (" + v.reason + ")";
    case Verdict::Kind::Either:
      return "either";
  }
  return "?";
}

// IPv6 frames' disagreements are told apart: "IPv6 kernel-pass-model-drop | ...".
std::string group_of(const Bytes& frame, const Verdict& v, const KernelResult& k,
                     const Comparison& cmp) {
  return std::string(is_ipv6(frame) ? "IPv6 " : "") + outcome_name(cmp.outcome) + " | model " +
         short_model(v) + (v.new_rule ? " [issue 13 rule]" : "") + " | kernel " + short_kernel(k);
}

void count(Tally& t, Hook h, const Bytes& frame, const Verdict& v, const KernelResult& k,
           const Comparison& cmp) {
  t.kernel[short_kernel(k)]++;
  t.model[short_model(v)]++;
  t.outcomes[cmp.outcome]++;
  if (is_ipv6(frame)) {
    t.ipv6_packets++;
    t.ipv6_outcomes[cmp.outcome]++;
    t.ipv6_model[short_model(v)]++;
    t.ipv6_rules[std::string(hook_name(h)) + " " + short_model(v) + ": " + v.rule + " | kernel " +
                 short_kernel(k)]++;
  }
  if (is_disagreement(cmp.outcome)) t.groups[group_of(frame, v, k, cmp)]++;
  if (cmp.reason_differs) {
    t.reason_mismatches++;
    t.reason_pairs[std::string(is_ipv6(frame) ? "IPv6 " : "") + "model " + v.reason + " / kernel " +
                   kernel_text(k)]++;
  }
}

// from_container's fast path (bpf/lib/redirect.h) handed the frame to
// container `k.peer`'s namespace, skipping that one's to_container. Allowed
// only for a frame the sender's hook passes as it is, addressed to a
// container of the sender's network, which the model, at that container's
// to_container (stepped here, since the kernel no longer runs it; *dest),
// passes unchanged too.
Comparison fast_path(const Topology& topo, Model& model, uint32_t ifindex, const Verdict& v,
                     const KernelResult& k, Verdict* dest) {
  const AttInfo* from = topo.att_at(ifindex);
  const AttInfo* to = topo.att_at(k.peer);
  if (!from || !to || to->net != from->net || v.kind != Verdict::Kind::Pass || v.rewritten)
    return {Outcome::KernelPass, false,
            "fast path taken for a frame the sender's hook does not pass unchanged within one "
            "network"};
  if (k.out.size() < 34 || mac_at(k.out, 0) != to->mac || get32(k.out, 14 + 16) != to->ip)
    return {Outcome::KernelPass, false, "fast path to a container the frame is not addressed to"};
  *dest = model.step(Hook::ToContainer, k.peer, ifindex, k.out, &k.out);
  if (dest->kind != Verdict::Kind::Pass || dest->rewritten || dest->out != k.out)
    return {Outcome::KernelPass, false,
            "fast path taken where the destination's to_container would not pass it unchanged: " +
                model_text(*dest)};
  Verdict redirected = v;
  redirected.kind = Verdict::Kind::Redirect;
  return compare(k.out, redirected, k);
}

}  // namespace

void Runner::load(const FuzzConfig& fc) {
  fc_ = fc;
  std::string err;
  topo_ = std::make_unique<Topology>(Topology::build(fc, ifindex_, unknown_ifindex_, &err));
  if (!err.empty()) throw std::runtime_error("configuration " + fc.name + ": " + err);
  variants_.clear();
  for (const auto& policies : fc.variants) {
    nlohmann::json doc = fc.doc;
    doc["policies"] = policies;
    bool macs = false;
    auto cfg = parse_document(doc, &macs, &err);
    if (!cfg) throw std::runtime_error("configuration " + fc.name + ", a variant: " + err);
    variants_.push_back(std::move(*cfg));
  }
  pools_ = std::make_unique<Pools>(Pools::of(*topo_, variants_));
  model_ = std::make_unique<Model>(*topo_, variants_);
  dp_.seed(*topo_, variants_);
}

std::string Runner::device_of(uint32_t ifindex) const {
  for (const auto& [name, idx] : ifindex_)
    if (idx == ifindex) return name;
  return std::to_string(ifindex);
}

nlohmann::json Runner::plan_json(const Case& c, size_t upto) const {
  nlohmann::json out = nlohmann::json::array();
  for (size_t i = 0; i <= upto && i < c.steps.size(); i++)
    out.push_back(step_to_json(c.steps[i], device_of(c.steps[i].ifindex),
                               device_of(c.steps[i].ingress_ifindex)));
  return out;
}

std::optional<Finding> Runner::run_case(uint64_t seed, uint64_t index, Tally& tally, bool trace) {
  const Case c = plan_case(*topo_, *pools_, variants_.size(), mix(seed, index));
  auto f = play(c, tally, trace);
  if (f) {
    f->seed = seed;
    f->case_index = index;
  }
  return f;
}

namespace {

// Whether step `i` carries a blind sender's segment as Step::forge made it:
// the forged step itself or a forward of it, none of them mutated.
bool forged_step(const Case& c, size_t i) {
  for (int at = int(i); at >= 0; at = c.steps[size_t(at)].ref) {
    const Step& s = c.steps[size_t(at)];
    if (s.mutate) return false;
    if (s.kind != Step::Kind::Forward) return s.forge;
  }
  return false;
}

// The first TCP entry, present before and after, whose followed state
// changed ("" when none did): "old -> new".
std::string moved_mark(const std::map<std::string, std::string>& before,
                       const std::map<std::string, std::string>& after) {
  for (const auto& [key, mark] : before) {
    const auto now = after.find(key);
    if (now != after.end() && now->second != mark) return mark + " -> " + now->second;
  }
  return "";
}

}  // namespace

std::optional<Finding> Runner::play(const Case& c, Tally& tally, bool trace) {
  dp_.reset_case();
  model_->reset();
  tally.cases++;
  std::vector<Played> history(c.steps.size());
  std::vector<PlayedStep> steps;
  if (trace) std::printf("case: %s, %zu planned steps\n", c.scenario.c_str(), c.steps.size());
  for (size_t i = 0; i < c.steps.size(); i++) {
    const Step& s = c.steps[i];
    if (s.kind == Step::Kind::Rev) {
      dp_.switch_policy(s.variant);
      model_->switch_policy(s.variant);
      steps.push_back({true, s.variant, Hook::FromContainer, "", "", {}, "", "", ""});
      if (trace) std::printf("  [%zu] rev %zu\n", i, s.variant);
      continue;
    }
    auto r = resolve(*topo_, c, i, history);
    if (!r) continue;
    // What the fast path delivered arrives nowhere else: the destination's
    // to_container was judged (by the model) when the kernel redirected it.
    if (s.kind == Step::Kind::Forward && !s.mutate && s.ref >= 0 && history[s.ref].peer &&
        r->hook == Hook::ToContainer && r->ifindex == history[s.ref].peer) {
      history[i] = Played{true,  Hook::ToContainer, r->ifindex, r->ingress_ifindex, r->frame, true,
                          false, r->frame,          0};
      if (trace) std::printf("  [%zu] delivered by the fast path\n", i);
      continue;
    }
    std::string mutation;
    if (s.mutate) mutation = mutate(r->frame, s.mutate, *pools_);
    if (r->frame.size() < 14) continue;
    const uint32_t ingress = ingress_at(r->hook, r->ifindex, r->ingress_ifindex);
    // A blind sender's segment, at its first hook and wherever it is
    // forwarded (unmutated: a mutation may bring its seq back), must
    // change nothing conntrack follows of a TCP flow, whatever the
    // verdicts say.
    const bool forged = forged_step(c, i);
    const auto marks_before = forged ? dp_.tcp_marks() : std::map<std::string, std::string>{};
    const KernelResult k = dp_.run(r->hook, r->ifindex, ingress, r->frame);
    tally.packets++;
    if (k.err) {
      tally.refused++;
      tally.outcomes[Outcome::Refused]++;
      continue;
    }
    const bool kpass = kernel_verdict(k) != KernelVerdict::Drop;
    Verdict v = model_->step(r->hook, r->ifindex, ingress, r->frame, kpass ? &k.out : nullptr);
    const bool fast = r->hook == Hook::FromContainer &&
                      kernel_verdict(k) == KernelVerdict::Redirect && k.peer &&
                      k.peer != r->ifindex;
    Verdict dest;
    Comparison cmp =
        fast ? fast_path(*topo_, *model_, r->ifindex, v, k, &dest) : compare(r->frame, v, k);
    if (forged) {
      const std::string moved = moved_mark(marks_before, dp_.tcp_marks());
      if (!moved.empty())
        cmp = {Outcome::ForgedClose, false,
               "a segment with seq and ack half the sequence space away changed a TCP entry: " +
                   moved};
    }
    if (fast && cmp.outcome == Outcome::KernelPass) v = dest;
    if (fast) tally.fast_path++;
    count(tally, r->hook, r->frame, v, k, cmp);
    history[i] = Played{true,
                        r->hook,
                        r->ifindex,
                        r->ingress_ifindex,
                        r->frame,
                        kpass,
                        kernel_verdict(k) == KernelVerdict::Redirect,
                        k.out,
                        fast ? k.peer : 0};
    const std::string via =
        r->hook == Hook::ToContainer && ingress ? device_of(ingress) : std::string();
    steps.push_back({false, 0, r->hook, device_of(r->ifindex), via, r->frame, mutation,
                     model_text(v), kernel_text(k)});
    if (trace)
      std::printf("  [%zu] %s %s%s%s %s\n       model:  %s\n       kernel: %s -> %s\n", i,
                  hook_name(r->hook), device_of(r->ifindex).c_str(),
                  via.empty() ? "" : (" (entered by " + via + ")").c_str(),
                  mutation.empty() ? "" : (" mutated " + mutation).c_str(), hex(r->frame).c_str(),
                  model_text(v).c_str(), kernel_text(k).c_str(), outcome_name(cmp.outcome));
    if (!is_disagreement(cmp.outcome)) continue;
    Finding f;
    f.outcome = cmp.outcome;
    f.config = fc_.name;
    f.config_json = fc_.to_json();
    f.scenario = c.scenario;
    f.steps = std::move(steps);
    f.plan = plan_json(c, i);
    f.model = v;
    f.kernel = k;
    f.detail = cmp.detail;
    f.group = group_of(r->frame, v, k, cmp);
    return f;
  }
  return std::nullopt;
}

}  // namespace fuzz
