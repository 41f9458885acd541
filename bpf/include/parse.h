/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: header parsing with a bounds-checked cursor. Every read is preceded by
 * a data_end check; every failure returns the reason to count. Shared by the
 * XDP and tc programs (they differ only in where data/data_end come from).
 */
#ifndef XLB_PARSE_H
#define XLB_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "consts.h"

/* "no reason": parsing (or a step) succeeded */
#define XLB_OK		(-1)

#define XLB_IP_MF	0x2000
#define XLB_IP_OFFSET	0x1fff

/* A parsed Ethernet + IPv4 + TCP/UDP frame. Pointers are packet pointers. */
struct xlb_pkt {
	struct ethhdr *eth;
	struct iphdr *ip;
	void *l4;		/* struct tcphdr * or struct udphdr * (ports first) */
	__sum16 *l4sum;		/* its checksum field */
	__u32 ihl_len;		/* IPv4 header length in bytes (20..60) */
	__u32 l3_len;		/* IPv4 total length (host order) */
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 first_frag;	/* MF set, offset 0 */
	__u8 tcp_flags;		/* TCP: the flags byte (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10); else 0 */
	__u8 frag;		/* a non-first fragment: l4 and l4sum NULL */
};

#define XLB_TCP_FIN	0x01
#define XLB_TCP_SYN	0x02
#define XLB_TCP_RST	0x04
#define XLB_TCP_ACK	0x10
/* The flags that may change a connection's state (ct.h). */
#define XLB_TCP_CTRL	(XLB_TCP_FIN | XLB_TCP_SYN | XLB_TCP_RST)

/* Copies a MAC address as three 16-bit words (a memcpy of the packed
 * Ethernet fields compiles to twelve byte loads and stores). Both sides must
 * be 2-byte aligned: Ethernet headers and XLB structs are; stack buffers
 * are declared XLB_MAC_ALIGN. */
#define XLB_MAC_ALIGN	__attribute__((aligned(2)))

static __always_inline void xlb_mac_copy(void *dst, const void *src)
{
	__u16 *d = dst;
	const __u16 *s = src;

	d[0] = s[0];
	d[1] = s[1];
	d[2] = s[2];
}

/* Cursor: a position in the packet and its end. */
struct xlb_cursor {
	void *pos;
	void *end;
};

/* Returns the header at the cursor and advances by len, or NULL when the
 * packet is shorter. */
#define xlb_pull(c, type, len)						\
	({								\
		type *__h = (c)->pos;					\
		if ((void *)__h + (len) > (c)->end)			\
			__h = NULL;					\
		else							\
			(c)->pos = (void *)__h + (len);			\
		__h;							\
	})

/*
 * Parses Ethernet / IPv4 (any ihl) / TCP or UDP starting at `start`.
 * Returns XLB_OK with p filled, or the reason the frame is not balanced.
 * A first fragment (MF, offset 0) must hold its whole TCP header / the 8-byte
 * UDP header; its UDP length is the datagram's, not checked against the
 * fragment. A non-first fragment returns XLB_R_PASS_FRAG_NO_FIRST with the
 * IPv4 fields of p filled and p->l4 NULL (frag.h may find its ports).
 * Anything but TCP/UDP returns XLB_R_PASS_L4_OTHER with the IPv4 fields
 * filled and p->l4 at the (unchecked) L4 header (icmperr.h).
 */
static __always_inline int xlb_parse(void *start, void *data_end, struct xlb_pkt *p)
{
	struct xlb_cursor c = { .pos = start, .end = data_end };
	struct ethhdr *eth;
	struct iphdr *ip;
	__u32 hl, tot;
	__u16 frag;

	eth = xlb_pull(&c, struct ethhdr, sizeof(struct ethhdr));
	if (!eth)
		return XLB_R_PASS_TRUNC_ETH;
	p->eth = eth;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XLB_R_PASS_NOT_IP;
	ip = c.pos;
	if ((void *)(ip + 1) > data_end)
		return XLB_R_PASS_TRUNC_IP;
	hl = ip->ihl * 4;
	if (ip->version != 4 || hl < sizeof(struct iphdr))
		return XLB_R_PASS_TRUNC_IP;
	if (!xlb_pull(&c, struct iphdr, hl))
		return XLB_R_PASS_TRUNC_IP;
	tot = bpf_ntohs(ip->tot_len);
	if (tot < hl || (void *)ip + tot > data_end)
		return XLB_R_PASS_TRUNC_IP;
	p->ip = ip;
	p->ihl_len = hl;
	p->l3_len = tot;
	p->saddr = ip->saddr;
	p->daddr = ip->daddr;
	p->proto = ip->protocol;
	frag = bpf_ntohs(ip->frag_off);
	p->frag = !!(frag & XLB_IP_OFFSET);
	if (p->frag) {
		p->first_frag = 0;
		p->l4 = NULL;
		p->l4sum = NULL;
		return XLB_R_PASS_FRAG_NO_FIRST;
	}
	p->first_frag = !!(frag & XLB_IP_MF);
	p->l4 = c.pos;
	p->l4sum = NULL;
	if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *th = xlb_pull(&c, struct tcphdr, sizeof(struct tcphdr));

		if (!th || hl + sizeof(*th) > tot)
			return XLB_R_PASS_TRUNC_L4;
		if (th->doff < 5 || hl + th->doff * 4 > tot)
			return XLB_R_PASS_TRUNC_L4;
		p->l4sum = &th->check;
		p->sport = th->source;
		p->dport = th->dest;
		p->tcp_flags = ((__u8 *)th)[13];
	} else if (ip->protocol == IPPROTO_UDP) {
		struct udphdr *uh = xlb_pull(&c, struct udphdr, sizeof(struct udphdr));

		if (!uh || hl + sizeof(*uh) > tot)
			return XLB_R_PASS_TRUNC_L4;
		if (bpf_ntohs(uh->len) < sizeof(*uh) ||
		    (!p->first_frag && hl + bpf_ntohs(uh->len) > tot))
			return XLB_R_PASS_TRUNC_L4;
		p->l4sum = &uh->check;
		p->sport = uh->source;
		p->dport = uh->dest;
	} else {
		return XLB_R_PASS_L4_OTHER;
	}
	return XLB_OK;
}

/*
 * The packet pointers of p again, for the same frame now starting at `start`
 * (after bpf_xdp_adjust_head stripped the headers in front of it): every
 * field p holds was parsed and checked by xlb_parse already, so only the
 * bounds the verifier needs are checked, not the headers again. A frame that
 * fails them was cut by the adjustment: XLB_R_DROP_ADJUST.
 */
static __always_inline int xlb_reparse(void *start, void *data_end, struct xlb_pkt *p)
{
	struct iphdr *ip = start + sizeof(struct ethhdr);
	__u32 hl = p->ihl_len & 0x3c;
	void *l4;

	if ((void *)(ip + 1) > data_end)
		return XLB_R_DROP_ADJUST;
	l4 = (void *)ip + hl;
	p->eth = start;
	p->ip = ip;
	if (p->frag) {
		/* a non-first fragment: no L4 header (the flag, not the old
		 * pointers: bpf_xdp_adjust_head made those unknown) */
		p->l4 = NULL;
		p->l4sum = NULL;
		return XLB_OK;
	}
	p->l4 = l4;
	if (p->proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end)
			return XLB_R_DROP_ADJUST;
		p->l4sum = &th->check;
	} else {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end)
			return XLB_R_DROP_ADJUST;
		p->l4sum = &uh->check;
	}
	return XLB_OK;
}

#endif /* XLB_PARSE_H */
