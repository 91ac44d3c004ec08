/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * maps.h - the maps moat's programs share. Userspace pins them under
 * /sys/fs/bpf/moat/<instance>/<map name> and is their only writer except for
 * `stats`, which the programs fill. Layouts come from abi.h.
 */
#ifndef MOAT_LIB_MAPS_H
#define MOAT_LIB_MAPS_H

#include "lib/common.h"

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
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MOAT_MAX_STATS);
	__type(key, struct moat_stats_key);
	__type(value, struct moat_stats);
} stats SEC(".maps");

#endif
