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
 *
 * IPv4 and IPv6 alike (lib/world_impl.h, once per family): IPv6 is
 * masqueraded behind the uplink's global IPv6 address (NAT66, as Docker
 * does), or routed as it is where the network does not masquerade.
 */
#include "lib/common.h"
#include "lib/parse.h"
#include "lib/maps.h"
#include "lib/ct.h"
#include "lib/nat.h"
#include "lib/policy.h"
#include "lib/verdict.h"
#include "lib/fast_reply.h"

/* Parses an IPv4 packet up to the L4 header, pulling non-linear headers in once. */
static __always_inline int uplink_parse(struct __sk_buff *skb, struct l4_info *l4)
{
	struct cursor c;
	struct iphdr *ip;
	int pulled = 0;

again:
	cursor_init(&c, skb);
	if (!parse_eth(&c))
		return MOAT_DROP_INVALID_PACKET;
	ip = parse_ipv4(&c);
	if (!ip || parse_l4(&c, skb, ip, l4)) {
		if (pulled++ || pull_headers(skb))
			return MOAT_DROP_INVALID_PACKET;
		goto again;
	}
	return MOAT_PASS;
}

static __always_inline int ct_uplink_has_addr(const struct moat_uplink *up)
{
	return 1; /* every uplink has its IPv4 address (apply requires one) */
}

static __always_inline int ct6_uplink_has_addr(const struct moat_uplink *up)
{
	return !ip_is_zero(&up->ipv6);
}

#define CT_FAM 4
#include "lib/world_impl.h"
#undef CT_FAM
#define CT_FAM 6
#include "lib/world_impl.h"
#undef CT_FAM

/*
 * An IPv6 packet at an uplink, its extension headers walked as at a
 * container's veth, into the per-CPU scratch (lib/maps.h). One moat cannot
 * read is the host's own business, unless it comes from or goes to a
 * container network: dropped there (the reason, else MOAT_PASS).
 * MOAT_CONTINUE when s->l4 holds its tuple.
 */
static __always_inline int uplink_parse6(struct __sk_buff *skb, struct v6_scratch *s, int from)
{
	struct moat_addr_info *info;
	struct ipv6_ext x;
	union moat_ip a;
	__u32 end;
	int v = 0;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &s->inner, sizeof(s->inner)) || s->inner.version != 6)
		return MOAT_DROP_INVALID_PACKET;
	end = ETH_HLEN + sizeof(s->inner) + bpf_ntohs(s->inner.payload_len);
	if (end > skb->len)
		v = MOAT_DROP_INVALID_PACKET;
	else if (ipv6_walk_ext(skb, ETH_HLEN + sizeof(s->inner), s->inner.nexthdr, &x) ||
		 x.l4_off > end)
		v = MOAT_DROP_IPV6_EXT_HEADERS;
	else if (from && x.routed)
		/* The destination is only the next hop: the host, which would
		 * forward the packet to the next segment, a container's
		 * address too. Whatever that is, it was not judged here. */
		return MOAT_DROP_IPV6_EXT_HEADERS;
	else if (parse_l4_6(skb, &s->inner, &x, end, &s->l4))
		v = MOAT_DROP_INVALID_PACKET;
	if (!v)
		return MOAT_CONTINUE;
	ip_set_v6(&a, from ? &s->inner.daddr : &s->inner.saddr);
	info = addr_lookup6(a);
	return info && info->kind == MOAT_ADDR_SUBNET ? v : MOAT_PASS;
}

/*
 * Each family and direction in a BPF-to-BPF call of its own: the program's
 * frame stays small, and each path has the verifier's 512 bytes to itself
 * (they are per call chain).
 */
static __noinline int from_world_ipv6(struct __sk_buff *skb, __u32 slot)
{
	struct v6_scratch *s = v6_scratch_get();
	int v;

	if (!s)
		return MOAT_DROP_INVALID_PACKET;
	v = uplink_parse6(skb, s, 1);
	return v == MOAT_CONTINUE ? from_world_verdict6(skb, slot, &s->l4) : v;
}

static __noinline int to_world_ipv6(struct __sk_buff *skb, __u32 slot)
{
	struct v6_scratch *s = v6_scratch_get();
	int v;

	if (!s)
		return MOAT_DROP_INVALID_PACKET;
	v = uplink_parse6(skb, s, 0);
	return v == MOAT_CONTINUE ? to_world_verdict6(skb, slot, &s->l4) : v;
}

static __noinline int uplink_ipv4(struct __sk_buff *skb, __u32 slot, __u32 dir)
{
	struct l4_info l4;
	int v = uplink_parse(skb, &l4);

	if (v != MOAT_PASS)
		return v;
	return dir == MOAT_DIR_FROM_WORLD ? from_world_verdict(skb, slot, &l4)
					  : to_world_verdict(skb, slot, &l4);
}

/* The verdict at an uplink in `dir`; what is neither IPv4 nor IPv6 (ARP)
 * is the host's business. The EtherType is read in place, as the parsers
 * read: a bpf_skb_load_bytes() call here cost every packet 5-8 ns
 * (moat_kernel_bench), a quarter of the parse-only floor. It stays the
 * fallback for a frame whose Ethernet header is not in the linear area. */
static __always_inline int uplink_verdict(struct __sk_buff *skb, __u32 slot, __u32 dir)
{
	struct ethhdr *eth;
	struct cursor c;
	__be16 proto;

	cursor_init(&c, skb);
	eth = parse_eth(&c);
	if (eth)
		proto = eth->h_proto;
	else if (bpf_skb_load_bytes(skb, offsetof(struct ethhdr, h_proto), &proto, sizeof(proto)))
		return MOAT_DROP_INVALID_PACKET;
	if (proto == bpf_htons(ETH_P_IP))
		return uplink_ipv4(skb, slot, dir);
	if (proto != bpf_htons(ETH_P_IPV6))
		return MOAT_PASS;
	return dir == MOAT_DIR_FROM_WORLD ? from_world_ipv6(skb, slot) : to_world_ipv6(skb, slot);
}

SEC("tc")
int from_world(struct __sk_buff *skb)
{
	__u32 slot = uplink_stats_slot(skb->ifindex);

	/* An interface with no uplink entry is judged by nobody: fail closed. */
	if (!slot)
		return finish(skb, MOAT_DIR_FROM_WORLD, 0, MOAT_DROP_UNKNOWN_ENDPOINT);
	return finish(skb, MOAT_DIR_FROM_WORLD, slot, uplink_verdict(skb, slot, MOAT_DIR_FROM_WORLD));
}

SEC("tc")
int to_world(struct __sk_buff *skb)
{
	__u32 slot = uplink_stats_slot(skb->ifindex);

	if (!slot)
		return finish(skb, MOAT_DIR_TO_WORLD, 0, MOAT_DROP_UNKNOWN_ENDPOINT);
	return finish(skb, MOAT_DIR_TO_WORLD, slot, uplink_verdict(skb, slot, MOAT_DIR_TO_WORLD));
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
