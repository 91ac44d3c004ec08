// read.h - internal: reading policies and namespaces out of a JSON tree, for
// config/ (a moat file's `policies` and `namespaces`, and standalone policy
// files). They are read with the main file's Reader (config/reader.h), so
// their problems are sorted into document order with the rest of the file's.
// read.cpp reads moat-native and Kubernetes objects; yaml.cpp turns YAML
// into the same tree.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "config/reader.h"
#include "policy/model.h"

namespace moat::policy_read {

// The elements of a `policies` array: moat-native policies, NetworkPolicy
// objects and Lists of them. Policies with problems are left out of `out`.
void read_policies(const Json& v, const std::string& path, const std::string& source, Reader& r,
                   std::vector<Policy>& out);

// One rule of a policy's `ingress` or `egress` list at `path`; nullopt
// when it has problems (reported to `r`).
std::optional<PolicyRule> read_rule(Reader& r, const Json& v, const std::string& path,
                                    PolicyDirection dir, bool kubernetes);

// The elements of a `namespaces` array.
void read_namespaces(const Json& v, const std::string& path, const std::string& source, Reader& r,
                     std::vector<NamespaceDef>& out);

// What spans entries: duplicate namespaces, duplicate policy names in a namespace.
void check_unique(const std::vector<NamespaceDef>& namespaces, const std::vector<Policy>& policies,
                  Reader& r);

// The root of a standalone policy file: a policy object, a List, an array of
// them, or a moat document holding only "policies" and "namespaces".
void read_policy_file(const Json& root, const std::string& source, Reader& r, PolicyFile& out);

// YAML (one or more documents) as JSON with Kubernetes-like scalar typing:
// plain scalars become null, booleans, integers or floats when they look like
// one, quoted scalars stay strings. Several documents become an array.
// Problems get a line and column; returns nullopt on a syntax error.
std::optional<Json> yaml_to_json(const std::string& text, std::vector<Problem>& problems);

// Whether a policy file should be read as YAML: its name ends in .yaml or
// .yml, or its text does not start with '{' or '['.
bool looks_like_yaml(const std::string& text, const std::string& source);

}  // namespace moat::policy_read
