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
 */
#include "lib/common.h"
#include "lib/parse.h"
#include "lib/maps.h"
#include "lib/isolation.h"
#include "lib/verdict.h"

/*
 * IPv6 has no subnets in moat yet, so only the neighbour-discovery and MLD
 * messages that keep a link working pass; everything else is dropped rather
 * than passed unchecked. Containers may not act as routers.
 */
static __always_inline int ipv6_verdict(struct cursor *c, __u32 dir)
{
	struct ipv6hdr *ip6 = parse_ipv6(c);
	struct icmp6hdr *icmp6;
	int not_icmp;

	if (!ip6)
		return MOAT_DROP_INVALID_PACKET;
	icmp6 = parse_icmp6(c, ip6, &not_icmp);
	if (!icmp6)
		return not_icmp ? MOAT_DROP_IPV6_NOT_ENABLED : MOAT_DROP_INVALID_PACKET;

	switch (icmp6->icmp6_type) {
	case 130: /* MLD query */
	case 131: /* MLD report */
	case 132: /* MLD done */
	case 143: /* MLDv2 report */
		return MOAT_PASS;
	case 133: /* router solicitation */
	case 135: /* neighbour solicitation */
	case 136: /* neighbour advertisement */
		/* RFC 4861: ND messages that crossed a router are forged. */
		return ip6->hop_limit == 255 ? MOAT_PASS : MOAT_DROP_INVALID_PACKET;
	case 134: /* router advertisement */
	case 137: /* redirect */
		if (dir == MOAT_DIR_FROM_CONTAINER)
			return MOAT_DROP_ROUTER_ADVERT;
		return ip6->hop_limit == 255 ? MOAT_PASS : MOAT_DROP_INVALID_PACKET;
	default:
		return MOAT_DROP_IPV6_NOT_ENABLED;
	}
}

static __always_inline int judge(struct __sk_buff *skb, __u32 dir)
{
	const struct moat_endpoint *ep;
	struct cursor c;
	struct ethhdr *eth;
	__u32 ifindex = skb->ifindex;

	ep = bpf_map_lookup_elem(&endpoints, &ifindex);
	if (!ep)
		return MOAT_DROP_UNKNOWN_ENDPOINT;

	cursor_init(&c, skb);
	eth = parse_eth(&c);
	if (!eth)
		return MOAT_DROP_INVALID_PACKET;

	switch (eth->h_proto) {
	case bpf_htons(ETH_P_IP): {
		struct iphdr *ip = parse_ipv4(&c);

		if (!ip)
			return MOAT_DROP_INVALID_PACKET;
		if (dir == MOAT_DIR_FROM_CONTAINER) {
			if (ip->saddr != ep->ipv4)
				return MOAT_DROP_SPOOFED_SOURCE;
			return isolation_verdict(ep, ip->daddr);
		}
		return isolation_verdict(ep, ip->saddr);
	}
	case bpf_htons(ETH_P_ARP): {
		struct arp_eth_ipv4 *arp = parse_arp(&c);

		if (!arp)
			return MOAT_DROP_INVALID_PACKET;
		/* 0.0.0.0 is an RFC 5227 address probe. */
		if (dir == MOAT_DIR_FROM_CONTAINER && arp->spa != ep->ipv4 && arp->spa != 0)
			return MOAT_DROP_SPOOFED_SOURCE;
		return MOAT_PASS;
	}
	case bpf_htons(ETH_P_IPV6):
		return ipv6_verdict(&c, dir);
	default:
		return MOAT_DROP_UNSUPPORTED_L3;
	}
}

SEC("tc")
int from_container(struct __sk_buff *skb)
{
	return finish(skb, MOAT_DIR_FROM_CONTAINER, judge(skb, MOAT_DIR_FROM_CONTAINER));
}

SEC("tc")
int to_container(struct __sk_buff *skb)
{
	return finish(skb, MOAT_DIR_TO_CONTAINER, judge(skb, MOAT_DIR_TO_CONTAINER));
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
