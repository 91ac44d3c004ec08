/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * ct.h - connection tracking in moat's own map (`ct`, layout in abi.h).
 *
 * A translated flow has two entries, one per direction, each keyed by the
 * tuple as it arrives and saying what it becomes; the partner's key is the
 * reverse of `xlated`, so either entry finds the other without a pointer.
 * Entries expire lazily: a lookup that finds an idle entry whose partner is
 * idle too deletes both and reports a miss. What nobody looks up any more
 * is ended by the ring's sweeper, a BPF timer (ct_sweep_tick; the
 * per-container quota, abi.h), by the readers and by `moat ct gc`.
 * IPv4 and IPv6 each have their own maps (abi.h); the code is written once,
 * in lib/ct_impl.h, and included here for each family: ct_lookup() and
 * ct6_lookup() are the same function over different keys.
 * Why not the kernel's conntrack (kfuncs): it would tie moat to netfilter's
 * module and tables, which this project replaces, and cost the same lookups.
 */
#ifndef MOAT_LIB_CT_H
#define MOAT_LIB_CT_H

#include "lib/addr.h"
#include "lib/maps.h"
#include "lib/observe.h"
#include "lib/parse.h"

static __always_inline void ct_owned_dec(__be32 owner)
{
	__u32 *n = bpf_map_lookup_elem(&ct_owned, &owner);

	if (n && *n)
		__sync_fetch_and_add(n, -1);
}

/* Flows on the ring. Only the sweeper moves the head, and never past the
 * tail; a head beyond the tail (a test resetting the ring under a running
 * sweep) reads as an empty ring rather than a full one. */
static __always_inline __u64 ct_ring_len(const struct moat_ct_ring_pos *pos)
{
	__u64 head = pos->head, tail = pos->tail;

	return tail > head ? tail - head : 0;
}

static __always_inline int ct_ring_busy(const struct moat_ct_ring_pos *pos)
{
	return ct_ring_len(pos) >= MOAT_CT_QUOTA_FROM;
}

/* What a failed ct_create()/ct_track() means for the packet: a full table,
 * or the caller's own reason (a masquerade tuple already taken). */
static __always_inline int ct_failed(int err, int otherwise)
{
	return err == -E2BIG ? MOAT_DROP_CT_FULL : otherwise;
}

/* Where a flow's two entries apply their rewrites, and the policy
 * revision (and rule) that admitted it. */
struct ct_sites {
	__u32 orig_ifindex;
	__u32 orig_slot; /* counter slot of orig_ifindex: its new_flows counts the flow */
	__u8 orig_dir;
	__u32 reply_ifindex;
	__u8 reply_dir;
	__u32 rev;
	__u32 rule_id;
	__u32 len; /* of the packet that opens the flow: it is counted */
	__u32 quiet; /* taking over a flow already tracked: no event, no new charge */
	__be32 owner; /* whose quota the flow counts in (abi.h) */
	__u32 *owned; /* the owner's count, as ct_admit() found it */
};

static __always_inline int is_uplink_dir(__u32 dir)
{
	return dir == MOAT_DIR_FROM_WORLD || dir == MOAT_DIR_TO_WORLD;
}


/* A flow event's tuple: IPv4's addresses fit in it; IPv6's go beside it
 * (MOAT_EV_F_IPV6), the tuple keeping protocol and ports. The flags are
 * written every time: the ring buffer hands out its memory unzeroed. */
static __always_inline void ct_ev_tuple(struct moat_event *ev, const struct moat_ct_key *k,
					const struct moat_ct_key *x)
{
	ev->flags = 0;
	ev->tuple = *k;
	ev->xlated = *x;
}

static __always_inline void ct6_ev_tuple(struct moat_event *ev, const struct moat_ct6_key *k,
					 const struct moat_ct6_key *x)
{
	ev->flags = MOAT_EV_F_IPV6;
	ev->src6 = k->saddr;
	ev->dst6 = k->daddr;
	ev->tuple = (struct moat_ct_key){ .sport = k->sport, .dport = k->dport, .proto = k->proto };
	ev->xlated = (struct moat_ct_key){ .sport = x->sport, .dport = x->dport, .proto = x->proto };
}

#define CT_FAM 4
#include "lib/ct_impl.h"
#undef CT_FAM
#define CT_FAM 6
#include "lib/ct_impl.h"
#undef CT_FAM

/*
 * Whether ICMPv6 error `l4` is about a tracked flow (RELATED): the packet
 * it quotes (at l4_off + 8, every error type) is of a flow in `ct6`,
 * either direction. As for IPv4 (nat_icmp_error), the error must travel to
 * the quoted packet's source, and a container, which is no router, may
 * report only about a packet it received itself. A quote with extension
 * headers is nobody's flow here: the error is judged as a new packet.
 *
 * A BPF-to-BPF call, not inlined: each call frame keeps its own stack
 * and the programs stay under the verifier's 512-byte frame limit.
 */
static __noinline int ct6_error_related(struct __sk_buff *skb, const struct l4_info6 *l4,
					__u32 dir, __u64 now)
{
	struct v6_scratch *s = v6_scratch_get();
	struct moat_ct6_key *q;
	__be16 ports[3];

	if (!s)
		return 0;
	q = &s->quoted;
	__builtin_memset(q, 0, sizeof(*q));
	if (bpf_skb_load_bytes(skb, l4->l4_off + 8, &s->inner, sizeof(s->inner)) ||
	    s->inner.version != 6 ||
	    bpf_skb_load_bytes(skb, l4->l4_off + 8 + sizeof(s->inner), ports, sizeof(ports)))
		return 0;
	ip_set_v6(&q->saddr, &s->inner.saddr);
	ip_set_v6(&q->daddr, &s->inner.daddr);
	q->proto = s->inner.nexthdr;
	if (q->proto == IPPROTO_TCP || q->proto == IPPROTO_UDP || q->proto == IPPROTO_SCTP) {
		q->sport = ports[0];
		q->dport = ports[1];
	} else if (q->proto == IPPROTO_ICMPV6 && ((__u8 *)ports)[0] == ICMPV6_ECHO_REQUEST) {
		q->sport = ports[2];
	} else if (q->proto == IPPROTO_ICMPV6 && ((__u8 *)ports)[0] == ICMPV6_ECHO_REPLY) {
		q->dport = ports[2];
	} else {
		return 0;
	}
	if (!ip_eq(&l4->key.daddr, &q->saddr))
		return 0;
	if (dir == MOAT_DIR_FROM_CONTAINER && !ip_eq(&l4->key.saddr, &q->daddr))
		return 0;
	if (ct6_lookup(q, now))
		return 1;
	ct6_reverse(q, &s->rkey);
	return ct6_lookup(&s->rkey, now) != NULL;
}

#endif
