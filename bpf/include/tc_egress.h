/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb_tc_egress (tc.bpf.c), IPv4: what the node itself sends out of the
 * uplink and into its pods' veths. It runs for every frame the node sends,
 * so a frame is read without pulling its data into the linear area, and
 * the node's own traffic stops at the backend filter: the only frames
 * translated here are replies of a host-network endpoint of this node (its
 * source is a backend's address), found by their exact ct reverse entry or
 * half-open slot (ctsyn.h):
 *
 *   - reverse entry with nat_addr, no tunnel: this node balanced the flow
 *     (a pod's, through xlb_tc; an uplink client's, through XDP) to a
 *     process in its own namespace -> reverse NAT, on its way;
 *   - XLB_CT_F_TUNNEL: another node balanced the flow and sent it here by
 *     tunnel (tunnel_peer) -> encapsulated back to that node, as xlb_tc
 *     returns a pod backend's reply: under tunnel NAT (XLB_CT_F_TNAT) reverse-
 *     NATed here and marked XLB_VXLAN_F_XLATED, else untranslated for that
 *     node to reverse-NAT. A frame that does not fit the uplink's MTU once
 *     encapsulated (and is not GSO, whose segments the encapsulation shrinks)
 *     is answered with ICMP fragmentation needed, delivered to this node's
 *     stack as if from the client (tx_frag_needed), so the sender lowers its
 *     path MTU and sends again. A frame bpf_skb_adjust_room does not take (UDP
 *     GSO) is a counted drop (drop_adjust).
 *
 * Hairpin entries, fragments and every other frame pass untouched and
 * uncounted.
 */
#ifndef XLB_TC_EGRESS_H
#define XLB_TC_EGRESS_H

#include "maps.h"
#include "parse.h"
#include "stats.h"
#include "clock.h"
#include "hash.h"
#include "filter.h"
#include "ct.h"
#include "ctsyn.h"
#include "nat.h"
#include "vxlan.h"
#include "icmp.h"

/* What the headers of an egress frame say (read with bpf_skb_load_bytes). */
struct xlb_egress {
	struct xlb_ct_key t;
	__u32 ihl_len;
	__u8 tcp_flags;		/* read once the frame may match */
};

/* The 5-tuple of an unfragmented IPv4 TCP/UDP frame whose lengths hold
 * together; 0 = not one. */
static __always_inline int xlb_egress_key(struct __sk_buff *skb, struct xlb_egress *e)
{
	struct iphdr ip;
	__be16 ports[2];

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)))
		return 0;
	if (ip.version != 4 || ip.ihl < 5 || (ip.frag_off & bpf_htons(XLB_IP_MF | XLB_IP_OFFSET)) ||
	    (ip.protocol != IPPROTO_TCP && ip.protocol != IPPROTO_UDP))
		return 0;
	e->ihl_len = ip.ihl * 4;
	/* the whole L4 header inside the IPv4 packet, the packet inside the frame */
	if (bpf_ntohs(ip.tot_len) < e->ihl_len + (ip.protocol == IPPROTO_TCP ? 20 : 8) ||
	    bpf_ntohs(ip.tot_len) > skb->len - ETH_HLEN)
		return 0;
	if (bpf_skb_load_bytes(skb, ETH_HLEN + e->ihl_len, ports, sizeof(ports)))
		return 0;
	e->t.saddr = ip.saddr;
	e->t.daddr = ip.daddr;
	e->t.sport = ports[0];
	e->t.dport = ports[1];
	e->t.proto = ip.protocol;
	return 1;
}

/* A reverse entry egress translates: not hairpin, with a NAT or a tunnel. */
static __always_inline int xlb_egress_entry(const struct xlb_ct_val *v)
{
	__u32 f = v->flags;

	return (f & (XLB_CT_F_REVERSE | XLB_CT_F_HAIRPIN)) == XLB_CT_F_REVERSE &&
	       (v->nat_addr || ((f & XLB_CT_F_TUNNEL) && v->tunnel_peer));
}

/*
 * A frame too big for the tunnel: ICMP fragmentation needed (next-hop MTU
 * mtu - XLB_ENCAP_LEN) quoting it untranslated, as the sender sent it, from
 * its destination to its source, into the uplink's ingress: this node's
 * stack takes it as an error from the path to the client.
 */
static __always_inline int xlb_egress_too_big(struct __sk_buff *skb, struct xlb_config *cfg,
					      const struct xlb_egress *e, __u32 mtu)
{
	struct xlb_pkt p = {
		.saddr = e->t.saddr, .daddr = e->t.daddr, .ihl_len = e->ihl_len & 0x3c,
	};
	__u32 ck = ETH_HLEN + sizeof(struct iphdr) + offsetof(struct xlb_icmphdr, checksum);
	__be16 next_hop = bpf_htons(mtu - XLB_ENCAP_LEN);
	__u8 hop[ETH_ALEN];
	__u64 bytes = skb->len;

	if (bpf_skb_load_bytes(skb, 0, hop, ETH_ALEN) ||
	    xlb_icmp_skb(skb, &p, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, cfg->mac, hop) ||
	    bpf_l4_csum_replace(skb, ck, 0, next_hop, sizeof(next_hop)) ||
	    bpf_skb_store_bytes(skb, ETH_HLEN + sizeof(struct iphdr) +
				offsetof(struct xlb_icmphdr, mtu), &next_hop, sizeof(next_hop), 0)) {
		xlb_count(XLB_R_DROP_ADJUST, bytes);
		return TC_ACT_SHOT;
	}
	xlb_count(XLB_R_TX_FRAG_NEEDED, bytes);
	return bpf_redirect(cfg->ifindex, BPF_F_INGRESS);
}

/* The reply e of reverse entry (or half-open slot) v: reverse NAT, and back
 * through the tunnel for a tunnel entry. */
static __always_inline int xlb_egress_reply(struct __sk_buff *skb, struct xlb_config *cfg,
					    const struct xlb_egress *e, const struct xlb_ct_val *v)
{
	__u32 flags = v->flags, svc_id = v->svc_id, mtu = cfg->mtu ? cfg->mtu : 1500;
	__be32 nat_addr = v->nat_addr, peer = (flags & XLB_CT_F_TUNNEL) ? v->tunnel_peer : 0;
	__be16 nat_port = v->nat_port;
	__u64 bytes = skb->len;

	if (peer && !skb->gso_size && bytes - ETH_HLEN + XLB_ENCAP_LEN > mtu)
		return xlb_egress_too_big(skb, cfg, e, mtu);
	if (nat_addr) {
		xlb_count_svc(svc_id, bytes);
		if (xlb_nat_skb(skb, ETH_HLEN, ETH_HLEN + e->ihl_len, e->t.proto, XLB_NAT_SRC,
				e->t.saddr, nat_addr, e->t.sport, nat_port)) {
			xlb_count(XLB_R_DROP_ADJUST, bytes);
			return TC_ACT_SHOT;
		}
	}
	if (!peer) {
		xlb_count(XLB_R_PASS_REVNAT, bytes);
		return TC_ACT_OK;
	}
	/* tunnel NAT: reverse-NATed above, marked as such for the peer */
	if (xlb_encap_skb(skb, cfg, peer, xlb_flow_hash(&e->t, 0), xlb_vx_reply_flags(flags))) {
		xlb_count(XLB_R_DROP_ADJUST, bytes);
		return TC_ACT_SHOT;
	}
	xlb_count(XLB_R_TX_TUNNEL_RETURN, bytes);
	return bpf_redirect_neigh(cfg->ifindex, NULL, 0, 0);
}

/* xlb_tc_egress for an IPv4 frame (the file comment says what it does). */
static __always_inline int xlb_tc_egress4(struct __sk_buff *skb, struct xlb_config *cfg)
{
	struct xlb_egress e = {};
	struct xlb_ct_val *v, sv;
	struct xlb_syn hs, *s;
	__u64 now;

	if (!xlb_egress_key(skb, &e) || !xlb_be_maybe(e.t.saddr))
		return TC_ACT_OK;
	if (e.t.proto == IPPROTO_TCP &&
	    bpf_skb_load_bytes(skb, ETH_HLEN + e.ihl_len + 13, &e.tcp_flags, 1))
		return TC_ACT_OK;
	v = bpf_map_lookup_elem(&ct, &e.t);
	if (v) {
		if (!(v->flags & XLB_CT_F_REVERSE))
			return TC_ACT_OK;
		now = xlb_now();
		/* a SYN-ACK or RST of a newer half-open flow (ctsyn.h) */
		if (xlb_syn_reply_newer(&e.t, v, cfg, e.tcp_flags, now, &sv))
			v = &sv;
		else if (!xlb_egress_entry(v) ||
			 !xlb_ct_reverse_live(v, &e.t, cfg, e.tcp_flags, now))
			return TC_ACT_OK;
	} else {
		/* a reply to a half-open connection (its SYN-ACK; ctsyn.h) */
		if (e.t.proto != IPPROTO_TCP || !(s = xlb_syn_rev(&e.t, &hs)) ||
		    !xlb_syn_reply(s, &hs, cfg, e.tcp_flags, xlb_now(), &sv))
			return TC_ACT_OK;
		v = &sv;
	}
	if (!xlb_egress_entry(v))
		return TC_ACT_OK;
	return xlb_egress_reply(skb, cfg, &e, v);
}

#endif /* XLB_TC_EGRESS_H */
