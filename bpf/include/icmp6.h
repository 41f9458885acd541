/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: IPv6 answers built in place and sent back with XDP_TX (icmp.h for
 * IPv6): TCP RST and ICMPv6 destination unreachable / port unreachable for
 * a Service without endpoints, ICMPv6 Packet Too Big when a frame would
 * exceed the MTU once encapsulated (IPv6 routers never fragment). The answer
 * goes from the address the client dialled back to the client. An ICMPv6
 * error quotes as much of the packet as fits in the minimum IPv6 MTU
 * (RFC 4443 2.4(c)): at most 1232 bytes.
 */
#ifndef XLB_ICMP6_H
#define XLB_ICMP6_H

#include "parse6.h"
#include "csum6.h"
#include "icmp.h"
#include "lb6.h"

#define ICMP6_DST_UNREACH	1
#define ICMP6_PORT_UNREACH	4
#define ICMP6_PACKET_TOO_BIG	2
#define ICMP6_TIME_EXCEEDED	3
#define ICMP6_PARAM_PROB	4
#define XLB_ICMP6_HDRS		(sizeof(struct ipv6hdr) + 8)
#define XLB_ICMP6_QUOTE_MAX	(1280 - XLB_ICMP6_HDRS)
#define XLB_RST6_LEN		(sizeof(struct ethhdr) + sizeof(struct ipv6hdr) + \
				 sizeof(struct tcphdr))

static __always_inline void xlb_answer6_l2l3(struct ethhdr *eth, struct ipv6hdr *ip6,
					     const __u8 *mac_to, const __u8 *mac_from,
					     const __be32 *saddr, const __be32 *daddr, __u8 nexthdr,
					     __u16 payload_len)
{
	__builtin_memcpy(eth->h_dest, mac_to, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac_from, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IPV6);
	*(__be32 *)ip6 = bpf_htonl(0x60000000);
	ip6->payload_len = bpf_htons(payload_len);
	ip6->nexthdr = nexthdr;
	ip6->hop_limit = XLB_TTL_ANSWER;
	xlb_addr6_copy((__be32 *)&ip6->saddr, saddr);
	xlb_addr6_copy((__be32 *)&ip6->daddr, daddr);
}

/* What a RST needs of the segment it answers (read before the rewrite). */
struct xlb_rst6_info {
	__be32 saddr[4];
	__be32 daddr[4];
	__be32 seq;
	__be32 ack_seq;
	__u32 seglen;		/* payload + SYN + FIN */
	__be16 sport;
	__be16 dport;
	__u8 has_ack;
	__u8 rst;
};

/* XDP: TCP RST for the segment in p (RFC 9293 3.10.7.1, as xlb_rst_xdp),
 * the frame trimmed to 74 bytes. No answer to a RST. */
static __always_inline int xlb_rst6_xdp(struct xdp_md *ctx, struct xlb_pkt6 *p,
					const __u8 *mac_to, const __u8 *mac_from, int *reason)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	int delta = (int)XLB_RST6_LEN - (int)(data_end - data);
	struct tcphdr *th = p->l4;
	struct xlb_rst6_info ri = {};
	struct ethhdr *eth;
	struct ipv6hdr *ip6;
	__u32 *w, s;

	if (!th || (void *)(th + 1) > data_end) {
		*reason = XLB_R_PASS_TRUNC_L4;
		return XDP_PASS;
	}
	if (th->rst) {
		*reason = XLB_R_DROP_NO_BACKEND;
		return XDP_DROP;
	}
	xlb_addr6_copy(ri.saddr, p->saddr);
	xlb_addr6_copy(ri.daddr, p->daddr);
	ri.sport = p->sport;
	ri.dport = p->dport;
	ri.seq = th->seq;
	ri.ack_seq = th->ack_seq;
	ri.seglen = p->l3_len - p->l4_off - th->doff * 4 + th->syn + th->fin;
	ri.has_ack = th->ack;
	if (delta && bpf_xdp_adjust_tail(ctx, delta)) {
		*reason = XLB_R_DROP_ADJUST;
		return XDP_DROP;
	}
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	ip6 = (void *)(eth + 1);
	th = (void *)(ip6 + 1);
	if ((void *)(th + 1) > data_end) {
		*reason = XLB_R_DROP_ADJUST;
		return XDP_DROP;
	}
	xlb_answer6_l2l3(eth, ip6, mac_to, mac_from, ri.daddr, ri.saddr, IPPROTO_TCP,
			 sizeof(struct tcphdr));
	__builtin_memset(th, 0, sizeof(*th));
	th->source = ri.dport;
	th->dest = ri.sport;
	th->doff = 5;
	th->rst = 1;
	if (ri.has_ack) {
		th->seq = ri.ack_seq;
	} else {
		th->ack = 1;
		th->ack_seq = bpf_htonl(bpf_ntohl(ri.seq) + ri.seglen);
	}
	s = xlb_pseudo6_sum(ri.daddr, ri.saddr, sizeof(struct tcphdr), IPPROTO_TCP);
	w = (__u32 *)th;
#pragma unroll
	for (int i = 0; i < 5; i++)
		s = xlb_csum_add32(s, w[i]);
	th->check = xlb_csum_fold(s);
	*reason = XLB_R_TX_REJECT;
	return XDP_TX;
}

/*
 * ICMPv6 error (type, code, 32-bit word: the MTU of a Packet Too Big, else
 * 0) quoting p's IPv6 packet (at most XLB_ICMP6_QUOTE_MAX bytes), from p's
 * destination to its source. Prepends the new Ethernet, IPv6 and ICMPv6
 * headers over the old Ethernet header and trims the rest.
 */
static __always_inline int xlb_icmp6_xdp(struct xdp_md *ctx, struct xlb_pkt6 *p, __u8 type,
					 __u8 code, __u32 word, const __u8 *mac_to,
					 const __u8 *mac_from, int *reason)
{
	__be32 saddr[4], daddr[4];
	__u32 quote = p->l3_len < XLB_ICMP6_QUOTE_MAX ? p->l3_len : XLB_ICMP6_QUOTE_MAX;
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	int delta = (int)(sizeof(struct ethhdr) + XLB_ICMP6_HDRS + quote) -
		    (int)(data_end - data + XLB_ICMP6_HDRS);
	struct ethhdr *eth;
	struct ipv6hdr *ip6;
	__u8 *ih;
	__u32 s;

	xlb_addr6_copy(saddr, p->saddr);
	xlb_addr6_copy(daddr, p->daddr);
	if (bpf_xdp_adjust_head(ctx, -(int)XLB_ICMP6_HDRS)) {
		*reason = XLB_R_DROP_ADJUST;
		return XDP_DROP;
	}
	if (delta && bpf_xdp_adjust_tail(ctx, delta)) {
		*reason = XLB_R_DROP_ADJUST;
		return XDP_DROP;
	}
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	ip6 = (void *)(eth + 1);
	ih = (void *)(ip6 + 1);
	if ((void *)(ih + 8) > data_end) {
		*reason = XLB_R_DROP_ADJUST;
		return XDP_DROP;
	}
	xlb_answer6_l2l3(eth, ip6, mac_to, mac_from, daddr, saddr, XLB_NH_ICMP6,
			 XLB_ICMP6_HDRS - sizeof(struct ipv6hdr) + quote);
	ih[0] = type;
	ih[1] = code;
	*(__u16 *)(ih + 2) = 0;
	*(__be32 *)(ih + 4) = bpf_htonl(word);
	s = xlb_pseudo6_sum(daddr, saddr, 8 + quote, XLB_NH_ICMP6);
	s = xlb_xdp6_sum(ctx, sizeof(struct ethhdr) + sizeof(struct ipv6hdr), s);
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	ih = data + sizeof(struct ethhdr) + sizeof(struct ipv6hdr);
	if ((void *)(ih + 8) > data_end) {
		*reason = XLB_R_DROP_ADJUST;
		return XDP_DROP;
	}
	*(__u16 *)(ih + 2) = ~s & 0xffff;
	*reason = type == ICMP6_PACKET_TOO_BIG ? XLB_R_TX_FRAG_NEEDED : XLB_R_TX_REJECT;
	return XDP_TX;
}

#endif /* XLB_ICMP6_H */
