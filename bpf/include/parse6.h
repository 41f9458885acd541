/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: IPv6 parsing with bounds-checked reads (parse.h's rules for IPv6).
 * The extension headers are walked in a bounded, unrolled loop: hop-by-hop,
 * destination options, routing (segments left 0 only: with segments left the
 * destination is not the final one) and one fragment header; anything else
 * before the upper-layer header (AH, ESP, a second fragment header, a longer
 * chain) passes untranslated as pass_ext6. No read goes past data_end or the
 * payload length.
 */
#ifndef XLB_PARSE6_H
#define XLB_PARSE6_H

#include <linux/ipv6.h>
#include "parse.h"

#ifndef ETH_P_IPV6
#define ETH_P_IPV6	0x86DD
#endif

#define XLB_NH_HOP	0
#define XLB_NH_ROUTING	43
#define XLB_NH_FRAGMENT	44
#define XLB_NH_ICMP6	58
#define XLB_NH_DEST	60
#define XLB_EXT6_MAX	6	/* extension headers walked before pass_ext6 */
#define XLB_L4_OFF6_MASK 0x3fff	/* bounds an upper-layer offset for the verifier */
#define XLB_IP6_OFFSET	0xfff8	/* fragment offset bits of the fragment header's word */
#define XLB_IP6_MF	0x0001

/* What parsing found, scalars only (so a global subprogram can fill it). */
#define XLB_INFO6_FIELDS						\
	__be32 saddr[4];						\
	__be32 daddr[4];						\
	__u32 l4_off;	/* upper-layer offset from the IPv6 header (40 + extensions) */ \
	__u32 l3_len;	/* 40 + payload length */			\
	__be32 frag_id;	/* fragment header id (first_frag or frag) */	\
	__be16 sport;							\
	__be16 dport;							\
	__u8 proto;	/* the upper-layer protocol */			\
	__u8 first_frag;	/* fragment header with offset 0 and M set */	\
	__u8 tcp_flags;	/* TCP: flags byte; else 0 */			\
	__u8 frag;	/* a non-first fragment: no L4 header */	\
	__u8 udp_nocsum;	/* UDP with checksum 0 (invalid over IPv6) */	\
	__u8 pad[3];

struct xlb_info6 {
	XLB_INFO6_FIELDS
};

/* A parsed Ethernet + IPv6 (+ extension headers) + TCP/UDP frame: the
 * packet pointers (xlb_bind6) and what parsing found (info, or its fields
 * by name). */
struct xlb_pkt6 {
	struct ethhdr *eth;
	struct ipv6hdr *ip6;
	void *l4;		/* TCP/UDP header (ports first), ICMPv6 header; NULL for a non-first fragment */
	__sum16 *l4sum;		/* TCP/UDP checksum field; NULL for other upper layers */
	union {
		struct xlb_info6 info;
		struct {
			XLB_INFO6_FIELDS
		};
	};
};

/*
 * Parses Ethernet / IPv6 / extension headers / TCP or UDP at `start` into i.
 * Returns XLB_OK, or the reason the frame is not balanced:
 * XLB_R_PASS_NOT_IP (not IPv6), XLB_R_PASS_TRUNC_IP, XLB_R_PASS_EXT6,
 * XLB_R_PASS_TRUNC_L4; XLB_R_PASS_FRAG_NO_FIRST for a non-first fragment
 * (addresses, proto and frag_id filled; frag6.h may find its ports);
 * XLB_R_PASS_L4_OTHER for another upper layer (ICMPv6...), l4_off set.
 */
static __always_inline int xlb_parse6(void *start, void *data_end, struct xlb_info6 *i)
{
	struct ethhdr *eth = start;
	struct ipv6hdr *ip6 = (void *)(eth + 1);
	__u32 off = sizeof(struct ipv6hdr), l3, frag_word = 0, seen_frag = 0;
	void *l4;
	__u8 nh;

	if ((void *)(eth + 1) > data_end)
		return XLB_R_PASS_TRUNC_ETH;
	if (eth->h_proto != bpf_htons(ETH_P_IPV6))
		return XLB_R_PASS_NOT_IP;
	if ((void *)(ip6 + 1) > data_end || ip6->version != 6)
		return XLB_R_PASS_TRUNC_IP;
	l3 = sizeof(struct ipv6hdr) + bpf_ntohs(ip6->payload_len);
	if ((void *)ip6 + l3 > data_end)
		return XLB_R_PASS_TRUNC_IP;
	i->l3_len = l3;
	__builtin_memcpy(i->saddr, &ip6->saddr, 16);
	__builtin_memcpy(i->daddr, &ip6->daddr, 16);
	i->first_frag = 0;
	i->frag = 0;
	i->frag_id = 0;
	i->tcp_flags = 0;
	i->udp_nocsum = 0;
	i->sport = 0;
	i->dport = 0;
	nh = ip6->nexthdr;
	for (int n = 0; n < XLB_EXT6_MAX; n++) {
		__u8 *h = (void *)ip6 + (off & XLB_L4_OFF6_MASK);

		if (nh != XLB_NH_HOP && nh != XLB_NH_DEST && nh != XLB_NH_ROUTING &&
		    nh != XLB_NH_FRAGMENT)
			break;
		if ((void *)(h + 8) > data_end || off + 8 > l3)
			return XLB_R_PASS_TRUNC_IP;
		if (nh == XLB_NH_FRAGMENT) {
			if (seen_frag)
				return XLB_R_PASS_EXT6;
			seen_frag = 1;
			frag_word = bpf_ntohs(*(__be16 *)(h + 2));
			i->frag_id = *(__be32 *)(h + 4);
			nh = h[0];
			off += 8;
			continue;
		}
		if (nh == XLB_NH_ROUTING && h[3])
			return XLB_R_PASS_EXT6;
		nh = h[0];
		off += 8 + (__u32)h[1] * 8;
	}
	if (nh == XLB_NH_HOP || nh == XLB_NH_DEST || nh == XLB_NH_ROUTING || nh == XLB_NH_FRAGMENT)
		return XLB_R_PASS_EXT6;
	if (off > l3)
		return XLB_R_PASS_TRUNC_IP;
	i->proto = nh;
	i->l4_off = off;
	if (frag_word & XLB_IP6_OFFSET) {
		i->frag = 1;
		return XLB_R_PASS_FRAG_NO_FIRST;
	}
	i->first_frag = !!(frag_word & XLB_IP6_MF);
	l4 = (void *)ip6 + (off & XLB_L4_OFF6_MASK);
	if (nh == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end || off + sizeof(*th) > l3)
			return XLB_R_PASS_TRUNC_L4;
		if (th->doff < 5 || off + th->doff * 4 > l3)
			return XLB_R_PASS_TRUNC_L4;
		i->sport = th->source;
		i->dport = th->dest;
		i->tcp_flags = ((__u8 *)th)[13];
	} else if (nh == IPPROTO_UDP) {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end || off + sizeof(*uh) > l3)
			return XLB_R_PASS_TRUNC_L4;
		if (bpf_ntohs(uh->len) < sizeof(*uh) ||
		    (!i->first_frag && off + bpf_ntohs(uh->len) > l3))
			return XLB_R_PASS_TRUNC_L4;
		i->sport = uh->source;
		i->dport = uh->dest;
		i->udp_nocsum = !uh->check;
	} else {
		return XLB_R_PASS_L4_OTHER;
	}
	return XLB_OK;
}

/*
 * The packet pointers of p for its frame at `start` (the Ethernet header),
 * from what xlb_parse6 found: the verifier's bounds only, not the headers
 * again. Also after bpf_xdp_adjust_head moved the frame. TCP/UDP: l4 and
 * l4sum; another upper layer: l4 at its first 8 bytes when present (else
 * NULL), l4sum NULL; a non-first fragment: both NULL. XLB_R_DROP_ADJUST when
 * the frame is shorter than that.
 */
static __always_inline int xlb_bind6(void *start, void *data_end, struct xlb_pkt6 *p)
{
	struct ipv6hdr *ip6 = start + sizeof(struct ethhdr);
	void *l4;

	if ((void *)(ip6 + 1) > data_end)
		return XLB_R_DROP_ADJUST;
	p->eth = start;
	p->ip6 = ip6;
	p->l4 = NULL;
	p->l4sum = NULL;
	if (p->frag)
		return XLB_OK;
	l4 = (void *)ip6 + (p->l4_off & XLB_L4_OFF6_MASK);
	if (p->proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end)
			return XLB_R_DROP_ADJUST;
		p->l4 = l4;
		p->l4sum = &th->check;
	} else if (p->proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end)
			return XLB_R_DROP_ADJUST;
		p->l4 = l4;
		p->l4sum = &uh->check;
	} else if (l4 + 8 <= data_end) {
		p->l4 = l4;
	}
	return XLB_OK;
}

/* xlb_parse6 and, when it parsed an IPv6 frame, xlb_bind6. */
static __always_inline int xlb_parse6_pkt(void *start, void *data_end, struct xlb_pkt6 *p)
{
	int r = xlb_parse6(start, data_end, &p->info);

	if (r != XLB_OK && r != XLB_R_PASS_FRAG_NO_FIRST && r != XLB_R_PASS_L4_OTHER)
		return r;
	if (xlb_bind6(start, data_end, p) != XLB_OK)
		return XLB_R_PASS_TRUNC_IP;
	return r;
}

#endif /* XLB_PARSE6_H */
