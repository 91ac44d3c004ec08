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
#include "lib/addr.h"

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

/*
 * What the walk over an IPv6 packet's extension headers found.
 */
struct ipv6_ext {
	__u32 l4_off; /* the upper-layer header, as an offset from skb->data */
	__u8 proto; /* upper-layer protocol (IPPROTO_NONE: none follows) */
	__u8 has_frag; /* a fragment header was seen */
	__u8 fragment; /* ... with a non-zero offset: no upper-layer header here */
	__u8 more_frags; /* ... with the M flag: the datagram goes on */
	__be32 frag_id; /* ... its identification */
	__u8 routed; /* a routing header with segments left: bound elsewhere */
};

static __always_inline int ipv6_is_ext(__u8 next)
{
	return next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING || next == IPPROTO_DSTOPTS ||
	       next == IPPROTO_FRAGMENT || next == IPPROTO_AH;
}

/*
 * Walks the extension headers that start at `off` (right after the fixed
 * header, whose next header is `next`), at most MOAT_IPV6_MAX_EXT of them.
 * Returns 0, or -1 when the chain is cut short, malformed (hop-by-hop
 * anywhere but first, RFC 8200 4.1; two fragment headers) or longer: the
 * caller drops it, so nothing can hide an upper-layer header from moat.
 * Reads with bpf_skb_load_bytes(): the chain may leave the linear area, and
 * variable offsets stay simple for the verifier. A later fragment ends the
 * walk: what follows its fragment header is the middle of a datagram.
 */
static __always_inline int ipv6_walk_ext(struct __sk_buff *skb, __u32 off, __u8 next,
					 struct ipv6_ext *x)
{
	__u8 h[8];
	__u32 len;
	int i;

	x->has_frag = x->fragment = x->more_frags = x->routed = 0;
	x->frag_id = 0;
#pragma unroll
	for (i = 0; i < MOAT_IPV6_MAX_EXT; i++) {
		if (!ipv6_is_ext(next))
			break;
		if (next == IPPROTO_HOPOPTS && i)
			return -1;
		if (next == IPPROTO_FRAGMENT) {
			if (x->has_frag || bpf_skb_load_bytes(skb, off, h, 8))
				return -1;
			x->has_frag = 1;
			x->fragment = (*(__be16 *)(h + 2) & bpf_htons(0xfff8)) != 0;
			x->more_frags = h[3] & 1;
			x->frag_id = *(__be32 *)(h + 4);
			len = 8;
		} else {
			/* Every such header is at least 8 bytes long. */
			if (bpf_skb_load_bytes(skb, off, h, 4))
				return -1;
			len = next == IPPROTO_AH ? (h[1] + 2) * 4 : (h[1] + 1) * 8;
			if (next == IPPROTO_ROUTING && h[3])
				x->routed = 1;
		}
		next = h[0];
		off += len;
		if (x->fragment)
			break;
	}
	if (ipv6_is_ext(next) && !x->fragment)
		return -1;
	x->proto = next;
	x->l4_off = off;
	return 0;
}

/*
 * What connection tracking and NAT need of an IPv4 packet: its flow tuple
 * and where its headers are, as offsets from skb->data for the rewrite
 * helpers (direct-access pointers die with every rewrite).
 */
struct l4_info {
	struct moat_ct_key key; /* ports 0 for protocols without ports */
	__u32 l3_off;
	__u32 l4_off;
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 has_ports; /* key carries ports (or an ICMP echo id) */
	__u8 icmp_error; /* an ICMP error quoting another packet */
	__u8 fragment; /* a non-first fragment: no L4 header */
	__u8 more_frags; /* IP_MF: the datagram goes on in another fragment */
	__be16 ip_id;
	/* TCP, host order: the sequence and acknowledgement numbers, and the
	 * sequence space the segment takes (payload, SYN, FIN). */
	__u32 tcp_seq;
	__u32 tcp_ack;
	__u32 tcp_len;
};

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_ECHO 8
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12

/*
 * The sequence numbers of TCP header `h` (its first 13 bytes), whose
 * segment (header and payload) is `seg` bytes long: CT_FN(tcp_follow)'s.
 * A header longer than its segment takes no payload.
 */
static __always_inline void parse_tcp_seq(const __u8 *h, __u32 seg, __u32 *seq, __u32 *ack,
					  __u32 *len)
{
	__u32 doff = (h[12] >> 4) * 4;

	*seq = bpf_ntohl(*(__be32 *)(h + 4));
	*ack = bpf_ntohl(*(__be32 *)(h + 8));
	*len = (seg > doff ? seg - doff : 0) + !!(h[13] & TCP_FLAG_SYN) + (h[13] & TCP_FLAG_FIN);
}

/*
 * Reads the L4 header following `ip` (the cursor sits right after the IPv4
 * header). Returns 0, or -1 when the header the protocol promises is cut
 * short (TCP's by the frame or by the IP header's length). Unknown
 * protocols get a tuple without ports.
 */
static __always_inline int parse_l4(struct cursor *c, struct __sk_buff *skb, struct iphdr *ip,
				    struct l4_info *l4)
{
	void *data = (void *)(long)skb->data;
	__u8 *h = c->pos;
	__u32 ip_len, seg;

	l4->key.saddr = ip->saddr;
	l4->key.daddr = ip->daddr;
	l4->key.sport = 0;
	l4->key.dport = 0;
	l4->key.proto = ip->protocol;
	l4->key.pad[0] = l4->key.pad[1] = l4->key.pad[2] = 0;
	l4->l3_off = (void *)ip - data;
	l4->l4_off = (void *)h - data;
	l4->tcp_flags = 0;
	l4->tcp_seq = l4->tcp_ack = l4->tcp_len = 0;
	l4->icmp_type = 0;
	l4->has_ports = 0;
	l4->icmp_error = 0;
	l4->fragment = (ip->frag_off & bpf_htons(0x1fff)) != 0;
	l4->more_frags = (ip->frag_off & bpf_htons(0x2000)) != 0;
	l4->ip_id = ip->id;
	if (l4->fragment)
		return 0;

	switch (ip->protocol) {
	case IPPROTO_TCP:
		if ((void *)(h + 20) > c->end)
			return -1;
		l4->tcp_flags = h[13];
		/* What the header claims, but no more than the frame holds: a
		 * forged tot_len would move the conntrack window as far as it
		 * liked (the receiver drops such a frame, after moat saw it).
		 * parse_ipv4() refused a tot_len below the header: an IPv4 BIG
		 * TCP packet (tot_len 0; off unless a device's
		 * gso_ipv4_max_size is raised) is invalid before here. */
		ip_len = bpf_ntohs(ip->tot_len) - ip->ihl * 4;
		seg = skb->len - l4->l4_off;
		if (ip_len < seg)
			seg = ip_len;
		/* A header the frame holds only in its Ethernet padding (a
		 * tiny first fragment, RFC 1858): its flags are not what the
		 * receiver reassembles. */
		if (seg < 20)
			return -1;
		parse_tcp_seq(h, seg, &l4->tcp_seq, &l4->tcp_ack, &l4->tcp_len);
		/* fall through: the ports sit where UDP's and SCTP's do */
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		if ((void *)(h + 8) > c->end)
			return -1;
		l4->key.sport = *(__be16 *)h;
		l4->key.dport = *(__be16 *)(h + 2);
		l4->has_ports = 1;
		return 0;
	case IPPROTO_ICMP:
		if ((void *)(h + 8) > c->end)
			return -1;
		l4->icmp_type = h[0];
		/* The echo id stands on the requester's side of the tuple, so
		 * a reply's key is the request's reversed, and a request that
		 * merely carries a known id is not mistaken for a reply. */
		if (h[0] == ICMP_ECHO) {
			l4->key.sport = *(__be16 *)(h + 4);
			l4->has_ports = 1;
		} else if (h[0] == ICMP_ECHOREPLY) {
			l4->key.dport = *(__be16 *)(h + 4);
			l4->has_ports = 1;
		} else if (h[0] == ICMP_DEST_UNREACH || h[0] == ICMP_TIME_EXCEEDED ||
			   h[0] == ICMP_PARAMETERPROB) {
			l4->icmp_error = 1;
		}
		return 0;
	default:
		return 0;
	}
}

/*
 * What connection tracking needs of an IPv6 packet: struct l4_info with
 * IPv6's addresses and its Fragment header's 32-bit identification.
 */
struct l4_info6 {
	struct moat_ct6_key key;
	__u32 l3_off;
	__u32 l4_off;
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 has_ports;
	__u8 icmp_error;
	__u8 fragment;
	__u8 more_frags;
	__be32 ip_id;
	__u32 tcp_seq; /* as l4_info's */
	__u32 tcp_ack;
	__u32 tcp_len;
};

/*
 * The ports (ICMPv6 echo: the identifier, on the requester's side as for
 * ICMP) of an IPv6 packet whose extension headers `x` walked, whose
 * payload ends at `end`. Returns 0, or -1 when the header the protocol
 * promises is cut short. Reads with bpf_skb_load_bytes(), as the walk does.
 */
static __always_inline int parse_l4_6(struct __sk_buff *skb, const struct ipv6hdr *ip6,
				      const struct ipv6_ext *x, __u32 end, struct l4_info6 *l4)
{
	__u8 h[14] __attribute__((aligned(4))); /* parse_tcp_seq() loads 4 bytes at once */

	ip_set_v6(&l4->key.saddr, &ip6->saddr);
	ip_set_v6(&l4->key.daddr, &ip6->daddr);
	l4->key.sport = 0;
	l4->key.dport = 0;
	l4->key.proto = x->proto;
	l4->key.pad[0] = l4->key.pad[1] = l4->key.pad[2] = 0;
	l4->l3_off = ETH_HLEN;
	l4->l4_off = x->l4_off;
	l4->tcp_flags = 0;
	l4->tcp_seq = l4->tcp_ack = l4->tcp_len = 0;
	l4->icmp_type = 0;
	l4->has_ports = 0;
	l4->icmp_error = 0;
	l4->fragment = x->fragment;
	l4->more_frags = x->more_frags;
	l4->ip_id = x->frag_id;
	if (l4->fragment)
		return 0;

	switch (x->proto) {
	case IPPROTO_TCP:
		if (x->l4_off + 20 > end || bpf_skb_load_bytes(skb, x->l4_off, h, 14))
			return -1;
		l4->tcp_flags = h[13];
		parse_tcp_seq(h, end - x->l4_off, &l4->tcp_seq, &l4->tcp_ack, &l4->tcp_len);
		break;
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		if (x->l4_off + 8 > end || bpf_skb_load_bytes(skb, x->l4_off, h, 4))
			return -1;
		break;
	case IPPROTO_ICMPV6:
		if (x->l4_off + 8 > end || bpf_skb_load_bytes(skb, x->l4_off, h, 8))
			return -1;
		l4->icmp_type = h[0];
		if (h[0] == ICMPV6_ECHO_REQUEST) {
			l4->key.sport = *(__be16 *)(h + 4);
			l4->has_ports = 1;
		} else if (h[0] == ICMPV6_ECHO_REPLY) {
			l4->key.dport = *(__be16 *)(h + 4);
			l4->has_ports = 1;
		} else if (h[0] >= ICMPV6_DEST_UNREACH && h[0] <= ICMPV6_PARAMPROB) {
			l4->icmp_error = 1;
		}
		return 0;
	default:
		return 0;
	}
	l4->key.sport = *(__be16 *)h;
	l4->key.dport = *(__be16 *)(h + 2);
	l4->has_ports = 1;
	return 0;
}

/*
 * Headers can sit outside the linear area (GRO, GSO): pull enough for an
 * IPv4 header with options, an L4 header and, for ICMP errors, the quoted
 * headers, then re-read. Only called on the slow path, when a parser failed.
 */
static __always_inline int pull_headers(struct __sk_buff *skb)
{
	__u32 want = ETH_HLEN + 60 + 8 + 60 + 8;

	if (want > skb->len)
		want = skb->len;
	return bpf_skb_pull_data(skb, want);
}

#endif
