/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * maps.h - every map of moat's programs, and only here. Every program
 * object (endpoint, uplink, socket hooks, reaper) declares all of them;
 * userspace pins them under /sys/fs/bpf/moat/<instance>/<map name>, so the
 * objects of one instance share one set (the names are the pin names: never
 * rename one). Userspace is the only writer except for `stats`, `ct` and `ct6` with
 * their quota maps (`ct_ring`, `ct_ring_pos`, `ct_owned`, `ct_sweeper`, and
 * the `ct6_` ones), `frags`, `frags6`,
 * `sock_rnat`, `sock_rnat6`, `fast_stats` and the observation maps (`events`, `events_lost`,
 * `rule_hits`), which the programs fill, and the per-CPU scratch maps, which
 * only the programs use. Layouts come from abi.h.
 */
#ifndef MOAT_LIB_MAPS_H
#define MOAT_LIB_MAPS_H

#include "lib/common.h"
#include "lib/parse.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MOAT_MAX_ENDPOINTS);
	__type(key, __u32); /* ifindex of the host-side interface */
	__type(value, struct moat_endpoint);
} endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MOAT_MAX_ADDR_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct moat_lpm_v4_key);
	__type(value, struct moat_addr_info);
} addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MOAT_MAX_ADDR_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct moat_lpm_v6_key);
	__type(value, struct moat_addr_info);
} addrs6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MOAT_STATS_ENTRIES);
	__type(key, __u32); /* moat_stats_index(slot, dir) */
	__type(value, struct moat_stats);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MOAT_MAX_PUBLISH);
	__type(key, struct moat_publish_key);
	__type(value, struct moat_publish_val);
} publish SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MOAT_MAX_PUBLISH);
	__type(key, struct moat_publish6_key);
	__type(value, struct moat_publish6_val);
} publish6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MOAT_MAX_ENDPOINTS);
	__type(key, struct moat_container_net_key);
	__type(value, __be32);
} container_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MOAT_MAX_ENDPOINTS);
	__type(key, struct moat_container_net_key);
	__type(value, union moat_ip);
} container_addrs6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MOAT_MAX_UPLINKS);
	__type(key, __u32); /* ifindex */
	__type(value, struct moat_uplink);
} uplinks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MOAT_UPLINK_SLOTS_IFINDEX);
	__type(key, __u32); /* ifindex */
	__type(value, __u32); /* stats slot, 0 if not an uplink */
} uplink_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MOAT_MAX_CT);
	__type(key, struct moat_ct_key);
	__type(value, struct moat_ct_entry);
} ct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MOAT_MAX_CT);
	__type(key, __u32); /* position % its size (ct_ring_at) */
	__type(value, struct moat_ct_ring_slot);
} ct_ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct moat_ct_ring_pos);
} ct_ring_pos SEC(".maps");

/* The ring's sweeper (lib/ct.h). Its own map: a userspace write to a map
 * value cancels the timer in it, and tests do write `ct_ring_pos`. */
struct ct_sweeper {
	struct bpf_timer timer;
	__u32 armed; /* 1 while the timer runs */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ct_sweeper);
} ct_sweeper SEC(".maps");

/* Flows per owner. An LRU only so that addresses long gone make room: a
 * live container's count is touched with each of its flows. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MOAT_MAX_CT_OWNERS);
	__type(key, __be32);
	__type(value, __u32);
} ct_owned SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MOAT_MAX_FRAGS);
	__type(key, struct moat_frag_key);
	__type(value, struct moat_frag_ports);
} frags SEC(".maps");

/* IPv6 connection tracking (abi.h): the same maps with IPv6 keys. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MOAT_MAX_CT);
	__type(key, struct moat_ct6_key);
	__type(value, struct moat_ct6_entry);
} ct6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MOAT_MAX_CT);
	__type(key, __u32);
	__type(value, struct moat_ct6_ring_slot);
} ct6_ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct moat_ct_ring_pos);
} ct6_ring_pos SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ct_sweeper);
} ct6_sweeper SEC(".maps");

/* Flows per IPv6 owner, by the whole address (abi.h): as `ct_owned`. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MOAT_MAX_CT_OWNERS);
	__type(key, union moat_ip);
	__type(value, __u32);
} ct6_owned SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MOAT_MAX_FRAGS);
	__type(key, struct moat_frag6_key);
	__type(value, struct moat_frag_ports);
} frags6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct moat_host_cfg);
} host_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MOAT_MAX_SOCK_RNAT);
	__type(key, struct moat_sock_rnat_key);
	__type(value, struct moat_sock_rnat_val);
} sock_rnat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MOAT_MAX_SOCK_RNAT);
	__type(key, struct moat_sock_rnat6_key);
	__type(value, struct moat_sock_rnat6_val);
} sock_rnat6 SEC(".maps");

/*
 * One generation of the identity cache; `ipcache_gens` holds two. Inner map
 * templates give sizes, not types: bpftool 7.1's libbpf cannot size a
 * struct type inside an inner map definition.
 */
struct ipcache_gen {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MOAT_MAX_IPCACHE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(key_size, sizeof(struct moat_lpm_v4_key));
	__uint(value_size, sizeof(struct moat_ipcache_val));
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct ipcache_gen);
} ipcache_gens SEC(".maps");

struct ipcache6_gen {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MOAT_MAX_IPCACHE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(key_size, sizeof(struct moat_lpm_v6_key));
	__uint(value_size, sizeof(struct moat_ipcache_val));
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct ipcache6_gen);
} ipcache6_gens SEC(".maps");

/* One generation of compiled policy; `policy_gens` holds two. */
struct policy_gen {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MOAT_MAX_POLICY);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(key_size, sizeof(struct moat_policy_key));
	__uint(value_size, sizeof(struct moat_policy_val));
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct policy_gen);
} policy_gens SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32); /* the policy revision, see abi.h */
} policy_rev SEC(".maps");

/* Observation (abi.h, "Observation"; lib/observe.h). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, MOAT_EVENTS_BYTES);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MOAT_EV_LOST_MAX);
	__type(key, __u32);
	__type(value, __u64);
} events_lost SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MOAT_MAX_RULES);
	__type(key, __u32);
	__type(value, __u64);
} rule_hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32); /* MOAT_OBS_F_* */
} obs_cfg SEC(".maps");

/* The fast path between containers of one network (abi.h; lib/redirect.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MOAT_MAX_ENDPOINTS);
	__type(key, struct moat_peer_key);
	__type(value, __u32); /* ifindex of the host-side interface */
} local_peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32); /* MOAT_FAST_F_* */
} fast_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MOAT_FAST_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} fast_stats SEC(".maps");

/* Per-CPU scratch: the drop-event token bucket, and the rule that decided
 * the packet being judged (a drop event names it). */
struct obs_scratch {
	__u64 tokens;
	__u64 refilled_ns;
	__u32 rule_id;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct obs_scratch);
} obs_scratch SEC(".maps");

/* Per-CPU scratch of ct_create()/ct_track(): two entries do not fit on the
 * BPF stack (lib/ct.h). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct moat_ct_entry);
} ct_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct moat_ct6_entry);
} ct6_scratch SEC(".maps");

/*
 * Per-CPU scratch of the IPv6 path at a container's veth: the packet's
 * tuple and the 40-byte keys its lookups build. The IPv4 path already
 * fills the 512-byte stack of its call chain; IPv6's keys are 2.5 times
 * as big. Only the TC programs use it, never the sweeper's softirq.
 */
struct v6_scratch {
	struct l4_info6 l4;
	struct moat_ct6_key rkey;
	struct moat_ct6_key quoted;
	struct ipv6hdr inner;
	__u64 now; /* the packet's one moat_now(), for every step at a veth */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct v6_scratch);
} v6_scratch SEC(".maps");

/*
 * The kernel's own map object, as far as moat reads it. Userspace sizes the
 * conntrack maps at creation from the instance's limits (abi.h, "Limits"),
 * so the programs take a map's size from the map itself: one truth, no copy
 * to keep in step. CO-RE gives the field's offset in the running kernel.
 */
struct bpf_map {
	__u32 max_entries;
} __attribute__((preserve_access_index));

static __always_inline __u32 map_max_entries(void *map)
{
	return ((struct bpf_map *)map)->max_entries;
}

static __always_inline struct v6_scratch *v6_scratch_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&v6_scratch, &zero);
}

/* What an address is to moat: a network's subnet, a host address, or NULL. */
static __always_inline struct moat_addr_info *addr_lookup(__be32 addr)
{
	struct moat_lpm_v4_key key = { .prefixlen = 32, .addr = addr };

	return bpf_map_lookup_elem(&addrs, &key);
}

static __always_inline struct moat_addr_info *addr_lookup6(union moat_ip addr)
{
	struct moat_lpm_v6_key key = { .prefixlen = 128, .addr = addr };

	return bpf_map_lookup_elem(&addrs6, &key);
}

static __always_inline int is_host_addr(const struct moat_addr_info *info)
{
	return info && (info->kind == MOAT_ADDR_GATEWAY || info->kind == MOAT_ADDR_HOST);
}

/* The publish entry for a host address and port: the address's own first,
 * then the one for every host address. */
static __always_inline struct moat_publish_val *publish_lookup(__be32 addr, __be16 port, __u8 proto)
{
	struct moat_publish_key k = { .host_ip = addr, .port = port, .proto = proto };
	struct moat_publish_val *v = bpf_map_lookup_elem(&publish, &k);

	if (v || !addr)
		return v;
	k.host_ip = 0;
	return bpf_map_lookup_elem(&publish, &k);
}

/* The same over IPv6 (`publish6`): the address's own, then [::]'s. */
static __always_inline struct moat_publish6_val *publish_lookup6(union moat_ip addr, __be16 port,
								 __u8 proto)
{
	struct moat_publish6_key k = { .host_ip = addr, .port = port, .proto = proto };
	struct moat_publish6_val *v = bpf_map_lookup_elem(&publish6, &k);

	if (v || ip_is_zero(&addr))
		return v;
	__builtin_memset(&k.host_ip, 0, sizeof(k.host_ip));
	return bpf_map_lookup_elem(&publish6, &k);
}

#endif
