/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * nat.h - published ports (DNAT), masquerade (SNAT) and the header rewrites
 * both need, on top of ct.h.
 *
 * Rewrites go through bpf_skb_store_bytes() and the csum_replace helpers,
 * never a recomputed sum: on veth most packets are CHECKSUM_PARTIAL (and
 * GSO), where only the pseudo-header seed may change, and the helpers know
 * how to treat each checksum state. A UDP checksum of 0 ("none") stays 0.
 */
#ifndef MOAT_LIB_NAT_H
#define MOAT_LIB_NAT_H

#include "lib/ct.h"
#include "lib/verdict.h"

#define IP_CSUM_OFF 10
#define IP_SADDR_OFF 12
#define IP_DADDR_OFF 16

/* Offset of the L4 checksum from the L4 header, 0 when there is none to fix. */
static __always_inline __u32 l4_csum_off(__u8 proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return 16;
	case IPPROTO_UDP:
		return 6;
	case IPPROTO_ICMP:
		return 2;
	default:
		return 0; /* SCTP's CRC32c skips the addresses; moat never moves its ports */
	}
}

static __always_inline int rewrite_addr(struct __sk_buff *skb, const struct l4_info *l4,
					__u32 field_off, __be32 from, __be32 to)
{
	__u32 csum_off = l4_csum_off(l4->key.proto);

	if (bpf_l3_csum_replace(skb, l4->l3_off + IP_CSUM_OFF, from, to, 4))
		return -1;
	/* ICMP has no pseudo-header; fragments carry no L4 header to fix. */
	if (csum_off && l4->key.proto != IPPROTO_ICMP && !l4->fragment) {
		__u64 flags = BPF_F_PSEUDO_HDR | 4;

		if (l4->key.proto == IPPROTO_UDP)
			flags |= BPF_F_MARK_MANGLED_0;
		if (bpf_l4_csum_replace(skb, l4->l4_off + csum_off, from, to, flags))
			return -1;
	}
	return bpf_skb_store_bytes(skb, l4->l3_off + field_off, &to, 4, 0);
}

static __always_inline int rewrite_port(struct __sk_buff *skb, const struct l4_info *l4,
					__u32 field_off, __be16 from, __be16 to)
{
	__u32 csum_off = l4_csum_off(l4->key.proto);

	if (csum_off) {
		__u64 flags = 2;

		if (l4->key.proto == IPPROTO_UDP)
			flags |= BPF_F_MARK_MANGLED_0;
		if (bpf_l4_csum_replace(skb, l4->l4_off + csum_off, from, to, flags))
			return -1;
	}
	return bpf_skb_store_bytes(skb, l4->l4_off + field_off, &to, 2, 0);
}

/*
 * Turns the packet's tuple (l4->key) into `to`, touching only what differs.
 * For ICMP echo the identifier plays both ports. Returns 0 or a drop reason.
 */
static __always_inline int nat_rewrite(struct __sk_buff *skb, const struct l4_info *l4,
				       const struct moat_ct_key *to)
{
	const struct moat_ct_key *from = &l4->key;

	if (from->saddr != to->saddr && rewrite_addr(skb, l4, IP_SADDR_OFF, from->saddr, to->saddr))
		return MOAT_DROP_NAT_FAILED;
	if (from->daddr != to->daddr && rewrite_addr(skb, l4, IP_DADDR_OFF, from->daddr, to->daddr))
		return MOAT_DROP_NAT_FAILED;
	if (l4->fragment || !l4->has_ports)
		return MOAT_PASS;
	if (from->proto == IPPROTO_ICMP) {
		/* The echo id: a request's source side, a reply's destination. */
		__be16 id = from->sport | from->dport, new_id = to->sport | to->dport;

		if (id != new_id && rewrite_port(skb, l4, 4, id, new_id))
			return MOAT_DROP_NAT_FAILED;
		return MOAT_PASS;
	}
	if (from->sport != to->sport && rewrite_port(skb, l4, 0, from->sport, to->sport))
		return MOAT_DROP_NAT_FAILED;
	if (from->dport != to->dport && rewrite_port(skb, l4, 2, from->dport, to->dport))
		return MOAT_DROP_NAT_FAILED;
	return MOAT_PASS;
}

/*
 * A new flow to a published port: creates its entries and rewrites the
 * packet towards `backend_ip` (the container's address the client can
 * reach most directly). `hairpin` also moves the source to the address the client dialled,
 * so the container answers through moat instead of to itself.
 */
static __always_inline int nat_publish(struct __sk_buff *skb, const struct l4_info *l4,
				       __be32 backend_ip, const struct moat_publish_val *pub,
				       struct ct_sites *at, int hairpin, __u64 now)
{
	struct moat_ct_key xl = l4->key;
	int v;

	xl.daddr = backend_ip;
	xl.dport = pub->backend_port;
	if (hairpin)
		xl.saddr = l4->key.daddr;
	v = ct_admit(at->owner, &at->owned);
	if (v)
		return v;
	v = ct_create(&l4->key, &xl, at, MOAT_CT_DNAT, hairpin ? MOAT_CT_F_HAIRPIN : 0,
		      pub->container_id, 0, now);
	if (v)
		return ct_failed(v, MOAT_DROP_NAT_FAILED);
	return nat_rewrite(skb, l4, &xl);
}

/*
 * A new flow from a container to the world: picks a free source port (an
 * echo id for ping) on the uplink address, above the host's ephemeral
 * range, starting at a random point so flows spread over the range.
 * `tracked`: the entry the container's hook made when policy admitted the
 * flow; the NAT pair replaces it and inherits its rule, revision and report.
 */
static __always_inline int nat_masquerade(struct __sk_buff *skb, const struct l4_info *l4,
					  const struct moat_uplink *up, __u32 ifindex, __u32 rev,
					  const struct moat_ct_entry *tracked, __u64 now)
{
	struct ct_sites at = {
		.orig_ifindex = ifindex,
		.orig_slot = up->stats_slot,
		.orig_dir = MOAT_DIR_TO_WORLD,
		.reply_ifindex = ifindex,
		.reply_dir = MOAT_DIR_FROM_WORLD,
		.rev = tracked ? tracked->policy_rev : rev,
		.rule_id = tracked ? tracked->rule_id : MOAT_RULE_NONE,
		.len = skb->len,
		.quiet = tracked != NULL,
		.owner = l4->key.saddr,
	};
	const __u32 range = MOAT_NAT_PORT_MAX - MOAT_NAT_PORT_MIN + 1;
	__u32 start = bpf_get_prandom_u32();
	struct moat_ct_key xl = l4->key;
	int i, v;

	if (!tracked) {
		v = ct_admit(at.owner, &at.owned);
		if (v)
			return v;
	}
	xl.saddr = up->ipv4;
	if (!l4->has_ports || l4->key.proto == IPPROTO_SCTP) {
		/* Without ports only the addresses tell flows apart; SCTP keeps
		 * its port, as a new one would need the whole CRC32c again. */
		v = ct_create(&l4->key, &xl, &at, MOAT_CT_SNAT, 0, 0, 1, now);
		if (v)
			return ct_failed(v, MOAT_DROP_NAT_NO_PORT);
		return nat_rewrite(skb, l4, &xl);
	}
#pragma clang loop unroll(disable)
	for (i = 0; i < MOAT_NAT_PORT_TRIES; i++) {
		__be16 port = bpf_htons(MOAT_NAT_PORT_MIN + (start + i) % range);

		xl.sport = port; /* for an echo request, its id */
		v = ct_create(&l4->key, &xl, &at, MOAT_CT_SNAT, 0, 0, 1, now);
		if (!v)
			return nat_rewrite(skb, l4, &xl);
		if (v == -E2BIG)
			return MOAT_DROP_CT_FULL;
	}
	return MOAT_DROP_NAT_NO_PORT;
}

/*
 * A container reaching its own published port: after the rewrite the packet
 * goes back out of the veth it came in on, with the Ethernet addresses
 * swapped, instead of through the host, which would drop a packet from one
 * of its own addresses as a martian.
 */
static __always_inline int hairpin_back(struct __sk_buff *skb)
{
	__u8 macs[2 * ETH_ALEN], swapped[2 * ETH_ALEN];

	if (bpf_skb_load_bytes(skb, 0, macs, sizeof(macs)))
		return MOAT_DROP_NAT_FAILED;
	__builtin_memcpy(swapped, macs + ETH_ALEN, ETH_ALEN);
	__builtin_memcpy(swapped + ETH_ALEN, macs, ETH_ALEN);
	if (bpf_skb_store_bytes(skb, 0, swapped, sizeof(swapped), 0))
		return MOAT_DROP_NAT_FAILED;
	return MOAT_REDIRECT_BACK;
}

/*
 * ICMP errors (port unreachable, fragmentation needed, ...) quote the
 * packet they answer. For a translated flow, the quoted header and the
 * outer address on the flow's side are translated like the flow's own
 * packets. Returns 1 when the error belongs to a tracked flow (translated
 * here, or to be translated elsewhere: let it pass), 0 when it does not,
 * or a drop reason.
 *
 * The ICMP checksum needs no fix for the quoted addresses: the quoted IP
 * checksum changes by exactly the opposite amount. The quoted ports do
 * change it. A quoted UDP checksum is left as it was: nobody checks it.
 *
 * An error is related to a flow only when it travels to the quoted
 * packet's source (netfilter checks the same): one that quotes a real flow
 * but is addressed elsewhere is judged as a new packet like any other. A
 * container, which is no router, may only report about a packet it
 * received itself; routers and the host may report about any.
 *
 * A BPF-to-BPF call, not inlined: each call frame keeps its own stack
 * and the programs stay under the verifier's 512-byte frame limit.
 */
static __noinline int nat_icmp_error(struct __sk_buff *skb, const struct l4_info *l4,
					  __u32 ifindex, __u32 dir, __u64 now)
{
	__u32 in3 = l4->l4_off + 8;
	struct iphdr inner;
	struct moat_ct_key quoted = {}, rkey, want;
	struct moat_ct_entry *e;
	__be16 ports[3];
	__u32 in4;

	if (bpf_skb_load_bytes(skb, in3, &inner, sizeof(inner)))
		return 0;
	if (inner.version != 4 || inner.ihl < 5)
		return 0;
	in4 = in3 + inner.ihl * 4;
	quoted.saddr = inner.saddr;
	quoted.daddr = inner.daddr;
	quoted.proto = inner.protocol;
	if (inner.protocol == IPPROTO_TCP || inner.protocol == IPPROTO_UDP) {
		if (bpf_skb_load_bytes(skb, in4, ports, 4))
			return 0;
		quoted.sport = ports[0];
		quoted.dport = ports[1];
	} else if (inner.protocol == IPPROTO_ICMP) {
		__u8 type;

		if (bpf_skb_load_bytes(skb, in4, ports, 6))
			return 0;
		type = ((__u8 *)ports)[0];
		if (type == ICMP_ECHO)
			quoted.sport = ports[2];
		else if (type == ICMP_ECHOREPLY)
			quoted.dport = ports[2];
		else
			return 0;
	} else {
		return 0;
	}
	if (l4->key.daddr != quoted.saddr)
		return 0;
	if (dir == MOAT_DIR_FROM_CONTAINER && l4->key.saddr != quoted.daddr)
		return 0;

	/* The quoted packet went the other way: its reply entry is ours. At
	 * an uplink that entry must be one of the uplink's own: the world
	 * saw only the flows that left by an uplink, and an error quoting a
	 * flow between containers (tracked, or translated at a veth) is a
	 * new packet there. */
	ct_reverse(&quoted, &rkey);
	e = ct_lookup(&rkey, now);
	if (is_uplink_dir(dir) && (!e || e->dir != dir))
		return 0;
	if (!e) {
		/* A tracked flow has one entry, keyed by its original direction,
		 * which is what an error back to the flow's initiator quotes. */
		e = ct_lookup(&quoted, now);
		return e && e->kind == MOAT_CT_TRACK;
	}
	if (!ct_rewrites_here(e, ifindex, dir))
		return 1;
	ct_reverse(&e->xlated, &want);

	if (quoted.saddr != want.saddr) {
		if (bpf_l3_csum_replace(skb, in3 + IP_CSUM_OFF, quoted.saddr, want.saddr, 4) ||
		    bpf_skb_store_bytes(skb, in3 + IP_SADDR_OFF, &want.saddr, 4, 0))
			return MOAT_DROP_NAT_FAILED;
	}
	if (quoted.daddr != want.daddr) {
		if (bpf_l3_csum_replace(skb, in3 + IP_CSUM_OFF, quoted.daddr, want.daddr, 4) ||
		    bpf_skb_store_bytes(skb, in3 + IP_DADDR_OFF, &want.daddr, 4, 0))
			return MOAT_DROP_NAT_FAILED;
	}
	if (quoted.proto == IPPROTO_ICMP) {
		__be16 id = quoted.sport | quoted.dport, new_id = want.sport | want.dport;

		if (id != new_id &&
		    (bpf_l4_csum_replace(skb, l4->l4_off + 2, id, new_id, 2) ||
		     bpf_skb_store_bytes(skb, in4 + 4, &new_id, 2, 0)))
			return MOAT_DROP_NAT_FAILED;
	} else {
		if (quoted.sport != want.sport &&
		    (bpf_l4_csum_replace(skb, l4->l4_off + 2, quoted.sport, want.sport, 2) ||
		     bpf_skb_store_bytes(skb, in4, &want.sport, 2, 0)))
			return MOAT_DROP_NAT_FAILED;
		if (quoted.dport != want.dport &&
		    (bpf_l4_csum_replace(skb, l4->l4_off + 2, quoted.dport, want.dport, 2) ||
		     bpf_skb_store_bytes(skb, in4 + 2, &want.dport, 2, 0)))
			return MOAT_DROP_NAT_FAILED;
	}

	/* The error travels to the quoted packet's source (checked above);
	 * whoever of the two endpoints sent it speaks with the translated
	 * address. */
	if (quoted.saddr != want.saddr &&
	    rewrite_addr(skb, l4, IP_DADDR_OFF, l4->key.daddr, want.saddr))
		return MOAT_DROP_NAT_FAILED;
	if (l4->key.saddr == quoted.daddr && quoted.daddr != want.daddr &&
	    rewrite_addr(skb, l4, IP_SADDR_OFF, l4->key.saddr, want.daddr))
		return MOAT_DROP_NAT_FAILED;
	return 1;
}

#endif
