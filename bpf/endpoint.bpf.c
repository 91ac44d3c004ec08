// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * endpoint.bpf.c - TC programs on the host side of every container veth.
 *
 *   from_container: TC ingress, sees every frame the container sends.
 *   to_container:   TC egress, sees every frame delivered to the container,
 *                   bridged or routed.
 *
 * Both judge the packet with the same header library and leave through
 * finish(), so counters and drop reasons are kept in one place.
 *
 * Before isolation they consult connection tracking: a container dialling a
 * published port at a host address is rewritten to the publishing
 * container here (Docker's DNAT from a bridge), and the packets of a
 * tracked flow pass even between isolated networks, since that flow was
 * admitted through a published port.
 */
#include "lib/common.h"
#include "lib/addr.h"
#include "lib/parse.h"
#include "lib/maps.h"
#include "lib/isolation.h"
#include "lib/ct.h"
#include "lib/nat.h"
#include "lib/policy.h"
#include "lib/verdict.h"
#include "lib/redirect.h"

static __always_inline int mac_eq(const __u8 *a, const __u8 *b)
{
	return !((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4]) |
		 (a[5] ^ b[5]));
}

/* Modified EUI-64 of the container's MAC: its link-local address as the
 * kernel makes it by default (addr_gen_mode 0). */
static __always_inline void ep_link_local(const struct moat_endpoint *ep, union moat_ip *ll)
{
	ll->w[0] = bpf_htonl(0xfe800000);
	ll->w[1] = 0;
	ll->b[8] = ep->mac[0] ^ 2;
	ll->b[9] = ep->mac[1];
	ll->b[10] = ep->mac[2];
	ll->b[11] = 0xff;
	ll->b[12] = 0xfe;
	ll->b[13] = ep->mac[3];
	ll->b[14] = ep->mac[4];
	ll->b[15] = ep->mac[5];
}

/* One of the container's own IPv6 addresses: its link-local one, or its
 * address on the attachment's network. */
static __always_inline int ep_owns_v6(const struct moat_endpoint *ep, const union moat_ip *a)
{
	union moat_ip ll;

	if (!ip_is_zero(&ep->ipv6) && ip_eq(a, &ep->ipv6))
		return 1;
	ep_link_local(ep, &ll);
	return ip_eq(a, &ll);
}

/* ND options examined before a message is refused as having too many. */
#define MOAT_ND_MAX_OPTS 8

/*
 * The options of an ND message from the container, from `off` to `end`:
 * each link-layer address option of type `lla` (1 source, 2 target) must
 * carry the container's own MAC, or the neighbours would send another's
 * traffic to it. A zero-length option, or one beyond the message, is
 * malformed (RFC 4861 4.6).
 */
static __always_inline int nd_options_verdict(struct __sk_buff *skb, __u32 off, __u32 end,
					      __u8 lla, const struct moat_endpoint *ep)
{
	__u8 o[8];
	int i;

#pragma unroll
	for (i = 0; i < MOAT_ND_MAX_OPTS; i++) {
		if (off >= end)
			return MOAT_PASS;
		if (off + 8 > end || bpf_skb_load_bytes(skb, off, o, 8) || !o[1] ||
		    off + o[1] * 8 > end)
			return MOAT_DROP_INVALID_PACKET;
		if (o[0] == lla && (o[1] != 1 || !mac_eq(o + 2, ep->mac)))
			return MOAT_DROP_SPOOFED_MAC;
		off += o[1] * 8;
	}
	return off >= end ? MOAT_PASS : MOAT_DROP_INVALID_PACKET;
}

/*
 * What an ND message from the container claims must be its own: the
 * target of an advertisement is one of its addresses, and link-layer
 * options carry its MAC; the unspecified source (::) is for duplicate
 * address detection, router solicitation and MLD reports only.
 */
static __always_inline int nd_claims_verdict(struct __sk_buff *skb, const struct moat_endpoint *ep,
					     __u8 type, __u32 l4_off, __u32 end, int unspecified)
{
	union moat_ip target;

	switch (type) {
	case 133: /* router solicitation */
		return nd_options_verdict(skb, l4_off + 8, end, 1, ep);
	case 135: /* neighbour solicitation */
		return nd_options_verdict(skb, l4_off + 24, end, 1, ep);
	case 136: /* neighbour advertisement */
		if (unspecified)
			return MOAT_DROP_SPOOFED_SOURCE;
		if (bpf_skb_load_bytes(skb, l4_off + 8, &target, sizeof(target)))
			return MOAT_DROP_INVALID_PACKET;
		if (!ep_owns_v6(ep, &target))
			return MOAT_DROP_SPOOFED_SOURCE;
		return nd_options_verdict(skb, l4_off + 24, end, 2, ep);
	case 131: /* MLD report */
	case 132: /* MLD done */
	case 143: /* MLDv2 report */
		return MOAT_PASS;
	default:
		return unspecified ? MOAT_DROP_SPOOFED_SOURCE : MOAT_PASS;
	}
}

/*
 * The link messages IPv6 needs between a container and its network: MLD,
 * ND with the hop limit only a neighbour can send (RFC 4861: crossed a
 * router means forged), MLD from a link-local source. Containers may not
 * act as routers. MOAT_CONTINUE
 * for every other ICMPv6 type: data, judged as such.
 */
static __always_inline int link_message_verdict(__u8 type, __u8 hop_limit, __u32 dir,
						 const union moat_ip *src)
{
	switch (type) {
	case 130: /* MLD query */
	case 131: /* MLD report */
	case 132: /* MLD done */
	case 143: /* MLDv2 report */
		/* From a link-local source (:: for reports), which no router
		 * forwards (RFC 3810 5): with any other, a container of another
		 * network could route ICMPv6 of its choice to this one. */
		return ip_is_link_local(src) || ip_is_zero(src) ? MOAT_PASS
								: MOAT_DROP_INVALID_PACKET;
	case 133: /* router solicitation */
	case 135: /* neighbour solicitation */
	case 136: /* neighbour advertisement */
		return hop_limit == 255 ? MOAT_PASS : MOAT_DROP_INVALID_PACKET;
	case 134: /* router advertisement */
	case 137: /* redirect */
		if (dir == MOAT_DIR_FROM_CONTAINER)
			return MOAT_DROP_ROUTER_ADVERT;
		return hop_limit == 255 ? MOAT_PASS : MOAT_DROP_INVALID_PACKET;
	default:
		return MOAT_CONTINUE;
	}
}

/*
 * A packet for the container from a peer on its link (link-local source,
 * link messages): the host itself or another container of its network.
 * Addresses can't tell them apart (link-local ones are made by each side),
 * the way into the host can: the kernel sets ingress_ifindex on every
 * receive, so only what the host sends has none; what the bridge forwards
 * from another port, a container moat has not identified included, has
 * that port's. With icc off nothing of another container arrives.
 */
static __always_inline int link_peer_verdict(struct __sk_buff *skb, const struct moat_endpoint *ep)
{
	if ((ep->net_flags & MOAT_NET_F_ICC) || !skb->ingress_ifindex)
		return MOAT_PASS;
	return MOAT_DROP_ICC_DISABLED;
}

/*
 * Isolation for IPv6 data, by the peer (destination from a container,
 * source to it), as for IPv4 (isolation.h): `info` is the peer's entry in
 * `addrs6`. The world is judged at the uplink as for IPv4 (masquerade,
 * published ports, nothing else in). A peer on the link (link-local,
 * link-scope multicast) is judged where the packet arrives: there the way
 * it came tells the host from a container.
 */
static __always_inline int ipv6_peer_verdict(struct __sk_buff *skb, const struct moat_endpoint *ep,
					     const struct moat_addr_info *info, int link, __u32 dir)
{
	if (link)
		return dir == MOAT_DIR_FROM_CONTAINER ? MOAT_PASS : link_peer_verdict(skb, ep);
	return isolation_verdict(ep, info);
}

/*
 * A packet of a tracked IPv6 flow, either direction, as IPv4's: its entry
 * re-judged when the policy changed, its counters and TCP state followed,
 * rewritten where the entry says (a published port dialled at a host
 * address). MOAT_CONTINUE when the packet is of no tracked flow, or
 * carries the translated form of a flow whose replies are rewritten at
 * this very hook (forged: judged as new).
 */
static __always_inline int ipv6_known_flow(struct __sk_buff *skb, struct v6_scratch *s,
					   __u32 dir, __u32 rev, __u64 now)
{
	const struct l4_info6 *l4 = &s->l4;
	struct moat_ct6_entry *e = ct6_lookup(&l4->key, now);
	int v;

	if (e) {
		v = ct6_recheck(&l4->key, e, rev);
		if (v || !ct6_rewrites_here(e, skb->ifindex, dir))
			return v;
		v = ct6_update(e, l4, skb->len, now, 0);
		if (v)
			return v;
		v = nat_rewrite6(skb, l4, &e->xlated);
		if (v == MOAT_PASS && (e->flags & MOAT_CT_F_HAIRPIN))
			return hairpin_back(skb);
		return v;
	}
	ct6_reverse(&l4->key, &s->rkey);
	e = ct6_lookup(&s->rkey, now);
	if (!e || ct6_bypasses_rewrite(e, skb->ifindex, dir))
		return MOAT_CONTINUE;
	v = ct6_recheck(&s->rkey, e, rev);
	if (!v && e->kind == MOAT_CT_TRACK && e->ifindex == skb->ifindex && e->dir != dir)
		v = ct6_update(e, l4, skb->len, now, 1);
	return v;
}

/*
 * A new IPv6 flow from container `ep` to a port published at a host
 * address, as IPv4's dial_published(): the tuple is in the scratch, whose
 * `quoted` key (unused but for ICMPv6 errors) holds the backend's side for
 * policy. A BPF-to-BPF call: its frame is not added to the caller's.
 */
static __noinline int dial_published6(struct __sk_buff *skb, const struct moat_endpoint *ep,
				      struct v6_scratch *s, __u32 rev, __u64 now)
{
	const struct l4_info6 *l4 = &s->l4;
	struct moat_ct6_key *t = &s->quoted;
	struct moat_publish6_val *pub;
	struct ct6_sites at;
	__u32 rule_id;
	int hairpin, v;

	pub = publish_lookup6(l4->key.daddr, l4->key.dport, l4->key.proto);
	if (!pub)
		return MOAT_CONTINUE;
	if ((ep->net_flags & MOAT_NET_F_INTERNAL) && pub->net_id != ep->net_id)
		return MOAT_DROP_INTERNAL_NETWORK;
	if (!ct6_opens_flow(l4))
		return MOAT_DROP_NO_FLOW;
	*t = l4->key;
	t->daddr = pub->backend_ip;
	t->dport = pub->backend_port;
	if (pub->net_id != ep->net_id) {
		struct moat_container_net_key ck = { .container_id = pub->container_id,
						     .net_id = ep->net_id };
		union moat_ip *shared = bpf_map_lookup_elem(&container_addrs6, &ck);

		if (shared)
			t->daddr = *shared;
	}
	v = policy_verdict6(rev, t, &rule_id);
	if (v)
		return v;
	hairpin = ip_eq(&t->daddr, &ep->ipv6);
	at = (struct ct6_sites){
		.orig_ifindex = skb->ifindex,
		.orig_slot = ep->stats_slot,
		.orig_dir = MOAT_DIR_FROM_CONTAINER,
		.reply_ifindex = skb->ifindex,
		.reply_dir = hairpin ? MOAT_DIR_FROM_CONTAINER : MOAT_DIR_TO_CONTAINER,
		.rev = rev,
		.rule_id = rule_id,
		.len = skb->len,
		.owner = ct6_owner_of(ep->ipv6),
	};
	v = nat_publish6(skb, l4, t->daddr, pub, &at, hairpin, now);
	if (v)
		return v;
	return hairpin ? hairpin_back(skb) : MOAT_PASS;
}

/*
 * IPv6 data (anything but link messages), as IPv4's (ipv4_verdict), in two
 * steps, each a BPF-to-BPF call judge() makes in turn, so their frames are
 * never on the stack together: ipv6_flow_known(), then, for a packet of no
 * tracked flow, ipv6_flow_new(). Both find the packet's tuple in the
 * per-CPU scratch, where ipv6_verdict() left it.
 *
 * Flows are tracked between the container's address on this network and
 * a peer beyond the link (ipv6_tracked()). With a link-local address on
 * either side, or a link-scope multicast peer, every packet is judged on
 * its own, and policy sees the container by its network address whichever
 * of its own it used (its link-local one would make it the world, out of
 * its own rules' reach); a link peer is MOAT_ID_LINK to policy.
 */
static __always_inline int ipv6_tracked(const struct l4_info6 *l4, const struct moat_endpoint *ep,
					__u32 dir, int *mine)
{
	int from = dir == MOAT_DIR_FROM_CONTAINER;

	*mine = ip_eq(from ? &l4->key.saddr : &l4->key.daddr, &ep->ipv6);
	return *mine && !ip_is_link_scope(from ? &l4->key.daddr : &l4->key.saddr);
}

/*
 * A packet of a tracked flow passes, rewritten where its entry says, an
 * ICMPv6 error about one too; a later fragment takes its first one's
 * ports first. MOAT_CONTINUE for a packet of no tracked flow.
 */
static __noinline int ipv6_flow_known(struct __sk_buff *skb, const struct moat_endpoint *ep,
				      __u32 dir)
{
	struct v6_scratch *s = v6_scratch_get();
	struct l4_info6 *l4;
	int mine, tracked, v;

	if (!s)
		return MOAT_DROP_INVALID_PACKET;
	l4 = &s->l4;
	tracked = ipv6_tracked(l4, ep, dir, &mine);
	if (l4->fragment || l4->more_frags)
		ct6_frag_ports(l4);
	if (l4->icmp_error) {
		v = mine ? nat_icmp_error6(skb, l4, skb->ifindex, dir, s->now) : 0;
		if (v)
			return v < 0 ? v : MOAT_PASS;
	} else if (tracked && (!l4->fragment || l4->has_ports)) {
		return ipv6_known_flow(skb, s, dir, policy_current_rev(), s->now);
	}
	return MOAT_CONTINUE;
}

/* A new flow policy admitted, tracked. A BPF-to-BPF call: its frame (the
 * ring slot, the event) is not on the stack with dial_published6()'s. */
static __noinline int ipv6_track_new(struct __sk_buff *skb, const struct moat_endpoint *ep,
				     __u32 dir, __u32 rev, __u32 rule_id)
{
	struct v6_scratch *s = v6_scratch_get();
	const struct l4_info6 *l4;
	__u32 *owned;
	int v;

	if (!s)
		return MOAT_DROP_INVALID_PACKET;
	l4 = &s->l4;
	v = ct6_admit(ct6_owner_of(ep->ipv6), &owned);
	if (v)
		return v;
	v = ct6_track(l4, skb->ifindex, ep->stats_slot, dir, rev, rule_id, skb->len,
		      ct6_owner_of(ep->ipv6), owned, s->now);
	return v ? ct_failed(v, MOAT_PASS) : MOAT_PASS;
}

/*
 * A packet of no tracked flow: checked against the ports published at host
 * addresses, then judged by isolation, then policy, and tracked once
 * admitted while policies exist.
 */
static __noinline int ipv6_flow_new(struct __sk_buff *skb, const struct moat_endpoint *ep,
				    __u32 dir)
{
	int from = dir == MOAT_DIR_FROM_CONTAINER;
	struct v6_scratch *s = v6_scratch_get();
	__u32 rev = policy_current_rev();
	struct moat_addr_info *info;
	union moat_ip *own, *peer;
	struct l4_info6 *l4;
	__u32 rule_id;
	__u64 now;
	int mine, tracked, link, v;

	if (!s)
		return MOAT_DROP_INVALID_PACKET;
	l4 = &s->l4;
	now = s->now;
	tracked = ipv6_tracked(l4, ep, dir, &mine);
	own = from ? &l4->key.saddr : &l4->key.daddr;
	peer = from ? &l4->key.daddr : &l4->key.saddr;
	link = ip_is_link_scope(peer);
	info = link ? NULL : addr_lookup6(*peer);
	if (from && tracked && !l4->fragment && !l4->icmp_error && l4->has_ports &&
	    l4->key.proto != IPPROTO_ICMPV6 && is_host_addr(info)) {
		v = dial_published6(skb, ep, s, rev, now);
		if (v != MOAT_CONTINUE)
			return v;
	}
	v = ipv6_peer_verdict(skb, ep, info, link, dir);
	if (v || !rev)
		return v;
	*own = ep->ipv6;
	v = policy_verdict6(rev, &l4->key, &rule_id);
	if (v || !tracked || l4->fragment || l4->icmp_error || !ct6_opens_flow(l4))
		return v;
	return ipv6_track_new(skb, ep, dir, rev, rule_id);
}

/*
 * IPv6 at a container's veth. The extension-header chain is walked to its
 * end whatever follows. From the container the source is its own
 * (link-local or its network's), :: only where ND allows it. Link
 * messages (link_message_verdict) pass unfragmented, between peers the
 * network lets talk; everything else is data (ipv6_flow_known(),
 * ipv6_flow_new()).
 *
 * A BPF-to-BPF call, not inlined: the IPv4 path's frames stay as they are.
 */
static __noinline int ipv6_verdict(struct __sk_buff *skb, const struct moat_endpoint *ep,
				   __u32 dir)
{
	int from = dir == MOAT_DIR_FROM_CONTAINER;
	struct v6_scratch *s;
	struct ipv6hdr ip6;
	struct ipv6_ext x;
	union moat_ip src;
	__u8 type;
	__u32 end;
	int unspecified, v;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6)) || ip6.version != 6)
		return MOAT_DROP_INVALID_PACKET;
	end = ETH_HLEN + sizeof(ip6) + bpf_ntohs(ip6.payload_len);
	if (end > skb->len)
		return MOAT_DROP_INVALID_PACKET;
	ip_set_v6(&src, &ip6.saddr);
	unspecified = ip_is_zero(&src);
	if (from && !unspecified && !ep_owns_v6(ep, &src))
		return MOAT_DROP_SPOOFED_SOURCE;
	if (ipv6_walk_ext(skb, ETH_HLEN + sizeof(ip6), ip6.nexthdr, &x) || x.l4_off > end)
		return MOAT_DROP_IPV6_EXT_HEADERS;
	if (x.proto == IPPROTO_ICMPV6 && !x.fragment) {
		if (x.l4_off + 4 > end || bpf_skb_load_bytes(skb, x.l4_off, &type, 1))
			return MOAT_DROP_INVALID_PACKET;
		v = link_message_verdict(type, ip6.hop_limit, dir, &src);
		if (v != MOAT_CONTINUE) {
			/* Link messages are never fragmented (RFC 6980). */
			if (x.has_frag && !v)
				v = MOAT_DROP_INVALID_PACKET;
			if (v)
				return from && unspecified ? MOAT_DROP_SPOOFED_SOURCE : v;
			if (from)
				return nd_claims_verdict(skb, ep, type, x.l4_off, end, unspecified);
			return link_peer_verdict(skb, ep);
		}
	}
	if (from && unspecified)
		return MOAT_DROP_SPOOFED_SOURCE;
	if (ip_is_zero(&ep->ipv6))
		return MOAT_DROP_IPV6_NOT_ENABLED;
	s = v6_scratch_get();
	if (!s || parse_l4_6(skb, &ip6, &x, end, &s->l4))
		return MOAT_DROP_INVALID_PACKET;
	/* Read once for the steps that follow. */
	s->now = moat_now();
	return MOAT_CONTINUE;
}

/*
 * A container sends from its own MAC only, or the bridge would learn
 * another container's MAC on its port and forward that one's frames to
 * it; and it receives only frames for its own MAC or a group address, so
 * frames a bridge floods or misforwards stay out.
 */
static __always_inline int mac_verdict(const struct ethhdr *eth, const struct moat_endpoint *ep,
				       __u32 dir)
{
	if (dir == MOAT_DIR_FROM_CONTAINER)
		return mac_eq(eth->h_source, ep->mac) ? MOAT_PASS : MOAT_DROP_SPOOFED_MAC;
	/* The I/G bit: multicast and broadcast. */
	if ((eth->h_dest[0] & 1) || mac_eq(eth->h_dest, ep->mac))
		return MOAT_PASS;
	return MOAT_DROP_FOREIGN_MAC;
}

/* Ethernet pads an ARP packet to 60 bytes; more is a payload of its own. */
#define MOAT_ARP_MAX_FRAME 60

/*
 * ARP is judged like the traffic it prepares: the sender must be who it
 * says (addresses, both kinds), and a container receives ARP only from
 * peers it may talk to. A probe (sender 0.0.0.0, RFC 5227) comes from a
 * container of the same network.
 */
static __always_inline int arp_verdict(struct __sk_buff *skb, const struct moat_endpoint *ep,
				       const struct arp_eth_ipv4 *arp, __u32 dir)
{
	if (skb->len > MOAT_ARP_MAX_FRAME)
		return MOAT_DROP_INVALID_PACKET;
	if (dir == MOAT_DIR_FROM_CONTAINER) {
		if (!mac_eq(arp->sha, ep->mac))
			return MOAT_DROP_SPOOFED_MAC;
		if (arp->spa != ep->ipv4 && arp->spa != 0)
			return MOAT_DROP_SPOOFED_SOURCE;
		return MOAT_PASS;
	}
	if (arp->spa == 0)
		return (ep->net_flags & MOAT_NET_F_ICC) ? MOAT_PASS : MOAT_DROP_ICC_DISABLED;
	return isolation_verdict(ep, addr_lookup(arp->spa));
}

/*
 * A new flow from container `ep` to a port published at a host address
 * (the caller checked that the destination is one and has a port).
 * A BPF-to-BPF call, not inlined: each call frame keeps its own stack
 * and the programs stay under the verifier's 512-byte frame limit.
 */
static __noinline int dial_published(struct __sk_buff *skb, const struct moat_endpoint *ep,
					  const struct l4_info *l4, __u32 rev, __u64 now)
{
	struct moat_publish_val *pub;
	struct moat_ct_key t;
	struct ct_sites at;
	__u32 rule_id;
	int hairpin, v;

	pub = publish_lookup(l4->key.daddr, l4->key.dport, l4->key.proto);
	if (!pub)
		return MOAT_CONTINUE;
	if ((ep->net_flags & MOAT_NET_F_INTERNAL) && pub->net_id != ep->net_id)
		return MOAT_DROP_INTERNAL_NETWORK;
	if (!ct_opens_flow(l4))
		return MOAT_DROP_NO_FLOW;
	/* Policy sees the container behind the port, as for any other client. */
	t = l4->key;
	t.daddr = pub->backend_ip;
	t.dport = pub->backend_port;
	if (pub->net_id != ep->net_id) {
		struct moat_container_net_key ck = { .container_id = pub->container_id,
						     .net_id = ep->net_id };
		__be32 *shared = bpf_map_lookup_elem(&container_addrs, &ck);

		if (shared)
			t.daddr = *shared;
	}
	v = policy_verdict(rev, &t, &rule_id);
	if (v)
		return v;
	hairpin = t.daddr == ep->ipv4;
	/* Every field set: the verifier lets privileged programs read
	 * uninitialised stack, so a forgotten one would be garbage. */
	at = (struct ct_sites){
		.orig_ifindex = skb->ifindex,
		.orig_slot = ep->stats_slot,
		.orig_dir = MOAT_DIR_FROM_CONTAINER,
		.reply_ifindex = skb->ifindex,
		.reply_dir = hairpin ? MOAT_DIR_FROM_CONTAINER : MOAT_DIR_TO_CONTAINER,
		.rev = rev,
		.rule_id = rule_id,
		.len = skb->len,
		.owner = ep->ipv4,
	};
	v = nat_publish(skb, l4, t.daddr, pub, &at, hairpin, now);
	if (v)
		return v;
	return hairpin ? hairpin_back(skb) : MOAT_PASS;
}

/*
 * IPv4 after the spoofing check: a packet of a tracked flow (either
 * direction) passes, rewritten where its entry says; a new flow is checked
 * against published ports, then isolation, then policy, and tracked once
 * admitted while policies exist. Returns a verdict (MOAT_REDIRECT_BACK
 * included; from the container MOAT_REDIRECT_PEER, where the fast path
 * took a packet of a known flow, lib/redirect.h).
 */
static __always_inline int ipv4_verdict(struct __sk_buff *skb, const struct moat_endpoint *ep,
					struct l4_info *l4, __u32 dir)
{
	__u32 ifindex = skb->ifindex;
	__u64 now = moat_now();
	__u32 rev = policy_current_rev();
	__be32 peer = dir == MOAT_DIR_FROM_CONTAINER ? l4->key.daddr : l4->key.saddr;
	/* What a container receives belongs to a flow only when addressed to
	 * it: a broadcast or multicast packet, tracked at its sender's hook,
	 * is judged again at every receiver (icc, the receiver's policy). */
	int addressed = dir == MOAT_DIR_FROM_CONTAINER || l4->key.daddr == ep->ipv4;
	struct moat_addr_info *info;
	struct moat_ct_entry *e;
	struct moat_ct_key rkey;
	__u32 rule_id, *owned;
	int v;

	if (l4->fragment || l4->more_frags)
		ct_frag_ports(l4);
	if (l4->icmp_error) {
		/* Errors about a tracked flow are part of it (RELATED). */
		v = nat_icmp_error(skb, l4, ifindex, dir, now);
		if (v)
			return v < 0 ? v : MOAT_PASS;
	} else if (addressed && (!l4->fragment || l4->has_ports)) {
		e = ct_lookup(&l4->key, now);
		if (e) {
			v = ct_recheck(&l4->key, e, rev);
			if (v)
				return v;
			if (ct_rewrites_here(e, ifindex, dir)) {
				v = ct_update(e, l4, skb->len, now, 0);
				if (v)
					return v;
				v = nat_rewrite(skb, l4, &e->xlated);
				if (v == MOAT_PASS && (e->flags & MOAT_CT_F_HAIRPIN))
					return hairpin_back(skb);
				/* A tracked flow's entry translates nothing: its
				 * packet is still as parsed, any other's is not. */
				if (v || e->kind != MOAT_CT_TRACK)
					return v;
			}
			/* Straight into the destination's namespace when its
			 * hook would pass the packet as it is (lib/redirect.h). */
			if (dir == MOAT_DIR_FROM_CONTAINER)
				return fast_peer_orig(skb, ep, l4, e);
			return MOAT_PASS;
		}
		/* A reply, or the original direction after DNAT (known by its reply). */
		ct_reverse(&l4->key, &rkey);
		e = ct_lookup(&rkey, now);
		if (e && !ct_bypasses_rewrite(e, ifindex, dir)) {
			v = ct_recheck(&rkey, e, rev);
			if (v)
				return v;
			if (e->kind == MOAT_CT_TRACK && e->ifindex == ifindex && e->dir != dir) {
				v = ct_update(e, l4, skb->len, now, 1);
				if (v)
					return v;
			}
			if (dir == MOAT_DIR_FROM_CONTAINER)
				return fast_peer_reply(skb, ep, l4, e, now);
			return MOAT_PASS;
		}
	}

	/* One LPM lookup of the peer serves the published-port check and isolation. */
	info = addr_lookup(peer);
	if (dir == MOAT_DIR_FROM_CONTAINER && !l4->fragment && !l4->icmp_error && l4->has_ports &&
	    l4->key.proto != IPPROTO_ICMP && is_host_addr(info)) {
		v = dial_published(skb, ep, l4, rev, now);
		if (v != MOAT_CONTINUE)
			return v;
	}
	v = isolation_verdict(ep, info);
	if (v != MOAT_PASS || !rev)
		return v;
	/* The receiver's own policy decides; nothing of it is tracked. */
	if (!addressed)
		l4->key.daddr = ep->ipv4;
	/* A later fragment whose first one was not seen has no ports: only
	 * rules for a whole protocol can admit it. */
	v = policy_verdict(rev, &l4->key, &rule_id);
	if (v != MOAT_PASS || l4->fragment || l4->icmp_error || !addressed || !ct_opens_flow(l4))
		return v;
	v = ct_admit(ep->ipv4, &owned);
	if (v)
		return v;
	v = ct_track(l4, ifindex, ep->stats_slot, dir, rev, rule_id, skb->len, ep->ipv4,
		     owned, now);
	return v ? ct_failed(v, MOAT_PASS) : MOAT_PASS;
}

/*
 * IPv4 from its header on. A BPF-to-BPF call, not inlined: the IPv4 and
 * IPv6 paths each have their own frame, and judge()'s, which both add to,
 * stays small; the verifier's 512 bytes are per call chain.
 */
static __noinline int ipv4_judge(struct __sk_buff *skb, const struct moat_endpoint *ep, __u32 dir)
{
	struct l4_info l4;
	struct iphdr *ip;
	struct cursor c;

	cursor_init(&c, skb);
	if (!parse_eth(&c) || !(ip = parse_ipv4(&c)))
		return MOAT_DROP_INVALID_PACKET;
	if (dir == MOAT_DIR_FROM_CONTAINER && ip->saddr != ep->ipv4)
		return MOAT_DROP_SPOOFED_SOURCE;
	if (parse_l4(&c, skb, ip, &l4)) {
		/* The L4 header is beyond the linear area: pull, re-read. */
		if (pull_headers(skb))
			return MOAT_DROP_INVALID_PACKET;
		cursor_init(&c, skb);
		if (!parse_eth(&c) || !(ip = parse_ipv4(&c)) || parse_l4(&c, skb, ip, &l4))
			return MOAT_DROP_INVALID_PACKET;
	}
	return ipv4_verdict(skb, ep, &l4, dir);
}

/* Sets *slot to the attachment's counter slot and *net_flags to its
 * network's flags once the endpoint is known. */
static __always_inline int judge(struct __sk_buff *skb, __u32 dir, __u32 *slot, __u32 *net_flags)
{
	const struct moat_endpoint *ep;
	struct cursor c;
	struct ethhdr *eth;
	__u32 ifindex = skb->ifindex;
	int v;

	ep = bpf_map_lookup_elem(&endpoints, &ifindex);
	if (!ep)
		return MOAT_DROP_UNKNOWN_ENDPOINT;
	*slot = ep->stats_slot;
	*net_flags = ep->net_flags;
	/* veth keeps an 802.1Q tag in the skb's metadata, not in the frame:
	 * what follows would judge the inner packet as if it were untagged. */
	if (skb->vlan_present)
		return MOAT_DROP_UNSUPPORTED_L3;

	cursor_init(&c, skb);
	eth = parse_eth(&c);
	if (!eth)
		return MOAT_DROP_INVALID_PACKET;
	v = mac_verdict(eth, ep, dir);
	if (v)
		return v;

	switch (eth->h_proto) {
	case bpf_htons(ETH_P_IP):
		return ipv4_judge(skb, ep, dir);
	case bpf_htons(ETH_P_ARP): {
		struct arp_eth_ipv4 *arp = parse_arp(&c);

		if (!arp)
			return MOAT_DROP_INVALID_PACKET;
		return arp_verdict(skb, ep, arp, dir);
	}
	case bpf_htons(ETH_P_IPV6):
		v = ipv6_verdict(skb, ep, dir);
		if (v == MOAT_CONTINUE)
			v = ipv6_flow_known(skb, ep, dir);
		return v == MOAT_CONTINUE ? ipv6_flow_new(skb, ep, dir) : v;
	default:
		return MOAT_DROP_UNSUPPORTED_L3;
	}
}

SEC("tc")
int from_container(struct __sk_buff *skb)
{
	__u32 slot = 0, flags = 0;
	/* MOAT_REDIRECT_PEER: the verdict took the fast path (lib/redirect.h). */
	int v = judge(skb, MOAT_DIR_FROM_CONTAINER, &slot, &flags);

	/* The network's bridge lets through only what was judged here. */
	if (v == MOAT_PASS && (flags & MOAT_NET_F_GUARDED))
		skb->mark |= MOAT_MARK_JUDGED;
	return finish(skb, MOAT_DIR_FROM_CONTAINER, slot, v);
}

SEC("tc")
int to_container(struct __sk_buff *skb)
{
	__u32 slot = 0, flags = 0;
	int v = judge(skb, MOAT_DIR_TO_CONTAINER, &slot, &flags);

	return finish(skb, MOAT_DIR_TO_CONTAINER, slot, v);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
