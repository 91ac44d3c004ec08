/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * ct_impl.h - connection tracking for one address family (lib/ct.h
 * includes it twice: CT_FAM 4, then 6). Every name that differs between
 * the families goes through lib/ct_fam.h: CT_FN(lookup) is ct_lookup for
 * IPv4 and ct6_lookup for IPv6, CT_MAP is `ct` or `ct6`, and so on. The
 * logic is the same for both; only key sizes differ. No include guard.
 */
#include "lib/ct_fam.h"

static __always_inline void CT_FN(owned_dec)(const CT_ADDR *owner)
{
	__u32 *n = bpf_map_lookup_elem(&CT_OWNED, owner);

	if (n && *n)
		__sync_fetch_and_add(n, -1);
}

/* Gives back what a ring slot's flow held, as the `counted` its taker took
 * (abi.h): its owner's count, or its place among the closed flows. */
static __always_inline void CT_FN(release)(struct moat_ct_ring_pos *pos, const CT_ADDR *owner,
					   __u32 counted)
{
	if (counted == MOAT_CT_COUNTED)
		CT_FN(owned_dec)(owner);
	else if (counted == MOAT_CT_COUNTED_CLOSED)
		__sync_fetch_and_add(&pos->closed, -1);
}

/*
 * A flow event from the flow's original-direction entry `o` (key `okey`)
 * and, for translated flows, its reply entry `r` (NULL for tracked flows,
 * which count both directions in one entry).
 */
static __always_inline void CT_FN(flow_event)(__u32 type, const CT_KEY *okey, const CT_ENTRY *o,
					       const CT_ENTRY *r, __u64 now)
{
	struct moat_event *ev;

	if (!obs_on())
		return;
	ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev) {
		obs_lost(MOAT_EV_LOST_FULL);
		return;
	}
	ev->ts_ns = now;
	ev->type = type;
	ev->ifindex = o->ifindex;
	ev->dir = o->dir;
	ev->reason = 0;
	ev->ct_kind = o->kind;
	ev->tcp_state = o->tcp_state;
	ev->rule_id = o->rule_id;
	CT_FN(ev_tuple)(ev, okey, &o->xlated);
	ev->packets = o->packets;
	ev->bytes = o->bytes;
	ev->reply_packets = r ? r->packets : o->reply_packets;
	ev->reply_bytes = r ? r->bytes : o->reply_bytes;
	bpf_ringbuf_submit(ev, 0);
}

static __always_inline void CT_FN(reverse)(const CT_KEY *k, CT_KEY *out)
{
	out->saddr = k->daddr;
	out->daddr = k->saddr;
	out->sport = k->dport;
	out->dport = k->sport;
	out->proto = k->proto;
	out->pad[0] = out->pad[1] = out->pad[2] = 0;
}

static __always_inline __u64 CT_FN(timeout_ns)(__u8 proto, __u8 state)
{
	if (proto == IPPROTO_TCP) {
		if (state == MOAT_TCP_ESTABLISHED)
			return MOAT_CT_TIMEOUT_TCP_EST * NSEC_PER_SEC;
		if (state == MOAT_TCP_CLOSING)
			return MOAT_CT_TIMEOUT_TCP_CLOSE * NSEC_PER_SEC;
		return MOAT_CT_TIMEOUT_TCP_SYN * NSEC_PER_SEC;
	}
	if (proto == CT_ICMP)
		return MOAT_CT_TIMEOUT_ICMP * NSEC_PER_SEC;
	return MOAT_CT_TIMEOUT_UDP * NSEC_PER_SEC;
}

static __always_inline CT_ENTRY *CT_FN(partner)(const CT_ENTRY *e)
{
	CT_KEY k;

	CT_FN(reverse)(&e->xlated, &k);
	return bpf_map_lookup_elem(&CT_MAP, &k);
}

/* The live entry for `key`, or NULL. */
static __always_inline CT_ENTRY *CT_FN(lookup)(const CT_KEY *key, __u64 now)
{
	CT_ENTRY *e = bpf_map_lookup_elem(&CT_MAP, key);
	CT_ENTRY *p;
	CT_KEY pk;

	if (!e)
		return NULL;
	if (likely(e->expires_ns >= now))
		return e;
	/* One direction idle is fine while the other is busy (one-way UDP). */
	CT_FN(reverse)(&e->xlated, &pk);
	p = bpf_map_lookup_elem(&CT_MAP, &pk);
	if (p && p->expires_ns >= now) {
		e->expires_ns = p->expires_ns;
		return e;
	}
	/* The flow's end, told once, by its original-direction entry; a TCP
	 * flow's was told when its FIN or RST moved it to CLOSING. */
	if (e->tcp_state == MOAT_TCP_CLOSING)
		;
	else if (e->kind == MOAT_CT_TRACK)
		CT_FN(flow_event)(MOAT_EV_FLOW_END, key, e, NULL, now);
	else if (p && (e->kind == MOAT_CT_DNAT || e->kind == MOAT_CT_SNAT))
		CT_FN(flow_event)(MOAT_EV_FLOW_END, key, e, p, now);
	else if (p)
		CT_FN(flow_event)(MOAT_EV_FLOW_END, &pk, p, e, now);
	bpf_map_delete_elem(&CT_MAP, key);
	if (p)
		bpf_map_delete_elem(&CT_MAP, &pk);
	return NULL;
}

static __always_inline struct moat_ct_ring_pos *CT_FN(ring_pos_get)(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&CT_RING_POS, &zero);
}

/* The ring's slots: as many as the table's entries (limits). */
static __always_inline __u32 CT_FN(ring_slots)(void)
{
	return map_max_entries(&CT_RING);
}

static __always_inline CT_SLOT *CT_FN(ring_at)(__u32 idx)
{
	return bpf_map_lookup_elem(&CT_RING, &idx);
}

/*
 * One step of the ring sweep (abi.h): the flow at the head is ended if it
 * expired (CT_FN(lookup), the packets' own path: entries, event) or gone,
 * and what its slot held is given back; a live one goes back to the tail,
 * holding what it held. A slot its flow's entry no longer names (the tuple
 * deleted and made anew, maybe by another owner, or reopened by a SYN) is
 * gone: the flow has its own slot. The slot's `counted` is taken with an
 * exchange, so a close on another CPU either took it first or fails; the
 * entry names the new slot only once it is written. The gap keeps the
 * sweep off slots a writer on another CPU may still be filling.
 */
static __always_inline int CT_FN(sweep_one)(struct moat_ct_ring_pos *pos, __u64 now)
{
	__u32 slots = CT_FN(ring_slots)();
	__u32 idx, counted;
	CT_SLOT *slot, seen;
	CT_ENTRY *e;

	if (ct_ring_len(pos) <= MOAT_CT_SWEEP_GAP || !slots)
		return 1;
	idx = __sync_fetch_and_add(&pos->head, 1) % slots;
	slot = CT_FN(ring_at)(idx);
	if (!slot)
		return 0;
	seen = *slot;
	counted = __sync_lock_test_and_set(&slot->counted, 0);
	e = CT_FN(lookup)(&seen.key, now);
	if (e && CT_ADDR_EQ(e->owner, seen.owner) && e->ring_slot == idx) {
		idx = __sync_fetch_and_add(&pos->tail, 1) % slots;
		slot = CT_FN(ring_at)(idx);
		if (slot) {
			slot->key = seen.key;
			slot->owner = seen.owner;
			slot->counted = counted;
			e->ring_slot = idx;
			return 0;
		}
	}
	CT_FN(release)(pos, &seen.owner, counted);
	return 0;
}

/* bpf_loop() body: ctx is the tick's `now`. */
static long CT_FN(sweep_step)(__u32 i, void *ctx)
{
	struct moat_ct_ring_pos *pos = CT_FN(ring_pos_get)();

	if (!pos)
		return 1;
	return CT_FN(sweep_one)(pos, *(__u64 *)ctx);
}

/*
 * The sweeper's tick, in the timer's softirq, off every packet's path:
 * 1/MOAT_CT_SWEEP_TURN of the ring (at least one slot), then the next
 * tick; on a quiet ring it stops, and the next counted flow starts it.
 * It uses no per-CPU scratch: a softirq may run it on top of a program
 * that userspace runs (BPF_PROG_TEST_RUN), where no packet's would.
 */
static int CT_FN(sweep_tick)(void *map, __u32 *key, struct ct_sweeper *sw)
{
	struct moat_ct_ring_pos *pos = CT_FN(ring_pos_get)();
	__u32 slots = CT_FN(ring_slots)();
	__u64 now = moat_now();
	__u64 n;

	if (!pos || !ct_ring_busy(pos, slots)) {
		sw->armed = 0;
		return 0;
	}
	n = ct_ring_len(pos) / MOAT_CT_SWEEP_TURN + 1;
	/* Closed flows waiting (abi.h): turns MOAT_CT_SWEEP_FAST times as fast,
	 * within a bound per tick, so that they leave soon after their hold. */
	if (pos->closed >= slots / MOAT_CT_CLOSED_SHARE / 8)
		n += n * (MOAT_CT_SWEEP_FAST - 1) < MOAT_CT_SWEEP_FAST_MAX ?
			     n * (MOAT_CT_SWEEP_FAST - 1) : MOAT_CT_SWEEP_FAST_MAX;
	bpf_loop(n, CT_FN(sweep_step), &now, 0);
	bpf_timer_start(&sw->timer, MOAT_CT_SWEEP_TICK_MS * 1000000ull, 0);
	return 0;
}

/*
 * Starts the sweeper unless it runs. `armed` is taken with a compare and
 * swap, so only one flow starts it: a start on a pending timer would push
 * its tick back, and flows arriving faster than a tick would starve it.
 * init fails with -EBUSY after the first time, which is fine. A timer that
 * cannot start (no user holds the map: -EPERM) is left unarmed, and the
 * next counted flow tries again.
 */
static __always_inline void CT_FN(sweeper_arm)(void)
{
	__u32 zero = 0;
	struct ct_sweeper *sw = bpf_map_lookup_elem(&CT_SWEEPER, &zero);

	if (!sw || sw->armed || __sync_val_compare_and_swap(&sw->armed, 0, 1) != 0)
		return;
	bpf_timer_init(&sw->timer, &CT_SWEEPER, MOAT_CLOCK_MONOTONIC);
	bpf_timer_set_callback(&sw->timer, CT_FN(sweep_tick));
	if (bpf_timer_start(&sw->timer, MOAT_CT_SWEEP_TICK_MS * 1000000ull, 0))
		sw->armed = 0;
}

/* A new flow's place on the ring, taken before its original-direction
 * entry is written so that the entry names it (`ring_slot`); the slot is
 * filled by CT_FN(charge)() once the entries are made. */
static __always_inline __u32 CT_FN(ring_take)(void)
{
	struct moat_ct_ring_pos *pos = CT_FN(ring_pos_get)();
	__u32 slots = CT_FN(ring_slots)();

	if (!pos || !slots)
		return 0;
	return __sync_fetch_and_add(&pos->tail, 1) % slots;
}

/* Fills ring slot `idx` with a new flow (its original-direction key) and,
 * while the ring is busy, counts it for its owner (`owned`, what
 * CT_FN(admit)() found: NULL for an owner without a count yet). With
 * `made` 0 the flow's entries could not be made: the slot holds nothing,
 * and the sweep finds it gone. */
static __always_inline void CT_FN(charge)(__u32 idx, const CT_KEY *key, CT_OWNER owner,
					  __u32 *owned, int made)
{
	struct moat_ct_ring_pos *pos = CT_FN(ring_pos_get)();
	CT_SLOT *slot = CT_FN(ring_at)(idx);
	__u32 one = 1;
	int counted;

	if (!pos || !slot)
		return;
	/* Busy without this flow's own slot, taken already (as CT_FN(admit)()). */
	counted = made && ct_ring_len(pos) > CT_FN(ring_slots)() / MOAT_CT_QUOTA_FROM_SHARE;
	slot->key = *key;
	slot->owner = CT_OWNER_VAL(owner);
	slot->counted = counted ? MOAT_CT_COUNTED : 0;
	if (!counted)
		return;
	if (owned)
		__sync_fetch_and_add(owned, 1);
	else
		bpf_map_update_elem(&CT_OWNED, CT_OWNER_KEY(owner), &one, BPF_NOEXIST);
	CT_FN(sweeper_arm)();
}

/*
 * Whether `owner` may open a new flow now: 0 (and *owned set for the
 * charge), or MOAT_DROP_CT_QUOTA when it holds its quota, MOAT_DROP_CT_FULL
 * when the ring (so the table) is full. Called once per new flow, before
 * its entries are made.
 */
static __always_inline int CT_FN(admit)(CT_OWNER owner, __u32 **owned)
{
	struct moat_ct_ring_pos *pos = CT_FN(ring_pos_get)();
	__u32 slots = CT_FN(ring_slots)();
	__u32 *n;

	*owned = NULL;
	if (!pos)
		return MOAT_DROP_CT_FULL;
	if (!ct_ring_busy(pos, slots))
		return 0;
	if (ct_ring_len(pos) + MOAT_CT_SWEEP_GAP >= slots)
		return MOAT_DROP_CT_FULL;
	n = bpf_map_lookup_elem(&CT_OWNED, CT_OWNER_KEY(owner));
	if (n && *n >= slots / MOAT_CT_FLOW_QUOTA_SHARE)
		return MOAT_DROP_CT_QUOTA;
	*owned = n;
	return 0;
}

static __always_inline void CT_FN(set_state)(CT_ENTRY *e, __u8 state, __u64 now)
{
	e->tcp_state = state;
	e->expires_ns = now + CT_FN(timeout_ns)(e->xlated.proto, state);
}

static __always_inline int CT_FN(key_eq)(const CT_KEY *a, const CT_KEY *b)
{
	return CT_ADDR_EQ(a->saddr, b->saddr) && CT_ADDR_EQ(a->daddr, b->daddr) &&
	       a->sport == b->sport && a->dport == b->dport && a->proto == b->proto;
}

/*
 * A flow just closed (`o`: its original-direction entry, key `okey`)
 * gives its owner the room back and joins the ring's closed flows, while
 * they are fewer than their share (abi.h). Its slot's `counted` is taken
 * with a compare and swap, and only from the slot that still holds this
 * flow: a sweep that took it first (moving the slot) or a flow made
 * uncounted leaves it as it is, given back by the sweep.
 */
static __always_inline void CT_FN(uncount)(const CT_KEY *okey, const CT_ENTRY *o)
{
	struct moat_ct_ring_pos *pos = CT_FN(ring_pos_get)();
	__u32 slots = CT_FN(ring_slots)();
	CT_SLOT *slot;

	if (!pos)
		return;
	if (__sync_fetch_and_add(&pos->closed, 1) >= slots / MOAT_CT_CLOSED_SHARE)
		goto full;
	slot = CT_FN(ring_at)(o->ring_slot);
	if (slot && CT_ADDR_EQ(slot->owner, o->owner) && CT_FN(key_eq)(&slot->key, okey) &&
	    __sync_val_compare_and_swap(&slot->counted, MOAT_CT_COUNTED, MOAT_CT_COUNTED_CLOSED) ==
		    MOAT_CT_COUNTED) {
		CT_FN(owned_dec)(&o->owner);
		return;
	}
full:
	__sync_fetch_and_add(&pos->closed, -1);
}

/* Whether `e` is a flow's original-direction entry. */
static __always_inline int CT_FN(is_orig)(const CT_ENTRY *e)
{
	return e->kind == MOAT_CT_DNAT || e->kind == MOAT_CT_SNAT || e->kind == MOAT_CT_TRACK;
}

/* Flow event for entry `e` (key `key`), wherever its partner is. */
static __always_inline void CT_FN(event)(__u32 type, const CT_KEY *key,
				     const CT_ENTRY *e, const CT_ENTRY *p,
				     __u64 now)
{
	CT_KEY pk;

	if (e->kind == MOAT_CT_TRACK) {
		/* Its key is the original tuple, whichever way the packet went. */
		CT_FN(flow_event)(type, &e->xlated, e, NULL, now);
	} else if (CT_FN(is_orig)(e)) {
		CT_FN(flow_event)(type, key, e, p, now);
	} else if (p) {
		CT_FN(reverse)(&e->xlated, &pk);
		CT_FN(flow_event)(type, &pk, p, e, now);
	}
}

/*
 * A SYN on a closed flow: the tuple reused (the port of a connection closed
 * by a RST, say). The flow opens again as a new one: admitted against its
 * owner's quota, on the ring in a slot of its own (the old one, no longer
 * named by the entry, is given back by the sweep). `o` is its
 * original-direction entry, `okey` its key. 0, or the packet's drop reason.
 */
static __always_inline int CT_FN(reopen)(const CT_KEY *okey, CT_ENTRY *o)
{
	__u32 *owned;
	__u32 idx;
	int v;

	v = CT_FN(admit)(CT_OWNER_OF_ENTRY(o), &owned);
	if (v)
		return v;
	idx = CT_FN(ring_take)();
	o->ring_slot = idx;
	CT_FN(charge)(idx, okey, CT_OWNER_OF_ENTRY(o), owned, 1);
	return 0;
}

/*
 * The TCP state a packet with flags `f` moves its flow to (`*fin`: the
 * FIN direction it brings first, MOAT_CT_F_FIN_*): the answer
 * acknowledging the SYN moves SYN_SENT to ESTABLISHED; a FIN is remembered
 * for its direction, and the second direction's FIN, or a RST, closes the
 * flow (abi.h); a fresh SYN on a closed flow (port reuse) opens it again,
 * the opener's only (CT_FN(update) refuses one the reply way).
 */
static __always_inline __u8 CT_FN(tcp_next)(const CT_ENTRY *e, __u8 f, int reply, __u8 *fin)
{
	__u8 state = e->tcp_state;

	*fin = 0;
	if (state == MOAT_TCP_CLOSING) {
		if ((f & TCP_FLAG_SYN) && !(f & (TCP_FLAG_ACK | TCP_FLAG_RST | TCP_FLAG_FIN)))
			return MOAT_TCP_SYN_SENT;
	} else if (f & TCP_FLAG_RST) {
		return MOAT_TCP_CLOSING;
	} else if (f & TCP_FLAG_FIN) {
		*fin = reply ? MOAT_CT_F_FIN_REPLY : MOAT_CT_F_FIN_ORIG;
		if (e->flags & *fin)
			*fin = 0; /* retransmitted */
	} else if (state == MOAT_TCP_SYN_SENT &&
		   (e->tcp_known & (MOAT_CT_K_END_ORIG | MOAT_CT_K_END_REPLY)) ==
			   (MOAT_CT_K_END_ORIG | MOAT_CT_K_END_REPLY)) {
		/* Answered: the side that did not open the flow acknowledged
		 * the SYN (tcp_follow); not the opener's own retransmission. */
		return MOAT_TCP_ESTABLISHED;
	}
	return state;
}

/* Flags `f` of a segment that is not the flow's own: no RST or FIN, and
 * no SYN beside one (a SYN|RST left as a bare SYN would reopen a closed
 * flow); a bare SYN stays, for CT_FN(tcp_next) to judge. */
static __always_inline __u8 CT_FN(uncounted)(__u8 f)
{
	if (f & (TCP_FLAG_RST | TCP_FLAG_FIN))
		f &= ~(TCP_FLAG_RST | TCP_FLAG_FIN | TCP_FLAG_SYN);
	return f;
}

/* The entry that follows direction !d of the flow of entry `e` (abi.h,
 * MOAT_CT_TCP_AHEAD): `e` itself for a tracked flow, the partner for a
 * translated one; NULL when that is gone. */
static __always_inline CT_ENTRY *CT_FN(other_way)(CT_ENTRY *e)
{
	return e->kind == MOAT_CT_TRACK ? e : CT_FN(partner)(e);
}

/*
 * A segment in order from `d` (so no blind sender's: its seq is one number
 * in 2^32) acknowledges `ack`: past what moat saw the other way send, moat
 * missed that data (lost before it, more than MOAT_CT_TCP_AHEAD in a
 * row, so the segments after it fell outside the window); that edge moves
 * up to it and the window is found again.
 */
static __always_inline void CT_FN(catch_up)(CT_ENTRY *e, __u32 ack, int d)
{
	CT_ENTRY *o = CT_FN(other_way)(e);

	if (o && (o->tcp_known & (MOAT_CT_K_END_ORIG << !d)) && (__s32)(ack - o->tcp_end[!d]) > 0)
		o->tcp_end[!d] = ack;
}

/*
 * Whether the acknowledgement of a segment from `d` that is not in order
 * acknowledges only what the other way sent (`o`: CT_FN(other_way)), and
 * lies within MOAT_CT_TCP_AHEAD of what `d` acknowledged before: a blind
 * sender must guess it as well as the seq, among 2^17 numbers at most
 * however much data is in flight (without the upper bound, a download's
 * few MiB in flight widened it to 2^22).
 */
static __always_inline int CT_FN(ack_plausible)(const CT_ENTRY *e, const CT_ENTRY *o, __u32 ack,
						int d)
{
	__u32 hi, lo;

	if (!o || !(o->tcp_known & (MOAT_CT_K_END_ORIG << !d)))
		return 0;
	hi = o->tcp_end[!d];
	lo = hi;
	if (e->tcp_known & (MOAT_CT_K_ACK_ORIG << d)) {
		lo = e->tcp_ack[d];
		if ((__s32)(lo + MOAT_CT_TCP_AHEAD - hi) < 0)
			hi = lo + MOAT_CT_TCP_AHEAD;
	}
	return seq_within(ack, lo - MOAT_CT_TCP_AHEAD, hi);
}

/*
 * Follows TCP packet `l4` from direction `d` (0: original) in its entry
 * `e` (abi.h, MOAT_CT_TCP_AHEAD) and returns its flags as far as they
 * count: a RST or FIN that is not the flow's own is left out, so it
 * neither closes nor half-closes the flow. On the established path (a
 * segment in order): a few compares and stores; only a segment out of
 * order, a RST, or an acknowledgement leaping ahead looks up the partner
 * of a translated flow, which follows the other direction. A call of its
 * own: inlined, its frame would be added to every caller's, past BPF's
 * 512 bytes in from_container's deepest chain.
 */
static __noinline __u8 CT_FN(tcp_follow)(CT_ENTRY *e, const CT_L4 *l4, int d)
{
	__u8 f = l4->tcp_flags, end_bit = MOAT_CT_K_END_ORIG << d;
	__u8 ack_bit = MOAT_CT_K_ACK_ORIG << d;
	__u32 seq = l4->tcp_seq, ack = l4->tcp_ack, end;
	const CT_ENTRY *o = NULL;

	if (!(e->tcp_known & end_bit)) {
		/* Its first packet must acknowledge the SYN that opened the
		 * flow, whose end this entry holds since. */
		if (!(f & TCP_FLAG_ACK) || !(e->tcp_known & (MOAT_CT_K_END_ORIG << !d)) ||
		    !seq_within(ack, e->tcp_ack[d], e->tcp_end[!d]))
			return CT_FN(uncounted)(f);
		e->tcp_known |= end_bit;
		e->tcp_end[d] = seq;
	}
	end = e->tcp_end[d];
	if (f & TCP_FLAG_RST) {
		/* Exactly where d's stream ends, or where its peer
		 * acknowledged it: a blind sender's odds are 2 in 2^32. */
		if (seq == end)
			return f;
		o = CT_FN(other_way)(e);
		if (o && (o->tcp_known & (MOAT_CT_K_ACK_ORIG << !d)) && seq == o->tcp_ack[!d])
			return f;
		return CT_FN(uncounted)(f);
	}
	if (seq != end) {
		if (!(f & TCP_FLAG_ACK) ||
		    !seq_within(seq, end - MOAT_CT_TCP_AHEAD, end + MOAT_CT_TCP_AHEAD))
			return CT_FN(uncounted)(f);
		o = CT_FN(other_way)(e);
		if (!CT_FN(ack_plausible)(e, o, ack, d))
			return CT_FN(uncounted)(f);
		/* A FIN the peer acknowledged data past is no end of d's. */
		if ((f & TCP_FLAG_FIN) && o && (o->tcp_known & (MOAT_CT_K_ACK_ORIG << !d)) &&
		    (__s32)(seq + l4->tcp_len - o->tcp_ack[!d]) < 0)
			f &= ~TCP_FLAG_FIN;
	}
	if ((__s32)(seq + l4->tcp_len - end) > 0)
		e->tcp_end[d] = seq + l4->tcp_len;
	if (!(f & TCP_FLAG_ACK))
		return f;
	if ((e->tcp_known & ack_bit) && (__s32)(ack - e->tcp_ack[d]) <= 0)
		return f;
	/* In order (out of order, CT_FN(ack_plausible) bounded it): looked
	 * for only when the acknowledgement leaps, as after a loss; a
	 * tracked flow holds both ways at hand. */
	if (!o && (e->kind == MOAT_CT_TRACK || !(e->tcp_known & ack_bit) ||
		   ack - e->tcp_ack[d] > MOAT_CT_TCP_AHEAD))
		CT_FN(catch_up)(e, ack, d);
	e->tcp_ack[d] = ack;
	e->tcp_known |= ack_bit;
	return f;
}

/* A TCP flow (re)opened by SYN `l4` from direction `d`: only that
 * direction's end is known; until the other direction's first packet, its
 * unknown acknowledgement holds the least it must acknowledge (the SYN, if
 * not the data the SYN carried). */
static __always_inline void CT_FN(tcp_open)(CT_ENTRY *e, const CT_L4 *l4, int d)
{
	e->tcp_end[d] = l4->tcp_seq + l4->tcp_len;
	e->tcp_end[!d] = 0;
	e->tcp_ack[d] = 0;
	e->tcp_ack[!d] = l4->tcp_seq + 1;
	e->tcp_known = MOAT_CT_K_END_ORIG << d;
}

/* A flow's entry `e` made anew from entry `from` (a tracked flow taken
 * over by a masquerade pair): its TCP state, FINs and windows go on. */
static __always_inline void CT_FN(tcp_take)(CT_ENTRY *e, const CT_ENTRY *from, __u64 now)
{
	e->tcp_end[0] = from->tcp_end[0];
	e->tcp_end[1] = from->tcp_end[1];
	e->tcp_ack[0] = from->tcp_ack[0];
	e->tcp_ack[1] = from->tcp_ack[1];
	e->tcp_known = from->tcp_known;
	e->flags |= from->flags & (MOAT_CT_F_FIN_ORIG | MOAT_CT_F_FIN_REPLY);
	CT_FN(set_state)(e, from->tcp_state, now);
}

/*
 * A packet that changes its TCP flow's state (CT_FN(tcp_next)), written to
 * both entries: a first FIN each way remembered, a close (its end told,
 * its owner's room given back, abi.h), a reopening (admitted and counted
 * as a new flow), or ESTABLISHED. A call of its own, off the established
 * path: its frame is not added to every caller's. 0, or the packet's drop
 * reason (a reopened flow over its owner's quota).
 */
static __noinline int CT_FN(update_state)(CT_ENTRY *e, const CT_L4 *l4, __u8 flags, __u64 now,
					int reply)
{
	__u8 fin, next = CT_FN(tcp_next)(e, flags, reply, &fin);
	CT_ENTRY *p = NULL, *o;
	CT_KEY okey;
	int v;

	if (e->kind != MOAT_CT_TRACK)
		p = CT_FN(partner)(e);
	/* The flow's original-direction entry and key: the ring's business. */
	if (e->kind == MOAT_CT_TRACK) {
		o = e;
		okey = e->xlated;
	} else if (CT_FN(is_orig)(e)) {
		o = e;
		okey = l4->key;
	} else {
		o = p;
		CT_FN(reverse)(&e->xlated, &okey);
	}
	if (fin) {
		e->flags |= fin;
		if (p)
			p->flags |= fin;
		if ((e->flags & (MOAT_CT_F_FIN_ORIG | MOAT_CT_F_FIN_REPLY)) !=
		    (MOAT_CT_F_FIN_ORIG | MOAT_CT_F_FIN_REPLY)) {
			e->expires_ns = now + CT_FN(timeout_ns)(IPPROTO_TCP, e->tcp_state);
			return 0;
		}
		next = MOAT_TCP_CLOSING;
	}
	if (next == MOAT_TCP_SYN_SENT) {
		/* Reopened: a new flow, its FINs not seen yet. */
		if (!o)
			return 0;
		v = CT_FN(reopen)(&okey, o);
		if (v)
			return v;
		e->flags &= ~(MOAT_CT_F_FIN_ORIG | MOAT_CT_F_FIN_REPLY);
		CT_FN(tcp_open)(e, l4, reply);
		if (p) {
			p->flags &= ~(MOAT_CT_F_FIN_ORIG | MOAT_CT_F_FIN_REPLY);
			CT_FN(tcp_open)(p, l4, reply);
		}
	}
	CT_FN(set_state)(e, next, now);
	if (p)
		CT_FN(set_state)(p, next, now);
	if (next == MOAT_TCP_CLOSING) {
		if (o)
			CT_FN(uncount)(&okey, o);
		CT_FN(event)(MOAT_EV_FLOW_END, &l4->key, e, p, now);
	}
	return 0;
}

/*
 * Accounts a packet to its entry and follows TCP far enough to pick a
 * timeout (CT_FN(tcp_next)). The plain refresh is written to this entry
 * only; a state change goes through CT_FN(update_state). A closed flow's
 * hold runs from its close: its packets do not extend it. 0, or the
 * packet's drop reason.
 */
static __always_inline int CT_FN(update)(CT_ENTRY *e, const CT_L4 *l4, __u32 len, __u64 now,
					 int reply)
{
	__u8 state = e->tcp_state;
	CT_ENTRY *p = NULL;
	__u8 fin, f;

	reply |= e->kind == MOAT_CT_DNAT_REPLY || e->kind == MOAT_CT_SNAT_REPLY;
	/* A new connection the other way on a closed flow's tuple: only the
	 * opener's SYN reopens it (policy judged that way alone); this one is
	 * judged as new once the hold has ended, and leaves the entry as it
	 * is. */
	if (state == MOAT_TCP_CLOSING && reply &&
	    (l4->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK | TCP_FLAG_RST | TCP_FLAG_FIN)) == TCP_FLAG_SYN)
		return MOAT_DROP_NO_FLOW;
	if (e->kind == MOAT_CT_TRACK && reply) {
		e->reply_packets++;
		e->reply_bytes += len;
	} else {
		e->packets++;
		e->bytes += len;
	}
	if (l4->key.proto == IPPROTO_TCP) {
		f = CT_FN(tcp_follow)(e, l4, reply);
		if (CT_FN(tcp_next)(e, f, reply, &fin) != state || fin)
			return CT_FN(update_state)(e, l4, f, now, reply);
	}
	if (state != MOAT_TCP_CLOSING)
		e->expires_ns = now + CT_FN(timeout_ns)(l4->key.proto, state);
	/* A live flow reports every few seconds, from one entry only. */
	if (CT_FN(is_orig)(e) && now - e->reported_ns >= MOAT_EV_REPORT_INTERVAL_S * NSEC_PER_SEC) {
		e->reported_ns = now;
		if (e->kind != MOAT_CT_TRACK)
			p = CT_FN(partner)(e);
		CT_FN(event)(MOAT_EV_FLOW_UPDATE, &l4->key, e, p, now);
	}
	return 0;
}

/*
 * Only a SYN opens a TCP flow, and only an echo request an ICMP one. A
 * segment from the middle of a connection moat does not track (one a
 * policy change just cut, one older than the first policy), or an echo
 * reply nobody asked for, is judged on its own and never becomes a flow:
 * were it tracked, its peer's packets would pass as its replies, whatever
 * the policy says of the peer's direction.
 */
static __always_inline int CT_FN(opens_flow)(const CT_L4 *l4)
{
	__u8 f = l4->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK | TCP_FLAG_RST | TCP_FLAG_FIN);

	if (l4->key.proto == IPPROTO_TCP)
		return f == TCP_FLAG_SYN;
	if (l4->key.proto == CT_ICMP)
		return l4->icmp_type == CT_ICMP_ECHO;
	return 1;
}

static __always_inline CT_ENTRY *CT_FN(scratch_entry)(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&CT_SCRATCH, &zero);
}

/*
 * Creates both entries of a flow whose original tuple `orig` becomes
 * `xlated`, and charges the flow to `at->owner` (unless taken over). With
 * `claim`, the reply entry is written first and only if its key is free
 * (BPF_NOEXIST), so two flows can never take one masquerade port; returns
 * -EEXIST when it is taken, -E2BIG when the table is full. Without, a
 * stale pair is overwritten. The caller asked CT_FN(admit)() first.
 */
static __always_inline int CT_FN(create)(const CT_L4 *l4, const CT_KEY *xlated,
					 const CT_SITES *at, __u8 kind, __u8 flags,
					 __u32 container_id, int claim, __u64 now)
{
	const CT_KEY *orig = &l4->key;
	__u8 state = orig->proto == IPPROTO_TCP ? MOAT_TCP_SYN_SENT : MOAT_TCP_NONE;
	CT_ENTRY *e = CT_FN(scratch_entry)();
	CT_KEY rkey;
	struct moat_stats *s;

	int err;

	if (!e)
		return -1;
	/* The reply entry first, built in per-CPU scratch (two entries do
	 * not fit on the BPF stack), then the original one over it. */
	__builtin_memset(e, 0, sizeof(*e));
	CT_FN(reverse)(orig, &e->xlated);
	e->expires_ns = now + CT_FN(timeout_ns)(orig->proto, state);
	e->created_ns = now;
	e->reported_ns = now;
	e->ifindex = at->reply_ifindex;
	e->dir = at->reply_dir;
	e->kind = kind + 1; /* MOAT_CT_DNAT -> _REPLY, MOAT_CT_SNAT -> _REPLY */
	e->tcp_state = state;
	e->flags = flags;
	e->container_id = container_id;
	e->policy_rev = at->rev;
	e->rule_id = at->rule_id;
	e->owner = CT_OWNER_VAL(at->owner);
	/* Both entries: the reply's first packet is checked against it. A
	 * flow taken over, maybe mid-stream, goes on where it stands. */
	if (state && at->taken)
		CT_FN(tcp_take)(e, at->taken, now);
	else if (state)
		CT_FN(tcp_open)(e, l4, 0);
	CT_FN(reverse)(xlated, &rkey);
	err = bpf_map_update_elem(&CT_MAP, &rkey, e, claim ? BPF_NOEXIST : BPF_ANY);
	if (err)
		return err;
	e->xlated = *xlated;
	e->ifindex = at->orig_ifindex;
	e->dir = at->orig_dir;
	e->kind = kind;
	e->packets = 1;
	e->bytes = at->len;
	/* A flow taken over keeps the slot it has. */
	e->ring_slot = at->taken ? at->taken->ring_slot : CT_FN(ring_take)();
	err = bpf_map_update_elem(&CT_MAP, orig, e, BPF_ANY);
	if (!at->taken)
		CT_FN(charge)(e->ring_slot, orig, at->owner, at->owned, !err);
	if (err) {
		bpf_map_delete_elem(&CT_MAP, &rkey);
		return err;
	}
	if (!at->taken && obs_on()) {
		s = stats_slot(at->orig_slot, at->orig_dir);
		if (s)
			s->new_flows++;
		CT_FN(flow_event)(MOAT_EV_FLOW_NEW, orig, e, NULL, now);
	}
	return 0;
}

/*
 * An untranslated flow admitted by policy: one entry, keyed by the original
 * tuple, found by the reply through the reversed tuple. Its "site" is the
 * hook that admitted it, where its packets are accounted.
 */
static __always_inline int CT_FN(track)(const CT_L4 *l4, __u32 ifindex, __u32 slot,
				    __u8 dir, __u32 rev, __u32 rule_id, __u32 len,
				    CT_OWNER owner, __u32 *owned, __u64 now)
{
	const CT_KEY *key = &l4->key;
	__u8 state = key->proto == IPPROTO_TCP ? MOAT_TCP_SYN_SENT : MOAT_TCP_NONE;
	CT_ENTRY *e = CT_FN(scratch_entry)();
	struct moat_stats *s;
	int err;

	if (!e)
		return -1;
	__builtin_memset(e, 0, sizeof(*e));
	e->xlated = *key;
	e->expires_ns = now + CT_FN(timeout_ns)(key->proto, state);
	e->created_ns = now;
	e->reported_ns = now;
	e->ifindex = ifindex;
	e->dir = dir;
	e->kind = MOAT_CT_TRACK;
	e->tcp_state = state;
	e->policy_rev = rev;
	e->rule_id = rule_id;
	e->owner = CT_OWNER_VAL(owner);
	e->packets = 1;
	e->bytes = len;
	if (state)
		CT_FN(tcp_open)(e, l4, 0);
	e->ring_slot = CT_FN(ring_take)();
	err = bpf_map_update_elem(&CT_MAP, key, e, BPF_ANY);
	CT_FN(charge)(e->ring_slot, key, owner, owned, !err);
	if (err)
		return err;
	if (obs_on()) {
		s = stats_slot(slot, dir);
		if (s)
			s->new_flows++;
		CT_FN(flow_event)(MOAT_EV_FLOW_NEW, key, e, NULL, now);
	}
	return 0;
}

/*
 * A first fragment leaves its ports behind for the rest of its datagram; a
 * later fragment picks them up and so belongs to its flow like any packet
 * (its L4 header, and so its ports, are never rewritten: it has none).
 * A later fragment that overtook its first one stays without ports.
 */
static __always_inline void CT_FN(frag_ports)(CT_L4 *l4)
{
	CT_FRAG_KEY k = {
		.saddr = l4->key.saddr,
		.daddr = l4->key.daddr,
		.id = l4->ip_id,
		.proto = l4->key.proto,
	};
	struct moat_frag_ports *v;

	if (l4->fragment) {
		v = bpf_map_lookup_elem(&CT_FRAGS, &k);
		if (v) {
			l4->key.sport = v->sport;
			l4->key.dport = v->dport;
			l4->has_ports = 1;
		}
	} else if (l4->more_frags && l4->has_ports) {
		struct moat_frag_ports p = { .sport = l4->key.sport, .dport = l4->key.dport };

		bpf_map_update_elem(&CT_FRAGS, &k, &p, BPF_ANY);
	}
}

/* Whether entry `e` rewrites at this hook. Any uplink will do for an uplink
 * entry: the route back to the world may leave through another one. */
static __always_inline int CT_FN(rewrites_here)(const CT_ENTRY *e, __u32 ifindex, __u32 dir)
{
	if (e->dir != dir)
		return 0;
	return is_uplink_dir(dir) || e->ifindex == ifindex;
}

/*
 * Whether entry `e`, found by the reverse of a packet at this hook, belongs
 * to a flow whose packets this very hook rewrites on their way through: a
 * container dialling a published port has its packets translated to the
 * backend as they leave its veth (a DNAT_REPLY entry rewriting there on
 * the way in), and the backend's replies translated back as they enter it
 * (the DNAT entry rewriting there on the way out). A packet here already
 * in the other form was not rewritten here, so it is none of the flow's:
 * judged as new, whoever sent it (the container straight to the backend,
 * across networks; the host's own address with the dialled tuple). A
 * hairpin's packets are rewritten on the way out and come back translated,
 * as they should.
 */
static __always_inline int CT_FN(bypasses_rewrite)(const CT_ENTRY *e, __u32 ifindex, __u32 dir)
{
	if ((e->flags & MOAT_CT_F_HAIRPIN) || e->ifindex != ifindex || e->dir == dir)
		return 0;
	return (e->kind == MOAT_CT_DNAT && dir == MOAT_DIR_TO_CONTAINER) ||
	       (e->kind == MOAT_CT_DNAT_REPLY && dir == MOAT_DIR_FROM_CONTAINER);
}

