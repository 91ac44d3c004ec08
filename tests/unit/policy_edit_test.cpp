// Unit tests for finding and reading one changed rule of a policy file
// (policy/edit.h) without reading the rest: on generated policy files,
// changed rule by rule and byte by byte, what the fast way reads must be
// what reading the whole changed file gives, and a change it cannot vouch
// for must not be taken.
#include <gtest/gtest.h>

#include <optional>
#include <random>
#include <string>
#include <vector>

#include "config/config.h"
#include "policy/edit.h"
#include "policy_generator.h"

namespace moat {
namespace {

using namespace testgen;

// A policy as the tests compare it: everything read, rules by their text.
std::string describe_policy(const Policy& p) {
  std::string out =
      p.id() + " " + p.pod_selector.str() + " in=" + std::to_string(p.isolates_ingress) +
      " eg=" + std::to_string(p.isolates_egress) + " types=" + std::to_string(p.explicit_types) +
      " k8s=" + std::to_string(p.kubernetes) + " " + p.source + " " + p.path + " " + p.name_path;
  for (PolicyDirection d : {PolicyDirection::ingress, PolicyDirection::egress})
    for (const PolicyRule& r : p.rules(d)) out += "\n  " + r.path + ": " + r.str(d);
  return out;
}

std::string describe_file(const PolicyFile& f) {
  std::string out;
  for (const Policy& p : f.policies) out += describe_policy(p) + "\n";
  for (const NamespaceDef& n : f.namespaces) out += "ns " + n.name + "\n";
  return out;
}

// The text of a policy file in one of the ways people and tools write it.
std::string render(const Json& policies, int style) {
  const Json doc = style % 2 ? policies : Json{{"policies", policies}};
  switch (style / 2) {
    case 0:
      return doc.dump();
    case 1:
      return doc.dump(2);
    default:
      return doc.dump(1, '\t') + "\n";
  }
}

// `text` with its first `from` replaced by `to`.
std::string replaced(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from << " in " << text;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

// What the reader makes of `text`, which must have no problem.
std::optional<PolicyFile> accepted(const std::string& text) {
  PolicyFileResult read = parse_policy_file(text, "p.json");
  EXPECT_TRUE(read.problems.empty() && read.file) << text;
  if (!read.problems.empty()) return std::nullopt;
  return std::move(read.file);
}

struct Counts {
  int found = 0, taken = 0, refused_by_policy = 0, not_found = 0;
};

std::string describe_span(const std::optional<RuleSpan>& s) {
  if (!s) return "none";
  return s->path + " " + s->policy_path + " " + std::to_string(static_cast<int>(s->dir)) + " " +
         std::to_string(s->index) + " k8s=" + std::to_string(s->kubernetes) + " " +
         std::to_string(s->begin) + "-" + std::to_string(s->end_after) + "/" +
         std::to_string(s->end_before) + " depth " + std::to_string(s->depth);
}

// How often a head was too short and the scan asked for more (the tests
// that count on the asking check that it happened).
int g_asked_more = 0;

// What reconcile does with an input file it has not read: the span from
// the file's first bytes, a little past the first change, then twice as
// many while the scan asks for more, must be the whole text's span. Each
// head is a copy of its own, so that nothing past it is there to be read.
void expect_heads_agree(const std::string& before, const std::string& after,
                        const std::string& what) {
  const auto whole = find_changed_rule(before, after);
  const SplicedText b(before);
  const size_t prefix = b.common_prefix(after);
  const size_t suffix = b.common_suffix(after, std::min(before.size(), after.size()) - prefix);
  for (size_t start : {size_t{1}, size_t{7}, size_t{64} << 10}) {
    std::optional<RuleSpan> span;
    bool more = true;
    int asked = 0;
    for (size_t want = prefix + start;; want *= 2, ++asked) {
      const std::string head = after.substr(0, std::min(want, after.size()));
      span = find_changed_rule_in(before.size(), after.size(), prefix, suffix, head, &more);
      if (!more || head.size() == after.size()) break;
      ++g_asked_more;
    }
    EXPECT_EQ(describe_span(span), describe_span(whole))
        << "from " << start << ", " << asked << " more: " << what;
  }
}

// `after` against `before` (read as `file`): what the fast way finds and
// reads must agree with reading `after` whole.
void check_edit(const std::string& before, const PolicyFile& file, const std::string& after,
                const std::string& what, Counts& n) {
  expect_heads_agree(before, after, what);
  auto span = find_changed_rule(before, after);
  PolicyFileResult whole = parse_policy_file(after, "p.json");
  const bool whole_ok = whole.problems.empty() && whole.file;
  if (!span) {
    n.not_found++;
    return;
  }
  n.found++;
  const Policy* named = policy_of(file.policies, *span);
  ASSERT_TRUE(named) << what << ": " << span->path;
  const size_t pi = static_cast<size_t>(named - file.policies.data());
  const Policy& old = *named;
  auto rule = read_changed_rule(after, *span);
  // The old rule must read as one value too: the span's end was found in
  // `after`, and only both texts reading as one rule each make `after` the
  // old file with that rule replaced (reconcile's one-rule path reads both).
  auto old_rule = read_rule_text(before.substr(span->begin, span->end_before - span->begin), *span);
  if (!rule || !old_rule) {
    // Refused: fine only if the file has a problem or the fast way cannot
    // tell (it may be conservative, never wrong).
    return;
  }
  const bool unchanged = policy_unchanged_by(old, span->dir, span->index, *rule);
  if (!whole_ok) {
    EXPECT_FALSE(unchanged) << what << ": the whole file has problems, the rule read";
    return;
  }
  if (!unchanged) {
    n.refused_by_policy++;
    const Policy& now = whole.file->policies.at(pi);
    EXPECT_NE(now.isolates(span->dir), old.isolates(span->dir)) << what;
    return;
  }
  n.taken++;
  PolicyFile patched = file;
  Policy& p = patched.policies[pi];
  (span->dir == PolicyDirection::ingress ? p.ingress : p.egress)[span->index] = *rule;
  EXPECT_EQ(describe_file(patched), describe_file(*whole.file)) << what;
}

// Generated policy files, each rule replaced by another generated one (half
// of them keeping the old one's peers), in three layouts and both roots.
TEST(RuleEdit, AReplacedRuleReadsAsTheWholeFile) {
  std::mt19937 rng(4242);
  Counts n;
  int files = 0;
  for (int i = 0; i < 300; ++i) {
    Json policies = random_policies(rng, i);
    const int style = static_cast<int>(rng() % 6);
    const std::string before = render(policies, style);
    PolicyFileResult read = parse_policy_file(before, "p.json");
    if (!read.problems.empty() || !read.file) continue;
    files++;
    for (int step = 0; step < 8; ++step) {
      auto change = change_one_rule(rng, policies, false);
      if (!change) break;
      const size_t pi = change->policy, k = change->index;
      const int d = change->dir;
      Json next = std::move(change->policies);
      const std::string after = render(next, style);
      if (after == before) continue;
      const std::string what = "file " + std::to_string(i) + " step " + std::to_string(step) +
                               ":\n" + before + "\n->\n" + after;
      // A rule changed in place: it must be found, and be that rule.
      auto span = find_changed_rule(before, after);
      ASSERT_TRUE(span.has_value()) << what;
      EXPECT_EQ(span->policy_path, (style % 2 ? "" : "policies") + ("[" + std::to_string(pi) + "]"))
          << what;
      EXPECT_EQ(span->dir == PolicyDirection::ingress ? 0 : 1, d) << what;
      EXPECT_EQ(span->index, k) << what;
      check_edit(before, *read.file, after, what, n);
      if (HasFailure()) return;
    }
  }
  EXPECT_GE(files, 200);
  EXPECT_GE(n.taken, 600);
  EXPECT_GE(n.refused_by_policy, 20);
  EXPECT_GE(g_asked_more, 1000) << "heads too short were not asked for more";
}

// Bytes changed, inserted or removed anywhere: whatever the fast way takes
// must be what reading the whole file gives.
TEST(RuleEdit, ABytesChangeIsTakenOnlyWhenTheWholeFileAgrees) {
  std::mt19937 rng(777);
  const std::string alphabet = "{}[]\",:0123456789 \n\\abcdefnrtuxyzTCPUDPfromtoportsdeny-/.";
  Counts n;
  for (int i = 0; i < 200; ++i) {
    Json policies = random_policies(rng, i);
    const std::string before = render(policies, static_cast<int>(rng() % 6));
    PolicyFileResult read = parse_policy_file(before, "p.json");
    if (!read.problems.empty() || !read.file) continue;
    for (int step = 0; step < 40; ++step) {
      std::string after = before;
      const size_t at = rng() % after.size();
      const int kind = static_cast<int>(rng() % 4);
      const char c = alphabet[rng() % alphabet.size()];
      if (kind == 0) after[at] = c;
      if (kind == 1) after.insert(after.begin() + static_cast<ptrdiff_t>(at), c);
      if (kind == 2) after.erase(at, 1 + rng() % 4);
      if (kind == 3) {  // a digit of a number changed: ports, mostly
        size_t digit = after.find_first_of("0123456789", at);
        if (digit == std::string::npos) continue;
        after[digit] = static_cast<char>('0' + rng() % 10);
      }
      check_edit(before, *read.file, after, "file " + std::to_string(i) + ": " + after, n);
      if (HasFailure()) return;
    }
  }
  EXPECT_GE(n.found, 1000);
  EXPECT_GE(n.taken, 300);
  EXPECT_GE(n.not_found, 1000);
}

// Changes the fast way must leave to the whole reading.
TEST(RuleEdit, ChangesOutsideOneRuleAreNotFound) {
  const Json policies =
      J("[{'name': 'p', 'podSelector': {'matchLabels': {'pod': 'a'}},"
        "  'ingress': [{'ports': [{'port': 80}]}, {'ports': [{'port': 81}]}]},"
        " {'apiVersion': 'networking.k8s.io/v1', 'kind': 'NetworkPolicy',"
        "  'metadata': {'name': 'q'}, 'spec': {'podSelector': {},"
        "  'ingress': [{'ports': [{'port': 82}]}]}}]");
  const std::string before = render(policies, 0);  // compact: {"port":80}
  ASSERT_TRUE(accepted(before));
  auto changed = [&](const std::string& from, const std::string& to) {
    return find_changed_rule(before, replaced(before, from, to));
  };
  EXPECT_FALSE(find_changed_rule(before, before));
  EXPECT_FALSE(changed("\"name\":\"p\"", "\"name\":\"r\""));  // a policy's name
  EXPECT_FALSE(changed("\"pod\":\"a\"", "\"pod\":\"b\""));    // its selector
  EXPECT_FALSE(changed("80}]},{\"ports\":[{\"port\":81", "90}]},{\"ports\":[{\"port\":91"))
      << "two rules";
  EXPECT_FALSE(changed("}]},{\"ports\"", "}]} ,{\"ports\"")) << "between two rules";
  EXPECT_FALSE(changed("}]},{\"ports\"", "}]}, {\"ports\"")) << "between two rules";
  EXPECT_FALSE(changed("\"port\":81}]}]", "\"port\":81}]},{}]")) << "a rule added";
  // One rule, in a moat policy and in a NetworkPolicy's spec.
  auto one = changed("\"port\":81", "\"port\":8081");
  ASSERT_TRUE(one);
  EXPECT_EQ(one->path, "policies[0].ingress[1]");
  EXPECT_FALSE(one->kubernetes);
  auto k8s = changed("\"port\":82", "\"port\":8082");
  ASSERT_TRUE(k8s);
  EXPECT_EQ(k8s->path, "policies[1].spec.ingress[0]");
  EXPECT_TRUE(k8s->kubernetes);
}

// Values that end before the change are skipped by their brackets, up to
// 64 KiB each: a policy larger than that (read token by token), a rule
// right after it, the last rule of the last policy. (Strings inside a
// skipped value: EscapesInsideStringsAreSkipped.)
TEST(RuleEdit, LargePoliciesBeforeTheChangeAreSkippedRight) {
  auto policy = [](const std::string& name, int first_port, int rules) {
    Json p = J("{'podSelector': {'matchLabels': {'app': 'x'}}, 'ingress': []}");
    p["name"] = name;
    for (int i = 0; i < rules; ++i)
      p["ingress"].push_back({{"from", Json::array({{{"ipBlock", {{"cidr", "10.0.0.1/32"}}}}})},
                              {"ports", Json::array({{{"port", first_port + i}}})}});
    return p;
  };
  // Ports 1000-3999, 5000-5002, 6000-7999: each names its rule.
  Json policies =
      Json::array({policy("big", 1000, 3000), policy("next", 5000, 3), policy("last", 6000, 2000)});
  for (int style : {0, 1}) {
    const std::string before = render(policies, style);
    ASSERT_GT(before.size(), size_t{4} << 16);
    ASSERT_TRUE(accepted(before));
    const std::string root = style % 2 ? "" : "policies";
    for (auto [port, path] : {std::pair{5000, "[1].ingress[0]"}, std::pair{5001, "[1].ingress[1]"},
                              std::pair{7999, "[2].ingress[1999]"}}) {
      SCOPED_TRACE(std::to_string(style) + " " + path);
      const std::string after =
          replaced(before, "\"port\":" + std::to_string(port) + "}", "\"port\":7}");
      auto span = find_changed_rule(before, after);
      ASSERT_TRUE(span);
      EXPECT_EQ(span->path, root + path);
      expect_heads_agree(before, after, path);
      auto rule = read_changed_rule(after, *span);
      ASSERT_TRUE(rule);
      EXPECT_EQ(rule->ports.at(0).port, 7);
    }
  }
}

// A head that ends inside a string, a number or the changed rule is never
// taken for the whole text: the scan asks for more, and with enough it
// finds what the whole text gives.
TEST(RuleEdit, AHeadThatEndsInsideATokenAsksForMore) {
  Json policy =
      J("{'apiVersion': 'networking.k8s.io/v1', 'kind': 'NetworkPolicy',"
        " 'metadata': {'name': 'q'}, 'spec': {'podSelector': {},"
        " 'ingress': [{'ports': [{'port': 80}]}, {'ports': [{'port': 81}]}]}}");
  policy["metadata"]["annotations"] = {{"note", std::string(200000, 'x') + "\\\"]}"}};
  const std::string before = render(Json::array({policy}), 0);
  ASSERT_TRUE(accepted(before));
  const std::string long_value =
      "{\"ports\":[{\"port\":81,\"x\":\"" + std::string(300000, 'y') + "\"}]}";
  for (const std::string& to : {std::string("{\"ports\":[{\"port\":12345678}]}"), long_value}) {
    const std::string after = replaced(before, "{\"ports\":[{\"port\":81}]}", to);
    const SplicedText b(before);
    const size_t prefix = b.common_prefix(after);
    const size_t suffix = b.common_suffix(after, std::min(before.size(), after.size()) - prefix);
    const size_t rule_end = after.find(to) + to.size();
    for (size_t n : {prefix + 1, prefix + 3, (prefix + rule_end) / 2, rule_end - 1}) {
      bool more = false;
      const std::string head = after.substr(0, n);
      EXPECT_FALSE(find_changed_rule_in(before.size(), after.size(), prefix, suffix, head, &more));
      EXPECT_TRUE(more) << n - prefix;
    }
    expect_heads_agree(before, after, to.substr(0, 40));
    auto span = find_changed_rule(before, after);
    ASSERT_TRUE(span);
    EXPECT_EQ(span->path, "policies[0].spec.ingress[1]");
  }
}

// Strings are skipped whole, escaped quotes and backslashes inside them
// too: an annotation that looks like the end of the rules list does not end it.
TEST(RuleEdit, EscapesInsideStringsAreSkipped) {
  Json policy =
      J("{'apiVersion': 'networking.k8s.io/v1', 'kind': 'NetworkPolicy',"
        " 'metadata': {'name': 'q'}, 'spec': {'podSelector': {},"
        " 'ingress': [{'ports': [{'port': 82}]}, {'ports': [{'port': 83}]}]}}");
  policy["metadata"]["annotations"] = {{"note", "\\\"}]}]\\\\\" [{\"a\": 1}, \\"}};
  const std::string before = render(Json::array({policy}), 0);
  ASSERT_TRUE(accepted(before));
  const std::string after = replaced(before, "\"port\":83", "\"port\":8083");
  auto span = find_changed_rule(before, after);
  ASSERT_TRUE(span) << before;
  EXPECT_EQ(span->path, "policies[0].spec.ingress[1]");
  auto rule = read_changed_rule(after, *span);
  ASSERT_TRUE(rule);
  EXPECT_EQ(rule->ports.at(0).port, 8083);
}

// A List in the policies array holds any number of policies: the rule is
// found by its policy's path, never by counting.
TEST(RuleEdit, PoliciesAfterAListAreFoundByTheirPath) {
  const std::string list = "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[]}";
  const std::string k8s =
      "{\"apiVersion\":\"networking.k8s.io/v1\",\"kind\":\"NetworkPolicy\","
      "\"metadata\":{\"name\":\"q\"},\"spec\":{\"podSelector\":{},\"ingress\":[{}]}}";
  const std::string native =
      "{\"name\":\"p\",\"podSelector\":{},\"policyTypes\":[\"Egress\"],"
      "\"ingress\":[{\"action\":\"deny\"}]}";
  const std::string before = "{\"policies\":[" + list + "," + native + "," + k8s + "]}";
  auto read = accepted(before);
  ASSERT_TRUE(read);
  const std::string after = replaced(before, "\"deny\"", "\"allow\"");
  auto span = find_changed_rule(before, after);
  ASSERT_TRUE(span);
  EXPECT_EQ(span->policy_path, "policies[1]");
  const Policy* p = policy_of(read->policies, *span);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->name, "p");
  auto rule = read_changed_rule(after, *span);
  ASSERT_TRUE(rule);
  // An allow in a direction its policyTypes leave out: a problem of the policy's.
  EXPECT_FALSE(policy_unchanged_by(*p, span->dir, span->index, *rule));
  EXPECT_FALSE(parse_policy_file(after, "p.json").problems.empty());
  Counts n;
  check_edit(before, *read, after, "after a List", n);
}

// A byte order mark, which the reader skips, leaves the paths as they are.
TEST(RuleEdit, AByteOrderMarkIsSkipped) {
  const std::string before =
      "\xEF\xBB\xBF{ \"policies\": [{\"name\":\"p\",\"podSelector\":{},"
      "\"ingress\":[{\"ports\":[{\"port\":80}]}]}]}";
  auto read = accepted(before);
  ASSERT_TRUE(read);
  const std::string after = replaced(before, "80", "81");
  auto span = find_changed_rule(before, after);
  ASSERT_TRUE(span);
  EXPECT_EQ(span->path, "policies[0].ingress[0]");
  Counts n;
  check_edit(before, *read, after, "with a BOM", n);
  EXPECT_EQ(n.taken, 1);
}

// The scanner moves on whatever byte it meets: a NUL (which strchr would
// have taken for one of its stops) or any other, in texts no reader took.
TEST(RuleEdit, AnyByteMovesTheScannerOn) {
  const std::string odd[] = {std::string("{\"policies\":[\0]}", 16), "{\"policies\":[x]}", "]]}}",
                             "\"", "{\"policies\":[{\"ingress\":[{\"a\":1"};
  for (const std::string& before : odd) {
    // Changed at the end: the scan goes over all of `before`.
    EXPECT_FALSE(find_changed_rule(before, before + "x")) << before;
    std::string after = before;
    after.back() ^= 1;
    EXPECT_FALSE(find_changed_rule(before, after)) << before;
  }
}

// One policy document alone, as kubectl takes a NetworkPolicy: its root is
// the policy, and the reader's paths name no list ("spec.ingress[1]").
TEST(RuleEdit, OneDocumentAloneReadsAsTheWholeFile) {
  std::mt19937 rng(2612);
  Counts n;
  int documents = 0;
  for (int i = 0; i < 300; ++i) {
    Json policies = random_policies(rng, i);
    if (policies.empty()) continue;
    Json one = Json::array({policies[0]});
    const int indent = static_cast<int>(rng() % 3) - 1;
    const std::string before = one[0].dump(indent);
    PolicyFileResult read = parse_policy_file(before, "p.json");
    if (!read.problems.empty() || !read.file) continue;
    documents++;
    for (int step = 0; step < 6; ++step) {
      auto change = change_one_rule(rng, one, false);
      if (!change) break;
      const std::string after = change->policies[0].dump(indent);
      if (after == before) continue;
      const std::string what = "document " + std::to_string(i) + " step " + std::to_string(step) +
                               ":\n" + before + "\n->\n" + after;
      auto span = find_changed_rule(before, after);
      ASSERT_TRUE(span.has_value()) << what;
      EXPECT_EQ(span->policy_path, "") << what;
      EXPECT_EQ(span->index, change->index) << what;
      check_edit(before, *read.file, after, what, n);
      if (HasFailure()) return;
    }
  }
  EXPECT_GE(documents, 200);
  EXPECT_GE(n.taken, 500) << n.found << " found";
}

}  // namespace
}  // namespace moat
