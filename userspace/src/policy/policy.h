// policy/ - segmentation policies: the model (model.h, model.cpp), reading
// moat-native and Kubernetes objects from JSON and YAML (read.cpp, yaml.cpp),
// one changed rule of a file found and read alone (edit.h, edit.cpp),
// selection and merging (select.cpp), compiling into map entries, whole or
// again for one changed rule, in memory or from a saved image of the
// compilation (compile.cpp), and the two evaluators of a
// flow (evaluate.cpp). Pure code.
// It depends on util/ and config/ (the file a policy applies to, and its
// reader); config/ needs only model.h and read.h back.
//
// policy.h - segmentation policies: selection, merging policy files,
// compilation into the `ipcache` and `policy` map entries of abi.h, and two
// independent evaluators of a flow (one reading the policy objects, one
// doing exactly what the kernel does with the compiled entries), which
// `moat explain` prints and the unit tests cross-check. Pure code.
//
// Identities follow Cilium's, refined by ipBlocks: an ipBlock matches every
// address inside its cidr and outside its excepts, whoever holds it, as in
// Kubernetes (its e2e "should allow egress access to server in CIDR block"
// selects a pod by address; Calico and kube-router match ipBlocks as plain
// address sets), so an identity must tell which ipBlocks hold its addresses.
// Container addresses with the same namespace, labels and set of ipBlocks
// holding them share one identity (a container with addresses in different
// ipBlocks has several, one per class); host addresses (gateways, uplink
// addresses, 127.0.0.0/8) with the same set share one, 127.0.0.0/8's being
// MOAT_ID_HOST; every other ipBlock cidr and except prefix has its own; any
// other IPv4 address is MOAT_ID_WORLD, any other IPv6 address the identity of
// ::/0 (so that 0.0.0.0/0 and ::/0 stay apart). Each address is classed by
// the ipBlocks of its own family, since Kubernetes (and Calico, Cilium) match
// an ipBlock against the packet's address: a block holding a container's IPv4
// address matches its IPv4 traffic only, one holding its IPv6 address its
// IPv6 traffic only. Without such blocks a container's IPv6 address has its
// IPv4 address's identity. An ipBlock peer stands for every identity whose
// addresses it holds, so the kernel's lookups stay as they are
// (bpf/lib/policy.h).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "abi.h"
#include "config/config.h"
#include "policy/model.h"
#include "util/result.h"

namespace moat {

// The labels of namespace `ns`: those of its `namespaces` entry (none when it
// has no entry) plus kubernetes.io/metadata.name=<ns>.
Labels namespace_labels(const Config& cfg, const std::string& ns);

// Whether `policy` selects `c` (same namespace, podSelector matches).
bool policy_selects(const Policy& policy, const Container& c);

// Adds what a policy file (parse_policy_file) holds to `cfg`: its policies
// are appended, its namespaces added. Problems (a policy name already used in
// its namespace, a namespace defined with other labels) name places in
// `file`; `cfg` is unchanged when there are any.
std::vector<Problem> merge_policy_file(Config& cfg, const PolicyFile& file);
// The same, moving the policies in (100,000 rules are not copied).
std::vector<Problem> merge_policy_file(Config& cfg, PolicyFile&& file);

// ---------------------------------------------------------------------------
// Compilation

// One rule of one policy; rule ids index PolicyPlan::rules (and
// policy_rule_table()). Rules are numbered policy by policy in the order of
// Config::policies, ingress rules before egress rules.
struct RuleInfo {
  std::string policy;     // name
  std::string ns;         // namespace of the policy
  std::string direction;  // "ingress" | "egress"
  int rule_index = 0;     // index in the policy's ingress or egress list
  std::string action;     // "allow" | "deny"
  std::string text;       // "default/db ingress[0]: allow from pods {app=a} on 7000/TCP"
  std::string path;       // `policies[1].spec.ingress[0]` in `source`
  std::string source;
};

std::vector<RuleInfo> policy_rule_table(const Config& cfg);
// The row of rule `i` of direction `d` of `p`.
RuleInfo rule_info(const Policy& p, PolicyDirection d, size_t i);
// The same for a rule of the policy `ns`/`policy` known by name (no source).
RuleInfo rule_info(const std::string& policy, const std::string& ns, PolicyDirection d, size_t i,
                   const PolicyRule& rule);

struct PolicyPlan {
  bool active = false;  // any policy exists; when false both lists are empty
  // Sorted by (prefixlen, address).
  std::vector<std::pair<moat_lpm_v4_key, moat_ipcache_val>> ipcache;
  // The same for IPv6 (`ipcache6_gens`): a container's IPv6 address has the
  // identity of its class (its IPv4 address's unless ipBlocks hold one and
  // not the other), the same flags; gateways' are the host's, ::/0 is
  // "world (IPv6)" so that 0.0.0.0/0 (MOAT_ID_WORLD) never matches IPv6.
  std::vector<std::pair<moat_lpm_v6_key, moat_ipcache_val>> ipcache6;
  // Sorted by key (subject, peer, dir, proto, port).
  std::vector<std::pair<moat_policy_key, moat_policy_val>> entries;
  std::vector<RuleInfo> rules;                     // rule_id -> rule
  std::map<uint32_t, std::string> identity_names;  // identity -> "default{app=db} [datenbank]"
};

// Compiles cfg.policies. `host_addresses` are the host's own addresses known
// only at apply time (uplinks'); gateways (IPv4 and IPv6), 127.0.0.0/8 and
// ::1 are added anyway.
// They must be given here, not added to a plan afterwards: which identity a
// host address gets depends on the ipBlocks holding it. Same input, same
// identities and entries. Fails when the plan exceeds MOAT_MAX_IPCACHE or
// MOAT_MAX_POLICY.
Result<PolicyPlan> compile_policies(const Config& cfg,
                                    const std::vector<Ipv4>& host_addresses = {});
// The same, with the compilation's PolicyImage bytes put into `*image`.
Result<PolicyPlan> compile_policies(const Config& cfg, const std::vector<Ipv4>& host_addresses,
                                    std::string* image);

// A compilation kept for changing it: compile() is compile_policies(), and
// replace_rule() then compiles again only what one rule touches: the
// entries of the subjects its policy selects, for the peers the old or the
// new rule names (all of their peers when either names every peer). It
// compiles everything again when it must: when the change moves
// identities (an ipBlock no other rule has comes or goes), makes the rule
// start or stop applying, or changes what a moat policy without
// policyTypes isolates (the directions it has allow rules in). After a
// compile or a change that succeeded, plan() is compile_policies(config(),
// the host addresses given) byte for byte (tests/unit/policy_compile_test.cpp
// checks this on generated policies, change after change). It keeps the
// identities, the rules with their peers, and each set of subjects with the
// same rules with its entries: what compile_policies() builds and drops.
// A rule must be one the reader accepted (read_changed_rule(), edit.h):
// the compile relies on what reading checks. A moved-from compiler may only
// be assigned to or destroyed.
class PolicyCompiler {
 public:
  PolicyCompiler();
  ~PolicyCompiler();
  PolicyCompiler(PolicyCompiler&&) noexcept;
  PolicyCompiler& operator=(PolicyCompiler&&) noexcept;

  Result<void> compile(Config cfg, std::vector<Ipv4> host_addresses = {});
  // Rule `index` of direction `d` of config().policies[policy] becomes
  // `rule`; true when compiled in part, false when compiled whole. A rule
  // that does not exist is an error and changes nothing; a plan that no
  // longer fits the maps is an error after which config() holds the rule
  // and the next change compiles whole.
  Result<bool> replace_rule(size_t policy, PolicyDirection d, size_t index, PolicyRule rule);
  const PolicyPlan& plan() const;  // after a compile or a change that succeeded
  const Config& config() const;
  // What a later process needs to change one rule in part (PolicyImage),
  // after a compile or a change that succeeded.
  std::string image() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

// A compilation as bytes, for changing one rule in a later process without
// the policies' text: each rule's peers and ports as identities and
// patterns, each group of subjects with the same rules and which peers its
// rules name, the ipBlocks with their identities and uses, and the sorted
// entries. replace_rule() is PolicyCompiler::replace_rule()'s change in
// part, made on these; where that would compile whole, or where a peer is
// a pod selector (the image keeps no labels), it changes nothing and says
// so: the caller then compiles the whole file. The rule it is told it
// replaces must compile to the rule the image holds, or nothing changes.
class PolicyImage {
 public:
  PolicyImage();
  ~PolicyImage();
  PolicyImage(PolicyImage&&) noexcept;
  PolicyImage& operator=(PolicyImage&&) noexcept;

  // Fails on bytes that are not an image of this build's format.
  static Result<PolicyImage> from_bytes(std::string_view bytes);
  // bytes() is magic() and then each section as a u64 size and these bytes
  // (views into the image, valid until it changes).
  static std::string_view magic();
  std::vector<std::string_view> sections() const;
  // The same, the bytes read in order from `read` (n bytes into `to`; false
  // when fewer are left) and `left` telling how many remain: an image kept
  // as a patch of another is read without being put together first.
  static Result<PolicyImage> from_reader(const std::function<bool(void* to, size_t n)>& read,
                                         const std::function<size_t()>& left);
  // The image `bytes` holds with each of `splices` (sorted, apart: each a
  // section's size, same length, or a range of one section's elements)
  // in place of the bytes it cuts, read where it lies: a section no splice
  // changes and aligned for its elements is a view of `bytes`, the others
  // copies. A section is copied too when a change writes it, never
  // written where it lies (util/section.h). The image holds `keep`, which
  // must keep `bytes` alive.
  struct Splice {
    uint64_t at = 0;         // where in the image
    uint64_t cut = 0;        // how many of its bytes go
    std::string_view bytes;  // what is there instead
  };
  static Result<PolicyImage> from_mapping(std::shared_ptr<const void> keep, std::string_view bytes,
                                          std::span<const Splice> splices = {});
  std::string bytes() const;

  // Rule `index` of direction `d` of policy `policy` (by its place among
  // the compiled policies), which was `before`, becomes `after`: true when
  // changed in part; false when only a whole compile can make this change
  // (nothing changed), as when the entries would be more than
  // `max_entries` (a generation's most; less in tests). Both rules must be
  // ones the reader accepted.
  Result<bool> replace_rule(size_t policy, PolicyDirection d, size_t index,
                            const PolicyRule& before, const PolicyRule& after,
                            size_t max_entries = MOAT_MAX_POLICY);
  // Sorted by key, as PolicyPlan::entries; the identity caches as the
  // compile made them (a change in part never changes them).
  std::span<const std::pair<moat_policy_key, moat_policy_val>> entries() const;
  const std::vector<std::pair<moat_lpm_v4_key, moat_ipcache_val>>& ipcache() const;
  const std::vector<std::pair<moat_lpm_v6_key, moat_ipcache_val>>& ipcache6() const;
  // The rule table's row of a rule (PolicyPlan::rules), nullopt for none.
  std::optional<uint32_t> rule_id(size_t policy, PolicyDirection d, size_t index) const;
  size_t rule_count() const;

 private:
  // Its spans and indexes point inside their sections, its entries are in
  // order: the checks of both readers.
  Result<PolicyImage> checked() &&;
  struct Data;
  std::unique_ptr<Data> d_;
};

// ---------------------------------------------------------------------------
// Evaluation of one flow (for `moat explain` and the tests)

struct PolicyEndpoint {
  enum class Kind { container, host, address };
  Kind kind = Kind::address;
  std::string container;  // container only
  Ipv4 ip;                // the attachment's address, a host address, or the address
  // A container's: its attachment's IPv6 address, if any, whichever family
  // the flow is (ipBlocks judge the address of the flow's family: ip6 when
  // v6, else ip). A host or an address: its address when the side is IPv6.
  std::optional<Ipv6> ip6;
  bool v6 = false;  // an IPv6 flow's side: ip6 is the address it uses
  std::string str() const;
};

// "NAME" (the container's first attachment), "NAME@NETWORK", "host" (the
// first gateway, else 127.0.0.1), "world" (an address no policy CIDR, container
// or host address covers), "A.B.C.D" or "A.B.C.D/N" (its first address), an
// IPv6 address or prefix likewise (an IPv6 side). An address is classified:
// a container's address is that container, a gateway, 127.0.0.0/8, ::1 or
// one of `host_addresses` is the host.
Result<PolicyEndpoint> resolve_endpoint(const Config& cfg, std::string_view text,
                                        const std::vector<Ipv4>& host_addresses = {});

// The same side in an IPv6 flow, for when the other side is IPv6: a
// container's attachment by its IPv6 address, the host by the first IPv6
// gateway (::1 without one). Fails for an attachment without IPv6 and for
// an IPv4 address.
Result<PolicyEndpoint> ipv6_endpoint(const Config& cfg, const PolicyEndpoint& ep);

enum class PolicyOutcome {
  not_isolated,    // allowed: nothing isolates the container in this direction
  allowed,         // allowed by a rule
  denied,          // an explicit deny rule
  default_denied,  // isolated and allowed by no rule
};

struct DirectionVerdict {
  bool applies = false;  // this side is a container, so its policies were consulted
  PolicyOutcome outcome = PolicyOutcome::not_isolated;
  int rule_id = -1;  // deciding rule (allowed, denied), index into policy_rule_table()
  std::string text;  // one sentence
  bool allowed() const {
    return outcome == PolicyOutcome::not_isolated || outcome == PolicyOutcome::allowed;
  }
};

struct PolicyVerdict {
  bool allowed = true;
  DirectionVerdict egress;   // the source container's policies (applies if it is one)
  DirectionVerdict ingress;  // the destination container's policies
  int drop_reason = 0;       // 0, or MOAT_DROP_POLICY_DENY / _DEFAULT_DENY as a positive number
  std::string text;          // "allowed: ..." / "denied: ..."
};

// From the policy objects and selectors directly. proto is an IPPROTO_*
// number, port the destination port in host order (0 for ICMP).
PolicyVerdict evaluate_model(const Config& cfg, const PolicyEndpoint& from,
                             const PolicyEndpoint& to, uint8_t proto, uint16_t port);

// What the kernel does with `plan`: ipcache longest-prefix lookups (a miss is
// MOAT_ID_WORLD), the egress check when the source is a container identity,
// the ingress check when the destination is one, six lookups each.
PolicyVerdict evaluate_compiled(const PolicyPlan& plan, Ipv4 src, Ipv4 dst, uint8_t proto,
                                uint16_t port);
// The same with `ipcache6` (a miss there is MOAT_ID_WORLD too).
PolicyVerdict evaluate_compiled(const PolicyPlan& plan, const Ipv6& src, const Ipv6& dst,
                                uint8_t proto, uint16_t port);
// By the sides' family: IPv6 when both are (ipv6_endpoint()), else IPv4.
PolicyVerdict evaluate_compiled(const PolicyPlan& plan, const PolicyEndpoint& from,
                                const PolicyEndpoint& to, uint8_t proto, uint16_t port);

}  // namespace moat
