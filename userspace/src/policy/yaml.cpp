// yaml.cpp - YAML policy files (what `kubectl get -o yaml` prints and
// what people write by hand) as JSON trees, so one reader handles both.
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cstdlib>
#include <regex>
#include <sstream>

#include "policy/read.h"

namespace moat::policy_read {
namespace {

Problem at(const YAML::Mark& mark, std::string message) {
  Problem p{"", std::move(message)};
  if (!mark.is_null()) {
    p.line = mark.line + 1;
    p.column = mark.column + 1;
  }
  return p;
}

// A plain (unquoted) scalar typed as Kubernetes' YAML reader would for the
// values that matter here: null, booleans, integers, floats, else a string.
Json plain_scalar(const std::string& s) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  static const std::regex integer("[-+]?[0-9]+");
  static const std::regex real("[-+]?([0-9]+\\.[0-9]*|\\.[0-9]+)([eE][-+]?[0-9]+)?");
  if (std::regex_match(s, integer)) {
    int64_t value = 0;
    const char* begin = s.data() + (s[0] == '+' ? 1 : 0);
    auto [end, ec] = std::from_chars(begin, s.data() + s.size(), value);
    if (ec == std::errc() && end == s.data() + s.size()) return value;
    return s;  // out of range: keep the text, the reader says what is wrong
  }
  if (std::regex_match(s, real)) return std::strtod(s.c_str(), nullptr);
  return s;
}

// How much the conversion may make: aliases repeat what they name, so a
// file of a few lines can stand for billions of nodes ("billion laughs").
struct Budget {
  size_t nodes;  // left to make
  bool exceeded = false;
};

std::optional<Json> convert(const YAML::Node& node, std::vector<Problem>& problems,
                            Budget& budget, int depth) {
  if (budget.nodes == 0 || depth > kMaxNesting) {
    if (!budget.exceeded)
      problems.push_back(at(node.Mark(), budget.nodes == 0
                                             ? "the YAML's aliases expand to more than the file "
                                               "could hold written out (an alias bomb?)"
                                             : "nested deeper than " + std::to_string(kMaxNesting) +
                                                   " sequences and mappings"));
    budget.exceeded = true;
    return std::nullopt;
  }
  --budget.nodes;
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      return Json(nullptr);
    case YAML::NodeType::Scalar: {
      const std::string& tag = node.Tag();
      if (tag == "!" || tag == "tag:yaml.org,2002:str") return Json(node.Scalar());  // quoted
      if (tag == "?" || tag.rfind("tag:yaml.org,2002:", 0) == 0) return plain_scalar(node.Scalar());
      return Json(node.Scalar());
    }
    case YAML::NodeType::Sequence: {
      Json out = Json::array();
      for (const YAML::Node& el : node) {
        auto v = convert(el, problems, budget, depth + 1);
        if (!v) return std::nullopt;
        out.push_back(std::move(*v));
      }
      return out;
    }
    case YAML::NodeType::Map: {
      Json out = Json::object();
      for (const auto& kv : node) {
        if (!kv.first.IsScalar()) {
          problems.push_back(at(kv.first.Mark(), "invalid YAML: a key must be a plain string"));
          return std::nullopt;
        }
        const std::string& key = kv.first.Scalar();
        if (out.contains(key)) {
          problems.push_back(at(kv.first.Mark(), "invalid YAML: duplicate key \"" + key + "\""));
          return std::nullopt;
        }
        auto v = convert(kv.second, problems, budget, depth + 1);
        if (!v) return std::nullopt;
        out[key] = std::move(*v);
      }
      return out;
    }
  }
  return Json(nullptr);
}

// Counts documents without building them. yaml-cpp 0.7 never consumes a
// token it finds after a document's root node at the top level (`"a",`,
// `[1],`): it reports empty documents without end, and LoadAll() grows until
// the machine is out of memory (found by tests/parser_fuzz). A text holds
// at most one document more than it has `---` and `...` lines; seeing more is that.
class DocumentCounter : public YAML::EventHandler {
 public:
  size_t documents = 0;
  YAML::Mark last_start;
  void OnDocumentStart(const YAML::Mark& mark) override {
    ++documents;
    last_start = mark;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

size_t document_markers(const std::string& text) {
  size_t n = 0;
  for (size_t at = 0; at < text.size(); at = text.find('\n', at) + 1) {
    if (text.compare(at, 3, "---") == 0 || text.compare(at, 3, "...") == 0) ++n;
    if (text.find('\n', at) == std::string::npos) break;
  }
  return n;
}

// The problem when yaml-cpp would never finish `text`, else nullopt.
std::optional<Problem> endless_documents(const std::string& text) {
  const size_t most = document_markers(text) + 1;
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentCounter counter;
  while (parser.HandleNextDocument(counter)) {
    if (counter.documents > most)
      return at(counter.last_start,
                "invalid YAML: something follows the document's top-level value (a stray ','?)");
  }
  return std::nullopt;
}

}  // namespace

std::optional<Json> yaml_to_json(const std::string& text, std::vector<Problem>& problems) {
  std::vector<YAML::Node> docs;
  try {
    if (auto p = endless_documents(text)) {
      problems.push_back(std::move(*p));
      return std::nullopt;
    }
    docs = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    problems.push_back(at(e.mark, "invalid YAML: " + e.msg));
    return std::nullopt;
  }
  std::vector<Json> out;
  // Written out, every node takes at least two bytes ("a,").
  Budget budget{text.size() / 2 + 64};
  for (const YAML::Node& doc : docs) {
    if (doc.IsNull()) continue;  // an empty document between `---`s
    auto v = convert(doc, problems, budget, 0);
    if (!v) return std::nullopt;
    out.push_back(std::move(*v));
  }
  if (out.size() == 1) return std::move(out[0]);
  Json array = Json::array();
  for (Json& v : out) array.push_back(std::move(v));
  return array;
}

}  // namespace moat::policy_read
