/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * parse.h - bounds-checked header parsers over direct packet access.
 *
 * A cursor walks the packet; each parser checks that its whole header lies
 * inside [pos, end), advances the cursor past it and returns the header, or
 * returns NULL when the packet is too short or the header is malformed.
 * Callers turn NULL into MOAT_DROP_INVALID_PACKET: nothing is passed on a
 * header we could not read.
 */
#ifndef MOAT_LIB_PARSE_H
#define MOAT_LIB_PARSE_H

#include "lib/common.h"

struct cursor {
	void *pos;
	void *end;
};

/* ARP for Ethernet/IPv4, which is the only kind a container may send. */
struct arp_eth_ipv4 {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 oper;
	__u8 sha[ETH_ALEN];
	__be32 spa;
	__u8 tha[ETH_ALEN];
	__be32 tpa;
} __attribute__((packed));

static __always_inline void cursor_init(struct cursor *c, struct __sk_buff *skb)
{
	c->pos = (void *)(long)skb->data;
	c->end = (void *)(long)skb->data_end;
}

static __always_inline struct ethhdr *parse_eth(struct cursor *c)
{
	struct ethhdr *eth = c->pos;

	if ((void *)(eth + 1) > c->end)
		return NULL;
	c->pos = eth + 1;
	return eth;
}

static __always_inline struct arp_eth_ipv4 *parse_arp(struct cursor *c)
{
	struct arp_eth_ipv4 *arp = c->pos;

	if ((void *)(arp + 1) > c->end)
		return NULL;
	if (arp->htype != bpf_htons(1) || arp->ptype != bpf_htons(ETH_P_IP) ||
	    arp->hlen != ETH_ALEN || arp->plen != 4)
		return NULL;
	c->pos = arp + 1;
	return arp;
}

/*
 * Checks version, header length (options included) and that the total
 * length covers the header; the cursor ends after the options.
 */
static __always_inline struct iphdr *parse_ipv4(struct cursor *c)
{
	struct iphdr *ip = c->pos;
	__u32 hlen;

	if ((void *)(ip + 1) > c->end)
		return NULL;
	if (ip->version != 4 || ip->ihl < 5)
		return NULL;
	hlen = ip->ihl * 4;
	if (bpf_ntohs(ip->tot_len) < hlen)
		return NULL;
	if (c->pos + hlen > c->end)
		return NULL;
	c->pos += hlen;
	return ip;
}

static __always_inline struct ipv6hdr *parse_ipv6(struct cursor *c)
{
	struct ipv6hdr *ip6 = c->pos;

	if ((void *)(ip6 + 1) > c->end)
		return NULL;
	if (ip6->version != 6)
		return NULL;
	c->pos = ip6 + 1;
	return ip6;
}

/*
 * Returns the ICMPv6 header of a neighbour-discovery or MLD packet, skipping
 * the one hop-by-hop header MLD carries (router alert). Sets *not_icmp when
 * the packet is something else, so callers can tell "not ND" from "broken".
 */
static __always_inline struct icmp6hdr *parse_icmp6(struct cursor *c, struct ipv6hdr *ip6,
						    int *not_icmp)
{
	__u8 next = ip6->nexthdr;
	struct icmp6hdr *icmp6;

	*not_icmp = 0;
	if (next == IPPROTO_HOPOPTS) {
		__u8 *opt = c->pos;

		if ((void *)(opt + 2) > c->end)
			return NULL;
		next = opt[0];
		if (c->pos + (opt[1] + 1) * 8 > c->end)
			return NULL;
		c->pos += (opt[1] + 1) * 8;
	}
	if (next != IPPROTO_ICMPV6) {
		*not_icmp = 1;
		return NULL;
	}
	icmp6 = c->pos;
	if ((void *)(icmp6 + 1) > c->end)
		return NULL;
	c->pos = icmp6 + 1;
	return icmp6;
}

#endif
