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
 */
#include "lib/common.h"
#include "lib/parse.h"
#include "lib/maps.h"
#include "lib/ct.h"

SEC("syscall")
int ct_reap(struct moat_ct_reap_args *args)
{
	struct moat_ct_key key = args->key;

	args->reaped = 0;
	if (!bpf_map_lookup_elem(&ct, &key))
		return 0;
	args->reaped = ct_lookup(&key, bpf_ktime_get_ns()) == NULL;
	return 0;
}

SEC("syscall")
int ct6_reap(struct moat_ct6_reap_args *args)
{
	struct moat_ct6_key key = args->key;

	args->reaped = 0;
	if (!bpf_map_lookup_elem(&ct6, &key))
		return 0;
	args->reaped = ct6_lookup(&key, bpf_ktime_get_ns()) == NULL;
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
