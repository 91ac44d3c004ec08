// internal.h - what the policy/ files share and no other folder needs: how
// compiled entries are keyed and ordered (compile.cpp sorts them, the
// compiled evaluator searches them, so both must agree), a walk over every
// ipBlock of every rule, and how names are quoted in messages.
#pragma once

#include <arpa/inet.h>

#include <cstring>
#include <string>
#include <tuple>

#include "abi.h"
#include "policy/policy.h"

namespace moat {

inline uint8_t abi_dir(PolicyDirection d) {
  return d == PolicyDirection::ingress ? MOAT_POLICY_INGRESS : MOAT_POLICY_EGRESS;
}

// The order of PolicyPlan::entries: the key's bytes, the order the
// generations are compared and diffed in (plan/gen_diff.h), so installing
// them needs no sort of its own (100,000 entries: a stable sort, a copy and
// a pass per apply). Entries of one (subject, peer, dir) still lie together
// (the key's first nine bytes), the one with proto and port 0 first.
inline bool key_less(const moat_policy_key& a, const moat_policy_key& b) {
  return std::memcmp(&a, &b, sizeof a) < 0;
}
inline bool key_equal(const moat_policy_key& a, const moat_policy_key& b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

// Whether a pods peer of `policy` (selectors; a podSelector alone means the
// policy's namespace) matches pods of namespace `ns` with `labels`.
bool peer_selects(const Config& cfg, const Policy& policy, const PolicyPeer& peer,
                  const std::string& ns, const Labels& labels);  // select.cpp

// Calls visit(block) for the ipBlock of every peer of every rule, in order.
template <class Visit>
void for_each_ip_block(const Config& cfg, Visit visit) {
  for (const Policy& p : cfg.policies)
    for (PolicyDirection d : {PolicyDirection::ingress, PolicyDirection::egress})
      for (const PolicyRule& r : p.rules(d))
        for (const PolicyPeer& peer : r.peers)
          if (peer.kind == PolicyPeer::Kind::ip_block) visit(peer.ip_block);
}

// Between double quotes as written (util/text.h's quote() escapes): the
// messages about names and endpoints have always spelt them so.
inline std::string quoted(const std::string& s) { return "\"" + s + "\""; }

}  // namespace moat
