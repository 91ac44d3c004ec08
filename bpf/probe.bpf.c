// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * probe.bpf.c - what the running kernel can do that moat needs and older
 * kernels lack, asked once per process (userspace dataplane/features.h).
 *
 *   csum_ipv6: bpf_l4_csum_replace() in diff mode with BPF_F_IPV6, as NAT66
 *              calls it (lib/nat.h, rewrite_addr6()). Kernels before 6.16
 *              (upstream ead7f9b8de65) reject the flag with -EINVAL at run
 *              time, not at load: the verifier takes any flags, so only a
 *              run (BPF_PROG_TEST_RUN on an Ethernet/IPv6/UDP frame) tells.
 *              Returns the helper's result: 0 when the kernel has it.
 */
#include "lib/common.h"

SEC("tc")
int csum_ipv6(struct __sk_buff *skb)
{
	/* The UDP checksum of the frame userspace hands in; any diff will do. */
	return bpf_l4_csum_replace(skb, ETH_HLEN + sizeof(struct ipv6hdr) + 6, 0, 1,
				   BPF_F_PSEUDO_HDR | BPF_F_IPV6);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
