#include "dataplane/policy_gen.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <netinet/in.h>

#include <algorithm>
#include <string>
#include <type_traits>

#include "dataplane/dataplane.h"
#include "dataplane/map_sync.h"
#include "dataplane/skeleton.h"
#include "endpoint.skel.h"
#include "util/fd.h"

using nlohmann::json;

namespace moat {
namespace {

// The inner map in `slot` of a map-in-map, or an invalid Fd when empty.
Fd inner_map(const bpf_map* outer, uint32_t slot) {
  uint32_t id = 0;
  if (bpf_map__lookup_elem(outer, &slot, sizeof(slot), &id, sizeof(id), 0) != 0 || id == 0) return Fd();
  return Fd(bpf_map_get_fd_by_id(id));
}

// A fresh inner map like the BPF side's template, filled with `entries`.
template <class K, class V>
Result<Fd> build_inner(bpf_map_type type, const char* name, uint32_t max_entries,
                       const std::vector<std::pair<K, V>>& entries) {
  LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = BPF_F_NO_PREALLOC);
  Fd fd(bpf_map_create(type, name, sizeof(K), sizeof(V), max_entries, &opts));
  if (!fd.ok()) return fail_errno(std::string("create map ") + name, errno);
  for (const auto& [k, v] : entries)
    if (bpf_map_update_elem(fd.get(), &k, &v, BPF_ANY) != 0)
      return fail_errno(std::string("fill map ") + name, errno);
  return fd;
}

// Whether the generation in force (`rev` != 0) holds exactly these entries.
// A generation written before IPv6 has no IPv6 cache: it does not hold them.
bool generation_holds(const endpoint_bpf& skel, uint32_t rev, const IpcacheEntries& ipcache,
                      const Ipcache6Entries& ipcache6, const PolicyEntries& entries) {
  Fd ic = inner_map(skel.maps.ipcache_gens, rev & 1);
  Fd ic6 = inner_map(skel.maps.ipcache6_gens, rev & 1);
  Fd pc = inner_map(skel.maps.policy_gens, rev & 1);
  return ic.ok() && ic6.ok() && pc.ok() && holds_exactly(ic.get(), ipcache) &&
         holds_exactly(ic6.get(), ipcache6) && holds_exactly(pc.get(), entries);
}

}  // namespace

Result<uint32_t> read_policy_rev(const endpoint_bpf& skel) {
  uint32_t zero = 0, rev = 0;
  if (int rc = bpf_map__lookup_elem(skel.maps.policy_rev, &zero, sizeof(zero), &rev, sizeof(rev), 0);
      rc)
    return fail_errno("read policy revision", rc);
  return rev;
}

Result<void> set_policy_rev(const endpoint_bpf& skel, uint32_t rev) {
  uint32_t zero = 0;
  if (int rc = bpf_map__update_elem(skel.maps.policy_rev, &zero, 4, &rev, 4, 0); rc)
    return fail_errno(rev ? "switch to policy revision " + std::to_string(rev) : "switch policy off",
                      rc);
  return {};
}

Result<void> write_policy_generation(const endpoint_bpf& skel, uint32_t rev,
                                     const IpcacheEntries& ipcache, const PolicyEntries& entries,
                                     const Ipcache6Entries& ipcache6) {
  if (rev == 0) return fail("policy revision 0 means no policy; a generation needs another");
  auto ic = build_inner(BPF_MAP_TYPE_LPM_TRIE, "ipcache_gen", MOAT_MAX_IPCACHE, ipcache);
  if (!ic) return std::unexpected(ic.error());
  auto ic6 = build_inner(BPF_MAP_TYPE_LPM_TRIE, "ipcache6_gen", MOAT_MAX_IPCACHE, ipcache6);
  if (!ic6) return std::unexpected(ic6.error());
  auto pc = build_inner(BPF_MAP_TYPE_HASH, "policy_gen", MOAT_MAX_POLICY, entries);
  if (!pc) return std::unexpected(pc.error());
  uint32_t slot = rev & 1;
  const std::pair<bpf_map*, int> installs[] = {{skel.maps.ipcache_gens, ic->get()},
                                               {skel.maps.ipcache6_gens, ic6->get()},
                                               {skel.maps.policy_gens, pc->get()}};
  for (auto [outer, fd] : installs)
    if (int rc = bpf_map__update_elem(outer, &slot, 4, &fd, 4, 0); rc)
      return fail_errno(std::string("install generation of ") + bpf_map__name(outer), rc);
  return set_policy_rev(skel, rev);
}

Result<bool> install_policy(const endpoint_bpf& skel, const IpcacheEntries& ipcache,
                            const Ipcache6Entries& ipcache6, const PolicyEntries& entries,
                            bool active, uint32_t last_rev, bool dry_run, uint32_t* rev) {
  auto cur = read_policy_rev(skel);
  if (!cur) return std::unexpected(cur.error());
  *rev = *cur;
  if (!active) {
    if (*cur == 0) return false;
    *rev = 0;
    if (dry_run) return true;
    if (auto r = set_policy_rev(skel, 0); !r) return std::unexpected(r.error());
    return true;
  }
  if (*cur != 0 && generation_holds(skel, *cur, ipcache, ipcache6, entries)) return false;
  uint32_t next = std::max(*cur, last_rev) + 1;
  if (next == 0) next = 2;  // wrapped: 0 means "no policy"
  *rev = next;
  if (dry_run) return true;
  if (auto r = write_policy_generation(skel, next, ipcache, entries, ipcache6); !r)
    return std::unexpected(r.error());
  return true;
}

void reset_rule_hits(const endpoint_bpf& skel, uint32_t n) {
  int ncpu = libbpf_num_possible_cpus();
  std::vector<uint64_t> zeros(ncpu > 0 ? static_cast<size_t>(ncpu) : 1, 0);
  for (uint32_t id = 0; id < n; ++id)
    bpf_map__update_elem(skel.maps.rule_hits, &id, sizeof(id), zeros.data(),
                         zeros.size() * sizeof(uint64_t), 0);
}

namespace {

moat_lpm_v4_key full_key(const Ipv4& a) { return {32, a.to_be()}; }

moat_lpm_v6_key full_key(const Ipv6& a) {
  moat_lpm_v6_key k{};
  k.prefixlen = 128;
  std::copy(a.bytes.begin(), a.bytes.end(), k.addr.b);
  return k;
}

// Both families: the identities from the family's cache, then the same
// policy lookups.
template <class A>
Result<json> kernel_verdict(const std::string& instance, const A& src_ip, const A& dst_ip,
                            uint8_t proto, uint16_t port) {
  auto skel = open_pinned_maps<endpoint_bpf>(pin_dir(instance));
  if (!skel) return std::unexpected(skel.error());
  auto rev = read_policy_rev(*skel->get());
  if (!rev) return std::unexpected(rev.error());
  json out = {{"revision", *rev}};
  if (*rev == 0) {
    out["allowed"] = true;
    out["text"] = "no policy is loaded (revision 0)";
    return out;
  }
  constexpr bool v6 = std::is_same_v<A, Ipv6>;
  Fd ic = inner_map(v6 ? (*skel)->maps.ipcache6_gens : (*skel)->maps.ipcache_gens, *rev & 1);
  Fd pc = inner_map((*skel)->maps.policy_gens, *rev & 1);
  if (!ic.ok() || !pc.ok()) return fail("policy generation " + std::to_string(*rev) + " is missing");
  auto identity = [&](const A& addr) {
    auto k = full_key(addr);
    moat_ipcache_val v{MOAT_ID_WORLD, 0};
    bpf_map_lookup_elem(ic.get(), &k, &v);  // the kernel's longest-prefix match
    return v;
  };
  moat_ipcache_val src = identity(src_ip), dst = identity(dst_ip);
  uint16_t port_be = (proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP)
                         ? htons(port) : 0;
  // Exactly policy_lookup() in bpf/lib/policy.h.
  auto lookup = [&](uint32_t subject, uint32_t peer, uint8_t dir, bool isolated) {
    for (int i = 0; i < 6; ++i) {
      moat_policy_key k{};
      k.subject = subject;
      k.peer = i < 3 ? peer : static_cast<uint32_t>(MOAT_ID_ANY);
      k.dir = dir;
      k.proto = (i % 3) == 2 ? 0 : proto;
      k.port = (i % 3) == 0 ? port_be : 0;
      moat_policy_val v{};
      if (bpf_map_lookup_elem(pc.get(), &k, &v) == 0)
        return json{{"decided_by", "entry"}, {"lookup", i + 1},
                    {"allowed", v.action == MOAT_POLICY_ALLOW}, {"rule_id", v.rule_id}};
    }
    return json{{"decided_by", isolated ? "default-deny" : "not-isolated"}, {"allowed", !isolated}};
  };
  out["source_identity"] = src.identity;
  out["destination_identity"] = dst.identity;
  bool allowed = true;
  if (src.flags & MOAT_ID_F_CONTAINER) {
    out["egress"] = lookup(src.identity, dst.identity, MOAT_POLICY_EGRESS,
                           src.flags & MOAT_ID_F_EGRESS_ISOLATED);
    allowed = allowed && out["egress"]["allowed"].get<bool>();
  }
  if (allowed && (dst.flags & MOAT_ID_F_CONTAINER)) {
    out["ingress"] = lookup(dst.identity, src.identity, MOAT_POLICY_INGRESS,
                            dst.flags & MOAT_ID_F_INGRESS_ISOLATED);
    allowed = allowed && out["ingress"]["allowed"].get<bool>();
  }
  out["allowed"] = allowed;
  return out;
}

}  // namespace

Result<json> kernel_policy_verdict(const std::string& instance, uint32_t src_be, uint32_t dst_be,
                                   uint8_t proto, uint16_t port) {
  return kernel_verdict(instance, Ipv4::from_be(src_be), Ipv4::from_be(dst_be), proto, port);
}

Result<json> kernel_policy_verdict(const std::string& instance, const Ipv6& src, const Ipv6& dst,
                                   uint8_t proto, uint16_t port) {
  return kernel_verdict(instance, src, dst, proto, port);
}

}  // namespace moat
