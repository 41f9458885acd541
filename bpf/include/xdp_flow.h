/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb uplink XDP, IPv4 path (xdp.bpf.c): the steps for a frame of a flow
 * xlb balances once xlb_balance has matched it: forward to the chosen
 * backend (DNAT, then pass or VXLAN), a reply back to the client (reverse
 * NAT, or back through the tunnel it came from), and xlb-marked VXLAN from a
 * node that chose a backend here (the tunnel return entry, decap). What is
 * sent how is xdp_send.h's.
 */
#ifndef XLB_XDP_FLOW_H
#define XLB_XDP_FLOW_H

#include "xdp_send.h"
#include "ct.h"
#include "ctsyn.h"
#include "frag.h"
#include "lb.h"
#include "nh.h"

/* Forward to the chosen backend: DNAT, then pass (local) or encap (remote). */
static __always_inline int xlb_forward(struct xlb_ctx *x, struct xlb_choice *ch,
				       const struct xlb_ct_key *t)
{
	__u8 vtep[ETH_ALEN] XLB_MAC_ALIGN;
	struct xlb_send s = {
		.peer = ch->node, .ok_reason = XLB_R_TX_REMOTE, .nat_dir = XLB_NAT_DST,
		.nat_addr = ch->addr, .nat_port = ch->port, .mark = 1, .be = ch,
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
 * backend on this node. Remember which node to send the replies back to (it
 * holds the NAT state and reverse-NATs them), decap and pass.
 */
static __always_inline int xlb_tunnel_in(struct xlb_ctx *x, __u64 now)
{
	struct xlb_ct_key rk = {
		.saddr = x->p.daddr, .daddr = x->p.saddr, .sport = x->p.dport,
		.dport = x->p.sport, .proto = x->p.proto,
	};
	struct xlb_ct_val *v = bpf_map_lookup_elem(&ct, &rk);
	int r;

	/* A new connection's SYN: half-open (ctsyn.h); the client's ACK writes
	 * the entry. Else rewrite anything but this very tunnel entry: a reverse
	 * entry left by an earlier flow with the same backend/client ports (a
	 * client reusing its source port towards another node's NodePort) would
	 * reverse-NAT the replies to the wrong frontend. */
	if (!v && x->p.proto == IPPROTO_TCP && xlb_tcp_open(x->p.tcp_flags)) {
		xlb_syn_tunnel(&rk, x->tun.peer, now);
		goto decap;
	}
	/* ct holds the flow from here: an older half-open slot of these ports
	 * (the tunnel SYN's own, or another frontend's flow) is over */
	if (!v || xlb_tcp_open(x->p.tcp_flags))
		xlb_syn_end_rev(&rk);
	if (!v || !(v->flags & XLB_CT_F_TUNNEL) || v->nat_addr || v->tunnel_peer != x->tun.peer) {
		struct xlb_ct_val nv = {
			.flags = XLB_CT_F_REVERSE | XLB_CT_F_TUNNEL |
				 xlb_ct_state_new(x->p.proto, x->p.tcp_flags),
			.tunnel_peer = x->tun.peer,
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

#endif /* XLB_XDP_FLOW_H */
