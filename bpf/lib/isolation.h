/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * isolation.h - Docker's bridge isolation as one function of (endpoint, peer
 * address): same network talks (unless icc is off), different networks
 * never do, internal networks reach nothing beyond themselves.
 *
 * The peer is the destination for packets leaving a container and the
 * source for packets entering it; checking both directions means a packet
 * that slips past one side (multicast flooded by the bridge, traffic routed
 * in from another bridge) is still judged at the other.
 * Cost: one LPM lookup (done by the caller, shared with the published-port
 * check), whatever the number of networks or containers.
 */
#ifndef MOAT_LIB_ISOLATION_H
#define MOAT_LIB_ISOLATION_H

#include "lib/maps.h"

/* `info`: the peer's addr_lookup(), which the caller may already need. */
static __always_inline int isolation_verdict(const struct moat_endpoint *ep,
					     const struct moat_addr_info *info)
{
	int internal = ep->net_flags & MOAT_NET_F_INTERNAL;

	/* Not a moat network: the host's other addresses or the world. */
	if (!info)
		return internal ? MOAT_DROP_INTERNAL_NETWORK : MOAT_PASS;

	if (info->kind == MOAT_ADDR_GATEWAY || info->kind == MOAT_ADDR_HOST) {
		/* Gateways and uplinks are host addresses, reachable like the
		 * host; an internal network reaches only its own gateway. */
		if (info->net_id == ep->net_id || !internal)
			return MOAT_PASS;
		return MOAT_DROP_INTERNAL_NETWORK;
	}

	if (info->net_id != ep->net_id)
		return MOAT_DROP_ISOLATION;
	if (!(ep->net_flags & MOAT_NET_F_ICC))
		return MOAT_DROP_ICC_DISABLED;
	return MOAT_PASS;
}

#endif
