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
 * The caller (from_container) only asks after its own verdict was a pass.
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

/*
 * Whether B's to_container would pass a packet with tuple `l4` unchanged,
 * and B is at `dst_if`. Returns the flow's entry when it would and the
 * packet is a reply B's hook accounts (*reply set), the entry with
 * *reply 0 when it would and there is nothing to account there, NULL
 * when the plain path must judge. No side effect but an expired entry's
 * end, which B's own lookup would have made.
 */
static __always_inline struct moat_ct_entry *fast_flow(const struct l4_info *l4, __u32 dst_if,
							__u64 now, int *reply)
{
	__u32 rev = policy_current_rev();
	struct moat_ct_entry *e;
	struct moat_ct_key rkey;

	*reply = 0;
	e = ct_lookup(&l4->key, now);
	if (e) {
		/* Original direction: to_container passes it untouched unless the
		 * entry rewrites there; a flow nobody answered yet is new. */
		if (e->kind != MOAT_CT_TRACK || e->policy_rev != rev ||
		    ct_rewrites_here(e, dst_if, MOAT_DIR_TO_CONTAINER) || !e->reply_packets)
			return NULL;
		return e;
	}
	ct_reverse(&l4->key, &rkey);
	e = ct_lookup(&rkey, now);
	if (!e || e->kind != MOAT_CT_TRACK || e->policy_rev != rev ||
	    ct_replies_rewritten_here(e, dst_if, MOAT_DIR_TO_CONTAINER))
		return NULL;
	/* to_container accounts the reply where the flow was admitted. */
	*reply = e->ifindex == dst_if && e->dir != MOAT_DIR_TO_CONTAINER;
	return e;
}

/* B's counters as to_container's finish() keeps them, and the fast path's own. */
static __always_inline void fast_count(__u32 dst_slot, __u32 len)
{
	struct moat_stats *s;
	__u32 k;
	__u64 *n;

	if (!obs_on())
		return;
	s = stats_slot(dst_slot, MOAT_DIR_TO_CONTAINER);
	if (s) {
		s->packets++;
		s->bytes += len;
	}
	k = MOAT_FAST_PEER_PACKETS;
	n = bpf_map_lookup_elem(&fast_stats, &k);
	if (n)
		(*n)++;
	k = MOAT_FAST_PEER_BYTES;
	n = bpf_map_lookup_elem(&fast_stats, &k);
	if (n)
		*n += len;
}

/*
 * A packet from_container passed: MOAT_REDIRECT_PEER when it was handed to
 * the destination container's namespace, MOAT_PASS (the plain path) when
 * it does not qualify. Never a drop. A BPF-to-BPF call: its frame is not
 * added to the judging path's.
 */
static __noinline int fast_peer_verdict(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex, dst_if;
	const struct moat_endpoint *src, *dst;
	struct moat_peer_key pk;
	struct moat_ct_entry *e;
	struct l4_info l4;
	struct ethhdr *eth;
	struct iphdr *ip;
	struct cursor c;
	__u32 *found;
	__u64 now;
	int reply;

	if (!fast_peer_enabled() || skb->vlan_present)
		return MOAT_PASS;
	/* The frame as it leaves the sender's hook, rewrites included. */
	cursor_init(&c, skb);
	eth = parse_eth(&c);
	if (!eth || eth->h_proto != bpf_htons(ETH_P_IP) || (eth->h_dest[0] & 1))
		return MOAT_PASS;
	ip = parse_ipv4(&c);
	if (!ip || parse_l4(&c, skb, ip, &l4))
		return MOAT_PASS;
	if (l4.fragment || l4.more_frags || l4.icmp_error || !l4.has_ports)
		return MOAT_PASS;
	if (l4.key.proto == IPPROTO_TCP && (l4.tcp_flags & TCP_FLAG_SYN) &&
	    !(l4.tcp_flags & TCP_FLAG_ACK))
		return MOAT_PASS;
	src = bpf_map_lookup_elem(&endpoints, &ifindex);
	if (!src)
		return MOAT_PASS;
	pk.net_id = src->net_id;
	pk.addr = l4.key.daddr;
	found = bpf_map_lookup_elem(&local_peers, &pk);
	if (!found || *found == ifindex)
		return MOAT_PASS;
	dst_if = *found;
	/* `local_peers` only points: the endpoint itself must agree. */
	dst = bpf_map_lookup_elem(&endpoints, &dst_if);
	if (!dst || dst->net_id != src->net_id || dst->ipv4 != l4.key.daddr ||
	    !fast_mac_eq(eth->h_dest, dst->mac))
		return MOAT_PASS;
	now = bpf_ktime_get_ns();
	e = fast_flow(&l4, dst_if, now, &reply);
	if (!e)
		return MOAT_PASS;
	if (bpf_redirect_peer(dst_if, 0) != TC_ACT_REDIRECT)
		return MOAT_PASS;
	/* No SYN comes this way: nothing the update could refuse. */
	if (reply)
		ct_update(e, &l4, skb->len, now, 1);
	fast_count(dst->stats_slot, skb->len);
	return MOAT_REDIRECT_PEER;
}

#endif
