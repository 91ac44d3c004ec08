// compile.cpp - policies into `ipcache` and `policy` map entries
// (evaluate.cpp replays the kernel's lookups on them).
//
// The kernel answers a packet with the first hit of six lookups,
//   (peer, proto, port) (peer, proto, 0) (peer, 0, 0) (ANY, proto, port) ...
// so all precedence lives in the entries. For a subject identity and a
// direction, the rules that apply are the deny rules of every policy
// selecting it and the allow rules of those that isolate it. Every entry key
// is a pattern (proto, port), (proto, every port) or (every protocol); its
// action is what those rules decide for the packets whose first hit it is:
// deny if a deny rule covers the pattern, else allow. A peer identity with
// rules of its own gets copies of the wildcard peer's patterns, so its own
// entries always answer first. Then every entry that changes no answer
// (same verdict as the lookup that would answer without it) is dropped.
//
// An ipBlock matches every address inside its cidr and outside its
// excepts, a container's or the host's as well: Kubernetes' e2e "should
// allow egress access to server in CIDR block" selects a pod by its
// address, and Calico and kube-router match ipBlocks as plain address sets.
// The kernel only compares identities, so an address's identity must say
// which ipBlocks hold it: containers (and host addresses) are split by the
// set of ipBlocks holding each address, a container's IPv4 and IPv6
// addresses apart (a block matches the packet's own address, so one
// holding the IPv4 address never admits the IPv6 traffic), and an ipBlock
// peer stands for every identity whose addresses it holds, plus the CIDR
// identities inside it. The split is paid here, once per compile, and in
// map entries (a split identity is a subject of its own, with its own copy
// of its policies' entries); the kernel still does two ipcache and at most
// twelve policy lookups per new flow.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <variant>

#include "policy/internal.h"
#include "policy/policy.h"
#include "util/section.h"

namespace moat {
namespace {

// What compilation needs of an address family, so that one code serves
// both: IPv4 (the `ipcache` entries) and IPv6 (`ipcache6`).
template <class P>
struct Family;

template <>
struct Family<Ipv4Prefix> {
  using Addr = Ipv4;
  using Key = moat_lpm_v4_key;
  static constexpr uint8_t kBits = 32;
  static Ipv4Prefix loopback() { return {Ipv4{127u << 24}, 8}; }  // the host's
  static Ipv4Prefix enclosing(Ipv4 a, uint8_t len) {
    return {Ipv4{a.value & (len == 0 ? 0 : ~0u << (32 - len))}, len};
  }
  static Key key(const Ipv4Prefix& p) { return {p.len, p.addr.to_be()}; }
  static std::vector<std::pair<Key, moat_ipcache_val>>& entries(PolicyPlan& plan) {
    return plan.ipcache;
  }
};

template <>
struct Family<Ipv6Prefix> {
  using Addr = Ipv6;
  using Key = moat_lpm_v6_key;
  static constexpr uint8_t kBits = 128;
  static Ipv6Prefix loopback() {  // ::1, the host's
    Ipv6 a;
    a.bytes[15] = 1;
    return {a, 128};
  }
  static Ipv6Prefix enclosing(const Ipv6& a, uint8_t len) {
    Ipv6Prefix p{a, len};
    for (unsigned bit = len; bit < 128; ++bit)
      p.addr.bytes[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
    return p;
  }
  static Key key(const Ipv6Prefix& p) {
    Key k{};
    k.prefixlen = p.len;
    std::copy(p.addr.bytes.begin(), p.addr.bytes.end(), k.addr.b);
    return k;
  }
  static std::vector<std::pair<Key, moat_ipcache_val>>& entries(PolicyPlan& plan) {
    return plan.ipcache6;
  }
};

// The prefix holding `a` alone: /32 or /128.
template <class P>
P address_prefix(const typename Family<P>::Addr& a) {
  return {a, Family<P>::kBits};
}

// A pattern / point: (proto, port). proto 0: every protocol (as a key) or a
// protocol no rule names (as a point); port 0 likewise.
using Pattern = uint32_t;
Pattern pattern(uint8_t proto, uint16_t port) { return uint32_t{proto} << 16 | port; }
uint8_t proto_of(Pattern p) { return static_cast<uint8_t>(p >> 16); }
uint16_t port_of(Pattern p) { return static_cast<uint16_t>(p & 0xffff); }

// The sets of compilation are sorted vectors of unique values: one
// allocation each. Node-based sets took one per element, and allocating
// and freeing them was most of compiling 100,000 rules.
template <class T>
void sort_unique(std::vector<T>& v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
}

template <class T>
bool has(const std::vector<T>& sorted, T x) {
  return std::binary_search(sorted.begin(), sorted.end(), x);
}

struct PortSet {
  bool all = false;
  std::vector<uint8_t> every_port;  // protocols with every port
  std::vector<Pattern> ports;       // single ports, none of an every_port protocol

  bool covers(Pattern pt) const {
    if (all) return true;
    uint8_t x = proto_of(pt);
    if (x == 0) return false;
    if (has(every_port, x)) return true;
    return port_of(pt) != 0 && has(ports, pt);
  }
  // Appends them; the caller sorts.
  void patterns(std::vector<Pattern>& out) const {
    if (all) out.push_back(0);
    for (uint8_t x : every_port) out.push_back(pattern(x, 0));
    out.insert(out.end(), ports.begin(), ports.end());
  }
};

PortSet port_set(const PolicyRule& r) {
  PortSet s;
  if (r.ports.empty()) s.all = true;
  for (const PolicyPort& p : r.ports) {
    // ICMP is the echo protocol of the flow's family, as a TCP port is
    // either family's: one rule keeps ping working when IPv6 is turned on.
    if (p.protocol == Protocol::icmp) s.every_port.push_back(IPPROTO_ICMPV6);
    uint8_t x = ip_protocol_number(p.protocol);
    uint16_t last = p.end_port != 0 ? p.end_port : p.port;
    if (p.port == 0 || (p.port == 1 && last == 65535)) {
      s.every_port.push_back(x);
      continue;
    }
    for (uint32_t n = p.port; n <= last; ++n)
      s.ports.push_back(pattern(x, static_cast<uint16_t>(n)));
  }
  sort_unique(s.every_port);
  sort_unique(s.ports);
  // A single port inside "every port" of its protocol adds nothing.
  std::erase_if(s.ports, [&](Pattern k) { return has(s.every_port, proto_of(k)); });
  return s;
}

struct CompiledRule {
  uint32_t id = 0;
  bool deny = false;
  bool any_peer = false;
  std::vector<uint32_t> peers;  // identities, sorted
  PortSet ports;
};

// What a lookup answers: an entry's action (0: no entry answered) and rule.
struct Answer {
  uint32_t action = 0;
  uint32_t rule = 0;
};

// Answers are compared by effect: an allow is an allow whatever the rule; a
// deny keeps its rule (counters and explain name it); no answer is the
// default, allow or default-deny.
bool same_effect(Answer a, Answer b, bool isolated) {
  auto norm = [isolated](Answer x) {
    if (x.action == 0) x.action = isolated ? 0 : MOAT_POLICY_ALLOW;
    if (x.action == MOAT_POLICY_ALLOW) x.rule = 0;
    return x;
  };
  a = norm(a);
  b = norm(b);
  return a.action == b.action && a.rule == b.rule;
}

Answer decide(const std::vector<const CompiledRule*>& rules, Pattern pt) {
  for (const CompiledRule* r : rules)
    if (r->deny && r->ports.covers(pt)) return {MOAT_POLICY_DENY, r->id};
  for (const CompiledRule* r : rules)
    if (!r->deny && r->ports.covers(pt)) return {MOAT_POLICY_ALLOW, r->id};
  return {};
}

// Entries by pattern, sorted. minimize() marks the ones it takes out
// `gone` and compacts at the end: a rule's port range can make 60,000,
// and erasing from the middle shifted them all each time.
struct Entry {
  Pattern key = 0;
  Answer answer;
  bool gone = false;
};
using Entries = std::vector<Entry>;

// The entry of pattern `k`, taken out or not; `E` is Entries or const Entries.
template <class E>
auto* find_entry(E& m, Pattern k) {
  auto it =
      std::lower_bound(m.begin(), m.end(), k, [](const Entry& e, Pattern x) { return e.key < x; });
  return it != m.end() && it->key == k ? &*it : nullptr;
}

const Answer* find_answer(const Entries& m, Pattern k) {
  const Entry* e = find_entry(m, k);
  return e && !e->gone ? &e->answer : nullptr;
}

// The first entry of `m` a packet at point `pt` hits.
const Answer* hit(const Entries& m, Pattern pt, Pattern* key = nullptr) {
  auto try_key = [&](Pattern k) -> const Answer* {
    const Answer* a = find_answer(m, k);
    if (a && key) *key = k;
    return a;
  };
  if (port_of(pt) != 0)
    if (auto a = try_key(pt)) return a;
  if (proto_of(pt) != 0)
    if (auto a = try_key(pattern(proto_of(pt), 0))) return a;
  return try_key(0);
}

// Drops the entries of `m` that change no answer: `below` answers what `m`
// does not, `want` is the answer every point must keep.
void minimize(Entries& m, const std::vector<Pattern>& points,
              const std::function<Answer(Pattern)>& below,
              const std::function<Answer(Pattern)>& want, bool isolated) {
  auto answer = [&](Pattern pt) {
    const Answer* a = hit(m, pt);
    return a ? *a : below(pt);
  };
  // Most specific first: single ports, then protocols, then everything.
  std::vector<Pattern> order;
  for (const Entry& e : m) order.push_back(e.key);
  auto rank = [](Pattern k) { return k == 0 ? 2 : port_of(k) == 0 ? 1 : 0; };
  std::stable_sort(order.begin(), order.end(),
                   [&](Pattern a, Pattern b) { return rank(a) < rank(b); });
  std::vector<Pattern> region;
  for (Pattern k : order) {
    // The points whose first hit is k: a single port is its own point; a
    // protocol's entry answers its points without an entry of their own.
    region.clear();
    if (port_of(k) != 0) {
      region.push_back(k);
    } else {
      auto begin = points.begin(), end = points.end();
      if (proto_of(k) != 0) {
        begin = std::lower_bound(points.begin(), points.end(), k);
        end = std::upper_bound(points.begin(), points.end(), pattern(proto_of(k), 0xffff));
      }
      for (auto it = begin; it != end; ++it) {
        Pattern first = 0;
        if (hit(m, *it, &first) && first == k) region.push_back(*it);
      }
    }
    Entry* e = find_entry(m, k);
    e->gone = true;
    bool same = std::all_of(region.begin(), region.end(), [&](Pattern pt) {
      return same_effect(answer(pt), want(pt), isolated);
    });
    if (!same) e->gone = false;
  }
  std::erase_if(m, [](const Entry& e) { return e.gone; });
}

// Points that stand for every packet: one per pattern, one "other port" per
// protocol, one "other protocol". `patterns` is sorted.
std::vector<Pattern> points_of(const std::vector<Pattern>& patterns) {
  std::vector<Pattern> pts = {0};
  for (Pattern k : patterns) {
    pts.push_back(k);
    if (proto_of(k) != 0) pts.push_back(pattern(proto_of(k), 0));
  }
  sort_unique(pts);
  return pts;
}

// Indices into IpBlocks, ascending: the ipBlocks holding an address.
using Regions = std::vector<uint32_t>;

struct IdentityInfo {
  uint32_t id = 0;
  std::string ns;
  Labels labels;
  Regions regions;  // the ipBlocks holding its addresses
  std::vector<std::string> containers;
  bool isolated[2] = {false, false};  // by PolicyDirection
};

std::string labels_str(const Labels& labels) {
  std::string s;
  for (const auto& [k, v] : labels) s += (s.empty() ? "" : ",") + k + "=" + v;
  return "{" + s + "}";
}

template <class P>
bool within(const P& inner, const P& outer) {
  return inner.len >= outer.len && outer.contains(inner.addr);
}

// The distinct ipBlocks of every rule (cidr and the set of its excepts),
// numbered in sorted order, so that identities depend only on what the
// policies say, not on where they say it.
class IpBlocks {
 public:
  explicit IpBlocks(const Config& cfg) {
    std::set<Key> keys;
    for_each_ip_block(cfg, [&](const IpBlock& b) { keys.insert(key_of(b)); });
    keys_.assign(keys.begin(), keys.end());
    for (uint32_t i = 0; i < keys_.size(); ++i) by_cidr_[keys_[i].first].push_back(i);
  }

  size_t size() const { return keys_.size(); }

  // (cidr, excepts sorted), by index.
  using Key = std::pair<IpPrefix, std::vector<IpPrefix>>;
  const std::vector<Key>& keys() const { return keys_; }

  uint32_t index(const IpBlock& b) const {
    return static_cast<uint32_t>(std::lower_bound(keys_.begin(), keys_.end(), key_of(b)) -
                                 keys_.begin());
  }

  // The index of `b`, if the rules compiled have it.
  std::optional<uint32_t> find(const IpBlock& b) const {
    uint32_t i = index(b);
    if (i == keys_.size() || keys_[i] != key_of(b)) return std::nullopt;
    return i;
  }

  // The blocks holding the addresses of `p` that no longer policy prefix
  // holds (all of a /32 or /128): those whose cidr holds p and none of whose
  // excepts does. An except inside p has an ipcache entry of its own, so it
  // never splits those addresses. At most 129 lookups, whatever the rules.
  template <class P>
  Regions holding(const P& p) const {
    Regions out;
    for (uint8_t len = 0; len <= p.len; ++len) {
      auto it = by_cidr_.find(Family<P>::enclosing(p.addr, len));
      if (it == by_cidr_.end()) continue;
      for (uint32_t i : it->second) {
        const auto& except = keys_[i].second;
        if (std::none_of(except.begin(), except.end(),
                         [&](const IpPrefix& e) { return within(p, std::get<P>(e)); }))
          out.push_back(i);
      }
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  // The prefixes of family P the ipcache needs: every cidr and every except,
  // but 0.0.0.0/0, since an IPv4 miss is the world. ::/0 is always one (see
  // assign_cidr_identities()).
  template <class P>
  std::set<P> prefixes() const {
    std::set<P> out;
    if constexpr (std::is_same_v<P, Ipv6Prefix>) out.insert(Ipv6Prefix{});
    for (const auto& [cidr, except] : keys_) {
      const P* c = std::get_if<P>(&cidr);
      if (!c) continue;
      if (c->len > 0) out.insert(*c);
      for (const IpPrefix& e : except) out.insert(std::get<P>(e));
    }
    return out;
  }

  // " (in 10.0.0.0/8 except 10.1.0.0/16; 172.20.0.3/32)", "" for none.
  std::string str(const Regions& regions) const {
    std::vector<std::string> parts;
    for (uint32_t i : regions) {
      const auto& [cidr, except] = keys_[i];
      std::vector<std::string> ex;
      for (const IpPrefix& e : except) ex.push_back(to_string(e));
      parts.push_back(to_string(cidr) + (ex.empty() ? "" : " except " + join(ex, ", ")));
    }
    return parts.empty() ? "" : " (in " + join(parts, "; ") + ")";
  }

 private:
  // IPv4 blocks sort first (the variant's order), so adding IPv6 blocks
  // leaves the numbers of IPv4 ones as they were.
  static Key key_of(const IpBlock& b) {
    std::set<IpPrefix> except(b.except.begin(), b.except.end());
    return {b.cidr, {except.begin(), except.end()}};
  }

  std::vector<Key> keys_;  // sorted
  std::map<IpPrefix, std::vector<uint32_t>> by_cidr_;
};

uint32_t dir_index(PolicyDirection d) { return d == PolicyDirection::ingress ? 0 : 1; }

// Each family's entries go to a map of their own, each of MOAT_MAX_IPCACHE.
Result<void> check_ipcache(const PolicyPlan& plan, const std::string& source) {
  for (auto [n, what] : {std::pair{plan.ipcache.size(), "ipcache"},
                         std::pair{plan.ipcache6.size(), "IPv6 ipcache"}}) {
    if (n <= MOAT_MAX_IPCACHE) continue;
    return fail(source + ": the policies need " + std::to_string(n) + " " + what +
                " entries (container addresses, host addresses, policy CIDRs); the " + what +
                " map holds at most " + std::to_string(MOAT_MAX_IPCACHE));
  }
  return {};
}

// ---------------------------------------------------------------------------
// Phases of compile_policies()

// What an identity cache of one family holds.
template <class P>
struct FamilyIds {
  using Addr = typename Family<P>::Addr;
  std::map<Addr, const IdentityInfo*> by_address;  // a container's; the first container wins
  std::map<P, uint32_t> host_prefixes;             // the host's entries
  std::map<P, uint32_t> cidrs;
};

// Identities: containers by (namespace, labels, ipBlocks holding the
// address), then the host by ipBlocks, then one per policy CIDR (IPv4's
// first); numbered in that order, each group sorted, so the same input gets
// the same numbers.
struct Identities {
  explicit Identities(const Config& cfg) : blocks(cfg) {}
  IpBlocks blocks;
  std::map<std::tuple<std::string, Labels, Regions>, IdentityInfo> by_key;
  std::vector<IdentityInfo*> containers;  // in identity order
  std::map<Regions, uint32_t> hosts;      // the host's identities
  std::tuple<FamilyIds<Ipv4Prefix>, FamilyIds<Ipv6Prefix>> families;
  std::vector<std::vector<uint32_t>> inside;  // by ipBlock: container and host identities it holds
  uint32_t next_id = MOAT_ID_FIRST_DYNAMIC;

  template <class P>
  FamilyIds<P>& of() {
    return std::get<FamilyIds<P>>(families);
  }
  template <class P>
  const FamilyIds<P>& of() const {
    return std::get<FamilyIds<P>>(families);
  }
};

// A container standing for every container of an identity: selection looks
// only at namespace and labels.
Container probe_of(const IdentityInfo& info) {
  Container probe;
  probe.ns = info.ns;
  probe.labels = info.labels;
  return probe;
}

IdentityInfo& identity_of(Identities& ids, const Container& c, Regions regions) {
  IdentityInfo& info = ids.by_key[{c.ns, c.labels, regions}];
  info.ns = c.ns;
  info.labels = c.labels;
  info.regions = std::move(regions);
  if (info.containers.empty() || info.containers.back() != c.name)
    info.containers.push_back(c.name);
  return info;
}

// One identity per address class: (namespace, labels, ipBlocks holding the
// address), each address classed by its own family's blocks, since an
// ipBlock matches a packet by the packet's address, one family at a time
// (Kubernetes, Calico and Cilium alike): a block holding a container's IPv4
// address says nothing of its IPv6 traffic, nor the reverse. Without blocks
// holding them both addresses of an attachment (and a container's every
// attachment) share one identity, as they always did; a container in
// blocks has one per class, and its policies and the pod selectors naming
// it cover each. A container without an address keeps one.
void assign_container_identities(const Config& cfg, Identities& ids, PolicyPlan& plan) {
  for (const Container& c : cfg.containers) {
    if (c.networks.empty()) identity_of(ids, c, {});
    for (const Attachment& a : c.networks) {
      IdentityInfo& four =
          identity_of(ids, c, ids.blocks.holding(address_prefix<Ipv4Prefix>(a.ip)));
      ids.of<Ipv4Prefix>().by_address.emplace(a.ip, &four);
      if (!a.ip6) continue;
      IdentityInfo& six =
          identity_of(ids, c, ids.blocks.holding(address_prefix<Ipv6Prefix>(*a.ip6)));
      ids.of<Ipv6Prefix>().by_address.emplace(*a.ip6, &six);
    }
  }
  for (auto& [key, info] : ids.by_key) {
    info.id = ids.next_id++;
    ids.containers.push_back(&info);
    const Container probe = probe_of(info);
    for (const Policy& p : cfg.policies) {
      if (!policy_selects(p, probe)) continue;
      info.isolated[0] |= p.isolates_ingress;
      info.isolated[1] |= p.isolates_egress;
    }
    plan.identity_names[info.id] = info.ns + labels_str(info.labels) + " [" +
                                   join(info.containers, ", ") + "]" + ids.blocks.str(info.regions);
  }
}

// The host's prefixes of family P with the ipBlocks holding each: its
// loopback, `addresses` (gateways, its own) unless a container holds one, and
// the policy prefixes inside loopback (an ipBlock there matches part of it).
template <class P>
std::map<P, Regions> host_prefixes(const Identities& ids,
                                   const std::vector<typename Family<P>::Addr>& addresses) {
  std::map<P, Regions> prefixes;
  auto add = [&](const P& p) {
    if (p.len == Family<P>::kBits && ids.of<P>().by_address.contains(p.addr)) return;
    prefixes.emplace(p, ids.blocks.holding(p));
  };
  add(Family<P>::loopback());
  for (const auto& a : addresses) add(address_prefix<P>(a));
  for (const P& p : ids.blocks.template prefixes<P>())
    if (within(p, Family<P>::loopback())) add(p);
  return prefixes;
}

// The host's entries of both families: one identity per set of ipBlocks
// holding its addresses, whatever their family. 127.0.0.0/8's class keeps
// MOAT_ID_HOST, so a policy whose ipBlocks do not tell host addresses apart
// leaves the host one identity, as it always was.
void assign_host_identities(const Config& cfg, const std::vector<Ipv4>& host_addresses,
                            Identities& ids, PolicyPlan& plan) {
  std::vector<Ipv4> v4 = host_addresses;
  std::vector<Ipv6> v6;
  for (const Network& n : cfg.networks) {
    v4.push_back(n.gateway);
    if (n.subnet6) v6.push_back(n.gateway6);
  }
  const auto prefixes4 = host_prefixes<Ipv4Prefix>(ids, v4);
  const auto prefixes6 = host_prefixes<Ipv6Prefix>(ids, v6);
  ids.hosts[prefixes4.at(Family<Ipv4Prefix>::loopback())] = MOAT_ID_HOST;
  std::set<Regions> classes;
  for (const auto& [p, regions] : prefixes4) classes.insert(regions);
  for (const auto& [p, regions] : prefixes6) classes.insert(regions);
  for (const Regions& regions : classes) {
    auto [it, fresh] = ids.hosts.try_emplace(regions, ids.next_id);
    if (fresh) ++ids.next_id;
    plan.identity_names[it->second] = "host" + ids.blocks.str(regions);
  }
  for (const auto& [p, regions] : prefixes4)
    ids.of<Ipv4Prefix>().host_prefixes[p] = ids.hosts.at(regions);
  for (const auto& [p, regions] : prefixes6)
    ids.of<Ipv6Prefix>().host_prefixes[p] = ids.hosts.at(regions);
}

// Policy prefixes outside loopback (those inside are the host's). ::/0 is
// always one: a miss is MOAT_ID_WORLD, which 0.0.0.0/0 matches, so IPv6
// addresses nothing covers get an identity of their own, or an IPv4 rule
// would let them through.
template <class P>
void assign_cidr_identities(Identities& ids, PolicyPlan& plan) {
  for (const P& prefix : ids.blocks.template prefixes<P>()) {
    if (within(prefix, Family<P>::loopback())) continue;
    ids.of<P>().cidrs[prefix] = ids.next_id;
    plan.identity_names[ids.next_id++] = prefix.len == 0 ? "world (IPv6)" : "cidr " + prefix.str();
  }
}

// Which container and host identities each ipBlock holds.
void index_inside(Identities& ids) {
  ids.inside.assign(ids.blocks.size(), {});
  for (const IdentityInfo* info : ids.containers)
    for (uint32_t b : info->regions) ids.inside[b].push_back(info->id);
  for (const auto& [regions, id] : ids.hosts)
    for (uint32_t b : regions) ids.inside[b].push_back(id);
}

void assign_identities(const Config& cfg, const std::vector<Ipv4>& host_addresses, Identities& ids,
                       PolicyPlan& plan) {
  plan.identity_names[MOAT_ID_WORLD] = "world";
  plan.identity_names[MOAT_ID_LINK] = "link-local peer";
  assign_container_identities(cfg, ids, plan);
  assign_host_identities(cfg, host_addresses, ids, plan);
  assign_cidr_identities<Ipv4Prefix>(ids, plan);
  assign_cidr_identities<Ipv6Prefix>(ids, plan);
  index_inside(ids);
}

uint32_t flags_of(const IdentityInfo& info) {
  uint32_t flags = MOAT_ID_F_CONTAINER;
  if (info.isolated[0]) flags |= MOAT_ID_F_INGRESS_ISOLATED;
  if (info.isolated[1]) flags |= MOAT_ID_F_EGRESS_ISOLATED;
  return flags;
}

// One family's ipcache, sorted by (prefixlen, address): containers and the
// host first; a CIDR never shadows them.
template <class P>
void fill_ipcache(const Identities& ids, PolicyPlan& plan) {
  using Addr = typename Family<P>::Addr;
  std::map<std::pair<uint8_t, Addr>, moat_ipcache_val> ipcache;
  auto put = [&](const P& p, moat_ipcache_val v) {
    ipcache.emplace(std::pair{p.len, p.addr}, v);  // the first one wins
  };
  const FamilyIds<P>& f = ids.of<P>();
  for (const auto& [addr, info] : f.by_address)
    put(address_prefix<P>(addr), {info->id, flags_of(*info)});
  for (const auto& [prefix, id] : f.host_prefixes) put(prefix, {id, 0});
  for (const auto& [prefix, id] : f.cidrs) put(prefix, {id, 0});
  for (const auto& [k, v] : ipcache)
    Family<P>::entries(plan).emplace_back(Family<P>::key({k.second, k.first}), v);
}

// The identities an ipBlock matches: the CIDR identities of its own
// prefixes and those inside it, less the excepted ones, then the container
// and host identities whose addresses it holds.
// The CIDR identities of family P within `cidr` and outside `except`.
// `it` is the first (prefix, id) at or after cidr's address in a sequence
// sorted by prefix.
template <class P, class It>
void add_cidr_peers_from(It it, It end, const P& cidr, const std::vector<IpPrefix>& except,
                         std::vector<uint32_t>& peers) {
  if (std::is_same_v<P, Ipv4Prefix> && cidr.len == 0) peers.push_back(MOAT_ID_WORLD);
  // The prefixes within cidr sort together (address first): a range of the
  // map, not all of it, for each of 100,000 rules.
  for (; it != end && cidr.contains(it->first.addr); ++it) {
    const auto& [prefix, id] = *it;
    if (!within(prefix, cidr)) continue;
    bool excepted = std::any_of(except.begin(), except.end(),
                                [&](const IpPrefix& e) { return within(prefix, std::get<P>(e)); });
    if (!excepted) peers.push_back(id);
  }
}

template <class P>
void add_cidr_peers(const P& cidr, const std::vector<IpPrefix>& except, const Identities& ids,
                    std::vector<uint32_t>& peers) {
  const auto& cidrs = ids.of<P>().cidrs;
  add_cidr_peers_from(cidrs.lower_bound(P{cidr.addr, 0}), cidrs.end(), cidr, except, peers);
}

void add_ip_block_peers(const IpBlock& b, const Identities& ids, std::vector<uint32_t>& peers) {
  std::visit([&](const auto& cidr) { add_cidr_peers(cidr, b.except, ids, peers); }, b.cidr);
  const auto& inside = ids.inside[ids.blocks.index(b)];
  peers.insert(peers.end(), inside.begin(), inside.end());
}

// A rule compiled but for its peers.
CompiledRule rule_without_peers(const PolicyRule& r, uint32_t id) {
  CompiledRule cr;
  cr.id = id;
  cr.deny = r.action == PolicyAction::deny;
  cr.any_peer = r.peers.empty();
  cr.ports = port_set(r);
  return cr;
}

CompiledRule compile_rule(const Config& cfg, const Identities& ids, const Policy& p,
                          const PolicyRule& r, uint32_t id) {
  CompiledRule cr = rule_without_peers(r, id);
  for (const PolicyPeer& peer : r.peers) {
    switch (peer.kind) {
      case PolicyPeer::Kind::host:
        for (const auto& [regions, host] : ids.hosts) cr.peers.push_back(host);
        break;
      case PolicyPeer::Kind::ip_block:
        add_ip_block_peers(peer.ip_block, ids, cr.peers);
        break;
      case PolicyPeer::Kind::pods:
        for (const IdentityInfo* info : ids.containers) {
          if (peer_selects(cfg, p, peer, info->ns, info->labels)) cr.peers.push_back(info->id);
        }
        break;
    }
  }
  sort_unique(cr.peers);
  return cr;
}

// Rules with their peers as identities, numbered as policy_rule_table() does.
struct CompiledRules {
  std::vector<CompiledRule> rules;
  std::vector<std::pair<uint32_t, PolicyDirection>> owner;  // by rule id: policy index, direction
};

CompiledRules compile_rules(const Config& cfg, const Identities& ids) {
  CompiledRules out;
  uint32_t rule_id = 0;
  for (uint32_t i = 0; i < cfg.policies.size(); ++i) {
    const Policy& p = cfg.policies[i];
    for (PolicyDirection d : {PolicyDirection::ingress, PolicyDirection::egress}) {
      for (const PolicyRule& r : p.rules(d)) {
        out.rules.push_back(compile_rule(cfg, ids, p, r, rule_id++));
        out.owner.emplace_back(i, d);
      }
    }
  }
  return out;
}

// The rules that apply to a subject in a direction: the denies of every
// policy selecting it, the allows of those that isolate it. `selects`: by
// policy index, whether the policy selects the subject.
std::vector<const CompiledRule*> applying_rules(const Config& cfg, const CompiledRules& all,
                                                const std::vector<char>& selects,
                                                PolicyDirection d) {
  std::vector<const CompiledRule*> rules;
  for (const CompiledRule& r : all.rules) {
    auto [policy, dir] = all.owner[r.id];
    if (dir != d || !selects[policy]) continue;
    // Allows count only where they isolate; a rule whose peers match
    // nothing counts nowhere.
    if (!r.deny && !cfg.policies[policy].isolates(d)) continue;
    if (!r.any_peer && r.peers.empty()) continue;
    rules.push_back(&r);
  }
  return rules;
}

// The entries of a peer with rules of its own (`peer_rules`, in rule order,
// the wildcard peer's among them) over the wildcard peer's `any`, which
// answers what they leave out. `patterns` is scratch, kept between calls.
Entries own_entries(const std::vector<const CompiledRule*>& peer_rules, const Entries& any,
                    bool isolated, std::vector<Pattern>& patterns) {
  patterns.clear();
  for (const CompiledRule* r : peer_rules) r->ports.patterns(patterns);
  sort_unique(patterns);
  Entries own;
  for (Pattern k : patterns) own.push_back({k, decide(peer_rules, k)});
  auto any_answer = [&any](Pattern pt) {
    const Answer* a = hit(any, pt);
    return a ? *a : Answer{};
  };
  auto want = [&](Pattern pt) { return decide(peer_rules, pt); };
  minimize(own, points_of(patterns), any_answer, want, isolated);
  return own;
}

// The wildcard peer's entries: what the rules naming every peer decide.
Entries any_entries(const std::vector<const CompiledRule*>& any_rules, bool isolated) {
  std::vector<Pattern> any_patterns;
  for (const CompiledRule* r : any_rules) r->ports.patterns(any_patterns);
  sort_unique(any_patterns);
  Entries any;
  for (Pattern k : any_patterns) any.push_back({k, decide(any_rules, k)});
  auto nothing = [](Pattern) { return Answer{}; };
  auto any_want = [&](Pattern pt) { return decide(any_rules, pt); };
  minimize(any, points_of(any_patterns), nothing, any_want, isolated);
  return any;
}

// Entry tables, and which peer gets which: peers with the same rules share
// one table instead of a copy each.
struct Computed {
  std::vector<Entries> tables;
  std::vector<std::pair<uint32_t, uint32_t>> peers;  // peer -> index into tables
};

// The entries for one set of applying rules: the wildcard peer's, then those
// of peers with rules of their own, which always answer first.
Computed compute_entries(const std::vector<const CompiledRule*>& rules, bool isolated) {
  Computed computed;
  std::vector<const CompiledRule*> any_rules;
  std::vector<uint32_t> peers;
  for (const CompiledRule* r : rules) {
    if (r->any_peer) any_rules.push_back(r);
    peers.insert(peers.end(), r->peers.begin(), r->peers.end());
  }
  sort_unique(peers);
  Entries any = any_entries(any_rules, isolated);
  // Peers with rules of their own, grouped by the rules that apply, in rule
  // order: (peer, rule position) pairs, sorted, give each peer's rules as a
  // run. One pass over the rules, not rules x peers.
  std::vector<std::pair<uint32_t, uint32_t>> pairs;
  for (uint32_t pos = 0; pos < rules.size(); ++pos)
    for (uint32_t peer : rules[pos]->any_peer ? peers : rules[pos]->peers)
      pairs.emplace_back(peer, pos);
  std::sort(pairs.begin(), pairs.end());
  struct Run {
    uint32_t peer, begin, end;  // pairs[begin, end)
  };
  std::vector<Run> runs;
  for (uint32_t i = 0; i < pairs.size();) {
    uint32_t j = i;
    while (j < pairs.size() && pairs[j].first == pairs[i].first) ++j;
    runs.push_back({pairs[i].first, i, j});
    i = j;
  }
  auto positions = [&](const Run& r) { return std::span(pairs).subspan(r.begin, r.end - r.begin); };
  auto same_rules = [&](const Run& a, const Run& b) {
    auto x = positions(a), y = positions(b);
    return std::equal(x.begin(), x.end(), y.begin(), y.end(),
                      [](const auto& p, const auto& q) { return p.second == q.second; });
  };
  auto rules_before = [&](const Run& a, const Run& b) {
    auto x = positions(a), y = positions(b);
    return std::lexicographical_compare(
        x.begin(), x.end(), y.begin(), y.end(),
        [](const auto& p, const auto& q) { return p.second < q.second; });
  };
  std::stable_sort(runs.begin(), runs.end(), rules_before);
  std::vector<const CompiledRule*> peer_rules;
  std::vector<Pattern> patterns;  // own_entries()' scratch
  for (size_t g = 0; g < runs.size();) {
    size_t h = g + 1;
    while (h < runs.size() && same_rules(runs[g], runs[h])) ++h;
    peer_rules.clear();
    for (const auto& [peer, pos] : positions(runs[g])) peer_rules.push_back(rules[pos]);
    Entries own = own_entries(peer_rules, any, isolated, patterns);
    if (!own.empty()) {
      computed.tables.push_back(std::move(own));
      for (size_t m = g; m < h; ++m)
        computed.peers.emplace_back(runs[m].peer, computed.tables.size() - 1);
    }
    g = h;
  }
  if (!any.empty()) {
    computed.tables.push_back(std::move(any));
    computed.peers.emplace_back(MOAT_ID_ANY, computed.tables.size() - 1);
  }
  return computed;
}

moat_policy_key policy_key(uint32_t subject, uint32_t peer, PolicyDirection d, Pattern k) {
  moat_policy_key key{};
  key.subject = subject;
  key.peer = peer;
  key.dir = abi_dir(d);
  key.proto = proto_of(k);
  key.port = htons(port_of(k));
  return key;
}

using PolicyEntries = std::vector<std::pair<moat_policy_key, moat_policy_val>>;

void emit_table(uint32_t subject, uint32_t peer, PolicyDirection d, const Entries& table,
                PolicyEntries& out) {
  for (const Entry& e : table)
    out.emplace_back(policy_key(subject, peer, d, e.key),
                     moat_policy_val{e.answer.action, e.answer.rule});
}

void emit_entries(uint32_t subject, PolicyDirection d, const Computed& computed,
                  PolicyEntries& out) {
  for (const auto& [peer, table] : computed.peers)
    emit_table(subject, peer, d, computed.tables[table], out);
}

// Subjects of one direction with the same applying rules (by id, in order)
// and isolation: their entries are computed once.
struct Group {
  PolicyDirection d = PolicyDirection::ingress;
  bool isolated = false;
  std::vector<uint32_t> rule_ids;
  std::vector<uint32_t> subjects;
  Computed computed;
};

// What compile_policies() builds on the way to its plan.
struct Compilation {
  std::unique_ptr<Identities> ids;
  CompiledRules rules;
  std::vector<Group> groups;
  PolicyPlan plan;
};

// Entries, subject by subject; stops early once the map cannot hold them.
void fill_policy_entries(const Config& cfg, Compilation& c) {
  std::map<std::pair<std::vector<uint32_t>, bool>, uint32_t> group_of;
  std::vector<char> selects(cfg.policies.size());
  for (const IdentityInfo* info : c.ids->containers) {
    const Container probe = probe_of(*info);
    for (size_t i = 0; i < cfg.policies.size(); ++i)
      selects[i] = policy_selects(cfg.policies[i], probe);
    for (PolicyDirection d : {PolicyDirection::ingress, PolicyDirection::egress}) {
      const bool isolated = info->isolated[dir_index(d)];
      std::vector<const CompiledRule*> rules = applying_rules(cfg, c.rules, selects, d);
      if (rules.empty()) continue;
      std::vector<uint32_t> signature;
      for (const CompiledRule* r : rules) signature.push_back(r->id);
      auto [it, fresh] = group_of.try_emplace({signature, isolated}, c.groups.size());
      if (fresh) {
        Group& g = c.groups.emplace_back();
        g.d = d;
        g.isolated = isolated;
        g.rule_ids = std::move(signature);
        g.computed = compute_entries(rules, isolated);
      }
      Group& g = c.groups[it->second];
      g.subjects.push_back(info->id);
      emit_entries(info->id, d, g.computed, c.plan.entries);
      if (c.plan.entries.size() > MOAT_MAX_POLICY) return;
    }
  }
}

Result<void> check_policy_entries(const PolicyPlan& plan, const Identities& ids, size_t n_rules,
                                  const std::string& source) {
  if (plan.entries.size() <= MOAT_MAX_POLICY) return {};
  return fail(
      source + ": the policies compile into more than " + std::to_string(MOAT_MAX_POLICY) +
      " policy entries (" + std::to_string(ids.containers.size()) + " container identities, " +
      std::to_string(ids.of<Ipv4Prefix>().cidrs.size() + ids.of<Ipv6Prefix>().cidrs.size()) +
      " CIDR identities, " + std::to_string(n_rules) +
      " rules; port ranges count one entry per port, per subject and peer); the "
      "policy map holds at most " +
      std::to_string(MOAT_MAX_POLICY));
}

// The rules of all policies.
size_t count_rules(const Config& cfg) {
  size_t n = 0;
  for (const Policy& p : cfg.policies) n += p.ingress.size() + p.egress.size();
  return n;
}

bool entry_before(const PolicyEntries::value_type& a, const PolicyEntries::value_type& b) {
  return key_less(a.first, b.first);
}

Result<void> compile_into(const Config& cfg, const std::vector<Ipv4>& host_addresses,
                          Compilation& c) {
  c.plan = PolicyPlan{};
  if (cfg.policies.empty()) return {};
  c.plan.active = true;
  c.ids = std::make_unique<Identities>(cfg);
  assign_identities(cfg, host_addresses, *c.ids, c.plan);
  fill_ipcache<Ipv4Prefix>(*c.ids, c.plan);
  fill_ipcache<Ipv6Prefix>(*c.ids, c.plan);
  if (auto ok = check_ipcache(c.plan, cfg.source); !ok) return ok;
  c.rules = compile_rules(cfg, *c.ids);
  fill_policy_entries(cfg, c);
  if (auto ok = check_policy_entries(c.plan, *c.ids, count_rules(cfg), cfg.source); !ok) return ok;
  std::sort(c.plan.entries.begin(), c.plan.entries.end(), entry_before);
  // The rule table is built here, not on the other CPU beside the entries:
  // a thread allocates from an arena of its own, which the CLI's heap on
  // huge pages does not cover, and its page faults made applying 100,000
  // rules slower (549 -> 506 ms, 10,000: 91 -> 81, six runs each).
  c.plan.rules = policy_rule_table(cfg);
  return {};
}

// ---------------------------------------------------------------------------
// Changing one rule (PolicyCompiler)

// Which peers of a group have which rules, by position in its rule_ids,
// and which table each peer has: built the first time one of its rules
// changes.
struct PeerIndex {
  bool built = false;
  std::vector<uint32_t> any_positions;
  std::unordered_map<uint32_t, std::vector<uint32_t>> positions;  // by peer
  std::unordered_map<uint32_t, uint32_t> table;                   // by peer: computed.tables
  std::vector<uint32_t> users;                                    // by table: its peers
};

// Whether rule `r` of policy `p` counts for the subjects `p` selects.
bool applies(const Policy& p, PolicyDirection d, const CompiledRule& r) {
  return (r.deny || p.isolates(d)) && (r.any_peer || !r.peers.empty());
}

// What one change does to the sorted entries: runs of (subject, peer, dir)
// and every entry of (subject, dir) replaced. Runs of the same length are
// written in place at once; the rest wait for one pass over all entries,
// whatever the number of subjects and peers changed.
template <class C>  // PolicyEntries, or a policy image's Section of them
class EntryEdit {
 public:
  explicit EntryEdit(C& entries) : entries_(entries) {}

  void replace_run(uint32_t subject, uint32_t peer, PolicyDirection d, const Entries& table) {
    // Searched read-only: a section viewed in place is copied only when a
    // run is stored into it (util/section.h).
    const auto& all = std::as_const(entries_);
    auto lo = std::lower_bound(
        all.begin(), all.end(), policy_key(subject, peer, d, 0),
        [](const auto& e, const moat_policy_key& k) { return key_less(e.first, k); });
    auto hi = lo;
    while (hi != all.end() && hi->first.subject == subject && hi->first.peer == peer &&
           hi->first.dir == abi_dir(d))
      ++hi;
    const size_t before = fresh_.size();
    emit_table(subject, peer, d, table, fresh_);
    if (static_cast<size_t>(hi - lo) == fresh_.size() - before) {
      // A run that compiles to what it holds is not stored again (a store
      // copies a section read in place).
      if (!std::equal(lo, hi, fresh_.begin() + static_cast<ptrdiff_t>(before), same_entry)) {
        const auto at = static_cast<ptrdiff_t>(lo - all.begin());
        undo_.push_back({static_cast<size_t>(at), PolicyEntries(lo, hi)});
        std::copy(fresh_.begin() + static_cast<ptrdiff_t>(before), fresh_.end(),
                  entries_.begin() + at);
      }
      fresh_.resize(before);
      return;
    }
    runs_.push_back({subject, peer, abi_dir(d)});
  }

  void replace_subject(uint32_t subject, PolicyDirection d, const Computed& computed) {
    subjects_.push_back({subject, abi_dir(d)});
    emit_entries(subject, d, computed, fresh_);
  }

  // The pass: what was replaced out, the new entries merged in. False,
  // with the entries as they were, when they would be more than `max`
  // (edited in place, they need no copy to fall back on).
  bool finish(size_t max) {
    sort_unique(runs_);
    sort_unique(subjects_);
    auto replaced = [&](const auto& e) {
      const moat_policy_key& k = e.first;
      return has(subjects_, std::pair{k.subject, k.dir}) ||
             has(runs_, std::tuple{k.subject, k.peer, k.dir});
    };
    if (entries_.size() + fresh_.size() > max &&
        entries_.size() + fresh_.size() -
                static_cast<size_t>(std::count_if(std::as_const(entries_).begin(),
                                                  std::as_const(entries_).end(), replaced)) >
            max) {
      for (auto it = undo_.rbegin(); it != undo_.rend(); ++it)
        std::copy(it->second.begin(), it->second.end(),
                  entries_.begin() + static_cast<ptrdiff_t>(it->first));
      return false;
    }
    if (runs_.empty() && subjects_.empty()) return true;
    PolicyEntries& all = grown(entries_);
    std::erase_if(all, replaced);
    std::sort(fresh_.begin(), fresh_.end(), entry_before);
    const size_t middle = all.size();
    all.insert(all.end(), fresh_.begin(), fresh_.end());
    std::inplace_merge(all.begin(), all.begin() + static_cast<ptrdiff_t>(middle), all.end(),
                       entry_before);
    return true;
  }

 private:
  static bool same_entry(const PolicyEntries::value_type& a, const PolicyEntries::value_type& b) {
    return std::memcmp(&a, &b, sizeof a) == 0;
  }
  C& entries_;
  PolicyEntries fresh_;
  std::vector<std::tuple<uint32_t, uint32_t, uint8_t>> runs_;
  std::vector<std::pair<uint32_t, uint8_t>> subjects_;
  std::vector<std::pair<size_t, PolicyEntries>> undo_;  // runs written in place: where, what was
};

}  // namespace

Result<PolicyPlan> compile_policies(const Config& cfg, const std::vector<Ipv4>& host_addresses) {
  return compile_policies(cfg, host_addresses, nullptr);
}

struct PolicyCompiler::State {
  Config cfg;
  std::vector<Ipv4> host_addresses;
  Compilation c;
  bool valid = false;
  std::vector<uint32_t> first_rule;  // by policy: its first rule id
  std::vector<uint32_t> block_uses;  // by ipBlock index: the peers naming it
  bool blocks_counted = false;
  std::vector<std::vector<uint32_t>> groups_of_rule;  // by rule id
  std::vector<PeerIndex> index;                       // by group

  Result<void> compile_whole() {
    valid = false;
    c = Compilation{};
    first_rule.clear();
    uint32_t id = 0;
    for (const Policy& p : cfg.policies) {
      first_rule.push_back(id);
      id += static_cast<uint32_t>(p.ingress.size() + p.egress.size());
    }
    blocks_counted = false;
    block_uses.clear();
    groups_of_rule.assign(id, {});
    index.clear();
    if (auto ok = compile_into(cfg, host_addresses, c); !ok) return ok;
    for (uint32_t g = 0; g < c.groups.size(); ++g)
      for (uint32_t r : c.groups[g].rule_ids) groups_of_rule[r].push_back(g);
    index.resize(c.groups.size());
    valid = true;
    return {};
  }

  void count_blocks() {
    if (blocks_counted) return;
    block_uses.assign(c.ids->blocks.size(), 0);
    for_each_ip_block(cfg, [&](const IpBlock& b) { ++block_uses[c.ids->blocks.index(b)]; });
    blocks_counted = true;
  }

  // Whether replacing `before` by `after` leaves the set of ipBlocks, and
  // so every identity, as it is; counts the uses over if so.
  bool same_blocks(const PolicyRule& before, const PolicyRule& after) {
    std::vector<uint32_t> uses = block_uses;
    for (const PolicyPeer& peer : after.peers) {
      if (peer.kind != PolicyPeer::Kind::ip_block) continue;
      auto i = c.ids->blocks.find(peer.ip_block);
      if (!i) return false;
      ++uses[*i];
    }
    for (const PolicyPeer& peer : before.peers)
      if (peer.kind == PolicyPeer::Kind::ip_block)
        if (--uses[c.ids->blocks.index(peer.ip_block)] == 0) return false;
    block_uses = std::move(uses);
    return true;
  }

  std::vector<const CompiledRule*> rules_of(const Group& g) const {
    std::vector<const CompiledRule*> out;
    out.reserve(g.rule_ids.size());
    for (uint32_t id : g.rule_ids) out.push_back(&c.rules.rules[id]);
    return out;
  }

  // Built from the rules as compiled, before one of them changes.
  void build_index(uint32_t gi) {
    PeerIndex& x = index[gi];
    if (x.built) return;
    const Group& g = c.groups[gi];
    for (uint32_t pos = 0; pos < g.rule_ids.size(); ++pos) {
      const CompiledRule& r = c.rules.rules[g.rule_ids[pos]];
      if (r.any_peer) x.any_positions.push_back(pos);
      for (uint32_t peer : r.peers) x.positions[peer].push_back(pos);
    }
    x.users.assign(g.computed.tables.size(), 0);
    for (const auto& [peer, table] : g.computed.peers) {
      x.table[peer] = table;
      ++x.users[table];
    }
    x.built = true;
  }

  // Group `gi`'s entries again, all of them.
  void recompute_group(uint32_t gi, EntryEdit<PolicyEntries>& edit) {
    Group& g = c.groups[gi];
    g.computed = compute_entries(rules_of(g), g.isolated);
    index[gi] = PeerIndex{};
    for (uint32_t subject : g.subjects) edit.replace_subject(subject, g.d, g.computed);
  }

  // Peer `peer` of group `gi` gets `own` (empty: no entries of its own); a
  // table no other peer has is replaced, not left behind.
  void set_table(uint32_t gi, uint32_t peer, Entries own) {
    Group& g = c.groups[gi];
    PeerIndex& x = index[gi];
    auto& list = g.computed.peers;
    std::optional<uint32_t> old;
    if (auto it = x.table.find(peer); it != x.table.end()) old = it->second;
    std::optional<uint32_t> free;
    if (old && --x.users[*old] == 0) free = old;
    if (own.empty()) {
      if (free) g.computed.tables[*free].clear();
      x.table.erase(peer);
      std::erase_if(list, [peer](const auto& e) { return e.first == peer; });
      return;
    }
    uint32_t t = 0;
    if (free) {
      t = *free;
      g.computed.tables[t] = std::move(own);
    } else {
      g.computed.tables.push_back(std::move(own));
      t = static_cast<uint32_t>(g.computed.tables.size() - 1);
      x.users.push_back(0);
    }
    ++x.users[t];
    if (old) {
      for (auto& e : list)
        if (e.first == peer) e.second = t;
    } else {
      list.emplace_back(peer, t);
    }
    x.table[peer] = t;
  }

  // Group `gi`'s entries for the peers rule `id` named before (`before`)
  // or names now: the only ones whose rules changed, when neither names
  // every peer. The group's index was built before the change.
  void recompute_peers(uint32_t gi, uint32_t id, const std::vector<uint32_t>& before,
                       EntryEdit<PolicyEntries>& edit) {
    Group& g = c.groups[gi];
    PeerIndex& x = index[gi];
    const CompiledRule& now = c.rules.rules[id];
    const uint32_t pos = static_cast<uint32_t>(
        std::lower_bound(g.rule_ids.begin(), g.rule_ids.end(), id) - g.rule_ids.begin());
    for (uint32_t peer : before) std::erase(x.positions[peer], pos);
    for (uint32_t peer : now.peers) {
      auto& list = x.positions[peer];
      list.insert(std::upper_bound(list.begin(), list.end(), pos), pos);
    }
    std::vector<uint32_t> peers = before;
    peers.insert(peers.end(), now.peers.begin(), now.peers.end());
    sort_unique(peers);
    // A copy: set_table() below may move the tables.
    auto any_at = x.table.find(MOAT_ID_ANY);
    const Entries any = any_at == x.table.end() ? Entries{} : g.computed.tables[any_at->second];
    std::vector<const CompiledRule*> peer_rules;
    std::vector<Pattern> patterns;
    std::vector<uint32_t> merged;
    for (uint32_t peer : peers) {
      auto& own_positions = x.positions[peer];
      Entries own;
      if (!own_positions.empty()) {
        merged.clear();
        std::merge(x.any_positions.begin(), x.any_positions.end(), own_positions.begin(),
                   own_positions.end(), std::back_inserter(merged));
        peer_rules.clear();
        for (uint32_t p : merged) peer_rules.push_back(&c.rules.rules[g.rule_ids[p]]);
        own = own_entries(peer_rules, any, g.isolated, patterns);
      } else {
        x.positions.erase(peer);
      }
      for (uint32_t subject : g.subjects) edit.replace_run(subject, peer, g.d, own);
      set_table(gi, peer, std::move(own));
    }
  }
};

PolicyCompiler::PolicyCompiler() : s_(std::make_unique<State>()) {}
PolicyCompiler::~PolicyCompiler() = default;
PolicyCompiler::PolicyCompiler(PolicyCompiler&&) noexcept = default;
PolicyCompiler& PolicyCompiler::operator=(PolicyCompiler&&) noexcept = default;

const PolicyPlan& PolicyCompiler::plan() const { return s_->c.plan; }

const Config& PolicyCompiler::config() const { return s_->cfg; }

Result<void> PolicyCompiler::compile(Config cfg, std::vector<Ipv4> host_addresses) {
  s_->cfg = std::move(cfg);
  s_->host_addresses = std::move(host_addresses);
  return s_->compile_whole();
}

Result<bool> PolicyCompiler::replace_rule(size_t policy, PolicyDirection d, size_t index,
                                          PolicyRule rule) {
  State& s = *s_;
  if (policy >= s.cfg.policies.size() || index >= s.cfg.policies[policy].rules(d).size())
    return fail("no rule " + std::to_string(index) + " of " + to_string(d) + " in policy " +
                std::to_string(policy));
  Policy& p = s.cfg.policies[policy];
  auto& list = d == PolicyDirection::ingress ? p.ingress : p.egress;
  // Counted before the change: the counts are of the rules compiled.
  if (s.valid && s.c.ids) s.count_blocks();
  PolicyRule before = std::exchange(list[index], std::move(rule));
  auto whole = [&s]() -> Result<bool> {
    if (auto ok = s.compile_whole(); !ok) return std::unexpected(ok.error());
    return false;
  };
  // A moat policy without policyTypes isolates the directions it allows
  // in: a rule turning allow or deny may change that, and with it the
  // ipcache's flags and which rules apply.
  if (!p.kubernetes && !p.explicit_types) {
    const bool isolates = std::any_of(list.begin(), list.end(), [](const PolicyRule& r) {
      return r.action == PolicyAction::allow;
    });
    if (isolates != p.isolates(d)) {
      (d == PolicyDirection::ingress ? p.isolates_ingress : p.isolates_egress) = isolates;
      return whole();
    }
  }
  if (!s.valid || !s.c.ids || !s.same_blocks(before, list[index])) return whole();
  const uint32_t id = s.first_rule[policy] +
                      static_cast<uint32_t>(d == PolicyDirection::egress ? p.ingress.size() : 0) +
                      static_cast<uint32_t>(index);
  CompiledRule now = compile_rule(s.cfg, *s.c.ids, p, list[index], id);
  CompiledRule& slot = s.c.rules.rules[id];
  if (applies(p, d, slot) != applies(p, d, now)) return whole();
  const bool any = slot.any_peer || now.any_peer;
  if (!any) {
    // A run of entries is found by a search of its own: where the rule
    // names peers of many subjects, a whole compile, which writes every
    // run in order, is the faster (1,000 subjects, a rule naming a third
    // of them: 121 ms in part, 286 when it gains a port; 83 whole).
    size_t runs = 0;
    for (uint32_t gi : s.groups_of_rule[id])
      runs += s.c.groups[gi].subjects.size() * (slot.peers.size() + now.peers.size());
    if (runs > 4096 && runs * 4 > s.c.plan.entries.size()) return whole();
    for (uint32_t gi : s.groups_of_rule[id]) s.build_index(gi);
  }
  std::vector<uint32_t> before_peers = std::move(slot.peers);
  slot = std::move(now);
  EntryEdit edit(s.c.plan.entries);
  for (uint32_t gi : s.groups_of_rule[id]) {
    if (any)
      s.recompute_group(gi, edit);
    else
      s.recompute_peers(gi, id, before_peers, edit);
  }
  edit.finish(std::numeric_limits<size_t>::max());  // check_policy_entries() judges the size
  s.c.plan.rules[id] = rule_info(p, d, index);
  if (auto ok = check_policy_entries(s.c.plan, *s.c.ids, count_rules(s.cfg), s.cfg.source); !ok) {
    s.valid = false;
    return std::unexpected(ok.error());
  }
  return true;
}

// ---------------------------------------------------------------------------
// PolicyImage: a compilation as bytes, changed in part by a later process

namespace {

// Fixed-size records, every byte written (no padding left to chance): the
// bytes of two images of the same compilation are the same.
struct ImgPolicy {
  uint32_t first_rule = 0, n_in = 0, n_eg = 0;
  uint32_t allows[2] = {0, 0};  // allow rules, by direction
  uint8_t kubernetes = 0, explicit_types = 0, isolates[2] = {0, 0};
};
struct ImgSpan {
  uint32_t off = 0, n = 0;
};
struct ImgRule {
  ImgSpan peers, ports, every, groups;
  uint8_t deny = 0, any_peer = 0, all = 0, pad = 0;
};
struct ImgGroup {
  ImgSpan rules, subjects, pairs, any;  // pairs: (peer, position) sorted; any: positions
  uint8_t d = 0, isolated = 0, pad[2] = {0, 0};
};
struct ImgPair {
  uint32_t peer = 0, pos = 0;
  auto operator<=>(const ImgPair&) const = default;
};
struct ImgBlock {
  ImgSpan key;  // into key_pool
  uint32_t index = 0;
};
struct ImgCidr4 {
  uint32_t addr = 0, len = 0, id = 0;
};
struct ImgCidr6 {
  uint8_t addr[16] = {};
  uint32_t len = 0, id = 0;
};
template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};

struct ImgEntry {
  moat_policy_key key{};
  moat_policy_val val{};
};
struct ImgIpcache4 {
  moat_lpm_v4_key key{};
  moat_ipcache_val val{};
};
struct ImgIpcache6 {
  moat_lpm_v6_key key{};
  moat_ipcache_val val{};
};

// 2: entries in key-byte order (key_less); an image of 1 held them field by
// field, an order this build's edits would search wrongly. 3: the two
// sections of bytes last, so that every other section of an image saved
// at an offset of 8 (save_policy_image() pads its tag) is aligned for its
// elements where it lies, and is used there (from_mapping()).
constexpr char kImageMagic[8] = {'m', 'o', 'a', 't', 'i', 'm', 'g', '3'};

// In an image read by from_mapping(), every section is a view of the saved
// image until written or resized (util/section.h).
struct ImageData {
  Section<ImgPolicy> policies;
  Section<ImgRule> rules;
  Section<uint32_t> peer_pool, port_pool, group_pool;
  Section<uint8_t> every_pool;
  Section<ImgGroup> groups;
  Section<uint32_t> rule_pool, subject_pool, any_pool;
  Section<ImgPair> pair_pool;
  Section<ImgBlock> blocks;  // sorted by key bytes
  Section<uint8_t> key_pool;
  Section<uint32_t> block_uses;  // by block index
  Section<ImgSpan> inside;       // by block index, into inside_pool
  Section<uint32_t> inside_pool;
  Section<ImgCidr4> cidr4;  // sorted by prefix
  Section<ImgCidr6> cidr6;
  Section<uint32_t> hosts;
  Section<ImgEntry> entries;  // sorted
  Section<ImgIpcache4> ipcache;
  Section<ImgIpcache6> ipcache6;

  // Every section, in the order of the bytes.
  template <class Self, class F>
  static void each(Self& s, F f) {
    f(s.policies), f(s.rules), f(s.peer_pool), f(s.port_pool), f(s.group_pool);
    f(s.groups), f(s.rule_pool), f(s.subject_pool), f(s.any_pool), f(s.pair_pool);
    f(s.blocks), f(s.block_uses), f(s.inside), f(s.inside_pool), f(s.cidr4), f(s.cidr6);
    f(s.hosts), f(s.entries), f(s.ipcache), f(s.ipcache6), f(s.every_pool), f(s.key_pool);
  }
};

template <class P>
auto in(const P& pool, ImgSpan s) {
  return std::span<const typename P::value_type>(pool.data(), pool.size()).subspan(s.off, s.n);
}

template <class P, class T>
ImgSpan append(P& pool, std::span<const T> v) {
  auto& grow = grown(pool);
  ImgSpan s{static_cast<uint32_t>(grow.size()), static_cast<uint32_t>(v.size())};
  grow.insert(grow.end(), v.begin(), v.end());
  return s;
}

// `v` in place of what `at` holds when it fits (a port changed, a peer for
// another), else appended: what it held stays, unread, until the image is
// written whole again. Stored only where it differs: a section read in
// place is copied whole by its first store (util/section.h).
template <class P, class T>
ImgSpan replace(P& pool, ImgSpan at, std::span<const T> v) {
  if (v.size() != at.n) return append(pool, v);
  if (!v.empty() && std::memcmp(std::as_const(pool).data() + at.off, v.data(), v.size_bytes()) != 0)
    std::copy(v.begin(), v.end(), pool.begin() + at.off);
  return at;
}

// Stores `v` as element `i` of `pool` only when it differs (see replace()).
template <class P, class T>
void store(P& pool, size_t i, const T& v) {
  static_assert(std::has_unique_object_representations_v<T>);
  if (std::memcmp(&std::as_const(pool)[i], &v, sizeof v) != 0) pool[i] = v;
}

// An IpPrefix as 18 bytes: family, address (IPv4's in the first 4, in
// network order), length. Compared as bytes, they sort as IpPrefix does, so
// IpBlocks' keys, in its order, are sorted as bytes too.
void put_prefix(std::vector<uint8_t>& out, const IpPrefix& p) {
  uint8_t b[18] = {};
  if (const auto* v4 = std::get_if<Ipv4Prefix>(&p)) {
    b[0] = 4;
    const uint32_t be = v4->addr.to_be();
    std::memcpy(b + 1, &be, 4);
    b[17] = v4->len;
  } else {
    const auto& v6 = std::get<Ipv6Prefix>(p);
    b[0] = 6;
    std::memcpy(b + 1, v6.addr.bytes.data(), 16);
    b[17] = v6.len;
  }
  out.insert(out.end(), b, b + sizeof b);
}

// An ipBlock's key as bytes: its cidr, then its excepts in IpPrefix order.
std::vector<uint8_t> block_key(const IpPrefix& cidr, const std::vector<IpPrefix>& except) {
  std::set<IpPrefix> sorted(except.begin(), except.end());
  std::vector<uint8_t> out;
  put_prefix(out, cidr);
  for (const IpPrefix& e : sorted) put_prefix(out, e);
  return out;
}

// Whether every span and index of `x` points inside what it names.
bool image_consistent(const ImageData& x) {
  auto ok = [](ImgSpan s, size_t pool) { return static_cast<uint64_t>(s.off) + s.n <= pool; };
  const size_t nr = x.rules.size(), ng = x.groups.size(), nb = x.block_uses.size();
  for (const ImgPolicy& p : x.policies)
    if (static_cast<uint64_t>(p.first_rule) + p.n_in + p.n_eg > nr) return false;
  for (const ImgRule& r : x.rules) {
    if (!ok(r.peers, x.peer_pool.size()) || !ok(r.ports, x.port_pool.size()) ||
        !ok(r.every, x.every_pool.size()) || !ok(r.groups, x.group_pool.size()))
      return false;
    for (uint32_t g : in(x.group_pool, r.groups))
      if (g >= ng) return false;
  }
  for (const ImgGroup& g : x.groups) {
    if (!ok(g.rules, x.rule_pool.size()) || !ok(g.subjects, x.subject_pool.size()) ||
        !ok(g.pairs, x.pair_pool.size()) || !ok(g.any, x.any_pool.size()) || g.d > 1)
      return false;
    auto ids = in(x.rule_pool, g.rules);
    if (!std::is_sorted(ids.begin(), ids.end()) ||
        std::any_of(ids.begin(), ids.end(), [&](uint32_t id) { return id >= nr; }))
      return false;
    for (const ImgPair& p : in(x.pair_pool, g.pairs))
      if (p.pos >= g.rules.n) return false;
    for (uint32_t pos : in(x.any_pool, g.any))
      if (pos >= g.rules.n) return false;
  }
  for (const ImgBlock& b : x.blocks)
    if (!ok(b.key, x.key_pool.size()) || b.index >= nb) return false;
  if (x.inside.size() != nb) return false;
  for (ImgSpan s : x.inside)
    if (!ok(s, x.inside_pool.size())) return false;
  return true;
}

// The bytes of `x`, with `entries` for its entries section (the plan's
// pairs are laid out as ImgEntry).
static_assert(sizeof(std::pair<moat_policy_key, moat_policy_val>) == sizeof(ImgEntry));
std::string write_image(const ImageData& x, std::span<const ImgEntry> entries) {
  size_t size = sizeof kImageMagic;
  ImageData::each(x,
                  [&size](const auto& v) { size += sizeof(uint64_t) + v.size() * sizeof(v[0]); });
  size += entries.size_bytes() - x.entries.size() * sizeof(ImgEntry);
  std::string out;
  out.reserve(size);
  out.append(kImageMagic, sizeof kImageMagic);
  auto put = [&out](const void* data, uint64_t bytes) {
    out.append(reinterpret_cast<const char*>(&bytes), sizeof bytes);
    out.append(static_cast<const char*>(data), bytes);
  };
  ImageData::each(x, [&](const auto& v) {
    if constexpr (std::is_same_v<std::decay_t<decltype(v[0])>, ImgEntry>)
      put(entries.data(), entries.size_bytes());
    else
      put(v.data(), v.size() * sizeof(v[0]));
  });
  return out;
}

}  // namespace

struct PolicyImage::Data : ImageData {
  Section<PolicyEntries::value_type> plan_entries;  // `entries` as the plan has them
  std::vector<std::pair<moat_lpm_v4_key, moat_ipcache_val>> plan_ipcache;
  std::vector<std::pair<moat_lpm_v6_key, moat_ipcache_val>> plan_ipcache6;
  std::shared_ptr<const void> keep;  // what the views are of (from_mapping())

  std::optional<uint32_t> find_block(const IpBlock& b) const {
    const std::vector<uint8_t> key = block_key(b.cidr, b.except);
    auto bytes = [&](const ImgBlock& x) { return in(key_pool, x.key); };
    auto it =
        std::lower_bound(blocks.begin(), blocks.end(), key, [&](const ImgBlock& x, const auto& k) {
          auto a = bytes(x);
          return std::lexicographical_compare(a.begin(), a.end(), k.begin(), k.end());
        });
    if (it == blocks.end()) return std::nullopt;
    auto a = bytes(*it);
    if (!std::equal(a.begin(), a.end(), key.begin(), key.end())) return std::nullopt;
    return it->index;
  }

  // The identities an ipBlock the image has (index `i`) matches, as
  // add_ip_block_peers() finds them.
  void block_peers(const IpBlock& b, uint32_t i, std::vector<uint32_t>& peers) const {
    if (const auto* v4 = std::get_if<Ipv4Prefix>(&b.cidr)) {
      std::vector<std::pair<Ipv4Prefix, uint32_t>> range;
      auto it = std::lower_bound(cidr4.begin(), cidr4.end(), v4->addr.value,
                                 [](const ImgCidr4& c, uint32_t a) { return c.addr < a; });
      for (; it != cidr4.end() && v4->contains(Ipv4{it->addr}); ++it)
        range.push_back({Ipv4Prefix{Ipv4{it->addr}, static_cast<uint8_t>(it->len)}, it->id});
      add_cidr_peers_from(range.begin(), range.end(), *v4, b.except, peers);
    } else {
      const auto& v6 = std::get<Ipv6Prefix>(b.cidr);
      std::vector<std::pair<Ipv6Prefix, uint32_t>> range;
      auto it = std::lower_bound(cidr6.begin(), cidr6.end(), v6.addr.bytes,
                                 [](const ImgCidr6& c, const std::array<uint8_t, 16>& a) {
                                   return std::memcmp(c.addr, a.data(), 16) < 0;
                                 });
      for (; it != cidr6.end(); ++it) {
        Ipv6Prefix p;
        std::memcpy(p.addr.bytes.data(), it->addr, 16);
        p.len = static_cast<uint8_t>(it->len);
        if (!v6.contains(p.addr)) break;
        range.push_back({p, it->id});
      }
      add_cidr_peers_from(range.begin(), range.end(), v6, b.except, peers);
    }
    auto inner = in(inside_pool, inside[i]);
    peers.insert(peers.end(), inner.begin(), inner.end());
  }

  // `r` compiled as compile_rule() would; nullopt: a peer the image cannot
  // resolve (pods, or an ipBlock it does not have).
  std::optional<CompiledRule> compile(const PolicyRule& r, uint32_t id) const {
    CompiledRule cr = rule_without_peers(r, id);
    for (const PolicyPeer& peer : r.peers) {
      switch (peer.kind) {
        case PolicyPeer::Kind::host:
          cr.peers.insert(cr.peers.end(), hosts.begin(), hosts.end());
          break;
        case PolicyPeer::Kind::ip_block: {
          auto i = find_block(peer.ip_block);
          if (!i) return std::nullopt;
          block_peers(peer.ip_block, *i, cr.peers);
          break;
        }
        case PolicyPeer::Kind::pods:
          return std::nullopt;
      }
    }
    sort_unique(cr.peers);
    return cr;
  }

  CompiledRule rule(uint32_t id) const {
    const ImgRule& r = rules[id];
    CompiledRule cr;
    cr.id = id;
    cr.deny = r.deny;
    cr.any_peer = r.any_peer;
    auto peers = in(peer_pool, r.peers);
    cr.peers.assign(peers.begin(), peers.end());
    cr.ports.all = r.all;
    auto every = in(every_pool, r.every);
    cr.ports.every_port.assign(every.begin(), every.end());
    auto ports = in(port_pool, r.ports);
    cr.ports.ports.assign(ports.begin(), ports.end());
    return cr;
  }

  // Spans replaced by longer ones leave their old values behind: written
  // out, they would grow the image with every change. Copied out once they
  // are a fifth of a pool.
  void compact() {
    size_t rule_live = 0, group_live = 0;
    for (const ImgRule& r : std::as_const(rules)) rule_live += r.peers.n + r.ports.n + r.every.n;
    for (const ImgGroup& g : std::as_const(groups)) group_live += g.pairs.n + g.any.n;
    const size_t rule_have = peer_pool.size() + port_pool.size() + every_pool.size();
    const size_t group_have = pair_pool.size() + any_pool.size();
    if (rule_have * 4 > rule_live * 5) {
      std::vector<uint32_t> peers, ports;
      std::vector<uint8_t> every;
      for (ImgRule& r : rules) {
        r.peers = append(peers, in(peer_pool, r.peers));
        r.ports = append(ports, in(port_pool, r.ports));
        r.every = append(every, in(every_pool, r.every));
      }
      peer_pool = std::move(peers), port_pool = std::move(ports), every_pool = std::move(every);
    }
    if (group_have * 4 > group_live * 5) {
      std::vector<ImgPair> pairs;
      std::vector<uint32_t> any;
      for (ImgGroup& g : groups) {
        g.pairs = append(pairs, in(pair_pool, g.pairs));
        g.any = append(any, in(any_pool, g.any));
      }
      pair_pool = std::move(pairs), any_pool = std::move(any);
    }
  }

  void set_rule(const CompiledRule& cr) {
    ImgRule r = std::as_const(rules)[cr.id];
    r.deny = cr.deny;
    r.any_peer = cr.any_peer;
    r.all = cr.ports.all;
    r.peers = replace(peer_pool, r.peers, std::span<const uint32_t>(cr.peers));
    r.every = replace(every_pool, r.every, std::span<const uint8_t>(cr.ports.every_port));
    r.ports = replace(port_pool, r.ports, std::span<const uint32_t>(cr.ports.ports));
    store(rules, cr.id, r);
  }
};

namespace {

bool same_rule(const CompiledRule& a, const CompiledRule& b) {
  return a.deny == b.deny && a.any_peer == b.any_peer && a.peers == b.peers &&
         a.ports.all == b.ports.all && a.ports.every_port == b.ports.every_port &&
         a.ports.ports == b.ports.ports;
}

}  // namespace

namespace {

// The image of a compilation of `cfg`; one of no policy when it has none.
std::string compilation_image(const Config& cfg, const Compilation& c) {
  ImageData x;
  if (c.ids) {
    const Identities& ids = *c.ids;
    std::vector<std::vector<uint32_t>> groups_of_rule(c.rules.rules.size());
    for (uint32_t g = 0; g < c.groups.size(); ++g)
      for (uint32_t r : c.groups[g].rule_ids) groups_of_rule[r].push_back(g);
    uint32_t first_rule = 0;
    for (size_t i = 0; i < cfg.policies.size(); ++i) {
      const Policy& p = cfg.policies[i];
      ImgPolicy ip;
      ip.first_rule = first_rule;
      first_rule += static_cast<uint32_t>(p.ingress.size() + p.egress.size());
      ip.n_in = static_cast<uint32_t>(p.ingress.size());
      ip.n_eg = static_cast<uint32_t>(p.egress.size());
      for (PolicyDirection d : {PolicyDirection::ingress, PolicyDirection::egress})
        for (const PolicyRule& r : p.rules(d))
          ip.allows[dir_index(d)] += r.action == PolicyAction::allow;
      ip.kubernetes = p.kubernetes;
      ip.explicit_types = p.explicit_types;
      ip.isolates[0] = p.isolates_ingress;
      ip.isolates[1] = p.isolates_egress;
      x.policies.push_back(ip);
    }
    for (const CompiledRule& r : c.rules.rules) {
      ImgRule ir;
      ir.deny = r.deny;
      ir.any_peer = r.any_peer;
      ir.all = r.ports.all;
      ir.peers = append(x.peer_pool, std::span<const uint32_t>(r.peers));
      ir.every = append(x.every_pool, std::span<const uint8_t>(r.ports.every_port));
      ir.ports = append(x.port_pool, std::span<const uint32_t>(r.ports.ports));
      ir.groups = append(x.group_pool, std::span<const uint32_t>(groups_of_rule[r.id]));
      x.rules.push_back(ir);
    }
    std::vector<ImgPair> pairs;
    std::vector<uint32_t> any;
    for (const Group& g : c.groups) {
      ImgGroup ig;
      ig.d = static_cast<uint8_t>(dir_index(g.d));
      ig.isolated = g.isolated;
      ig.rules = append(x.rule_pool, std::span<const uint32_t>(g.rule_ids));
      ig.subjects = append(x.subject_pool, std::span<const uint32_t>(g.subjects));
      pairs.clear();
      any.clear();
      for (uint32_t pos = 0; pos < g.rule_ids.size(); ++pos) {
        const CompiledRule& r = c.rules.rules[g.rule_ids[pos]];
        if (r.any_peer) any.push_back(pos);
        for (uint32_t peer : r.peers) pairs.push_back({peer, pos});
      }
      std::sort(pairs.begin(), pairs.end());
      ig.pairs = append(x.pair_pool, std::span<const ImgPair>(pairs));
      ig.any = append(x.any_pool, std::span<const uint32_t>(any));
      x.groups.push_back(ig);
    }
    const auto& keys = ids.blocks.keys();
    x.block_uses.own().assign(keys.size(), 0);
    for_each_ip_block(cfg, [&](const IpBlock& b) { ++x.block_uses[ids.blocks.index(b)]; });
    // In IpBlocks' order, which is the keys' byte order (put_prefix()).
    for (uint32_t i = 0; i < keys.size(); ++i) {
      const uint32_t at = static_cast<uint32_t>(x.key_pool.size());
      put_prefix(x.key_pool.own(), keys[i].first);
      for (const IpPrefix& e : keys[i].second) put_prefix(x.key_pool.own(), e);
      x.blocks.push_back({{at, static_cast<uint32_t>(x.key_pool.size()) - at}, i});
    }
    for (const auto& inner : ids.inside)
      x.inside.push_back(append(x.inside_pool, std::span<const uint32_t>(inner)));
    for (const auto& [p, id] : ids.of<Ipv4Prefix>().cidrs)
      x.cidr4.push_back({p.addr.value, p.len, id});
    for (const auto& [p, id] : ids.of<Ipv6Prefix>().cidrs) {
      ImgCidr6 c6;
      std::memcpy(c6.addr, p.addr.bytes.data(), 16);
      c6.len = p.len;
      c6.id = id;
      x.cidr6.push_back(c6);
    }
    for (const auto& [regions, host] : ids.hosts) x.hosts.push_back(host);
    for (const auto& [k, v] : c.plan.entries) x.entries.push_back({k, v});
    for (const auto& [k, v] : c.plan.ipcache) x.ipcache.push_back({k, v});
    for (const auto& [k, v] : c.plan.ipcache6) x.ipcache6.push_back({k, v});
  }
  return write_image(x, x.entries);
}

}  // namespace

std::string PolicyCompiler::image() const {
  return s_->valid ? compilation_image(s_->cfg, s_->c) : compilation_image(Config{}, Compilation{});
}

Result<PolicyPlan> compile_policies(const Config& cfg, const std::vector<Ipv4>& host_addresses,
                                    std::string* image) {
  Compilation c;
  if (auto ok = compile_into(cfg, host_addresses, c); !ok) return std::unexpected(ok.error());
  if (image) *image = compilation_image(cfg, c);
  return std::move(c.plan);
}

PolicyImage::PolicyImage() : d_(std::make_unique<Data>()) {}
PolicyImage::~PolicyImage() = default;
PolicyImage::PolicyImage(PolicyImage&&) noexcept = default;
PolicyImage& PolicyImage::operator=(PolicyImage&&) noexcept = default;

Result<PolicyImage> PolicyImage::from_bytes(std::string_view bytes) {
  return from_reader(
      [&](void* to, size_t n) {
        if (bytes.size() < n) return false;
        if (n) std::memcpy(to, bytes.data(), n);
        bytes.remove_prefix(n);
        return true;
      },
      [&] { return bytes.size(); });
}

Result<PolicyImage> PolicyImage::from_reader(const std::function<bool(void* to, size_t n)>& read,
                                             const std::function<size_t()>& left) {
  char magic[sizeof kImageMagic];
  if (!read(magic, sizeof magic) || std::memcmp(magic, kImageMagic, sizeof magic) != 0)
    return fail("not a policy image of this format");
  PolicyImage image;
  Data& d = *image.d_;
  bool ok = true;
  ImageData::each(static_cast<ImageData&>(d), [&](auto& v) {
    using T = typename std::remove_reference_t<decltype(v)>::value_type;
    uint64_t n = 0;
    if (!ok || !read(&n, sizeof n) || n > left() || n % sizeof(T) != 0) return void(ok = false);
    // The entries straight into the plan's pairs, laid out alike (write_image()):
    // not read into a copy first (2.4 MB of fresh memory at 100,000 rules).
    if constexpr (std::is_same_v<T, ImgEntry>) {
      d.plan_entries.own().resize(n / sizeof(T));
      if (!read(d.plan_entries.data(), n)) ok = false;
    } else {
      v.own().resize(n / sizeof(T));
      if (!read(v.data(), n)) ok = false;
    }
  });
  if (!ok || left() != 0) return fail("a policy image cut short or inconsistent");
  return std::move(image).checked();
}

Result<PolicyImage> PolicyImage::from_mapping(std::shared_ptr<const void> keep,
                                              std::string_view bytes,
                                              std::span<const Splice> splices) {
  const size_t n = bytes.size();
  if (n < sizeof kImageMagic || std::memcmp(bytes.data(), kImageMagic, sizeof kImageMagic) != 0)
    return fail("not a policy image of this format");
  std::vector<Splice> edits;
  const Splice* prev = nullptr;
  for (const Splice& e : splices) {
    // In order and apart (an insertion may come before a range from the
    // same place; two insertions at one place would have no order).
    if (e.at > n || e.cut > n - e.at ||
        (prev &&
         (e.at < prev->at + prev->cut || (prev->cut == 0 && e.cut == 0 && e.at == prev->at))))
      return fail("a patch of a policy image out of order or past its end");
    prev = &e;
    if (e.cut > 0 || !e.bytes.empty()) edits.push_back(e);
  }
  PolicyImage image;
  Data& d = *image.d_;
  d.keep = std::move(keep);
  size_t at = sizeof kImageMagic, next = 0;
  bool ok = true;
  ImageData::each(static_cast<ImageData&>(d), [&](auto& v) {
    using T = typename std::remove_reference_t<decltype(v)>::value_type;
    // The section's size, as saved and as patched: a splice of its own.
    uint64_t was = 0, size = 0;
    if (!ok || n - at < sizeof was) return void(ok = false);
    std::memcpy(&was, bytes.data() + at, sizeof was);
    size = was;
    if (next < edits.size() && edits[next].at < at + sizeof was) {
      const Splice& e = edits[next++];
      if (e.at != at || e.cut != sizeof size || e.bytes.size() != sizeof size)
        return void(ok = false);
      std::memcpy(&size, e.bytes.data(), sizeof size);
    }
    at += sizeof was;
    if (was > n - at || size % sizeof(T) != 0) return void(ok = false);
    const char* p = bytes.data() + at;
    const size_t from = at;
    at += was;
    // Its elements' splices: inside them, or at their end (the next
    // section's size is the next section's).
    size_t last = next;
    uint64_t patched = was;
    for (; last < edits.size() && edits[last].at <= at; ++last) {
      const Splice& e = edits[last];
      if (e.at == at && e.cut > 0) break;
      if (e.at < from || e.cut > at - e.at) return void(ok = false);
      patched = patched - e.cut + e.bytes.size();
    }
    if (patched != size) return void(ok = false);
    auto place = [&](auto& section) {
      using E = typename std::remove_reference_t<decltype(section)>::value_type;
      static_assert(std::is_trivially_copyable_v<E> ||
                    std::is_same_v<E, PolicyEntries::value_type>);
      // Where it lies, when nothing changes it and it is aligned for its
      // elements (an image of this format is, saved at a multiple of 8);
      // else a copy, patched.
      if (last == next && reinterpret_cast<uintptr_t>(p) % alignof(E) == 0) {
        section = Section<E>::view(reinterpret_cast<const E*>(p), size / sizeof(E));
        return;
      }
      auto& own = section.own();
      own.resize(size / sizeof(E));
      char* to = reinterpret_cast<char*>(own.data());
      size_t kept = from;  // what of the saved elements is copied next
      for (; next < last; ++next) {
        const Splice& e = edits[next];
        to = std::copy(bytes.data() + kept, bytes.data() + e.at, to);
        to = std::copy(e.bytes.begin(), e.bytes.end(), to);
        kept = e.at + e.cut;
      }
      std::copy(bytes.data() + kept, bytes.data() + at, to);
    };
    // The entries as the plan's pairs, laid out alike (write_image()).
    if constexpr (std::is_same_v<T, ImgEntry>)
      place(d.plan_entries);
    else
      place(v);
  });
  if (!ok || at != n || next != edits.size())
    return fail("a policy image cut short or inconsistent, or a patch that does not fit it");
  return std::move(image).checked();
}

Result<PolicyImage> PolicyImage::checked() && {
  const Data& d = *d_;
  if (!image_consistent(d)) return fail("a policy image cut short or inconsistent");
  // Edits search them (EntryEdit): out of order, they would miss.
  if (std::adjacent_find(d.plan_entries.begin(), d.plan_entries.end(), [](auto& a, auto& b) {
        return !key_less(a.first, b.first);
      }) != d.plan_entries.end())
    return fail("a policy image's entries are out of order");
  for (const ImgIpcache4& e : d.ipcache) d_->plan_ipcache.emplace_back(e.key, e.val);
  for (const ImgIpcache6& e : d.ipcache6) d_->plan_ipcache6.emplace_back(e.key, e.val);
  return std::move(*this);
}

// Read through a const Data: a non-const access would copy a section
// viewed in place (util/section.h).
std::string PolicyImage::bytes() const {
  const Data& x = *d_;
  // `entries` is left as read: the plan's are the ones in force.
  return write_image(x, std::span(reinterpret_cast<const ImgEntry*>(x.plan_entries.data()),
                                  x.plan_entries.size()));
}

std::string_view PolicyImage::magic() { return {kImageMagic, sizeof kImageMagic}; }

std::vector<std::string_view> PolicyImage::sections() const {
  const Data& x = *d_;
  std::vector<std::string_view> out;
  ImageData::each(static_cast<const ImageData&>(x), [&](const auto& v) {
    if constexpr (std::is_same_v<std::decay_t<decltype(v[0])>, ImgEntry>)
      // `entries` is left as read: the plan's are the ones in force.
      out.emplace_back(reinterpret_cast<const char*>(x.plan_entries.data()),
                       x.plan_entries.size() * sizeof(ImgEntry));
    else
      out.emplace_back(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(v[0]));
  });
  return out;
}

std::span<const PolicyEntries::value_type> PolicyImage::entries() const {
  return std::as_const(*d_).plan_entries.span();
}
const std::vector<std::pair<moat_lpm_v4_key, moat_ipcache_val>>& PolicyImage::ipcache() const {
  return d_->plan_ipcache;
}
const std::vector<std::pair<moat_lpm_v6_key, moat_ipcache_val>>& PolicyImage::ipcache6() const {
  return d_->plan_ipcache6;
}

std::optional<uint32_t> PolicyImage::rule_id(size_t policy, PolicyDirection d, size_t index) const {
  const Data& x = *d_;
  if (policy >= x.policies.size()) return std::nullopt;
  const ImgPolicy& p = x.policies[policy];
  if (index >= (d == PolicyDirection::ingress ? p.n_in : p.n_eg)) return std::nullopt;
  return p.first_rule + (d == PolicyDirection::egress ? p.n_in : 0) + static_cast<uint32_t>(index);
}

size_t PolicyImage::rule_count() const { return d_->rules.size(); }

Result<bool> PolicyImage::replace_rule(size_t policy, PolicyDirection d, size_t index,
                                       const PolicyRule& before, const PolicyRule& after,
                                       size_t max_entries) {
  // Read through `x`, written through `w`: a non-const access copies a
  // section viewed in place (util/section.h).
  Data& w = *d_;
  const Data& x = w;
  const uint32_t di = dir_index(d);
  if (policy >= x.policies.size() ||
      index >= (d == PolicyDirection::ingress ? x.policies[policy].n_in : x.policies[policy].n_eg))
    return fail("no rule " + std::to_string(index) + " of " + to_string(d) + " in policy " +
                std::to_string(policy));
  const ImgPolicy& p = x.policies[policy];
  const uint32_t id =
      p.first_rule + (d == PolicyDirection::egress ? p.n_in : 0) + static_cast<uint32_t>(index);
  // The caller's `before` must be the rule compiled, peers and all.
  auto was = x.compile(before, id);
  const CompiledRule old = x.rule(id);
  if (!was || !same_rule(*was, old)) return false;
  // A moat policy whose policyTypes leave this direction open has no allow
  // rule there: the reader refuses the file (policy_unchanged_by()).
  if (p.explicit_types && !p.kubernetes && !p.isolates[di] && after.action == PolicyAction::allow)
    return false;
  const uint32_t allows =
      p.allows[di] - (before.action == PolicyAction::allow) + (after.action == PolicyAction::allow);
  if (!p.kubernetes && !p.explicit_types && (allows > 0) != (p.isolates[di] != 0)) return false;
  // The set of ipBlocks, and so every identity, must stay as it is. The
  // counts that change, as changes (not a copy of all of them: 0.8 MB).
  std::map<uint32_t, int64_t> uses;
  for (const PolicyPeer& peer : after.peers) {
    if (peer.kind != PolicyPeer::Kind::ip_block) continue;
    auto i = x.find_block(peer.ip_block);
    if (!i) return false;
    ++uses[*i];
  }
  for (const PolicyPeer& peer : before.peers)
    if (peer.kind == PolicyPeer::Kind::ip_block) {
      const uint32_t i = *x.find_block(peer.ip_block);
      if (x.block_uses[i] + --uses[i] == 0) return false;
    }
  auto now = x.compile(after, id);
  if (!now) return false;
  const bool isolates = p.isolates[di] != 0;
  auto applies = [isolates](const CompiledRule& r) {
    return (r.deny || isolates) && (r.any_peer || !r.peers.empty());
  };
  if (applies(old) != applies(*now)) return false;
  const bool any = old.any_peer || now->any_peer;
  const auto groups = in(x.group_pool, x.rules[id].groups);
  if (!any) {  // as PolicyCompiler::replace_rule(): a whole compile is faster
    size_t runs = 0;
    for (uint32_t gi : groups)
      runs += x.groups[gi].subjects.n * (old.peers.size() + now->peers.size());
    if (runs > 4096 && runs * 4 > x.plan_entries.size()) return false;
  }
  EntryEdit edit(w.plan_entries);
  // Each group's rules naming peers, with the new rule's in place.
  std::vector<std::vector<ImgPair>> new_pairs;
  std::vector<std::vector<uint32_t>> new_any;
  for (uint32_t gi : groups) {
    const ImgGroup& g = x.groups[gi];
    const PolicyDirection gd = g.d ? PolicyDirection::egress : PolicyDirection::ingress;
    auto ids = in(x.rule_pool, g.rules);
    const uint32_t pos =
        static_cast<uint32_t>(std::lower_bound(ids.begin(), ids.end(), id) - ids.begin());
    auto materialize = [&](uint32_t at) { return at == pos ? *now : x.rule(ids[at]); };
    // Sorted already: the rule's pairs out, its new ones merged in.
    std::vector<ImgPair> pairs;
    const auto kept_pairs = in(x.pair_pool, g.pairs);
    pairs.reserve(kept_pairs.size() + now->peers.size());
    for (const ImgPair& e : kept_pairs)
      if (e.pos != pos) pairs.push_back(e);
    const size_t middle = pairs.size();
    for (uint32_t peer : now->peers) pairs.push_back({peer, pos});
    std::inplace_merge(pairs.begin(), pairs.begin() + static_cast<ptrdiff_t>(middle), pairs.end());
    std::vector<uint32_t> any_pos;
    for (uint32_t at : in(x.any_pool, g.any))
      if (at != pos) any_pos.push_back(at);
    if (now->any_peer) any_pos.insert(std::upper_bound(any_pos.begin(), any_pos.end(), pos), pos);
    std::vector<CompiledRule> any_rules;
    for (uint32_t at : any_pos) any_rules.push_back(materialize(at));
    auto subjects = in(x.subject_pool, g.subjects);
    if (any) {
      std::vector<CompiledRule> all;
      for (uint32_t at = 0; at < ids.size(); ++at) all.push_back(materialize(at));
      std::vector<const CompiledRule*> ptrs;
      for (const CompiledRule& r : all) ptrs.push_back(&r);
      const Computed computed = compute_entries(ptrs, g.isolated);
      for (uint32_t subject : subjects) edit.replace_subject(subject, gd, computed);
    } else {
      std::vector<const CompiledRule*> any_ptrs;
      for (const CompiledRule& r : any_rules) any_ptrs.push_back(&r);
      const Entries any_table = any_entries(any_ptrs, g.isolated);
      std::vector<uint32_t> peers = old.peers;
      peers.insert(peers.end(), now->peers.begin(), now->peers.end());
      sort_unique(peers);
      std::vector<Pattern> patterns;
      for (uint32_t peer : peers) {
        auto [lo, hi] =
            std::equal_range(pairs.begin(), pairs.end(), peer,
                             Overloaded{[](const ImgPair& a, uint32_t b) { return a.peer < b; },
                                        [](uint32_t a, const ImgPair& b) { return a < b.peer; }});
        Entries own;
        if (lo != hi) {
          std::vector<uint32_t> merged;
          std::vector<uint32_t> own_pos;
          for (auto it = lo; it != hi; ++it) own_pos.push_back(it->pos);
          std::merge(any_pos.begin(), any_pos.end(), own_pos.begin(), own_pos.end(),
                     std::back_inserter(merged));
          std::vector<CompiledRule> peer_rules;
          for (uint32_t at : merged) peer_rules.push_back(materialize(at));
          std::vector<const CompiledRule*> ptrs;
          for (const CompiledRule& r : peer_rules) ptrs.push_back(&r);
          own = own_entries(ptrs, any_table, g.isolated, patterns);
        }
        for (uint32_t subject : subjects) edit.replace_run(subject, peer, gd, own);
      }
    }
    new_pairs.push_back(std::move(pairs));
    new_any.push_back(std::move(any_pos));
  }
  if (!edit.finish(max_entries)) return false;
  // Nothing failed: the change is kept, stored where it differs.
  for (const auto& [i, delta] : uses)
    if (delta != 0) w.block_uses[i] = static_cast<uint32_t>(x.block_uses[i] + delta);
  ImgPolicy changed = p;
  changed.allows[di] = allows;
  store(w.policies, policy, changed);
  w.set_rule(*now);
  for (size_t k = 0; k < groups.size(); ++k) {
    ImgGroup g = x.groups[groups[k]];
    g.pairs = replace(w.pair_pool, g.pairs, std::span<const ImgPair>(new_pairs[k]));
    g.any = replace(w.any_pool, g.any, std::span<const uint32_t>(new_any[k]));
    store(w.groups, groups[k], g);
  }
  w.compact();
  return true;
}

}  // namespace moat
