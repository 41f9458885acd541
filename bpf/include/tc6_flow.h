/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: what the pod-veth programs do with an IPv6 frame (tc6.h describes
 * the rules): xlb_tc6_run, the body of the program xlb_tc6 that xlb_tc
 * tail-calls for ETH_P_IPV6 frames only (xlb_tc's IPv4 frame leaves no
 * stack for a subprogram), and xlb_tc6_egress, a subprogram of
 * xlb_tc_egress (a host-network endpoint's reply into the pod).
 */
#ifndef XLB_TC6_FLOW_H
#define XLB_TC6_FLOW_H

#include "tc6.h"

/* What xlb_tc6_known, xlb_tc6_new and xlb_tc6_icmp leave to xlb_tc6 (no TC verdict has
 * these values): a reject, or an encapsulation back through a tunnel. */
#define XLB_TC6_REJECT	0x7fff
#define XLB_TC6_TUNNEL	0x7ffe
#define XLB_TC6_NEXT	0x7ffd	/* xlb_tc6_known: no live ct6 entry */

/* ... and what goes with them, in skb->cb (xlb_tc6's stack has no room):
 * XLB_TC6_TUNNEL: cb[0..3] the peer, cb[4] the reason to count and, above
 * bit 8, the 14 bits of the flow hash the outer source port takes;
 * XLB_TC6_REJECT: cb[4] the svc_id. */
static __always_inline void xlb_tc6_cb_tunnel(struct __sk_buff *skb, const __be32 *peer,
					      __u32 hash, __u32 reason)
{
	skb->cb[0] = peer[0];
	skb->cb[1] = peer[1];
	skb->cb[2] = peer[2];
	skb->cb[3] = peer[3];
	skb->cb[4] = (hash & 0x3fff) << 8 | reason;
}

/* l4 offset in the skb for xlb_nat6_skb: 0 for a non-first fragment */
static __always_inline __u32 xlb_tc6_l4_off(const struct xlb_pkt6 *p)
{
	return p->l4 ? ETH_HLEN + p->l4_off : 0;
}

/* A reply of a local backend (reverse entry v of t); a tunnel return is
 * left to xlb_tc6 (XLB_TC6_TUNNEL, out). */
static __always_inline int xlb_tc6_reply(struct __sk_buff *skb, struct xlb_pkt6 *p,
					 const struct xlb_ct6_val *v, const struct xlb_ct6_key *t,
					 __u64 bytes)
{
	__u32 l4_off = xlb_tc6_l4_off(p), flags = v->flags, svc_id = v->svc_id;
	int nat = !xlb_addr6_zero(v->nat_addr);
	__be32 old[4];

	if (p->first_frag)
		xlb_frag6_put(p);
	if (nat) {
		xlb_count_svc(svc_id, bytes);
		xlb_addr6_copy(old, t->saddr);
		if (xlb_nat6_skb(skb, l4_off, p->proto, XLB_NAT_SRC, old, v->nat_addr, t->sport,
				 v->nat_port))
			return xlb_tc6_end(skb, t, svc_id, XLB_R_DROP_ADJUST, bytes, TC_ACT_SHOT);
	}
	if ((flags & XLB_CT_F_HAIRPIN) && nat) {
		/* The pod answering itself: back to its own address (the
		 * backend, t's source), into its veth. */
		xlb_addr6_copy(old, t->daddr);
		if (xlb_nat6_skb(skb, l4_off, p->proto, XLB_NAT_DST, old, t->saddr, t->dport,
				 t->dport) ||
		    xlb_tc6_swap_macs(skb))
			return xlb_tc6_end(skb, t, svc_id, XLB_R_DROP_ADJUST, bytes, TC_ACT_SHOT);
		xlb_count(XLB_R_PASS_REVNAT, bytes);
		return bpf_redirect(skb->ifindex, 0);
	}
	if ((flags & XLB_CT_F_TUNNEL) && !xlb_addr6_zero(v->tunnel_peer)) {
		xlb_tc6_cb_tunnel(skb, v->tunnel_peer, xlb_flow_hash6(t, 0), XLB_R_TX_TUNNEL_RETURN);
		return XLB_TC6_TUNNEL;
	}
	if (!nat)
		return xlb_tc6_done(XLB_R_PASS_NOT_SERVICE, bytes, TC_ACT_OK);
	return xlb_tc6_done(XLB_R_PASS_REVNAT, bytes, TC_ACT_OK);
}

static __always_inline int xlb_tc6_forward(struct __sk_buff *skb, struct xlb_pkt6 *p,
					   const struct xlb_ct6_key *t,
					   const struct xlb_choice6 *ch, __u32 svc_id, __u64 bytes)
{
	__u32 l4_off = xlb_tc6_l4_off(p);
	__be32 old[4], hp[4];

	if (p->first_frag)
		xlb_frag6_put(p);
	xlb_addr6_copy(old, t->daddr);
	if (xlb_nat6_skb(skb, l4_off, p->proto, XLB_NAT_DST, old, ch->addr, t->dport, ch->port))
		return xlb_tc6_end(skb, t, svc_id, XLB_R_DROP_ADJUST, bytes, TC_ACT_SHOT);
	if (xlb_hairpin6(t, ch)) {
		/* Hairpin: from the hairpin address, straight back into the
		 * pod's veth (its replies come out again: xlb_tc6_reply). */
		xlb_hairpin6_addr(hp);
		xlb_addr6_copy(old, t->saddr);
		if (xlb_nat6_skb(skb, l4_off, p->proto, XLB_NAT_SRC, old, hp, t->sport, t->sport) ||
		    xlb_tc6_swap_macs(skb))
			return xlb_tc6_end(skb, t, svc_id, XLB_R_DROP_ADJUST, bytes, TC_ACT_SHOT);
		xlb_count(XLB_R_PASS_LOCAL, bytes);
		xlb_count_backend(ch->backend_id, bytes);
		return bpf_redirect(skb->ifindex, 0);
	}
	xlb_count_backend(ch->backend_id, bytes);
	return xlb_tc6_done(xlb_addr6_zero(ch->node) ? XLB_R_PASS_LOCAL : XLB_R_TX_REMOTE, bytes,
			    TC_ACT_OK);
}

/* xlb_icmp6_qwalk of the skb (linear; IPv6 header after Ethernet). A
 * global subprogram: verified once (icmperr6.h). */
__noinline int xlb_tc6_qwalk(struct __sk_buff *skb, __u32 l4_off, __u32 l3_len)
{
	return xlb_icmp6_qwalk((void *)(long)skb->data, (void *)(long)skb->data_end,
			       sizeof(struct ethhdr), l4_off, l3_len);
}

/* An ICMPv6 error a pod sends about a balanced flow (tc.bpf.c's
 * xlb_tc_icmp for IPv6; icmperr6.h). A subprogram, as xlb_tc6_reject. */
static __noinline int xlb_tc6_icmp(struct __sk_buff *skb, const struct xlb_config *cfg,
				   struct xlb_pkt6 *p)
{
	int w = xlb_tc6_qwalk(skb, p->l4_off, p->l3_len);
	void *data_end = (void *)(long)skb->data_end;
	__u64 bytes = skb->len;
	struct xlb_icmp6_err e;
	struct xlb_choice6 ch = {};
	struct xlb_ct6_val *v;
	__u32 flags;
	int nat, tun;

	if (!xlb_icmp6_err_parse(p, data_end, w, &e))
		return xlb_tc6_done(XLB_R_PASS_L4_OTHER, bytes, TC_ACT_OK);
	v = bpf_map_lookup_elem(&ct6, &e.flow);
	if (!v)
		return xlb_tc6_done(XLB_R_PASS_L4_OTHER, bytes, TC_ACT_OK);
	flags = v->flags;
	if (flags & XLB_CT_F_REVERSE) {
		nat = !xlb_addr6_zero(v->nat_addr);
		tun = (flags & XLB_CT_F_TUNNEL) && !xlb_addr6_zero(v->tunnel_peer);
		if ((!nat && !tun) || (flags & XLB_CT_F_HAIRPIN))
			return xlb_tc6_done(XLB_R_PASS_L4_OTHER, bytes, TC_ACT_OK);
		if (nat) {
			xlb_count_svc(v->svc_id, bytes);
			xlb_icmp6_err_nat(p, &e, XLB_NAT_DST, v->nat_addr, v->nat_port);
		}
		if (tun) {
			xlb_tc6_cb_tunnel(skb, v->tunnel_peer, xlb_flow_hash6(&e.flow, 0),
					  XLB_R_TX_ICMP_RELATED);
			return XLB_TC6_TUNNEL;
		}
		return xlb_tc6_done(XLB_R_PASS_ICMP_RELATED, bytes, TC_ACT_OK);
	}
	if (!xlb_ct6_live_backend(v, cfg, e.flow.proto, xlb_now(), &ch))
		return xlb_tc6_done(XLB_R_PASS_L4_OTHER, bytes, TC_ACT_OK);
	xlb_count_svc(v->svc_id, bytes);
	xlb_icmp6_err_nat(p, &e, XLB_NAT_SRC, ch.addr, ch.port);
	return xlb_tc6_done(XLB_R_PASS_ICMP_RELATED, bytes, TC_ACT_OK);
}

/* The ct6 key of parsed TCP/UDP frame p */
static __always_inline void xlb_tc6_tuple(const struct xlb_pkt6 *p, struct xlb_ct6_key *t)
{
	xlb_addr6_copy(t->saddr, p->saddr);
	xlb_addr6_copy(t->daddr, p->daddr);
	t->sport = p->sport;
	t->dport = p->dport;
	t->proto = p->proto;
}

/* The ct6 entry of a parsed TCP/UDP frame p: a reply reverse-NATed
 * (XLB_TC6_TUNNEL for a tunnel return), a forward hit DNATed;
 * XLB_TC6_NEXT when there is none (or it is stale): xlb_tc6_new's turn.
 * Subprograms, as the ICMPv6 error path, the reject and the encapsulation:
 * xlb_tc6 calls them side by side, so no two of them add up their stack. */
static __noinline int xlb_tc6_known(struct __sk_buff *skb, const struct xlb_config *cfg,
				    struct xlb_pkt6 *p)
{
	struct xlb_ct6_key tk = {}, *t = &tk;
	struct xlb_choice6 ch = {};
	struct xlb_ct6_val *v;
	__u64 bytes = skb->len, now = xlb_now();
	__u32 svc_id;
	int r;

	xlb_tc6_tuple(p, t);
	v = bpf_map_lookup_elem(&ct6, t);
	if (!v)
		return XLB_TC6_NEXT;
	if (v->flags & XLB_CT_F_REVERSE) {
		if (xlb_ct6_reverse_live(v, t, cfg, p->tcp_flags, now))
			return xlb_tc6_reply(skb, p, v, t, bytes);
	} else if ((r = xlb_ct6_backend(v, cfg, t->proto, p->tcp_flags, now, &ch))) {
		svc_id = v->svc_id;
		xlb_count_svc(svc_id, bytes);
		if (r & XLB_CT_CHECK)
			xlb_ct6_reverse_keep(t, &ch, v, now);
		if (r & XLB_CT_SYNC)
			xlb_ct6_sync_reverse(t, &ch, v->flags & XLB_CT_F_CLOSING);
		return xlb_tc6_forward(skb, p, t, &ch, svc_id, bytes);
	}
	return XLB_TC6_NEXT;
}

/* A new flow of parsed TCP/UDP frame p: Service match, choice, ct6, DNAT;
 * XLB_TC6_REJECT for a Service without endpoints. */
static __noinline int xlb_tc6_new(struct __sk_buff *skb, const struct xlb_config6 *cfg6,
				  struct xlb_pkt6 *p)
{
	struct xlb_ct6_key tk = {}, *t = &tk;
	struct xlb_choice6 ch = {};
	struct xlb_svc_val *svc;
	__u64 bytes = skb->len, now = xlb_now();
	__u32 svc_id;
	int r, event = XLB_OK;

	xlb_tc6_tuple(p, t);
	svc = xlb_service6_of(t->daddr, t->dport, t->proto, cfg6 ? cfg6->node_addr : NULL, 1);
	if (!svc)
		return xlb_tc6_done(XLB_R_PASS_NOT_SERVICE, bytes, TC_ACT_OK);
	svc = xlb_service6_internal(svc, t->daddr, t->dport, t->proto);	/* a pod: inside */
	svc_id = svc->svc_id;
	xlb_count_svc(svc_id, bytes);
	r = xlb_choose6(svc, t, now, &ch, &event);
	if (event != XLB_OK)
		xlb_count(event, bytes);
	if (r == XLB_R_DROP_NO_BACKEND) {
		skb->cb[4] = svc_id;
		return XLB_TC6_REJECT;
	}
	if (r != XLB_OK)
		return xlb_tc6_end(skb, t, svc_id, r, bytes, TC_ACT_SHOT);
	if (xlb_ct6_create(t, &ch, svc_id, NULL, p->tcp_flags, now) != XLB_OK)
		xlb_count(XLB_R_EVENT_CT_FULL, bytes);
	return xlb_tc6_forward(skb, p, t, &ch, svc_id, bytes);
}

/* Sends the frame (reverse-NATed or translated already) back through the
 * tunnel it came by: VXLAN over IPv6 to the peer in skb->cb, out of the
 * uplink. */
static __noinline int xlb_tc6_tunnel(struct __sk_buff *skb, const struct xlb_config *cfg,
				     const struct xlb_config6 *cfg6, struct xlb_pkt6 *p)
{
	__be32 peer[4] = { skb->cb[0], skb->cb[1], skb->cb[2], skb->cb[3] };
	__u32 code = skb->cb[4];
	__u64 bytes = skb->len;

	if (!cfg6 || xlb_addr6_zero(cfg6->node_addr) ||
	    xlb_encap6_skb(skb, cfg, cfg6, peer, code >> 8, p))
		return xlb_tc6_done(XLB_R_DROP_ADJUST, bytes, TC_ACT_SHOT);
	xlb_count(code & 0xff, bytes);
	return bpf_redirect_neigh(cfg->ifindex, NULL, 0, 0);
}

/* xlb_tc for an IPv6 frame (the skb is linear: xlb_tc pulled it). */
static __always_inline int xlb_tc6_run(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct xlb_pkt6 p = {};
	struct xlb_config *cfg;
	struct xlb_config6 *cfg6;
	__u32 zero = 0;
	int r;

	r = xlb_parse6_pkt(data, data_end, &p);
	if (r != XLB_OK && r != XLB_R_PASS_FRAG_NO_FIRST && r != XLB_R_PASS_L4_OTHER)
		return xlb_tc6_done(r, skb->len, TC_ACT_OK);
	cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return xlb_tc6_done(XLB_R_PASS_NOT_SERVICE, skb->len, TC_ACT_OK);
	cfg6 = bpf_map_lookup_elem(&config6, &zero);
	if (r == XLB_R_PASS_L4_OTHER) {
		r = xlb_tc6_icmp(skb, cfg, &p);
		goto out;
	}
	/* a later fragment: its first fragment's ports, or untranslated */
	if (r == XLB_R_PASS_FRAG_NO_FIRST && !xlb_frag6_get(&p))
		return xlb_tc6_done(XLB_R_PASS_FRAG_NO_FIRST, skb->len, TC_ACT_OK);
	if (p.udp_nocsum)
		return xlb_tc6_done(XLB_R_PASS_UDP6_NO_CSUM, skb->len, TC_ACT_OK);
	r = xlb_tc6_known(skb, cfg, &p);
	if (r == XLB_TC6_NEXT)
		r = xlb_tc6_new(skb, cfg6, &p);
	if (r == XLB_TC6_REJECT)
		return xlb_tc6_reject(skb, cfg, &p, skb->cb[4]);
out:
	if (r == XLB_TC6_TUNNEL)
		return xlb_tc6_tunnel(skb, cfg, cfg6, &p);
	return r;
}

/* Before xlb_tc_egress pulls an IPv6 frame into the linear area for
 * xlb_tc6_egress: 0 when its headers, read in place, show it cannot match
 * (TCP or UDP right after the fixed header without a ct6 entry, or another
 * upper layer); extension headers go on to the full parse. */
static __always_inline int xlb_tc6_egress_maybe(struct __sk_buff *skb)
{
	struct ipv6hdr ip6;
	struct xlb_ct6_key t = {};
	__be16 ports[2];
	__u8 nh;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6)))
		return 0;
	nh = ip6.nexthdr;
	if (nh == XLB_NH_HOP || nh == XLB_NH_DEST || nh == XLB_NH_ROUTING || nh == XLB_NH_FRAGMENT)
		return 1;
	if ((nh != IPPROTO_TCP && nh != IPPROTO_UDP) ||
	    bpf_skb_load_bytes(skb, ETH_HLEN + sizeof(ip6), ports, sizeof(ports)))
		return 0;
	__builtin_memcpy(t.saddr, &ip6.saddr, 16);
	__builtin_memcpy(t.daddr, &ip6.daddr, 16);
	t.sport = ports[0];
	t.dport = ports[1];
	t.proto = nh;
	return bpf_map_lookup_elem(&ct6, &t) != NULL;
}

/* xlb_tc_egress for an IPv6 frame: the reply of a host-network endpoint of
 * this node (into a pod, or out of the uplink to a client XDP balanced to
 * it), reverse-NATed from its exact ct6 reverse entry (not a tunnel or
 * hairpin one: IPv6 has no tunnel return from here); everything else
 * untouched, uncounted. */
static __noinline int xlb_tc6_egress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u64 bytes = skb->len;
	struct xlb_pkt6 p = {};
	struct xlb_ct6_key t = {};
	struct xlb_config *cfg;
	struct xlb_ct6_val *v;
	__be32 old[4], nat_addr[4];
	__be16 nat_port;
	__u32 zero = 0;

	cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg || xlb_parse6_pkt(data, data_end, &p) != XLB_OK || !p.l4 || p.udp_nocsum)
		return TC_ACT_OK;
	xlb_addr6_copy(t.saddr, p.saddr);
	xlb_addr6_copy(t.daddr, p.daddr);
	t.sport = p.sport;
	t.dport = p.dport;
	t.proto = p.proto;
	v = bpf_map_lookup_elem(&ct6, &t);
	if (!v || (v->flags & (XLB_CT_F_REVERSE | XLB_CT_F_TUNNEL | XLB_CT_F_HAIRPIN)) !=
			  XLB_CT_F_REVERSE || xlb_addr6_zero(v->nat_addr) ||
	    !xlb_ct6_reverse_live(v, &t, cfg, p.tcp_flags, xlb_now()))
		return TC_ACT_OK;
	xlb_addr6_copy(nat_addr, v->nat_addr);
	nat_port = v->nat_port;
	xlb_count_svc(v->svc_id, bytes);
	xlb_addr6_copy(old, t.saddr);
	if (xlb_nat6_skb(skb, ETH_HLEN + p.l4_off, p.proto, XLB_NAT_SRC, old, nat_addr, t.sport,
			 nat_port))
		return xlb_tc6_done(XLB_R_DROP_ADJUST, bytes, TC_ACT_SHOT);
	return xlb_tc6_done(XLB_R_PASS_REVNAT, bytes, TC_ACT_OK);
}

#endif /* XLB_TC6_FLOW_H */
