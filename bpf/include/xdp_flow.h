/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb uplink XDP, IPv4 path (xdp.bpf.c): the steps for a frame of a flow
 * xlb balances once xlb_balance has matched it: forward to the chosen
 * backend (DNAT, then pass or VXLAN), a reply back to the client (reverse
 * NAT, or back through the tunnel it came from), xlb-marked VXLAN from a
 * node that chose a backend here (the tunnel return entry, decap), and a
 * reply that node sends back reverse-NATed (XLB_VXLAN_F_XLATED, decap). What
 * is sent how is xdp_send.h's.
 */
#ifndef XLB_XDP_FLOW_H
#define XLB_XDP_FLOW_H

#include "xdp_send.h"
#include "ct.h"
#include "ctsyn.h"
#include "frag.h"
#include "lb.h"
#include "nh.h"

/*
 * Tunnel NAT: a flow from the uplink (untunneled) balanced to a remote
 * backend. Its frames go with the frontend trailer (XLB_VXLAN_F_FE, vxlan.h),
 * the backend's node reverse-NATs its replies and sends them back marked
 * XLB_VXLAN_F_XLATED (xlb_xlated_in), and this node keeps its forward ct entry
 * only (XLB_CT_F_TNAT). Flows that came by tunnel keep the reverse entry here,
 * and so does every flow while config says XLB_CFG_F_TNAT is off.
 */
static __always_inline int xlb_tnat(const struct xlb_ctx *x, const struct xlb_choice *ch)
{
	return !x->tun.peer && ch->node && (x->cfg->flags & XLB_CFG_F_TNAT);
}

/* The VXLAN flags and trailer of a frame to remote backend ch of the flow to
 * frontend (fe_addr, fe_port): the Service mark, and under tunnel NAT the
 * frontend. */
static __always_inline void xlb_vx_fwd(const struct xlb_ctx *x, const struct xlb_choice *ch,
				       __be32 fe_addr, __be16 fe_port, struct xlb_vx_out *vo)
{
	vo->flags = XLB_VXLAN_F_SVC;
	if (xlb_tnat(x, ch)) {
		vo->flags |= XLB_VXLAN_F_FE;
		vo->fe.addr = fe_addr;
		vo->fe.port = fe_port;
	}
}

/* Forward to the chosen backend: DNAT, then pass (local) or encap (remote;
 * with the frontend trailer under tunnel NAT: t's destination, pre-DNAT). */
static __always_inline int xlb_forward(struct xlb_ctx *x, struct xlb_choice *ch,
				       const struct xlb_ct_key *t)
{
	__u8 vtep[ETH_ALEN] XLB_MAC_ALIGN;
	struct xlb_send s = {
		.peer = ch->node, .ok_reason = XLB_R_TX_REMOTE, .nat_dir = XLB_NAT_DST,
		.nat_addr = ch->addr, .nat_port = ch->port, .be = ch,
	};
	struct xlb_fc_enc *enc;
	__u64 vtep_expires;
	int r;

	if (x->p.first_frag)
		xlb_frag_put(&x->p, (void *)(long)x->ctx->data_end);
	if (!ch->node) {
		r = xlb_decap_xdp(x->ctx, x->cfg, &x->p, &x->tun);
		if (r != XLB_OK)
			return xlb_end(x, r, XDP_DROP);
		xlb_nat_xdp(&x->p, XLB_NAT_DST, ch->addr, ch->port);
		xlb_count_backend(ch->backend_id, x->bytes);
		return xlb_done(XLB_R_PASS_LOCAL, x->bytes, XDP_PASS);
	}
	xlb_vx_fwd(x, ch, t->daddr, t->dport, &s.vo);
	enc = xlb_fc_enc_get(x->fc, ch->node, xlb_in_ifindex(x), x->now);
	if (enc) {
		s.inner_dmac = enc->vtep;
		s.known = enc;
		s.hash = xlb_hash_of(x, t);
		return xlb_to_peer(x, &s);
	}
	if (!xlb_vtep_mac(xlb_vtep_slot(ch->addr), ch->addr, x->now, vtep, &vtep_expires))
		return xlb_end(x, XLB_R_DROP_NO_TUNNEL, XDP_DROP);
	s.inner_dmac = vtep;
	s.vtep_expires = vtep_expires;
	s.hash = xlb_hash_of(x, t);
	return xlb_to_peer(x, &s);
}

/* A reply of a flow this node balanced (or returns through a tunnel). */
static __always_inline int xlb_reply(struct xlb_ctx *x, struct xlb_ct_val *v,
				     const struct xlb_ct_key *t)
{
	__be32 nat_addr = v->nat_addr, peer = v->tunnel_peer;
	__be16 nat_port = v->nat_port;
	__u32 flags = v->flags;
	int r;

	if (x->p.first_frag)
		xlb_frag_put(&x->p, (void *)(long)x->ctx->data_end);
	if (nat_addr)
		xlb_count_svc(v->svc_id, x->bytes);
	if ((flags & XLB_CT_F_TUNNEL) && peer) {
		struct xlb_send s = {
			.peer = peer, .hash = xlb_hash_of(x, t), .ok_reason = XLB_R_TX_TUNNEL_RETURN,
			.nat_dir = XLB_NAT_SRC, .nat_addr = nat_addr, .nat_port = nat_port,
			.vo = { .flags = xlb_vx_reply_flags(flags) },
		};

		return xlb_to_peer(x, &s);
	}
	r = xlb_decap_xdp(x->ctx, x->cfg, &x->p, &x->tun);
	if (r != XLB_OK)
		return xlb_end(x, r, XDP_DROP);
	if (!nat_addr)
		return xlb_done(XLB_R_PASS_DECAP, x->bytes, XDP_PASS);
	xlb_nat_xdp(&x->p, XLB_NAT_SRC, nat_addr, nat_port);
	return xlb_done(XLB_R_PASS_REVNAT, x->bytes, XDP_PASS);
}

/*
 * xlb-marked VXLAN whose inner frame is no Service: a remote node chose a
 * backend on this node. Remember which node to send the replies back to, and
 * how: with the frontend trailer (tunnel NAT), this node reverse-NATs them
 * (source := the frontend; XLB_CT_F_TNAT) and marks them
 * XLB_VXLAN_F_XLATED; without, they go back untranslated and that node, which
 * holds the NAT pair, reverse-NATs them. Decap and pass.
 */
static __always_inline int xlb_tunnel_in(struct xlb_ctx *x, __u64 now)
{
	struct xlb_ct_key rk = {
		.saddr = x->p.daddr, .daddr = x->p.saddr, .sport = x->p.dport,
		.dport = x->p.sport, .proto = x->p.proto,
	};
	struct xlb_ct_val *v = bpf_map_lookup_elem(&ct, &rk);
	__u32 tnat = x->tun.fe_addr ? XLB_CT_F_TNAT : 0;
	int r;

	/* A new connection's SYN: half-open (ctsyn.h); the client's ACK writes
	 * the entry. Else rewrite anything but this very tunnel entry: a reverse
	 * entry left by an earlier flow with the same backend/client ports (a
	 * client reusing its source port towards another node's NodePort) would
	 * reverse-NAT the replies to the wrong frontend. */
	if (!v && x->p.proto == IPPROTO_TCP && xlb_tcp_open(x->p.tcp_flags)) {
		xlb_syn_tunnel(&rk, x->tun.peer, x->tun.fe_addr, x->tun.fe_port, now);
		goto decap;
	}
	/* ct holds the flow from here: an older half-open slot of these ports
	 * (the tunnel SYN's own, or another frontend's flow) is over */
	if (!v || xlb_tcp_open(x->p.tcp_flags))
		xlb_syn_end_rev(&rk);
	if (!v || (v->flags & (XLB_CT_F_TUNNEL | XLB_CT_F_TNAT)) != (XLB_CT_F_TUNNEL | tnat) ||
	    v->nat_addr != x->tun.fe_addr || v->nat_port != x->tun.fe_port ||
	    v->tunnel_peer != x->tun.peer) {
		/* (svc_id: the Service is the peer's; none counted here) */
		struct xlb_ct_val nv = {
			.svc_id = tnat ? XLB_NO_SVC : 0,
			.flags = XLB_CT_F_REVERSE | XLB_CT_F_TUNNEL | tnat |
				 xlb_ct_state_new(x->p.proto, x->p.tcp_flags),
			.tunnel_peer = x->tun.peer,
			.nat_addr = x->tun.fe_addr,
			.nat_port = x->tun.fe_port,
			.last_seen = now,
		};
		__u32 of = v ? v->flags : 0;
		__be32 oa = v ? v->nat_addr : 0;
		__be16 op = v ? v->nat_port : 0;

		if (bpf_map_update_elem(&ct, &rk, &nv, BPF_ANY)) {
			xlb_count(XLB_R_EVENT_CT_FULL, x->bytes);
		} else {
			xlb_ct_flag_victim(&rk, of, oa, op, 0, 0);
			if (v)
				xlb_ct_epoch_bump();
		}
	} else {
		__u32 f = v->flags, nf;

		if (xlb_age(now, v->last_seen) > XLB_CT_TOUCH_NS)
			v->last_seen = now;
		/* the client's SYN / FIN / RST: this node's only entry of the flow */
		if ((f & XLB_CT_F_TCP_STATE) | (x->p.tcp_flags & XLB_TCP_CTRL)) {
			nf = xlb_tcp_open(x->p.tcp_flags) ?
				     (f & ~XLB_CT_F_TCP_STATE) | XLB_CT_F_SYN :
				     xlb_ct_state_next(f, x->p.tcp_flags, XLB_CT_F_FIN_FWD);
			if (nf != f)
				v->flags = nf;
		}
	}
decap:
	r = xlb_decap_xdp(x->ctx, x->cfg, &x->p, &x->tun);
	if (r != XLB_OK)
		return xlb_end(x, r, XDP_DROP);
	return xlb_done(XLB_R_PASS_DECAP, x->bytes, XDP_PASS);
}

/*
 * VXLAN marked XLB_VXLAN_F_XLATED: a reply of a tunnel NAT flow, reverse-NATed
 * by the backend's node (this node holds the flow's forward entry only).
 * Decap and pass, without a ct lookup; but a TCP FIN or RST is recorded in
 * the forward entry (the reply's tuple reversed: client -> frontend), as a
 * reverse entry would pass it on (xlb_ct_reverse_live), so the entry reaches
 * the closed state and its short timeout.
 */
static __always_inline int xlb_xlated_in(struct xlb_ctx *x)
{
	int r;

	if (x->p.proto == IPPROTO_TCP && x->p.l4 &&
	    (x->p.tcp_flags & (XLB_TCP_FIN | XLB_TCP_RST))) {
		struct xlb_ct_key fk = {
			.saddr = x->p.daddr, .daddr = x->p.saddr, .sport = x->p.dport,
			.dport = x->p.sport, .proto = IPPROTO_TCP,
		};
		struct xlb_ct_val *fv = bpf_map_lookup_elem(&ct, &fk);
		__u32 f, nf;

		if (fv && (fv->flags & (XLB_CT_F_REVERSE | XLB_CT_F_TNAT)) == XLB_CT_F_TNAT) {
			f = fv->flags;
			nf = xlb_ct_state_next(f, x->p.tcp_flags, XLB_CT_F_FIN_REV);
			if (nf != f)
				fv->flags = nf;
		}
	}
	r = xlb_decap_xdp(x->ctx, x->cfg, &x->p, &x->tun);
	if (r != XLB_OK)
		return xlb_end(x, r, XDP_DROP);
	return xlb_done(XLB_R_PASS_DECAP, x->bytes, XDP_PASS);
}

#endif /* XLB_XDP_FLOW_H */
