// config/ - the declarative file: its model (this header, which every other
// folder includes), the shared JSON reader (reader.h) and the arena its
// trees are built in (tree_arena.h), single values
// (values.h), reading (read.cpp), checks across entries (validate.cpp) and
// Docker-like IPAM (ipam.cpp). Pure code. It depends on util/ only, and on
// policy/model.h and policy/read.h because a file holds policies too.
//
// config.h - the declarative file: its model, parser and validator.
//
// parse_config() turns the text of a moat file into a fully resolved Config
// (subnets, gateways and container addresses allocated like Docker's IPAM) or
// a list of problems, each naming the file, the place in the document
// (`containers[2].networks[0].ip`) and what is wrong. Pure code: no system
// calls, so every message is unit-testable without root.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "policy/model.h"
#include "util/net.h"
#include "util/proto.h"  // Protocol, to_string(Protocol)
#include "util/text.h"   // closest_match(), which callers of the parser use for their own names

namespace moat {

struct Network {
  std::string name;
  Ipv4Prefix subnet;  // allocated from 172.18.0.0/16.. when absent in the file
  Ipv4 gateway;       // first host address unless given
  // Docker's --ipv6: set for a network with IPv6, allocated from
  // fd6d:6f61:7400::/48 when the file asks for IPv6 without a subnet.
  std::optional<Ipv6Prefix> subnet6;
  Ipv6 gateway6;           // with subnet6: its first host address unless given
  bool icc = true;         // Docker's --icc
  bool internal = false;   // Docker's --internal
  bool masquerade = true;  // used by port publishing / egress NAT
  // The network's bridge device on the host, when the runtime made one:
  // moat guards it, so a port it has not identified cannot leave the network.
  std::string bridge;
};

// `-p [ip:]host:container[/proto]`, ranges allowed on both sides with equal length.
// IPv6 host addresses in brackets: `-p [::1]:8080:80`.
struct Publish {
  // Neither: every host address of both families (Docker binds 0.0.0.0 and
  // [::]; IPv6 only when the container has an IPv6 address). One: that
  // address only, of its family; host_ip 0.0.0.0 is every host IPv4
  // address, host_ip6 :: every host IPv6 address.
  std::optional<Ipv4> host_ip;
  std::optional<Ipv6> host_ip6;
  uint16_t host_port = 0;       // first port of the range
  uint16_t container_port = 0;  // first port of the range
  uint16_t count = 1;           // number of ports in the range
  Protocol protocol = Protocol::tcp;
  std::string text;  // as written, for messages

  bool on_ipv4() const { return !host_ip6; }
  bool on_ipv6() const { return !host_ip; }
  // Every host address of the family it is on, not one of them.
  bool any_ipv4() const { return on_ipv4() && (!host_ip || host_ip->value == 0); }
  bool any_ipv6() const { return on_ipv6() && (!host_ip6 || *host_ip6 == Ipv6{}); }
};

// The first host port two publishes both claim (same protocol, overlapping
// ports, an address of one family that both cover), if any.
std::optional<uint16_t> first_shared_port(const Publish& a, const Publish& b);

// A port the container's service listens on (Docker's EXPOSE); the lab starts
// listeners there, and published container ports are exposed implicitly.
struct Expose {
  uint16_t port = 0;
  Protocol protocol = Protocol::tcp;
};

struct Attachment {
  std::string network;
  Ipv4 ip;  // allocated when absent in the file
  bool ip_from_file = false;
  // Set when the network has IPv6, allocated when absent in the file,
  // unless the file says `"ipv6": false` (a container with IPv6 turned off).
  std::optional<Ipv6> ip6;
  bool ip6_from_file = false;
  std::string host_interface;  // host-side interface; required by `moat apply`, set by the lab
  // The container's MAC on this attachment (unicast); when absent, `moat
  // apply` reads it from the peer of host_interface.
  std::optional<Mac> mac;
};

struct Container {
  std::string name;
  std::string ns = "default";  // Kubernetes-style namespace (policies issue)
  std::map<std::string, std::string> labels;
  std::vector<Attachment> networks;  // first one carries the default route
  std::vector<Publish> publish;
  std::vector<Expose> expose;
};

// `limits`: how many entries the instance's maps hold, for what scales with
// the host (flows, attachments, published ports, host connections through
// published ports). Absent: plan/limits.h's defaults. The maps are made at
// these sizes when the instance is created and cannot grow in place.
struct Limits {
  std::optional<uint32_t> conntrack;        // entries per family table; a translated flow takes 2
  std::optional<uint32_t> endpoints;        // attachments: container interfaces and uplinks
  std::optional<uint32_t> published_ports;  // host ports per family, ranges counted port by port
  std::optional<uint32_t> socket_nat;       // host connections to published ports, per family
  bool operator==(const Limits&) const = default;

  // Each key as the file names it, with where its value lives: one list
  // for every reader and writer of the section.
  std::array<std::pair<const char*, std::optional<uint32_t>*>, 4> fields() {
    return {{{"conntrack", &conntrack},
             {"endpoints", &endpoints},
             {"published_ports", &published_ports},
             {"socket_nat", &socket_nat}}};
  }
  std::array<std::pair<const char*, std::optional<uint32_t>>, 4> values() const {
    return {{{"conntrack", conntrack},
             {"endpoints", endpoints},
             {"published_ports", published_ports},
             {"socket_nat", socket_nat}}};
  }
};

struct Config {
  std::string source;  // file name, for messages
  Limits limits;       // `limits`
  std::vector<Network> networks;
  std::vector<Container> containers;
  std::vector<std::string> uplinks;      // host interfaces to the world (`host.uplinks`)
  std::vector<NamespaceDef> namespaces;  // `namespaces`; others used by containers have no labels
  std::vector<Policy> policies;          // `policies`, in document order (policy.h)

  const Network* find_network(const std::string& name) const;
  const Container* find_container(const std::string& name) const;
};

struct Problem {
  std::string path;     // `containers[2].networks[0].ip`, empty for the whole document
  std::string message;  // what is wrong, with a hint where there is one
  int line = 0;         // 1-based, for syntax errors and unreadable input
  int column = 0;
  // "FILE: PATH: MESSAGE" or "FILE:LINE:COLUMN: MESSAGE"
  std::string format(const std::string& file) const;
};

struct ParseResult {
  std::optional<Config> config;   // set only when problems is empty
  std::vector<Problem> problems;  // every problem found, in document order
};

// `source` is the file name used in messages. Never throws.
ParseResult parse_config(const std::string& text, const std::string& source);

// `config` as the text of a moat file that parse_config() reads back into
// an equal Config: every value explicit (subnets, gateways, addresses, flags),
// publishes and exposes in their string forms, `host.uplinks`. Policies and
// namespaces are not written: they come from policy files, which Inputs keeps
// after the main file.
std::string config_to_json(const Config& config);

struct PolicyFileResult {
  std::optional<PolicyFile> file;  // set only when problems is empty
  std::vector<Problem> problems;
};

// A file of policies only, to merge into a Config with merge_policy_file()
// (policy.h): one policy (moat-native or a networking.k8s.io/v1
// NetworkPolicy), a List or NetworkPolicyList, a JSON array of those, or a
// moat document holding only "policies" and "namespaces". YAML when `source`
// ends in .yaml/.yml or the text does not start with '{' or '[' (documents
// separated by `---`). Never throws.
PolicyFileResult parse_policy_file(const std::string& text, const std::string& source);

}  // namespace moat
