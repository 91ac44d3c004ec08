/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * nat.h - published ports (DNAT), masquerade (SNAT) and the header rewrites
 * both need, on top of ct.h.
 *
 * Rewrites go through bpf_skb_store_bytes() and the csum_replace helpers,
 * never a recomputed sum: on veth most packets are CHECKSUM_PARTIAL (and
 * GSO), where only the pseudo-header seed may change, and the helpers know
 * how to treat each checksum state. A UDP checksum of 0 ("none") stays 0.
 */
#ifndef MOAT_LIB_NAT_H
#define MOAT_LIB_NAT_H

#include "lib/ct.h"
#include "lib/verdict.h"

#define IP_CSUM_OFF 10
#define IP_SADDR_OFF 12
#define IP_DADDR_OFF 16

/* Offset of the L4 checksum from the L4 header, 0 when there is none to fix. */
static __always_inline __u32 l4_csum_off(__u8 proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return 16;
	case IPPROTO_UDP:
		return 6;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		return 2;
	default:
		return 0; /* SCTP's CRC32c skips the addresses; moat never moves its ports */
	}
}

static __always_inline int rewrite_addr(struct __sk_buff *skb, const struct l4_info *l4,
					__u32 field_off, const __be32 *from, const __be32 *to)
{
	__u32 csum_off = l4_csum_off(l4->key.proto);

	if (bpf_l3_csum_replace(skb, l4->l3_off + IP_CSUM_OFF, *from, *to, 4))
		return -1;
	/* ICMP has no pseudo-header; fragments carry no L4 header to fix. */
	if (csum_off && l4->key.proto != IPPROTO_ICMP && !l4->fragment) {
		__u64 flags = BPF_F_PSEUDO_HDR | 4;

		if (l4->key.proto == IPPROTO_UDP)
			flags |= BPF_F_MARK_MANGLED_0;
		if (bpf_l4_csum_replace(skb, l4->l4_off + csum_off, *from, *to, flags))
			return -1;
	}
	return bpf_skb_store_bytes(skb, l4->l3_off + field_off, to, 4, 0);
}

/*
 * Where a flow's source port (echo id) lands in the masquerade range: on
 * itself when inside it, else a whole number of ranges away, so Linux's
 * ephemeral ports (32768-60999) land one to one on 1024-29255.
 */
static __always_inline __u32 nat_port_offset(__be16 sport)
{
	const __u32 range = MOAT_NAT_PORT_MAX - MOAT_NAT_PORT_MIN + 1;

	return (bpf_ntohs(sport) + 3 * range - MOAT_NAT_PORT_MIN) % range;
}

/*
 * IPv6 has no header checksum; TCP's, UDP's and ICMPv6's cover the address
 * through their pseudo-header. One diff over the 16 bytes, applied in
 * diff mode with BPF_F_IPV6: without it, on a CHECKSUM_COMPLETE skb the
 * kernel would also move skb->csum, which is right only where an IPv4
 * header checksum changes along (kernel 6.16+, upstream ead7f9b8de65).
 */
static __always_inline int rewrite_addr6(struct __sk_buff *skb, const struct l4_info6 *l4,
					 __u32 field_off, const union moat_ip *from,
					 const union moat_ip *to)
{
	__u32 csum_off = l4_csum_off(l4->key.proto);
	__s64 diff;

	if (csum_off && !l4->fragment) {
		__u64 flags = BPF_F_PSEUDO_HDR | BPF_F_IPV6;

		diff = bpf_csum_diff((__be32 *)from->w, 16, (__be32 *)to->w, 16, 0);
		if (diff < 0)
			return -1;
		if (l4->key.proto == IPPROTO_UDP)
			flags |= BPF_F_MARK_MANGLED_0;
		if (bpf_l4_csum_replace(skb, l4->l4_off + csum_off, 0, diff, flags))
			return -1;
	}
	return bpf_skb_store_bytes(skb, l4->l3_off + field_off, to, 16, 0);
}

static __always_inline int rewrite_port(struct __sk_buff *skb, __u8 proto, __u32 l4_off,
					__u32 field_off, __be16 from, __be16 to)
{
	__u32 csum_off = l4_csum_off(proto);

	if (csum_off) {
		__u64 flags = 2;

		if (proto == IPPROTO_UDP)
			flags |= BPF_F_MARK_MANGLED_0;
		if (bpf_l4_csum_replace(skb, l4_off + csum_off, from, to, flags))
			return -1;
	}
	return bpf_skb_store_bytes(skb, l4_off + field_off, &to, 2, 0);
}

/*
 * One's-complement arithmetic exactly as the kernel's csum_add(),
 * csum_fold() and csum_replace4() do it (include/net/checksum.h): the
 * same operations in the same order, so a header checksum comes out bit
 * for bit as bpf_l3_csum_replace() would leave it, 0x0000 and 0xffff
 * included.
 */
static __always_inline __u32 csum32_add(__u32 a, __u32 b)
{
	__u32 r = a + b;

	return r + (r < b);
}

static __always_inline __u16 csum32_fold(__u32 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

static __always_inline __u16 csum_replaced4(__u16 sum, __be32 from, __be32 to)
{
	return csum32_fold(csum32_add(csum32_add(~(__u32)sum, ~from), to));
}

/*
 * Where a TCP, UDP or SCTP packet keeps everything a translation changes
 * but its L4 checksum, when nothing lies between the IP header and the
 * ports: for IPv4 the header from its TTL on (its checksum included) and
 * the ports, 16 bytes; for IPv6 both addresses and the ports, 36.
 */
struct nat_span {
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
};

struct nat_span6 {
	union moat_ip saddr;
	union moat_ip daddr;
	__be16 sport;
	__be16 dport;
};

/* The L4 checksum's share of a port change (rewrite_port() without its store). */
static __always_inline int port_csum(struct __sk_buff *skb, __u8 proto, __u32 csum_off,
				     __be16 from, __be16 to)
{
	__u64 flags = 2;

	if (!csum_off || from == to)
		return 0;
	if (proto == IPPROTO_UDP)
		flags |= BPF_F_MARK_MANGLED_0;
	return bpf_l4_csum_replace(skb, csum_off, from, to, flags);
}

/*
 * nat_rewrite()'s common case, a TCP, UDP or SCTP packet without IP
 * options, in fewer helper calls: each costs about a quarter of the
 * parse-only floor (moat_kernel_bench), and a DNAT took five. The L4
 * checksum is fixed by the helpers as before, in the same order (they know
 * the skb's checksum state: under CHECKSUM_PARTIAL only the pseudo-header
 * part may change); the header checksum, always summed in full, is fixed
 * here; then the span is written in one store. MOAT_CONTINUE where the
 * span does not apply: the caller rewrites field by field.
 *
 * A BPF-to-BPF call, not inlined: inlined, its span would take the last
 * 16 bytes of dial_published()'s call chain, which the verifier caps at
 * 512 (496 without it).
 */
static __noinline int nat_rewrite_span(struct __sk_buff *skb, const struct l4_info *l4,
				       const struct moat_ct_key *to)
{
	const struct moat_ct_key *from = &l4->key;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 off = l4->l3_off, csum_off = l4_csum_off(from->proto);
	__u64 flags = BPF_F_PSEUDO_HDR | 4;
	struct nat_span span, *at;

	if (l4->fragment || !l4->has_ports || from->proto == IPPROTO_ICMP ||
	    l4->l4_off != off + sizeof(struct iphdr) || off > ETH_HLEN)
		return MOAT_CONTINUE;
	at = data + off + offsetof(struct iphdr, ttl);
	if ((void *)(at + 1) > data_end)
		return MOAT_CONTINUE;
	span = *at;
	if (csum_off)
		csum_off += l4->l4_off;
	if (from->proto == IPPROTO_UDP)
		flags |= BPF_F_MARK_MANGLED_0;
	if (from->saddr != to->saddr) {
		span.check = csum_replaced4(span.check, from->saddr, to->saddr);
		if (csum_off && bpf_l4_csum_replace(skb, csum_off, from->saddr, to->saddr, flags))
			return MOAT_DROP_NAT_FAILED;
	}
	if (from->daddr != to->daddr) {
		span.check = csum_replaced4(span.check, from->daddr, to->daddr);
		if (csum_off && bpf_l4_csum_replace(skb, csum_off, from->daddr, to->daddr, flags))
			return MOAT_DROP_NAT_FAILED;
	}
	if (port_csum(skb, from->proto, csum_off, from->sport, to->sport) ||
	    port_csum(skb, from->proto, csum_off, from->dport, to->dport))
		return MOAT_DROP_NAT_FAILED;
	span.saddr = to->saddr;
	span.daddr = to->daddr;
	span.sport = to->sport;
	span.dport = to->dport;
	if (bpf_skb_store_bytes(skb, off + offsetof(struct iphdr, ttl), &span, sizeof(span), 0))
		return MOAT_DROP_NAT_FAILED;
	return MOAT_PASS;
}

/* The same for IPv6 without extension headers: no header checksum, so
 * nothing is read; the addresses' checksum diffs as rewrite_addr6() makes
 * them, then one store instead of one per field. */
static __always_inline int nat_rewrite_span6(struct __sk_buff *skb, const struct l4_info6 *l4,
					     const struct moat_ct6_key *to)
{
	const struct moat_ct6_key *from = &l4->key;
	__u32 off = l4->l3_off, csum_off = l4_csum_off(from->proto);
	__u64 flags = BPF_F_PSEUDO_HDR | BPF_F_IPV6;
	struct nat_span6 span;
	__s64 diff;

	if (l4->fragment || !l4->has_ports || from->proto == IPPROTO_ICMPV6 ||
	    l4->l4_off != off + sizeof(struct ipv6hdr))
		return MOAT_CONTINUE;
	if (csum_off)
		csum_off += l4->l4_off;
	if (from->proto == IPPROTO_UDP)
		flags |= BPF_F_MARK_MANGLED_0;
	if (csum_off && !ip_eq(&from->saddr, &to->saddr)) {
		diff = bpf_csum_diff((__be32 *)from->saddr.w, 16, (__be32 *)to->saddr.w, 16, 0);
		if (diff < 0 || bpf_l4_csum_replace(skb, csum_off, 0, diff, flags))
			return MOAT_DROP_NAT_FAILED;
	}
	if (csum_off && !ip_eq(&from->daddr, &to->daddr)) {
		diff = bpf_csum_diff((__be32 *)from->daddr.w, 16, (__be32 *)to->daddr.w, 16, 0);
		if (diff < 0 || bpf_l4_csum_replace(skb, csum_off, 0, diff, flags))
			return MOAT_DROP_NAT_FAILED;
	}
	if (port_csum(skb, from->proto, csum_off, from->sport, to->sport) ||
	    port_csum(skb, from->proto, csum_off, from->dport, to->dport))
		return MOAT_DROP_NAT_FAILED;
	span.saddr = to->saddr;
	span.daddr = to->daddr;
	span.sport = to->sport;
	span.dport = to->dport;
	if (bpf_skb_store_bytes(skb, off + offsetof(struct ipv6hdr, saddr), &span, sizeof(span), 0))
		return MOAT_DROP_NAT_FAILED;
	return MOAT_PASS;
}

/*
 * Whether a host socket takes what arrives on tuple `t` (the world's peer
 * to the uplink's address and a masquerade port): a listener, a bound UDP
 * socket, a connection of the host's own or one in TIME_WAIT. A
 * masquerade port it names would carry the socket's traffic to a
 * container, which from_world judges by the flow before anything else.
 */
static __always_inline int host_sock_takes(struct __sk_buff *skb, struct bpf_sock_tuple *t,
					   __u32 len, __u8 proto)
{
	struct bpf_sock *sk;

	if (proto == IPPROTO_TCP)
		sk = bpf_skc_lookup_tcp(skb, t, len, BPF_F_CURRENT_NETNS, 0);
	else
		sk = bpf_sk_lookup_udp(skb, t, len, BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return 0;
	bpf_sk_release(sk);
	return 1;
}

#define CT_FAM 4
#include "lib/nat_impl.h"
#undef CT_FAM
#define CT_FAM 6
#include "lib/nat_impl.h"
#undef CT_FAM

/*
 * A container reaching its own published port: after the rewrite the packet
 * goes back out of the veth it came in on, with the Ethernet addresses
 * swapped, instead of through the host, which would drop a packet from one
 * of its own addresses as a martian.
 */
static __always_inline int hairpin_back(struct __sk_buff *skb)
{
	__u8 macs[2 * ETH_ALEN], swapped[2 * ETH_ALEN];

	if (bpf_skb_load_bytes(skb, 0, macs, sizeof(macs)))
		return MOAT_DROP_NAT_FAILED;
	__builtin_memcpy(swapped, macs + ETH_ALEN, ETH_ALEN);
	__builtin_memcpy(swapped + ETH_ALEN, macs, ETH_ALEN);
	if (bpf_skb_store_bytes(skb, 0, swapped, sizeof(swapped), 0))
		return MOAT_DROP_NAT_FAILED;
	return MOAT_REDIRECT_BACK;
}

/*
 * ICMP errors (port unreachable, fragmentation needed, ...) quote the
 * packet they answer. For a translated flow, the quoted header and the
 * outer address on the flow's side are translated like the flow's own
 * packets. Returns 1 when the error belongs to a tracked flow (translated
 * here, or to be translated elsewhere: let it pass), 0 when it does not,
 * or a drop reason.
 *
 * The ICMP checksum needs no fix for the quoted addresses: the quoted IP
 * checksum changes by exactly the opposite amount. The quoted ports do
 * change it. A quoted UDP checksum is left as it was: nobody checks it.
 *
 * An error is related to a flow only when it travels to the quoted
 * packet's source (netfilter checks the same): one that quotes a real flow
 * but is addressed elsewhere is judged as a new packet like any other. A
 * container, which is no router, may only report about a packet it
 * received itself; routers and the host may report about any.
 *
 * A BPF-to-BPF call, not inlined: each call frame keeps its own stack
 * and the programs stay under the verifier's 512-byte frame limit.
 */
static __noinline int nat_icmp_error(struct __sk_buff *skb, const struct l4_info *l4,
					  __u32 ifindex, __u32 dir, __u64 now)
{
	__u32 in3 = l4->l4_off + 8;
	struct iphdr inner;
	struct moat_ct_key quoted = {}, rkey, want;
	struct moat_ct_entry *e;
	__be16 ports[3];
	__u32 in4;

	if (bpf_skb_load_bytes(skb, in3, &inner, sizeof(inner)))
		return 0;
	if (inner.version != 4 || inner.ihl < 5)
		return 0;
	in4 = in3 + inner.ihl * 4;
	quoted.saddr = inner.saddr;
	quoted.daddr = inner.daddr;
	quoted.proto = inner.protocol;
	if (inner.protocol == IPPROTO_TCP || inner.protocol == IPPROTO_UDP) {
		if (bpf_skb_load_bytes(skb, in4, ports, 4))
			return 0;
		quoted.sport = ports[0];
		quoted.dport = ports[1];
	} else if (inner.protocol == IPPROTO_ICMP) {
		__u8 type;

		if (bpf_skb_load_bytes(skb, in4, ports, 6))
			return 0;
		type = ((__u8 *)ports)[0];
		if (type == ICMP_ECHO)
			quoted.sport = ports[2];
		else if (type == ICMP_ECHOREPLY)
			quoted.dport = ports[2];
		else
			return 0;
	} else {
		return 0;
	}
	if (l4->key.daddr != quoted.saddr)
		return 0;
	if (dir == MOAT_DIR_FROM_CONTAINER && l4->key.saddr != quoted.daddr)
		return 0;

	/* The quoted packet went the other way: its reply entry is ours. At
	 * an uplink that entry must be one of the uplink's own: the world
	 * saw only the flows that left by an uplink, and an error quoting a
	 * flow between containers (tracked, or translated at a veth) is a
	 * new packet there. */
	ct_reverse(&quoted, &rkey);
	e = ct_lookup(&rkey, now);
	if (is_uplink_dir(dir) && (!e || e->dir != dir))
		return 0;
	if (!e) {
		/* The original-direction entry keyed by the quoted tuple: a
		 * tracked flow's (one entry) or one translated elsewhere (a
		 * masqueraded flow's, whose errors come back translated by the
		 * uplink: path MTU discovery), which is what an error back to
		 * the flow's initiator quotes. A reply entry is not: its tuple
		 * is the untranslated reply, which the initiator never saw. */
		e = ct_lookup(&quoted, now);
		return e && ct_is_orig(e);
	}
	if (!ct_rewrites_here(e, ifindex, dir))
		return 1;
	ct_reverse(&e->xlated, &want);

	if (quoted.saddr != want.saddr) {
		if (bpf_l3_csum_replace(skb, in3 + IP_CSUM_OFF, quoted.saddr, want.saddr, 4) ||
		    bpf_skb_store_bytes(skb, in3 + IP_SADDR_OFF, &want.saddr, 4, 0))
			return MOAT_DROP_NAT_FAILED;
	}
	if (quoted.daddr != want.daddr) {
		if (bpf_l3_csum_replace(skb, in3 + IP_CSUM_OFF, quoted.daddr, want.daddr, 4) ||
		    bpf_skb_store_bytes(skb, in3 + IP_DADDR_OFF, &want.daddr, 4, 0))
			return MOAT_DROP_NAT_FAILED;
	}
	if (quoted.proto == IPPROTO_ICMP) {
		__be16 id = quoted.sport | quoted.dport, new_id = want.sport | want.dport;

		if (id != new_id &&
		    (bpf_l4_csum_replace(skb, l4->l4_off + 2, id, new_id, 2) ||
		     bpf_skb_store_bytes(skb, in4 + 4, &new_id, 2, 0)))
			return MOAT_DROP_NAT_FAILED;
	} else {
		if (quoted.sport != want.sport &&
		    (bpf_l4_csum_replace(skb, l4->l4_off + 2, quoted.sport, want.sport, 2) ||
		     bpf_skb_store_bytes(skb, in4, &want.sport, 2, 0)))
			return MOAT_DROP_NAT_FAILED;
		if (quoted.dport != want.dport &&
		    (bpf_l4_csum_replace(skb, l4->l4_off + 2, quoted.dport, want.dport, 2) ||
		     bpf_skb_store_bytes(skb, in4 + 2, &want.dport, 2, 0)))
			return MOAT_DROP_NAT_FAILED;
	}

	/* The error travels to the quoted packet's source (checked above);
	 * whoever of the two endpoints sent it speaks with the translated
	 * address. */
	if (quoted.saddr != want.saddr &&
	    rewrite_addr(skb, l4, IP_DADDR_OFF, &l4->key.daddr, &want.saddr))
		return MOAT_DROP_NAT_FAILED;
	if (l4->key.saddr == quoted.daddr && quoted.daddr != want.daddr &&
	    rewrite_addr(skb, l4, IP_SADDR_OFF, &l4->key.saddr, &want.daddr))
		return MOAT_DROP_NAT_FAILED;
	return 1;
}

/*
 * Reads the packet an ICMPv6 error `l4` quotes (at l4_off + 8, for every
 * error type) into s->quoted: its addresses, and its ports or echo
 * identifier. -1 for a quote moat follows no flow of: one with extension
 * headers, or of another protocol.
 */
static __always_inline int quote6_read(struct __sk_buff *skb, const struct l4_info6 *l4,
				       struct v6_scratch *s)
{
	struct moat_ct6_key *q = &s->quoted;
	__be16 ports[3];

	__builtin_memset(q, 0, sizeof(*q));
	if (bpf_skb_load_bytes(skb, l4->l4_off + 8, &s->inner, sizeof(s->inner)) ||
	    s->inner.version != 6 ||
	    bpf_skb_load_bytes(skb, l4->l4_off + 8 + sizeof(s->inner), ports, sizeof(ports)))
		return -1;
	ip_set_v6(&q->saddr, &s->inner.saddr);
	ip_set_v6(&q->daddr, &s->inner.daddr);
	q->proto = s->inner.nexthdr;
	if (q->proto == IPPROTO_TCP || q->proto == IPPROTO_UDP) {
		q->sport = ports[0];
		q->dport = ports[1];
	} else if (q->proto == IPPROTO_ICMPV6 && ((__u8 *)ports)[0] == ICMPV6_ECHO_REQUEST) {
		q->sport = ports[2];
	} else if (q->proto == IPPROTO_ICMPV6 && ((__u8 *)ports)[0] == ICMPV6_ECHO_REPLY) {
		q->dport = ports[2];
	} else {
		return -1;
	}
	return 0;
}

/*
 * The quoted packet's addresses and ports (echo id) become `want`'s. The
 * outer ICMPv6 checksum covers them as payload: one diff over what
 * changed, without the pseudo-header flag. The quoted L4 checksum is left
 * as it was, as for IPv4.
 */
static __always_inline int quote6_rewrite(struct __sk_buff *skb, const struct l4_info6 *l4,
					  const struct moat_ct6_key *q,
					  const struct moat_ct6_key *want)
{
	__u32 in3 = l4->l4_off + 8, in4 = in3 + sizeof(struct ipv6hdr);
	__be32 old_ports = 0, new_ports = 0;
	__u32 at = in4, len = 4;
	__s64 diff;

	if (q->proto == IPPROTO_ICMPV6) {
		/* The id alone, at an even offset as in the packet. */
		*(__be16 *)&old_ports = q->sport | q->dport;
		*(__be16 *)&new_ports = want->sport | want->dport;
		at = in4 + 4;
		len = 2;
	} else {
		__builtin_memcpy(&old_ports, &q->sport, 4);
		__builtin_memcpy(&new_ports, &want->sport, 4);
	}
	diff = bpf_csum_diff((__be32 *)q, 32, (__be32 *)want, 32, 0);
	if (diff >= 0)
		diff = bpf_csum_diff(&old_ports, 4, &new_ports, 4, diff);
	if (diff < 0 || bpf_l4_csum_replace(skb, l4->l4_off + 2, 0, diff, 0) ||
	    bpf_skb_store_bytes(skb, in3 + 8, want, 32, 0) ||
	    bpf_skb_store_bytes(skb, at, &new_ports, len, 0))
		return -1;
	return 0;
}

/*
 * nat_icmp_error() for IPv6: an ICMPv6 error about a tracked flow is part
 * of it, and about a translated one (masquerade, published ports) it is
 * translated like the flow's packets: the quote, then the outer address on
 * the flow's side. Same rules: it travels to the quoted packet's source, a
 * container reports only about what it received, and at an uplink only
 * the uplink's own entries count. The 40-byte keys live in the per-CPU
 * scratch (lib/maps.h).
 *
 * A BPF-to-BPF call, not inlined: each call frame keeps its own stack
 * and the programs stay under the verifier's 512-byte frame limit.
 */
static __noinline int nat_icmp_error6(struct __sk_buff *skb, const struct l4_info6 *l4,
				      __u32 ifindex, __u32 dir, __u64 now)
{
	struct v6_scratch *s = v6_scratch_get();
	struct moat_ct6_entry *e;
	struct moat_ct6_key *q;

	if (!s || quote6_read(skb, l4, s))
		return 0;
	q = &s->quoted;
	if (!ip_eq(&l4->key.daddr, &q->saddr))
		return 0;
	if (dir == MOAT_DIR_FROM_CONTAINER && !ip_eq(&l4->key.saddr, &q->daddr))
		return 0;
	ct6_reverse(q, &s->rkey);
	e = ct6_lookup(&s->rkey, now);
	if (is_uplink_dir(dir) && (!e || e->dir != dir))
		return 0;
	if (!e) {
		e = ct6_lookup(q, now); /* as nat_icmp_error() */
		return e && ct6_is_orig(e);
	}
	if (!ct6_rewrites_here(e, ifindex, dir))
		return 1;
	ct6_reverse(&e->xlated, &s->rkey); /* what the quote becomes */
	if (quote6_rewrite(skb, l4, q, &s->rkey))
		return MOAT_DROP_NAT_FAILED;
	if (!ip_eq(&q->saddr, &s->rkey.saddr) &&
	    rewrite_addr6(skb, l4, 24, &l4->key.daddr, &s->rkey.saddr))
		return MOAT_DROP_NAT_FAILED;
	if (ip_eq(&l4->key.saddr, &q->daddr) && !ip_eq(&q->daddr, &s->rkey.daddr) &&
	    rewrite_addr6(skb, l4, 8, &l4->key.saddr, &s->rkey.daddr))
		return MOAT_DROP_NAT_FAILED;
	return 1;
}

#endif
