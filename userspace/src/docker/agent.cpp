#include "docker/agent.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "config/inputs.h"
#include "dataplane/reconcile.h"
#include "dataplane/tc.h"
#include "dataplane/veth.h"
#include "docker/model.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace moat::docker {
namespace {

// What identifies a container's networking in both the listing and the
// inspect document: each network's endpoint id and MAC. A restart, a
// connect or a disconnect changes it, so an unchanged one means the cached
// inspect and veths still hold, whether or not its event was seen.
std::string endpoints_stamp(const json& container) {
  std::string stamp;
  const json nets =
      container.value("NetworkSettings", json::object()).value("Networks", json::object());
  for (const auto& [name, ep] : nets.items())
    if (ep.is_object())
      stamp += name + "=" + ep.value("EndpointID", std::string()) + "/" +
               ep.value("MacAddress", std::string()) + ";";
  return stamp;
}

Result<json> inspect(const Engine& engine, const std::string& id) {
  auto reply = engine.get_raw("/containers/" + id + "/json");
  if (!reply) return std::unexpected(reply.error());
  if (reply->status == 404) return json();  // gone since the listing
  auto doc = reply->ok() ? json::parse(reply->body, nullptr, false) : json();
  if (doc.is_discarded() || !doc.is_object()) {
    auto why = engine.inspect_container(id);  // its error names the status
    return fail(why ? "dockerd: inspect " + id + ": not a JSON object" : why.error().message());
  }
  return doc;
}

}  // namespace

std::vector<std::string> default_route_interfaces() {
  std::vector<std::string> out;
  std::ifstream in("/proc/self/net/route");
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string iface, dest, gw, flags, refcnt, use, metric, mask;
    if (!(f >> iface >> dest >> gw >> flags >> refcnt >> use >> metric >> mask)) continue;
    if (dest == "00000000" && mask == "00000000" &&
        std::find(out.begin(), out.end(), iface) == out.end())
      out.push_back(iface);
  }
  return out;
}

Result<Agent> Agent::connect(AgentOptions options) {
  auto engine = Engine::connect(options.socket);
  if (!engine) return std::unexpected(engine.error());
  if (options.uplinks.empty()) options.uplinks = default_route_interfaces();
  return Agent(std::move(options), std::move(*engine));
}

// Every running container's inspect document (ones that went away between
// the listing and the inspect skipped), re-inspected only when its
// endpoints changed since the last sync: an event costs one inspect, not
// one per container.
Result<std::vector<json>> Agent::inspect_running() {
  auto list = engine_.containers();
  if (!list) return std::unexpected(list.error());
  std::map<std::string, Seen> next;
  std::vector<json> out;
  for (const auto& c : *list) {
    std::string id = c.value("Id", std::string());
    std::string stamp = endpoints_stamp(c);
    auto it = seen_.find(id);
    if (it == seen_.end() || it->second.stamp != stamp || dirty_.contains(id)) {
      auto doc = inspect(engine_, id);
      if (!doc) {
        seen_.clear();  // some entries were moved into `next`: trust none of them
        return std::unexpected(doc.error());
      }
      if (doc->is_null()) continue;
      // The listing and the inspect may straddle a change: keep the
      // inspect's own stamp, so the next sync looks again.
      it = next.emplace(id, Seen{endpoints_stamp(*doc), std::move(*doc), {}}).first;
    } else {
      it = next.emplace(id, std::move(it->second)).first;
    }
    out.push_back(it->second.inspect);
  }
  seen_ = std::move(next);
  dirty_.clear();
  return out;
}

// The host-side veth of every endpoint that has one already (found once per
// endpoint); the others stay pending in the translation and are retried.
InterfaceMap Agent::find_interfaces() {
  InterfaceMap out;
  known_ifindex_.clear();
  InterfaceIndexes index_of;
  for (auto& [id, seen] : seen_) {
    int pid = seen.inspect.value("State", json::object()).value("Pid", 0);
    if (pid <= 0) continue;
    const json nets =
        seen.inspect.value("NetworkSettings", json::object()).value("Networks", json::object());
    for (const auto& [name, ep] : nets.items()) {
      std::string mac = ep.value("MacAddress", std::string());
      std::string net = ep.value("NetworkID", std::string());
      if (mac.empty()) continue;
      // A veth that went away (the container's sandbox re-created) is looked for again.
      if (auto v = seen.veths.find(net); v != seen.veths.end()) {
        if (unsigned idx = index_of(v->second))
          known_ifindex_[v->second] = idx;
        else
          seen.veths.erase(v);
      }
      if (!seen.veths.contains(net))
        if (auto veth = host_veth(pid, mac)) {
          seen.veths[net] = *veth;
          if (unsigned idx = index_of(*veth)) known_ifindex_[*veth] = idx;
        }
      if (auto v = seen.veths.find(net); v != seen.veths.end()) out[{id, net}] = v->second;
    }
  }
  return out;
}

Result<SyncReport> Agent::sync() {
  auto networks = engine_.networks();
  if (!networks) return std::unexpected(networks.error());
  auto containers = inspect_running();
  if (!containers) return std::unexpected(containers.error());
  TranslateOptions topt;
  topt.uplinks = options_.uplinks;
  topt.limits = options_.limits;
  topt.default_bridge_masquerade = options_.default_bridge_masquerade;
  auto t = translate(*networks, *containers, find_interfaces(), topt);
  if (!t.ok()) return fail(problems_message(t.problems, topt.source));
  bridges_.clear();
  for (const NetworkRef& n : t.networks) bridges_.insert(n.bridge);
  Inputs inputs;
  inputs.files.push_back({topt.source, t.text});
  if (!options_.policies_dir.empty())
    if (auto r = add_policy_dir(options_.policies_dir, inputs); !r)
      return std::unexpected(r.error());
  auto loaded = load_inputs(inputs);
  if (!loaded.config) return fail(problems_message(loaded.problems, loaded.file));
  // dockerd binds every published host port itself (userland-proxy off).
  ReconcileOptions ropt;
  ropt.ports_held_by_runtime = true;
  ropt.known_ifindex = &known_ifindex_;  // found just now: not asked again
  ropt.clsact_made = &clsact_made_;
  auto decided = std::chrono::steady_clock::now();
  auto applied = reconcile(options_.instance, {std::move(*loaded.config), std::move(inputs)}, ropt);
  if (!applied) return std::unexpected(applied.error());
  for (const std::string& veth : applied->clsact_taken) clsact_made_.erase(veth);
  std::chrono::duration<double, std::milli> took = std::chrono::steady_clock::now() - decided;
  std::vector<std::string> notes;
  for (const Skipped& s : t.skipped) notes.push_back(s.name + ": " + s.why);
  double kernel_ms = applied->ms_until("remove-stale");
  return SyncReport{*applied,
                    t.config.networks.size(),
                    t.config.containers.size(),
                    t.pending.size(),
                    t.skipped.size(),
                    std::move(notes),
                    took.count(),
                    kernel_ms};
}

// dockerd joins a container's veth to its bridge, reports the network's
// `connect`, and only 0.7-0.9 s later (on the 2-CPU VM) its `start`, whose
// sync attaches moat's filters. A clsact qdisc made in the same request as
// the filters makes each direction's first filter wait for an expedited
// RCU grace period under RTNL: most of the attach, and its tail on a busy
// host. So the qdisc is made here, at the `connect`, on every veth of an
// enforced bridge that has none. A qdisc without filters changes nothing
// for the veth's traffic. Failures cost only that: the attach makes it.
void Agent::make_clsacts_ahead() {
  if (bridges_.empty()) return;
  auto ports = veth_ports(bridges_);
  if (!ports) return;
  // Forgotten only with the veth (its name gone or another index): a veth
  // whose network moat no longer enforces keeps its entry, so that the
  // agent's stop still removes the qdisc it made there.
  InterfaceIndexes index_of;
  for (KnownIndexes* list : {&clsact_made_, &clsact_theirs_})
    std::erase_if(*list, [&](const auto& e) { return index_of(e.first) != e.second; });
  for (const auto& [name, index] : *ports) {
    if (known_ifindex_.contains(name) || clsact_made_.contains(name) ||
        clsact_theirs_.contains(name))
      continue;
    auto made = make_clsact(index);
    if (!made) continue;
    (*made ? clsact_made_ : clsact_theirs_)[name] = static_cast<unsigned>(index);
  }
}

// When the agent stops: the qdiscs it made that no filter uses (their
// container never started, or was not enforced) go. Those the record took
// over left the list at that sync (ApplyReport::clsact_taken); filters of
// another tool's keep a qdisc too. Not under the instance's lock: a writer
// attaching to such a veth at that moment would lose its filters with the
// qdisc (the bridge's guard then holds the container in) until an apply
// attaches again.
void Agent::remove_unused_clsacts() {
  InterfaceIndexes index_of;
  for (const auto& [name, index] : clsact_made_) {
    if (index_of(name) != index) continue;
    if (auto n = clsact_filters(static_cast<int>(index)); n && *n == 0)
      (void)remove_clsact(static_cast<int>(index));  // what is left, the veth's end takes
  }
  clsact_made_.clear();
}

std::string Agent::policies_stamp() const {
  std::string stamp;
  if (options_.policies_dir.empty()) return stamp;
  auto files = policy_dir_files(options_.policies_dir);
  if (!files) return "unreadable: " + files.error().message();  // changes when it is fixed
  for (const auto& p : *files) {
    struct stat st {};
    if (stat(p.c_str(), &st) == 0)
      stamp += p + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
               std::to_string(st.st_mtim.tv_nsec) + ":" + std::to_string(st.st_size) + ";";
  }
  return stamp;
}

Result<void> Agent::run(const std::function<bool()>& keep_going,
                        const std::function<void(const std::string&)>& log) {
  const std::string filters = R"({"type":["container","network"]})";
  // Syncs follow each other here: the maps stay open, the lock file stays,
  // and the grace period a policy change waits for is begun after the
  // previous one, not by it. Given back when the agent stops (the lock
  // file is removed).
  struct KeptHandles {
    KeptHandles() { keep_kernel_handles(true); }
    ~KeptHandles() { keep_kernel_handles(false); }
  } kept;
  struct MadeAhead {
    Agent& agent;
    ~MadeAhead() { agent.remove_unused_clsacts(); }
  } made_ahead{*this};
  while (keep_going()) {
    bool again = true;  // sync before following, and whenever something may have changed
    bool connected = false;  // a veth may have joined a bridge: make_clsacts_ahead()
    std::string stamp, last_failure;
    std::set<std::string> noted;  // skipped notes logged, each once while it lasts
    auto retry_at = std::chrono::steady_clock::now();
    auto resync = [&] {
      // A failing sync (a port taken, a bad policy file) is retried each
      // second, and reported once until its reason changes.
      if (std::chrono::steady_clock::now() < retry_at) return;
      auto rep = sync();
      if (!rep) {
        if (rep.error().message() != last_failure) log("sync failed: " + rep.error().message());
        last_failure = rep.error().message();
        retry_at = std::chrono::steady_clock::now() + std::chrono::seconds(1);
        return;
      }
      last_failure.clear();
      again = rep->pending > 0;
      stamp = policies_stamp();
      if (rep->applied.changed()) {
        char ms[96];
        std::snprintf(ms, sizeof ms, "in the kernel in %.3f ms, applied in %.3f ms", rep->kernel_ms,
                      rep->apply_ms);
        // Where the time went: the phases that took a tenth of a millisecond or more.
        std::string phases;
        for (const auto& [name, t] : rep->applied.phases_ms) {
          if (t < 0.1) continue;
          char one[64];
          std::snprintf(one, sizeof one, "%s%s %.1f", phases.empty() ? "" : ", ", name.c_str(), t);
          phases += one;
        }
        log("synced " + std::to_string(rep->containers) + " containers on " +
            std::to_string(rep->networks) + " networks: " + rep->applied.summary() + " (" + ms +
            (phases.empty() ? "" : ": " + phases) + ")");
      }
      std::set<std::string> now(rep->skipped_notes.begin(), rep->skipped_notes.end());
      for (const auto& n : now)
        if (!noted.contains(n)) log("not enforced: " + n);
      noted = std::move(now);
    };
    auto on_event = [&](const json& ev) {
      static const char* kActions[] = {"start",      "die",    "destroy", "connect",
                                       "disconnect", "create", "restart"};
      std::string action = ev.value("Action", std::string());
      for (const char* a : kActions)
        if (action == a) again = true;
      // The listing may lag behind the event (dockerd updates its view of
      // the container after it reports), so the container named by the
      // event is inspected again whatever the listing says.
      const json actor = ev.value("Actor", json::object());
      const json attrs = actor.value("Attributes", json::object());
      const bool network = ev.value("Type", std::string()) == "network";
      if (network && action == "connect") connected = true;
      std::string id =
          network ? attrs.value("container", std::string()) : actor.value("ID", std::string());
      if (!id.empty()) dirty_.insert(id);
      return keep_going();
    };
    auto tick = [&] {
      if (again || policies_stamp() != stamp) resync();
      // After the sync, which knows a network new to this connect.
      if (connected) make_clsacts_ahead();
      connected = false;
      return keep_going();
    };
    auto r = engine_.follow_events(filters, on_event, tick);
    if (r) return {};
    log("event stream: " + r.error().message() + "; reconnecting");
    seen_.clear();  // dockerd may have restarted: trust nothing it said before
    for (int i = 0; i < 10 && keep_going(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return {};
}

}  // namespace moat::docker
