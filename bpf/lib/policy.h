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
 * The verdict of generation `pol` on a flow between identities `src` and
 * `dst`: the source's egress rules when it is a container, then the
 * destination's ingress rules when it is one.
 */
static __always_inline int policy_judge(void *pol, const struct moat_ipcache_val *src,
					const struct moat_ipcache_val *dst, __u8 proto,
					__be16 port, __u32 *rule_id)
{
	int v;

	if (src->flags & MOAT_ID_F_CONTAINER) {
		v = policy_lookup(pol, src->identity, dst->identity, MOAT_POLICY_EGRESS, proto, port,
				  src->flags & MOAT_ID_F_EGRESS_ISOLATED, rule_id);
		if (v)
			return v;
	}
	if (dst->flags & MOAT_ID_F_CONTAINER) {
		v = policy_lookup(pol, dst->identity, src->identity, MOAT_POLICY_INGRESS, proto,
				  port, dst->flags & MOAT_ID_F_INGRESS_ISOLATED, rule_id);
		if (v)
			return v;
	}
	return MOAT_PASS;
}

/* Whether a peer address is on the link only (IPv6 link-local, multicast):
 * it has no identity of its own (abi.h, MOAT_ID_LINK). */
static __always_inline int ct_link_scope(const __be32 *a)
{
	return 0;
}

static __always_inline int ct6_link_scope(const union moat_ip *a)
{
	return ip_is_link_scope(a);
}

#define CT_FAM 4
#include "lib/policy_impl.h"
#undef CT_FAM
#define CT_FAM 6
#include "lib/policy_impl.h"
#undef CT_FAM

#endif
