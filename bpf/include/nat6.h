/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: IPv6 address + port rewriting (XDP, direct writes) with incremental
 * L4 checksums over the IPv6 pseudo header (RFC 1624; IPv6 has no header
 * checksum). UDP over IPv6 must carry a checksum: a computed 0 is written
 * as 0xffff, and datagrams that arrive with 0 are never translated
 * (pass_udp6_no_csum, xdp6). A non-first fragment gets its address only.
 */
#ifndef XLB_NAT6_H
#define XLB_NAT6_H

#include "parse6.h"
#include "csum.h"
#include "nat.h"
#include "lb6.h"

/* *sum covers a 16-byte address that changes from `from` to `to`. */
static __always_inline void xlb_csum_replace16(__sum16 *sum, const __be32 *from, const __be32 *to)
{
	__u32 s = (__u16)~*sum;

#pragma unroll
	for (int i = 0; i < 4; i++) {
		s = xlb_csum_add32(s, ~from[i]);
		s = xlb_csum_add32(s, to[i]);
	}
	*sum = xlb_csum_fold(s);
}

static __always_inline void xlb_nat6_xdp(struct xlb_pkt6 *p, int dir, const __be32 *addr,
					 __be16 port)
{
	struct ipv6hdr *ip6 = p->ip6;
	__be32 *field = dir == XLB_NAT_DST ? (__be32 *)&ip6->daddr : (__be32 *)&ip6->saddr;
	__be32 *mirror = dir == XLB_NAT_DST ? p->daddr : p->saddr;
	__be16 old_port = dir == XLB_NAT_DST ? p->dport : p->sport;
	__sum16 *l4sum = p->l4sum;
	__be32 old[4];

	xlb_addr6_copy(old, field);
	xlb_addr6_copy(field, addr);
	xlb_addr6_copy(mirror, addr);
	if (!p->l4 || !l4sum)
		return;
	xlb_csum_replace16(l4sum, old, addr);
	xlb_csum_replace2(l4sum, old_port, port);
	if (p->proto == IPPROTO_UDP && !*l4sum)
		*l4sum = 0xffff;
	if (dir == XLB_NAT_DST) {
		((struct udphdr *)p->l4)->dest = port;
		p->dport = port;
	} else {
		((struct udphdr *)p->l4)->source = port;
		p->sport = port;
	}
}

#endif /* XLB_NAT6_H */
