/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: full checksums over packet data the IPv6 paths build or wrap: the
 * IPv6 pseudo header (RFC 8200 8.1) and a bounded sum of the bytes from a
 * packet pointer to data_end (256-byte bpf_csum_diff chunks, then words,
 * then a last odd byte). Words are summed as loaded (csum.h).
 */
#ifndef XLB_CSUM6_H
#define XLB_CSUM6_H

#include <linux/bpf.h>
#include "csum.h"

#define XLB_SUM_CHUNK		256
#define XLB_SUM_CHUNKS		16	/* 4096 bytes: the largest XDP frame of one page */
#define XLB_SUM_WORDS		(XLB_SUM_CHUNK / 4)

/* Sum of the pseudo header: source, destination, 32-bit length, next header. */
static __always_inline __u32 xlb_pseudo6_sum(const __be32 *saddr, const __be32 *daddr, __u32 len,
					     __u8 nexthdr)
{
	__u32 s = 0;

#pragma unroll
	for (int i = 0; i < 4; i++) {
		s = xlb_csum_add32(s, saddr[i]);
		s = xlb_csum_add32(s, daddr[i]);
	}
	s = xlb_csum_add32(s, bpf_htonl(len));
	s = xlb_csum_add32(s, bpf_htonl(nexthdr));
	return s;
}

/* Adds to s (unfolded) the bytes from `from` (at an even offset of what
 * the checksum covers) to data_end; at most XLB_SUM_CHUNKS chunks. */
static __always_inline __u32 xlb_sum_to_end(__u32 s, void *from, void *data_end)
{
	void *pos = from;
	__s64 d;

	for (int i = 0; i < XLB_SUM_CHUNKS; i++) {
		if (pos + XLB_SUM_CHUNK > data_end)
			break;
		d = bpf_csum_diff(NULL, 0, pos, XLB_SUM_CHUNK, 0);
		s = xlb_csum_add32(s, (__u32)d);
		s = (s & 0xffff) + (s >> 16);
		pos += XLB_SUM_CHUNK;
	}
	for (int i = 0; i < XLB_SUM_WORDS; i++) {
		__u32 *w = pos;

		if ((void *)(w + 1) > data_end)
			break;
		s = xlb_csum_add32(s, *w);
		pos += 4;
	}
	if (pos + 2 <= data_end) {
		s += *(__u16 *)pos;
		pos += 2;
	}
	if (pos + 1 <= data_end) {
		__u16 last = 0;	/* the odd byte, first of a zero-padded word */

		*(__u8 *)&last = *(__u8 *)pos;
		s += last;
	}
	return s;
}

/* XDP: the folded (not complemented) sum of seed and the frame's bytes
 * from offset `off` to its end. A global subprogram: verified once, not at
 * every caller. */
__noinline int xlb_xdp6_sum(struct xdp_md *ctx, __u32 off, __u32 seed)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	void *from = data + (off & 0xff);
	__u32 s;

	if (from > data_end)
		return 0;
	s = xlb_sum_to_end(seed & 0xffff, from, data_end) + (seed >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (int)s;
}

#endif /* XLB_CSUM6_H */
