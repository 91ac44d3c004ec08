// cni/ - moat as a CNI plugin, chained after an interface plugin (the
// reference `bridge`): a third producer of desired state for reconcile()
// (dataplane/reconcile.h), next to files and the Docker Engine. May use
// util/, config/, policy/, plan/, dataplane/.
//
// protocol.h - the CNI protocol itself, pure: the environment and the
// network configuration a runtime hands a plugin, the versions moat speaks,
// the result it passes on and the error objects it answers with. Spec 1.1.0
// (containernetworking/cni SPEC.md), read against what runtimes send: libcni
// sets every variable, empty ones included, so empty means absent.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"

namespace moat::cni {

// The spec's well-known error codes; 100 and up are moat's own.
enum Code : int {
  kIncompatibleVersion = 1,
  kUnsupportedField = 2,
  kUnknownContainer = 3,
  kInvalidEnvironment = 4,
  kIoFailure = 5,
  kDecodingFailure = 6,
  kInvalidConfig = 7,
  kTryAgainLater = 11,
  kNotAvailable = 50,         // STATUS: cannot serve ADD
  kLimitedConnectivity = 51,  // STATUS: existing containers are affected too
  kApplyFailed = 100,         // the kernel could not be made to enforce it
  kNotEnforced = 101,         // CHECK: the attachment is not (or no longer) enforced
};

struct Error {
  int code = kInvalidConfig;
  std::string msg;      // one sentence
  std::string details;  // what to do, or the underlying error
};

// The error object on stdout: {"cniVersion", "code", "msg", "details"?}.
nlohmann::json error_json(const Error& e, const std::string& version);

enum class Verb { add, del, check, status, gc, version };

// The versions moat speaks, oldest first: 0.4.0 is the oldest with CHECK.
const std::vector<std::string>& supported_versions();

// {"cniVersion": `version` (1.1.0 when empty), "supportedVersions": [...]}.
nlohmann::json version_json(const std::string& version);

struct Env {
  Verb verb = Verb::version;
  std::string container_id, netns, ifname, args, path;
};

// The CNI_* variables `get` returns (nullopt or "" both mean unset), checked
// for the verb as libcni's skel does (ids, interface names): code 4 naming
// what is missing or wrong, or 3 for a missing container id.
struct EnvResult {
  std::optional<Env> env;
  Error error;
};
EnvResult read_env(const std::map<std::string, std::string>& vars);

// CNI_ARGS, "K=V;K=V": pairs in order; nullopt (and *why) when a pair has
// no '=' or more than one.
std::optional<std::vector<std::pair<std::string, std::string>>> parse_args(const std::string& text,
                                                                           std::string* why);

// One published port from the `portMappings` capability.
struct PortMapping {
  int host_port = 0, container_port = 0;
  std::string protocol = "tcp";
  // portmap's convention: "" every address of both families (IPv6 when the
  // container has an IPv6 address), "0.0.0.0" every IPv4 address, "::"
  // every IPv6 address, else that address ("127.0.0.1", "::1").
  std::string host_ip;
};
// As moat's publish spec: "[hostIP:]host:container/proto", an IPv6 hostIP
// bracketed ("[::1]:8080:80/tcp").
std::string publish_spec(const PortMapping& m);

// The `moat` entry of a conflist, as the runtime hands it over.
struct NetConf {
  std::string version, name, type;
  nlohmann::json prev_result;  // null when absent
  std::vector<PortMapping> port_mappings;
  // runtimeConfig.labels, then args.cni.labels ([{"key", "value"}] both)
  std::vector<std::pair<std::string, std::string>> labels;
  // moat's own keys: the instance, its uplinks and policies (the same for
  // every network of the instance), and this network's options.
  std::string instance = "cni";
  std::vector<std::string> uplinks;
  std::string policy_dir;
  bool ports_held_by_runtime = false;
  Limits limits;  // `limits`: as a moat file's
  bool icc = true, internal = false, masquerade = true;
  nlohmann::json valid_attachments;  // GC: [{"containerID", "ifname"}], null otherwise
};

struct ConfResult {
  std::optional<NetConf> conf;
  Error error;
};
// Reads stdin's JSON for `verb`: decoding failures are code 6, versions
// moat does not speak (or too old for the verb) 1, keys it does not know 2,
// values it cannot use 7.
ConfResult read_conf(const std::string& text, Verb verb);

// prevResult in the request's version: 0.4.0 results carry ips[].version,
// 1.x ones do not; nothing else changes.
nlohmann::json result_as(const nlohmann::json& prev_result, const std::string& version);

// What the interface plugin reports of the attachment: the container-side
// interface named `ifname` in `netns`, its IPv4 address and at most one
// IPv6 address (link-local ones are the interface's own, not the
// network's, and are left out), and the host-side interfaces it lists
// (name, mac) to check the veth lookup against.
struct Attachment {
  std::string mac;
  std::string ipv4;                          // "10.88.0.5"
  int prefix = 0;                            // 16
  std::string gateway;                       // "" when the plugin gave none
  std::string ipv6;                          // "fd00:88::5", "" when the plugin gave none
  int prefix6 = 0;                           // 64
  std::string gateway6;                      // "" when the plugin gave none
  std::vector<std::string> host_interfaces;  // without a sandbox
};
struct AttachmentResult {
  std::optional<Attachment> attachment;
  Error error;
};
AttachmentResult attachment_of(const nlohmann::json& prev_result, const std::string& ifname,
                               const std::string& netns);

}  // namespace moat::cni
