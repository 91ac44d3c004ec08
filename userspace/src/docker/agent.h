// agent.h - `moat docker`: follows one Docker Engine and keeps an instance
// enforcing what Docker's networking means. Every sync lists what Docker
// has (networks, running containers), finds each endpoint's host-side veth,
// translates it all (model.h) and hands the result, with the policy files
// of --policies, to reconcile(): the same path as `moat apply`. Nothing is
// ever flushed: a restarted agent (or dockerd) reconciles, writing only what
// differs, so established flows it still allows go on.
#pragma once

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "dataplane/dataplane.h"
#include "dataplane/host.h"
#include "docker/engine.h"
#include "docker/model.h"
#include "util/result.h"

namespace moat::docker {

struct AgentOptions {
  std::string socket = "/var/run/docker.sock";
  std::string instance = "docker";
  std::vector<std::string> uplinks;  // empty: the interfaces of the default routes
  std::string policies_dir;          // *.json, *.yaml, *.yml; reread when they change
  bool default_bridge_masquerade = true;
  Limits limits;  // the file's `limits` (`--limit`)
};

struct SyncReport {
  ApplyReport applied;
  size_t networks = 0, containers = 0;  // what moat enforces
  size_t pending = 0;                   // endpoints whose veth was not found yet
  size_t skipped = 0;                   // what Docker has that moat does not enforce
  std::vector<std::string> skipped_notes;  // "NAME: WHY" for each of them
  // From the agent's decision (the desired state handed to reconcile()) to
  // the kernel holding it and its record saved, in milliseconds.
  double apply_ms = 0;
  // The part of it up to the kernel holding the change (the record, and the
  // check of interfaces attached before, come after).
  double kernel_ms = 0;
};

class Agent {
 public:
  static Result<Agent> connect(AgentOptions options);
  // One full sync: Docker's state to the kernel.
  Result<SyncReport> sync();
  // Syncs, then follows Docker's events and syncs on each that changes
  // networking, when the policy files change, and while endpoints are
  // pending; reconnects (and syncs) when the stream breaks. Returns when
  // keep_going() says so.
  Result<void> run(const std::function<bool()>& keep_going,
                   const std::function<void(const std::string&)>& log);

 private:
  Agent(AgentOptions options, Engine engine)
      : options_(std::move(options)), engine_(std::move(engine)) {}
  std::string policies_stamp() const;
  Result<std::vector<nlohmann::json>> inspect_running();
  InterfaceMap find_interfaces();
  void make_clsacts_ahead();
  void remove_unused_clsacts();

  // A running container as the last sync saw it.
  struct Seen {
    std::string stamp;     // its endpoints (id and MAC per network)
    nlohmann::json inspect;
    std::map<std::string, std::string> veths;  // network id -> host-side veth
  };
  AgentOptions options_;
  Engine engine_;
  std::map<std::string, Seen> seen_;  // by container id
  std::set<std::string> dirty_;        // named by events since the last sync
  KnownIndexes known_ifindex_;         // the veths' indexes, as find_interfaces() found them
  std::set<std::string> bridges_;      // of the networks the last translation named
  // Veths whose clsact qdisc the agent made before a sync attached to them
  // (ReconcileOptions::clsact_made), until a record takes the qdisc over or
  // the veth goes; and veths that had one already (another tool's, a
  // record's, a killed agent's), not asked again.
  KnownIndexes clsact_made_, clsact_theirs_;
};

// The interfaces of the IPv4 default routes in this network namespace.
std::vector<std::string> default_route_interfaces();

}  // namespace moat::docker
