/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb uplink XDP, IPv4 path (xdp.bpf.c): how a decided frame leaves when it
 * is not simply passed. An answer built in place (the Ethernet addresses
 * back to the sender; a Service without usable endpoint answers TCP RST /
 * ICMP port unreachable), or VXLAN to a peer node (xlb_to_peer: next hop
 * from the flow cache, the next-hop cache or the fib; ICMP fragmentation
 * needed when the encapsulated frame would not fit the MTU; the VXLAN flags
 * and the frontend trailer of xlb_send.vo). Separate from
 * the flow steps (xdp_flow.h) that decide where a frame goes.
 */
#ifndef XLB_XDP_SEND_H
#define XLB_XDP_SEND_H

#include "xdp_ctx.h"
#include "nat.h"
#include "vxlan.h"
#include "icmp.h"
#include "nh.h"
#include "flowcache.h"

/* Ethernet addresses for an answer: back to where the frame came from on the
 * wire (the outer header, still at the frame's start, when it arrived by
 * tunnel: answers are built before the outer headers are stripped). */
static __always_inline void xlb_answer_macs(struct xlb_ctx *x, __u8 *to, __u8 *from)
{
	struct ethhdr *eth = x->p.eth;

	if (x->tun.outer_len) {
		void *data = (void *)(long)x->ctx->data;

		eth = data;
		if ((void *)(eth + 1) > (void *)(long)x->ctx->data_end)
			eth = x->p.eth;
	}
	__builtin_memcpy(to, eth->h_source, ETH_ALEN);
	__builtin_memcpy(from, eth->h_dest, ETH_ALEN);
}

/* Service without usable endpoint: TCP RST / ICMP port unreachable. */
static __always_inline int xlb_reject(struct xlb_ctx *x)
{
	__u8 to[ETH_ALEN], from[ETH_ALEN];
	int reason = XLB_R_DROP_NO_BACKEND, verdict;
	int r;

	if (!(x->cfg->flags & XLB_CFG_F_REJECT) || !x->p.l4)
		return xlb_end(x, XLB_R_DROP_NO_BACKEND, XDP_DROP);
	xlb_answer_macs(x, to, from);
	r = xlb_decap_xdp(x->ctx, x->cfg, &x->p, &x->tun);
	if (r != XLB_OK)
		return xlb_end(x, r, XDP_DROP);
	if (x->p.proto == IPPROTO_TCP)
		verdict = xlb_rst_xdp(x->ctx, &x->p, to, from, &reason);
	else
		verdict = xlb_icmp_xdp(x->ctx, &x->p, ICMP_DEST_UNREACH, ICMP_PORT_UNREACH, 0,
				       to, from, &reason);
	return xlb_end(x, reason, verdict);
}

/* The fib input ifindex of the encapsulated frames. */
static __always_inline __u32 xlb_in_ifindex(struct xlb_ctx *x)
{
	return x->cfg->ifindex ? x->cfg->ifindex : x->ctx->ingress_ifindex;
}

/* What xlb_to_peer sends, and how. */
struct xlb_send {
	__be32 peer;			/* the node to encapsulate to */
	const __u8 *inner_dmac;		/* inner destination MAC; NULL: config.mac */
	__u64 vtep_expires;		/* inner_dmac is the VTEP cache's until then; 0: not cached */
	const struct xlb_fc_enc *known;	/* the flow cache's next hop, or NULL */
	__u32 hash;			/* flow hash: outer UDP source port */
	int ok_reason;			/* the reason counted when sent */
	int nat_dir;			/* XLB_NAT_SRC / XLB_NAT_DST */
	__be32 nat_addr;		/* address to NAT to; 0: no NAT */
	__be16 nat_port;
	struct xlb_vx_out vo;		/* VXLAN flags (SVC, FE, XLATED) and the frontend trailer */
	const struct xlb_choice *be;	/* the backend a forwarded frame counts on; NULL: a reply */
};

/* The outcome of a frame xlb_to_peer sent (or dropped): a frame on its way
 * to a backend counts on it. */
static __always_inline int xlb_sent(struct xlb_ctx *x, const struct xlb_send *s, int reason,
				    int verdict)
{
	if (verdict == XDP_DROP)
		return xlb_end(x, reason, verdict);
	if (s->be)
		xlb_count_backend(s->be->backend_id, x->bytes);
	return xlb_done(reason, x->bytes, verdict);
}

/*
 * Sends the (decapsulated, NATed) frame to node s->peer through VXLAN. The
 * next hop comes from s->known (the flow cache's copy) or the next-hop cache /
 * fib; with s->vtep_expires what was resolved is kept in the flow's cache
 * slot for its next frames.
 */
static __always_inline int xlb_to_peer(struct xlb_ctx *x, const struct xlb_send *s)
{
	struct bpf_fib_lookup fib;
	struct xlb_nh *nh;
	__u32 in_ifindex;
	void *data_end = (void *)(long)x->ctx->data_end;
	__u32 inner_l3 = data_end - (void *)x->p.eth - ETH_HLEN;
	__u32 mtu = x->cfg->mtu ? x->cfg->mtu : 1500;
	__u32 enc_len = xlb_encap_len(&s->vo);
	__be32 peer = s->peer;
	int reason = s->ok_reason, verdict, rc, r;

	/* (a scalar from here: the compiler would otherwise add enc_len to
	 * data_end, which the verifier refuses) */
	asm volatile("" : "+r"(inner_l3));
	if (inner_l3 + enc_len > mtu) {
		__u8 to[ETH_ALEN], from[ETH_ALEN];

		xlb_answer_macs(x, to, from);
		r = xlb_decap_xdp(x->ctx, x->cfg, &x->p, &x->tun);
		if (r != XLB_OK)
			return xlb_end(x, r, XDP_DROP);
		verdict = xlb_icmp_xdp(x->ctx, &x->p, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED,
				       mtu - enc_len, to, from, &reason);
		return xlb_end(x, reason, verdict);
	}
	in_ifindex = xlb_in_ifindex(x);
	if (s->known) {
		fib.ifindex = s->known->out_ifindex;
		xlb_mac_copy(fib.dmac, s->known->dmac);
		xlb_mac_copy(fib.smac, s->known->smac);
		rc = BPF_FIB_LKUP_RET_SUCCESS;
	} else {
		nh = xlb_nh_slot(peer, in_ifindex);
		if (xlb_nh_get(nh, peer, in_ifindex, x->now, &fib)) {
			rc = BPF_FIB_LKUP_RET_SUCCESS;
		} else {
			rc = xlb_fib_xdp(x->ctx, x->cfg, peer, inner_l3 + enc_len, &fib);
			if (rc == BPF_FIB_LKUP_RET_SUCCESS)
				xlb_nh_put(nh, peer, in_ifindex, x->now, mtu, &fib);
		}
		if (rc == BPF_FIB_LKUP_RET_SUCCESS && s->vtep_expires)
			xlb_fc_enc_put(x->fc, peer, in_ifindex, nh, s->inner_dmac, s->vtep_expires,
				       x->now);
	}
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return xlb_end(x, XLB_R_DROP_FIB, XDP_DROP);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS && x->tun.outer_len == enc_len) {
		/* Arrived by tunnel and leaves by tunnel, with outer headers of
		 * the size it needs (no IPv4 options): they are rewritten where
		 * they are, without stripping and pushing them again. */
		if (s->nat_addr)
			xlb_nat_xdp(&x->p, s->nat_dir, s->nat_addr, s->nat_port);
		verdict = xlb_encap_hdrs_xdp(x->ctx, x->cfg, peer, s->inner_dmac, s->hash, &s->vo,
					     &fib, &reason);
		return xlb_sent(x, s, reason, verdict);
	}
	r = xlb_decap_xdp(x->ctx, x->cfg, &x->p, &x->tun);
	if (r != XLB_OK)
		return xlb_end(x, r, XDP_DROP);
	if (s->nat_addr)
		xlb_nat_xdp(&x->p, s->nat_dir, s->nat_addr, s->nat_port);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		/* Let the kernel route the (NATed) frame through its overlay device:
		 * that resolves the neighbour; the next frames take the fast path. */
		return xlb_sent(x, s, XLB_R_PASS_FIB_NO_NEIGH, XDP_PASS);
	}
	verdict = xlb_encap_xdp(x->ctx, x->cfg, peer, s->inner_dmac, s->hash, &s->vo, &fib,
				&reason);
	return xlb_sent(x, s, reason, verdict);
}

#endif /* XLB_XDP_SEND_H */
