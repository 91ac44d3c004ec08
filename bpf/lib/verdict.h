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

/*
 * Not a drop and not a plain pass: send the packet back out of the
 * interface it came in on (a container reaching its own published port).
 * Internal to the programs, so not in abi.h.
 */
#define MOAT_REDIRECT_BACK 1
/* A step of the verdict that did not decide; never reaches finish(). */
#define MOAT_CONTINUE 2

static __always_inline int finish(struct __sk_buff *skb, __u32 dir, int verdict)
{
	struct moat_stats *s = stats_slot(skb->ifindex, dir);

	if (verdict == MOAT_PASS || verdict == MOAT_REDIRECT_BACK) {
		if (s) {
			s->packets++;
			s->bytes += skb->len;
		}
		if (verdict == MOAT_REDIRECT_BACK)
			return bpf_redirect(skb->ifindex, 0);
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
