/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * fast_route.h - the routed fast path: a judged IPv4 packet that the host
 * would forward from a container network's bridge to one of moat's uplinks
 * is handed to that uplink by from_bridge with bpf_redirect_neigh(),
 * skipping the host's IP stack (ip_rcv(), the routing decision made again,
 * netfilter's PREROUTING, FORWARD and POSTROUTING hooks, ip_forward()).
 *
 * It does to the packet what ip_forward() would: the route is the kernel's
 * own (bpf_fib_lookup() as forwarded from the bridge: the bridge must
 * forward, and the route's MTU must take the packet, or each segment of a
 * GSO packet), the TTL is decremented, the priority set from the TOS, and
 * the neighbour layer writes the Ethernet header. The uplink's to_world
 * still judges and masquerades the packet: a redirect to a device's egress
 * runs its TC egress programs. What it does not do: the host's netfilter
 * hooks and IPsec (xfrm) forward policies never see the packet.
 *
 * Anything the stack must see takes the plain path, so a refusal here never
 * drops: a frame not addressed to the bridge itself, a VLAN tag or another
 * mark (policy routing could route it elsewhere), a TTL of 1 (time
 * exceeded), IP options, a bad header checksum or bytes beyond the IP
 * length (ip_rcv() drops or trims them), a limited broadcast, multicast,
 * 0.0.0.0/8 or loopback address (never forwarded), a destination the host
 * does not forward to an uplink (itself, a subnet's broadcast,
 * unreachable, another bridge, a gateway only IPv6 reaches),
 * a neighbour not resolved yet (the stack resolves it), a packet over the
 * MTU (the stack fragments it or answers "fragmentation needed") and a GSO
 * packet of another protocol than TCP or UDP.
 *
 * Off by default (MOAT_FAST_F_ROUTED_ON, abi.h): the host's own netfilter
 * rules never see what it carries.
 */
#ifndef MOAT_LIB_FAST_ROUTE_H
#define MOAT_LIB_FAST_ROUTE_H

#include "lib/common.h"
#include "lib/maps.h"
#include "lib/observe.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef PACKET_HOST
#define PACKET_HOST 0 /* linux/if_packet.h: addressed to this device */
#endif

static __always_inline int fast_routed_enabled(void)
{
	__u32 zero = 0;
	__u32 *f = bpf_map_lookup_elem(&fast_cfg, &zero);

	return f && (*f & MOAT_FAST_F_ROUTED_ON);
}

/* An IPv4 header of 20 bytes whose checksum holds, as ip_rcv() checks it. */
static __always_inline int fast_ipv4_csum_ok(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 sum = 0;
	int i;

#pragma unroll
	for (i = 0; i < 10; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum == 0xffff;
}

static __always_inline void fast_routed_count(__u32 len)
{
	__u32 k = MOAT_FAST_ROUTED_PACKETS;
	__u64 *n;

	if (!obs_on())
		return;
	n = bpf_map_lookup_elem(&fast_stats, &k);
	if (n)
		(*n)++;
	k = MOAT_FAST_ROUTED_BYTES;
	n = bpf_map_lookup_elem(&fast_stats, &k);
	if (n)
		*n += len;
}

/*
 * Addresses ip_route_input() takes away from forwarding before any route
 * is looked up (the limited broadcast, multicast, 0.0.0.0/8 and loopback
 * are martians or local input there), which bpf_fib_lookup() would route
 * by the default route like any other.
 */
static __always_inline int fast_not_forwarded(__be32 a)
{
	__u32 h = bpf_ntohl(a);

	return h == 0xffffffff || (h >> 28) == 0xe || (h >> 24) == 0 || (h >> 24) == 127;
}

/*
 * The IP length of each packet the way out will carry: the packet's own, or
 * for a GSO packet (TCP or UDP) the length of its segments, so that the
 * route's MTU (bpf_fib_lookup() with tot_len) weighs every segment as
 * ip_forward() would. 0: not one moat can tell (the plain path).
 */
static __always_inline __u32 fast_segment_len(struct __sk_buff *skb, const struct iphdr *ip,
					      void *data_end)
{
	const __u8 *l4 = (const void *)(ip + 1);

	if (!skb->gso_size)
		return bpf_ntohs(ip->tot_len);
	if (ip->protocol == IPPROTO_UDP)
		return sizeof(*ip) + 8 + skb->gso_size; /* the UDP header: 8 bytes */
	if (ip->protocol != IPPROTO_TCP || (void *)(l4 + 13) > data_end)
		return 0;
	return sizeof(*ip) + (l4[12] >> 4) * 4 + skb->gso_size;
}

/* rt_tos2priority(): the priority ip_forward() gives a packet by its TOS. */
static __always_inline __u32 fast_tos_priority(__u8 tos)
{
	/* TC_PRIO_BESTEFFORT, _BULK, _INTERACTIVE, _INTERACTIVE_BULK */
	switch ((tos >> 3) & 3) {
	case 1:
		return 2;
	case 2:
		return 6;
	case 3:
		return 4;
	default:
		return 0;
	}
}

/*
 * The frame checks both directions open with, as the stack would weigh the
 * frame coming in by skb's device: addressed to the device itself, no VLAN
 * tag nor mark (policy routing could route it elsewhere), the switch on,
 * and an IPv4 header of 20 bytes with a TTL above 1, an IP length that is
 * the whole frame, a checksum that holds and a source ip_route_input()
 * does not take for a martian. The header, or NULL: the plain path.
 */
static __always_inline struct iphdr *fast_forwardable(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);

	if (skb->pkt_type != PACKET_HOST || skb->vlan_present || skb->mark ||
	    !fast_routed_enabled())
		return NULL;
	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return NULL;
	if (ip->version != 4 || ip->ihl != 5 || ip->ttl <= 1 ||
	    skb->len != sizeof(*eth) + bpf_ntohs(ip->tot_len) || !fast_ipv4_csum_ok(ip) ||
	    fast_not_forwarded(ip->saddr))
		return NULL;
	return ip;
}

/* ip_decrease_ttl()'s checksum: the TTL is the high byte of its word, so
 * the sum changes by 0x0100 and a CHECKSUM_COMPLETE skb's sum still holds. */
static __always_inline __sum16 fast_ttl_check(__sum16 check)
{
	__u32 c = check;

	c += bpf_htons(0x0100);
	return (__sum16)(c + (c >= 0xffff));
}

/*
 * The lookup ip_forward()'s route is, for IPv4 packet `ip` (checked by
 * fast_forwardable()) that came in by skb's device: the caller sets the
 * ports. 0 when the packet's length (each segment's, for GSO) is not one
 * moat can tell: the plain path.
 */
static __always_inline int fast_fib_prepare(struct __sk_buff *skb, const struct iphdr *ip,
					    struct bpf_fib_lookup *fib)
{
	fib->tot_len = fast_segment_len(skb, ip, (void *)(long)skb->data_end);
	if (!fib->tot_len)
		return 0;
	fib->family = AF_INET;
	fib->tos = ip->tos;
	fib->l4_protocol = ip->protocol;
	fib->ipv4_src = ip->saddr;
	fib->ipv4_dst = ip->daddr;
	fib->ifindex = skb->ifindex;
	return 1;
}

/*
 * A frame the bridge hands to the host, judged by the sending container's
 * from_container: TC_ACT_REDIRECT when it went to an uplink, TC_ACT_OK for
 * the plain path. Never a drop.
 */
static __always_inline int fast_routed(struct __sk_buff *skb)
{
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = fast_forwardable(skb);
	struct bpf_fib_lookup fib = {};
	struct bpf_redir_neigh nh = {};
	__be16 *ports;
	struct {
		__u8 ttl;
		__u8 protocol;
		__sum16 check;
	} ttl;
	__u32 prio;

	if (!ip || fast_not_forwarded(ip->daddr) || !fast_fib_prepare(skb, ip, &fib))
		return TC_ACT_OK;
	/* Ports as the stack's multipath hash would read them: a first (or
	 * only) fragment's TCP or UDP header. */
	ports = (void *)(ip + 1);
	if ((ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) &&
	    !(ip->frag_off & bpf_htons(0x1fff)) && (void *)(ports + 2) <= data_end) {
		fib.sport = ports[0];
		fib.dport = ports[1];
	}
	/* FRAG_NEEDED (tot_len over the route's MTU), NO_NEIGH and every
	 * refusal: the stack. A route whose gateway is IPv6 too. */
	if (bpf_fib_lookup(skb, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS ||
	    fib.family != AF_INET)
		return TC_ACT_OK;
	if (!uplink_stats_slot(fib.ifindex))
		return TC_ACT_OK;
	/* TTL, protocol and checksum in one store: a direct write would make
	 * the verifier unclone every packet the program sees (a helper call
	 * per cloned packet, and a drop where that fails), whatever the
	 * switch says. */
	ttl.ttl = ip->ttl - 1;
	ttl.protocol = ip->protocol;
	ttl.check = fast_ttl_check(ip->check);
	prio = fast_tos_priority(ip->tos);
	if (bpf_skb_store_bytes(skb, sizeof(struct ethhdr) + offsetof(struct iphdr, ttl), &ttl,
				sizeof(ttl), 0))
		return TC_ACT_OK;
	skb->priority = prio;
	/* The route's gateway, or the destination itself on a direct route. */
	nh.nh_family = AF_INET;
	nh.ipv4_nh = fib.ipv4_dst;
	fast_routed_count(skb->len);
	return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
}

#endif
