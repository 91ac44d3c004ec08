/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * nat_impl.h - the translations of one address family (lib/nat.h includes
 * it for CT_FAM 4, then 6; names through lib/ct_fam.h): nat_rewrite() and
 * nat_rewrite6() differ only in how an address is rewritten
 * (rewrite_addr(), rewrite_addr6()). No include guard.
 */
#include "lib/ct_fam.h"

/*
 * Turns the packet's tuple (l4->key) into `to`, touching only what differs.
 * For ICMP echo the identifier plays both ports. Returns 0 or a drop reason.
 */
static __always_inline int CT_V(nat_rewrite)(struct __sk_buff *skb, const CT_L4 *l4,
					     const CT_KEY *to)
{
	const CT_KEY *from = &l4->key;
	int v;

	/* A tracked flow's entry translates nothing: no helper call at all. */
	if (CT_ADDR_EQ(from->saddr, to->saddr) && CT_ADDR_EQ(from->daddr, to->daddr) &&
	    from->sport == to->sport && from->dport == to->dport)
		return MOAT_PASS;
	v = CT_V(nat_rewrite_span)(skb, l4, to);
	if (v != MOAT_CONTINUE)
		return v;
	if (!CT_ADDR_EQ(from->saddr, to->saddr) &&
	    CT_V(rewrite_addr)(skb, l4, CT_SADDR_OFF, &from->saddr, &to->saddr))
		return MOAT_DROP_NAT_FAILED;
	if (!CT_ADDR_EQ(from->daddr, to->daddr) &&
	    CT_V(rewrite_addr)(skb, l4, CT_DADDR_OFF, &from->daddr, &to->daddr))
		return MOAT_DROP_NAT_FAILED;
	if (l4->fragment || !l4->has_ports)
		return MOAT_PASS;
	if (from->proto == CT_ICMP) {
		/* The echo id: a request's source side, a reply's destination. */
		__be16 id = from->sport | from->dport, new_id = to->sport | to->dport;

		if (id != new_id && rewrite_port(skb, from->proto, l4->l4_off, 4, id, new_id))
			return MOAT_DROP_NAT_FAILED;
		return MOAT_PASS;
	}
	if (from->sport != to->sport && rewrite_port(skb, from->proto, l4->l4_off, 0, from->sport, to->sport))
		return MOAT_DROP_NAT_FAILED;
	if (from->dport != to->dport && rewrite_port(skb, from->proto, l4->l4_off, 2, from->dport, to->dport))
		return MOAT_DROP_NAT_FAILED;
	return MOAT_PASS;
}

/*
 * A new flow to a published port: creates its entries and rewrites the
 * packet towards `backend_ip` (the container's address the client can
 * reach most directly). `hairpin` also moves the source to the address the client dialled,
 * so the container answers through moat instead of to itself.
 */
static __always_inline int CT_V(nat_publish)(struct __sk_buff *skb, const CT_L4 *l4,
					     CT_ADDR backend_ip, const CT_PUB_VAL *pub,
				       CT_SITES *at, int hairpin, __u64 now)
{
	CT_KEY xl = l4->key;
	int v;

	xl.daddr = backend_ip;
	xl.dport = pub->backend_port;
	if (hairpin)
		xl.saddr = l4->key.daddr;
	v = CT_FN(admit)(at->owner, &at->owned);
	if (v)
		return v;
	v = CT_FN(create)(l4, &xl, at, MOAT_CT_DNAT, hairpin ? MOAT_CT_F_HAIRPIN : 0,
		      pub->container_id, 0, now);
	if (v)
		return ct_failed(v, MOAT_DROP_NAT_FAILED);
	return CT_V(nat_rewrite)(skb, l4, &xl);
}

/*
 * Whether the host holds masquerade tuple `xl`'s port on the uplink's
 * address: published there (or on every address), or a host socket's
 * (host_sock_takes()). Such a port is never a flow's: a container that
 * sent from it, or drew it, would get the world's traffic to it.
 */
static __always_inline int CT_V(nat_port_hosted)(struct __sk_buff *skb, const CT_KEY *xl)
{
	/* The tuple is built in the flow's scratch entry, which create()
	 * fills only after this: on the stack it made the search's frames
	 * too large for the verifier (512 bytes, all frames together). */
	struct bpf_sock_tuple *t = (struct bpf_sock_tuple *)CT_FN(scratch_entry)();

	if (xl->proto != IPPROTO_TCP && xl->proto != IPPROTO_UDP)
		return 0;
	if (CT_V(publish_lookup)(xl->saddr, xl->sport, xl->proto))
		return 1;
	if (!t)
		return 1; /* cannot tell: not this port */
#if CT_FAM == 4
	t->ipv4.saddr = xl->daddr;
	t->ipv4.daddr = xl->saddr;
	t->ipv4.sport = xl->dport;
	t->ipv4.dport = xl->sport;
	return host_sock_takes(skb, t, sizeof(t->ipv4), xl->proto);
#else
	__builtin_memcpy(t->ipv6.saddr, xl->daddr.w, sizeof(t->ipv6.saddr));
	__builtin_memcpy(t->ipv6.daddr, xl->saddr.w, sizeof(t->ipv6.daddr));
	t->ipv6.sport = xl->dport;
	t->ipv6.dport = xl->sport;
	return host_sock_takes(skb, t, sizeof(t->ipv6), xl->proto);
#endif
}

/* What the search for a masquerade port works with (bpf_loop()'s ctx). */
struct CT_V(nat_search) {
	struct __sk_buff *skb;
	CT_KEY xl; /* the tuple behind the uplink; its port is the try's */
	__u64 now;
	__u32 off; /* the try's port, from MOAT_NAT_PORT_MIN */
	int found;
};

/*
 * One try, a bpf_loop() body (verified once, not once per try): the port
 * is free when the host does not hold it (nat_port_hosted()) and no live
 * flow has its reply tuple; a flow that ended and was not swept yet is
 * ended here (lookup(), with its end event). The first try is the flow's
 * own port's image, the second a random port, then the ports after it.
 */
static long CT_V(nat_try_port)(__u32 i, void *ctx)
{
	struct CT_V(nat_search) *s = ctx;
	const __u32 range = MOAT_NAT_PORT_MAX - MOAT_NAT_PORT_MIN + 1;
	CT_KEY rkey;

	s->xl.sport = bpf_htons(MOAT_NAT_PORT_MIN + s->off % range); /* an echo's id */
	if (!CT_V(nat_port_hosted)(s->skb, &s->xl)) {
		CT_FN(reverse)(&s->xl, &rkey);
		if (!CT_FN(lookup)(&rkey, s->now)) {
			s->found = 1;
			return 1;
		}
	}
	s->off = i ? s->off + 1 : bpf_get_prandom_u32();
	return 0;
}

/*
 * A new flow from a container to the world: picks a free source port (an
 * echo id for ping) on the uplink address, below the host's ephemeral
 * range. The first try is the flow's own port's image (nat_port_offset()),
 * so a container's tuple leaves behind the same outside tuple flow after
 * flow, as netfilter's masquerade keeps the source port. That is what a
 * server's TIME_WAIT needs: for 60 s after a close it lets a SYN on the
 * old tuple open a new connection only when the SYN's sequence number or
 * timestamp follows the old connection's, which the same client tuple's
 * do and another's do half the time; the other half the SYN is answered
 * by the old connection's ACK, the client resets and sends it again
 * later. A random port per flow made that a third of the SYNs of a
 * container opening connections to one server at a high rate. Then, when
 * that port is another live flow's or the host's (nat_try_port()),
 * random ones.
 * `tracked`: the entry the container's hook made when policy admitted the
 * flow; the NAT pair replaces it and inherits its rule, revision and report.
 */
static __always_inline int CT_V(nat_masquerade)(struct __sk_buff *skb, const CT_L4 *l4,
						 const struct moat_uplink *up, __u32 ifindex,
						 __u32 rev, const CT_ENTRY *tracked, __u64 now)
{
	CT_SITES at = {
		.orig_ifindex = ifindex,
		.orig_slot = up->stats_slot,
		.orig_dir = MOAT_DIR_TO_WORLD,
		.reply_ifindex = ifindex,
		.reply_dir = MOAT_DIR_FROM_WORLD,
		.rev = tracked ? tracked->policy_rev : rev,
		.rule_id = tracked ? tracked->rule_id : MOAT_RULE_NONE,
		.len = skb->len,
		.taken = tracked,
		.owner = CT_FN(owner_of)(l4->key.saddr),
	};
	struct CT_V(nat_search) s = {
		.skb = skb,
		.xl = l4->key,
		.now = now,
		.off = nat_port_offset(l4->key.sport),
	};
	int v;

	if (!tracked) {
		v = CT_FN(admit)(at.owner, &at.owned);
		if (v)
			return v;
	}
	s.xl.saddr = CT_UPLINK_ADDR(up);
	if (l4->has_ports && l4->key.proto != IPPROTO_SCTP) {
		bpf_loop(MOAT_NAT_PORT_TRIES, CT_V(nat_try_port), &s, 0);
		if (!s.found)
			return MOAT_DROP_NAT_NO_PORT;
	}
	/* Without ports only the addresses tell flows apart; SCTP keeps its
	 * port, as a new one would need the whole CRC32c again. With one,
	 * the claim still fails if a flow on another CPU took the port since. */
	v = CT_FN(create)(l4, &s.xl, &at, MOAT_CT_SNAT, 0, 0, 1, now);
	if (v == -E2BIG)
		return MOAT_DROP_CT_FULL;
	if (v)
		return ct_failed(v, MOAT_DROP_NAT_NO_PORT);
	return CT_V(nat_rewrite)(skb, l4, &s.xl);
}

