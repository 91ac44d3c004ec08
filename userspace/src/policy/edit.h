// edit.h - one rule changed in a JSON policy file, found and read without
// reading the rest of the file: the input side of changing one rule of
// 100,000 (PolicyCompiler, policy.h, is the compile side). Pure code.
//
// A file the reader accepted (`before`) and its new text (`after`) share a
// prefix and a suffix. When the bytes between them lie inside one element
// of one policy's `ingress` or `egress` list, and that element's new text
// is one JSON value on its own, the new file is the old one with that rule
// replaced: JSON is read the same way whatever comes before a value, so
// nothing outside the element can read differently. Anything else (a
// change across rules, outside a rule list, in YAML, or a rule with
// problems) is nullopt: the caller reads the whole file, which also says
// what is wrong with it.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/model.h"
#include "util/spliced.h"

namespace moat {

// Where the changed rule is.
struct RuleSpan {
  // The policy's place in the file (Policy::path): "policies[2]", "[0]",
  // "" for a policy document alone.
  // Not an index into the file's policies: a List before it holds any
  // number of them.
  std::string policy_path;
  PolicyDirection dir = PolicyDirection::ingress;
  size_t index = 0;         // in the policy's list of `dir`
  bool kubernetes = false;  // a NetworkPolicy's rule (under "spec")
  size_t begin = 0;         // its first byte, in both texts
  size_t end_after = 0;     // one past its last byte in `after`
  // ... and in `before`, if the old rule is one value there too, which
  // only reading it tells (read_rule_text()): found in `after`, the span
  // ends at the same distance from the end in both.
  size_t end_before = 0;
  int depth = 0;            // arrays and objects holding it
  std::string path;         // as the reader names it: "policies[0].spec.ingress[3]"
};

// The rule the change between `before` and `after` is inside of, if it is
// inside one. `before` must be a JSON policy file the reader accepted whose
// root is {"policies": [...]}, an array of policies or one policy (a
// NetworkPolicy as kubectl takes it); the caller sees to
// it that the reader takes both texts for JSON (looks_like_yaml() false for
// their name).
// `before` may be in pieces (a recorded blob and its patch). The rule's
// span is found in `after`, which nothing has checked yet: the new file
// is the old one with that rule replaced only when both rules read as one
// value each, so a caller reads both, the new with read_changed_rule() and
// the old with read_rule_text() of before[begin, end_before).
std::optional<RuleSpan> find_changed_rule(const SplicedText& before, std::string_view after);
// The same, with `after` not whole in memory: the caller compared the two
// texts (their sizes; `prefix` and `suffix`, the bytes they share at the
// start and then at the end, as util/windowed.h's shared_ends() counts
// them) and gives `after`'s first bytes, `head`. The span is the one the
// whole text gives, or nullopt with *more set: the scan needs bytes past
// `head` (call again with a longer one).
std::optional<RuleSpan> find_changed_rule_in(size_t before_size, size_t after_size, size_t prefix,
                                             size_t suffix, std::string_view head, bool* more);

// The rule of `span` read from `after` as parse_policy_file() would read it
// there; nullopt when it has any problem (the whole file's reading says
// which).
std::optional<PolicyRule> read_changed_rule(std::string_view after, const RuleSpan& span);
// The same, of the rule's own text (the old rule: its bytes in `before`).
std::optional<PolicyRule> read_rule_text(const std::string& text, const RuleSpan& span);

// Whether the policy `p` (read from `before`) keeps its isolation, and
// gets no problem of its own, with rule `index` of `dir` replaced by
// `rule`: else the whole file must be read again.
bool policy_unchanged_by(const Policy& p, PolicyDirection dir, size_t index,
                         const PolicyRule& rule);

// The policy of `policies` that `span` names (by its path), if it has the
// rule there: what the caller changes.
const Policy* policy_of(const std::vector<Policy>& policies, const RuleSpan& span);

}  // namespace moat
