/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * observe.h - what moat tells about traffic: per-CPU counters per
 * attachment and direction, per-rule hit counters, and flow and drop events
 * on a ring buffer (layouts and limits in abi.h, "Observation"; the maps in
 * lib/maps.h).
 *
 * Nothing here may hold the dataplane back: counters are per-CPU, events
 * are dropped (and counted) when the buffer is full or over the drop-event
 * rate, never waited for. `obs_cfg` can switch all of it off, which is how
 * its cost is measured.
 */
#ifndef MOAT_LIB_OBSERVE_H
#define MOAT_LIB_OBSERVE_H

#include "lib/maps.h"

static __always_inline int obs_on(void)
{
	__u32 zero = 0;
	__u32 *f = bpf_map_lookup_elem(&obs_cfg, &zero);

	return !f || !(*f & MOAT_OBS_F_OFF);
}

static __always_inline struct obs_scratch *obs_scratch_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&obs_scratch, &zero);
}

/* Remembers the deciding rule of the packet being judged. */
static __always_inline void obs_note_rule(__u32 rule_id)
{
	struct obs_scratch *s = obs_scratch_get();

	if (s)
		s->rule_id = rule_id;
}

static __always_inline void obs_lost(__u32 why)
{
	__u64 *n = bpf_map_lookup_elem(&events_lost, &why);

	if (n)
		(*n)++;
}

static __always_inline void obs_rule_hit(__u32 rule_id)
{
	__u64 *n;

	if (rule_id == MOAT_RULE_NONE || !obs_on())
		return;
	n = bpf_map_lookup_elem(&rule_hits, &rule_id);
	if (n)
		(*n)++;
}

/* The counters of `slot` (0 for packets no attachment claims) in `dir`. */
static __always_inline struct moat_stats *stats_slot(__u32 slot, __u32 dir)
{
	__u32 idx = moat_stats_index(slot, dir);

	if (idx >= MOAT_STATS_ENTRIES)
		idx = moat_stats_index(0, dir);
	return bpf_map_lookup_elem(&stats, &idx);
}

/* An uplink's stats slot: the array first, the hash for a large ifindex. */
static __always_inline __u32 uplink_stats_slot(__u32 ifindex)
{
	struct moat_uplink *up;
	__u32 *slot;

	if (likely(ifindex < MOAT_UPLINK_SLOTS_IFINDEX)) {
		slot = bpf_map_lookup_elem(&uplink_slots, &ifindex);
		return slot ? *slot : 0;
	}
	up = bpf_map_lookup_elem(&uplinks, &ifindex);
	return up ? up->stats_slot : 0;
}

/*
 * Whether a drop may be reported: at most MOAT_EV_DROP_RATE per second and
 * CPU, so a flood of denied packets costs a counter increment each, not an
 * event each. Inlined, and on the data path's coarse clock (moat_now()):
 * the flooded path pays for this and nothing else.
 */
static __always_inline int obs_drop_take_token(void)
{
	struct obs_scratch *s = obs_scratch_get();
	__u64 now = moat_now();

	if (!s)
		return 0;
	if ((__s64)(now - s->refilled_ns) >= (__s64)NSEC_PER_SEC) {
		s->tokens = MOAT_EV_DROP_RATE;
		s->refilled_ns = now;
	}
	if (!s->tokens) {
		obs_lost(MOAT_EV_LOST_RATE);
		return 0;
	}
	s->tokens--;
	return 1;
}

/*
 * An IPv6 drop's addresses, and its protocol and ports where the upper
 * layer follows the fixed header (behind extension headers: the protocol
 * of the first one, no ports). Kept short: only reported drops pay.
 */
static __always_inline void obs_drop_tuple6(struct __sk_buff *skb, struct moat_event *ev)
{
	struct ipv6hdr ip6;
	__be16 ports[2];

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6)))
		return;
	ev->flags = MOAT_EV_F_IPV6;
	__builtin_memcpy(ev->src6.b, &ip6.saddr, 16);
	__builtin_memcpy(ev->dst6.b, &ip6.daddr, 16);
	ev->tuple.proto = ip6.nexthdr;
	if (bpf_skb_load_bytes(skb, ETH_HLEN + sizeof(ip6), ports, sizeof(ports)))
		return;
	if (ip6.nexthdr == IPPROTO_TCP || ip6.nexthdr == IPPROTO_UDP ||
	    ip6.nexthdr == IPPROTO_SCTP) {
		ev->tuple.sport = ports[0];
		ev->tuple.dport = ports[1];
	} else if (ip6.nexthdr == IPPROTO_ICMPV6) {
		ev->tuple.dport = ports[0]; /* type and code, for people */
	}
}

/*
 * A drop event (the caller took a token). The tuple is read again from the
 * packet: only reported drops pay for it.
 *
 * A BPF-to-BPF call, not inlined: each call frame keeps its own stack
 * and the programs stay under the verifier's 512-byte frame limit.
 */
static __noinline void obs_drop_event(struct __sk_buff *skb, __u32 dir, __u32 reason)
{
	struct obs_scratch *s = obs_scratch_get();
	__u64 now = moat_now();
	struct moat_event *ev;
	struct iphdr ip;
	__be16 eth_proto;
	__be16 ports[3];

	if (!s)
		return;
	ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev) {
		obs_lost(MOAT_EV_LOST_FULL);
		return;
	}
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->ts_ns = now;
	ev->type = MOAT_EV_DROP;
	ev->ifindex = skb->ifindex;
	ev->dir = dir;
	ev->reason = reason;
	ev->rule_id = (reason == -MOAT_DROP_POLICY_DENY || reason == -MOAT_DROP_POLICY_DEFAULT_DENY)
			      ? s->rule_id
			      : MOAT_RULE_NONE;
	if (bpf_skb_load_bytes(skb, 12, &eth_proto, 2))
		eth_proto = 0;
	if (eth_proto == bpf_htons(ETH_P_IPV6)) {
		obs_drop_tuple6(skb, ev);
	} else if (eth_proto == bpf_htons(ETH_P_IP) &&
		   !bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip))) {
		ev->tuple.saddr = ip.saddr;
		ev->tuple.daddr = ip.daddr;
		ev->tuple.proto = ip.protocol;
		if (!(ip.frag_off & bpf_htons(0x1fff)) &&
		    !bpf_skb_load_bytes(skb, ETH_HLEN + ip.ihl * 4, ports, sizeof(ports))) {
			if (ip.protocol == IPPROTO_TCP || ip.protocol == IPPROTO_UDP ||
			    ip.protocol == IPPROTO_SCTP) {
				ev->tuple.sport = ports[0];
				ev->tuple.dport = ports[1];
			} else if (ip.protocol == IPPROTO_ICMP) {
				/* type and code, for people */
				ev->tuple.dport = ports[0];
			}
		}
	}
	bpf_ringbuf_submit(ev, 0);
}

#endif
