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
 *      tunnel peer (and, with the frontend trailer, the reverse NAT: tunnel
 *      NAT) for the replies, decap, pass; VXLAN marked XLB_VXLAN_F_XLATED (a
 *      reply the backend's node reverse-NATed) -> decap, pass;
 *   5. anything else passes untouched (VXLAN stays encapsulated for the kernel).
 * IPv6 frames go to the program xlb_xdp6 (xdp6.h) by a tail call: the IPv4
 * path's instructions, stack and verifier budget do not depend on it.
 * Forward: local backend -> DNAT, pass; remote -> DNAT + VXLAN to its node
 * (a flow from the uplink: with the frontend trailer, and its forward ct
 * entry only: xlb_tnat, xdp_flow.h).
 * Every frame counts exactly one outcome reason (stats.h); a forwarded one also
 * counts on its backend, a dropped or answered one is an event for `xlb
 * monitor` while one is on.
 * This file holds the entry and the balancing decision (xlb_balance); the
 * per-frame context is xdp_ctx.h's, the flow steps (forward, reply, tunnel
 * return) xdp_flow.h's, answers and VXLAN sending xdp_send.h's, ICMP errors
 * and untranslated frames xdp_related.h's.
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
#include "include/stateless.h"
#include "include/nat.h"
#include "include/vxlan.h"
#include "include/icmp.h"
#include "include/nh.h"
#include "include/flowcache.h"
#include "include/frag.h"
#include "include/icmperr.h"
#include "include/xdp6.h"
#include "include/xdp_ctx.h"
#include "include/xdp_send.h"
#include "include/xdp_flow.h"
#include "include/xdp_related.h"

static __always_inline int xlb_balance(struct xlb_ctx *x)
{
	struct xlb_ct_key t = {
		.saddr = x->p.saddr, .daddr = x->p.daddr, .sport = x->p.sport,
		.dport = x->p.dport, .proto = x->p.proto,
	};
	struct xlb_choice ch = {};
	struct xlb_svc_stable *st = NULL;
	struct xlb_svc_val *svc = NULL;
	struct xlb_ct_val *v, *rv, sv;
	struct xlb_syn hs, *s;
	struct xlb_fc_ref fc;
	struct xlb_fc *c;
	int r, event = XLB_OK, skip_ct = 0, skip_syn = 0;
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
	/* Untunneled and from no backend: a ct entry can be this frame's only
	 * when it goes to a frontend (forward entries are keyed by a frontend,
	 * the reverse entries the uplink sees by a backend). Its Service first
	 * (the lookup probes fe_filter): without one, the node's own traffic
	 * and everything else not ours ends here, without a ct lookup (a
	 * deleted Service's flows end with it, as in Cilium); with one, no ct
	 * (or ct_syn) lookup when no entry of the Service can be live
	 * (stateless.h). */
	if (!x->tun.peer && !xlb_be_maybe(t.saddr)) {
		svc = xlb_service(t.daddr, t.dport, t.proto, x->cfg->node_addr);
		if (!svc)
			return xlb_done(XLB_R_PASS_NOT_SERVICE, x->bytes, XDP_PASS);
		st = xlb_stable_of(svc->svc_id);
		if (st) {
			skip_ct = xlb_stable_no_ct(st, x->cfg, t.proto, xlb_now_of(x));
			skip_syn = xlb_stable_no_syn(st, xlb_now_of(x));
		}
	}
	v = skip_ct ? NULL : bpf_map_lookup_elem(&ct, &t);
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
			if (!svc && !x->tun.peer)	/* no Service yet: be_filter passed the source */
				st = xlb_stable_of(v->svc_id);
			if (st)
				xlb_stable_seen(st, now);
			if (r & XLB_CT_CHECK)
				xlb_ct_reverse_keep(&t, &ch, v, now);
			if (xlb_tcp_open(x->p.tcp_flags))
				xlb_syn_end_flow(&t, &ch);	/* the newest flow of its ports */
			if (r & XLB_CT_SYNC)
				xlb_ct_sync_reverse(&t, &ch, v->flags & XLB_CT_F_CLOSING);
cache:
			if (xlb_fc_put(&fc, &t, v, now, xlb_hash_of(x, &t)))
				x->fc = fc.slot;
			goto forward;
		}
	} else if (t.proto == IPPROTO_TCP && !skip_syn && (s = xlb_syn_fwd(&t, &hs))) {
		/* the client of a half-open connection: a retransmitted SYN, or
		 * its ACK, which promotes the flow into ct (ctsyn.h) */
		now = xlb_now_of(x);
		r = xlb_syn_backend(s, &hs, x->cfg, x->p.tcp_flags, now, &ch);
		if (r) {
			xlb_count_svc(hs.svc_id, x->bytes);
			x->svc_id = hs.svc_id;
			if (r == XLB_SYN_PROMOTE) {
				if (xlb_ct_create(&t, &ch, hs.svc_id, hs.tunnel_peer,
						  xlb_tnat(x, &ch), x->p.tcp_flags, now) != XLB_OK)
					xlb_count(XLB_R_EVENT_CT_FULL, x->bytes);
				xlb_syn_end(s, &hs);
				if (!svc && !x->tun.peer)
					st = xlb_stable_of(hs.svc_id);
				if (st)
					xlb_stable_seen(st, now);
			}
			goto forward;
		}
	}
	if (!svc) {
		svc = xlb_service(t.daddr, t.dport, t.proto, x->cfg->node_addr);
		/* untunneled from a source be_filter passed: its svc_stable
		 * entry here (the ct lookup was made, and missed or found a
		 * dead entry) */
		if (svc && !x->tun.peer)
			st = xlb_stable_of(svc->svc_id);
	}
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
	/* A flow of a Service with a stateless path: none in ct when the
	 * table names its remote backend (stateless.h) */
	if (st) {
		if (xlb_stable_choice(st, xlb_hash_of(x, &t), now, &ch, x->cfg->flags & XLB_CFG_F_TNAT,
				      t.proto == IPPROTO_TCP && xlb_tcp_open(x->p.tcp_flags)) ==
			    XLB_STABLE_FREE && !v) {
			/* cached as a ct hit would be (one call site) */
			xlb_stable_val(&ch, svc->svc_id, now, &sv);
			v = &sv;
			goto cache;
		}
		xlb_stable_seen(st, now);
	}
	/* A new connection's SYN: half-open, one ct_syn slot (ctsyn.h); a
	 * SYN on the ports of a dead ct entry, and everything else, opens ct
	 * entries. */
	if (!v && t.proto == IPPROTO_TCP && xlb_tcp_open(x->p.tcp_flags) && !xlb_hairpin(&t, &ch)) {
		xlb_syn_create(&t, &ch, svc->svc_id, x->tun.peer, now);
	} else {
		if (xlb_ct_create(&t, &ch, svc->svc_id, x->tun.peer, xlb_tnat(x, &ch),
				  x->p.tcp_flags, now) != XLB_OK)
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
		/* a reply the backend's node reverse-NATed (tunnel NAT) */
		if (x.tun.xlated)
			return xlb_xlated_in(&x);
	}
	if (r == XLB_R_PASS_L4_OTHER)
		return xlb_icmp_in(&x);
	/* a later fragment: its first fragment's ports, or untranslated (frag.h) */
	if (r == XLB_R_PASS_FRAG_NO_FIRST && !xlb_frag_get(&x.p, data_end))
		return xlb_untranslated(&x, XLB_R_PASS_FRAG_NO_FIRST);
	return xlb_balance(&x);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
