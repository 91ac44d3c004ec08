// config.cpp - the file model's own functions, and the passes of a parse.
//
// Three passes. parse_json() (reader.cpp) checks the syntax; a syntax error
// ends the run since nothing after it means anything. read_document()
// (read.cpp) walks the tree into entries that remember where each value was
// written, checking everything that concerns a single value. Then the checks
// that span entries (validate.cpp) and Docker's IPAM (ipam.cpp) run. Every
// pass collects problems instead of stopping, and they are sorted into
// document order at the end, so a user fixes the whole file in one round trip.
#include "config/config.h"

#include <algorithm>

#include "config/document.h"
#include "config/reader.h"
#include "policy/read.h"
#include "util/discard.h"

namespace moat {
namespace {

// The order matters: IPAM needs the subnets of valid networks, and address
// checks need the networks attachments refer to.
void resolve(Document& doc, Problems& problems) {
  check_unique_names(doc, problems);
  check_subnet_overlaps(doc, problems);
  allocate_subnets(doc, problems);
  resolve_attachments(doc, problems);
  reserve_fixed_addresses(doc, problems);
  allocate_addresses(doc, problems);
  check_interfaces(doc, problems);
  check_publish_conflicts(doc, problems);
  check_published_reachable(doc, problems);
}

Config build_config(Document&& doc, const std::string& source) {
  Config cfg;
  cfg.source = source;
  cfg.uplinks = std::move(doc.uplinks);
  cfg.limits = doc.limits;
  cfg.namespaces = std::move(doc.namespaces);
  cfg.policies = std::move(doc.policies);
  for (NetworkEntry& n : doc.networks) cfg.networks.push_back(std::move(n.net));
  for (ContainerEntry& c : doc.containers) {
    for (AttachmentEntry& a : c.attachments) c.c.networks.push_back(std::move(a.att));
    for (PublishEntry& p : c.publishes) c.c.publish.push_back(std::move(p.pub));
    cfg.containers.push_back(std::move(c.c));
  }
  return cfg;
}

}  // namespace

std::optional<uint16_t> first_shared_port(const Publish& a, const Publish& b) {
  if (a.protocol != b.protocol) return std::nullopt;
  bool v4 =
      a.on_ipv4() && b.on_ipv4() && (a.any_ipv4() || b.any_ipv4() || *a.host_ip == *b.host_ip);
  bool v6 =
      a.on_ipv6() && b.on_ipv6() && (a.any_ipv6() || b.any_ipv6() || *a.host_ip6 == *b.host_ip6);
  if (!v4 && !v6) return std::nullopt;
  uint32_t low = std::max(a.host_port, b.host_port);
  uint32_t end = std::min(a.host_port + a.count, b.host_port + b.count);
  if (low >= end) return std::nullopt;
  return static_cast<uint16_t>(low);
}

const Network* Config::find_network(const std::string& name) const {
  auto it = std::find_if(networks.begin(), networks.end(),
                         [&name](const Network& n) { return n.name == name; });
  return it == networks.end() ? nullptr : &*it;
}

const Container* Config::find_container(const std::string& name) const {
  auto it = std::find_if(containers.begin(), containers.end(),
                         [&name](const Container& c) { return c.name == name; });
  return it == containers.end() ? nullptr : &*it;
}

std::string Problem::format(const std::string& file) const {
  if (line > 0) {
    return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message;
  }
  if (path.empty()) return file + ": " + message;
  return file + ": " + path + ": " + message;
}

namespace {

// Reads once without the problems' document order and, only when there are
// problems, again with it (Problems::ordering()).
template <class Result, class Read>
Result read_twice_on_problems(Read read) {
  Result first = read(false);
  if (first.problems.empty()) return first;
  return read(true);
}

}  // namespace

ParseResult parse_config(const std::string& text, const std::string& source) {
  return read_twice_on_problems<ParseResult>([&](bool ordering) -> ParseResult {
    try {
      Problems problems(ordering);
      if (auto p = input_problem(text, true)) return {std::nullopt, {std::move(*p)}};
      std::optional<Problem> too_long;
      TreeArena arena;  // before the tree: it holds its nodes
      std::optional<Json> root;
      {
        TreeArena::Building in(arena);
        root = parse_json(text, problems, &too_long);
      }
      if (too_long) return {std::nullopt, {std::move(*too_long)}};
      if (root) {
        Reader reader(problems);
        Document doc = read_document(reader, *root, source);
        discard(std::move(*root));
        resolve(doc, problems);
        if (problems.empty()) return {build_config(std::move(doc), source), {}};
      }
      return {std::nullopt, std::move(problems).in_document_order()};
    } catch (const std::exception& e) {  // bad_alloc, or a bug: still never throw
      return {std::nullopt, {Problem{"", std::string("internal error: ") + e.what()}}};
    }
  });
}

PolicyFileResult parse_policy_file(const std::string& text, const std::string& source) {
  return read_twice_on_problems<PolicyFileResult>([&](bool ordering) -> PolicyFileResult {
    try {
      Problems problems(ordering);
      TreeArena arena;  // before the tree: it holds its nodes
      std::optional<Json> root;
      const bool yaml = policy_read::looks_like_yaml(text, source);
      if (auto p = input_problem(text, !yaml)) return {std::nullopt, {std::move(*p)}};
      if (yaml) {
        std::vector<Problem> found;
        {
          TreeArena::Building in(arena);
          root = policy_read::yaml_to_json(text, found);
        }
        for (Problem& p : found) problems.add(std::move(p));
      } else {
        std::optional<Problem> too_long;
        {
          TreeArena::Building in(arena);
          root = parse_json(text, problems, &too_long);
        }
        if (too_long) return {std::nullopt, {std::move(*too_long)}};
      }
      if (root) {
        if (yaml)  // JSON was checked while parsed
          if (auto p = tree_problem(*root)) return {std::nullopt, {std::move(*p)}};
        Reader reader(problems);
        PolicyFile file;
        policy_read::read_policy_file(*root, source, reader, file);
        discard(std::move(*root));
        // kubectl: "no objects passed to apply". An empty file is a mistake
        // (the wrong file, a template not filled in), not a way to say "none".
        if (problems.empty() && file.policies.empty() && file.namespaces.empty())
          problems.add("",
                       "the file holds no policy and no namespace (it is empty or only comments)");
        if (problems.empty()) return {std::move(file), {}};
      }
      return {std::nullopt, std::move(problems).in_document_order()};
    } catch (const std::exception& e) {
      return {std::nullopt, {Problem{"", std::string("internal error: ") + e.what()}}};
    }
  });
}

}  // namespace moat
