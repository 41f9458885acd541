/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: ICMP errors about balanced flows (XDP and tc), what the kernel's
 * conntrack calls RELATED.
 *
 * An ICMP error (destination unreachable, time exceeded, parameter problem)
 * quotes the IPv4 header and at least 8 bytes of the packet it is about. When
 * that packet belongs to a flow xlb translated, the quote shows the other
 * side's view of it and the error must be translated back, as the kernel's
 * nf_nat_icmp_reply_translation does:
 *
 *   - toward the client: the quoted packet is client -> backend (an error
 *     from the backend, or a router after the DNAT, about a forwarded packet).
 *     Reversed, the quoted tuple is the flow's reverse ct entry (backend ->
 *     client, nat = frontend): quoted destination := frontend address and
 *     port, outer source := frontend address (the client sees the error come
 *     from the address it dialled, with the packet it sent quoted);
 *   - toward the backend: the quoted packet is frontend -> client (an error
 *     from the client side about a reverse-NATed reply). Reversed, it is the
 *     flow's forward entry (client -> frontend): quoted source := backend
 *     address and port, outer destination := backend.
 *
 * One ct lookup, with the reversed quoted tuple, finds either. Checksums
 * kept right incrementally: the outer IPv4 header's, the quoted IPv4
 * header's, the quoted L4 checksum when it is in the frame (always for UDP,
 * a zero UDP checksum stays zero; TCP's when the quote reaches byte 18: the
 * receiver does not check it, it is kept consistent anyway), and the ICMP
 * checksum over all of it (ICMPv4 has no pseudo header). Direct writes: an
 * ICMP error is never checksum-offloaded.
 */
#ifndef XLB_ICMPERR_H
#define XLB_ICMPERR_H

#include "parse.h"
#include "csum.h"
#include "icmp.h"
#include "nat.h"

#define ICMP_TIME_EXCEEDED	11
#define ICMP_PARAMETERPROB	12

/* An ICMP error in a frame, as parsed by xlb_icmp_err_parse. */
struct xlb_icmp_err {
	struct xlb_icmphdr *ih;
	struct iphdr *qip;		/* the quoted IPv4 header */
	__be16 *qports;			/* its source and destination ports */
	__sum16 *ql4sum;		/* its L4 checksum, NULL when not quoted */
	struct xlb_ct_key flow;		/* the quoted tuple reversed: the ct key to look up */
};

/*
 * p: a parsed IPv4 frame that is not TCP/UDP (XLB_R_PASS_L4_OTHER, p->l4 at
 * its L4 header). 1 when it is an ICMP error quoting a TCP/UDP packet with
 * its ports (a first fragment or a whole packet), everything inside the
 * IPv4 total length; e filled.
 */
static __always_inline int xlb_icmp_err_parse(struct xlb_pkt *p, void *data_end,
					      struct xlb_icmp_err *e)
{
	struct xlb_cursor c = { .pos = p->l4, .end = data_end };
	void *l3_end = (void *)p->ip + (p->l3_len & 0xffff);
	struct xlb_icmphdr *ih;
	struct iphdr *qip;
	__be16 *ports;
	__u32 hl;

	if (p->proto != IPPROTO_ICMP || !c.pos)
		return 0;
	ih = xlb_pull(&c, struct xlb_icmphdr, sizeof(struct xlb_icmphdr));
	if (!ih)
		return 0;
	if (ih->type != ICMP_DEST_UNREACH && ih->type != ICMP_TIME_EXCEEDED &&
	    ih->type != ICMP_PARAMETERPROB)
		return 0;
	qip = c.pos;
	if ((void *)(qip + 1) > data_end)
		return 0;
	hl = qip->ihl * 4;
	if (qip->version != 4 || hl < sizeof(struct iphdr))
		return 0;
	if (!xlb_pull(&c, struct iphdr, hl))
		return 0;
	if (qip->frag_off & bpf_htons(XLB_IP_OFFSET))
		return 0;
	if (qip->protocol != IPPROTO_TCP && qip->protocol != IPPROTO_UDP)
		return 0;
	ports = xlb_pull(&c, __be16, 8);
	if (!ports || c.pos > l3_end)
		return 0;
	e->ih = ih;
	e->qip = qip;
	e->qports = ports;
	e->ql4sum = NULL;
	if (qip->protocol == IPPROTO_UDP) {
		e->ql4sum = (__sum16 *)&ports[3];
	} else {
		__sum16 *s = (__sum16 *)&ports[8];

		if ((void *)(s + 1) <= data_end && (void *)(s + 1) <= l3_end)
			e->ql4sum = s;
	}
	e->flow.saddr = qip->daddr;
	e->flow.daddr = qip->saddr;
	e->flow.sport = ports[1];
	e->flow.dport = ports[0];
	e->flow.proto = qip->protocol;
	__builtin_memset(e->flow.pad, 0, sizeof(e->flow.pad));
	return 1;
}

/*
 * Translates the error: the quoted packet's side qdir (XLB_NAT_DST: its
 * destination, toward the client; XLB_NAT_SRC: its source, toward the
 * backend) becomes addr:port, and the outer address facing it (the source
 * for XLB_NAT_DST, the destination for XLB_NAT_SRC) becomes addr. p->saddr /
 * p->daddr follow the outer header.
 */
static __always_inline void xlb_icmp_err_nat(struct xlb_pkt *p, const struct xlb_icmp_err *e,
					     int qdir, __be32 addr, __be16 port)
{
	struct iphdr *ip = p->ip, *qip = e->qip;
	struct xlb_icmphdr *ih = e->ih;
	__be16 *qp = qdir == XLB_NAT_DST ? &e->qports[1] : &e->qports[0];
	__be32 old_q = qdir == XLB_NAT_DST ? qip->daddr : qip->saddr;
	__be32 old_o = qdir == XLB_NAT_DST ? ip->saddr : ip->daddr;
	__be16 old_p = *qp;
	__sum16 old_qcheck = qip->check;
	__sum16 *l4 = e->ql4sum;

	/* outer header (the ICMP checksum does not cover it) */
	xlb_csum_replace4(&ip->check, old_o, addr);
	if (qdir == XLB_NAT_DST) {
		ip->saddr = addr;
		p->saddr = addr;
	} else {
		ip->daddr = addr;
		p->daddr = addr;
	}
	/* quoted IPv4 header */
	xlb_csum_replace4(&qip->check, old_q, addr);
	if (qdir == XLB_NAT_DST)
		qip->daddr = addr;
	else
		qip->saddr = addr;
	/* quoted L4 checksum: pseudo-header address and the port */
	if (l4 && (qip->protocol == IPPROTO_TCP || *l4)) {
		__sum16 old_l4 = *l4;

		xlb_csum_replace4(l4, old_q, addr);
		xlb_csum_replace2(l4, old_p, port);
		if (qip->protocol == IPPROTO_UDP && !*l4)
			*l4 = 0xffff;
		xlb_csum_replace2(&ih->checksum, old_l4, *l4);
	}
	*qp = port;
	/* ICMP checksum: every quoted word that changed */
	xlb_csum_replace4(&ih->checksum, old_q, addr);
	xlb_csum_replace2(&ih->checksum, old_qcheck, qip->check);
	xlb_csum_replace2(&ih->checksum, old_p, port);
}

#endif /* XLB_ICMPERR_H */
