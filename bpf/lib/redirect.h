/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * redirect.h - the fast path between two containers of one network.
 *
 * The plain path of a frame from container A to container B of the same
 * network: A's veth (from_container, TC ingress), the bridge, B's veth
 * (to_container, TC egress), veth_xmit() and a softirq's backlog in B's
 * namespace. bpf_redirect_peer() from A's TC ingress hands the frame to
 * B's namespace directly: no bridge, no second program, no backlog.
 *
 * B's to_container then never sees the frame, so from_container takes the
 * fast path only when it has established that to_container would pass the
 * frame unchanged, and does what to_container would have done on the way:
 * B's counters (its slot, to-container direction) and the flow's reply
 * accounting. Anything in doubt takes the plain path, where B's own hook
 * judges it, so a refusal here never drops anything.
 *
 * What qualifies (IPv4 only, for now):
 *   - B is a local endpoint of A's network (`local_peers`, {net, address}),
 *     the frame is addressed to B's MAC (unicast) and B's address, no VLAN;
 *   - TCP, UDP, SCTP with ports or an ICMP echo / reply: no fragment (its
 *     ports come from another packet), no ICMP error (RELATED, rewritten
 *     quotes), nothing else;
 *   - the packet is of a flow tracked by policy (MOAT_CT_TRACK, one entry,
 *     never rewritten), judged under the current revision (the sender's
 *     hook has just re-judged it when the revision changed: a flow a new
 *     policy revokes was dropped there), and not rewritten at B's hook;
 *   - the flow is not new: an original-direction packet only once a reply
 *     was seen, and never a TCP SYN (a flow opening again on its tuple).
 * from_container's verdict hands over what it found (fast_peer_orig(),
 * fast_peer_reply()) where it passes a packet of a known flow as it is;
 * every other packet takes the plain path without a look.
 */
#ifndef MOAT_LIB_REDIRECT_H
#define MOAT_LIB_REDIRECT_H

#include "lib/ct.h"
#include "lib/observe.h"
#include "lib/parse.h"
#include "lib/policy.h"

static __always_inline int fast_mac_eq(const __u8 *a, const __u8 *b)
{
	return !((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4]) |
		 (a[5] ^ b[5]));
}

static __always_inline int fast_peer_enabled(void)
{
	__u32 zero = 0;
	__u32 *f = bpf_map_lookup_elem(&fast_cfg, &zero);

	return f && !(*f & MOAT_FAST_F_PEER_OFF);
}

/* The destination's counters as its to_container's finish() keeps them,
 * and the fast path's own (`fast_stats` slots `packets` and `bytes`). */
static __always_inline void fast_count(__u32 dst_slot, __u32 len, __u32 packets, __u32 bytes)
{
	struct moat_stats *s;
	__u64 *n;

	if (!obs_on())
		return;
	s = stats_slot(dst_slot, MOAT_DIR_TO_CONTAINER);
	if (s) {
		s->packets++;
		s->bytes += len;
	}
	n = bpf_map_lookup_elem(&fast_stats, &packets);
	if (n)
		(*n)++;
	n = bpf_map_lookup_elem(&fast_stats, &bytes);
	if (n)
		*n += len;
}

/*
 * A packet from_container passed as it is, of tracked flow `e`: the
 * destination's to_container would pass it unchanged too, so it goes
 * straight there (MOAT_REDIRECT_PEER), or it takes the plain path
 * (MOAT_PASS). Never a drop.
 *
 * Everything comes from the sender's verdict, which has just established
 * it for this very packet: its tuple `l4` (parsed, no rewrite since), the
 * sender's endpoint `src`, the flow's entry `e` (re-judged under the
 * current revision), the clock `now`; `reply` says whether `e` was found
 * by the packet's reversed tuple. Nothing is parsed, looked up or read
 * twice: only the destination (`local_peers`, `endpoints`) is new.
 */
static __always_inline int fast_peer(struct __sk_buff *skb, const struct moat_endpoint *src,
				     const struct l4_info *l4, struct moat_ct_entry *e, __u64 now,
				     const int reply)
{
	void *data = (void *)(long)skb->data, *data_end = (void *)(long)skb->data_end;
	__u32 ifindex = skb->ifindex, dst_if;
	const struct moat_endpoint *dst;
	struct moat_peer_key pk;
	struct ethhdr *eth = data;
	__u32 *found;
	int account;

	/* No fragment (its ports come from another packet), no ICMP error
	 * (RELATED, rewritten quotes), no new TCP flow on a known tuple. */
	if (e->kind != MOAT_CT_TRACK || l4->fragment || l4->more_frags || l4->icmp_error ||
	    !l4->has_ports)
		return MOAT_PASS;
	if (l4->key.proto == IPPROTO_TCP && (l4->tcp_flags & TCP_FLAG_SYN) &&
	    !(l4->tcp_flags & TCP_FLAG_ACK))
		return MOAT_PASS;
	/* A flow nobody answered yet is new. */
	if (!reply && !e->reply_packets)
		return MOAT_PASS;
	/* Judged under the revision in force: one installed since takes the
	 * plain path, where the destination's hook judges it again. */
	if (e->policy_rev != policy_current_rev() || !fast_peer_enabled())
		return MOAT_PASS;
	/* The sender's hook parsed this frame and rewrote nothing. */
	if ((void *)(eth + 1) > data_end || (eth->h_dest[0] & 1))
		return MOAT_PASS;
	pk.net_id = src->net_id;
	pk.addr = l4->key.daddr;
	found = bpf_map_lookup_elem(&local_peers, &pk);
	if (!found || *found == ifindex)
		return MOAT_PASS;
	dst_if = *found;
	/* `local_peers` only points: the endpoint itself must agree. */
	dst = bpf_map_lookup_elem(&endpoints, &dst_if);
	if (!dst || dst->net_id != src->net_id || dst->ipv4 != l4->key.daddr ||
	    !fast_mac_eq(eth->h_dest, dst->mac))
		return MOAT_PASS;
	/* Where the destination's hook admitted the flow: it rewrites (a
	 * tracked flow: updates) the original direction there, and accounts
	 * the replies. */
	account = e->ifindex == dst_if;
	if (reply)
		account = account && e->dir != MOAT_DIR_TO_CONTAINER;
	else if (account && e->dir == MOAT_DIR_TO_CONTAINER)
		return MOAT_PASS;
	if (bpf_redirect_peer(dst_if, 0) != TC_ACT_REDIRECT)
		return MOAT_PASS;
	/* No SYN comes this way: nothing the update could refuse. */
	if (reply && account)
		ct_update(e, l4, skb->len, now, 1);
	fast_count(dst->stats_slot, skb->len, MOAT_FAST_PEER_PACKETS, MOAT_FAST_PEER_BYTES);
	return MOAT_REDIRECT_PEER;
}

/*
 * The two ways from_container's verdict hands a passed packet of a known
 * flow over (fast_peer()): found by its own tuple, or by its reversed one.
 * BPF-to-BPF calls: their frames are not on the stack with a new flow's
 * deeper chain (dial_published()), and a call takes five arguments at most.
 */
static __noinline int fast_peer_orig(struct __sk_buff *skb, const struct moat_endpoint *src,
				     const struct l4_info *l4, struct moat_ct_entry *e)
{
	return fast_peer(skb, src, l4, e, 0, 0);
}

static __noinline int fast_peer_reply(struct __sk_buff *skb, const struct moat_endpoint *src,
				      const struct l4_info *l4, struct moat_ct_entry *e, __u64 now)
{
	return fast_peer(skb, src, l4, e, now, 1);
}

#endif
