/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb uplink XDP, IPv4 path (xdp.bpf.c): frames that are no balanced flow's
 * own TCP/UDP packets. ICMP errors about a balanced flow (RELATED,
 * icmperr.h) are translated and sent like the flow's packets; frames xlb
 * does not translate (a later fragment without its first, an ICMP message
 * about no balanced flow) pass, decapsulated when a remote node marked them.
 */
#ifndef XLB_XDP_RELATED_H
#define XLB_XDP_RELATED_H

#include "xdp_send.h"
#include "xdp_flow.h"
#include "ct.h"
#include "ctsyn.h"
#include "stateless.h"
#include "filter.h"
#include "icmperr.h"
#include "nh.h"

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
 * packets (under tunnel NAT: to the backend's node with the frontend trailer;
 * from it marked XLB_VXLAN_F_XLATED). Anything else not TCP/UDP passes
 * (pass_l4_other). */
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
		/* about a half-open connection (ctsyn.h), or a stateless flow
		 * (stateless.h) */
		if (!xlb_syn_view(&e.flow, &sv) &&
		    (x->tun.peer || !xlb_stable_view(&e.flow, x->cfg, xlb_now_of(x), &sv)))
			return xlb_untranslated(x, XLB_R_PASS_L4_OTHER);
		v = &sv;
	}
	s.hash = xlb_flow_hash(&e.flow, 0);
	flags = v->flags;
	if (flags & XLB_CT_F_REVERSE) {
		nat_addr = v->nat_addr;
		s.peer = (flags & XLB_CT_F_TUNNEL) ? v->tunnel_peer : 0;
		/* tunnel NAT: translated here, marked as such for the peer */
		s.vo.flags = xlb_vx_reply_flags(flags);
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
			/* tunnel NAT: with the frontend, like the flow's frames */
			xlb_vx_fwd(x, &ch, e.flow.daddr, e.flow.dport, &s.vo);
			return xlb_to_peer(x, &s);
		}
	}
	r = xlb_decap_xdp(x->ctx, x->cfg, &x->p, &x->tun);
	if (r != XLB_OK)
		return xlb_done(r, x->bytes, XDP_DROP);
	return xlb_done(XLB_R_PASS_ICMP_RELATED, x->bytes, XDP_PASS);
}

#endif /* XLB_XDP_RELATED_H */
