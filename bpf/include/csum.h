/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: Internet checksums. Incremental updates per RFC 1624 (HC' = ~(~HC +
 * ~m + m')) for direct packet writes (XDP), and full sums for headers the data
 * plane builds itself. Words are summed as loaded (network order in memory):
 * the one's-complement sum is byte-order independent.
 */
#ifndef XLB_CSUM_H
#define XLB_CSUM_H

#include <linux/types.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>

static __always_inline __u16 xlb_csum_fold(__u32 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

static __always_inline __u32 xlb_csum_add32(__u32 s, __u32 v)
{
	return s + (v & 0xffff) + (v >> 16);
}

/* *sum covers a 32-bit field that changes from `from` to `to`. */
static __always_inline void xlb_csum_replace4(__sum16 *sum, __be32 from, __be32 to)
{
	__u32 s = (__u16)~*sum;

	s = xlb_csum_add32(s, ~from);
	s = xlb_csum_add32(s, to);
	*sum = xlb_csum_fold(s);
}

/* *sum covers a 16-bit field that changes from `from` to `to`. */
static __always_inline void xlb_csum_replace2(__sum16 *sum, __be16 from, __be16 to)
{
	__u32 s = (__u16)~*sum;

	s += (__u16)~from;
	s += to;
	*sum = xlb_csum_fold(s);
}

/* Checksum of a 20-byte IPv4 header (its check field must be 0). */
static __always_inline __u16 xlb_ipv4_csum(struct iphdr *ip)
{
	__u16 *w = (__u16 *)ip;
	__u32 s = 0;

#pragma unroll
	for (int i = 0; i < 10; i++)
		s += w[i];
	return xlb_csum_fold(s);
}

#endif /* XLB_CSUM_H */
