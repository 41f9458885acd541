/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: answers built in place and sent back with XDP_TX: TCP RST and ICMP
 * port unreachable (Service without endpoints, as kube-proxy rejects), ICMP
 * fragmentation needed (frame too big after encapsulation). The answer goes
 * from the address the client dialled back to the client.
 */
#ifndef XLB_ICMP_H
#define XLB_ICMP_H

#include "parse.h"
#include "csum.h"

#define ICMP_DEST_UNREACH	3
#define ICMP_PORT_UNREACH	3
#define ICMP_FRAG_NEEDED	4

/* ICMP header of a destination-unreachable message (<linux/icmp.h> pulls libc). */
struct xlb_icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be16 unused;
	__be16 mtu;		/* fragmentation needed: next-hop MTU */
};

#define XLB_ICMP_QUOTE_MAX	(60 + 8)	/* original IPv4 header + 8 bytes */
#define XLB_ICMP_HDRS		(sizeof(struct iphdr) + 8)
#define XLB_TTL_ANSWER	64

static __always_inline void xlb_answer_l2l3(struct ethhdr *eth, struct iphdr *ip,
					    const __u8 *mac_to, const __u8 *mac_from,
					    __be32 saddr, __be32 daddr, __u8 proto, __u16 tot_len)
{
	__builtin_memcpy(eth->h_dest, mac_to, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac_from, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IP);
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0;
	ip->tot_len = bpf_htons(tot_len);
	ip->id = 0;
	ip->frag_off = bpf_htons(0x4000);	/* DF */
	ip->ttl = XLB_TTL_ANSWER;
	ip->protocol = proto;
	ip->check = 0;
	ip->saddr = saddr;
	ip->daddr = daddr;
	ip->check = xlb_ipv4_csum(ip);
}

/* What a RST needs of the segment it answers (read before the frame is rewritten). */
struct xlb_rst_info {
	__be32 saddr;
	__be32 daddr;
	__be32 seq;
	__be32 ack_seq;
	__u32 seglen;		/* payload + SYN + FIN */
	__be16 sport;
	__be16 dport;
	__u8 has_ack;
	__u8 rst;
	__u8 mac_to[ETH_ALEN];
	__u8 mac_from[ETH_ALEN];
};

/* Reads the TCP segment of p; 0 when its header is not in the frame. */
static __always_inline int xlb_rst_info(struct xlb_pkt *p, void *data_end,
					struct xlb_rst_info *ri)
{
	struct tcphdr *th = p->l4;

	if (!th || (void *)(th + 1) > data_end)
		return 0;	/* (NULL: a non-first fragment, no header) */
	ri->saddr = p->saddr;
	ri->daddr = p->daddr;
	ri->sport = p->sport;
	ri->dport = p->dport;
	ri->seq = th->seq;
	ri->ack_seq = th->ack_seq;
	ri->seglen = p->l3_len - p->ihl_len - th->doff * 4 + th->syn + th->fin;
	ri->has_ack = th->ack;
	ri->rst = th->rst;
	return 1;
}

/*
 * Writes Ethernet + IPv4 + TCP RST (RFC 9293 3.10.7.1: with ACK, seq = its
 * ack; else seq 0 and ack = its seq + length) at data; 0 when the frame is
 * shorter than the 54 bytes it needs.
 */
static __always_inline int xlb_rst_write(void *data, void *data_end, const struct xlb_rst_info *ri)
{
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct tcphdr *th = (void *)(ip + 1);
	__u32 *w, s = 0;

	if ((void *)(th + 1) > data_end)
		return 0;
	xlb_answer_l2l3(eth, ip, ri->mac_to, ri->mac_from, ri->daddr, ri->saddr, IPPROTO_TCP,
			sizeof(struct iphdr) + sizeof(struct tcphdr));
	__builtin_memset(th, 0, sizeof(*th));
	th->source = ri->dport;
	th->dest = ri->sport;
	th->doff = 5;
	th->rst = 1;
	if (ri->has_ack) {
		th->seq = ri->ack_seq;
	} else {
		th->ack = 1;
		th->ack_seq = bpf_htonl(bpf_ntohl(ri->seq) + ri->seglen);
	}
	/* pseudo header + 20-byte header */
	s = xlb_csum_add32(s, ri->daddr);
	s = xlb_csum_add32(s, ri->saddr);
	s += bpf_htons(IPPROTO_TCP);
	s += bpf_htons(sizeof(struct tcphdr));
	w = (__u32 *)th;
#pragma unroll
	for (int i = 0; i < 5; i++)
		s = xlb_csum_add32(s, w[i]);
	th->check = xlb_csum_fold(s);
	return 1;
}

#define XLB_RST_LEN	(sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct tcphdr))

/* XDP: TCP RST for the segment in p, trimmed to 54 bytes. No answer to a RST. */
static __always_inline int xlb_rst_xdp(struct xdp_md *ctx, struct xlb_pkt *p,
				       const __u8 *mac_to, const __u8 *mac_from, int *reason)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	int delta = (int)XLB_RST_LEN - (int)(data_end - data);
	struct xlb_rst_info ri = {};

	if (!xlb_rst_info(p, data_end, &ri)) {
		*reason = XLB_R_PASS_TRUNC_L4;
		return XDP_PASS;
	}
	if (ri.rst) {
		*reason = XLB_R_DROP_NO_BACKEND;
		return XDP_DROP;
	}
	__builtin_memcpy(ri.mac_to, mac_to, ETH_ALEN);
	__builtin_memcpy(ri.mac_from, mac_from, ETH_ALEN);
	if (delta && bpf_xdp_adjust_tail(ctx, delta)) {
		*reason = XLB_R_DROP_ADJUST;
		return XDP_DROP;
	}
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (!xlb_rst_write(data, data_end, &ri)) {
		*reason = XLB_R_DROP_ADJUST;
		return XDP_DROP;
	}
	*reason = XLB_R_TX_REJECT;
	return XDP_TX;
}

/*
 * ICMP error (type, code; mtu for fragmentation needed) quoting the original
 * IPv4 header and 8 bytes of its payload. Prepends the new Ethernet, IPv4 and
 * ICMP headers and trims the rest.
 */
static __always_inline int xlb_icmp_xdp(struct xdp_md *ctx, struct xlb_pkt *p, __u8 type,
					__u8 code, __u16 mtu, const __u8 *mac_to,
					const __u8 *mac_from, int *reason)
{
	__be32 saddr = p->saddr, daddr = p->daddr;
	__u32 quote = p->ihl_len + 8;
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	int delta = (int)(sizeof(struct ethhdr) + XLB_ICMP_HDRS + quote) -
		    (int)(data_end - data + XLB_ICMP_HDRS);
	struct ethhdr *eth;
	struct iphdr *ip;
	struct xlb_icmphdr *ih;
	__u32 s = 0;

	if (bpf_xdp_adjust_head(ctx, -(int)XLB_ICMP_HDRS)) {
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
	ip = (void *)(eth + 1);
	ih = (void *)(ip + 1);
	if ((void *)(ih + 1) > data_end) {
		*reason = XLB_R_DROP_ADJUST;
		return XDP_DROP;
	}
	xlb_answer_l2l3(eth, ip, mac_to, mac_from, daddr, saddr, IPPROTO_ICMP,
			XLB_ICMP_HDRS + quote);
	ih->type = type;
	ih->code = code;
	ih->checksum = 0;
	ih->unused = 0;
	ih->mtu = bpf_htons(mtu);
#pragma unroll
	for (int i = 0; i < (8 + XLB_ICMP_QUOTE_MAX) / 2; i++) {
		__u16 *w = (void *)ih + i * 2;

		if (i * 2 >= 8 + quote || (void *)(w + 1) > data_end)
			break;
		s += *w;
	}
	/* Keep clang from deriving this store from the loop's last (out of
	 * bounds) pointer: the verifier needs it based on the checked ih. */
	asm volatile("" : "+r"(ih));
	if ((void *)(ih + 1) > data_end) {
		*reason = XLB_R_DROP_ADJUST;
		return XDP_DROP;
	}
	ih->checksum = xlb_csum_fold(s);
	*reason = type == ICMP_DEST_UNREACH && code == ICMP_FRAG_NEEDED ?
		  XLB_R_TX_FRAG_NEEDED : XLB_R_TX_REJECT;
	return XDP_TX;
}

/*
 * tc: ICMP error (type, code) about the IPv4 packet in skb at ETH_HLEN,
 * quoting its header and 8 bytes of its payload, from its destination back to
 * its source. The quote is saved first, then the skb is resized and written
 * from scratch. 0, or -1 when the skb could not be rewritten.
 */
static __always_inline int xlb_icmp_skb(struct __sk_buff *skb, struct xlb_pkt *p, __u8 type,
					__u8 code, const __u8 *mac_to, const __u8 *mac_from)
{
	__u8 quote[XLB_ICMP_QUOTE_MAX] = {};
	__be32 saddr = p->saddr, daddr = p->daddr;
	__u32 qlen = p->ihl_len + 8, len, s;
	void *data, *data_end;
	struct ethhdr *eth;
	struct iphdr *ip;
	struct xlb_icmphdr *ih;
	__u8 to[ETH_ALEN], from[ETH_ALEN];

	if (qlen > XLB_ICMP_QUOTE_MAX || qlen < 28)
		return -1;
	__builtin_memcpy(to, mac_to, ETH_ALEN);
	__builtin_memcpy(from, mac_from, ETH_ALEN);
	if (bpf_skb_load_bytes(skb, ETH_HLEN, quote, qlen))
		return -1;
	len = ETH_HLEN + XLB_ICMP_HDRS + qlen;
	if (bpf_skb_change_tail(skb, len, 0) || bpf_skb_pull_data(skb, len))
		return -1;
	if (bpf_skb_store_bytes(skb, ETH_HLEN + XLB_ICMP_HDRS, quote, qlen, 0))
		return -1;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	eth = data;
	ip = (void *)(eth + 1);
	ih = (void *)(ip + 1);
	if ((void *)(ih + 1) > data_end)
		return -1;
	xlb_answer_l2l3(eth, ip, to, from, daddr, saddr, IPPROTO_ICMP, XLB_ICMP_HDRS + qlen);
	ih->type = type;
	ih->code = code;
	ih->checksum = 0;
	ih->unused = 0;
	ih->mtu = 0;
	/* ICMP checksum: the 8-byte header (all zero but type/code) + the quote
	 * (a multiple of 4 bytes: ihl * 4 + 8). */
	s = xlb_csum_add32(0, bpf_csum_diff(0, 0, (__be32 *)quote, qlen, 0));
	s += bpf_htons(((__u16)type << 8) | code);
	ih->checksum = xlb_csum_fold(s);
	return 0;
}

#endif /* XLB_ICMP_H */
