/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: VXLAN over an IPv6 underlay (flannel's dual-stack overlay: IPv6 pods'
 * frames in VXLAN between the nodes' IPv6 addresses; same port and VNI as
 * IPv4, vxlan.h's XLB_VXLAN_F_SVC mark). Decapsulation of VXLAN to
 * config6.node_addr (or an address in local_addrs6) whose inner frame is
 * IPv6, and encapsulation to a node's IPv6 address. The outer UDP checksum
 * is computed (over the pseudo header and the whole datagram): Linux VXLAN
 * devices over IPv6 drop zero-checksum frames unless udp6zerocsumrx is set
 * (RFC 6935 allows zero only where the receiver opted in). Received frames
 * with a zero outer checksum are accepted.
 */
#ifndef XLB_VXLAN6_H
#define XLB_VXLAN6_H

#include "maps.h"
#include "parse6.h"
#include "csum6.h"
#include "vxlan.h"
#include "lb6.h"

#ifndef AF_INET6
#define AF_INET6 10
#endif

/* outer IPv6 + UDP + VXLAN + inner Ethernet */
#define XLB_ENCAP6_LEN	(sizeof(struct ipv6hdr) + sizeof(struct udphdr) + \
			 sizeof(struct xlb_vxlanhdr) + sizeof(struct ethhdr))

/* What the outer headers of a decapsulated IPv6 frame said. */
struct xlb_tun6 {
	__be32 peer[4];		/* outer source; all zero = not tunneled */
	__u32 outer_len;	/* bytes before the inner Ethernet header; 0 once stripped */
	__u8 tunneled;		/* peer is set */
	__u8 marked;		/* XLB_VXLAN_F_SVC */
	__u8 pad[2];
};

/* Whether addr is this node's IPv6 address (config6, local_addrs6). */
static __always_inline int xlb_local6(const struct xlb_config6 *cfg6, const __be32 *addr)
{
	struct xlb_addr6 a;

	if (cfg6 && !xlb_addr6_zero(cfg6->node_addr) && xlb_addr6_eq(addr, cfg6->node_addr))
		return 1;
	xlb_addr6_copy(a.addr, addr);
	return !!bpf_map_lookup_elem(&local_addrs6, &a);
}

/*
 * p: a parsed IPv6 UDP frame to the VXLAN port. When it is VXLAN for this
 * node and VNI carrying an IPv6 frame, fills tun (the inner Ethernet header
 * is at tun->outer_len: the caller parses it). XLB_OK, or the reason to
 * pass the frame untouched.
 */
static __always_inline int xlb_vxlan6_in(void *data, void *data_end,
					 const struct xlb_config *cfg,
					 const struct xlb_config6 *cfg6, const struct xlb_pkt6 *p,
					 struct xlb_tun6 *tun)
{
	struct xlb_cursor c = { .pos = p->l4, .end = data_end };
	struct xlb_vxlanhdr *vx;
	struct ethhdr *ieth;

	if (p->first_frag || !xlb_local6(cfg6, p->daddr))
		return XLB_R_PASS_VXLAN_OTHER;
	if (!xlb_pull(&c, struct udphdr, sizeof(struct udphdr)))
		return XLB_R_PASS_TRUNC_L4;
	vx = xlb_pull(&c, struct xlb_vxlanhdr, sizeof(struct xlb_vxlanhdr));
	if (!vx)
		return XLB_R_PASS_TRUNC_VXLAN;
	if (!(vx->flags & bpf_htonl(XLB_VXLAN_F_I)) ||
	    (bpf_ntohl(vx->vni) >> 8) != (cfg->vni & 0xffffff))
		return XLB_R_PASS_VXLAN_OTHER;
	ieth = c.pos;
	if ((void *)(ieth + 1) > data_end)
		return XLB_R_PASS_TRUNC_VXLAN;
	/* only IPv6 in IPv6 is spoken (docs/ipv6.md) */
	if (ieth->h_proto != bpf_htons(ETH_P_IPV6) || (void *)ieth - data > 0x3ff)
		return XLB_R_PASS_VXLAN_OTHER;
	xlb_addr6_copy(tun->peer, p->saddr);
	tun->tunneled = 1;
	tun->marked = !!(vx->flags & bpf_htonl(XLB_VXLAN_F_SVC));
	tun->outer_len = c.pos - data;
	return XLB_OK;
}

/* Strips the outer headers (if still there), re-points p, and sets the inner
 * destination MAC to the uplink's. */
static __always_inline int xlb_decap6_xdp(struct xdp_md *ctx, const struct xlb_config *cfg,
					  struct xlb_pkt6 *p, struct xlb_tun6 *tun)
{
	int r;

	if (!tun->outer_len)
		return XLB_OK;
	if (bpf_xdp_adjust_head(ctx, tun->outer_len))
		return XLB_R_DROP_ADJUST;
	tun->outer_len = 0;
	r = xlb_bind6((void *)(long)ctx->data, (void *)(long)ctx->data_end, p);
	if (r != XLB_OK)
		return r;
	xlb_mac_copy(p->eth->h_dest, cfg->mac);
	return XLB_OK;
}

/* Next hop for an outer IPv6 packet to `peer`. */
static __always_inline int xlb_fib6_xdp(struct xdp_md *ctx, const struct xlb_config *cfg,
					const struct xlb_config6 *cfg6, const __be32 *peer,
					__u32 tot_len, struct bpf_fib_lookup *fib)
{
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->family = AF_INET6;
	fib->l4_protocol = IPPROTO_UDP;
	fib->tot_len = tot_len;
	fib->ifindex = cfg->ifindex ? cfg->ifindex : ctx->ingress_ifindex;
	xlb_addr6_copy(fib->ipv6_src, cfg6->node_addr);
	xlb_addr6_copy(fib->ipv6_dst, peer);
	return bpf_fib_lookup(ctx, fib, sizeof(*fib), BPF_FIB_LOOKUP_OUTPUT);
}

/*
 * Encapsulates the frame (Ethernet first) towards `peer` (next hop: a
 * successful fib lookup): outer Ethernet/IPv6/UDP/VXLAN in front, inner
 * destination MAC inner_dmac (NULL: config.mac), inner source config.mac.
 * XDP_TX out of the ingress interface, else a redirect; *reason on failure.
 */
static __always_inline int xlb_encap6_xdp(struct xdp_md *ctx, const struct xlb_config *cfg,
					  const struct xlb_config6 *cfg6, const __be32 *peer,
					  const __u8 *inner_dmac, __u32 hash, int mark,
					  const struct bpf_fib_lookup *fib, int *reason)
{
	void *data, *data_end;
	struct ethhdr *oeth, *ieth;
	struct ipv6hdr *ip6;
	struct udphdr *uh;
	struct xlb_vxlanhdr *vx;
	__u32 ulen, s;
	__u16 sum;

	if (bpf_xdp_adjust_head(ctx, -(int)XLB_ENCAP6_LEN)) {
		*reason = XLB_R_DROP_ADJUST;
		return XDP_DROP;
	}
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	oeth = data;
	ip6 = (void *)(oeth + 1);
	uh = (void *)(ip6 + 1);
	vx = (void *)(uh + 1);
	ieth = (void *)(vx + 1);
	if ((void *)(ieth + 1) > data_end) {
		*reason = XLB_R_DROP_ADJUST;
		return XDP_DROP;
	}
	ulen = data_end - (void *)uh;
	xlb_mac_copy(ieth->h_dest, inner_dmac ? inner_dmac : cfg->mac);
	xlb_mac_copy(ieth->h_source, cfg->mac);
	*(__be32 *)ip6 = bpf_htonl(0x60000000);
	ip6->payload_len = bpf_htons(ulen);
	ip6->nexthdr = IPPROTO_UDP;
	ip6->hop_limit = XLB_TTL;
	xlb_addr6_copy((__be32 *)&ip6->saddr, cfg6->node_addr);
	xlb_addr6_copy((__be32 *)&ip6->daddr, peer);
	/* Source port from the flow hash (ECMP entropy), in 49152..65535. */
	uh->source = bpf_htons(0xc000 | (hash & 0x3fff));
	uh->dest = cfg->vxlan_port;
	uh->len = bpf_htons(ulen);
	uh->check = 0;
	vx->flags = bpf_htonl(XLB_VXLAN_F_I | (mark ? XLB_VXLAN_F_SVC : 0));
	vx->vni = bpf_htonl((cfg->vni & 0xffffff) << 8);
	xlb_mac_copy(oeth->h_dest, fib->dmac);
	xlb_mac_copy(oeth->h_source, fib->smac);
	oeth->h_proto = bpf_htons(ETH_P_IPV6);
	s = xlb_pseudo6_sum(cfg6->node_addr, peer, ulen, IPPROTO_UDP);
	s = xlb_xdp6_sum(ctx, sizeof(struct ethhdr) + sizeof(struct ipv6hdr), s);
	/* (xlb_xdp6_sum is a subprogram: the packet pointers are checked again) */
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	uh = data + sizeof(struct ethhdr) + sizeof(struct ipv6hdr);
	if ((void *)(uh + 1) > data_end) {
		*reason = XLB_R_DROP_ADJUST;
		return XDP_DROP;
	}
	sum = ~s & 0xffff;
	uh->check = sum ? sum : 0xffff;
	if (fib->ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(fib->ifindex, 0);
}

#endif /* XLB_VXLAN6_H */
