/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * world_impl.h - the uplink programs' verdicts for one address family
 * (uplink.bpf.c includes it for CT_FAM 4, then 6; names through
 * lib/ct_fam.h): published ports, masquerade (NAT66 for IPv6) and routed
 * networks, on a packet the family's parser has read into `l4`. No
 * include guard.
 */
#include "lib/ct_fam.h"

/*
 * For the parsed packet `l4`: a packet of a flow moat already tracks is
 * rewritten here if its entry says so, passed otherwise; ICMP errors go
 * with the flow they quote. MOAT_CONTINUE for a
 * new flow, which the caller judges. On the way out, a flow that a
 * container's hook only tracked counts as new, and *tracked points to its
 * entry: masquerade takes it over.
 */
static __always_inline int CT_V(uplink_tracked)(struct __sk_buff *skb, CT_L4 *l4, __u32 dir,
						__u32 rev, __u64 now, CT_ENTRY **tracked)
{
	CT_ENTRY *e;
	int v;

	*tracked = NULL;
	if (l4->fragment || l4->more_frags)
		CT_FN(frag_ports)(l4);
	if (l4->icmp_error) {
		v = CT_V(nat_icmp_error)(skb, l4, skb->ifindex, dir, now);
		if (v)
			return v < 0 ? v : MOAT_PASS;
		return MOAT_CONTINUE;
	}
	if (l4->fragment && !l4->has_ports)
		return MOAT_CONTINUE;
	e = CT_FN(lookup)(&l4->key, now);
	if (!e)
		return MOAT_CONTINUE;
	if (dir == MOAT_DIR_TO_WORLD && e->kind == MOAT_CT_TRACK) {
		*tracked = e;
		return MOAT_CONTINUE;
	}
	/* From the world only the uplinks' own entries (published ports,
	 * masquerade and routed replies) justify a pass: one a container's
	 * veth made is between containers or the host, and a world packet
	 * carrying its tuple forged a container's source. */
	if (dir == MOAT_DIR_FROM_WORLD && !is_uplink_dir(e->dir))
		return MOAT_CONTINUE;
	v = CT_FN(recheck)(&l4->key, e, rev);
	if (v)
		return v;
	if (!CT_FN(rewrites_here)(e, skb->ifindex, dir))
		return MOAT_PASS;
	v = CT_FN(update)(e, l4, skb->len, now, 0);
	if (v)
		return v;
	v = CT_V(nat_rewrite)(skb, l4, &e->xlated);
	/* A reply to a container's flow: straight to it, where the routed
	 * fast path may take it (lib/fast_reply.h). */
	if (v == MOAT_PASS && e->kind == MOAT_CT_SNAT_REPLY)
		return CT_V(fast_reply)(skb, l4, e, rev, now);
	return v;
}

/* `slot`: this uplink's counter slot, looked up once per packet by the caller. */
static __always_inline int CT_V(from_world_verdict)(struct __sk_buff *skb, __u32 slot, CT_L4 *l4)
{
	__u32 ifindex = skb->ifindex;
	__u64 now = moat_now();
	__u32 rev = policy_current_rev();
	CT_PUB_VAL *pub;
	struct moat_addr_info *info;
	CT_ENTRY *tracked;
	int v;

	v = CT_V(uplink_tracked)(skb, l4, MOAT_DIR_FROM_WORLD, rev, now, &tracked);
	if (v != MOAT_CONTINUE)
		return v;

	/* The uplinks' and gateways' addresses are all in `addrs` as host ones. */
	info = CT_V(addr_lookup)(l4->key.daddr);
	if (is_host_addr(info) && !l4->fragment && l4->has_ports && l4->key.proto != CT_ICMP) {
		pub = CT_V(publish_lookup)(l4->key.daddr, l4->key.dport, l4->key.proto);
		if (pub && !CT_FN(opens_flow)(l4))
			return MOAT_DROP_NO_FLOW;
		/* From the world, a container's or the host's own address is
		 * forged: its replies would be delivered to that address. */
		if (pub && CT_V(addr_lookup)(l4->key.saddr))
			return MOAT_DROP_SPOOFED_SOURCE;
		if (pub) {
			CT_SITES at = {
				.orig_ifindex = ifindex,
				.orig_slot = slot,
				.orig_dir = MOAT_DIR_FROM_WORLD,
				.reply_ifindex = ifindex,
				.reply_dir = MOAT_DIR_TO_WORLD,
				.rev = rev,
				.owner = CT_FN(owner_of)(pub->backend_ip),
			};
			CT_KEY t = l4->key;
			__u32 rule_id;

			/* Unlike Docker's, published ports obey policy, with the
			 * client's real address as the peer (moby#22054). */
			t.daddr = pub->backend_ip;
			t.dport = pub->backend_port;
			v = CT_V(policy_verdict)(rev, &t, &rule_id);
			if (v)
				return v;
			at.rule_id = rule_id;
			at.len = skb->len;
			return CT_V(nat_publish)(skb, l4, pub->backend_ip, pub, &at, 0, now);
		}
	}
	/* Docker 28 closed this hole too: routed straight to a container. */
	if (info && info->kind == MOAT_ADDR_SUBNET)
		return MOAT_DROP_NOT_PUBLISHED;
	return MOAT_PASS;
}

static __always_inline int CT_V(to_world_verdict)(struct __sk_buff *skb, __u32 slot, CT_L4 *l4)
{
	__u32 ifindex = skb->ifindex;
	__u64 now = moat_now();
	__u32 rev = policy_current_rev();
	struct moat_addr_info *info;
	CT_ENTRY *tracked;
	struct moat_uplink *up;
	int v;

	v = CT_V(uplink_tracked)(skb, l4, MOAT_DIR_TO_WORLD, rev, now, &tracked);
	if (v != MOAT_CONTINUE)
		return v;

	info = CT_V(addr_lookup)(l4->key.saddr);
	if (!info || info->kind != MOAT_ADDR_SUBNET)
		return MOAT_PASS; /* the host's own traffic */
	if (info->net_flags & MOAT_NET_F_INTERNAL)
		return MOAT_DROP_INTERNAL_NETWORK;
	/* A later fragment of a datagram whose first one was not seen. */
	if (l4->fragment)
		return (info->net_flags & MOAT_NET_F_MASQUERADE) ? MOAT_DROP_NAT_FAILED : MOAT_PASS;
	/* A packet of no flow (policy changed since its container's hook
	 * judged it, or the host sent it): judged here, as the first hook
	 * that meets it, whether or not it can open a flow. */
	if (!tracked && rev) {
		__u32 rule_id;

		v = CT_V(policy_verdict)(rev, &l4->key, &rule_id);
		if (v)
			return v;
	}
	/* A segment of a connection nobody tracks: a masquerade entry made
	 * from it would let the world's segments in as its replies. */
	if (!tracked && !CT_FN(opens_flow)(l4))
		return (info->net_flags & MOAT_NET_F_MASQUERADE) ? MOAT_DROP_NO_FLOW
								 : MOAT_PASS;
	if (!(info->net_flags & MOAT_NET_F_MASQUERADE)) {
		/* Routed as it is, like Docker without masquerade; tracked all the
		 * same, so that the replies are let in and nothing else is. */
		CT_SITES at = {
			.orig_ifindex = ifindex,
			.orig_slot = slot,
			.orig_dir = MOAT_DIR_TO_WORLD,
			.reply_ifindex = ifindex,
			.reply_dir = MOAT_DIR_FROM_WORLD,
			.rev = rev,
			.rule_id = MOAT_RULE_NONE,
			.len = skb->len,
			.owner = CT_FN(owner_of)(l4->key.saddr),
		};

		if (tracked) {
			at.rev = tracked->policy_rev;
			at.rule_id = tracked->rule_id;
			at.taken = tracked;
		} else {
			v = CT_FN(admit)(at.owner, &at.owned);
			if (v)
				return v;
		}
		v = CT_FN(create)(l4, &l4->key, &at, MOAT_CT_SNAT, 0, 0, 0, now);
		if (v)
			return ct_failed(v, MOAT_DROP_NAT_FAILED);
		return MOAT_PASS;
	}
	up = bpf_map_lookup_elem(&uplinks, &ifindex);
	if (!up)
		return MOAT_DROP_UNKNOWN_ENDPOINT;
	if (!CT_FN(uplink_has_addr)(up))
		return MOAT_DROP_IPV6_NOT_ENABLED;
	return CT_V(nat_masquerade)(skb, l4, up, ifindex, rev, tracked, now);
}

