/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: ICMPv6 errors about balanced IPv6 flows (icmperr.h for IPv6).
 * Destination unreachable, Packet Too Big, time exceeded and parameter
 * problem quote the IPv6 packet they are about; when it belongs to a flow
 * xlb translated, the quote shows the other side's view and is translated
 * back as the IPv4 ones: toward the client (quoted destination := frontend
 * address and port, outer source := frontend address) or toward the backend
 * (quoted source := backend address and port, outer destination := backend).
 * The quoted packet must carry TCP or UDP right after its IPv6 header (no
 * extension headers) with its ports. Checksums kept right incrementally:
 * the quoted L4 checksum when it is in the frame (a zero UDP checksum stays
 * zero) and the ICMPv6 checksum, which covers the outer pseudo header too.
 */
#ifndef XLB_ICMPERR6_H
#define XLB_ICMPERR6_H

#include "parse6.h"
#include "nat6.h"
#include "icmp6.h"

/* ICMPv6 informational types xlb never touches: neighbour discovery
 * (router/neighbour solicitation and advertisement, redirect). */
#define ICMP6_ND_FIRST		133
#define ICMP6_ND_LAST		137

/* An ICMPv6 error in a frame, as parsed by xlb_icmp6_err_parse. */
struct xlb_icmp6_err {
	__u8 *ih;			/* the ICMPv6 header */
	struct ipv6hdr *qip;		/* the quoted IPv6 header */
	__be16 *qports;			/* its source and destination ports */
	__sum16 *ql4sum;		/* its L4 checksum, NULL when not quoted */
	struct xlb_ct6_key flow;	/* the quoted tuple reversed: the ct6 key */
};

/* p: an IPv6 frame whose upper layer is ICMPv6 (p->l4 at it). 1 when it is
 * an error quoting a TCP/UDP packet with its ports inside the payload; e
 * filled. */
static __always_inline int xlb_icmp6_err_parse(struct xlb_pkt6 *p, void *data_end,
					       struct xlb_icmp6_err *e)
{
	struct xlb_cursor c = { .pos = p->l4, .end = data_end };
	void *l3_end = (void *)p->ip6 + (p->l3_len & 0xffff);
	struct ipv6hdr *qip;
	__be16 *ports;
	__u8 *ih;

	if (p->proto != XLB_NH_ICMP6 || !c.pos)
		return 0;
	ih = xlb_pull(&c, __u8, 8);
	if (!ih || ih[0] < ICMP6_DST_UNREACH || ih[0] > ICMP6_PARAM_PROB)
		return 0;
	qip = xlb_pull(&c, struct ipv6hdr, sizeof(struct ipv6hdr));
	if (!qip || qip->version != 6)
		return 0;
	if (qip->nexthdr != IPPROTO_TCP && qip->nexthdr != IPPROTO_UDP)
		return 0;
	ports = xlb_pull(&c, __be16, 8);
	if (!ports || c.pos > l3_end)
		return 0;
	e->ih = ih;
	e->qip = qip;
	e->qports = ports;
	e->ql4sum = NULL;
	if (qip->nexthdr == IPPROTO_UDP) {
		e->ql4sum = (__sum16 *)&ports[3];
	} else {
		__sum16 *s = (__sum16 *)&ports[8];

		if ((void *)(s + 1) <= data_end && (void *)(s + 1) <= l3_end)
			e->ql4sum = s;
	}
	__builtin_memcpy(e->flow.saddr, &qip->daddr, 16);
	__builtin_memcpy(e->flow.daddr, &qip->saddr, 16);
	e->flow.sport = ports[1];
	e->flow.dport = ports[0];
	e->flow.proto = qip->nexthdr;
	__builtin_memset(e->flow.pad, 0, sizeof(e->flow.pad));
	return 1;
}

/* Translates the error (xlb_icmp_err_nat for IPv6): quoted side qdir
 * becomes addr:port, the outer address facing it becomes addr. */
static __always_inline void xlb_icmp6_err_nat(struct xlb_pkt6 *p, const struct xlb_icmp6_err *e,
					      int qdir, const __be32 *addr, __be16 port)
{
	struct ipv6hdr *ip6 = p->ip6, *qip = e->qip;
	__sum16 *isum = (__sum16 *)(e->ih + 2);
	__be16 *qp = qdir == XLB_NAT_DST ? &e->qports[1] : &e->qports[0];
	__be32 *qa = qdir == XLB_NAT_DST ? (__be32 *)&qip->daddr : (__be32 *)&qip->saddr;
	__be32 *oa = qdir == XLB_NAT_DST ? (__be32 *)&ip6->saddr : (__be32 *)&ip6->daddr;
	__be32 old_q[4], old_o[4];
	__be16 old_p = *qp;
	__sum16 *l4 = e->ql4sum;

	xlb_addr6_copy(old_o, oa);
	xlb_addr6_copy(old_q, qa);
	/* outer address: in the ICMPv6 pseudo header */
	xlb_addr6_copy(oa, addr);
	xlb_addr6_copy(qdir == XLB_NAT_DST ? p->saddr : p->daddr, addr);
	xlb_csum_replace16(isum, old_o, addr);
	/* quoted L4 checksum: pseudo-header address and the port */
	if (l4 && (qip->nexthdr == IPPROTO_TCP || *l4)) {
		__sum16 old_l4 = *l4;

		xlb_csum_replace16(l4, old_q, addr);
		xlb_csum_replace2(l4, old_p, port);
		if (qip->nexthdr == IPPROTO_UDP && !*l4)
			*l4 = 0xffff;
		xlb_csum_replace2(isum, old_l4, *l4);
	}
	xlb_addr6_copy(qa, addr);
	*qp = port;
	xlb_csum_replace16(isum, old_q, addr);
	xlb_csum_replace2(isum, old_p, port);
}

#endif /* XLB_ICMPERR6_H */
