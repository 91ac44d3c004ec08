// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * uplink.bpf.c - TC programs on the host's uplinks, where Docker has its
 * PREROUTING DNAT and POSTROUTING MASQUERADE rules.
 *
 *   from_world: TC ingress, before the routing decision. Published ports
 *               are rewritten to their container here, so the host routes
 *               them to the right bridge; masquerade replies go back to
 *               the container they belong to; anything else addressed to a
 *               container is dropped (unpublished ports stay closed).
 *   to_world:   TC egress. Replies from published containers get the
 *               published address back; containers' own connections are
 *               masqueraded behind the uplink's address.
 */
#include "lib/common.h"
#include "lib/parse.h"
#include "lib/maps.h"
#include "lib/ct.h"
#include "lib/nat.h"
#include "lib/policy.h"
#include "lib/verdict.h"

/* Parses up to the L4 header, pulling non-linear headers in once. */
static __always_inline int uplink_parse(struct __sk_buff *skb, struct l4_info *l4, int *is_ipv4)
{
	struct cursor c;
	struct ethhdr *eth;
	struct iphdr *ip;
	int pulled = 0;

again:
	cursor_init(&c, skb);
	eth = parse_eth(&c);
	if (!eth)
		return MOAT_DROP_INVALID_PACKET;
	*is_ipv4 = eth->h_proto == bpf_htons(ETH_P_IP);
	/* The host's own business (ARP; IPv6: world_ipv6_verdict()). */
	if (!*is_ipv4)
		return MOAT_PASS;
	ip = parse_ipv4(&c);
	if (!ip || parse_l4(&c, skb, ip, l4)) {
		if (pulled++ || pull_headers(skb))
			return MOAT_DROP_INVALID_PACKET;
		goto again;
	}
	return MOAT_PASS;
}

/*
 * IPv6 from the world is the host's business, except what is addressed to
 * a container network's subnet: no IPv6 port is published yet, and no
 * container is reached from outside directly, as for IPv4.
 */
static __always_inline int world_ipv6_verdict(struct __sk_buff *skb)
{
	struct moat_addr_info *info;
	union moat_ip dst;

	if (skb->protocol != bpf_htons(ETH_P_IPV6))
		return MOAT_PASS;
	if (bpf_skb_load_bytes(skb, ETH_HLEN + offsetof(struct ipv6hdr, daddr), &dst, sizeof(dst)))
		return MOAT_DROP_INVALID_PACKET;
	info = addr6_lookup(&dst);
	return info && info->kind == MOAT_ADDR_SUBNET ? MOAT_DROP_NOT_PUBLISHED : MOAT_PASS;
}

/*
 * Parses the packet into *l4, then: what is not IPv4 passes; a packet of a
 * flow moat already tracks is rewritten here if its entry says so, passed
 * otherwise; ICMP errors go with the flow they quote. MOAT_CONTINUE for a
 * new flow, which the caller judges. On the way out, a flow that a
 * container's hook only tracked counts as new, and *tracked points to its
 * entry: masquerade takes it over.
 */
static __always_inline int uplink_tracked(struct __sk_buff *skb, struct l4_info *l4, __u32 dir,
					  __u32 rev, __u64 now, struct moat_ct_entry **tracked)
{
	struct moat_ct_entry *e;
	int is_ipv4, v;

	*tracked = NULL;
	v = uplink_parse(skb, l4, &is_ipv4);
	if (v != MOAT_PASS)
		return v;
	if (!is_ipv4)
		return dir == MOAT_DIR_FROM_WORLD ? world_ipv6_verdict(skb) : MOAT_PASS;

	if (l4->fragment || l4->more_frags)
		ct_frag_ports(l4);
	if (l4->icmp_error) {
		v = nat_icmp_error(skb, l4, skb->ifindex, dir, now);
		if (v)
			return v < 0 ? v : MOAT_PASS;
		return MOAT_CONTINUE;
	}
	if (l4->fragment && !l4->has_ports)
		return MOAT_CONTINUE;
	e = ct_lookup(&l4->key, now);
	if (!e)
		return MOAT_CONTINUE;
	if (dir == MOAT_DIR_TO_WORLD && e->kind == MOAT_CT_TRACK) {
		*tracked = e;
		return MOAT_CONTINUE;
	}
	v = ct_recheck(&l4->key, e, rev);
	if (v)
		return v;
	if (!ct_rewrites_here(e, skb->ifindex, dir))
		return MOAT_PASS;
	ct_update(e, l4, skb->len, now, 0);
	return nat_rewrite(skb, l4, &e->xlated);
}

/* `slot`: this uplink's counter slot, looked up once per packet by the caller. */
static __always_inline int from_world_verdict(struct __sk_buff *skb, __u32 slot)
{
	__u32 ifindex = skb->ifindex;
	__u64 now = bpf_ktime_get_ns();
	__u32 rev = policy_current_rev();
	struct moat_publish_val *pub;
	struct moat_addr_info *info;
	struct moat_ct_entry *tracked;
	struct l4_info l4;
	int v;

	v = uplink_tracked(skb, &l4, MOAT_DIR_FROM_WORLD, rev, now, &tracked);
	if (v != MOAT_CONTINUE)
		return v;

	/* The uplinks' and gateways' addresses are all in `addrs` as host ones. */
	info = addr_lookup(l4.key.daddr);
	if (is_host_addr(info) && !l4.fragment && l4.has_ports && l4.key.proto != IPPROTO_ICMP) {
		pub = publish_lookup(l4.key.daddr, l4.key.dport, l4.key.proto);
		if (pub && !ct_opens_flow(&l4))
			return MOAT_DROP_NO_FLOW;
		/* From the world, a container's or the host's own address is
		 * forged: its replies would be delivered to that address. */
		if (pub && addr_lookup(l4.key.saddr))
			return MOAT_DROP_SPOOFED_SOURCE;
		if (pub) {
			struct ct_sites at = {
				.orig_ifindex = ifindex,
				.orig_slot = slot,
				.orig_dir = MOAT_DIR_FROM_WORLD,
				.reply_ifindex = ifindex,
				.reply_dir = MOAT_DIR_TO_WORLD,
				.rev = rev,
				.owner = pub->backend_ip,
			};
			struct moat_ct_key t = l4.key;
			__u32 rule_id;

			/* Unlike Docker's, published ports obey policy, with the
			 * client's real address as the peer (moby#22054). */
			t.daddr = pub->backend_ip;
			t.dport = pub->backend_port;
			v = policy_verdict(rev, &t, &rule_id);
			if (v)
				return v;
			at.rule_id = rule_id;
			at.len = skb->len;
			return nat_publish(skb, &l4, pub->backend_ip, pub, &at, 0, now);
		}
	}
	/* Docker 28 closed this hole too: routed straight to a container. */
	if (info && info->kind == MOAT_ADDR_SUBNET)
		return MOAT_DROP_NOT_PUBLISHED;
	return MOAT_PASS;
}

static __always_inline int to_world_verdict(struct __sk_buff *skb, __u32 slot)
{
	__u32 ifindex = skb->ifindex;
	__u64 now = bpf_ktime_get_ns();
	__u32 rev = policy_current_rev();
	struct moat_addr_info *info;
	struct moat_ct_entry *tracked;
	struct moat_uplink *up;
	struct l4_info l4;
	int v;

	v = uplink_tracked(skb, &l4, MOAT_DIR_TO_WORLD, rev, now, &tracked);
	if (v != MOAT_CONTINUE)
		return v;

	info = addr_lookup(l4.key.saddr);
	if (!info || info->kind != MOAT_ADDR_SUBNET)
		return MOAT_PASS; /* the host's own traffic */
	if (info->net_flags & MOAT_NET_F_INTERNAL)
		return MOAT_DROP_INTERNAL_NETWORK;
	/* A later fragment of a datagram whose first one was not seen. */
	if (l4.fragment)
		return (info->net_flags & MOAT_NET_F_MASQUERADE) ? MOAT_DROP_NAT_FAILED : MOAT_PASS;
	/* A packet of no flow (policy changed since its container's hook
	 * judged it, or the host sent it): judged here, as the first hook
	 * that meets it, whether or not it can open a flow. */
	if (!tracked && rev) {
		__u32 rule_id;

		v = policy_verdict(rev, &l4.key, &rule_id);
		if (v)
			return v;
	}
	/* A segment of a connection nobody tracks: a masquerade entry made
	 * from it would let the world's segments in as its replies. */
	if (!tracked && !ct_opens_flow(&l4))
		return (info->net_flags & MOAT_NET_F_MASQUERADE) ? MOAT_DROP_NO_FLOW
								 : MOAT_PASS;
	if (!(info->net_flags & MOAT_NET_F_MASQUERADE)) {
		/* Routed as it is, like Docker without masquerade; tracked all the
		 * same, so that the replies are let in and nothing else is. */
		struct ct_sites at = {
			.orig_ifindex = ifindex,
			.orig_slot = slot,
			.orig_dir = MOAT_DIR_TO_WORLD,
			.reply_ifindex = ifindex,
			.reply_dir = MOAT_DIR_FROM_WORLD,
			.rev = rev,
			.rule_id = MOAT_RULE_NONE,
			.len = skb->len,
			.owner = l4.key.saddr,
		};

		if (tracked) {
			at.rev = tracked->policy_rev;
			at.rule_id = tracked->rule_id;
			at.quiet = 1;
		} else {
			v = ct_admit(at.owner, &at.owned);
			if (v)
				return v;
		}
		v = ct_create(&l4.key, &l4.key, &at, MOAT_CT_SNAT, 0, 0, 0, now);
		if (v)
			return ct_failed(v, MOAT_DROP_NAT_FAILED);
		return MOAT_PASS;
	}
	up = bpf_map_lookup_elem(&uplinks, &ifindex);
	if (!up)
		return MOAT_DROP_UNKNOWN_ENDPOINT;
	return nat_masquerade(skb, &l4, up, ifindex, rev, tracked, now);
}

SEC("tc")
int from_world(struct __sk_buff *skb)
{
	__u32 slot = uplink_stats_slot(skb->ifindex);

	/* An interface with no uplink entry is judged by nobody: fail closed. */
	if (!slot)
		return finish(skb, MOAT_DIR_FROM_WORLD, 0, MOAT_DROP_UNKNOWN_ENDPOINT);
	return finish(skb, MOAT_DIR_FROM_WORLD, slot, from_world_verdict(skb, slot));
}

SEC("tc")
int to_world(struct __sk_buff *skb)
{
	__u32 slot = uplink_stats_slot(skb->ifindex);

	if (!slot)
		return finish(skb, MOAT_DIR_TO_WORLD, 0, MOAT_DROP_UNKNOWN_ENDPOINT);
	return finish(skb, MOAT_DIR_TO_WORLD, slot, to_world_verdict(skb, slot));
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
