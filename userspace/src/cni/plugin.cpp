// plugin.cpp - see plugin.h.
#include "cni/plugin.h"

#include <linux/magic.h>
#include <net/if.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <iterator>

#include "cni/protocol.h"
#include "cni/table.h"
#include "config/inputs.h"
#include "dataplane/reconcile.h"
#include "dataplane/skeleton.h"
#include "dataplane/state.h"
#include "dataplane/sweep.h"
#include "dataplane/tc.h"
#include "dataplane/veth.h"
#include "util/paths.h"

extern char** environ;

namespace moat::cni {
namespace {

using nlohmann::json;

// A failed call: the error object and exit code 1.
Outcome failed(const Error& e, const std::string& version) {
  return {1, error_json(e, version).dump() + "\n"};
}

// The request's cniVersion when stdin has one moat speaks, for the error
// objects of calls that fail before the configuration is read.
std::string request_version(const std::string& text) {
  try {
    auto j = json::parse(text);
    if (j.is_object() && j.contains("cniVersion") && j["cniVersion"].is_string()) {
      std::string v = j["cniVersion"];
      const auto& all = supported_versions();
      if (std::find(all.begin(), all.end(), v) != all.end()) return v;
    }
  } catch (const json::exception&) {
  }
  return supported_versions().back();
}

// The instance's table, or an empty one when it has no record yet. An
// instance that `moat apply` or the Docker agent made is not the plugin's.
Result<Table> table_of(const std::optional<Inputs>& current, const std::string& instance) {
  if (!current) return Table{};
  const json& p = current->producer;
  if (!p.is_object() || !p.contains("cni"))
    return fail("instance " + instance + " was not made by the CNI plugin (moat apply or " +
                "moat docker owns it); give the conflist an \"instance\" of its own");
  std::string why;
  auto t = table_from_json(p["cni"], &why);
  if (!t) return fail(record_file(instance) + ": its CNI table is damaged: " + why);
  return *t;
}

// The table as what reconcile_update() applies: the moat file it
// corresponds to, then the policy files; no member left removes the instance.
Result<Next> next_of(const Table& t) {
  Next next;
  next.options.ports_held_by_runtime = t.ports_held_by_runtime;
  if (t.members.empty()) return next;
  Inputs in;
  in.files.push_back({"cni", config_to_json(table_config(t))});
  // Read on every call: a changed file takes effect with the next ADD or DEL.
  if (!t.policy_dir.empty())
    if (auto r = add_policy_dir(t.policy_dir, in); !r) return std::unexpected(r.error());
  in.producer = {{"cni", table_json(t)}};
  auto loaded = load_inputs(in);
  if (!loaded.config) return fail(problems_message(loaded.problems, loaded.file));
  next.want = DesiredState{std::move(*loaded.config), std::move(in)};
  return next;
}

// Attachments whose veth is gone, or is now another container's (a
// container that died without a DEL: a runtime crash, a reboot), leave the
// table: apply needs every interface it names, so one of them would fail
// every later ADD and DEL of the node. Whether any left.
bool prune_gone(Table& t) {
  auto gone = remove_members(t, [](const Member& m) {
    auto mac = veth_peer_mac(m.host_veth);
    return !mac || mac_str(*mac) != m.mac;
  });
  for (const auto& m : gone)
    std::fprintf(stderr, "moat-cni: %s %s on %s: its veth %s is gone; forgotten\n",
                 m.container_id.c_str(), m.ifname.c_str(), m.network.c_str(), m.host_veth.c_str());
  return !gone.empty();
}

struct Call {
  Env env;
  NetConf conf;
};

// What the update of a call found wrong, with its CNI code; reconcile's own
// failures are code 100.
struct Failure {
  Error error{kApplyFailed, "", ""};
  bool set = false;
  Result<Next> operator()(Error e) {
    error = std::move(e);
    set = true;
    return fail(error.msg);
  }
};

Outcome update_outcome(const Result<std::optional<ApplyReport>>& r, const Failure& f, const Call& c,
                       const std::string& what) {
  if (f.set) return failed(f.error, c.conf.version);
  if (!r)
    return failed({kApplyFailed, "moat could not " + what + " (instance " + c.conf.instance + ")",
                   r.error().message()},
                  c.conf.version);
  return {};
}

// The attachment ADD describes, from prevResult and the kernel, and the
// network it is on.
struct Added {
  Member member;
  NetworkEntry network;
};

std::expected<Added, Error> added_of(const Call& c) {
  auto att = attachment_of(c.conf.prev_result, c.env.ifname, c.env.netns);
  if (!att.attachment) return std::unexpected(att.error);
  auto host = host_side_of(c.env.netns, c.env.ifname);
  if (!host)
    return std::unexpected(
        Error{kIoFailure, "cannot find the host side of " + c.env.ifname, host.error().message()});
  const auto& listed = att.attachment->host_interfaces;
  if (!listed.empty() && std::find(listed.begin(), listed.end(), host->veth) == listed.end())
    return std::unexpected(
        Error{kInvalidConfig,
              c.env.ifname + "'s peer is " + host->veth + ", which prevResult does not list",
              "moat must come right after the plugin that made the veth"});
  if (host->bridge.empty())
    return std::unexpected(Error{kInvalidConfig, host->veth + " is not a port of a bridge",
                                 "moat is chained after the bridge plugin"});
  std::string why;
  auto args = parse_args(c.env.args, &why);
  if (!args) return std::unexpected(Error{kInvalidEnvironment, why, ""});
  Identity id = identity_of(*args, c.conf);
  // The kernel's MAC, not prevResult's: a plugin between may have changed it,
  // and the endpoint programs admit only the MAC the container really has.
  Member m{c.env.container_id,
           c.env.ifname,
           c.env.netns,
           c.conf.name,
           id.pod_name,
           id.pod_namespace,
           id.labels,
           att.attachment->ipv4,
           att.attachment->ipv6,
           mac_str(host->container_mac),
           host->veth,
           c.conf.port_mappings};
  return Added{std::move(m), network_of(c.conf, *att.attachment, host->bridge)};
}

Outcome add(const Call& c) {
  if (c.conf.prev_result.is_null())
    return failed({kInvalidConfig, "ADD without prevResult",
                   "moat runs chained after an interface plugin such as bridge"},
                  c.conf.version);
  auto added = added_of(c);
  if (!added) return failed(added.error(), c.conf.version);
  Failure f;
  auto r = reconcile_update(c.conf.instance, [&](const std::optional<Inputs>& cur) -> Result<Next> {
    auto t = table_of(cur, c.conf.instance);
    if (!t) return f({kInvalidConfig, t.error().message(), ""});
    prune_gone(*t);
    if (auto e = add_member(*t, c.conf, added->network, added->member); e.code) return f(e);
    return next_of(*t);
  });
  if (auto o = update_outcome(r, f, c, "enforce " + c.env.container_id.substr(0, 12)); o.exit_code)
    return o;
  return {0, result_as(c.conf.prev_result, c.conf.version).dump() + "\n"};
}

Next unchanged() {
  Next n;
  n.unchanged = true;
  return n;
}

// DEL and GC: members leave the table; nothing to remove is no error.
Outcome remove(const Call& c, const std::function<bool(Table&)>& take) {
  Failure f;
  auto r = reconcile_update(c.conf.instance, [&](const std::optional<Inputs>& cur) -> Result<Next> {
    if (!cur) return unchanged();
    auto t = table_of(cur, c.conf.instance);
    if (!t) return f({kInvalidConfig, t.error().message(), ""});
    bool taken = take(*t);
    if (!prune_gone(*t) && !taken) return unchanged();
    return next_of(*t);
  });
  return update_outcome(r, f, c, "update its table");
}

Outcome del(const Call& c) {
  return remove(c, [&](Table& t) { return remove_member(t, c.env.container_id, c.env.ifname); });
}

Outcome gc(const Call& c) {
  return remove(c, [&](Table& t) {
    auto gone = collect_garbage(t, c.conf.name, c.conf.valid_attachments);
    for (const auto& m : gone)
      std::fprintf(stderr, "moat-cni: GC: %s %s on %s is no longer valid\n", m.container_id.c_str(),
                   m.ifname.c_str(), m.network.c_str());
    return !gone.empty();
  });
}

// CHECK: the attachment is in the table, its veth is still eth0's peer and
// one of the instance's programs runs on both its directions.
Outcome check(const Call& c) {
  auto not_enforced = [&](std::string msg, std::string details = {}) {
    return failed({kNotEnforced, std::move(msg), std::move(details)}, c.conf.version);
  };
  if (c.conf.prev_result.is_null())
    return failed({kInvalidConfig, "CHECK without prevResult", ""}, c.conf.version);
  auto cur = saved_inputs(c.conf.instance);
  if (!cur)
    return not_enforced("moat instance " + c.conf.instance + " holds nothing",
                        cur.error().message());
  auto t = table_of(*cur, c.conf.instance);
  if (!t) return failed({kInvalidConfig, t.error().message(), ""}, c.conf.version);
  const Member* m = find_member(*t, c.env.container_id, c.env.ifname);
  if (!m)
    return not_enforced(c.env.container_id.substr(0, 12) + " " + c.env.ifname +
                        " is not in moat instance " + c.conf.instance);
  auto host = host_side_of(c.env.netns, c.env.ifname);
  if (!host || host->veth != m->host_veth)
    return not_enforced(c.env.ifname + "'s host side is not " + m->host_veth + " any more",
                        host ? "it is " + host->veth : host.error().message());
  int idx = static_cast<int>(if_nametoindex(m->host_veth.c_str()));
  auto ours = instance_prog_ids(c.conf.instance);
  for (auto point : {BPF_TC_INGRESS, BPF_TC_EGRESS})
    if (!ours.contains(attached_prog_id(idx, point)))
      return not_enforced("moat's programs do not run on " + m->host_veth + " (" +
                              (point == BPF_TC_INGRESS ? "ingress" : "egress") + ")",
                          "delete and add the container again, or see `moat status --instance " +
                              c.conf.instance + "`");
  return {};
}

// STATUS: an ADD can be served: bpffs is mounted and the instance's record,
// when it has one, is readable.
Outcome status(const Call& c) {
  struct statfs st {};
  if (statfs(paths::kBpffs, &st) != 0 || st.f_type != BPF_FS_MAGIC)
    return failed({kNotAvailable, std::string(paths::kBpffs) + " is not a bpffs",
                   "mount it (mount -t bpf bpffs /sys/fs/bpf) in the runtime's mount namespace"},
                  c.conf.version);
  if (auto rec = read_record(c.conf.instance); !rec)
    return failed({kLimitedConnectivity, "moat instance " + c.conf.instance + " is damaged",
                   rec.error().message()},
                  c.conf.version);
  return {};
}

Outcome run(const Call& c) {
  switch (c.env.verb) {
    case Verb::add:
      return add(c);
    case Verb::del:
      return del(c);
    case Verb::check:
      return check(c);
    case Verb::status:
      return status(c);
    case Verb::gc:
      return gc(c);
    case Verb::version:  // answered before any configuration is read (run_plugin)
      break;
  }
  return {};
}

}  // namespace

Outcome run_plugin(const std::map<std::string, std::string>& vars, const std::string& text) {
  std::string version = request_version(text);
  auto env = read_env(vars);
  if (!env.env) return failed(env.error, version);
  if (env.env->verb == Verb::version) return {0, version_json(version).dump() + "\n"};
  auto conf = read_conf(text, env.env->verb);
  if (!conf.conf) return failed(conf.error, version);
  try {
    return run({*env.env, *conf.conf});
  } catch (const std::exception& e) {  // bad_alloc, or a bug: still an error object
    return failed({kApplyFailed, "moat-cni: internal error", e.what()}, version);
  }
}

int plugin_main() {
  init_libbpf();  // its expected kernel messages (an empty filter slot) are not the runtime's
  std::map<std::string, std::string> vars;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq != std::string::npos && kv.rfind("CNI_", 0) == 0)
      vars[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  if (!vars.contains("CNI_COMMAND")) {
    std::fprintf(stderr,
                 "moat-cni is a CNI plugin: container runtimes run it with CNI_COMMAND and the "
                 "other CNI_* variables set and the network configuration on stdin.\n"
                 "Put it in a conflist after \"bridge\" (docs/kubernetes.md); try\n"
                 "  echo '{\"cniVersion\":\"1.0.0\"}' | CNI_COMMAND=VERSION moat-cni\n");
    if (isatty(STDIN_FILENO)) {
      Outcome o = run_plugin(vars, "");
      std::fwrite(o.out.data(), 1, o.out.size(), stdout);
      return o.exit_code;
    }
  }
  std::string text((std::istreambuf_iterator<char>(std::cin)), {});
  Outcome o = run_plugin(vars, text);
  std::fwrite(o.out.data(), 1, o.out.size(), stdout);
  std::fflush(stdout);
  return o.exit_code;
}

}  // namespace moat::cni
