// reader.cpp - see reader.h.
#include "config/reader.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <set>

namespace moat {
namespace {

// The types nlohmann's SAX interface asks a handler for.
struct SaxTypes {
  using number_integer_t = Json::number_integer_t;
  using number_unsigned_t = Json::number_unsigned_t;
  using number_float_t = Json::number_float_t;
  using string_t = Json::string_t;
  using binary_t = Json::binary_t;
};

// nlohmann keeps the last of duplicate keys without a word, and the parsed
// tree no longer shows them. A SAX handler of its own sees every key: a parser
// callback would too, but nlohmann's callback parser rescans the enclosing
// container at every object's end, quadratic in a 100,000-rule policy.
class DuplicateKeyFinder : public SaxTypes {
 public:
  bool null() { return value(); }
  bool boolean(bool) { return value(); }
  bool number_integer(number_integer_t) { return value(); }
  bool number_unsigned(number_unsigned_t) { return value(); }
  bool number_float(number_float_t, const string_t&) { return value(); }
  bool string(string_t&) { return value(); }
  bool binary(binary_t&) { return value(); }
  bool start_object(std::size_t) { return open(false); }
  bool start_array(std::size_t) { return open(true); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool key(string_t& k) {
    Frame& top = stack_[depth_ - 1];
    top.key = k;
    if (!top.insert_key())
      found_.push_back(
          Problem{key_path(path_of(depth_), top.key), "duplicate key " + quote(top.key)});
    return true;
  }
  // The DOM parse that follows reports syntax errors, with their position.
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) {
    return false;
  }

  std::vector<Problem>& found() { return found_; }

 private:
  // Paths are made only for a duplicate: a path string for every value
  // was most of this pass's time on a 100,000-rule file.
  struct Frame {
    bool is_array = false;
    size_t next_index = 0;
    std::string key{};  // the object's current key
    // Where the parent holds this one: its index or its key.
    bool at_index = false;
    size_t index = 0;
    std::string at_key{};
    // Keys seen: a short list searched in turn, a set once the object is big.
    std::vector<std::string> few{};
    std::set<std::string> many{};

    bool insert_key() {
      if (few.size() < 32) {
        if (std::find(few.begin(), few.end(), key) != few.end()) return false;
        few.push_back(key);
        return true;
      }
      if (many.empty()) many.insert(few.begin(), few.end());
      return many.insert(key).second;
    }
  };

  bool value() {
    if (depth_ > 0 && stack_[depth_ - 1].is_array) stack_[depth_ - 1].next_index++;
    return true;
  }
  // Frames are kept when closed and reused by the next object or array at
  // their depth, with the capacity of their strings and key list: a frame
  // made for each of a 100,000-rule file's 600,000 objects was an
  // allocation and a free each.
  bool open(bool is_array) {
    if (depth_ == stack_.size()) stack_.emplace_back();
    Frame& f = stack_[depth_];
    f.is_array = is_array;
    f.next_index = 0;
    f.key.clear();
    f.at_index = false;
    f.index = 0;
    f.at_key.clear();
    f.few.clear();
    f.many.clear();
    if (depth_ > 0) {
      Frame& top = stack_[depth_ - 1];
      f.at_index = top.is_array;
      if (top.is_array)
        f.index = top.next_index++;
      else
        f.at_key = top.key;
    }
    ++depth_;
    return true;
  }
  bool close() {
    --depth_;
    return true;
  }

  // The path of the first `depth` frames' innermost value.
  std::string path_of(size_t depth) const {
    std::string path;
    for (size_t i = 1; i < depth; ++i)
      path =
          stack_[i].at_index ? index_path(path, stack_[i].index) : key_path(path, stack_[i].at_key);
    return path;
  }

  std::vector<Frame> stack_;
  size_t depth_ = 0;  // frames in use: stack_[0, depth_)
  std::vector<Problem> found_;
};

// nlohmann's DOM builder (json_sax_dom_parser) with one change: an object
// starts with room for two members, what most objects of a policy have (a
// rule, a port, an ipBlock with except). Grown one member at a time, a
// two-member object was allocated twice. Room for four made validating
// 100,000 rules slower on this VM, where memory first touched is the cost
// (174 MB peak against 139 for two, 627 ms against 519; 130 MB and 567 ms
// grown one at a time). The rest is as nlohmann's: a duplicate key's last
// value wins, syntax errors throw the parser's exception.
class TreeBuilder : public SaxTypes {
 public:
  explicit TreeBuilder(Json& root) : root_(root) {}

  bool null() { return put(nullptr); }
  bool boolean(bool b) { return put(b); }
  bool number_integer(number_integer_t n) { return put(n); }
  bool number_unsigned(number_unsigned_t n) { return put(n); }
  bool number_float(number_float_t n, const string_t&) { return put(n); }
  bool string(string_t& s) { return put(s); }
  bool binary(binary_t& b) { return put(Json::binary(b)); }
  bool start_object(std::size_t) {
    Json* object = place(Json::value_t::object);
    object->get_ref<Json::object_t&>().reserve(2);
    stack_.push_back(object);
    return true;
  }
  bool key(string_t& k) {
    member_ = &(*stack_.back())[k];
    return true;
  }
  bool end_object() {
    stack_.pop_back();
    return true;
  }
  bool start_array(std::size_t) {
    stack_.push_back(place(Json::value_t::array));
    return true;
  }
  bool end_array() {
    stack_.pop_back();
    return true;
  }
  template <class Exception>
  bool parse_error(std::size_t, const std::string&, const Exception& e) {
    throw e;
  }

 private:
  // Where the next value goes: the root, the end of the open array, or the
  // open object's member named by the last key. Pointers into a container
  // stay valid while it is open: nothing is added to it until the value
  // inside is complete.
  template <class V>
  Json* place(V&& v) {
    if (stack_.empty()) {
      root_ = Json(std::forward<V>(v));
      return &root_;
    }
    Json* top = stack_.back();
    if (top->is_array()) {
      auto& array = top->get_ref<Json::array_t&>();
      array.emplace_back(std::forward<V>(v));
      return &array.back();
    }
    *member_ = Json(std::forward<V>(v));
    return member_;
  }
  template <class V>
  bool put(V&& v) {
    place(std::forward<V>(v));
    return true;
  }

  Json& root_;
  std::vector<Json*> stack_;
  Json* member_ = nullptr;
};

// The tree builder and the duplicate-key finder fed by one tokenizing pass:
// two passes over a 10 MB file were a tenth of an apply.
Problem key_too_long(const std::string& key) {
  return Problem{"", "a key of " + std::to_string(key.size()) + " bytes; the limit is " +
                         std::to_string(kMaxKeyBytes) + ": " + quote(key)};
}

class CheckedTreeBuilder : public SaxTypes {
 public:
  explicit CheckedTreeBuilder(Json& root) : tree_(root) {}

  bool null() { return dups_.null() && tree_.null(); }
  bool boolean(bool b) { return dups_.boolean(b) && tree_.boolean(b); }
  bool number_integer(number_integer_t n) {
    return dups_.number_integer(n) && tree_.number_integer(n);
  }
  bool number_unsigned(number_unsigned_t n) {
    return dups_.number_unsigned(n) && tree_.number_unsigned(n);
  }
  bool number_float(number_float_t n, const string_t& s) {
    return dups_.number_float(n, s) && tree_.number_float(n, s);
  }
  bool string(string_t& s) { return dups_.string(s) && tree_.string(s); }
  bool binary(binary_t& b) { return dups_.binary(b) && tree_.binary(b); }
  bool start_object(std::size_t n) { return dups_.start_object(n) && tree_.start_object(n); }
  bool start_array(std::size_t n) { return dups_.start_array(n) && tree_.start_array(n); }
  bool end_object() { return dups_.end_object() && tree_.end_object(); }
  bool end_array() { return dups_.end_array() && tree_.end_array(); }
  bool key(string_t& k) {
    if (k.size() > kMaxKeyBytes) {
      too_long_ = key_too_long(k);
      return false;
    }
    return dups_.key(k) && tree_.key(k);
  }
  // Throws Json::parse_error, with the offending byte, as Json::parse() does.
  // A template, as the tree builder's: the exception is thrown as its own
  // type (parse_error, with its byte), not sliced to the base.
  template <class Exception>
  bool parse_error(std::size_t at, const std::string& token, const Exception& e) {
    return tree_.parse_error(at, token, e);
  }

  std::vector<Problem>& found() { return dups_.found(); }
  std::optional<Problem>& too_long() { return too_long_; }

 private:
  DuplicateKeyFinder dups_;
  std::optional<Problem> too_long_;
  TreeBuilder tree_;
};

// 1-based line and column (in UTF-8 characters, as editors count) of the byte at `offset`.
std::pair<int, int> line_column(std::string_view text, size_t offset) {
  offset = std::min(offset, text.size());
  int line = 1, column = 1;
  for (size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) {
      ++column;
    }
  }
  return {line, column};
}

// "[json.exception.parse_error.101] parse error at line 3, column 1: syntax
// error while parsing object key - unexpected '}'; expected string literal"
// becomes "unexpected '}'; expected string literal": the position is given
// separately, and the rest is about nlohmann's internals.
std::string readable_json_error(const std::string& what) {
  if (size_t dash = what.find(" - "); dash != std::string::npos) return what.substr(dash + 3);
  if (size_t bracket = what.find("] "); bracket != std::string::npos) {
    return what.substr(bracket + 2);
  }
  return what;
}

}  // namespace

std::vector<Problem> Problems::in_document_order() && {
  std::vector<std::pair<std::vector<size_t>, Problem>> placed;
  for (Problem& p : list_) placed.emplace_back(position(p.path), std::move(p));
  std::stable_sort(placed.begin(), placed.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<Problem> sorted;
  for (auto& [position, p] : placed) sorted.push_back(std::move(p));
  return sorted;
}

// Visit numbers of the path and its ancestors, root first. Paths nobody
// visited (a duplicate key's, say) are left out: they sort with the parent.
std::vector<size_t> Problems::position(std::string path) const {
  std::vector<size_t> chain;
  for (;;) {
    if (auto it = order_.find(path); it != order_.end()) chain.push_back(it->second);
    if (path.empty()) break;
    path = parent_path(path);
  }
  std::reverse(chain.begin(), chain.end());
  return chain;
}

namespace {

Problem problem_at(std::string_view text, size_t offset, std::string message) {
  auto [line, column] = line_column(text, offset);
  return Problem{"", std::move(message), line, column};
}

}  // namespace

std::optional<Problem> input_problem(std::string_view text, bool is_json) {
  if (text.size() > kMaxInputBytes)
    return Problem{"", "the file has " + std::to_string(text.size()) + " bytes; the limit is " +
                           std::to_string(kMaxInputBytes >> 20) + " MiB"};
  int depth = 0;
  bool in_string = false, escaped = false;
  for (size_t i = 0; i < text.size();) {
    const char c = text[i];
    if (c == '\0') return problem_at(text, i, "a NUL byte: a JSON or YAML file has none");
    // ASCII without the call: this loop sees every byte of a 10 MB file.
    const size_t n = static_cast<unsigned char>(c) < 0x80 ? 1 : utf8_at(text, i).length;
    if (n == 0) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X",
                    static_cast<unsigned>(static_cast<unsigned char>(c)));
      return problem_at(text, i,
                        std::string("invalid UTF-8 (byte ") + hex +
                            "): JSON and YAML files are UTF-8 text; re-encode the file");
    }
    if (is_json && n == 1) {
      if (in_string) {
        if (escaped)
          escaped = false;
        else if (c == '\\')
          escaped = true;
        else if (c == '"')
          in_string = false;
      } else if (c == '"') {
        in_string = true;
      } else if (c == '[' || c == '{') {
        if (++depth > kMaxNesting)
          return problem_at(
              text, i, "nested deeper than " + std::to_string(kMaxNesting) + " arrays and objects");
      } else if (c == ']' || c == '}') {
        --depth;
      }
    }
    i += n;
  }
  return std::nullopt;
}

std::optional<Problem> tree_problem(const Json& root) {
  struct Item {
    const Json* v;
    int depth;
  };
  std::vector<Item> todo = {{&root, 0}};
  while (!todo.empty()) {
    const Item it = todo.back();
    todo.pop_back();
    if (!it.v->is_structured()) continue;
    if (it.depth >= kMaxNesting)
      return Problem{"",
                     "nested deeper than " + std::to_string(kMaxNesting) + " arrays and objects"};
    if (it.v->is_object()) {
      for (auto kv = it.v->begin(); kv != it.v->end(); ++kv) {
        if (kv.key().size() > kMaxKeyBytes) return key_too_long(kv.key());
        todo.push_back({&kv.value(), it.depth + 1});
      }
    } else {
      for (const Json& el : *it.v) todo.push_back({&el, it.depth + 1});
    }
  }
  return std::nullopt;
}

std::optional<Json> parse_json(const std::string& text, Problems& problems,
                               std::optional<Problem>* too_long) {
  try {
    Json root;
    CheckedTreeBuilder builder(root);
    Json::sax_parse(text, &builder);
    if (auto& p = builder.too_long()) {
      if (too_long)
        *too_long = std::move(p);
      else
        problems.add(std::move(*p));
      return std::nullopt;
    }
    for (Problem& p : builder.found()) problems.add(std::move(p));
    return root;
  } catch (const Json::parse_error& e) {
    // e.byte counts the offending character itself.
    auto [line, column] = line_column(text, e.byte > 0 ? e.byte - 1 : 0);
    problems.add(Problem{"", "invalid JSON: " + readable_json_error(e.what()), line, column});
  } catch (const Json::exception& e) {  // e.g. a number too large for a double
    problems.add("", "invalid JSON: " + readable_json_error(e.what()));
  }
  return std::nullopt;
}

std::string describe(const Json& v) {
  switch (v.type()) {
    case Json::value_t::string:
      return "the string " + quote(v.get_ref<const std::string&>());
    case Json::value_t::object:
      return "an object";
    case Json::value_t::array:
      return "an array";
    case Json::value_t::null:
      return "null";
    case Json::value_t::boolean:
      return v.dump();
    default:
      return "the number " + v.dump();
  }
}

void Reader::problem(std::string path, std::string message) {
  ++count_;
  problems_.add(std::move(path), std::move(message));
}

bool Reader::object(const Json& v, const std::string& path, const std::vector<Field>& fields,
                    const Hints& hints) {
  if (!v.is_object()) {
    problem(path, "must be an object, not " + describe(v));
    return false;
  }
  for (auto it = v.begin(); it != v.end(); ++it) {
    if (problems_.ordering()) visit(key_path(path, it.key()));
    if (std::any_of(fields.begin(), fields.end(),
                    [&](const Field& f) { return it.key() == f.name; }))
      continue;
    std::vector<std::string> known;
    for (const Field& f : fields) known.emplace_back(f.name);
    auto hint = hints.find(it.key());
    problem(path,
            "unknown key " + quote(it.key()) +
                (hint != hints.end() ? " (" + hint->second + ")" : did_you_mean(it.key(), known)));
  }
  for (const Field& f : fields) {
    if (f.required && !v.contains(f.name)) problem(path, "missing required key " + quote(f.name));
  }
  return true;
}

std::optional<std::string> Reader::string(const Json& v, const std::string& path) {
  if (v.is_string()) return v.get<std::string>();
  problem(path, "must be a string, not " + describe(v));
  return std::nullopt;
}

void Reader::boolean(const Json& object, const std::string& path, const char* key, bool& out) {
  member(object, path, key, [&](const Json& v, const std::string& p) {
    if (v.is_boolean()) {
      out = v.get<bool>();
    } else {
      problem(p, "must be true or false, not " + describe(v));
    }
  });
}

std::optional<std::string> Reader::name(const Json& v, const std::string& path,
                                        std::string_view kind, NameCheck check) {
  auto name = string(v, path);
  if (!name) return std::nullopt;
  if (auto why = check(*name)) {
    problem(path, "invalid " + std::string(kind) + " name " + quote(*name) + ": " + *why);
  }
  return name;
}

void Reader::labels(const Json& v, const std::string& path,
                    std::map<std::string, std::string>& out) {
  if (!v.is_object()) return problem(path, "must be an object of strings, not " + describe(v));
  for (auto it = v.begin(); it != v.end(); ++it) {
    std::string label_path = key_path(path, it.key());
    if (problems_.ordering()) visit(label_path);
    if (it.key().empty()) problem(label_path, "a label key must not be empty");
    if (auto value = string(it.value(), label_path)) out[it.key()] = *value;
  }
}

std::optional<Ipv4> Reader::ip(const Json& v, const std::string& path) {
  auto text = string(v, path);
  if (!text) return std::nullopt;
  if (auto ip = Ipv4::parse(*text)) return ip;
  bool cidr = text->find('/') != std::string::npos;
  problem(path, "invalid IPv4 address " + quote(*text) +
                    (cidr ? " (write the address without a prefix length)" : ""));
  return std::nullopt;
}

std::optional<Ipv6> Reader::ip6(const Json& v, const std::string& path) {
  auto text = string(v, path);
  if (!text) return std::nullopt;
  if (auto ip = Ipv6::parse(*text)) return ip;
  std::string hint;
  if (text->find('/') != std::string::npos) {
    hint = " (write the address without a prefix length)";
  } else if (text->find('%') != std::string::npos) {
    hint = " (a zone id like " + quote("%eth0") + " has no place here)";
  } else if (Ipv4::parse(*text)) {
    hint = " (that is an IPv4 address)";
  }
  problem(path, "invalid IPv6 address " + quote(*text) + hint);
  return std::nullopt;
}

std::optional<std::string> Reader::port_text(const Json& v, const std::string& path,
                                             std::string_view expected) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return v.dump();
  problem(path, "must be " + std::string(expected) + ", not " + describe(v));
  return std::nullopt;
}

}  // namespace moat
