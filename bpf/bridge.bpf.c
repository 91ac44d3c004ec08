// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bridge.bpf.c - TC ingress of a network's bridge device: what the bridge
 * hands to the host (traffic to the gateway, to other networks, to the
 * world), never what it switches between its own ports.
 *
 *   from_bridge: passes what a container's from_container already judged
 *                (MOAT_MARK_JUDGED, abi.h) and drops everything else. What
 *                the host would forward to an uplink goes straight there
 *                when the routed fast path is on (lib/fast_route.h).
 *
 * A veth joins its bridge before the runtime reports the endpoint, and a
 * container may be created while the agent is down: until moat has
 * identified it and attached its programs, nothing it sends leaves its own
 * network. Its own network is judged by its peers' to_container programs.
 */
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/verdict.h"
#include "lib/fast_route.h"

SEC("tc")
int from_bridge(struct __sk_buff *skb)
{
	if (skb->mark & MOAT_MARK_JUDGED) {
		skb->mark &= ~MOAT_MARK_JUDGED;
		/* Counted already, by the endpoint that judged it. Routed to
		 * an uplink: straight there, when the routed fast path is on. */
		return fast_routed(skb);
	}
	return finish(skb, MOAT_DIR_FROM_CONTAINER, 0, MOAT_DROP_UNIDENTIFIED);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
