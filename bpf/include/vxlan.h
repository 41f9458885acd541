/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: VXLAN (RFC 7348, flannel-compatible) decapsulation and encapsulation.
 *
 * Service traffic xlb encapsulates to a remote backend carries XLB_VXLAN_F_SVC,
 * a reserved flag bit: the backend node's xlb decapsulates it itself and
 * records "tunnel return" for the flow, so the backend's replies go back to
 * the node that chose it. A flow balanced from the uplink also carries
 * XLB_VXLAN_F_FE and, between the VXLAN header and the inner Ethernet header,
 * the frontend it was balanced from (struct xlb_vxlan_fe, 8 bytes): the
 * backend's node reverse-NATs the replies itself and sends them back marked
 * XLB_VXLAN_F_XLATED, which the balancing node decapsulates and passes. Other
 * tunnel-return frames are not marked: the receiving node finds them by
 * their reverse ct entry. Plain flannel pod-to-pod traffic is not marked and
 * stays untouched for the kernel's VXLAN device unless it matches a Service
 * or a reverse-NAT entry.
 */
#ifndef XLB_VXLAN_H
#define XLB_VXLAN_H

#include "maps.h"
#include "parse.h"
#include "csum.h"

#ifndef AF_INET
#define AF_INET 2
#endif

struct xlb_vxlanhdr {
	__be32 flags;
	__be32 vni;		/* VNI << 8 */
};

#define XLB_VXLAN_F_I		0x08000000	/* VNI valid */
#define XLB_VXLAN_F_SVC		0x00000001	/* xlb-forwarded Service flow (reserved bit) */
#define XLB_VXLAN_F_FE		0x00000002	/* with SVC: struct xlb_vxlan_fe follows the header */
#define XLB_VXLAN_F_XLATED	0x00000004	/* a reply the backend's node reverse-NATed: decap, pass */

/* outer IPv4 + UDP + VXLAN + inner Ethernet */
#define XLB_ENCAP_LEN	(sizeof(struct iphdr) + sizeof(struct udphdr) + \
			 sizeof(struct xlb_vxlanhdr) + sizeof(struct ethhdr))
/* ... with the frontend trailer (XLB_VXLAN_F_FE) */
#define XLB_ENCAP_FE_LEN	(XLB_ENCAP_LEN + sizeof(struct xlb_vxlan_fe))
#define XLB_TTL		64

/* What the outer headers of a decapsulated frame said. */
struct xlb_tun {
	__be32 peer;		/* outer source: the node that sent it; 0 = not tunneled */
	__u32 outer_len;	/* bytes before the inner Ethernet header; 0 once stripped */
	__be32 fe_addr;		/* XLB_VXLAN_F_FE: the frontend of the flow; 0 = none */
	__be16 fe_port;
	__u8 marked;		/* XLB_VXLAN_F_SVC */
	__u8 xlated;		/* XLB_VXLAN_F_XLATED */
};

/* The VXLAN flags (beside XLB_VXLAN_F_I) and the trailer an encapsulated
 * frame carries. */
struct xlb_vx_out {
	__u32 flags;		/* XLB_VXLAN_F_SVC, _FE, _XLATED */
	struct xlb_vxlan_fe fe;	/* with XLB_VXLAN_F_FE */
};

/*
 * p is a parsed UDP frame to the VXLAN port. When it is VXLAN for this node
 * and VNI, fills tun and re-parses p as the inner frame. Returns XLB_OK, or
 * the reason to pass the frame untouched.
 */
static __always_inline int xlb_vxlan_in(void *data, void *data_end, struct xlb_config *cfg,
					struct xlb_pkt *p, struct xlb_tun *tun)
{
	struct xlb_cursor c = { .pos = p->l4, .end = data_end };
	struct xlb_vxlanhdr *vx;
	__u32 skip;

	if (p->daddr != cfg->node_addr && !bpf_map_lookup_elem(&local_addrs, &p->daddr))
		return XLB_R_PASS_VXLAN_OTHER;
	if (p->first_frag)
		return XLB_R_PASS_VXLAN_OTHER;
	if (!xlb_pull(&c, struct udphdr, sizeof(struct udphdr)))
		return XLB_R_PASS_TRUNC_L4;
	vx = xlb_pull(&c, struct xlb_vxlanhdr, sizeof(struct xlb_vxlanhdr));
	if (!vx)
		return XLB_R_PASS_TRUNC_VXLAN;
	if (!(vx->flags & bpf_htonl(XLB_VXLAN_F_I)) ||
	    (bpf_ntohl(vx->vni) >> 8) != (cfg->vni & 0xffffff))
		return XLB_R_PASS_VXLAN_OTHER;
	tun->peer = p->saddr;
	tun->marked = !!(vx->flags & bpf_htonl(XLB_VXLAN_F_SVC));
	tun->xlated = !!(vx->flags & bpf_htonl(XLB_VXLAN_F_XLATED));
	/* XLB_VXLAN_F_FE (only with the Service mark): the frontend trailer */
	if (vx->flags & bpf_htonl(XLB_VXLAN_F_FE)) {
		struct xlb_vxlan_fe *fe = c.pos;

		if (!tun->marked)
			return XLB_R_PASS_VXLAN_OTHER;
		if ((void *)(fe + 1) > data_end)
			return XLB_R_PASS_TRUNC_VXLAN;
		tun->fe_addr = fe->addr;
		tun->fe_port = fe->port;
	}
	/* ... skipped by arithmetic on the flags (0 or 8 bytes), not in the
	 * branch above: the verifier then walks the inner frame's steps once
	 * for frames with and without it, as the length is unknown to it */
	skip = vx->flags;
	asm volatile("" : "+r"(skip));
	skip = (bpf_ntohl(skip) & XLB_VXLAN_F_FE) << 2;
	c.pos += skip;
	tun->outer_len = c.pos - data;
	return xlb_parse(c.pos, data_end, p);
}

/* Strips the outer headers (if still there), re-points p, and sets the inner
 * destination MAC to the uplink's, as if the frame had arrived on it. */
static __always_inline int xlb_decap_xdp(struct xdp_md *ctx, struct xlb_config *cfg,
					 struct xlb_pkt *p, struct xlb_tun *tun)
{
	void *data, *data_end;
	int r;

	if (!tun->outer_len)
		return XLB_OK;
	if (bpf_xdp_adjust_head(ctx, tun->outer_len))
		return XLB_R_DROP_ADJUST;
	tun->outer_len = 0;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	r = xlb_reparse(data, data_end, p);
	if (r != XLB_OK)
		return r;
	xlb_mac_copy(p->eth->h_dest, cfg->mac);
	return XLB_OK;
}

/* Outer headers (IPv4, UDP, VXLAN with flags XLB_VXLAN_F_I | vflags) for a
 * frame of `len` bytes after encap. */
static __always_inline void xlb_vxlan_hdrs(struct iphdr *ip, struct udphdr *uh,
					   struct xlb_vxlanhdr *vx, struct xlb_config *cfg,
					   __be32 peer, __u32 len, __u32 hash, __u32 vflags)
{
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0;
	ip->tot_len = bpf_htons(len - ETH_HLEN);
	ip->id = 0;
	ip->frag_off = 0;
	ip->ttl = XLB_TTL;
	ip->protocol = IPPROTO_UDP;
	ip->check = 0;
	ip->saddr = cfg->node_addr;
	ip->daddr = peer;
	ip->check = xlb_ipv4_csum(ip);
	/* Source port from the flow hash (ECMP entropy), in 49152..65535. */
	uh->source = bpf_htons(0xc000 | (hash & 0x3fff));
	uh->dest = cfg->vxlan_port;
	uh->len = bpf_htons(len - ETH_HLEN - sizeof(struct iphdr));
	uh->check = 0;
	vx->flags = bpf_htonl(XLB_VXLAN_F_I | vflags);
	vx->vni = bpf_htonl((cfg->vni & 0xffffff) << 8);
}

/* Next hop for an outer packet to `peer` (out of the uplink). */
static __always_inline int xlb_fib_xdp(struct xdp_md *ctx, struct xlb_config *cfg, __be32 peer,
				       __u32 tot_len, struct bpf_fib_lookup *fib)
{
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->family = AF_INET;
	fib->l4_protocol = IPPROTO_UDP;
	fib->tot_len = tot_len;
	fib->ifindex = cfg->ifindex ? cfg->ifindex : ctx->ingress_ifindex;
	fib->ipv4_src = cfg->node_addr;
	fib->ipv4_dst = peer;
	return bpf_fib_lookup(ctx, fib, sizeof(*fib), BPF_FIB_LOOKUP_OUTPUT);
}

/* The VXLAN flags of a tunnel-return frame whose reverse entry (or half-open
 * slot) has ct_flags: under tunnel NAT (XLB_CT_F_TNAT) reverse-NATed here,
 * marked XLB_VXLAN_F_XLATED for the peer; else unmarked. */
static __always_inline __u32 xlb_vx_reply_flags(__u32 ct_flags)
{
	return (ct_flags & XLB_CT_F_TNAT) ? XLB_VXLAN_F_XLATED : 0;
}

/* The bytes in front of the inner Ethernet header of a frame sent with vo. */
static __always_inline __u32 xlb_encap_len(const struct xlb_vx_out *vo)
{
	return (vo->flags & XLB_VXLAN_F_FE) ? XLB_ENCAP_FE_LEN : XLB_ENCAP_LEN;
}

/*
 * Writes the outer headers towards `peer` (next hop: a successful fib
 * lookup) into the xlb_encap_len(vo) bytes in front of the inner Ethernet
 * header, which starts there: VXLAN flags vo->flags, then the frontend
 * trailer with XLB_VXLAN_F_FE. inner_dmac (NULL: config.mac) becomes the
 * inner destination MAC. Returns XDP_TX when the next hop is out of the
 * ingress interface, else a redirect; *reason is set on failure.
 */
static __always_inline int xlb_encap_hdrs_xdp(struct xdp_md *ctx, struct xlb_config *cfg,
					      __be32 peer, const __u8 *inner_dmac, __u32 hash,
					      const struct xlb_vx_out *vo,
					      struct bpf_fib_lookup *fib, int *reason)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *oeth = data, *ieth;
	struct iphdr *ip = data + sizeof(struct ethhdr);
	struct udphdr *uh = (void *)(ip + 1);
	struct xlb_vxlanhdr *vx = (void *)(uh + 1);
	struct xlb_vxlan_fe *fe = (void *)(vx + 1);

	if ((void *)(fe + 1) > data_end) {
		*reason = XLB_R_DROP_ADJUST;
		return XDP_DROP;
	}
	ieth = (void *)(vx + 1);
	if (vo->flags & XLB_VXLAN_F_FE) {
		fe->addr = vo->fe.addr;
		fe->port = vo->fe.port;
		fe->pad = 0;
		ieth = (void *)(fe + 1);
	}
	if ((void *)(ieth + 1) > data_end) {
		*reason = XLB_R_DROP_ADJUST;
		return XDP_DROP;
	}
	xlb_mac_copy(ieth->h_dest, inner_dmac ? inner_dmac : cfg->mac);
	xlb_mac_copy(ieth->h_source, cfg->mac);
	xlb_vxlan_hdrs(ip, uh, vx, cfg, peer, data_end - data, hash, vo->flags);
	xlb_mac_copy(oeth->h_dest, fib->dmac);
	xlb_mac_copy(oeth->h_source, fib->smac);
	oeth->h_proto = bpf_htons(ETH_P_IP);
	if (fib->ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(fib->ifindex, 0);
}

/* Encapsulates the frame (Ethernet first): room for the outer headers, then
 * xlb_encap_hdrs_xdp. */
static __always_inline int xlb_encap_xdp(struct xdp_md *ctx, struct xlb_config *cfg,
					 __be32 peer, const __u8 *inner_dmac, __u32 hash,
					 const struct xlb_vx_out *vo, struct bpf_fib_lookup *fib,
					 int *reason)
{
	if (bpf_xdp_adjust_head(ctx, -(int)xlb_encap_len(vo))) {
		*reason = XLB_R_DROP_ADJUST;
		return XDP_DROP;
	}
	return xlb_encap_hdrs_xdp(ctx, cfg, peer, inner_dmac, hash, vo, fib, reason);
}

/* tc (tunnel return: unmarked, or XLB_VXLAN_F_XLATED in vflags): pushes outer
 * IPv4/UDP/VXLAN after the Ethernet header; the caller redirects with
 * bpf_redirect_neigh (which fills the outer MACs). */
static __always_inline int xlb_encap_skb(struct __sk_buff *skb, struct xlb_config *cfg,
					 __be32 peer, __u32 hash, __u32 vflags)
{
	struct {
		struct iphdr ip;
		struct udphdr udp;
		struct xlb_vxlanhdr vx;
		struct ethhdr eth;
	} h;	/* naturally aligned: 50 bytes + tail padding */
	__u64 flags = BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP |
		      BPF_F_ADJ_ROOM_ENCAP_L2_ETH | BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN);

	__builtin_memset(&h, 0, sizeof(h));
	if (bpf_skb_load_bytes(skb, 0, &h.eth, sizeof(h.eth)))
		return -1;
	if (bpf_skb_adjust_room(skb, XLB_ENCAP_LEN, BPF_ADJ_ROOM_MAC, flags))
		return -1;
	xlb_mac_copy(h.eth.h_source, cfg->mac);
	xlb_vxlan_hdrs(&h.ip, &h.udp, &h.vx, cfg, peer, skb->len, hash, vflags);
	if (bpf_skb_store_bytes(skb, ETH_HLEN, &h, XLB_ENCAP_LEN, 0))
		return -1;
	return 0;
}

#endif /* XLB_VXLAN_H */
