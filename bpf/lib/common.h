/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * common.h - includes and small macros every moat BPF program needs.
 * Kernel UAPI headers rather than vmlinux.h: the programs only touch packet
 * headers, whose layout is ABI, so the build does not depend on the running
 * kernel's BTF.
 */
#ifndef MOAT_LIB_COMMON_H
#define MOAT_LIB_COMMON_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/icmpv6.h>
#include <linux/in.h>
#include <linux/errno.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "abi.h"

#define NSEC_PER_SEC 1000000000ULL
/* <time.h> is not for the BPF target: the kernel's value, for bpf_timer_init(). */
#define MOAT_CLOCK_MONOTONIC 1

/*
 * The data path's clock: CLOCK_MONOTONIC as of the last tick (a jiffy's
 * resolution). It costs ~3 ns a read against ~24 ns for bpf_ktime_get_ns(),
 * about a third of an established packet's whole cost, and every use is
 * coarser than a jiffy: timeouts in seconds, reports every few seconds.
 * Userspace compares with CLOCK_MONOTONIC_COARSE, the same clock (abi.h).
 */
static __always_inline __u64 moat_now(void)
{
	return bpf_ktime_get_coarse_ns();
}

#ifndef likely
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#endif

#endif
