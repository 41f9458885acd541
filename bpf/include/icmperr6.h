/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: ICMPv6 errors about balanced IPv6 flows (icmperr.h for IPv6).
 * Destination unreachable, Packet Too Big, time exceeded and parameter
 * problem quote the IPv6 packet they are about; when it belongs to a flow
 * xlb translated, the quote shows the other side's view and is translated
 * back as the IPv4 ones: toward the client (quoted destination := frontend
 * address and port, outer source := frontend address) or toward the backend
 * (quoted source := backend address and port, outer destination := backend).
 * The quoted packet must carry TCP or UDP with its ports, after at most
 * XLB_EXT6_MAX extension headers walked as parse6.h walks them (hop-by-hop,
 * destination options, routing with segments left 0, one fragment header
 * of offset 0); anything else quoted passes untranslated. The walk runs in
 * a global subprogram of each program type (xlb_xdp6_qwalk, xlb_tc6_qwalk:
 * xlb_icmp6_qwalk), verified once rather than in every verifier state of
 * its callers. Checksums kept right incrementally:
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
	__u8 qproto;			/* its upper layer: TCP or UDP */
	struct xlb_ct6_key flow;	/* the quoted tuple reversed: the ct6 key */
};

/*
 * The quoted packet of an ICMPv6 error: the frame's data and data_end, its
 * IPv6 header at data + ip6_off, whose upper layer (at l4_off from it,
 * payload ending at l3_len) is the ICMPv6 header. Returns the offset of the
 * quoted upper-layer header from the quoted IPv6 header (40 + extension
 * headers) << 8 | that upper layer (TCP or UDP); 0 when the frame is no
 * error quoting a TCP/UDP packet xlb can read the ports of.
 */
static __always_inline int xlb_icmp6_qwalk(void *data, void *data_end, __u32 ip6_off,
					   __u32 l4_off, __u32 l3_len)
{
	void *ip6 = data + (ip6_off & 0x7ff);
	void *l3_end = ip6 + (l3_len & 0xffff);
	__u8 *ih = ip6 + (l4_off & XLB_L4_OFF6_MASK);
	struct ipv6hdr *qip = (void *)(ih + 8);
	__u32 off = sizeof(struct ipv6hdr), seen_frag = 0;
	__u8 nh;

	if ((void *)(qip + 1) > data_end || (void *)(qip + 1) > l3_end)
		return 0;
	if (ih[0] < ICMP6_DST_UNREACH || ih[0] > ICMP6_PARAM_PROB || qip->version != 6)
		return 0;
	nh = qip->nexthdr;
	for (int n = 0; n < XLB_EXT6_MAX; n++) {
		__u8 *h = (void *)qip + (off & XLB_L4_OFF6_MASK);

		if (nh != XLB_NH_HOP && nh != XLB_NH_DEST && nh != XLB_NH_ROUTING &&
		    nh != XLB_NH_FRAGMENT)
			break;
		if ((void *)(h + 8) > data_end || (void *)(h + 8) > l3_end)
			return 0;
		if (nh == XLB_NH_FRAGMENT) {
			/* a later fragment quotes no ports */
			if (seen_frag || (bpf_ntohs(*(__be16 *)(h + 2)) & XLB_IP6_OFFSET))
				return 0;
			seen_frag = 1;
			nh = h[0];
			off += 8;
			continue;
		}
		if (nh == XLB_NH_ROUTING && h[3])
			return 0;
		nh = h[0];
		off += 8 + (__u32)h[1] * 8;
	}
	if (nh != IPPROTO_TCP && nh != IPPROTO_UDP)
		return 0;
	return (int)((off & XLB_L4_OFF6_MASK) << 8 | nh);
}

/* p: an IPv6 frame whose upper layer is ICMPv6 (p->l4 at it); w: what
 * xlb_icmp6_qwalk found for it. 1 when it is an error quoting a TCP/UDP
 * packet with its ports inside the payload; e filled. */
static __always_inline int xlb_icmp6_err_parse(struct xlb_pkt6 *p, void *data_end, int w,
					       struct xlb_icmp6_err *e)
{
	struct xlb_cursor c = { .pos = p->l4, .end = data_end };
	void *l3_end = (void *)p->ip6 + (p->l3_len & 0xffff);
	__u8 nh = w & 0xff;
	struct ipv6hdr *qip;
	__be16 *ports;
	__u8 *ih;

	if (p->proto != XLB_NH_ICMP6 || !c.pos || w <= 0)
		return 0;
	if (nh != IPPROTO_TCP && nh != IPPROTO_UDP)
		return 0;
	ih = xlb_pull(&c, __u8, 8);
	if (!ih)
		return 0;
	qip = xlb_pull(&c, struct ipv6hdr, sizeof(struct ipv6hdr));
	if (!qip)
		return 0;
	ports = (void *)qip + (((__u32)w >> 8) & XLB_L4_OFF6_MASK);
	if ((void *)(ports + 4) > data_end || (void *)(ports + 4) > l3_end)
		return 0;
	e->ih = ih;
	e->qip = qip;
	e->qports = ports;
	e->ql4sum = NULL;
	e->qproto = nh;
	if (nh == IPPROTO_UDP) {
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
	e->flow.proto = nh;
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
	if (l4 && (e->qproto == IPPROTO_TCP || *l4)) {
		__sum16 old_l4 = *l4;

		xlb_csum_replace16(l4, old_q, addr);
		xlb_csum_replace2(l4, old_p, port);
		if (e->qproto == IPPROTO_UDP && !*l4)
			*l4 = 0xffff;
		xlb_csum_replace2(isum, old_l4, *l4);
	}
	xlb_addr6_copy(qa, addr);
	*qp = port;
	xlb_csum_replace16(isum, old_q, addr);
	xlb_csum_replace2(isum, old_p, port);
}

#endif /* XLB_ICMPERR6_H */
