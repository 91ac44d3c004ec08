// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * floor.bpf.c - the data-path floor of moat_kernel_bench: a TC program that
 * parses a packet the way moat's programs must before they can judge it
 * (Ethernet, then IPv4 and its L4 header, or IPv6, its extension headers
 * and its L4 header, with lib/parse.h's own parsers) and passes it
 * (parse_only: no map, no verdict, no connection tracking): whatever moat
 * costs above this is what enforcing costs, so each moat path is reported
 * as a ratio to it.
 * pass_only, which does nothing at all, shows how much of any figure is
 * BPF_PROG_TEST_RUN's own.
 *
 * lookup_ct and lookup_endpoint_ct add what moat's design cannot skip on
 * an IPv4 packet of a known flow: a hash lookup of the flow's tuple in a
 * table of the size and entry type of moat's `ct`, and the entry's refresh
 * (packets, bytes, expiry from the coarse clock); the second first looks
 * up the interface's entry in a table like `endpoints` and checks the
 * source address, as from_container must. They are no part of moat: they
 * show how much of its cost two lookups already are.
 *
 * The flow tuple is folded into skb->cb[0], so that the compiler keeps
 * every read the parsers make (a parse whose result nobody uses would be
 * optimised away and the floor would be lower than any real parser's).
 */
#include "lib/common.h"
#include "lib/parse.h"

static __always_inline __u32 fold4(const struct l4_info *l4)
{
	return l4->key.saddr ^ l4->key.daddr ^ ((__u32)l4->key.sport << 16) ^ l4->key.dport ^
	       l4->key.proto ^ l4->tcp_flags;
}

static __always_inline __u32 fold6(const struct l4_info6 *l4)
{
	__u32 h = ((__u32)l4->key.sport << 16) ^ l4->key.dport ^ l4->key.proto ^ l4->tcp_flags;
	int i;

#pragma unroll
	for (i = 0; i < 4; i++)
		h ^= l4->key.saddr.w[i] ^ l4->key.daddr.w[i];
	return h;
}

/* IPv4 as moat's ipv4_judge() reads it, pull and re-read included: 0, or
 * -1 for a packet it would drop. */
static __always_inline int floor_parse4(struct __sk_buff *skb, struct l4_info *l4)
{
	struct iphdr *ip;
	struct cursor c;

	cursor_init(&c, skb);
	if (!parse_eth(&c) || !(ip = parse_ipv4(&c)))
		return -1;
	if (parse_l4(&c, skb, ip, l4)) {
		if (pull_headers(skb))
			return -1;
		cursor_init(&c, skb);
		if (!parse_eth(&c) || !(ip = parse_ipv4(&c)) || parse_l4(&c, skb, ip, l4))
			return -1;
	}
	return 0;
}

static __noinline int floor_ipv4(struct __sk_buff *skb)
{
	struct l4_info l4;

	if (floor_parse4(skb, &l4))
		return TC_ACT_SHOT;
	skb->cb[0] = fold4(&l4);
	return TC_ACT_OK;
}

/* IPv6 as moat's ipv6_verdict() reads it: the fixed header, the extension
 * header walk, the L4 header. */
static __noinline int floor_ipv6(struct __sk_buff *skb)
{
	struct l4_info6 l4;
	struct ipv6hdr ip6;
	struct ipv6_ext x;
	__u32 end;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6)) || ip6.version != 6)
		return TC_ACT_SHOT;
	end = ETH_HLEN + sizeof(ip6) + bpf_ntohs(ip6.payload_len);
	if (end > skb->len)
		return TC_ACT_SHOT;
	if (ipv6_walk_ext(skb, ETH_HLEN + sizeof(ip6), ip6.nexthdr, &x) || x.l4_off > end)
		return TC_ACT_SHOT;
	if (parse_l4_6(skb, &ip6, &x, end, &l4))
		return TC_ACT_SHOT;
	skb->cb[0] = fold6(&l4);
	return TC_ACT_OK;
}

SEC("tc")
int parse_only(struct __sk_buff *skb)
{
	struct cursor c;
	struct ethhdr *eth;

	cursor_init(&c, skb);
	eth = parse_eth(&c);
	if (!eth)
		return TC_ACT_SHOT;
	switch (eth->h_proto) {
	case bpf_htons(ETH_P_IP):
		return floor_ipv4(skb);
	case bpf_htons(ETH_P_IPV6):
		return floor_ipv6(skb);
	default:
		return TC_ACT_SHOT;
	}
}

/* The same sizes and entry types as lib/maps.h's `endpoints` and `ct`: a
 * table's buckets are as many as its entries (rounded up to a power of 2). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MOAT_MAX_ENDPOINTS);
	__type(key, __u32);
	__type(value, struct moat_endpoint);
} floor_endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MOAT_MAX_CT);
	__type(key, struct moat_ct_key);
	__type(value, struct moat_ct_entry);
} floor_ct SEC(".maps");

/* An entry the bench seeded, refreshed as a tracker must; a miss drops, so
 * that a run that did not take this path cannot pass for one. */
static __always_inline int floor_track(struct __sk_buff *skb, const struct l4_info *l4)
{
	struct moat_ct_entry *e = bpf_map_lookup_elem(&floor_ct, &l4->key);

	if (!e)
		return TC_ACT_SHOT;
	e->packets++;
	e->bytes += skb->len;
	e->expires_ns = moat_now() + 300 * 1000000000ull;
	return TC_ACT_OK;
}

static __noinline int floor_ipv4_tracked(struct __sk_buff *skb, const struct moat_endpoint *ep)
{
	struct l4_info l4;

	if (floor_parse4(skb, &l4) || (ep && l4.key.saddr != ep->ipv4))
		return TC_ACT_SHOT;
	skb->cb[0] = fold4(&l4);
	return floor_track(skb, &l4);
}

SEC("tc")
int lookup_ct(struct __sk_buff *skb)
{
	return floor_ipv4_tracked(skb, NULL);
}

SEC("tc")
int lookup_endpoint_ct(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	const struct moat_endpoint *ep = bpf_map_lookup_elem(&floor_endpoints, &ifindex);

	if (!ep)
		return TC_ACT_SHOT;
	return floor_ipv4_tracked(skb, ep);
}

/* Nothing at all: what BPF_PROG_TEST_RUN itself costs a repetition, so that
 * the floor's own parsing can be told from the harness's overhead. */
SEC("tc")
int pass_only(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
