/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * policy.h - segmentation policy for a new flow, identity-based (abi.h,
 * "Segmentation policies"): both addresses to identities through the
 * current generation's ipcache, then the egress rules of the source (when
 * it is a container) and the ingress rules of the destination (when it is
 * one), each in at most six hash lookups. A flow is judged once, by the
 * first moat hook that meets it; connection tracking carries the verdict
 * to its later packets and its replies, and re-judges them when the
 * revision changes.
 */
#ifndef MOAT_LIB_POLICY_H
#define MOAT_LIB_POLICY_H

#include "lib/ct.h"

static __always_inline __u32 policy_current_rev(void)
{
	__u32 zero = 0;
	__u32 *rev = bpf_map_lookup_elem(&policy_rev, &zero);

	return rev ? *rev : 0;
}

static __always_inline void ipcache_get(void *ipcache, __be32 addr, struct moat_ipcache_val *out)
{
	struct moat_lpm_v4_key key = { .prefixlen = 32, .addr = addr };
	struct moat_ipcache_val *v = bpf_map_lookup_elem(ipcache, &key);

	if (v) {
		*out = *v;
	} else {
		out->identity = MOAT_ID_WORLD;
		out->flags = 0;
	}
}

/*
 * One direction of one subject: the first of the six patterns that exists
 * decides; none does: denied if the subject is isolated that way.
 */
static __always_inline int policy_lookup(void *pol, __u32 subject, __u32 peer, __u8 dir, __u8 proto,
					 __be16 port, int isolated, __u32 *rule_id)
{
	struct moat_policy_key k = { .subject = subject, .dir = dir };
	struct moat_policy_val *v;
	int i;

#pragma unroll
	for (i = 0; i < 6; i++) {
		k.peer = i < 3 ? peer : MOAT_ID_ANY;
		k.proto = (i % 3) == 2 ? 0 : proto;
		k.port = (i % 3) == 0 ? port : 0;
		v = bpf_map_lookup_elem(pol, &k);
		if (v) {
			*rule_id = v->rule_id;
			obs_note_rule(v->rule_id);
			obs_rule_hit(v->rule_id);
			return v->action == MOAT_POLICY_ALLOW ? MOAT_PASS : MOAT_DROP_POLICY_DENY;
		}
	}
	*rule_id = MOAT_RULE_NONE;
	obs_note_rule(MOAT_RULE_NONE);
	return isolated ? MOAT_DROP_POLICY_DEFAULT_DENY : MOAT_PASS;
}

/*
 * The verdict on flow `t` (its original direction: source dials
 * destination) under revision `rev`. Revision 0: no policy anywhere.
 *
 * A BPF-to-BPF call, not inlined: each call frame keeps its own stack
 * and the programs stay under the verifier's 512-byte frame limit.
 */
static __noinline int policy_verdict(__u32 rev, const struct moat_ct_key *t, __u32 *rule_id)
{
	struct moat_ipcache_val src, dst;
	__u32 slot = rev & 1;
	void *ipcache, *pol;
	__be16 port = 0;
	int v;

	*rule_id = MOAT_RULE_NONE;
	obs_note_rule(MOAT_RULE_NONE); /* no rule decides unless one is found */
	if (!rev)
		return MOAT_PASS;
	ipcache = bpf_map_lookup_elem(&ipcache_gens, &slot);
	pol = bpf_map_lookup_elem(&policy_gens, &slot);
	if (!ipcache || !pol)
		return MOAT_DROP_POLICY_DEFAULT_DENY; /* fail closed */
	ipcache_get(ipcache, t->saddr, &src);
	ipcache_get(ipcache, t->daddr, &dst);
	if (t->proto == IPPROTO_TCP || t->proto == IPPROTO_UDP || t->proto == IPPROTO_SCTP)
		port = t->dport;

	if (src.flags & MOAT_ID_F_CONTAINER) {
		v = policy_lookup(pol, src.identity, dst.identity, MOAT_POLICY_EGRESS, t->proto, port,
				  src.flags & MOAT_ID_F_EGRESS_ISOLATED, rule_id);
		if (v)
			return v;
	}
	if (dst.flags & MOAT_ID_F_CONTAINER) {
		v = policy_lookup(pol, dst.identity, src.identity, MOAT_POLICY_INGRESS, t->proto, port,
				  dst.flags & MOAT_ID_F_INGRESS_ISOLATED, rule_id);
		if (v)
			return v;
	}
	return MOAT_PASS;
}

/*
 * Whether a policy of revision `rev` isolates the container at `ep` in
 * `pdir` (enum moat_policy_dir): selected, so only what its rules allow
 * reaches it (ingress) or leaves it (egress). Its identity is its IPv4
 * address's. Fails closed: no generation, isolated.
 */
static __always_inline int policy_isolates(__u32 rev, const struct moat_endpoint *ep, __u8 pdir)
{
	struct moat_ipcache_val me;
	__u32 slot = rev & 1;
	void *ipcache;

	if (!rev)
		return 0;
	ipcache = bpf_map_lookup_elem(&ipcache_gens, &slot);
	if (!ipcache)
		return 1;
	ipcache_get(ipcache, ep->ipv4, &me);
	return me.flags & (pdir == MOAT_POLICY_EGRESS ? MOAT_ID_F_EGRESS_ISOLATED
						      : MOAT_ID_F_INGRESS_ISOLATED);
}

/*
 * The flow an entry belongs to, as policy sees it: who dialled whom, with
 * the published port already resolved to the container behind it.
 */
static __always_inline void ct_policy_tuple(const struct moat_ct_key *key,
					    const struct moat_ct_entry *e, struct moat_ct_key *t)
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
static __always_inline int ct_recheck(const struct moat_ct_key *key, struct moat_ct_entry *e,
				      __u32 rev)
{
	struct moat_ct_key t, pk;
	__u32 rule_id;

	if (likely(e->policy_rev == rev))
		return MOAT_PASS;
	ct_policy_tuple(key, e, &t);
	if (policy_verdict(rev, &t, &rule_id) != MOAT_PASS) {
		if (e->kind != MOAT_CT_TRACK) {
			ct_reverse(&e->xlated, &pk);
			bpf_map_delete_elem(&ct, &pk);
		}
		bpf_map_delete_elem(&ct, key);
		return MOAT_DROP_POLICY_REVOKED;
	}
	e->policy_rev = rev;
	return MOAT_PASS;
}

#endif
