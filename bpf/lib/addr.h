/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * addr.h - the 16-byte address of abi.h (union moat_ip). Word-wise: the
 * verifier and the compiler both handle four 32-bit operations better than
 * a byte loop.
 */
#ifndef MOAT_LIB_ADDR_H
#define MOAT_LIB_ADDR_H

#include "lib/common.h"

static __always_inline void ip_set_v6(union moat_ip *a, const struct in6_addr *v6)
{
	a->w[0] = v6->in6_u.u6_addr32[0];
	a->w[1] = v6->in6_u.u6_addr32[1];
	a->w[2] = v6->in6_u.u6_addr32[2];
	a->w[3] = v6->in6_u.u6_addr32[3];
}

static __always_inline int ip_eq(const union moat_ip *a, const union moat_ip *b)
{
	return !((a->w[0] ^ b->w[0]) | (a->w[1] ^ b->w[1]) | (a->w[2] ^ b->w[2]) |
		 (a->w[3] ^ b->w[3]));
}

static __always_inline int ip_is_zero(const union moat_ip *a)
{
	return !(a->w[0] | a->w[1] | a->w[2] | a->w[3]);
}

/* Link-local unicast (fe80::/10): never forwarded as a source (RFC 4291
 * 2.5.6), so a packet that carries one comes from the link itself. */
static __always_inline int ip_is_link_local(const union moat_ip *a)
{
	return (a->w[0] & bpf_htonl(0xffc00000)) == bpf_htonl(0xfe800000);
}

/* Link-local unicast, or multicast of interface- or link-local scope
 * (ff01::/16, ff02::/16; scope 0 is reserved, RFC 4291 2.7): a peer on the
 * link itself, which no router forwards between networks. Multicast of a
 * wider scope (site, organisation, global) may be routed: it is data,
 * judged by isolation and policy like any other destination. */
static __always_inline int ip_is_link_scope(const union moat_ip *a)
{
	return ip_is_link_local(a) || (a->b[0] == 0xff && (a->b[1] & 0x0f) <= 2);
}

#endif
