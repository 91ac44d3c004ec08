/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * ct_fam.h - the names one address family's connection tracking uses, for
 * the code written once for both (lib/ct_impl.h, lib/policy_impl.h,
 * lib/nat_impl.h, lib/world_impl.h): set CT_FAM to 4 or 6, then include this. No include
 * guard, on purpose: each inclusion renames for its family. Cilium writes
 * its ct4 and ct6 twice by hand; here the copies are the preprocessor's.
 */
#undef CT_KEY
#undef CT_ENTRY
#undef CT_SLOT
#undef CT_L4
#undef CT_FRAG_KEY
#undef CT_MAP
#undef CT_RING
#undef CT_RING_POS
#undef CT_SWEEPER
#undef CT_SCRATCH
#undef CT_FRAGS
#undef CT_ICMP
#undef CT_ICMP_ECHO
#undef CT_FN
#undef CT_V
#undef CT_ADDR
#undef CT_LPM_KEY
#undef CT_LPM_BITS
#undef CT_IPCACHE_GENS
#undef CT_ADDR_EQ
#undef CT_WORLD_ID
#undef CT_SADDR_OFF
#undef CT_DADDR_OFF
#undef CT_PUB_VAL
#undef CT_UPLINK_ADDR
#undef CT_SITES
#undef CT_OWNED
#undef CT_OWNER
#undef CT_OWNER_KEY
#undef CT_OWNER_VAL
#undef CT_OWNER_OF_ENTRY

#if CT_FAM == 4
#define CT_KEY struct moat_ct_key
#define CT_ENTRY struct moat_ct_entry
#define CT_SLOT struct moat_ct_ring_slot
#define CT_L4 struct l4_info
#define CT_FRAG_KEY struct moat_frag_key
#define CT_MAP ct
#define CT_RING ct_ring
#define CT_RING_POS ct_ring_pos
#define CT_SWEEPER ct_sweeper
#define CT_SCRATCH ct_scratch
#define CT_FRAGS frags
#define CT_ICMP IPPROTO_ICMP
#define CT_ICMP_ECHO ICMP_ECHO
#define CT_FN(name) ct_##name
#define CT_V(name) name
#define CT_ADDR __be32
#define CT_LPM_KEY struct moat_lpm_v4_key
#define CT_LPM_BITS 32
#define CT_IPCACHE_GENS ipcache_gens
#define CT_ADDR_EQ(a, b) ((a) == (b))
#define CT_WORLD_ID MOAT_ID_WORLD
#define CT_SADDR_OFF 12 /* in the IP header */
#define CT_DADDR_OFF 16
#define CT_PUB_VAL struct moat_publish_val
#define CT_UPLINK_ADDR(up) ((up)->ipv4)
#define CT_SITES struct ct_sites
#define CT_OWNED ct_owned
#define CT_OWNER __be32 /* the address itself */
#define CT_OWNER_KEY(o) (&(o))
#define CT_OWNER_VAL(o) (o)
#define CT_OWNER_OF_ENTRY(e) ((e)->owner)
#elif CT_FAM == 6
#define CT_KEY struct moat_ct6_key
#define CT_ENTRY struct moat_ct6_entry
#define CT_SLOT struct moat_ct6_ring_slot
#define CT_L4 struct l4_info6
#define CT_FRAG_KEY struct moat_frag6_key
#define CT_MAP ct6
#define CT_RING ct6_ring
#define CT_RING_POS ct6_ring_pos
#define CT_SWEEPER ct6_sweeper
#define CT_SCRATCH ct6_scratch
#define CT_FRAGS frags6
#define CT_ICMP IPPROTO_ICMPV6
#define CT_ICMP_ECHO ICMPV6_ECHO_REQUEST
#define CT_FN(name) ct6_##name
#define CT_V(name) name##6
#define CT_ADDR union moat_ip
#define CT_LPM_KEY struct moat_lpm_v6_key
#define CT_LPM_BITS 128
#define CT_IPCACHE_GENS ipcache6_gens
#define CT_ADDR_EQ(a, b) ip_eq(&(a), &(b))
#define CT_WORLD_ID MOAT_ID_WORLD6
#define CT_SADDR_OFF 8
#define CT_DADDR_OFF 24
#define CT_PUB_VAL struct moat_publish6_val
#define CT_UPLINK_ADDR(up) ((up)->ipv6)
#define CT_SITES struct ct6_sites
#define CT_OWNED ct6_owned
#define CT_OWNER const union moat_ip * /* where the address lives (lib/ct.h) */
#define CT_OWNER_KEY(o) (o)
#define CT_OWNER_VAL(o) (*(o))
#define CT_OWNER_OF_ENTRY(e) (&(e)->owner)
#else
#error "CT_FAM must be 4 or 6"
#endif
