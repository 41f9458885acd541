/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb uplink XDP, IPv6 path: the program xlb_xdp6, which xlb_xdp (xdp.bpf.c)
 * tail-calls for an IPv6 ethertype (map xdp6_prog). A program of its own:
 * the IPv4 path's instructions, stack and verifier budget do not depend on it.
 *
 * Per frame, as the IPv4 path: parse (extension headers: parse6.h); VXLAN
 * over IPv6 for this node -> the inner IPv6 frame (vxlan6.h); ICMPv6 errors
 * about balanced flows translated (icmperr6.h), neighbour discovery never
 * touched; later fragments follow their first (frag6.h); then
 *   1. ct6 hit, reverse entry -> reverse NAT, pass (or back through the tunnel);
 *   2. ct6 hit, forward entry with a live backend -> forward;
 *   3. Service match (lb6.h) -> choice -> ct6 entries -> forward, or reject
 *      (TCP RST / ICMPv6 port unreachable, icmp6.h) / drop;
 *   4. xlb-marked VXLAN whose inner frame is no Service -> tunnel return entry,
 *      decap, pass;
 *   5. anything else passes untouched.
 * Forward: local backend -> DNAT, pass; remote -> DNAT + VXLAN over IPv6 to
 * its node (fib lookup AF_INET6 each time; Packet Too Big when the frame
 * would not fit the MTU). UDP/IPv6 with checksum 0 is never translated
 * (pass_udp6_no_csum). No flow cache, half-open table, next-hop or VTEP
 * cache and no frontend filter on this path (docs/dp.md).
 */
#ifndef XLB_XDP6_H
#define XLB_XDP6_H

#include "maps.h"
#include "parse6.h"
#include "nat6.h"
#include "lb6.h"
#include "ct6.h"
#include "frag6.h"
#include "vxlan6.h"
#include "icmp6.h"
#include "icmperr6.h"
#include "stats6.h"
#include "nh6.h"

struct xlb_ctx6 {
	struct xdp_md *ctx;
	struct xlb_config *cfg;
	struct xlb_config6 *cfg6;
	struct xlb_scratch6 *sc;
	struct xlb_pkt6 p;
	struct xlb_tun6 tun;
	__u64 bytes;		/* frame length as received */
	__u64 now;		/* xlb_clock_now(), read once: xlb6_now */
	__u32 svc_id;		/* for events; XLB_NO_SVC */
	__u32 has_t;		/* sc->t is the frame's (events) */
};

/* What a step returns beyond an XDP verdict: the next step. */
#define XLB6_TO_PEER	16
#define XLB6_FORWARD	17
#define XLB6_REPLY	18
#define XLB6_REJECT	19
#define XLB6_TUNNEL_IN	20

static __always_inline __u64 xlb6_now(struct xlb_ctx6 *x)
{
	if (!x->now)
		x->now = xlb_clock_now();
	return x->now;
}

static __always_inline int xlb6_done(struct xlb_ctx6 *x, int reason, int verdict)
{
	xlb_count(reason, x->bytes);
	return verdict;
}

/* A frame's outcome where it may be a drop or an answer: counted, and an
 * event while a monitor is on. */
static __always_inline int xlb6_end(struct xlb_ctx6 *x, int reason, int verdict)
{
	struct xlb_monitor *m;

	if (x->has_t && xlb_event_reason(reason) && (m = xlb_monitor_on()))
		xlb_event6(m, reason, &x->sc->t, x->svc_id, x->bytes, XLB_HOOK_XDP,
			   x->ctx->ingress_ifindex, xlb_now());
	return xlb6_done(x, reason, verdict);
}

/* The packet pointers again (a subprogram that may have moved the frame ran
 * before): the frame starts at the inner Ethernet header while the outer
 * headers are there. */
static __always_inline int xlb6_rebind(struct xlb_ctx6 *x)
{
	void *data = (void *)(long)x->ctx->data;

	return xlb_bind6(data + (x->tun.outer_len & 0x3ff), (void *)(long)x->ctx->data_end,
			 &x->p);
}

/* Ethernet addresses for an answer: back where the frame came from on the
 * wire (the outer header while it is there). */
static __always_inline void xlb6_answer_macs(struct xlb_ctx6 *x, __u8 *to, __u8 *from)
{
	struct ethhdr *eth = x->p.eth;

	if (x->tun.outer_len) {
		eth = (void *)(long)x->ctx->data;
		if ((void *)(eth + 1) > (void *)(long)x->ctx->data_end)
			eth = x->p.eth;
	}
	__builtin_memcpy(to, eth->h_source, ETH_ALEN);
	__builtin_memcpy(from, eth->h_dest, ETH_ALEN);
}

/* A frame xlb does not translate: passed untouched, or decapsulated when a
 * remote node marked it (the kernel's VXLAN device would drop it). */
static __always_inline int xlb6_untranslated(struct xlb_ctx6 *x, int reason)
{
	int r;

	if (!x->tun.marked)
		return xlb6_done(x, reason, XDP_PASS);
	r = xlb_decap6_xdp(x->ctx, x->cfg, &x->p, &x->tun);
	if (r != XLB_OK)
		return xlb6_done(x, r, XDP_DROP);
	return xlb6_done(x, XLB_R_PASS_DECAP, XDP_PASS);
}

/* Service without usable endpoint: TCP RST / ICMPv6 port unreachable
 * (XLB_CFG_F_REJECT), else a counted drop. */
static __noinline int xlb6_reject(struct xlb_ctx6 *x)
{
	__u8 to[ETH_ALEN], from[ETH_ALEN];
	int reason = XLB_R_DROP_NO_BACKEND, verdict, r;

	if (xlb6_rebind(x) != XLB_OK)
		return xlb6_end(x, XLB_R_DROP_ADJUST, XDP_DROP);
	if (!(x->cfg->flags & XLB_CFG_F_REJECT) || !x->p.l4)
		return xlb6_end(x, XLB_R_DROP_NO_BACKEND, XDP_DROP);
	xlb6_answer_macs(x, to, from);
	r = xlb_decap6_xdp(x->ctx, x->cfg, &x->p, &x->tun);
	if (r != XLB_OK)
		return xlb6_end(x, r, XDP_DROP);
	if (x->p.proto == IPPROTO_TCP)
		verdict = xlb_rst6_xdp(x->ctx, &x->p, to, from, &reason);
	else
		verdict = xlb_icmp6_xdp(x->ctx, &x->p, ICMP6_DST_UNREACH, ICMP6_PORT_UNREACH, 0,
					to, from, &reason);
	return xlb6_end(x, reason, verdict);
}

static __always_inline int xlb6_sent(struct xlb_ctx6 *x, const struct xlb_send6 *s, int reason,
				     int verdict)
{
	if (verdict == XDP_DROP)
		return xlb6_end(x, reason, verdict);
	if (s->has_be)
		xlb_count_backend(s->backend_id, x->bytes);
	return xlb6_done(x, reason, verdict);
}

/* Sends the frame (decapsulated, NATed per sc->s) to node s.peer in VXLAN
 * over IPv6; Packet Too Big when it would not fit the MTU. */
static __noinline int xlb6_to_peer(struct xlb_ctx6 *x)
{
	struct xlb_send6 *s = &x->sc->s;
	__u32 mtu = x->cfg->mtu ? x->cfg->mtu : 1500, inner_l3, in_ifindex;
	struct bpf_fib_lookup fib;
	struct xlb_nh6 *nh;
	int reason = s->ok_reason, verdict, rc, r;

	if (xlb6_rebind(x) != XLB_OK)
		return xlb6_end(x, XLB_R_DROP_ADJUST, XDP_DROP);
	if (!x->cfg6 || xlb_addr6_zero(x->cfg6->node_addr))
		return xlb6_end(x, XLB_R_DROP_NO_TUNNEL, XDP_DROP);
	inner_l3 = (void *)(long)x->ctx->data_end - (void *)x->p.eth - ETH_HLEN;
	if (inner_l3 + XLB_ENCAP6_LEN > mtu) {
		__u8 to[ETH_ALEN], from[ETH_ALEN];

		xlb6_answer_macs(x, to, from);
		r = xlb_decap6_xdp(x->ctx, x->cfg, &x->p, &x->tun);
		if (r != XLB_OK)
			return xlb6_end(x, r, XDP_DROP);
		verdict = xlb_icmp6_xdp(x->ctx, &x->p, ICMP6_PACKET_TOO_BIG, 0,
					mtu - XLB_ENCAP6_LEN, to, from, &reason);
		return xlb6_end(x, reason, verdict);
	}
	in_ifindex = x->cfg->ifindex ? x->cfg->ifindex : x->ctx->ingress_ifindex;
	nh = xlb_nh6_slot(s->peer, in_ifindex);
	if (xlb_nh6_get(nh, s->peer, in_ifindex, xlb6_now(x), &fib)) {
		rc = BPF_FIB_LKUP_RET_SUCCESS;
	} else {
		rc = xlb_fib6_xdp(x->ctx, x->cfg, x->cfg6, s->peer, inner_l3 + XLB_ENCAP6_LEN, &fib);
		if (rc == BPF_FIB_LKUP_RET_SUCCESS)
			xlb_nh6_put(nh, s->peer, in_ifindex, xlb6_now(x), mtu, &fib);
	}
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return xlb6_end(x, XLB_R_DROP_FIB, XDP_DROP);
	r = xlb_decap6_xdp(x->ctx, x->cfg, &x->p, &x->tun);
	if (r != XLB_OK)
		return xlb6_end(x, r, XDP_DROP);
	if (s->has_nat)
		xlb_nat6_xdp(&x->p, s->nat_dir, s->nat_addr, s->nat_port);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		/* the kernel routes the NATed frame through its overlay device,
		 * which resolves the neighbour */
		return xlb6_sent(x, s, XLB_R_PASS_FIB_NO_NEIGH, XDP_PASS);
	verdict = xlb_encap6_xdp(x->ctx, x->cfg, x->cfg6, s->peer,
				 s->has_dmac ? s->inner_dmac : NULL, s->hash, s->mark, &fib, &reason);
	return xlb6_sent(x, s, reason, verdict);
}

/* sc->s for a frame to the remote backend ch (DNAT, marked). */
static __always_inline int xlb6_send_to_backend(struct xlb_send6 *s, const struct xlb_choice6 *ch,
						__u64 now)
{
	if (!xlb_vtep6_mac(ch->addr, now, s->inner_dmac))
		return 0;
	s->has_dmac = 1;
	xlb_addr6_copy(s->peer, ch->node);
	xlb_addr6_copy(s->nat_addr, ch->addr);
	s->has_nat = 1;
	s->nat_dir = XLB_NAT_DST;
	s->nat_port = ch->port;
	s->mark = 1;
	return 1;
}

/* Forward to sc->ch: DNAT, then pass (local) or XLB6_TO_PEER (remote). */
static __noinline int xlb6_forward(struct xlb_ctx6 *x)
{
	struct xlb_choice6 *ch = &x->sc->ch;
	struct xlb_send6 *s = &x->sc->s;
	int r;

	if (xlb6_rebind(x) != XLB_OK)
		return xlb6_end(x, XLB_R_DROP_ADJUST, XDP_DROP);
	if (x->p.first_frag)
		xlb_frag6_put(&x->p);
	if (xlb_addr6_zero(ch->node)) {
		r = xlb_decap6_xdp(x->ctx, x->cfg, &x->p, &x->tun);
		if (r != XLB_OK)
			return xlb6_end(x, r, XDP_DROP);
		xlb_nat6_xdp(&x->p, XLB_NAT_DST, ch->addr, ch->port);
		xlb_count_backend(ch->backend_id, x->bytes);
		return xlb6_done(x, XLB_R_PASS_LOCAL, XDP_PASS);
	}
	__builtin_memset(s, 0, sizeof(*s));
	if (!xlb6_send_to_backend(s, ch, xlb6_now(x)))
		return xlb6_end(x, XLB_R_DROP_NO_TUNNEL, XDP_DROP);
	s->has_be = 1;
	s->backend_id = ch->backend_id;
	s->ok_reason = XLB_R_TX_REMOTE;
	s->hash = xlb_flow_hash6(&x->sc->t, 0);
	return XLB6_TO_PEER;
}

/* A reply of a flow this node balanced (sc->rv), or one that returns
 * through a tunnel: source NAT, pass, or XLB6_TO_PEER. */
static __noinline int xlb6_reply(struct xlb_ctx6 *x)
{
	struct xlb_rev6 *rv = &x->sc->rv;
	struct xlb_send6 *s = &x->sc->s;
	int has_nat = !xlb_addr6_zero(rv->nat_addr), r;

	if (xlb6_rebind(x) != XLB_OK)
		return xlb6_end(x, XLB_R_DROP_ADJUST, XDP_DROP);
	if (x->p.first_frag)
		xlb_frag6_put(&x->p);
	if (has_nat)
		xlb_count_svc(rv->svc_id, x->bytes);
	if ((rv->flags & XLB_CT_F_TUNNEL) && !xlb_addr6_zero(rv->peer)) {
		__builtin_memset(s, 0, sizeof(*s));
		xlb_addr6_copy(s->peer, rv->peer);
		xlb_addr6_copy(s->nat_addr, rv->nat_addr);
		s->has_nat = has_nat;
		s->nat_dir = XLB_NAT_SRC;
		s->nat_port = rv->nat_port;
		s->ok_reason = XLB_R_TX_TUNNEL_RETURN;
		s->hash = xlb_flow_hash6(&x->sc->t, 0);
		return XLB6_TO_PEER;
	}
	r = xlb_decap6_xdp(x->ctx, x->cfg, &x->p, &x->tun);
	if (r != XLB_OK)
		return xlb6_end(x, r, XDP_DROP);
	if (!has_nat)
		return xlb6_done(x, XLB_R_PASS_DECAP, XDP_PASS);
	xlb_nat6_xdp(&x->p, XLB_NAT_SRC, rv->nat_addr, rv->nat_port);
	return xlb6_done(x, XLB_R_PASS_REVNAT, XDP_PASS);
}

/* xlb-marked VXLAN whose inner frame is no Service: a remote node chose a
 * backend here. Remember which node the replies go back to, decap, pass. */
static __noinline int xlb6_tunnel_in(struct xlb_ctx6 *x)
{
	struct xlb_ct6_key rk = { .sport = x->p.dport, .dport = x->p.sport, .proto = x->p.proto };
	__u64 now = xlb6_now(x);
	struct xlb_ct6_val *v;
	int r;

	xlb_addr6_copy(rk.saddr, x->p.daddr);
	xlb_addr6_copy(rk.daddr, x->p.saddr);
	v = bpf_map_lookup_elem(&ct6, &rk);
	if (!v || !(v->flags & XLB_CT_F_TUNNEL) || !xlb_addr6_zero(v->nat_addr) ||
	    !xlb_addr6_eq(v->tunnel_peer, x->tun.peer)) {
		struct xlb_ct6_val nv = {
			.flags = XLB_CT_F_REVERSE | XLB_CT_F_TUNNEL |
				 xlb_ct_state_new(x->p.proto, x->p.tcp_flags),
			.last_seen = now,
		};
		__be32 oa[4] = {};
		__be16 op = 0;
		__u32 of = 0;

		if (v) {
			of = v->flags;
			op = v->nat_port;
			xlb_addr6_copy(oa, v->nat_addr);
		}
		xlb_addr6_copy(nv.tunnel_peer, x->tun.peer);
		if (bpf_map_update_elem(&ct6, &rk, &nv, BPF_ANY))
			xlb_count(XLB_R_EVENT_CT_FULL, x->bytes);
		else if (v)
			xlb_ct6_flag_victim(&rk, of, oa, op, NULL, 0);
	} else {
		__u32 f = v->flags, nf;

		if (xlb_age(now, v->last_seen) > XLB_CT_TOUCH_NS)
			v->last_seen = now;
		if ((f & XLB_CT_F_TCP_STATE) | (x->p.tcp_flags & XLB_TCP_CTRL)) {
			nf = xlb_tcp_open(x->p.tcp_flags) ?
				     (f & ~XLB_CT_F_TCP_STATE) | XLB_CT_F_SYN :
				     xlb_ct_state_next(f, x->p.tcp_flags, XLB_CT_F_FIN_FWD);
			if (nf != f)
				v->flags = nf;
		}
	}
	if (xlb6_rebind(x) != XLB_OK)
		return xlb6_end(x, XLB_R_DROP_ADJUST, XDP_DROP);
	r = xlb_decap6_xdp(x->ctx, x->cfg, &x->p, &x->tun);
	if (r != XLB_OK)
		return xlb6_end(x, r, XDP_DROP);
	return xlb6_done(x, XLB_R_PASS_DECAP, XDP_PASS);
}

/* xlb_icmp6_qwalk of the frame (IPv6 header at data + ip6_off). A global
 * subprogram: verified once (icmperr6.h). */
__noinline int xlb_xdp6_qwalk(struct xdp_md *ctx, __u32 ip6_off, __u32 l4_off, __u32 l3_len)
{
	return xlb_icmp6_qwalk((void *)(long)ctx->data, (void *)(long)ctx->data_end, ip6_off,
			       l4_off, l3_len);
}

/* ICMPv6: neighbour discovery untouched; an error about a balanced flow
 * translated and sent on like the flow's own packets (XLB6_TO_PEER through
 * a tunnel); the rest passes. */
static __noinline int xlb6_icmp_in(struct xlb_ctx6 *x)
{
	struct xlb_send6 *s = &x->sc->s;
	struct xlb_choice6 *ch = &x->sc->ch;
	struct xlb_icmp6_err e;
	struct xlb_ct6_val *v;
	void *data_end;
	__u8 *ih;
	__u32 flags;
	int r, w;

	/* before the packet pointers: the call keeps none */
	w = xlb_xdp6_qwalk(x->ctx, (x->tun.outer_len & 0x3ff) + sizeof(struct ethhdr),
			   x->p.l4_off, x->p.l3_len);
	if (xlb6_rebind(x) != XLB_OK)
		return xlb6_done(x, XLB_R_DROP_ADJUST, XDP_DROP);
	data_end = (void *)(long)x->ctx->data_end;
	ih = x->p.l4;
	if (x->p.proto != XLB_NH_ICMP6 || !ih || (void *)(ih + 1) > data_end)
		return xlb6_untranslated(x, XLB_R_PASS_L4_OTHER);
	if (ih[0] >= ICMP6_ND_FIRST && ih[0] <= ICMP6_ND_LAST)
		return xlb6_done(x, XLB_R_PASS_L4_OTHER, XDP_PASS);
	if (!xlb_icmp6_err_parse(&x->p, data_end, w, &e))
		return xlb6_untranslated(x, XLB_R_PASS_L4_OTHER);
	v = bpf_map_lookup_elem(&ct6, &e.flow);
	if (!v)
		return xlb6_untranslated(x, XLB_R_PASS_L4_OTHER);
	__builtin_memset(s, 0, sizeof(*s));
	s->ok_reason = XLB_R_TX_ICMP_RELATED;
	s->hash = xlb_flow_hash6(&e.flow, 0);
	flags = v->flags;
	if (flags & XLB_CT_F_REVERSE) {
		int has_peer = (flags & XLB_CT_F_TUNNEL) && !xlb_addr6_zero(v->tunnel_peer);
		int has_nat = !xlb_addr6_zero(v->nat_addr);

		if ((!has_nat && !has_peer) || (flags & XLB_CT_F_HAIRPIN))
			return xlb6_untranslated(x, XLB_R_PASS_L4_OTHER);
		xlb_addr6_copy(s->peer, v->tunnel_peer);
		if (has_nat) {
			xlb_count_svc(v->svc_id, x->bytes);
			xlb_addr6_copy(s->nat_addr, v->nat_addr);
			xlb_icmp6_err_nat(&x->p, &e, XLB_NAT_DST, s->nat_addr, v->nat_port);
		}
		if (has_peer)
			return XLB6_TO_PEER;
	} else {
		if (!xlb_ct6_live_backend(v, x->cfg, e.flow.proto, xlb6_now(x), ch))
			return xlb6_untranslated(x, XLB_R_PASS_L4_OTHER);
		xlb_count_svc(v->svc_id, x->bytes);
		xlb_icmp6_err_nat(&x->p, &e, XLB_NAT_SRC, ch->addr, ch->port);
		if (!xlb_addr6_zero(ch->node)) {
			if (!xlb_vtep6_mac(ch->addr, xlb6_now(x), s->inner_dmac))
				return xlb6_done(x, XLB_R_DROP_NO_TUNNEL, XDP_DROP);
			s->has_dmac = 1;
			xlb_addr6_copy(s->peer, ch->node);
			s->mark = 1;
			return XLB6_TO_PEER;
		}
	}
	r = xlb_decap6_xdp(x->ctx, x->cfg, &x->p, &x->tun);
	if (r != XLB_OK)
		return xlb6_done(x, r, XDP_DROP);
	return xlb6_done(x, XLB_R_PASS_ICMP_RELATED, XDP_PASS);
}

/*
 * The connection tracking and Service steps of a TCP/UDP frame (5-tuple
 * sc->t): XLB6_REPLY (sc->rv), XLB6_FORWARD (sc->ch), XLB6_REJECT,
 * XLB6_TUNNEL_IN, or the frame's verdict.
 */
static __noinline int xlb6_classify(struct xlb_ctx6 *x)
{
	struct xlb_ct6_key *t = &x->sc->t;
	struct xlb_choice6 *ch = &x->sc->ch;
	struct xlb_svc_val *svc;
	struct xlb_ct6_val *v;
	int r, event = XLB_OK;
	__u32 hash = 0, has_hash = 0;
	__u64 now;

	if (x->p.udp_nocsum)
		return xlb6_untranslated(x, XLB_R_PASS_UDP6_NO_CSUM);
	v = bpf_map_lookup_elem(&ct6, t);
	if (v) {
		now = xlb6_now(x);
		if (v->flags & XLB_CT_F_REVERSE) {
			if (xlb_ct6_reverse_live(v, t, x->cfg, x->p.tcp_flags, now)) {
				struct xlb_rev6 *rv = &x->sc->rv;

				xlb_addr6_copy(rv->nat_addr, v->nat_addr);
				xlb_addr6_copy(rv->peer, v->tunnel_peer);
				rv->flags = v->flags;
				rv->svc_id = v->svc_id;
				rv->nat_port = v->nat_port;
				return XLB6_REPLY;
			}
		} else if ((r = xlb_ct6_backend(v, x->cfg, t->proto, x->p.tcp_flags, now, ch))) {
			xlb_count_svc(v->svc_id, x->bytes);
			x->svc_id = v->svc_id;
			if (r & XLB_CT_CHECK)
				xlb_ct6_reverse_keep(t, ch, v, now);
			if (r & XLB_CT_SYNC)
				xlb_ct6_sync_reverse(t, ch, v->flags & XLB_CT_F_CLOSING);
			return XLB6_FORWARD;
		}
	}
	svc = xlb_service6(t->daddr, t->dport, t->proto, x->cfg6 ? x->cfg6->node_addr : NULL);
	if (!svc) {
		if (x->tun.marked)
			return XLB6_TUNNEL_IN;
		return xlb6_done(x, XLB_R_PASS_NOT_SERVICE, XDP_PASS);
	}
	/* From the uplink: a client outside the cluster; by tunnel: a pod */
	if (x->tun.tunneled)
		svc = xlb_service6_internal(svc, t->daddr, t->dport, t->proto);
	now = xlb6_now(x);
	xlb_count_svc(svc->svc_id, x->bytes);
	x->svc_id = svc->svc_id;
	r = xlb_choose6_hash(svc, t, now, ch, &event, &hash, &has_hash);
	if (event != XLB_OK)
		xlb_count(event, x->bytes);
	if (r == XLB_R_DROP_NO_BACKEND)
		return XLB6_REJECT;
	if (r != XLB_OK)
		return xlb6_end(x, r, XDP_DROP);
	if (xlb_ct6_create(t, ch, svc->svc_id, x->tun.tunneled ? x->tun.peer : NULL,
			   x->p.tcp_flags, now) != XLB_OK)
		xlb_count(XLB_R_EVENT_CT_FULL, x->bytes);
	return XLB6_FORWARD;
}

/* xlb_parse6 of the frame's Ethernet header at offset `at` (0, or the inner
 * one of a tunnel). A global subprogram: the extension header walk is
 * verified once, and its caller goes on with one state, not one per path
 * through the walk. */
__noinline int xlb_xdp6_parse(struct xdp_md *ctx, __u32 at, struct xlb_info6 *i)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (!i)
		return XLB_R_PASS_TRUNC_ETH;
	return xlb_parse6(data + (at & 0x3ff), data_end, i);
}

/* xlb_xdp6_parse, then the packet pointers (xlb_bind6). */
static __always_inline int xlb6_parse_at(struct xdp_md *ctx, __u32 at, struct xlb_pkt6 *p)
{
	void *data, *data_end;
	int r = xlb_xdp6_parse(ctx, at, &p->info);

	if (r != XLB_OK && r != XLB_R_PASS_FRAG_NO_FIRST && r != XLB_R_PASS_L4_OTHER)
		return r;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (xlb_bind6(data + (at & 0x3ff), data_end, p) != XLB_OK)
		return XLB_R_PASS_TRUNC_IP;
	return r;
}

/* The IPv6 path of the uplink program (the frame's ethertype is IPv6;
 * xlb_xdp tail-calls it through xdp6_prog): each step a subprogram, called
 * one after the other from here. */
SEC("xdp")
int xlb_xdp6(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct xlb_ctx6 x = { .ctx = ctx, .bytes = data_end - data, .svc_id = XLB_NO_SVC };
	struct xlb_ct6_key *t;
	__u32 zero = 0;
	int r, act;

	r = xlb6_parse_at(ctx, 0, &x.p);
	if (r != XLB_OK && r != XLB_R_PASS_FRAG_NO_FIRST && r != XLB_R_PASS_L4_OTHER)
		return xlb6_done(&x, r, XDP_PASS);
	x.cfg = bpf_map_lookup_elem(&config, &zero);
	x.sc = bpf_map_lookup_elem(&scratch6, &zero);
	if (!x.cfg || !x.sc)
		return xlb6_done(&x, XLB_R_PASS_NOT_SERVICE, XDP_PASS);
	x.cfg6 = bpf_map_lookup_elem(&config6, &zero);
	if (r == XLB_OK && x.p.proto == IPPROTO_UDP && x.p.dport == x.cfg->vxlan_port &&
	    (x.cfg->flags & XLB_CFG_F_VXLAN)) {
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
		r = xlb_vxlan6_in(data, data_end, x.cfg, x.cfg6, &x.p, &x.tun);
		if (r == XLB_OK)
			r = xlb6_parse_at(ctx, x.tun.outer_len, &x.p);
		if (r != XLB_OK && r != XLB_R_PASS_FRAG_NO_FIRST && r != XLB_R_PASS_L4_OTHER)
			return xlb6_done(&x, r, XDP_PASS);
	}
	if (r == XLB_R_PASS_L4_OTHER) {
		act = xlb6_icmp_in(&x);
	} else {
		if (r == XLB_R_PASS_FRAG_NO_FIRST && !xlb_frag6_get(&x.p))
			return xlb6_untranslated(&x, XLB_R_PASS_FRAG_NO_FIRST);
		t = &x.sc->t;
		xlb_addr6_copy(t->saddr, x.p.saddr);
		xlb_addr6_copy(t->daddr, x.p.daddr);
		t->sport = x.p.sport;
		t->dport = x.p.dport;
		t->proto = x.p.proto;
		t->pad[0] = t->pad[1] = t->pad[2] = 0;
		x.has_t = 1;
		act = xlb6_classify(&x);
		if (act == XLB6_FORWARD)
			act = xlb6_forward(&x);
		else if (act == XLB6_REPLY)
			act = xlb6_reply(&x);
		else if (act == XLB6_REJECT)
			return xlb6_reject(&x);
		else if (act == XLB6_TUNNEL_IN)
			return xlb6_tunnel_in(&x);
	}
	if (act == XLB6_TO_PEER)
		return xlb6_to_peer(&x);
	return act;
}

#endif /* XLB_XDP6_H */
