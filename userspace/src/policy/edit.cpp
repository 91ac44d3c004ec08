#include "policy/edit.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "config/reader.h"
#include "policy/read.h"
#include "util/text.h"

namespace moat {
namespace {

// One array or object open at the scanner's place. Keys are kept as
// written, escapes and all: a key spelt with an escape is no key this file
// knows, and its rule is read the long way.
struct Frame {
  bool array = false;
  size_t elements = 0;                          // arrays: values begun
  size_t value_start = std::string_view::npos;  // where the current value began
  std::string_view key;                         // objects: the current member's key
  bool expect_key = true;                       // objects: a string now is a key
};

// A scanner of JSON text: it needs no checks, only to know which value it
// is in. Up to the change it scans bytes the reader accepted before; past
// it, bytes nobody checked yet, so it stops (too_deep()) where the reader
// would refuse the nesting, and the rule it finds is read in full
// (read_rule_text()) before it is used.
class Scanner {
 public:
  // A byte order mark the JSON reader skips is skipped here too.
  explicit Scanner(std::string_view text) : text_(text) {
    if (text_.starts_with("\xEF\xBB\xBF")) at_ = 3;
  }

  // Scans up to offset `to` (not into a token that begins there). An array
  // or object that ends before `to` leaves no frame behind, so it is skipped
  // by its brackets alone (a rule: ten times faster than stepping through
  // its tokens), tried for up to kSkipTry bytes, so that the long lists
  // that hold `to` are not scanned twice.
  void run_to(size_t to) {
    while (at_ < to && at_ < text_.size()) {
      const char c = text_[at_];
      if ((c == '{' || c == '[') && !too_deep_) {
        const size_t end = close_of(at_, std::min(to, at_ + kSkipTry));
        if (end != std::string_view::npos) {
          begin_value(at_);
          at_ = end;
          ended_ = true;
          continue;
        }
      }
      step();
    }
  }

  // Scans on to the end of the value that begins next, in the innermost of
  // `level` frames; one past its last byte.
  size_t run_past_value(size_t level) {
    while (at_ < text_.size()) {
      step();
      if (frames_.size() == level && ended_) return at_;
    }
    return std::string_view::npos;
  }

  // How far it has scanned.
  size_t place() const { return at_; }
  // The most frames open at once so far.
  int deepest() const { return deepest_; }
  // More than kMaxNesting were open: the scan stopped there, as the
  // reader would refuse the text.
  bool too_deep() const { return too_deep_; }

  const std::vector<Frame>& frames() const { return frames_; }

 private:
  void begin_value(size_t at) {
    if (frames_.empty()) return;
    Frame& f = frames_.back();
    f.value_start = at;
    if (f.array) ++f.elements;
  }

  // One token; ended_ says whether a value of the innermost frame ended.
  void step() {
    ended_ = false;
    const char c = text_[at_];
    switch (c) {
      case ' ':
      case '\t':
      case '\n':
      case '\r':
        ++at_;
        return;
      case '{':
      case '[':
        if (frames_.size() >= static_cast<size_t>(kMaxNesting)) {
          too_deep_ = true;
          deepest_ = kMaxNesting + 1;
          at_ = text_.size();
          return;
        }
        begin_value(at_);
        frames_.emplace_back();
        frames_.back().array = c == '[';
        deepest_ = std::max(deepest_, static_cast<int>(frames_.size()));
        ++at_;
        return;
      // A close without an open: never trusted with memory.
      case '}':
      case ']':
        if (!frames_.empty()) frames_.pop_back();
        ++at_;
        ended_ = true;
        return;
      case ':':
        if (!frames_.empty()) frames_.back().expect_key = false;
        ++at_;
        return;
      case ',':
        if (!frames_.empty() && !frames_.back().array) frames_.back().expect_key = true;
        ++at_;
        return;
      case '"': {
        size_t end = string_end(at_);
        if (!frames_.empty() && !frames_.back().array && frames_.back().expect_key) {
          frames_.back().key = text_.substr(at_ + 1, end - at_ - 2);
        } else {
          begin_value(at_);
          ended_ = true;
        }
        at_ = end;
        return;
      }
      default: {  // a number, true, false, null; any other byte moves on too
        begin_value(at_);
        ++at_;
        while (at_ < text_.size() && !kEndsLiteral[static_cast<unsigned char>(text_[at_])]) ++at_;
        ended_ = true;
        return;
      }
    }
  }

  static constexpr size_t kSkipTry = 1 << 16;

  // One past the bracket that closes the array or object opening at
  // `open`, if it is before `limit`; npos if not. Its nesting counts as if
  // stepped through.
  size_t close_of(size_t open, size_t limit) {
    const char* p = text_.data();
    size_t depth = 0, peak = 0;
    for (size_t i = open; i < limit; ++i) {
      switch (p[i]) {
        case '{':
        case '[':
          peak = std::max(peak, ++depth);
          break;
        case '}':
        case ']':
          if (--depth > 0) break;
          if (frames_.size() + peak > static_cast<size_t>(kMaxNesting))
            return std::string_view::npos;  // stepped through, it stops where it is too deep
          deepest_ = std::max(deepest_, static_cast<int>(frames_.size() + peak));
          return i + 1;
        case '"':
          i = string_end(i) - 1;
          break;
        default:
          break;
      }
    }
    return std::string_view::npos;
  }

  // One past the closing quote of the string opening at `open`.
  size_t string_end(size_t open) const {
    size_t i = open + 1;
    for (;;) {
      const void* q = std::memchr(text_.data() + i, '"', text_.size() - i);
      if (!q) return text_.size();
      size_t at = static_cast<const char*>(q) - text_.data();
      size_t backslashes = 0;
      while (at - backslashes > open + 1 && text_[at - backslashes - 1] == '\\') ++backslashes;
      if (backslashes % 2 == 0) return at + 1;
      i = at + 1;
    }
  }

  // The bytes that end a number or true, false, null.
  static constexpr std::array<bool, 256> kEndsLiteral = [] {
    std::array<bool, 256> t{};
    for (unsigned char c : std::string_view(" \t\n\r,]}")) t[c] = true;
    return t;
  }();

  std::string_view text_;
  size_t at_ = 0;
  bool ended_ = false, too_deep_ = false;
  int deepest_ = 0;
  std::vector<Frame> frames_;
};

// The rule whose frames `f` are (the policy list's frame first), or
// nullopt: [policies array][policy object: ingress|egress][rule list], or
// the same with [policy object: spec][spec object: ingress|egress].
std::optional<RuleSpan> rule_of(const std::vector<Frame>& f, size_t list_level,
                                const std::string& policies_path) {
  const size_t n = f.size() - list_level;
  if (n != 3 && n != 4) return std::nullopt;
  const Frame& policies = f[list_level];
  const Frame& policy = f[list_level + 1];
  if (!policies.array || policy.array || policy.expect_key) return std::nullopt;
  RuleSpan span;
  span.policy_path = index_path(policies_path, policies.elements - 1);
  span.path = span.policy_path;
  const Frame* holder = &policy;
  if (n == 4) {
    const Frame& spec = f[list_level + 2];
    if (policy.key != "spec" || spec.array || spec.expect_key) return std::nullopt;
    span.kubernetes = true;
    span.path = key_path(span.path, "spec");
    holder = &spec;
  }
  if (holder->key != "ingress" && holder->key != "egress") return std::nullopt;
  span.dir = holder->key == "ingress" ? PolicyDirection::ingress : PolicyDirection::egress;
  const Frame& rules = f.back();
  if (!rules.array || rules.elements == 0 || rules.value_start == std::string_view::npos)
    return std::nullopt;
  span.index = rules.elements - 1;
  span.begin = rules.value_start;
  span.path = index_path(key_path(span.path, holder->key), span.index);
  span.depth = static_cast<int>(f.size());
  return span;
}

}  // namespace

std::optional<RuleSpan> find_changed_rule(const SplicedText& before, std::string_view after) {
  if (after.size() > kMaxInputBytes) return std::nullopt;  // the reader refuses it
  const size_t prefix = before.common_prefix(after);
  if (prefix == before.size() && prefix == after.size()) return std::nullopt;
  const size_t suffix = before.common_suffix(after, std::min(before.size(), after.size()) - prefix);
  bool more = false;
  return find_changed_rule_in(before.size(), after.size(), prefix, suffix, after, &more);
}

std::optional<RuleSpan> find_changed_rule_in(size_t before_size, size_t after_size, size_t prefix,
                                             size_t suffix, std::string_view head, bool* more) {
  *more = false;
  if (after_size > kMaxInputBytes) return std::nullopt;  // the reader refuses it
  if (prefix == before_size && prefix == after_size) return std::nullopt;
  if (head.size() > after_size || prefix > std::min(before_size, after_size) ||
      suffix > std::min(before_size, after_size) - prefix)
    return std::nullopt;
  // The scan reads only bytes before its place. Where its place reached the
  // end of a head shorter than the text, a token may go on past it: the
  // caller must give more (the scan of the whole text would have read on).
  const bool cut_short = head.size() < after_size;
  auto short_at = [&](size_t at) { return cut_short && at >= head.size(); };
  if (short_at(prefix)) {
    *more = true;
    return std::nullopt;
  }
  // Up to the first changed byte the texts are the same, so `after`'s
  // first bytes are scanned; `before` may be a blob in pieces.
  std::string_view after = head;
  Scanner scan(after);
  scan.run_to(prefix);
  if (scan.too_deep()) return std::nullopt;
  if (short_at(scan.place())) {
    *more = true;
    return std::nullopt;
  }
  // The frames at the first changed byte: the rule list's must be the
  // innermost but those inside the rule.
  const std::vector<Frame>& f = scan.frames();
  if (f.empty()) return std::nullopt;
  size_t list_level = 0;
  std::string policies_path;
  // One policy document alone (a NetworkPolicy as kubectl takes it): its
  // root is the policy, as if in a list of one that the paths do not name.
  const bool alone = !f[0].array && f[0].key != "policies";
  if (!f[0].array && !alone) {  // {"policies": [...]}
    if (f[0].expect_key || f.size() < 2) return std::nullopt;
    list_level = 1;
    policies_path = "policies";
  }
  // The rule list is the frame 2 or 3 below the policy list; try both.
  std::optional<RuleSpan> span;
  for (size_t depth : {list_level + 3, list_level + 4}) {
    // Deeper than the list: the change begins inside one of its values.
    if (!alone && f.size() <= depth) break;
    if (alone && f.size() <= depth - 1) break;
    std::vector<Frame> chain;
    if (alone) chain.push_back(Frame{.array = true, .elements = 1});
    chain.insert(chain.end(), f.begin(), f.begin() + static_cast<ptrdiff_t>(depth - alone));
    if ((span = rule_of(chain, list_level, policies_path))) break;
  }
  if (span && alone) {
    // "[0]" and "[0].spec.ingress[1]" are "" and "spec.ingress[1]" alone.
    span->policy_path.clear();
    span->path.erase(0, std::string_view("[0]").size());
    if (span->path.starts_with('.')) span->path.erase(0, 1);
    span->depth -= 1;
  }
  if (!span || span->begin > prefix || after[span->begin] != '{') return std::nullopt;
  // On to the new rule's end (the same value as the old one's, ending at
  // the same distance from the end, when both read as one value each, which
  // read_rule_text() checks): the change must end inside it too.
  const size_t end = scan.run_past_value(static_cast<size_t>(span->depth));
  if (!scan.too_deep() && short_at(end == std::string_view::npos ? head.size() : end)) {
    *more = true;
    return std::nullopt;
  }
  if (end == std::string_view::npos || prefix >= end || end < after_size - suffix)
    return std::nullopt;
  span->end_after = end;
  span->end_before = end + before_size - after_size;
  if (span->end_before <= span->begin) return std::nullopt;
  return span;
}

std::optional<PolicyRule> read_changed_rule(std::string_view after, const RuleSpan& span) {
  if (after.size() > kMaxInputBytes || span.end_after > after.size()) return std::nullopt;
  return read_rule_text(std::string(after.substr(span.begin, span.end_after - span.begin)), span);
}

std::optional<PolicyRule> read_rule_text(const std::string& text, const RuleSpan& span) {
  if (input_problem(text, true)) return std::nullopt;
  Problems problems(false);
  auto tree = parse_json(text, problems);
  if (!tree || !problems.empty()) return std::nullopt;
  // Nesting counts from the file's root, and the rule sits `depth` deep.
  Scanner scan(text);
  scan.run_to(text.size());
  if (span.depth + scan.deepest() > kMaxNesting) return std::nullopt;
  Reader r(problems);
  auto rule = policy_read::read_rule(r, *tree, span.path, span.dir, span.kubernetes);
  if (!rule || !problems.empty()) return std::nullopt;
  return rule;
}

const Policy* policy_of(const std::vector<Policy>& policies, const RuleSpan& span) {
  for (const Policy& p : policies) {
    if (p.path != span.policy_path) continue;
    const auto& rules = p.rules(span.dir);
    if (p.kubernetes != span.kubernetes || span.index >= rules.size() ||
        rules[span.index].path != span.path)
      return nullptr;
    return &p;
  }
  return nullptr;
}

bool policy_unchanged_by(const Policy& p, PolicyDirection dir, size_t index,
                         const PolicyRule& rule) {
  const auto& rules = p.rules(dir);
  if (index >= rules.size()) return false;
  const bool allow = rule.action == PolicyAction::allow;
  if (p.explicit_types) return p.kubernetes || p.isolates(dir) || !allow;
  if (p.kubernetes) return true;  // Ingress always, Egress when it has rules: still has
  bool has_allow = allow;
  for (size_t i = 0; i < rules.size() && !has_allow; ++i)
    has_allow = i != index && rules[i].action == PolicyAction::allow;
  return has_allow == p.isolates(dir);
}

}  // namespace moat
