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

/* Flows on the ring. Only the sweeper moves the head, and never past the
 * tail; a head beyond the tail (a test resetting the ring under a running
 * sweep) reads as an empty ring rather than a full one. */
static __always_inline __u64 ct_ring_len(const struct moat_ct_ring_pos *pos)
{
	__u64 head = pos->head, tail = pos->tail;

	return tail > head ? tail - head : 0;
}

/* Whether flows are counted (abi.h): `slots` is the ring's size. */
static __always_inline int ct_ring_busy(const struct moat_ct_ring_pos *pos, __u32 slots)
{
	return ct_ring_len(pos) >= slots / MOAT_CT_QUOTA_FROM_SHARE;
}

/* Serial-number arithmetic (RFC 1982): whether `a` lies in [lo, hi]. An
 * empty range (hi before lo) holds nothing rather than wrapping round. */
static __always_inline int seq_within(__u32 a, __u32 lo, __u32 hi)
{
	return (__s32)(hi - lo) >= 0 && a - lo <= hi - lo;
}

/* What a failed ct_create()/ct_track() means for the packet: a full table,
 * or the caller's own reason (a masquerade tuple already taken). */
static __always_inline int ct_failed(int err, int otherwise)
{
	return err == -E2BIG ? MOAT_DROP_CT_FULL : otherwise;
}

/*
 * Where a flow's two entries apply their rewrites, and the policy
 * revision (and rule) that admitted it; one struct per family (CT_SITES),
 * as the owner and the entry differ. The bytes side by side: 48 bytes
 * either way.
 */
#define CT_SITES_FIELDS(owner_t, entry_t)                                                 \
	__u32 orig_ifindex;                                                               \
	__u32 orig_slot; /* counter slot of orig_ifindex: its new_flows counts the flow */ \
	__u32 reply_ifindex;                                                              \
	__u32 rev;                                                                        \
	__u32 rule_id;                                                                    \
	__u32 len; /* of the packet that opens the flow: it is counted */                 \
	__u8 orig_dir;                                                                    \
	__u8 reply_dir;                                                                   \
	/* A flow already tracked, taken over: no event, no new charge; its ring \
	 * slot and TCP state go on. */                                                   \
	const entry_t *taken;                                                             \
	owner_t owner; /* whose quota the flow counts in (abi.h; ct_owner_of()) */         \
	__u32 *owned; /* the owner's count, as ct_admit() found it */

struct ct_sites {
	CT_SITES_FIELDS(__be32, struct moat_ct_entry)
};

struct ct6_sites {
	CT_SITES_FIELDS(const union moat_ip *, struct moat_ct6_entry)
};

static __always_inline int is_uplink_dir(__u32 dir)
{
	return dir == MOAT_DIR_FROM_WORLD || dir == MOAT_DIR_TO_WORLD;
}


/* A flow event's tuples: IPv4's addresses fit in them; IPv6's go beside
 * them (MOAT_EV_F_IPV6), the tuples keeping protocol and ports. The flags
 * are written every time: the ring buffer hands out its memory unzeroed. */
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
	ev->xlated_src6 = x->saddr;
	ev->xlated_dst6 = x->daddr;
	ev->tuple = (struct moat_ct_key){ .sport = k->sport, .dport = k->dport, .proto = k->proto };
	ev->xlated = (struct moat_ct_key){ .sport = x->sport, .dport = x->dport, .proto = x->proto };
}

/* Whose quota a flow of a container at `a` counts in. */
static __always_inline __be32 ct_owner_of(__be32 a)
{
	return a;
}

/* IPv6's owner is the address where it lives (an endpoint's entry, a
 * publish6 value, the per-CPU scratch), not a copy: 16 bytes more on the
 * IPv6 path's stack would not fit there. */
#define ct6_owner_of(a) ((const union moat_ip *)&(a))

#define CT_FAM 4
#include "lib/ct_impl.h"
#undef CT_FAM
#define CT_FAM 6
#include "lib/ct_impl.h"
#undef CT_FAM

#endif
