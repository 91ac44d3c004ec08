// reader.h - the one JSON reader of moat's files, shared by the main file
// (config/read.cpp) and policy files (policy/read.cpp) so that both report
// alike: every problem at once, at its path, with a did-you-mean for a
// misspelt key, sorted into document order at the end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.h"
#include "config/tree_arena.h"

namespace moat {

// ordered_json's ordered_map keeps keys in document order, which problems
// are reported in; the nodes of a tree parsed in a TreeArena::Building scope
// come from its arena (tree_arena.h).
using Json = nlohmann::basic_json<nlohmann::ordered_map, std::vector, std::string, bool,
                                  std::int64_t, std::uint64_t, double, TreeAllocator>;

// A value or why it is wrong, from the pure parsers of single values.
template <class T>
using Parsed = std::expected<T, std::string>;

// Problems are found pass by pass, not in document order: they are sorted at the end.
class Problems {
 public:
  // Records the first time a path is met. The reader meets the keys of an
  // object and the elements of an array in document order (though not always
  // children before cousins), so a path's place in the document is the visit
  // order of its ancestors, compared from the root down.
  //
  // Only when ordering() is on: a path string and a map entry for every key
  // was a third of reading a 100,000-rule file. Problems are rare, so the
  // parsers read once without order and, when there are problems, read
  // again with it (parse_config, parse_policy_file).
  void visit(const std::string& path) {
    if (ordering_) order_.emplace(path, order_.size());
  }
  explicit Problems(bool ordering = true) : ordering_(ordering) {}
  bool ordering() const { return ordering_; }

  void add(Problem problem) { list_.push_back(std::move(problem)); }
  void add(std::string path, std::string message) {
    add(Problem{std::move(path), std::move(message)});
  }

  bool empty() const { return list_.empty(); }
  std::vector<Problem> in_document_order() &&;

 private:
  std::vector<size_t> position(std::string path) const;

  bool ordering_ = true;
  std::map<std::string, size_t> order_;
  std::vector<Problem> list_;
};

// Limits on what a file may be, so that memory stays linear in its size
// and a mistake is reported instead of eating the machine.
constexpr size_t kMaxInputBytes = 16u << 20;
constexpr int kMaxNesting = 64;        // arrays and objects in each other
constexpr size_t kMaxKeyBytes = 1024;  // a Kubernetes label key is at most 317

// Whether `text` can be read at all: not larger than kMaxInputBytes, no NUL
// byte (nlohmann stops there, silently), valid UTF-8 (JSON and YAML are
// Unicode; a stray byte would only fail later, when the inputs are saved
// after the kernel took them) and, for JSON, nested at most kMaxNesting
// deep. With the line and column of the first offending byte.
std::optional<Problem> input_problem(std::string_view text, bool is_json);

// Keys longer than kMaxKeyBytes, and nesting past kMaxNesting (what YAML
// made), in a parsed tree.
std::optional<Problem> tree_problem(const Json& root);

// The tree of `text`, or nullopt after a syntax error (with its line and
// column). Duplicate keys, which nlohmann drops silently, are problems too.
// A key longer than kMaxKeyBytes ends the parse: its problem (tree_problem's
// words) goes to `*too_long` when given, else to `problems`. With
// input_problem's depth check before it, a tree it returns needs no
// tree_problem() (that walk was 5% of reading 100,000 rules).
std::optional<Json> parse_json(const std::string& text, Problems& problems,
                               std::optional<Problem>* too_long = nullptr);

// `the string "x"`, `an object`, `the number 3`: what was found instead.
std::string describe(const Json& v);

struct Field {
  const char* name;
  bool required = false;
};
constexpr bool kRequired = true;

// Unknown keys that deserve a hint of their own instead of a did-you-mean
// (a key of the other format, say): key -> hint.
using Hints = std::map<std::string, std::string>;

// Why a name breaks its rule, if it does (config/values.h has the rules).
using NameCheck = std::optional<std::string> (*)(std::string_view);

// Typed access to the JSON tree; each accessor reports what is wrong at the
// given path and returns nothing, so callers just skip the value. count()
// lets a caller leave out an entry that had any problem.
class Reader {
 public:
  explicit Reader(Problems& problems) : problems_(problems) {}

  void visit(const std::string& path) { problems_.visit(path); }
  void problem(std::string path, std::string message);
  size_t count() const { return count_; }

  template <class T>
  std::optional<T> check(Parsed<T> parsed, const std::string& path, const std::string& context) {
    if (parsed) return std::move(*parsed);
    problem(path, context + parsed.error());
    return std::nullopt;
  }

  // Whether `v` is an object; reports unknown keys (with the hint, else the
  // closest known key) and missing required keys.
  bool object(const Json& v, const std::string& path, const std::vector<Field>& fields,
              const Hints& hints = {});

  // Calls read(value, path) for the member `key` of `object` if it is there.
  template <class Read>
  void member(const Json& object, const std::string& path, const char* key, Read read) {
    if (auto it = object.find(key); it != object.end()) read(*it, key_path(path, key));
  }

  // Calls read(element, path) for each element of the array `v`.
  template <class Read>
  void elements(const Json& v, const std::string& path, std::string_view what, Read read) {
    if (!v.is_array()) {
      problem(path, "must be an array of " + std::string(what) + ", not " + describe(v));
      return;
    }
    for (size_t i = 0; i < v.size(); ++i) {
      std::string element_path = index_path(path, i);
      if (problems_.ordering()) visit(element_path);
      read(v[i], element_path);
    }
  }

  std::optional<std::string> string(const Json& v, const std::string& path);
  void boolean(const Json& object, const std::string& path, const char* key, bool& out);

  // A string checked by `check`. A badly formed name is still returned, so
  // that references to it do not report it a second time as unknown.
  std::optional<std::string> name(const Json& v, const std::string& path, std::string_view kind,
                                  NameCheck check);

  // An object of strings (`labels`, `matchLabels`), added to `out`.
  void labels(const Json& v, const std::string& path, std::map<std::string, std::string>& out);

  std::optional<Ipv4> ip(const Json& v, const std::string& path);
  std::optional<Ipv6> ip6(const Json& v, const std::string& path);

  // Ports are written as JSON numbers or as strings.
  std::optional<std::string> port_text(const Json& v, const std::string& path,
                                       std::string_view expected);

 private:
  Problems& problems_;
  size_t count_ = 0;
};

}  // namespace moat
