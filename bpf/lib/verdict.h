/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * verdict.h - the single exit path of every moat TC program: count the
 * packet (or the drop reason) per interface and direction, then turn the
 * verdict into a TC action. Flow and drop events will hang off this point.
 */
#ifndef MOAT_LIB_VERDICT_H
#define MOAT_LIB_VERDICT_H

#include "lib/maps.h"

static __always_inline struct moat_stats *stats_slot(__u32 ifindex, __u32 dir)
{
	struct moat_stats_key key = { .ifindex = ifindex, .dir = dir };
	struct moat_stats *s = bpf_map_lookup_elem(&stats, &key);

	if (likely(s))
		return s;
	{
		struct moat_stats zero = {};

		bpf_map_update_elem(&stats, &key, &zero, BPF_NOEXIST);
	}
	return bpf_map_lookup_elem(&stats, &key);
}

static __always_inline int finish(struct __sk_buff *skb, __u32 dir, int verdict)
{
	struct moat_stats *s = stats_slot(skb->ifindex, dir);

	if (verdict == MOAT_PASS) {
		if (s) {
			s->packets++;
			s->bytes += skb->len;
		}
		return TC_ACT_OK;
	}
	if (s) {
		__u32 slot = -verdict;

		if (slot < MOAT_NR_DROP_SLOTS)
			s->drops[slot]++;
	}
	return TC_ACT_SHOT;
}

#endif
