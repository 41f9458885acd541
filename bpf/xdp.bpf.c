// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xlb uplink XDP program: VXLAN decap, Service load balancing, reverse NAT.
 *
 * Per frame: parse; VXLAN for this node -> look at the inner frame; then
 *   1. ct hit, reverse entry  -> reverse NAT (source back to the frontend), pass
 *                                (or back through the tunnel it came from);
 *   2. ct hit, forward entry with a live backend of the same generation -> forward;
 *      ct miss, a half-open connection's packet (ctsyn.h): the client's
 *      retransmitted SYN or its ACK (which promotes the flow into ct) -> forward
 *      to the backend its SYN went to; the backend's SYN-ACK -> reverse NAT;
 *   3. Service match (address, then NodePort when dst is a local address)
 *      -> source ranges / no endpoint / externalTrafficPolicy Local / affinity /
 *      Maglev -> a half-open ct_syn slot (a new connection's SYN) or ct
 *      entries -> forward;
 *   4. xlb-marked VXLAN (a remote node chose a backend here) -> remember the
 *      tunnel peer for the replies, decap, pass;
 *   5. anything else passes untouched (VXLAN stays encapsulated for the kernel).
 * IPv6 frames go to the program xlb_xdp6 (xdp6.h) by a tail call: the IPv4
 * path's instructions, stack and verifier budget do not depend on it.
 * Forward: local backend -> DNAT, pass; remote -> DNAT + VXLAN to its node.
 * Every frame counts exactly one outcome reason (stats.h); a forwarded one also
 * counts on its backend, a dropped or answered one is an event for `xlb
 * monitor` while one is on.
 */
/* The IPv6 program fills the xdp6_prog slot (maps.h). */
#define XLB_XDP_OBJECT
struct xdp_md;
int xlb_xdp6(struct xdp_md *ctx);
#include "include/maps.h"
#include "include/parse.h"
#include "include/csum.h"
#include "include/stats.h"
#include "include/clock.h"
#include "include/hash.h"
#include "include/filter.h"
#include "include/lb.h"
#include "include/ct.h"
#include "include/ctsyn.h"
#include "include/nat.h"
#include "include/vxlan.h"
#include "include/icmp.h"
#include "include/nh.h"
#include "include/flowcache.h"
#include "include/frag.h"
#include "include/icmperr.h"
#include "include/xdp6.h"

struct xlb_ctx {
	struct xdp_md *ctx;
	struct xlb_config *cfg;
	struct xlb_pkt p;
	struct xlb_tun tun;
	__u64 bytes;		/* frame length as received */
	__u64 now;		/* xlb_clock_now(), read once when needed: xlb_now_of */
	__u32 hash;		/* xlb_flow_hash of the (inner) 5-tuple: xlb_hash_of */
	__u32 has_hash;
	struct xlb_fc *fc;	/* this flow's flow-cache slot (hit or just filled), or NULL */
	const struct xlb_ct_key *t;	/* the (inner) 5-tuple as received, for events; or NULL */
	__u32 svc_id;		/* the frame's Service port once known, for events; else XLB_NO_SVC */
};


static __always_inline __u64 xlb_now_of(struct xlb_ctx *x)
{
	if (!x->now)
		x->now = xlb_clock_now();
	return x->now;
}

/* The flow hash of t (the frame's 5-tuple), computed once. */
static __always_inline __u32 xlb_hash_of(struct xlb_ctx *x, const struct xlb_ct_key *t)
{
	if (!x->has_hash) {
		x->hash = xlb_flow_hash(t, 0);
		x->has_hash = 1;
	}
	return x->hash;
}

static __always_inline int xlb_done(int reason, __u64 bytes, int verdict)
{
	xlb_count(reason, bytes);
	return verdict;
}

/* A frame's outcome where it may be a drop or an answer: its reason counter,
 * and an event for `xlb monitor` (only while a monitor is on). */
static __always_inline int xlb_end(struct xlb_ctx *x, int reason, int verdict)
{
	struct xlb_monitor *m;

	if (x->t && xlb_event_reason(reason) && (m = xlb_monitor_on()))
		/* the helper's clock, not the timer's: an event's time must be
		 * exact even where traffic is too light to re-arm the timer */
		xlb_event(m, reason, x->t, x->svc_id, x->bytes, XLB_HOOK_XDP,
			  x->ctx->ingress_ifindex, xlb_now());
	return xlb_done(reason, x->bytes, verdict);
}

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
	int mark;			/* set XLB_VXLAN_F_SVC */
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
	__be32 peer = s->peer;
	int reason = s->ok_reason, verdict, rc, r;

	if (inner_l3 + XLB_ENCAP_LEN > mtu) {
		__u8 to[ETH_ALEN], from[ETH_ALEN];

		xlb_answer_macs(x, to, from);
		r = xlb_decap_xdp(x->ctx, x->cfg, &x->p, &x->tun);
		if (r != XLB_OK)
			return xlb_end(x, r, XDP_DROP);
		verdict = xlb_icmp_xdp(x->ctx, &x->p, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED,
				       mtu - XLB_ENCAP_LEN, to, from, &reason);
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
			rc = xlb_fib_xdp(x->ctx, x->cfg, peer, inner_l3 + XLB_ENCAP_LEN, &fib);
			if (rc == BPF_FIB_LKUP_RET_SUCCESS)
				xlb_nh_put(nh, peer, in_ifindex, x->now, mtu, &fib);
		}
		if (rc == BPF_FIB_LKUP_RET_SUCCESS && s->vtep_expires)
			xlb_fc_enc_put(x->fc, peer, in_ifindex, nh, s->inner_dmac, s->vtep_expires,
				       x->now);
	}
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return xlb_end(x, XLB_R_DROP_FIB, XDP_DROP);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS && x->tun.outer_len == XLB_ENCAP_LEN) {
		/* Arrived by tunnel and leaves by tunnel, with outer headers of
		 * the size it needs (no IPv4 options): they are rewritten where
		 * they are, without stripping and pushing them again. */
		if (s->nat_addr)
			xlb_nat_xdp(&x->p, s->nat_dir, s->nat_addr, s->nat_port);
		verdict = xlb_encap_hdrs_xdp(x->ctx, x->cfg, peer, s->inner_dmac, s->hash, s->mark,
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
	verdict = xlb_encap_xdp(x->ctx, x->cfg, peer, s->inner_dmac, s->hash, s->mark, &fib,
				&reason);
	return xlb_sent(x, s, reason, verdict);
}

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

/*
 * A frame xlb does not translate (a later fragment without its first, an ICMP
 * message about no balanced flow): passed untouched, or decapsulated when a
 * remote node marked it (it chose a backend here; the kernel's VXLAN device
 * would drop the marked frame).
 */
static __always_inline int xlb_untranslated(struct xlb_ctx *x, int reason)
{
	int r;

	if (!x->tun.marked)
		return xlb_done(reason, x->bytes, XDP_PASS);
	r = xlb_decap_xdp(x->ctx, x->cfg, &x->p, &x->tun);
	if (r != XLB_OK)
		return xlb_done(r, x->bytes, XDP_DROP);
	return xlb_done(XLB_R_PASS_DECAP, x->bytes, XDP_PASS);
}

/* An ICMP error about a balanced flow (icmperr.h): translated, then to the
 * client (reverse entry) or the backend (forward entry) like the flow's own
 * packets. Anything else not TCP/UDP passes (pass_l4_other). */
static __always_inline int xlb_icmp_in(struct xlb_ctx *x)
{
	void *data_end = (void *)(long)x->ctx->data_end;
	struct xlb_icmp_err e;
	struct xlb_choice ch = {};
	struct xlb_send s = { .ok_reason = XLB_R_TX_ICMP_RELATED };
	__u8 vtep[ETH_ALEN] XLB_MAC_ALIGN;
	struct xlb_ct_val *v, sv;
	__u64 vtep_expires;
	__be32 nat_addr;
	__u32 flags;
	int r;

	if (!xlb_icmp_err_parse(&x->p, data_end, &e))
		return xlb_untranslated(x, XLB_R_PASS_L4_OTHER);
	if (!x->tun.peer && !xlb_be_maybe(e.flow.saddr) &&
	    !xlb_frontend_maybe(e.flow.daddr, e.flow.dport, e.flow.proto))
		return xlb_done(XLB_R_PASS_L4_OTHER, x->bytes, XDP_PASS);
	v = bpf_map_lookup_elem(&ct, &e.flow);
	if (!v) {
		/* about a half-open connection (ctsyn.h) */
		if (!xlb_syn_view(&e.flow, &sv))
			return xlb_untranslated(x, XLB_R_PASS_L4_OTHER);
		v = &sv;
	}
	s.hash = xlb_flow_hash(&e.flow, 0);
	flags = v->flags;
	if (flags & XLB_CT_F_REVERSE) {
		nat_addr = v->nat_addr;
		s.peer = (flags & XLB_CT_F_TUNNEL) ? v->tunnel_peer : 0;
		if ((!nat_addr && !s.peer) || (flags & XLB_CT_F_HAIRPIN))
			return xlb_untranslated(x, XLB_R_PASS_L4_OTHER);
		if (nat_addr) {
			xlb_count_svc(v->svc_id, x->bytes);
			xlb_icmp_err_nat(&x->p, &e, XLB_NAT_DST, nat_addr, v->nat_port);
		}
		if (s.peer)
			return xlb_to_peer(x, &s);
	} else {
		if (!xlb_ct_live_backend(v, x->cfg, e.flow.proto, xlb_now_of(x), &ch))
			return xlb_untranslated(x, XLB_R_PASS_L4_OTHER);
		xlb_count_svc(v->svc_id, x->bytes);
		xlb_icmp_err_nat(&x->p, &e, XLB_NAT_SRC, ch.addr, ch.port);
		if (ch.node) {
			if (!xlb_vtep_mac(xlb_vtep_slot(ch.addr), ch.addr, x->now, vtep,
					  &vtep_expires))
				return xlb_done(XLB_R_DROP_NO_TUNNEL, x->bytes, XDP_DROP);
			s.peer = ch.node;
			s.inner_dmac = vtep;
			s.mark = 1;
			return xlb_to_peer(x, &s);
		}
	}
	r = xlb_decap_xdp(x->ctx, x->cfg, &x->p, &x->tun);
	if (r != XLB_OK)
		return xlb_done(r, x->bytes, XDP_DROP);
	return xlb_done(XLB_R_PASS_ICMP_RELATED, x->bytes, XDP_PASS);
}

static __always_inline int xlb_balance(struct xlb_ctx *x)
{
	struct xlb_ct_key t = {
		.saddr = x->p.saddr, .daddr = x->p.daddr, .sport = x->p.sport,
		.dport = x->p.dport, .proto = x->p.proto,
	};
	struct xlb_choice ch = {};
	struct xlb_svc_val *svc;
	struct xlb_ct_val *v, *rv, sv;
	struct xlb_syn hs, *s;
	struct xlb_fc_ref fc;
	struct xlb_fc *c;
	int r, event = XLB_OK;
	__u64 now;

	x->t = &t;
	c = xlb_fc_get(&t, &fc);
	if (c) {
		/* a cached hit: the same checks as on the ct entry (flowcache.h) */
		now = xlb_now_of(x);
		v = &c->val;
		x->hash = c->hash;
		x->has_hash = 1;
		x->fc = c;
		/* SYN, FIN and RST go to the ct entry: they may change its
		 * state (ct.h); entries with state bits are never cached. */
		if (now < c->expires && !(x->p.tcp_flags & XLB_TCP_CTRL)) {
			if (v->flags & XLB_CT_F_REVERSE) {
				if (xlb_age(now, v->last_seen) < xlb_ct_timeout(x->cfg, v->flags, t.proto)) {
					rv = v;
					goto reply;
				}
			} else if (xlb_ct_live_backend(v, x->cfg, t.proto, now, &ch)) {
				xlb_count_svc(v->svc_id, x->bytes);
				x->svc_id = v->svc_id;
				goto forward;
			}
		}
		xlb_fc_drop(&fc);
		x->fc = NULL;
	}
	/* Untunneled, to no frontend and from no backend: no ct entry can be
	 * this frame's (forward entries are keyed by a frontend, the reverse
	 * entries the uplink sees by a backend), and no Service matches. The
	 * node's own traffic and everything else not ours ends here, without a
	 * ct lookup. (A deleted Service's flows end with it, as in Cilium.) */
	if (!x->tun.peer && !xlb_be_maybe(t.saddr) &&
	    !xlb_frontend_maybe(t.daddr, t.dport, t.proto))
		return xlb_done(XLB_R_PASS_NOT_SERVICE, x->bytes, XDP_PASS);
	v = bpf_map_lookup_elem(&ct, &t);
	if (v) {
		now = xlb_now_of(x);
		if (v->flags & XLB_CT_F_REVERSE) {
			/* a SYN-ACK or RST of a newer half-open flow (ctsyn.h) */
			if (xlb_syn_reply_newer(&t, v, x->cfg, x->p.tcp_flags, now, &sv)) {
				rv = &sv;
				goto reply;
			}
			if (xlb_ct_reverse_live(v, &t, x->cfg, x->p.tcp_flags, now)) {
				if (xlb_fc_put(&fc, &t, v, now, xlb_hash_of(x, &t)))
					x->fc = fc.slot;
				rv = v;
				goto reply;
			}
		} else if ((r = xlb_ct_backend(v, x->cfg, t.proto, x->p.tcp_flags, now, &ch))) {
			xlb_count_svc(v->svc_id, x->bytes);
			x->svc_id = v->svc_id;
			if (r & XLB_CT_CHECK)
				xlb_ct_reverse_keep(&t, &ch, v, now);
			if (xlb_tcp_open(x->p.tcp_flags))
				xlb_syn_end_flow(&t, &ch);	/* the newest flow of its ports */
			if (r & XLB_CT_SYNC)
				xlb_ct_sync_reverse(&t, &ch, v->flags & XLB_CT_F_CLOSING);
			if (xlb_fc_put(&fc, &t, v, now, xlb_hash_of(x, &t)))
				x->fc = fc.slot;
			goto forward;
		}
	} else if (t.proto == IPPROTO_TCP && (s = xlb_syn_fwd(&t, &hs))) {
		/* the client of a half-open connection: a retransmitted SYN, or
		 * its ACK, which promotes the flow into ct (ctsyn.h) */
		now = xlb_now_of(x);
		r = xlb_syn_backend(s, &hs, x->cfg, x->p.tcp_flags, now, &ch);
		if (r) {
			xlb_count_svc(hs.svc_id, x->bytes);
			x->svc_id = hs.svc_id;
			if (r == XLB_SYN_PROMOTE) {
				if (xlb_ct_create(&t, &ch, hs.svc_id, hs.tunnel_peer,
						  x->p.tcp_flags, now) != XLB_OK)
					xlb_count(XLB_R_EVENT_CT_FULL, x->bytes);
				xlb_syn_end(s, &hs);
			}
			goto forward;
		}
	}
	svc = xlb_service(t.daddr, t.dport, t.proto, x->cfg->node_addr);
	if (!svc) {
		/* a backend's reply to a half-open connection (its SYN-ACK) */
		if (t.proto == IPPROTO_TCP && (s = xlb_syn_rev(&t, &hs)) &&
		    xlb_syn_reply(s, &hs, x->cfg, x->p.tcp_flags, xlb_now_of(x), &sv)) {
			rv = &sv;
			goto reply;
		}
		if (x->tun.marked)
			return xlb_tunnel_in(x, xlb_now_of(x));
		return xlb_done(XLB_R_PASS_NOT_SERVICE, x->bytes, XDP_PASS);
	}
	/* From the uplink: a client outside the cluster; by tunnel: a pod */
	if (x->tun.peer)
		svc = xlb_service_internal(svc, t.daddr, t.dport, t.proto);
	now = xlb_now_of(x);
	xlb_count_svc(svc->svc_id, x->bytes);
	x->svc_id = svc->svc_id;
	r = xlb_choose_hash(svc, &t, now, &ch, &event, &x->hash, &x->has_hash);
	if (event != XLB_OK)
		xlb_count(event, x->bytes);
	if (r == XLB_R_DROP_NO_BACKEND)
		return xlb_reject(x);
	if (r != XLB_OK)
		return xlb_end(x, r, XDP_DROP);
	/* A new connection's SYN: half-open, one ct_syn slot (ctsyn.h); a
	 * SYN on the ports of a dead ct entry, and everything else, opens ct
	 * entries. */
	if (!v && t.proto == IPPROTO_TCP && xlb_tcp_open(x->p.tcp_flags) && !xlb_hairpin(&t, &ch)) {
		xlb_syn_create(&t, &ch, svc->svc_id, x->tun.peer, now);
	} else {
		if (xlb_ct_create(&t, &ch, svc->svc_id, x->tun.peer, x->p.tcp_flags, now) != XLB_OK)
			xlb_count(XLB_R_EVENT_CT_FULL, x->bytes);
		xlb_syn_end_flow(&t, &ch);
	}
	/* (one call site each: both are inlined, and large) */
forward:
	return xlb_forward(x, &ch, &t);
reply:
	return xlb_reply(x, rv, &t);
}

SEC("xdp")
int xlb_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct xlb_ctx x = { .ctx = ctx, .bytes = data_end - data, .svc_id = XLB_NO_SVC };
	__u32 zero = 0;
	int r;

	r = xlb_parse(data, data_end, &x.p);
	if (r != XLB_OK && r != XLB_R_PASS_FRAG_NO_FIRST && r != XLB_R_PASS_L4_OTHER) {
		/* IPv6: the program xlb_xdp6 (xdp6.h), by a tail call (falls
		 * through, counted as not IP, only if the slot is empty) */
		if (r == XLB_R_PASS_NOT_IP && x.p.eth->h_proto == bpf_htons(ETH_P_IPV6))
			bpf_tail_call(ctx, &xdp6_prog, 0);
		return xlb_done(r, x.bytes, XDP_PASS);
	}
	x.cfg = bpf_map_lookup_elem(&config, &zero);
	if (!x.cfg)
		return xlb_done(XLB_R_PASS_NOT_SERVICE, x.bytes, XDP_PASS);
	if (r == XLB_OK && x.p.proto == IPPROTO_UDP && x.p.dport == x.cfg->vxlan_port &&
	    (x.cfg->flags & XLB_CFG_F_VXLAN)) {
		r = xlb_vxlan_in(data, data_end, x.cfg, &x.p, &x.tun);
		if (r != XLB_OK && r != XLB_R_PASS_FRAG_NO_FIRST && r != XLB_R_PASS_L4_OTHER)
			return xlb_done(r, x.bytes, XDP_PASS);
	}
	if (r == XLB_R_PASS_L4_OTHER)
		return xlb_icmp_in(&x);
	/* a later fragment: its first fragment's ports, or untranslated (frag.h) */
	if (r == XLB_R_PASS_FRAG_NO_FIRST && !xlb_frag_get(&x.p, data_end))
		return xlb_untranslated(&x, XLB_R_PASS_FRAG_NO_FIRST);
	return xlb_balance(&x);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
