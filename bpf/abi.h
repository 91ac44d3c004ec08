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

/*
 * An IPv6 address, or an IPv4 one mapped (::ffff:a.b.c.d), where one value
 * must hold either. IPv4's own keys stay 4 bytes: with 16-byte keys the hot
 * lookups (ct, the LPM tries) hash and compare more words on every IPv4
 * packet (one run measured +10-20%; repeated runs could not resolve it).
 */
union moat_ip {
	__u8 b[16];
	__be32 w[4];
};

/*
 * Map capacities; userspace checks a plan against them before writing.
 * Limits: the maps MapSizes::by_map() names (userspace/src/plan/limits.h,
 * with the defaults and the memory formula) are created at the size of the
 * instance's `limits`; for them what is written here is the compiled size,
 * which the BPF tests use. The programs read a limited size from the map
 * itself (map_max_entries(), lib/maps.h), never from here.
 */
/*
 * Attachments (container veths and uplinks) each own a counter slot in
 * `stats`; slot 0 counts what no attachment claims. Counters are per CPU
 * and preallocated, so this bounds their memory: MOAT_STATS_ENTRIES *
 * sizeof(struct moat_stats), 2.25 MiB, per possible CPU.
 */
#define MOAT_MAX_ATTACHMENTS 4096
#define MOAT_MAX_ENDPOINTS MOAT_MAX_ATTACHMENTS
#define MOAT_STATS_ENTRIES (2 * MOAT_MAX_ATTACHMENTS)
#define MOAT_MAX_ADDR_ENTRIES 16384
#define MOAT_MAX_PUBLISH 65536 /* one entry per published host port */
#define MOAT_MAX_UPLINKS 64
#define MOAT_MAX_CT 262144 /* connection-tracking entries (two per flow) */
#define MOAT_MAX_SOCK_RNAT 65536
#define MOAT_MAX_IPCACHE 65536 /* container addresses, host addresses, policy CIDRs */
#define MOAT_MAX_POLICY 1048576 /* compiled policy entries, per generation */

/*
 * Where a TC program sits: either side of a container's host-side veth, or
 * either side of an uplink (the host's way to the world).
 */
enum moat_dir {
	MOAT_DIR_FROM_CONTAINER = 0, /* TC ingress of the host-side veth */
	MOAT_DIR_TO_CONTAINER = 1, /* TC egress of the host-side veth */
	MOAT_DIR_FROM_WORLD = 2, /* TC ingress of an uplink: from the world */
	MOAT_DIR_TO_WORLD = 3, /* TC egress of an uplink: to the world */
	MOAT_DIR_MAX = 4,
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
	  "IPv6 that moat does not carry: the attachment has no IPv6 address, or "  \
	  "the uplink has none to masquerade it behind")                           \
	X(UNSUPPORTED_L3, 8, "unsupported-protocol",                                \
	  "ethertype other than IPv4, IPv6 or ARP (VLAN tags included)")           \
	X(ROUTER_ADVERT, 9, "router-advertisement",                                 \
	  "a container sent an IPv6 router advertisement or redirect")             \
	X(NOT_PUBLISHED, 10, "not-published",                                       \
	  "from an uplink straight to a container address, not via a published port") \
	X(NAT_NO_PORT, 11, "nat-port-exhausted",                                    \
	  "no free masquerade port for this destination")                          \
	X(NAT_FAILED, 12, "nat-rewrite-failed",                                     \
	  "the kernel refused a header rewrite or redirect")                       \
	X(POLICY_DEFAULT_DENY, 13, "policy-default-deny",                           \
	  "selected by a policy for this direction and allowed by none")           \
	X(POLICY_DENY, 14, "policy-deny", "an explicit deny rule")                   \
	X(POLICY_REVOKED, 15, "policy-revoked",                                     \
	  "an established connection the current policy no longer allows")        \
	X(UNIDENTIFIED, 16, "unidentified-container",                               \
	  "sent through a guarded bridge by a port no endpoint program judged "     \
	  "(a container moat has not identified yet)")                             \
	X(NO_FLOW, 17, "no-flow",                                                   \
	  "a packet that cannot open a flow (TCP other than a SYN, ICMP other "     \
	  "than an echo request), of no tracked flow, that would need translation; " \
	  "or a SYN the reply way on a closed TCP flow, which no policy judged")      \
	X(SPOOFED_MAC, 18, "spoofed-mac",                                           \
	  "source MAC (or ARP sender hardware address) is not the sending "         \
	  "container's own")                                                       \
	X(FOREIGN_MAC, 19, "foreign-mac",                                           \
	  "a unicast frame for another MAC reached a container's port (a "          \
	  "poisoned or flooding bridge)")                                          \
	X(CT_QUOTA, 20, "conntrack-quota",                                          \
	  "a new flow of a container that already holds its quota of tracked "      \
	  "flows (MOAT_CT_FLOW_QUOTA)")                                            \
	X(CT_FULL, 21, "conntrack-full",                                            \
	  "a new flow while the connection-tracking table is full")                \
	X(IPV6_EXT_HEADERS, 22, "ipv6-extension-headers",                           \
	  "an IPv6 extension-header chain that is cut short, malformed (hop-by-hop " \
	  "other than first) or longer than MOAT_IPV6_MAX_EXT headers")

enum moat_verdict {
	MOAT_PASS = 0,
#define MOAT_X_ENUM(name, num, metric, text) MOAT_DROP_##name = -(num),
	MOAT_DROP_REASONS(MOAT_X_ENUM)
#undef MOAT_X_ENUM
};

/*
 * IPv6 extension headers walked before a packet is given up on (dropped as
 * MOAT_DROP_IPV6_EXT_HEADERS): the walk is bounded, so is its cost, and no
 * chain can hide the upper-layer header beyond where moat looks.
 */
#define MOAT_IPV6_MAX_EXT 8

/* Size of per-reason counter arrays: index 0 is unused (it means pass). */
#define MOAT_NR_DROP_SLOTS 32

/*
 * Map `endpoints`: key __u32 ifindex of the host-side interface.
 * One entry per container network attachment. The network's flags are copied
 * in so the hot path needs no second lookup.
 */
struct moat_endpoint {
	__u32 net_id; /* network this attachment belongs to, never 0 */
	__be32 ipv4; /* the container's own address on this attachment */
	__u32 net_flags; /* MOAT_NET_F_* of that network */
	__u32 container_id; /* userspace's id, for names */
	__u32 stats_slot; /* this attachment's counters in `stats`, never 0 */
	/* The container's MAC on this attachment: the only source MAC it may
	 * send from, the only unicast destination it receives. */
	__u8 mac[6];
	__u8 pad[2];
	/* The container's own IPv6 address on this attachment; all zero when
	 * its network has no IPv6 subnet. */
	union moat_ip ipv6;
};

#define MOAT_NET_F_ICC (1u << 0) /* containers on the network may talk */
#define MOAT_NET_F_INTERNAL (1u << 1) /* nothing beyond the network */
#define MOAT_NET_F_MASQUERADE (1u << 2) /* egress to the world is source-NATed */
/*
 * The network's bridge carries `from_bridge` (bridge.bpf.c), which drops
 * every frame the bridge hands to the host that no endpoint program judged:
 * a container moat has not identified yet (or one created while the agent
 * is down) cannot leave its network. `from_container` marks what it passes
 * with MOAT_MARK_JUDGED only on such networks, and `from_bridge` clears the
 * bit again, so the mark is never seen beyond the bridge.
 */
#define MOAT_NET_F_GUARDED (1u << 3)

/*
 * skb->mark bit from_container sets on a pass (guarded networks only). A
 * container cannot forge it: the kernel clears the mark when a packet
 * crosses from the container's namespace into the host's (veth).
 */
#define MOAT_MARK_JUDGED 0x00400000u

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

/* Map `addrs6`: the same for IPv6 (subnets, gateways as /128). */
struct moat_lpm_v6_key {
	__u32 prefixlen;
	union moat_ip addr;
};

enum moat_addr_kind {
	MOAT_ADDR_SUBNET = 1,
	MOAT_ADDR_GATEWAY = 2,
	MOAT_ADDR_HOST = 3, /* another host address (an uplink's); net_id 0 */
};

struct moat_addr_info {
	__u32 net_id;
	__u32 kind; /* enum moat_addr_kind */
	__u32 net_flags; /* MOAT_NET_F_* of net_id's network, 0 for HOST */
};

/*
 * Map `stats`: per-CPU array, summed in userspace. An attachment's slot
 * (given by userspace, carried in its `endpoints` or `uplink_slots` entry)
 * owns two entries, one per direction: an array index the program already
 * holds costs no lookup of its own, where a hash keyed by interface did.
 */
static inline __u32 moat_stats_index(__u32 slot, __u32 dir)
{
	return slot * 2 + (dir & 1);
}

struct moat_stats {
	__u64 packets; /* passed */
	__u64 bytes; /* passed */
	__u64 new_flows; /* connections admitted (tracked or translated) here */
	__u64 drop_bytes;
	__u64 drops[MOAT_NR_DROP_SLOTS]; /* indexed by -verdict */
};

/*
 * Map `publish`: a published host port. host_ip 0 means every host address
 * (Docker's default); a specific address matches only itself. Ranges are
 * expanded to one entry per port, so a lookup is one hash probe (two with
 * the wildcard) whatever the number of published ports.
 */
struct moat_publish_key {
	__be32 host_ip;
	__be16 port;
	__u8 proto; /* IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP */
	__u8 pad;
};

struct moat_publish_val {
	__be32 backend_ip; /* the container's address */
	__be16 backend_port;
	__u16 pad;
	__u32 container_id;
	__u32 net_id;
};

/*
 * Map `publish6`: a published host port over IPv6. host_ip :: means every
 * host IPv6 address (Docker's [::]); the backend is the container's IPv6
 * address on the publishing network.
 */
struct moat_publish6_key {
	union moat_ip host_ip;
	__be16 port;
	__u8 proto;
	__u8 pad;
};

struct moat_publish6_val {
	union moat_ip backend_ip;
	__be16 backend_port;
	__u16 pad;
	__u32 container_id;
	__u32 net_id;
};

/*
 * Map `container_addrs`: a container's address on each of its networks. A
 * client sharing a network with a published container is forwarded to the
 * container's address on that network, so the reply leaves through the
 * interface whose address it carries.
 */
struct moat_container_net_key {
	__u32 container_id;
	__u32 net_id;
};

/* Map `container_addrs6`: the same, for IPv6 (value union moat_ip): a
 * container's IPv6 address on each of its networks that has IPv6. */

/* Map `uplinks`: key __u32 ifindex of an uplink; its address masquerades. */
struct moat_uplink {
	__be32 ipv4;
	__u32 stats_slot; /* as in moat_endpoint */
	/* Its global IPv6 address, all zero when it has none: IPv6 of the
	 * containers is then neither masqueraded nor published there. */
	union moat_ip ipv6;
};

/*
 * Map `uplink_slots`: array indexed by an uplink's ifindex, holding its
 * stats slot (0: not an uplink). An array lookup is inlined by the
 * verifier; an ifindex beyond it falls back to the `uplinks` hash.
 */
#define MOAT_UPLINK_SLOTS_IFINDEX 4096

/*
 * Map `ct`: connection tracking and NAT, a hash of flow tuples. Not an
 * LRU: nothing is ever evicted to make room, so one container flooding new
 * tuples cannot push out the others' flows. Room is made by expiry (lib/ct.h:
 * lookups and the ring sweep) and bounded per container by the quota.
 *
 * Every translated flow has two entries: one keyed by the original
 * direction's tuple as it arrives, one keyed by the reply's tuple as it
 * arrives. Each says what the tuple becomes (`xlated`) and at which hook it
 * is rewritten (`ifindex` + `dir`); at any other hook a matching entry only
 * says "this flow is known" and the packet passes unchanged. The partner
 * entry's key is always the reverse of `xlated`.
 * For ICMP echo, the identifier is the source "port" of a request and the
 * destination "port" of a reply (the other is 0), so the reply's tuple is
 * the request's reversed.
 */
struct moat_ct_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

/*
 * The context of program `ct_reap` (reap.bpf.c, BPF_PROG_TEST_RUN): one ct
 * key in; reaped out, 1 when its flow had expired and was ended (its
 * entries deleted, its flow-end event emitted), 0 when it lives on or was
 * gone already. now_ns in: the data path's clock (CLOCK_MONOTONIC_COARSE),
 * read by the caller, as a syscall program may not read it; capped at the
 * fine clock, which is never behind it.
 */
struct moat_ct_reap_args {
	struct moat_ct_key key;
	__u32 reaped;
	__u32 pad;
	__u64 now_ns;
};

enum moat_ct_kind {
	MOAT_CT_DNAT = 1, /* client -> published port, rewritten to the container */
	MOAT_CT_DNAT_REPLY = 2, /* container -> client, rewritten back */
	MOAT_CT_SNAT = 3, /* container -> world, source masqueraded */
	MOAT_CT_SNAT_REPLY = 4, /* world -> masquerade address, back to the container */
	MOAT_CT_TRACK = 5, /* admitted by policy, not translated: one entry per flow */
};

enum moat_tcp_state {
	MOAT_TCP_NONE = 0, /* not TCP */
	MOAT_TCP_SYN_SENT = 1,
	MOAT_TCP_ESTABLISHED = 2,
	MOAT_TCP_CLOSING = 3, /* closed: a FIN each way, or a RST; held MOAT_CT_TIMEOUT_TCP_CLOSE */
};

#define MOAT_CT_F_HAIRPIN (1u << 0) /* rewrite, then send back out of the same veth */
/* A FIN went the original way, the reply way: kept in both entries. One FIN
 * is a half-close (shutdown(SHUT_WR)): the other way may go on sending for
 * hours, so the flow keeps its timeout until both have. */
#define MOAT_CT_F_FIN_ORIG (1u << 1)
#define MOAT_CT_F_FIN_REPLY (1u << 2)
/* `tcp_known`: tcp_end[d] (END_ORIG << d), tcp_ack[d] (ACK_ORIG << d) hold a
 * value for direction d. */
#define MOAT_CT_K_END_ORIG (1u << 0)
#define MOAT_CT_K_END_REPLY (1u << 1)
#define MOAT_CT_K_ACK_ORIG (1u << 2)
#define MOAT_CT_K_ACK_REPLY (1u << 3)

/*
 * Which RST and FIN close a flow. A RST or a FIN that merely carries the
 * flow's tuple must not end it: a blind sender who guesses a published
 * flow's client port would otherwise cut a live connection a hold later
 * (the endpoints' own stacks check the sequence number and ignore it). So
 * the entries follow each direction's sequence space, as netfilter's
 * conntrack does (tcp_in_window()), in serial-number arithmetic:
 * - tcp_end[d]: the sequence number after the last one direction d (0:
 *   original, 1: reply) sent; tcp_ack[d]: the highest acknowledgement it
 *   sent. The opener's comes from the SYN that opened the flow; the other
 *   side's from its first packet that acknowledges that SYN (ack in [the
 *   SYN's seq + 1, its end]: data the SYN carried may go unacknowledged),
 *   which also establishes the flow.
 * - A segment from d is the flow's own when it is in order (seq equal to
 *   tcp_end[d]), or, out of order, has its seq within MOAT_CT_TCP_AHEAD of
 *   tcp_end[d] and its acknowledgement within MOAT_CT_TCP_AHEAD of
 *   tcp_ack[d] and not past tcp_end[!d] (it acknowledges only what the
 *   other way sent, and data in flight does not widen the range). Only
 *   such a segment moves them (tcp_end to seq + its length, the frame's
 *   bytes, not what its IP header claims; the highest tcp_ack), and only
 *   such a FIN counts, unless the peer acknowledged data past it. A blind
 *   sender must guess both: odds of 2^17 in 2^32 for each, as the
 *   endpoints' own stacks ask (RFC 5961).
 * - A RST from d counts only at tcp_end[d] (its sender's next byte) or at
 *   tcp_ack[!d] (where the peer acknowledged it: the answer to a segment
 *   of a connection its sender no longer has, or to a challenge ACK): 2
 *   numbers in 2^32, whatever is in flight. A RST answering the SYN is the
 *   answer's first packet: it must acknowledge the SYN.
 * - An in-order acknowledgement past tcp_end[!d] says moat missed data the
 *   other way sent (lost before moat, more than MOAT_CT_TCP_AHEAD in a
 *   row): tcp_end[!d] moves up to it, so the window is found again.
 * - A closed flow's tuple is reopened by its opener's bare SYN only; one
 *   the reply way is dropped (no-flow) until the hold ends, and a SYN
 *   beside a RST or FIN that does not count is no SYN.
 * Either way the packet passes: its receiver judges it; a RST or FIN that
 * does not count passes as a plain segment.
 * A translated flow's two entries each follow their own direction (the
 * other's tcp_end from the opening SYN; what a check needs of the other
 * way, its partner holds); a tracked flow's one entry both.
 */
#define MOAT_CT_TCP_AHEAD (1u << 16)

struct moat_ct_entry {
	struct moat_ct_key xlated;
	__u64 expires_ns; /* CLOCK_MONOTONIC_COARSE (bpf_ktime_get_coarse_ns()) */
	__u64 packets;
	__u64 bytes;
	__u32 ifindex; /* where the rewrite happens */
	__u8 dir; /* enum moat_dir at that interface */
	__u8 kind; /* enum moat_ct_kind */
	__u8 tcp_state; /* enum moat_tcp_state, kept in both entries */
	__u8 flags; /* MOAT_CT_F_* */
	__u32 container_id; /* the container of the flow, for names */
	__u32 policy_rev; /* revision that admitted the flow (MOAT_CT_TRACK) */
	__u64 reply_packets; /* MOAT_CT_TRACK: the reply direction's share */
	__u64 reply_bytes;
	__u64 created_ns;
	__u64 reported_ns; /* last flow event, to space them out */
	__u32 rule_id; /* policy rule that admitted it, MOAT_RULE_NONE if none */
	__be32 owner; /* the container address whose quota the flow counts in */
	__u32 ring_slot; /* original-direction entry: the flow's slot on `ct_ring` */
	__u32 tcp_end[2]; /* TCP, by direction (0: original): MOAT_CT_TCP_AHEAD's comment */
	__u32 tcp_ack[2];
	__u8 tcp_known; /* MOAT_CT_K_* */
	__u8 pad[3];
};

/*
 * The quota: a container may hold 1/MOAT_CT_FLOW_QUOTA_SHARE of the ring's
 * slots (the table's entries, the instance's `limits.conntrack`) as flows at
 * a time, MOAT_CT_FLOW_QUOTA at the compiled size (a
 * flow: one entry, or the two of a translated flow). Its owner is the
 * container the flow belongs to: the sender at its own veth or at
 * masquerade, the receiver for a flow that met it first (published ports:
 * the backend). Eight containers at their quota (of translated flows) fill
 * the table.
 *
 * Map `ct_ring`: every flow once, by its original-direction key and owner,
 * in the order made; `ct_ring_pos` holds the ring's head and tail (positions
 * only grow; slot = position % the ring's size). A BPF timer (`ct_sweeper`,
 * lib/ct.h) sweeps the ring every MOAT_CT_SWEEP_TICK_MS: 1/MOAT_CT_SWEEP_TURN
 * of its slots at the head, so every flow on it is looked at once per turn
 * (2.56 s) whatever its length. A flow that expired is ended there (its
 * entries deleted, its flow-end event sent) and its owner's count
 * (`ct_owned`) goes down; a live one goes back to the tail. Room comes back
 * without a reader and without new flows, a count is never more than the
 * ring's slots of that owner, and a new flow pays for no sweeping: it
 * writes its slot and counts itself. Netfilter's conntrack does the same
 * with its gc worker.
 *
 * While the ring holds fewer than 1/MOAT_CT_QUOTA_FROM_SHARE of its slots
 * (MOAT_CT_QUOTA_FROM at the compiled size) as flows, nothing
 * is counted and the timer stops: no container can be near its quota, or
 * the table near full, and a new flow costs one array write. The first flow
 * counted starts the timer again. Flows made on a quiet ring stay uncounted
 * (`counted` 0) for good, so a container holds at most MOAT_CT_FLOW_QUOTA +
 * MOAT_CT_QUOTA_FROM.
 *
 * Closed flows. A TCP flow is closed by a FIN each way or a RST (one FIN
 * is a half-close and keeps the established timeout). Its entries then
 * pass its stragglers (the last ACK, a FIN retransmitted after a lost ACK:
 * Linux's first retransmission comes after 200 ms, the next after 600)
 * for MOAT_CT_TIMEOUT_TCP_CLOSE from the close, a hold its packets do not
 * extend, and a SYN on the tuple opens it anew, admitted and counted like
 * any new flow. Were a closed flow counted until the sweep ends it (up to
 * a hold plus a turn, 3.5 s), a container answering one connection per
 * request would be held to its quota per 3.5 s (~300/s at the defaults).
 * So the close gives its owner the room back at once, and the flow moves
 * to the ring's closed flows (`ct_ring_pos.closed`), which hold at most
 * 1/MOAT_CT_CLOSED_SHARE of the ring's slots, all owners together, until
 * the sweep ends it. That bound is what a fast opener and closer would
 * otherwise take from everyone: a closed flow's slot stays on the ring (its
 * length is the table-full check) and its entries in the table until the
 * sweep passes, so uncounted ones would grow with the rate of closes
 * (12,000/s x 3.5 s, past the defaults' 16,384 entries). With the bound a
 * container holds at most its quota of open flows plus the closed share
 * (1/16 + 1/4 of the slots, entries for at most two thirds of the table),
 * never the table. When the closed flows are at their bound, a close
 * leaves its flow counted as before (ended by the sweep, its owner's room
 * back then): the others' closes are never refused, only given back later.
 * While closed flows wait (an eighth of their share), the sweep turns
 * MOAT_CT_SWEEP_FAST times as fast (0.32 s; its cost grows as much, bounded
 * per tick), so a closed flow leaves about 1.2 s after its close. Steady
 * state at the defaults: 4,096 closed flows per ~1.2 s, ~3,000 closes a
 * second for the host, bursts of 5,000 (quota and closed share) at any
 * rate; measured: 20,000 connections in a row to a published port in 6.5 s,
 * 5 SYNs dropped as conntrack-quota (tests/e2e/test_conntrack_close.sh with
 * 20,000). `limits.conntrack` scales it; the hold bounds it (share / hold).
 *
 * Each flow's count is in its ring slot's `counted`: MOAT_CT_COUNTED (in
 * its owner's count), MOAT_CT_COUNTED_CLOSED (among the closed flows) or 0
 * (nothing). Whoever takes a slot's `counted` gives back what it held, so
 * nothing is given back twice: the close takes it from the slot its
 * original-direction entry names (`ring_slot`) with a compare and swap
 * (COUNTED to COUNTED_CLOSED, only while the slot still holds the flow's
 * key and owner); the sweep takes it from the head slot with an exchange,
 * writes a live flow's slot at the tail with what it took and only then
 * names the new slot in the entry. A close that meets the old slot fails
 * its swap: that flow is given back late (by the sweep), never twice. A
 * slot its entry no longer names (the tuple deleted and made anew, a SYN
 * reopening it) is given back by the sweep. A packet that deletes an
 * expired closed flow before the sweep gives nothing back: the sweep does,
 * finding it gone. So an owner's count is the number of its slots still
 * COUNTED, never less than the open flows it holds, never more than its
 * quota (plus the quiet ring's). One assumption, the one the sweep's gap
 * makes already: the slot a close checked (key, owner) is not made anew
 * before its swap a few instructions later, which takes the tail around
 * the whole ring (MOAT_CT_SWEEP_GAP new flows when it is full) meanwhile.
 */
#define MOAT_CT_FLOW_QUOTA_SHARE 16 /* quota: the ring's slots / this */
#define MOAT_CT_QUOTA_FROM_SHARE 64 /* counting starts at the ring's slots / this */
/* Both at the compiled size (MOAT_MAX_CT); an instance's own follow its limits. */
#define MOAT_CT_FLOW_QUOTA (MOAT_MAX_CT / MOAT_CT_FLOW_QUOTA_SHARE)
#define MOAT_CT_QUOTA_FROM (MOAT_MAX_CT / MOAT_CT_QUOTA_FROM_SHARE)
#define MOAT_CT_SWEEP_TICK_MS 10
#define MOAT_CT_SWEEP_TURN 256 /* ticks per turn of the ring */
#define MOAT_CT_SWEEP_GAP 64 /* slots kept between the sweep and the writers */
#define MOAT_CT_CLOSED_SHARE 4 /* closed flows: at most the ring's slots / this */
/* While an eighth of that is in use, the sweep turns this many times as fast, at most
 * MOAT_CT_SWEEP_FAST_MAX slots more a tick. */
#define MOAT_CT_SWEEP_FAST 8
#define MOAT_CT_SWEEP_FAST_MAX 4096
#define MOAT_MAX_CT_OWNERS MOAT_MAX_ADDR_ENTRIES

enum moat_ct_counted {
	MOAT_CT_COUNTED = 1, /* in its owner's count (ct_owned) */
	MOAT_CT_COUNTED_CLOSED = 2, /* closed: among the ring's closed flows */
};

struct moat_ct_ring_slot {
	struct moat_ct_key key;
	__be32 owner;
	__u32 counted; /* enum moat_ct_counted, 0: nothing */
};

struct moat_ct_ring_pos {
	__u64 head;
	__u64 tail;
	__u64 closed; /* slots MOAT_CT_COUNTED_CLOSED */
};

/*
 * Map `frags`: the ports of a fragmented datagram, remembered from its first
 * fragment (key: addresses, IP id, protocol), so the later ones, which carry
 * no L4 header, find their flow. LRU: a datagram needs it for milliseconds.
 */
struct moat_frag_key {
	__be32 saddr;
	__be32 daddr;
	__be16 id;
	__u8 proto;
	__u8 pad;
};

struct moat_frag_ports {
	__be16 sport;
	__be16 dport;
};

#define MOAT_MAX_FRAGS 16384

/*
 * IPv6 connection tracking: maps `ct6`, `ct6_ring`, `ct6_ring_pos`,
 * `frags6`, laid out as their IPv4 counterparts with 16-byte addresses
 * (IPv4's keys stay 4-byte: their lookups are the hot ones). One code
 * (lib/ct_impl.h) serves both families. An IPv6 flow's quota owner is its
 * container's whole IPv6 address, counted in `ct6_owned` (key union
 * moat_ip): the uplink, which masquerades, knows no container's IPv4
 * address; so a container has a quota per family, each table its own. Not
 * a 32-bit fold of the address: a container picking its own address could
 * pick one folding to another's and use up that one's quota. For ICMPv6
 * echo, the identifier is the "port" as for ICMP.
 */
struct moat_ct6_key {
	union moat_ip saddr;
	union moat_ip daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct moat_ct6_entry {
	struct moat_ct6_key xlated;
	__u64 expires_ns;
	__u64 packets;
	__u64 bytes;
	__u32 ifindex;
	__u8 dir;
	__u8 kind;
	__u8 tcp_state;
	__u8 flags;
	__u32 container_id;
	__u32 policy_rev;
	__u64 reply_packets;
	__u64 reply_bytes;
	__u64 created_ns;
	__u64 reported_ns;
	__u32 rule_id;
	union moat_ip owner; /* whose quota the flow counts in (ct6_owned) */
	__u32 ring_slot; /* as moat_ct_entry's, on `ct6_ring` */
	__u32 tcp_end[2]; /* as moat_ct_entry's */
	__u32 tcp_ack[2];
	__u8 tcp_known;
	__u8 pad[3];
};

struct moat_ct6_ring_slot {
	struct moat_ct6_key key;
	union moat_ip owner;
	__u32 counted; /* enum moat_ct_counted, in ct6_owned */
};

/* The context of program `ct6_reap`: moat_ct_reap_args for a `ct6` key. */
struct moat_ct6_reap_args {
	struct moat_ct6_key key;
	__u32 reaped;
	__u32 pad;
	__u64 now_ns;
};

/* Map `frags6`: the Fragment header's identification and next header. */
struct moat_frag6_key {
	union moat_ip saddr;
	union moat_ip daddr;
	__be32 id;
	__u8 proto;
	__u8 pad[3];
};

/* Idle timeouts in seconds, per state. */
#define MOAT_CT_TIMEOUT_TCP_SYN 60
#define MOAT_CT_TIMEOUT_TCP_EST 21600
#define MOAT_CT_TIMEOUT_TCP_CLOSE 1 /* closed: the hold from the close (above) */
#define MOAT_CT_TIMEOUT_UDP 60
#define MOAT_CT_TIMEOUT_ICMP 30

/*
 * Masquerade source ports (and ICMP echo ids): below Linux's default
 * ephemeral range (32768-60999), so a translated flow never takes the tuple
 * of a connection the host itself opened, and wide enough that a
 * container's own ephemeral ports map one to one into it (lib/nat_impl.h:
 * the same container tuple keeps its outside tuple, as a server's
 * TIME_WAIT needs). 61000-65535 before: 4,536 ports, random per flow.
 */
#define MOAT_NAT_PORT_MIN 1024
#define MOAT_NAT_PORT_MAX 32767
#define MOAT_NAT_PORT_TRIES 16

/*
 * Map `host_cfg` (array, one entry): what the socket hooks need to know
 * about the host they serve. They run for every process of the machine and
 * act only in the network namespace whose cookie is here.
 */
struct moat_host_cfg {
	__u64 netns_cookie; /* 0: socket hooks inactive */
	__u32 flags; /* MOAT_HOST_F_* */
	__u32 pad;
};

/*
 * The runtime binds every published host port itself (dockerd with
 * userland-proxy off), which already keeps other processes off it: the
 * bind hook reserves nothing, so the runtime can bind again when it
 * restarts a container, whether or not moat has caught up.
 */
#define MOAT_HOST_F_RUNTIME_BINDS (1u << 0)

/*
 * Map `sock_rnat`: for a socket whose connect()/sendmsg() was redirected to
 * a container, what address the application asked for, so recvmsg() and
 * getpeername() show that address and not the container's.
 */
struct moat_sock_rnat_key {
	__u64 cookie; /* bpf_get_socket_cookie() */
	__be32 backend_ip;
	__be16 backend_port;
	__u16 pad;
};

struct moat_sock_rnat_val {
	__be32 orig_ip;
	__be16 orig_port;
	__u16 pad;
};

/* Map `sock_rnat6`: the same for IPv6 sockets redirected to a container's
 * IPv6 address (publish6). Its own map: 16-byte addresses in sock_rnat's key
 * would grow every IPv4 entry. */
struct moat_sock_rnat6_key {
	__u64 cookie; /* bpf_get_socket_cookie() */
	union moat_ip backend_ip;
	__be16 backend_port;
	__u16 pad[3];
};

struct moat_sock_rnat6_val {
	union moat_ip orig_ip;
	__be16 orig_port;
	__u16 pad;
};

/*
 * Segmentation policies, identity-based as in Cilium.
 *
 * Every address maps to a numeric identity through an LPM trie (`ipcache`):
 * containers with the same namespace, labels and ipBlocks holding their
 * address share one, host addresses are MOAT_ID_HOST (split the same way by
 * the ipBlocks holding them), other policy prefixes (and each `except`) have
 * their own, and whatever matches nothing is MOAT_ID_WORLD. The policy map is keyed by
 * {subject identity, peer identity, direction, protocol, port}; 0 in the
 * peer, protocol or port is a wildcard. The programs try, first hit wins:
 *   (peer, proto, port) (peer, proto, 0) (peer, 0, 0)
 *   (ANY,  proto, port) (ANY,  proto, 0) (ANY,  0, 0)
 * and userspace compiles precedence (deny over allow, specific peers
 * inheriting the wildcard peer's rules) into the entries, so the first hit
 * is the answer. No hit: denied if the subject is isolated in that
 * direction (selected by a policy), allowed otherwise. Six hash lookups at
 * most, whatever the number of rules.
 *
 * Both maps come in two generations inside map-in-map arrays
 * (`ipcache_gens`, `policy_gens`, slot = revision & 1). Userspace fills
 * the idle slot, then bumps `policy_rev`: one 4-byte write switches every
 * CPU to the new policy, so no packet sees half of each.
 */
enum moat_identity_reserved {
	MOAT_ID_ANY = 0, /* wildcard peer in policy keys */
	MOAT_ID_HOST = 1, /* the host: gateways, uplinks */
	MOAT_ID_WORLD = 2, /* any IPv4 address moat knows nothing about */
	/* Any such IPv6 address: 0.0.0.0/0 is not ::/0 (Kubernetes ipBlocks
	 * match one family), so the unknown worlds are two identities. */
	MOAT_ID_WORLD6 = 3,
	/* An IPv6 link-local or multicast peer: the host or any container of
	 * the link, which its address cannot tell apart. No rule names it:
	 * only rules for any peer admit it. */
	MOAT_ID_LINK = 4,
	MOAT_ID_FIRST_DYNAMIC = 256,
};

#define MOAT_ID_F_INGRESS_ISOLATED (1u << 0) /* selected by an ingress policy */
#define MOAT_ID_F_EGRESS_ISOLATED (1u << 1) /* selected by an egress policy */
#define MOAT_ID_F_CONTAINER (1u << 2) /* a container: its own hooks judge it */

struct moat_ipcache_val {
	__u32 identity;
	__u32 flags; /* MOAT_ID_F_* */
};

/*
 * `ipcache6_gens`: the same identities for IPv6 addresses and prefixes
 * (struct moat_lpm_v6_key), generation for generation beside
 * `ipcache_gens`. A container's IPv6 address has its IPv4 address's
 * identity unless an ipBlock holds one and not the other: ipBlocks match
 * the packet's own address, one family at a time, so such a container has
 * an identity per family (and entries for each).
 */

enum moat_policy_dir {
	MOAT_POLICY_INGRESS = 0,
	MOAT_POLICY_EGRESS = 1,
};

struct moat_policy_key {
	__u32 subject; /* identity the policy applies to */
	__u32 peer; /* identity of the other side, MOAT_ID_ANY = any */
	__u8 dir; /* enum moat_policy_dir */
	__u8 proto; /* IPPROTO_*, 0 = any */
	__be16 port; /* destination port, 0 = any (ICMP: any type) */
};

enum moat_policy_action {
	MOAT_POLICY_ALLOW = 1,
	MOAT_POLICY_DENY = 2,
};

struct moat_policy_val {
	__u32 action; /* enum moat_policy_action */
	__u32 rule_id; /* index into the compiled rule table, for names */
};

/*
 * Map `policy_rev` (array, one __u32): the current policy revision; its low
 * bit picks the generation. 0 means no policy anywhere: the programs skip
 * policy entirely. Tracked connections remember the revision that admitted
 * them and are judged again when it changes.
 */

/*
 * Observation.
 *
 * Map `rule_hits` (per-CPU array, key rule id): how many flows each policy
 * rule decided (allowed or denied). Userspace zeroes it when the rule table
 * changes (a new revision renumbers rules).
 */
#define MOAT_MAX_RULES 65536
#define MOAT_RULE_NONE 0xffffffffu

/*
 * Map `events` (ring buffer): flow and drop events. Bounded by design: a
 * flow reports when it starts, when TCP closes it (FIN/RST), when it
 * expires and at most every MOAT_EV_REPORT_INTERVAL_S while it lives; drop
 * events are rate-limited per CPU (MOAT_EV_DROP_RATE per second, bursts of
 * as many). What is suppressed or finds the buffer full is counted in
 * `events_lost` (per-CPU array, index enum moat_ev_lost), never queued.
 */
#define MOAT_EVENTS_BYTES (1u << 20)
#define MOAT_EV_REPORT_INTERVAL_S 5
#define MOAT_EV_DROP_RATE 1000

enum moat_event_type {
	MOAT_EV_FLOW_NEW = 1, /* a connection was admitted */
	MOAT_EV_FLOW_UPDATE = 2, /* periodic counts of a live connection */
	MOAT_EV_FLOW_END = 3, /* closed (TCP FIN/RST) or expired */
	MOAT_EV_DROP = 4, /* a packet was dropped */
};

enum moat_ev_lost {
	MOAT_EV_LOST_FULL = 0, /* the ring buffer was full: nobody reading fast enough */
	MOAT_EV_LOST_RATE = 1, /* drop events over the rate limit */
	MOAT_EV_LOST_MAX = 2,
};

struct moat_event {
	__u64 ts_ns; /* CLOCK_MONOTONIC_COARSE: a jiffy's resolution */
	__u32 type; /* enum moat_event_type */
	__u32 ifindex; /* where it was seen */
	__u8 dir; /* enum moat_dir at that interface */
	__u8 reason; /* drop reason slot (-verdict), 0 for flow events */
	__u8 ct_kind; /* enum moat_ct_kind of the flow, 0 for drops */
	__u8 tcp_state;
	__u32 rule_id; /* deciding policy rule, MOAT_RULE_NONE if none */
	struct moat_ct_key tuple; /* as seen where it was seen (drops: the packet's) */
	struct moat_ct_key xlated; /* what the tuple becomes (flows) */
	__u64 packets; /* flows: original direction so far */
	__u64 bytes;
	__u64 reply_packets; /* flows: reply direction so far */
	__u64 reply_bytes;
	/* MOAT_EV_F_IPV6: an IPv6 packet's drop or flow; its addresses are
	 * here and `tuple` and `xlated` hold only protocol and ports. The
	 * xlated_ ones are what a flow's become (its uplink's address when
	 * masqueraded, the backend's when published); all zero for a drop. */
	__u32 flags;
	__u32 pad;
	union moat_ip src6;
	union moat_ip dst6;
	union moat_ip xlated_src6;
	union moat_ip xlated_dst6;
};

#define MOAT_EV_F_IPV6 (1u << 0)

/*
 * Map `obs_cfg` (array, one __u32): MOAT_OBS_F_OFF turns counting and
 * events off, for measuring what observation costs.
 */
#define MOAT_OBS_F_OFF (1u << 0)

/*
 * The fast path between containers of one network (lib/redirect.h).
 *
 * Map `local_peers`: {network, IPv4 address} -> ifindex of the host-side
 * interface of the container holding that address on that network, one
 * entry per `endpoints` entry, so from_container finds the destination's
 * endpoint without a scan. Keyed by network: addresses of two networks may
 * overlap, and only a packet between containers of one network is bridged.
 */
struct moat_peer_key {
	__u32 net_id;
	__be32 addr;
};

/*
 * Map `fast_cfg` (array, one __u32): MOAT_FAST_F_PEER_OFF turns the fast
 * path off (the kill switch: every packet takes the bridge and the
 * destination's to_container again). 0, its initial value, means on;
 * userspace sets the flag when the kernel lacks bpf_redirect_peer().
 */
#define MOAT_FAST_F_PEER_OFF (1u << 0)
/*
 * MOAT_FAST_F_ROUTED_ON turns on the routed fast path (lib/fast_route.h):
 * from_bridge hands a judged packet the host would forward to an uplink
 * straight to that uplink (bpf_redirect_neigh), and from_world a reply of
 * a container's masqueraded or routed flow straight to the container
 * (bpf_redirect_peer, lib/fast_reply.h), skipping the host's IP stack.
 * Off by default: the host's own netfilter PREROUTING, FORWARD and
 * POSTROUTING rules, and IPsec forward policies, never see such a packet.
 */
#define MOAT_FAST_F_ROUTED_ON (1u << 1)

/*
 * Map `fast_stats` (per-CPU array, index enum moat_fast_stat): what left by
 * the fast path, the only trace of a packet whose destination's
 * to_container never ran (that one's counters are updated as it would).
 */
enum moat_fast_stat {
	MOAT_FAST_PEER_PACKETS = 0,
	MOAT_FAST_PEER_BYTES = 1,
	MOAT_FAST_ROUTED_PACKETS = 2, /* handed to an uplink by from_bridge */
	MOAT_FAST_ROUTED_BYTES = 3,
	/* handed to a container by from_world (lib/fast_reply.h) */
	MOAT_FAST_ROUTED_IN_PACKETS = 4,
	MOAT_FAST_ROUTED_IN_BYTES = 5,
	MOAT_FAST_STAT_MAX = 6,
};

/*
 * Layout checks: every struct above crosses the kernel/user boundary (map
 * keys and values, event records, program contexts), so its size is ABI as
 * much as its fields are. A change that moves a size, padding included, has
 * to change the number here too, on purpose. abi.h is compiled as C (clang
 * -target bpf) and as C++ (userspace), hence the macro.
 */
#ifdef __cplusplus
#define MOAT_ABI_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define MOAT_ABI_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif
#define MOAT_ABI_SIZE(type, size) \
	MOAT_ABI_ASSERT(sizeof(struct type) == (size), "sizeof(struct " #type ") is ABI")

MOAT_ABI_SIZE(moat_endpoint, 44);
MOAT_ABI_SIZE(moat_lpm_v4_key, 8);
MOAT_ABI_SIZE(moat_lpm_v6_key, 20);
MOAT_ABI_SIZE(moat_addr_info, 12);
MOAT_ABI_SIZE(moat_stats, 288);
MOAT_ABI_SIZE(moat_publish_key, 8);
MOAT_ABI_SIZE(moat_publish_val, 16);
MOAT_ABI_SIZE(moat_container_net_key, 8);
MOAT_ABI_SIZE(moat_uplink, 24);
MOAT_ABI_SIZE(moat_ct_key, 16);
MOAT_ABI_SIZE(moat_ct_reap_args, 32);
MOAT_ABI_SIZE(moat_ct_entry, 120);
MOAT_ABI_SIZE(moat_frag_key, 12);
MOAT_ABI_SIZE(moat_frag_ports, 4);
MOAT_ABI_SIZE(moat_publish6_key, 20);
MOAT_ABI_SIZE(moat_publish6_val, 28);
MOAT_ABI_SIZE(moat_ct6_key, 40);
MOAT_ABI_SIZE(moat_ct6_entry, 160);
MOAT_ABI_SIZE(moat_ct6_ring_slot, 60);
MOAT_ABI_SIZE(moat_ct6_reap_args, 56);
MOAT_ABI_SIZE(moat_frag6_key, 40);
MOAT_ABI_SIZE(moat_host_cfg, 16);
MOAT_ABI_SIZE(moat_sock_rnat_key, 16);
MOAT_ABI_SIZE(moat_sock_rnat_val, 8);
MOAT_ABI_SIZE(moat_sock_rnat6_key, 32);
MOAT_ABI_SIZE(moat_sock_rnat6_val, 20);
MOAT_ABI_SIZE(moat_ipcache_val, 8);
MOAT_ABI_SIZE(moat_policy_key, 12);
MOAT_ABI_SIZE(moat_policy_val, 8);
MOAT_ABI_SIZE(moat_event, 160);
MOAT_ABI_SIZE(moat_peer_key, 8);

/* Every drop reason has its counter slot: as many reasons as slots (slot 0
 * is pass), and no reason numbered beyond the array. */
#define MOAT_X_ONE(name, num, metric, text) +1
MOAT_ABI_ASSERT(0 MOAT_DROP_REASONS(MOAT_X_ONE) < MOAT_NR_DROP_SLOTS,
		"more drop reasons than MOAT_NR_DROP_SLOTS - 1");
#undef MOAT_X_ONE
#define MOAT_X_FITS(name, num, metric, text) &&(num) > 0 && (num) < MOAT_NR_DROP_SLOTS
MOAT_ABI_ASSERT(1 MOAT_DROP_REASONS(MOAT_X_FITS), "a drop reason numbered beyond MOAT_NR_DROP_SLOTS");
#undef MOAT_X_FITS

#endif /* MOAT_ABI_H */
