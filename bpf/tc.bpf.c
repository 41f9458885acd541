// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xlb tc programs (xlb_tc: ingress of a pod veth's host side = traffic leaving a pod;
 * xlb_tc_egress: egress of the uplink and of the pod veths, see the end).
 *
 *   1. ct hit, reverse entry: a reply of a local backend.
 *      - nat_addr set: this node chose the backend -> reverse NAT (source back
 *        to the frontend the client dialled);
 *      - XLB_CT_F_TUNNEL: the flow arrived by tunnel from tunnel_peer (the node
 *        that chose this backend) -> encapsulate back to that node and redirect
 *        to the uplink. Without nat_addr (that node holds the NAT pair) the
 *        reply goes untranslated and that node's XDP reverse-NATs it; with
 *        XLB_CT_F_TNAT (tunnel NAT: that node sent the frontend along, vxlan.h)
 *        it is reverse-NATed here and marked XLB_VXLAN_F_XLATED, and that
 *        node only decapsulates it. The client sees the frontend address.
 *   2. ct hit, forward entry with a live backend -> DNAT; ct miss: a half-open
 *      connection (ctsyn.h) -> its backend (the client's ACK promotes it into
 *      ct), or the backend's SYN-ACK -> reverse NAT as in 1.
 *   3. Service match for pod-originated traffic (ClusterIP, LoadBalancer,
 *      ExternalIP, NodePort on any cluster node's address: this node's
 *      local_addrs or another's remote_addrs) -> the choice XDP makes for a
 *      client inside the cluster (the cluster-wide set of an
 *      externalTrafficPolicy Local frontend) -> DNAT. A NodePort of another
 *      node is balanced here, at the source: the flow never visits that
 *      node, its replies come back to this one and are reverse-NATed here,
 *      so the pod sees the address it dialled (docs/dp.md, "NodePorts of
 *      other nodes").
 * After DNAT the frame goes to the stack (TC_ACT_OK) in both cases: a local
 * backend is routed to its pod, a remote one through the node's overlay device
 * (the kernel VXLAN device); the remote node's XDP then leaves it alone and the
 * reply comes back through the overlay to this node, whose XDP reverse-NATs it.
 * Services without endpoints: TCP is answered with a RST, UDP with an ICMP port
 * unreachable, sent back into the pod's veth (redirect to its egress).
 * Hairpin (a pod whose Service chose the pod itself): source rewritten to
 * XLB_HAIRPIN_ADDR and the frame sent straight back into the veth; the pod's
 * replies to that address are reverse-NATed (source := frontend, destination
 * := the pod) and sent back in the same way.
 * xlb_tc_egress (egress of the same veth and of the uplink): replies of
 * host-network endpoints of this node, which the stack sends straight into
 * the pod or out of the uplink (tc_egress.h): reverse NAT, and back through
 * the tunnel for a flow another node balanced here.
 * IPv6 frames go to xlb_tc6 (tail call) / xlb_tc6_egress (subprogram):
 * tc6.h, tc6_flow.h, the same rules over the IPv6 maps.
 */
#include <linux/pkt_cls.h>
#include "include/maps.h"
#include "include/parse.h"
#include "include/stats.h"
#include "include/clock.h"
#include "include/hash.h"
#include "include/lb.h"
#include "include/ct.h"
#include "include/ctsyn.h"
#include "include/nat.h"
#include "include/vxlan.h"
#include "include/icmp.h"
#include "include/frag.h"
#include "include/icmperr.h"
#include "include/tc6_flow.h"
#include "include/tc_egress.h"

/* IPv6 frames leave xlb_tc for xlb_tc6 (tc6_flow.h), a program of its own
 * reached by a tail call on the not-IPv4 exit: xlb_tc's IPv4 locals fill
 * its stack, so the IPv6 path cannot be a subprogram of it, and none of the
 * IPv6 code is in the IPv4 path. */
int xlb_tc6(struct __sk_buff *skb);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__array(values, int(struct __sk_buff *));
} tc6_progs SEC(".maps") = {
	.values = { [0] = (void *)&xlb_tc6 },
};

static __always_inline int xlb_tc_done(int reason, __u64 bytes, int verdict)
{
	xlb_count(reason, bytes);
	return verdict;
}

/* An IPv6 frame: on to xlb_tc6 (on failure, an empty slot: not IP). Only
 * the context lives across the call, so the IPv4 path around it keeps its
 * registers. */
static __always_inline int xlb_tc_ipv6(struct __sk_buff *skb)
{
	bpf_tail_call(skb, &tc6_progs, 0);
	return xlb_tc_done(XLB_R_PASS_NOT_IP, skb->len, TC_ACT_OK);
}

/* A frame's outcome where it may be a drop or an answer: its reason counter,
 * and an event for `xlb monitor` (only while a monitor is on). */
static __always_inline int xlb_tc_end(struct __sk_buff *skb, const struct xlb_ct_key *t,
				      __u32 svc_id, int reason, __u64 bytes, int verdict)
{
	struct xlb_monitor *m;

	if (xlb_event_reason(reason) && (m = xlb_monitor_on()))
		xlb_event(m, reason, t, svc_id, bytes, XLB_HOOK_TC, skb->ifindex, xlb_now());
	return xlb_tc_done(reason, bytes, verdict);
}

/* Swaps the Ethernet addresses: a frame sent back into the veth it came from. */
static __always_inline int xlb_tc_swap_macs(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u8 tmp[ETH_ALEN];

	if ((void *)(eth + 1) > data_end)
		return -1;
	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
	return 0;
}

static __always_inline int xlb_tc_reply(struct __sk_buff *skb, struct xlb_config *cfg,
					struct xlb_pkt *p, struct xlb_ct_val *v,
					const struct xlb_ct_key *t, __u64 bytes)
{
	__be32 nat_addr = v->nat_addr, peer = v->tunnel_peer;
	__be16 nat_port = v->nat_port;
	__u32 flags = v->flags;
	__u32 l4_off = p->l4 ? ETH_HLEN + p->ihl_len : 0, svc_id = v->svc_id;

	if (p->first_frag)
		xlb_frag_put(p, (void *)(long)skb->data_end);
	if (nat_addr) {
		xlb_count_svc(v->svc_id, bytes);
		if (xlb_nat_skb(skb, ETH_HLEN, l4_off, p->proto, XLB_NAT_SRC, p->saddr, nat_addr,
				p->sport, nat_port))
			return xlb_tc_end(skb, t, svc_id, XLB_R_DROP_ADJUST, bytes, TC_ACT_SHOT);
	}
	if ((flags & XLB_CT_F_HAIRPIN) && nat_addr) {
		/* The pod answering itself: back to its own address, into its veth. */
		if (xlb_nat_skb(skb, ETH_HLEN, l4_off, p->proto, XLB_NAT_DST, p->daddr, p->saddr,
				p->dport, p->dport) ||
		    xlb_tc_swap_macs(skb))
			return xlb_tc_end(skb, t, svc_id, XLB_R_DROP_ADJUST, bytes, TC_ACT_SHOT);
		xlb_count(XLB_R_PASS_REVNAT, bytes);
		return bpf_redirect(skb->ifindex, 0);
	}
	if ((flags & XLB_CT_F_TUNNEL) && peer) {
		/* tunnel NAT: reverse-NATed above, marked as such for the peer */
		if (xlb_encap_skb(skb, cfg, peer, xlb_flow_hash(t, 0),
				  xlb_vx_reply_flags(flags)))
			return xlb_tc_end(skb, t, svc_id, XLB_R_DROP_ADJUST, bytes, TC_ACT_SHOT);
		xlb_count(XLB_R_TX_TUNNEL_RETURN, bytes);
		return bpf_redirect_neigh(cfg->ifindex, NULL, 0, 0);
	}
	if (!nat_addr)
		return xlb_tc_done(XLB_R_PASS_NOT_SERVICE, bytes, TC_ACT_OK);
	return xlb_tc_done(XLB_R_PASS_REVNAT, bytes, TC_ACT_OK);
}

/*
 * A Service without endpoints, as kube-proxy rejects: TCP RST, UDP ICMP port
 * unreachable, sent back into the pod's veth.
 */
static __always_inline int xlb_tc_reject(struct __sk_buff *skb, struct xlb_config *cfg,
					 struct xlb_pkt *p, const struct xlb_ct_key *t,
					 __u32 svc_id, __u64 bytes)
{
	void *data, *data_end = (void *)(long)skb->data_end;
	struct xlb_rst_info ri = {};

	if (!(cfg->flags & XLB_CFG_F_REJECT))
		return xlb_tc_end(skb, t, svc_id, XLB_R_DROP_NO_BACKEND, bytes, TC_ACT_SHOT);
	if (p->proto == IPPROTO_UDP && p->l4) {
		if (xlb_icmp_skb(skb, p, ICMP_DEST_UNREACH, ICMP_PORT_UNREACH, p->eth->h_source,
				 p->eth->h_dest))
			return xlb_tc_end(skb, t, svc_id, XLB_R_DROP_ADJUST, bytes, TC_ACT_SHOT);
		xlb_tc_end(skb, t, svc_id, XLB_R_TX_REJECT, bytes, 0);
		return bpf_redirect(skb->ifindex, 0);
	}
	if (p->proto != IPPROTO_TCP || !p->l4 || !xlb_rst_info(p, data_end, &ri) || ri.rst)
		return xlb_tc_end(skb, t, svc_id, XLB_R_DROP_NO_BACKEND, bytes, TC_ACT_SHOT);
	__builtin_memcpy(ri.mac_to, p->eth->h_source, ETH_ALEN);
	__builtin_memcpy(ri.mac_from, p->eth->h_dest, ETH_ALEN);
	if (bpf_skb_change_tail(skb, XLB_RST_LEN, 0) || bpf_skb_pull_data(skb, XLB_RST_LEN))
		return xlb_tc_end(skb, t, svc_id, XLB_R_DROP_ADJUST, bytes, TC_ACT_SHOT);
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	if (!xlb_rst_write(data, data_end, &ri))
		return xlb_tc_end(skb, t, svc_id, XLB_R_DROP_ADJUST, bytes, TC_ACT_SHOT);
	xlb_tc_end(skb, t, svc_id, XLB_R_TX_REJECT, bytes, 0);
	/* out of the same veth, towards the pod */
	return bpf_redirect(skb->ifindex, 0);
}

static __always_inline int xlb_tc_forward(struct __sk_buff *skb, struct xlb_pkt *p,
					  const struct xlb_ct_key *t, struct xlb_choice *ch,
					  __u32 svc_id, __u64 bytes)
{
	__u32 l4_off = p->l4 ? ETH_HLEN + p->ihl_len : 0;

	if (p->first_frag)
		xlb_frag_put(p, (void *)(long)skb->data_end);
	if (xlb_nat_skb(skb, ETH_HLEN, l4_off, p->proto, XLB_NAT_DST, p->daddr, ch->addr, p->dport,
			ch->port))
		return xlb_tc_end(skb, t, svc_id, XLB_R_DROP_ADJUST, bytes, TC_ACT_SHOT);
	if (xlb_hairpin(t, ch)) {
		/* Hairpin: the pod reached itself through a Service. From the
		 * hairpin address, straight back into its veth (its replies come
		 * out again and xlb_tc_reply turns them around). */
		if (xlb_nat_skb(skb, ETH_HLEN, l4_off, p->proto, XLB_NAT_SRC, p->saddr,
				bpf_htonl(XLB_HAIRPIN_ADDR), p->sport, p->sport) ||
		    xlb_tc_swap_macs(skb))
			return xlb_tc_end(skb, t, svc_id, XLB_R_DROP_ADJUST, bytes, TC_ACT_SHOT);
		xlb_count(XLB_R_PASS_LOCAL, bytes);
		xlb_count_backend(ch->backend_id, bytes);
		return bpf_redirect(skb->ifindex, 0);
	}
	xlb_count_backend(ch->backend_id, bytes);
	return xlb_tc_done(ch->node ? XLB_R_TX_REMOTE : XLB_R_PASS_LOCAL, bytes, TC_ACT_OK);
}

/*
 * An ICMP error a pod sends about a balanced flow (icmperr.h): a backend's
 * error about its client's packet is translated toward the client (or sent
 * back untranslated through the tunnel it came by, whose node translates
 * it); a client pod's error about a reply is translated toward the backend.
 * The stack routes the result.
 */
static __always_inline int xlb_tc_icmp(struct __sk_buff *skb, struct xlb_config *cfg,
				       struct xlb_pkt *p, __u64 bytes)
{
	void *data_end = (void *)(long)skb->data_end;
	struct xlb_icmp_err e;
	struct xlb_choice ch = {};
	struct xlb_ct_val *v, sv;
	__be32 nat_addr, peer;
	__u32 flags;

	if (!xlb_icmp_err_parse(p, data_end, &e))
		return xlb_tc_done(XLB_R_PASS_L4_OTHER, bytes, TC_ACT_OK);
	v = bpf_map_lookup_elem(&ct, &e.flow);
	if (!v) {
		/* about a half-open connection (ctsyn.h) */
		if (!xlb_syn_view(&e.flow, &sv))
			return xlb_tc_done(XLB_R_PASS_L4_OTHER, bytes, TC_ACT_OK);
		v = &sv;
	}
	flags = v->flags;
	if (flags & XLB_CT_F_REVERSE) {
		nat_addr = v->nat_addr;
		peer = (flags & XLB_CT_F_TUNNEL) ? v->tunnel_peer : 0;
		if ((!nat_addr && !peer) || (flags & XLB_CT_F_HAIRPIN))
			return xlb_tc_done(XLB_R_PASS_L4_OTHER, bytes, TC_ACT_OK);
		if (nat_addr) {
			xlb_count_svc(v->svc_id, bytes);
			xlb_icmp_err_nat(p, &e, XLB_NAT_DST, nat_addr, v->nat_port);
		}
		if (peer) {
			if (xlb_encap_skb(skb, cfg, peer, xlb_flow_hash(&e.flow, 0),
					  xlb_vx_reply_flags(flags)))
				return xlb_tc_done(XLB_R_DROP_ADJUST, bytes, TC_ACT_SHOT);
			xlb_count(XLB_R_TX_ICMP_RELATED, bytes);
			return bpf_redirect_neigh(cfg->ifindex, NULL, 0, 0);
		}
		return xlb_tc_done(XLB_R_PASS_ICMP_RELATED, bytes, TC_ACT_OK);
	}
	if (!xlb_ct_live_backend(v, cfg, e.flow.proto, xlb_now(), &ch))
		return xlb_tc_done(XLB_R_PASS_L4_OTHER, bytes, TC_ACT_OK);
	xlb_count_svc(v->svc_id, bytes);
	xlb_icmp_err_nat(p, &e, XLB_NAT_SRC, ch.addr, ch.port);
	return xlb_tc_done(XLB_R_PASS_ICMP_RELATED, bytes, TC_ACT_OK);
}

SEC("tc")
int xlb_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u64 bytes = skb->len;
	struct xlb_pkt p = {};
	struct xlb_ct_key t = {};
	struct xlb_choice ch = {};
	struct xlb_config *cfg;
	struct xlb_svc_val *svc;
	struct xlb_ct_val *v, *rv, sv;
	struct xlb_syn hs, *s;
	__u32 svc_id, zero = 0;
	__u64 now = 0;
	int r, event = XLB_OK;

	/* xlb_parse checks the IPv4 total length against data_end, so the whole
	 * packet must be linear: a pod's TCP data arrives with its payload in
	 * page frags (replies with data would not be reverse-NATed). */
	if (skb->len > data_end - data) {
		bpf_skb_pull_data(skb, skb->len);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
	}
	r = xlb_parse(data, data_end, &p);
	if (r != XLB_OK && r != XLB_R_PASS_FRAG_NO_FIRST && r != XLB_R_PASS_L4_OTHER) {
		if (r == XLB_R_PASS_NOT_IP && p.eth->h_proto == bpf_htons(ETH_P_IPV6))
			return xlb_tc_ipv6(skb);
		return xlb_tc_done(r, bytes, TC_ACT_OK);
	}
	cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return xlb_tc_done(XLB_R_PASS_NOT_SERVICE, bytes, TC_ACT_OK);
	if (r == XLB_R_PASS_L4_OTHER)
		return xlb_tc_icmp(skb, cfg, &p, bytes);
	/* a later fragment: its first fragment's ports, or untranslated (frag.h) */
	if (r == XLB_R_PASS_FRAG_NO_FIRST && !xlb_frag_get(&p, data_end))
		return xlb_tc_done(XLB_R_PASS_FRAG_NO_FIRST, bytes, TC_ACT_OK);
	t.saddr = p.saddr;
	t.daddr = p.daddr;
	t.sport = p.sport;
	t.dport = p.dport;
	t.proto = p.proto;

	v = bpf_map_lookup_elem(&ct, &t);
	if (v) {
		now = xlb_now();
		if (v->flags & XLB_CT_F_REVERSE) {
			/* a SYN-ACK or RST of a newer half-open flow (ctsyn.h) */
			rv = v;
			if (xlb_syn_reply_newer(&t, v, cfg, p.tcp_flags, now, &sv))
				rv = &sv;
			if (rv == &sv || xlb_ct_reverse_live(v, &t, cfg, p.tcp_flags, now))
				goto reply;
		} else if ((r = xlb_ct_backend(v, cfg, t.proto, p.tcp_flags, now, &ch))) {
			xlb_count_svc(v->svc_id, bytes);
			if (r & XLB_CT_CHECK)
				xlb_ct_reverse_keep(&t, &ch, v, now);
			if (xlb_tcp_open(p.tcp_flags))
				xlb_syn_end_flow(&t, &ch);	/* the newest flow of its ports */
			if (r & XLB_CT_SYNC)
				xlb_ct_sync_reverse(&t, &ch, v->flags & XLB_CT_F_CLOSING);
			svc_id = v->svc_id;
			goto forward;
		}
	} else if (t.proto == IPPROTO_TCP && (s = xlb_syn_fwd(&t, &hs))) {
		/* the client of a half-open connection: a retransmitted SYN, or
		 * its ACK, which promotes the flow into ct (ctsyn.h) */
		now = xlb_now();
		r = xlb_syn_backend(s, &hs, cfg, p.tcp_flags, now, &ch);
		if (r) {
			xlb_count_svc(hs.svc_id, bytes);
			if (r == XLB_SYN_PROMOTE) {
				if (xlb_ct_create(&t, &ch, hs.svc_id, 0, 0, p.tcp_flags, now) != XLB_OK)
					xlb_count(XLB_R_EVENT_CT_FULL, bytes);
				xlb_syn_end(s, &hs);
			}
			svc_id = hs.svc_id;
			goto forward;
		}
	}
	svc = xlb_service_of(t.daddr, t.dport, t.proto, cfg->node_addr, 1);
	if (!svc) {
		/* a local backend's reply to a half-open connection (its SYN-ACK) */
		if (t.proto == IPPROTO_TCP && (s = xlb_syn_rev(&t, &hs)) &&
		    xlb_syn_reply(s, &hs, cfg, p.tcp_flags, now ? now : xlb_now(), &sv)) {
			rv = &sv;
			goto reply;
		}
		return xlb_tc_done(XLB_R_PASS_NOT_SERVICE, bytes, TC_ACT_OK);
	}
	svc = xlb_service_internal(svc, t.daddr, t.dport, t.proto);	/* a pod: inside the cluster */
	if (!now)
		now = xlb_now();
	xlb_count_svc(svc->svc_id, bytes);
	r = xlb_choose(svc, &t, now, &ch, &event);
	if (event != XLB_OK)
		xlb_count(event, bytes);
	if (r == XLB_R_DROP_NO_BACKEND)
		return xlb_tc_reject(skb, cfg, &p, &t, svc->svc_id, bytes);
	if (r != XLB_OK)
		return xlb_tc_end(skb, &t, svc->svc_id, r, bytes, TC_ACT_SHOT);
	/* A new connection's SYN: half-open, one ct_syn slot (ctsyn.h) */
	if (!v && t.proto == IPPROTO_TCP && xlb_tcp_open(p.tcp_flags) && !xlb_hairpin(&t, &ch)) {
		xlb_syn_create(&t, &ch, svc->svc_id, 0, now);
	} else {
		if (xlb_ct_create(&t, &ch, svc->svc_id, 0, 0, p.tcp_flags, now) != XLB_OK)
			xlb_count(XLB_R_EVENT_CT_FULL, bytes);
		xlb_syn_end_flow(&t, &ch);
	}
	svc_id = svc->svc_id;
	/* (one call site each: both are inlined) */
forward:
	return xlb_tc_forward(skb, &p, &t, &ch, svc_id, bytes);
reply:
	return xlb_tc_reply(skb, cfg, &p, rv, &t, bytes);
}

SEC("tc")
int xlb_tc6(struct __sk_buff *skb)
{
	return xlb_tc6_run(skb);
}

/*
 * Egress of the uplink and of each pod veth's host side: what the node's own
 * stack sends, where replies of its host-network endpoints are translated
 * (tc_egress.h; IPv6: tc6_flow.h). The node's other traffic passes untouched
 * and uncounted, its data never pulled into the linear area.
 */
SEC("tc")
int xlb_tc_egress(struct __sk_buff *skb)
{
	struct xlb_config *cfg;
	__u32 zero = 0;

	cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return TC_ACT_OK;
	if (skb->protocol == bpf_htons(ETH_P_IP))
		return xlb_tc_egress4(skb, cfg);
	if (skb->protocol != bpf_htons(ETH_P_IPV6) || !xlb_tc6_egress_maybe(skb))
		return TC_ACT_OK;
	if (skb->len > (long)skb->data_end - (long)skb->data)
		bpf_skb_pull_data(skb, skb->len);
	return xlb_tc6_egress(skb);	/* tc6_flow.h */
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
