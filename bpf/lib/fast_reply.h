/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * fast_reply.h - the routed fast path's way back (lib/fast_route.h is the
 * way out): a reply from the world to a container's masqueraded (or
 * routed) flow, rewritten by from_world to the container's own tuple, goes
 * straight into the container's namespace with bpf_redirect_peer(),
 * skipping the host's IP stack (ip_rcv(), the routing decision,
 * netfilter's PREROUTING, FORWARD and POSTROUTING, ip_forward()), the
 * bridge and the container's to_container.
 *
 * It does what those would: ip_forward()'s part as the way out does it
 * (the kernel's own route, bpf_fib_lookup() as forwarded from the uplink:
 * the uplink must forward, the route must reach the container's address
 * directly, not through a gateway, nor back out of the uplink, and its MTU
 * must take the packet or each segment of a GSO packet; the TTL
 * decremented, the priority set from the TOS), the neighbour's part (the
 * destination MAC is the one the host's neighbour entry for the container
 * holds, and it must be the container's; the source MAC the route's
 * device's, the bridge's), and to_container's: the container's counters,
 * and the verdict to_container gives such a packet. That is a pass when
 * the entry under the packet's own tuple is the reply entry from_world
 * has just judged (a routed flow's), or when there is none there and the
 * flow's original entry (under the reversed tuple, as to_container finds
 * it: a masqueraded flow's) was judged under the policy revision in
 * force. The destination endpoint is found by the packet's address
 * (`addrs`, `local_peers`) and must agree (`endpoints`). Which device the
 * route leaves by is not compared with the container's bridge (no map
 * holds that): a host that routes the container's address to another
 * device whose neighbour entry holds the container's MAC gets its reply
 * delivered to the container, its flow's own endpoint, where the plain
 * path would send it to that device.
 *
 * Anything else takes the plain path, where the host and to_container
 * judge the packet, so a refusal here never drops: the refusals of the way
 * out (a frame not addressed to the uplink, a VLAN tag or a mark, TTL 1,
 * IP options, a bad checksum, trailing bytes, a martian source, no route
 * or no neighbour, over the MTU), a fragment, a protocol other than TCP,
 * UDP and ICMP (ICMP errors never come here: nat_icmp_error() takes
 * them), another entry under the packet's own tuple, a flow judged under
 * another revision (to_container judges it again), a container moat does
 * not know at that address.
 *
 * What it does not do, as the way out: the host's netfilter hooks and
 * xfrm policies never see the packet, nor reverse-path filtering. Same
 * switch as the way out (MOAT_FAST_F_ROUTED_ON, off by default).
 * IPv4 only: IPv6 replies take the plain path (fast_reply6()).
 */
#ifndef MOAT_LIB_FAST_REPLY_H
#define MOAT_LIB_FAST_REPLY_H

#include "lib/ct.h"
#include "lib/fast_route.h"
#include "lib/redirect.h"

/* What the way back writes of a packet: its Ethernet and IPv4 headers. */
struct fast_reply_head {
	struct ethhdr eth;
	struct iphdr ip;
} __attribute__((packed));

/*
 * After from_world rewrote packet `l4` by its flow's reply entry `e`
 * (MOAT_CT_SNAT_REPLY, e->xlated: the packet's tuple now): handed to the
 * container (MOAT_REDIRECT_PEER) or left to the plain path (MOAT_PASS).
 * Never a drop. A BPF-to-BPF call: its lookup's 64 bytes get a frame of
 * their own, off the from_world chain's.
 */
static __noinline int fast_reply(struct __sk_buff *skb, const struct l4_info *l4,
				 struct moat_ct_entry *e, __u32 rev, __u64 now)
{
	struct iphdr *ip = fast_forwardable(skb);
	struct bpf_fib_lookup fib = {};
	const struct moat_endpoint *dst;
	struct moat_addr_info *info;
	struct moat_ct_entry *o;
	struct moat_ct_key orig;
	struct moat_peer_key pk;
	struct fast_reply_head head;
	__u32 *found, dst_if;

	if (!ip || ip->daddr != e->xlated.daddr || l4->fragment || l4->more_frags ||
	    (e->xlated.proto != IPPROTO_TCP && e->xlated.proto != IPPROTO_UDP &&
	     e->xlated.proto != IPPROTO_ICMP))
		return MOAT_PASS;
	/* What to_container would find first: the entry under the packet's
	 * own tuple. A routed flow's reply entry is that entry (its key is its
	 * tuple), which from_world has just judged under `rev`: to_container
	 * passes on it. Any other entry there is to_container's to judge. A
	 * masqueraded reply has none: to_container takes the flow's original
	 * entry, under the reversed tuple, judged under `rev`. */
	o = ct_lookup(&e->xlated, now);
	if (o != e) {
		if (o)
			return MOAT_PASS;
		ct_reverse(&e->xlated, &orig);
		o = ct_lookup(&orig, now);
		if (!o || o->kind != MOAT_CT_SNAT || o->policy_rev != rev)
			return MOAT_PASS;
	}
	info = addr_lookup(ip->daddr);
	if (!info || info->kind != MOAT_ADDR_SUBNET)
		return MOAT_PASS;
	pk.net_id = info->net_id;
	pk.addr = ip->daddr;
	found = bpf_map_lookup_elem(&local_peers, &pk);
	if (!found)
		return MOAT_PASS;
	dst_if = *found;
	dst = bpf_map_lookup_elem(&endpoints, &dst_if);
	if (!dst || dst->net_id != info->net_id || dst->ipv4 != ip->daddr)
		return MOAT_PASS;
	if (!fast_fib_prepare(skb, ip, &fib))
		return MOAT_PASS;
	if (ip->protocol != IPPROTO_ICMP) {
		fib.sport = e->xlated.sport;
		fib.dport = e->xlated.dport;
	}
	/* Straight to the container's address, not through a gateway nor
	 * back out of the uplink; the neighbour entry the host would send
	 * to must hold the container's MAC. */
	if (bpf_fib_lookup(skb, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS ||
	    fib.family != AF_INET || fib.ipv4_dst != ip->daddr || fib.ifindex == skb->ifindex ||
	    !fast_mac_eq(fib.dmac, dst->mac))
		return MOAT_PASS;
	/* Only flags make it fail, before anything is written. */
	if (bpf_redirect_peer(dst_if, 0) != TC_ACT_REDIRECT)
		return MOAT_PASS;
	/* The MACs, the TTL and the header checksum in one store: a direct
	 * write would make the verifier unclone every packet of both uplink
	 * programs (a helper call per cloned packet, and a drop where that
	 * fails), whatever the switch says. The checksum's change cancels the
	 * TTL's in the ones' complement sum, so a CHECKSUM_COMPLETE skb's sum
	 * still holds; the MACs are not in it. */
	head.ip = *ip;
	head.ip.check = fast_ttl_check(head.ip.check);
	head.ip.ttl--;
	__builtin_memcpy(head.eth.h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(head.eth.h_source, fib.smac, ETH_ALEN);
	head.eth.h_proto = bpf_htons(ETH_P_IP);
	if (bpf_skb_store_bytes(skb, 0, &head, sizeof(head), 0))
		return MOAT_PASS; /* nothing written: the stack routes it */
	skb->priority = fast_tos_priority(head.ip.tos);
	fast_count(dst->stats_slot, skb->len, MOAT_FAST_ROUTED_IN_PACKETS,
		   MOAT_FAST_ROUTED_IN_BYTES);
	return MOAT_REDIRECT_PEER;
}

/* IPv6 replies take the plain path. */
static __always_inline int fast_reply6(struct __sk_buff *skb, const struct l4_info6 *l4,
				       struct moat_ct6_entry *e, __u32 rev, __u64 now)
{
	return MOAT_PASS;
}

#endif
