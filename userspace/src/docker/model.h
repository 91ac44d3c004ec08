// docker/ - following a Docker Engine: what its API reports (networks,
// running containers and their published ports) and where each endpoint
// sits on the host is turned into the moat file Docker's networking would
// correspond to with `iptables: true`, which produces DesiredState for
// reconcile() (dataplane/reconcile.h); may use util/, config/, policy/,
// plan/, dataplane/.
//
// model.h - the pure translation: the JSON of `GET /networks` and of
// `GET /containers/{id}/json` (API 1.41, dockerd 20.10) plus the host-side
// interface of each endpoint become a validated Config and the moat file
// text it is read back from, so that what the agent keeps as the instance's
// Inputs is exactly what the kernel holds. No system calls: every decision
// is unit-tested against JSON captured from a real dockerd
// (tests/unit/fixtures/docker/).
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"

namespace moat::docker {

// (container id, network id) -> host-side interface, from the veth finder.
// Ids are Docker's full 64-hex ones, as the API reports them.
using InterfaceMap = std::map<std::pair<std::string, std::string>, std::string>;

struct TranslateOptions {
  std::string source = "docker";  // the file name in messages and in Inputs
  // Docker's `ip-masq`, which only the default bridge follows. dockerd turns
  // it off by itself whenever `iptables: false` (so it reports
  // enable_ip_masquerade "false" on `bridge` though nobody asked), and the
  // API does not say whether the user set it: moat, doing what Docker does
  // with iptables on, assumes the default `true` unless told otherwise.
  bool default_bridge_masquerade = true;
  std::vector<std::string> uplinks;  // the file's `host.uplinks`
  Limits limits;                     // the file's `limits`
};

// An attachment whose host-side interface is not known yet (the container
// is starting, or the finder raced it): left out, to be retried.
struct PendingEndpoint {
  std::string container_id;
  std::string container;  // name, without Docker's leading '/'
  std::string network_id;
  std::string network;
};

// Something Docker has that moat does not enforce, and why. Not errors:
// host/none networking, drivers other than bridge, IPv6.
struct Skipped {
  enum class Kind { network, container, attachment, publish };
  Kind kind;
  std::string id;    // Docker's id of the network or container
  std::string name;  // `web`, `web on n1`, `web 8080:80/tcp`
  std::string why;
};

// A bridge network moat follows, with what the agent needs besides the
// Config: the Docker id (events name networks by id) and the Linux bridge.
struct NetworkRef {
  std::string id;
  std::string name;
  std::string bridge;  // com.docker.network.bridge.name, else br-<id12>
};

struct Translation {
  // When `problems` is empty: parse_config(text) itself, ready for
  // DesiredState; otherwise what was built, for messages only.
  Config config;
  std::string text;               // config_to_json(config): the instance's main input file
  std::vector<Problem> problems;  // moat's validation of `text`; empty when valid
  std::vector<NetworkRef> networks;
  std::vector<PendingEndpoint> pending;
  std::vector<Skipped> skipped;

  bool ok() const { return problems.empty(); }
};

// `networks`: the array of GET /networks. `containers`: GET
// /containers/{id}/json of each container (ones not running are skipped).
// Never throws; JSON of an unexpected shape is skipped and reported.
Translation translate(const nlohmann::json& networks, const std::vector<nlohmann::json>& containers,
                      const InterfaceMap& interfaces, const TranslateOptions& options = {});

// The Linux bridge of a network as GET /networks reports it.
std::string bridge_name(const nlohmann::json& network);

}  // namespace moat::docker
