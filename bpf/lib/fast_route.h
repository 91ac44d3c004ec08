/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * fast_route.h - the routed fast path: a judged IPv4 packet that the host
 * would forward from a container network's bridge to one of moat's uplinks
 * is handed to that uplink by from_bridge with bpf_redirect_neigh(),
 * skipping the host's IP stack (ip_rcv(), the routing decision made again,
 * netfilter's PREROUTING, FORWARD and POSTROUTING hooks, ip_forward()).
 *
 * It does to the packet what ip_forward() would, nothing less: the route is
 * the kernel's own (bpf_fib_lookup() as forwarded from the bridge: the
 * bridge must forward, the way out must take the packet, GSO included, at
 * its MTU), the TTL is decremented, and the neighbour layer writes the
 * Ethernet header. The uplink's to_world still judges and masquerades the
 * packet: a redirect to a device's egress runs its TC egress programs.
 *
 * Anything the stack must see takes the plain path, so a refusal here never
 * drops: a frame not addressed to the bridge itself, a VLAN tag or another
 * mark (policy routing could route it elsewhere), a TTL of 1 (time
 * exceeded), IP options, a bad header checksum or bytes beyond the IP
 * length (ip_rcv() drops or trims them), a destination the host does not
 * forward to an uplink (itself, a broadcast, unreachable, another bridge),
 * a neighbour not resolved yet (the stack resolves it) and a packet over
 * the MTU (the stack fragments it or answers "fragmentation needed").
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
 * A frame the bridge hands to the host, judged by the sending container's
 * from_container: TC_ACT_REDIRECT when it went to an uplink, TC_ACT_OK for
 * the plain path. Never a drop.
 */
static __always_inline int fast_routed(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct bpf_fib_lookup fib = {};
	struct bpf_redir_neigh nh = {};
	__be16 *ports = (void *)(ip + 1);
	__u32 check;

	if (skb->pkt_type != PACKET_HOST || skb->vlan_present || skb->mark ||
	    !fast_routed_enabled())
		return TC_ACT_OK;
	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	if (ip->version != 4 || ip->ihl != 5 || ip->ttl <= 1 ||
	    skb->len != sizeof(*eth) + bpf_ntohs(ip->tot_len) || !fast_ipv4_csum_ok(ip))
		return TC_ACT_OK;
	fib.family = AF_INET;
	fib.tos = ip->tos;
	fib.l4_protocol = ip->protocol;
	fib.ipv4_src = ip->saddr;
	fib.ipv4_dst = ip->daddr;
	fib.ifindex = skb->ifindex;
	/* Ports as the stack's multipath hash would read them: a first (or
	 * only) fragment's TCP or UDP header. */
	if ((ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) &&
	    !(ip->frag_off & bpf_htons(0x1fff)) && (void *)(ports + 2) <= data_end) {
		fib.sport = ports[0];
		fib.dport = ports[1];
	}
	/* tot_len 0: the helper weighs the packet itself (GSO too) against
	 * the MTU of the way out. NO_NEIGH and every refusal: the stack. */
	if (bpf_fib_lookup(skb, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS)
		return TC_ACT_OK;
	if (!uplink_stats_slot(fib.ifindex))
		return TC_ACT_OK;
	/* ip_decrease_ttl(): the TTL is the high byte of its checksum word. */
	check = ip->check;
	check += bpf_htons(0x0100);
	ip->check = (__u16)(check + (check >= 0xffff));
	ip->ttl--;
	/* The route's gateway, or the destination itself on a direct route. */
	nh.nh_family = AF_INET;
	nh.ipv4_nh = fib.ipv4_dst;
	fast_routed_count(skb->len);
	return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
}

#endif
