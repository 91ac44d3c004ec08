// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * reap.bpf.c - ends expired connection-tracking flows on request.
 *
 *   ct_reap:  a syscall program, run by userspace (BPF_PROG_TEST_RUN) once
 *             per candidate key of `ct` (IPv4).
 *   ct6_reap: the same for `ct6` (IPv6): a program of its own, as each
 *             family has its own map and key (abi.h).
 *
 * The TC programs end a flow lazily, when a packet meets its expired entry;
 * a flow that simply stops is never met again, so its flow-end event would
 * never come. The readers (`moat flows --follow`, `moat serve`) and
 * `moat ct gc` sweep such entries through these programs, which take the
 * very path the TC programs take (ct_lookup, ct6_lookup): the same partner
 * rule, the same event with the same counts (an IPv6 flow's with its
 * addresses), emitted by the kernel into the same ring.
 * Userspace cannot write into a BPF ring buffer, hence programs.
 *
 * The clock is the data path's (moat_now()), which a syscall program may
 * not read: the caller reads it and passes it in, and a time the kernel has
 * not reached yet is taken as the fine clock's now (reap_now()), so a wrong
 * one cannot end a live flow more than a jiffy early.
 */
#include "lib/common.h"
#include "lib/parse.h"
#include "lib/maps.h"
#include "lib/ct.h"

static __always_inline __u64 reap_now(__u64 given)
{
	__u64 fine = bpf_ktime_get_ns();

	return given < fine ? given : fine;
}

SEC("syscall")
int ct_reap(struct moat_ct_reap_args *args)
{
	struct moat_ct_key key = args->key;

	args->reaped = 0;
	if (!bpf_map_lookup_elem(&ct, &key))
		return 0;
	args->reaped = ct_lookup(&key, reap_now(args->now_ns)) == NULL;
	return 0;
}

SEC("syscall")
int ct6_reap(struct moat_ct6_reap_args *args)
{
	struct moat_ct6_key key = args->key;

	args->reaped = 0;
	if (!bpf_map_lookup_elem(&ct6, &key))
		return 0;
	args->reaped = ct6_lookup(&key, reap_now(args->now_ns)) == NULL;
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
