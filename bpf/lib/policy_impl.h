/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * policy_impl.h - the address-family part of policy (lib/policy.h includes
 * it for CT_FAM 4, then 6; names through lib/ct_fam.h): addresses to
 * identities through the family's ipcache generation, and the re-judging
 * of tracked flows. policy_verdict() and policy_verdict6() differ only in
 * the trie they ask. No include guard.
 */
#include "lib/ct_fam.h"

static __always_inline void CT_V(ipcache_get)(void *ipcache, CT_ADDR addr,
					      struct moat_ipcache_val *out)
{
	CT_LPM_KEY key = { .prefixlen = CT_LPM_BITS, .addr = addr };
	struct moat_ipcache_val *v;

	if (CT_FN(link_scope)(&addr)) {
		out->identity = MOAT_ID_LINK;
		out->flags = 0;
		return;
	}
	v = bpf_map_lookup_elem(ipcache, &key);
	if (v) {
		*out = *v;
	} else {
		out->identity = CT_WORLD_ID;
		out->flags = 0;
	}
}

/*
 * The verdict on flow `t` (its original direction: source dials
 * destination) under revision `rev`. Revision 0: no policy anywhere.
 *
 * A BPF-to-BPF call, not inlined: each call frame keeps its own stack
 * and the programs stay under the verifier's 512-byte frame limit.
 */
static __noinline int CT_V(policy_verdict)(__u32 rev, const CT_KEY *t, __u32 *rule_id)
{
	struct moat_ipcache_val src, dst;
	__u32 slot = rev & 1;
	void *ipcache, *pol;
	__be16 port = 0;

	*rule_id = MOAT_RULE_NONE;
	obs_note_rule(MOAT_RULE_NONE); /* no rule decides unless one is found */
	if (!rev)
		return MOAT_PASS;
	ipcache = bpf_map_lookup_elem(&CT_IPCACHE_GENS, &slot);
	pol = bpf_map_lookup_elem(&policy_gens, &slot);
	if (!ipcache || !pol)
		return MOAT_DROP_POLICY_DEFAULT_DENY; /* fail closed */
	CT_V(ipcache_get)(ipcache, t->saddr, &src);
	CT_V(ipcache_get)(ipcache, t->daddr, &dst);
	if (t->proto == IPPROTO_TCP || t->proto == IPPROTO_UDP || t->proto == IPPROTO_SCTP)
		port = t->dport;
	return policy_judge(pol, &src, &dst, t->proto, port, rule_id);
}

/*
 * The flow an entry belongs to, as policy sees it: who dialled whom, with
 * the published port already resolved to the container behind it.
 */
static __always_inline void CT_FN(policy_tuple)(const CT_KEY *key, const CT_ENTRY *e,
						 CT_KEY *t)
{
	switch (e->kind) {
	case MOAT_CT_DNAT:
		*t = *key;
		t->daddr = e->xlated.daddr;
		t->dport = e->xlated.dport;
		break;
	case MOAT_CT_DNAT_REPLY:
		t->saddr = e->xlated.daddr;
		t->daddr = key->saddr;
		t->sport = e->xlated.dport;
		t->dport = key->sport;
		t->proto = key->proto;
		break;
	case MOAT_CT_SNAT_REPLY:
		t->saddr = e->xlated.daddr;
		t->daddr = e->xlated.saddr;
		t->sport = e->xlated.dport;
		t->dport = e->xlated.sport;
		t->proto = key->proto;
		break;
	default: /* MOAT_CT_SNAT, MOAT_CT_TRACK: the key is the original tuple */
		*t = *key;
		break;
	}
	t->pad[0] = t->pad[1] = t->pad[2] = 0;
}

/*
 * A tracked flow admitted under another revision is judged again; one the
 * current policy no longer allows is forgotten (both entries) and its
 * packet dropped, which is how a policy change cuts established
 * connections.
 */
static __always_inline int CT_FN(recheck)(const CT_KEY *key, CT_ENTRY *e, __u32 rev)
{
	CT_KEY t, pk;
	__u32 rule_id;

	if (likely(e->policy_rev == rev))
		return MOAT_PASS;
	CT_FN(policy_tuple)(key, e, &t);
	if (CT_V(policy_verdict)(rev, &t, &rule_id) != MOAT_PASS) {
		if (e->kind != MOAT_CT_TRACK) {
			CT_FN(reverse)(&e->xlated, &pk);
			bpf_map_delete_elem(&CT_MAP, &pk);
		}
		bpf_map_delete_elem(&CT_MAP, key);
		return MOAT_DROP_POLICY_REVOKED;
	}
	e->policy_rev = rev;
	return MOAT_PASS;
}

