/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * abi.h - the one contract between moat's BPF programs and its userspace.
 *
 * Every struct, constant and enum that crosses the kernel/user boundary
 * lives here and is included by both sides, so a layout change is a compile
 * error on both sides instead of a silent mismatch. Keep it free of logic:
 * only layouts, limits and names.
 *
 * All addresses are in network byte order; everything else in host order.
 */
#ifndef MOAT_ABI_H
#define MOAT_ABI_H

#include <linux/types.h>

/* Map capacities; userspace checks a plan against them before writing. */
#define MOAT_MAX_ENDPOINTS 65536
#define MOAT_MAX_ADDR_ENTRIES 16384
#define MOAT_MAX_STATS 131072

/* Which side of a container's host-side veth a program sits on. */
enum moat_dir {
	MOAT_DIR_FROM_CONTAINER = 0, /* TC ingress of the host-side veth */
	MOAT_DIR_TO_CONTAINER = 1, /* TC egress of the host-side veth */
	MOAT_DIR_MAX = 2,
};

/*
 * Drop reasons: X(NAME, number, "metric-name", "what it means").
 * In BPF code a verdict is 0 (pass) or the negative number; counters are
 * indexed by the positive number. Never renumber: numbers are ABI.
 */
#define MOAT_DROP_REASONS(X)                                                        \
	X(INVALID_PACKET, 1, "invalid-packet", "malformed or truncated header")     \
	X(UNKNOWN_ENDPOINT, 2, "unknown-endpoint",                                  \
	  "interface carries moat's program but has no endpoint entry")            \
	X(SPOOFED_SOURCE, 3, "spoofed-source",                                      \
	  "source address is not the sending container's own")                     \
	X(ISOLATION, 4, "network-isolation",                                        \
	  "peer belongs to a different network")                                   \
	X(ICC_DISABLED, 5, "icc-disabled",                                          \
	  "container-to-container traffic on a network with icc off")              \
	X(INTERNAL_NETWORK, 6, "internal-network",                                  \
	  "an internal network's container talking beyond its network")           \
	X(IPV6_NOT_ENABLED, 7, "ipv6-not-enabled",                                  \
	  "IPv6 traffic other than neighbour discovery (no IPv6 subnets yet)")     \
	X(UNSUPPORTED_L3, 8, "unsupported-protocol",                                \
	  "ethertype other than IPv4, IPv6 or ARP (VLAN tags included)")           \
	X(ROUTER_ADVERT, 9, "router-advertisement",                                 \
	  "a container sent an IPv6 router advertisement or redirect")

enum moat_verdict {
	MOAT_PASS = 0,
#define MOAT_X_ENUM(name, num, metric, text) MOAT_DROP_##name = -(num),
	MOAT_DROP_REASONS(MOAT_X_ENUM)
#undef MOAT_X_ENUM
};

/* Size of per-reason counter arrays: index 0 is unused (it means pass). */
#define MOAT_NR_DROP_SLOTS 16

/*
 * Map `endpoints`: key __u32 ifindex of the host-side interface.
 * One entry per container network attachment. The network's flags are copied
 * in so the hot path needs no second lookup.
 */
struct moat_endpoint {
	__u32 net_id; /* network this attachment belongs to, never 0 */
	__be32 ipv4; /* the container's own address on this attachment */
	__u32 net_flags; /* MOAT_NET_F_* of that network */
	__u32 container_id; /* userspace's id, for counters and names */
};

#define MOAT_NET_F_ICC (1u << 0) /* containers on the network may talk */
#define MOAT_NET_F_INTERNAL (1u << 1) /* nothing beyond the network */

/*
 * Map `addrs`: LPM trie over IPv4 telling which network an address belongs
 * to. Each network contributes its subnet (MOAT_ADDR_SUBNET) and a /32 for
 * its gateway (MOAT_ADDR_GATEWAY), which is a host address.
 * Addresses that match nothing are the host's other addresses or the world.
 */
struct moat_lpm_v4_key {
	__u32 prefixlen;
	__be32 addr;
};

enum moat_addr_kind {
	MOAT_ADDR_SUBNET = 1,
	MOAT_ADDR_GATEWAY = 2,
};

struct moat_addr_info {
	__u32 net_id;
	__u32 kind; /* enum moat_addr_kind */
};

/* Map `stats`: per-CPU hash, key {ifindex, dir}; summed in userspace. */
struct moat_stats_key {
	__u32 ifindex;
	__u32 dir; /* enum moat_dir */
};

struct moat_stats {
	__u64 packets; /* passed */
	__u64 bytes; /* passed */
	__u64 drops[MOAT_NR_DROP_SLOTS]; /* indexed by -verdict */
};

#endif /* MOAT_ABI_H */
