/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * verdict.h - the single exit path of every moat TC program: count the
 * packet (or the drop reason) per attachment and direction, then turn the
 * verdict into a TC action, and report the drop (lib/observe.h).
 */
#ifndef MOAT_LIB_VERDICT_H
#define MOAT_LIB_VERDICT_H

#include "lib/observe.h"

/*
 * Not a drop and not a plain pass: send the packet back out of the
 * interface it came in on (a container reaching its own published port).
 * Internal to the programs, so not in abi.h.
 */
#define MOAT_REDIRECT_BACK 1
/* A step of the verdict that did not decide; never reaches finish(). */
#define MOAT_CONTINUE 2
/*
 * Passed, and already handed to the destination container's namespace by
 * bpf_redirect_peer() (lib/redirect.h), which also counted it at the
 * destination: finish() counts the sender's side and returns the redirect.
 */
#define MOAT_REDIRECT_PEER 3

/* `slot`: the attachment's counter slot, 0 if the packet's is unknown. */
static __always_inline int finish(struct __sk_buff *skb, __u32 dir, __u32 slot, int verdict)
{
	struct moat_stats *s;

	if (!obs_on())
		return verdict == MOAT_PASS ? TC_ACT_OK
		       : verdict == MOAT_REDIRECT_BACK ? bpf_redirect(skb->ifindex, 0)
		       : verdict == MOAT_REDIRECT_PEER ? TC_ACT_REDIRECT
						       : TC_ACT_SHOT;
	s = stats_slot(slot, dir);

	if (verdict == MOAT_PASS || verdict == MOAT_REDIRECT_BACK || verdict == MOAT_REDIRECT_PEER) {
		if (s) {
			s->packets++;
			s->bytes += skb->len;
		}
		if (verdict == MOAT_REDIRECT_BACK)
			return bpf_redirect(skb->ifindex, 0);
		/* The target was set by bpf_redirect_peer() in lib/redirect.h. */
		if (verdict == MOAT_REDIRECT_PEER)
			return TC_ACT_REDIRECT;
		return TC_ACT_OK;
	}
	if (s) {
		__u32 reason = -verdict;

		if (reason < MOAT_NR_DROP_SLOTS)
			s->drops[reason]++;
		s->drop_bytes += skb->len;
	}
	if (obs_drop_take_token())
		obs_drop_event(skb, dir, -verdict);
	return TC_ACT_SHOT;
}

#endif
