/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: the pod-veth tc path for IPv6 (tc.bpf.c's xlb_tc for IPv6 frames,
 * reached only through the ethertype: the IPv4 path runs the instructions it
 * ran before). The same rules over the IPv6 maps (docs/ipv6.md):
 *
 *   1. ct6 reverse entry (a reply of a local backend): source back to the
 *      frontend (nat_addr); a hairpin reply also gets its destination back
 *      (the pod itself) and goes straight back into the veth; a flow that
 *      arrived by tunnel (XLB_CT_F_TUNNEL) goes back to tunnel_peer in VXLAN
 *      over IPv6, untranslated, redirected to the uplink.
 *   2. ct6 forward entry with a live backend -> DNAT.
 *   3. A Service of pod traffic (services6: ClusterIP, LoadBalancer,
 *      ExternalIP; NodePort on this node's IPv6 addresses or another's,
 *      remote_addrs6) -> lb6.h's choice for a client inside the cluster ->
 *      ct6 entries (a SYN writes both: no IPv6 half-open table) -> DNAT.
 *      After DNAT the frame goes to the stack: a local backend is routed to
 *      its pod, a remote one through the overlay (flannel-v6 device).
 *   No endpoints: TCP RST / ICMPv6 port unreachable back into the veth.
 *   Hairpin (the pod chosen for its own flow): source := ct6.h's hairpin
 *   address (xlb_hairpin6_addr), straight back into the veth; its replies
 *   to that address come out again and are turned around from ct6.
 *   ICMPv6 errors quoting a balanced flow are translated (icmperr6.h);
 *   informational ICMPv6 (echo, neighbour discovery) passes untouched.
 *
 * Rewrites go through bpf_l4_csum_replace with BPF_F_PSEUDO_HDR (pod traffic
 * is usually CHECKSUM_PARTIAL); UDP with checksum 0 (invalid over IPv6) is
 * never translated, and BPF_F_MARK_MANGLED_0 writes a computed 0 as 0xffff.
 */
#ifndef XLB_TC6_H
#define XLB_TC6_H

#include <linux/pkt_cls.h>
#include <stddef.h>
#include "maps.h"
#include "parse6.h"
#include "stats6.h"
#include "clock.h"
#include "lb6.h"
#include "ct6.h"
#include "nat.h"
#include "csum6.h"
#include "icmp6.h"
#include "icmperr6.h"
#include "frag6.h"
#include "vxlan6.h"

/* Extension header bytes the outer checksum of an encapsulation sums */
#define XLB_TC6_EXT_SUM_MAX	64

static __always_inline int xlb_tc6_done(int reason, __u64 bytes, int verdict)
{
	xlb_count(reason, bytes);
	return verdict;
}

static __always_inline int xlb_tc6_end(struct __sk_buff *skb, const struct xlb_ct6_key *t,
				       __u32 svc_id, int reason, __u64 bytes, int verdict)
{
	struct xlb_monitor *m;

	if (xlb_event_reason(reason) && (m = xlb_monitor_on()))
		xlb_event6(m, reason, t, svc_id, bytes, XLB_HOOK_TC, skb->ifindex, xlb_now());
	return xlb_tc6_done(reason, bytes, verdict);
}

/*
 * Rewrites the IPv6 source or destination (dir) old -> addr and, with an L4
 * header at l4_off (0: a non-first fragment, the address only), its port
 * old_port -> port, keeping the L4 checksum right (its pseudo header covers
 * the addresses). old and addr are copies, not packet pointers.
 */
static __always_inline int xlb_nat6_skb(struct __sk_buff *skb, __u32 l4_off, __u8 proto, int dir,
					const __be32 *old, const __be32 *addr, __be16 old_port,
					__be16 port)
{
	__u32 addr_off = ETH_HLEN + (dir == XLB_NAT_DST ? offsetof(struct ipv6hdr, daddr) :
							   offsetof(struct ipv6hdr, saddr));
	__u32 port_off = l4_off + (dir == XLB_NAT_DST ? 2 : 0);
	__u32 sum_off = l4_off + (proto == IPPROTO_TCP ? offsetof(struct tcphdr, check) :
							 offsetof(struct udphdr, check));
	__u64 mangled = proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	__be32 a[4];

	xlb_addr6_copy(a, addr);
	if (l4_off) {
#pragma unroll
		for (int i = 0; i < 4; i++)
			if (old[i] != a[i] &&
			    bpf_l4_csum_replace(skb, sum_off, old[i], a[i],
						mangled | BPF_F_PSEUDO_HDR | sizeof(__be32)))
				return -1;
		if (old_port != port &&
		    bpf_l4_csum_replace(skb, sum_off, old_port, port, mangled | sizeof(port)))
			return -1;
	}
	if (bpf_skb_store_bytes(skb, addr_off, a, sizeof(a), 0))
		return -1;
	if (l4_off && bpf_skb_store_bytes(skb, port_off, &port, sizeof(port), 0))
		return -1;
	return 0;
}

static __always_inline int xlb_tc6_swap_macs(struct __sk_buff *skb)
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

/* The folded (not complemented) sum of seed and the skb's bytes from
 * offset `off` to its end (linear: pulled). A global subprogram: verified
 * once, not at every caller. */
__noinline int xlb_tc6_sum(struct __sk_buff *skb, __u32 off, __u32 seed)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	void *from = data + (off & 0xff);
	__u32 s;

	if (from > data_end)
		return 0;
	s = xlb_sum_to_end(seed & 0xffff, from, data_end) + (seed >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (int)s;
}

/*
 * Encapsulates the frame (p: it, as parsed) in VXLAN over IPv6 to peer (from
 * config6's node address), for the uplink (bpf_redirect_neigh finds the
 * outer MACs). The outer UDP checksum is computed without reading the
 * payload (as Linux's local checksum offload, lco_csum): the inner L4
 * bytes, their checksum included (or to be completed by the offload that
 * CHECKSUM_PARTIAL defers), sum to the complement of the inner pseudo
 * header. So only the headers are summed. A fragment (no whole L4 segment)
 * is summed in full. A GSO frame (split later, each segment with its own
 * outer length), or a fragment longer than csum6.h sums, carries 0, which xlb's XDP on the peer accepts: it is the
 * only receiver of tunnel returns, which answer flows its XDP sent here.
 */
static __always_inline int xlb_encap6_skb(struct __sk_buff *skb, const struct xlb_config *cfg,
					  const struct xlb_config6 *cfg6, const __be32 *peer,
					  __u32 hash, const struct xlb_pkt6 *p)
{
	struct {
		struct ipv6hdr ip6;
		struct udphdr udp;
		struct xlb_vxlanhdr vx;
		struct ethhdr eth;
	} h;	/* naturally aligned: 70 bytes + tail padding */
	__u64 flags = BPF_F_ADJ_ROOM_ENCAP_L3_IPV6 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP |
		      BPF_F_ADJ_ROOM_ENCAP_L2_ETH | BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN);
	__u64 ext = p->l4_off - sizeof(struct ipv6hdr);
	__u32 ulen, s, l4_len = p->l3_len - p->l4_off;
	void *data, *data_end;
	struct ipv6hdr *in6;
	struct udphdr *uh;
	__u8 proto = p->proto;
	__u16 sum;

	_Static_assert(offsetof(typeof(h), eth) + sizeof(h.eth) == XLB_ENCAP6_LEN, "outer headers");
	/* bytes after the IPv6 packet (padding) do not travel */
	if (skb->len > ETH_HLEN + p->l3_len && bpf_skb_change_tail(skb, ETH_HLEN + p->l3_len, 0))
		return -1;
	__builtin_memset(&h, 0, sizeof(h));
	if (bpf_skb_load_bytes(skb, 0, &h.eth, sizeof(h.eth)))
		return -1;
	if (bpf_skb_adjust_room(skb, XLB_ENCAP6_LEN, BPF_ADJ_ROOM_MAC, flags))
		return -1;
	ulen = skb->len - ETH_HLEN - sizeof(struct ipv6hdr);
	xlb_mac_copy(h.eth.h_source, cfg->mac);
	*(__be32 *)&h.ip6 = bpf_htonl(0x60000000);
	h.ip6.payload_len = bpf_htons(ulen);
	h.ip6.nexthdr = IPPROTO_UDP;
	h.ip6.hop_limit = XLB_TTL;
	xlb_addr6_copy((__be32 *)&h.ip6.saddr, cfg6->node_addr);
	xlb_addr6_copy((__be32 *)&h.ip6.daddr, peer);
	/* Source port from the flow hash (ECMP entropy), in 49152..65535. */
	h.udp.source = bpf_htons(0xc000 | (hash & 0x3fff));
	h.udp.dest = cfg->vxlan_port;
	h.udp.len = bpf_htons(ulen);
	h.vx.flags = bpf_htonl(XLB_VXLAN_F_I);
	h.vx.vni = bpf_htonl((cfg->vni & 0xffffff) << 8);
	if (bpf_skb_store_bytes(skb, ETH_HLEN, &h, XLB_ENCAP6_LEN, 0))
		return -1;
	if (skb->gso_size)
		return 0;
	if (p->frag || p->first_frag || ext > XLB_TC6_EXT_SUM_MAX) {
		/* the whole datagram (a fragment: no L4 checksum covers it) */
		if (ulen > XLB_SUM_CHUNK * XLB_SUM_CHUNKS)
			return 0;	/* beyond what csum6.h sums (jumbo frames) */
		if (bpf_skb_pull_data(skb, skb->len))
			return -1;
		s = xlb_pseudo6_sum(cfg6->node_addr, peer, ulen, IPPROTO_UDP);
		s = xlb_tc6_sum(skb, ETH_HLEN + sizeof(struct ipv6hdr), s);
		sum = xlb_csum_fold(s);
		goto write;
	}
	if (bpf_skb_pull_data(skb, ETH_HLEN + XLB_ENCAP6_LEN + p->l4_off))
		return -1;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	uh = data + ETH_HLEN + sizeof(struct ipv6hdr);
	in6 = (void *)uh + XLB_ENCAP6_LEN - sizeof(struct ipv6hdr);
	if ((void *)(in6 + 1) > data_end)
		return -1;
	s = xlb_pseudo6_sum(cfg6->node_addr, peer, ulen, IPPROTO_UDP);
	/* outer UDP (checksum 0) + VXLAN + inner Ethernet + the inner IPv6
	 * header but its last 2 bytes: 68 bytes, whole words */
	s = xlb_csum_add32(s, (__u32)bpf_csum_diff(NULL, 0, (__be32 *)uh, 68, 0));
	s += *(__u16 *)((void *)in6 + sizeof(*in6) - 2);
#pragma unroll
	for (int i = 0; i < XLB_TC6_EXT_SUM_MAX / 8; i++) {
		__u32 *w = (void *)(in6 + 1) + i * 8;

		if (i * 8 >= ext)
			break;
		if ((void *)(w + 2) > data_end)
			return -1;
		s = xlb_csum_add32(s, w[0]);
		s = xlb_csum_add32(s, w[1]);
	}
	s += xlb_csum_fold(xlb_pseudo6_sum((__be32 *)&in6->saddr, (__be32 *)&in6->daddr, l4_len,
					   proto));
	sum = xlb_csum_fold(s);
write:
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	uh = data + ETH_HLEN + sizeof(struct ipv6hdr);
	if ((void *)(uh + 1) > data_end)
		return -1;
	uh->check = sum ? sum : 0xffff;
	return 0;
}

/* The Ethernet header and L4 header of parsed frame p, found again from
 * skb->data (p's packet pointers may be stale). 0 when cut. */
static __always_inline int xlb_tc6_hdrs(struct __sk_buff *skb, const struct xlb_pkt6 *p,
					struct ethhdr **eth, void **l4, __u32 l4_len)
{
	void *data = (void *)(long)skb->data, *data_end = (void *)(long)skb->data_end;

	*eth = data;
	*l4 = data + ETH_HLEN + (p->l4_off & XLB_L4_OFF6_MASK);
	return (void *)(*eth + 1) <= data_end && *l4 + l4_len <= data_end;
}

/* TCP RST for the segment in p, into the pod's veth (xlb_rst6_xdp's answer). */
static __always_inline int xlb_rst6_skb(struct __sk_buff *skb, struct xlb_pkt6 *p)
{
	void *data, *data_end;
	struct tcphdr *th;
	struct xlb_rst6_info ri = {};
	__u8 to[ETH_ALEN], from[ETH_ALEN];
	struct ethhdr *eth;
	struct ipv6hdr *ip6;
	__u32 *w, s;

	if (!xlb_tc6_hdrs(skb, p, &eth, (void **)&th, sizeof(*th)) || th->rst)
		return 1;
	__builtin_memcpy(to, eth->h_source, ETH_ALEN);
	__builtin_memcpy(from, eth->h_dest, ETH_ALEN);
	xlb_addr6_copy(ri.saddr, p->saddr);
	xlb_addr6_copy(ri.daddr, p->daddr);
	ri.sport = p->sport;
	ri.dport = p->dport;
	ri.seq = th->seq;
	ri.ack_seq = th->ack_seq;
	ri.seglen = p->l3_len - p->l4_off - th->doff * 4 + th->syn + th->fin;
	ri.has_ack = th->ack;
	if (bpf_skb_change_tail(skb, XLB_RST6_LEN, 0) || bpf_skb_pull_data(skb, XLB_RST6_LEN))
		return -1;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	eth = data;
	ip6 = (void *)(eth + 1);
	th = (void *)(ip6 + 1);
	if ((void *)(th + 1) > data_end)
		return -1;
	xlb_answer6_l2l3(eth, ip6, to, from, ri.daddr, ri.saddr, IPPROTO_TCP,
			 sizeof(struct tcphdr));
	__builtin_memset(th, 0, sizeof(*th));
	th->source = ri.dport;
	th->dest = ri.sport;
	th->doff = 5;
	th->rst = 1;
	if (ri.has_ack) {
		th->seq = ri.ack_seq;
	} else {
		th->ack = 1;
		th->ack_seq = bpf_htonl(bpf_ntohl(ri.seq) + ri.seglen);
	}
	s = xlb_pseudo6_sum(ri.daddr, ri.saddr, sizeof(struct tcphdr), IPPROTO_TCP);
	w = (__u32 *)th;
#pragma unroll
	for (int i = 0; i < 5; i++)
		s = xlb_csum_add32(s, w[i]);
	th->check = xlb_csum_fold(s);
	return 0;
}

/* ICMPv6 destination unreachable / port unreachable quoting p's IPv6
 * packet (at most XLB_ICMP6_QUOTE_MAX bytes: the answer fits the minimum
 * IPv6 MTU, RFC 4443 2.4(c)), into the pod's veth (xlb_icmp6_xdp's answer). */
static __always_inline int xlb_unreach6_skb(struct __sk_buff *skb, struct xlb_pkt6 *p)
{
	__u32 quote = p->l3_len < XLB_ICMP6_QUOTE_MAX ? p->l3_len : XLB_ICMP6_QUOTE_MAX;
	__u8 to[ETH_ALEN], from[ETH_ALEN];
	__be32 saddr[4], daddr[4];
	void *data, *data_end, *l4;
	struct ethhdr *eth;
	struct ipv6hdr *ip6;
	__u32 len, s;
	__u8 *ih;

	if (!xlb_tc6_hdrs(skb, p, &eth, &l4, sizeof(struct udphdr)))
		return 1;
	__builtin_memcpy(to, eth->h_source, ETH_ALEN);
	__builtin_memcpy(from, eth->h_dest, ETH_ALEN);
	xlb_addr6_copy(saddr, p->saddr);
	xlb_addr6_copy(daddr, p->daddr);
	if (bpf_skb_adjust_room(skb, XLB_ICMP6_HDRS, BPF_ADJ_ROOM_MAC, 0))
		return -1;
	len = ETH_HLEN + XLB_ICMP6_HDRS + quote;
	if (bpf_skb_change_tail(skb, len, 0) || bpf_skb_pull_data(skb, len))
		return -1;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	eth = data;
	ip6 = (void *)(eth + 1);
	ih = (void *)(ip6 + 1);
	if ((void *)(ih + 8) > data_end)
		return -1;
	xlb_answer6_l2l3(eth, ip6, to, from, daddr, saddr, XLB_NH_ICMP6,
			 XLB_ICMP6_HDRS - sizeof(struct ipv6hdr) + quote);
	ih[0] = ICMP6_DST_UNREACH;
	ih[1] = ICMP6_PORT_UNREACH;
	*(__u16 *)(ih + 2) = 0;
	*(__u32 *)(ih + 4) = 0;
	s = xlb_pseudo6_sum(daddr, saddr, 8 + quote, XLB_NH_ICMP6);
	s = xlb_sum_to_end(s, ih, data_end);
	asm volatile("" : "+r"(ih));
	if ((void *)(ih + 8) > data_end)
		return -1;
	*(__u16 *)(ih + 2) = xlb_csum_fold(s);
	return 0;
}

/* A Service without endpoints, as kube-proxy rejects (tc.bpf.c's
 * xlb_tc_reject for IPv6). A subprogram: its buffers stay off xlb_tc6's
 * stack. */
static __noinline int xlb_tc6_reject(struct __sk_buff *skb, const struct xlb_config *cfg,
				     struct xlb_pkt6 *p, __u32 svc_id)
{
	struct xlb_ct6_key tk = {}, *t = &tk;
	__u64 bytes = skb->len;
	int r;

	xlb_addr6_copy(t->saddr, p->saddr);
	xlb_addr6_copy(t->daddr, p->daddr);
	t->sport = p->sport;
	t->dport = p->dport;
	t->proto = p->proto;

	if (!(cfg->flags & XLB_CFG_F_REJECT) || p->frag)
		return xlb_tc6_end(skb, t, svc_id, XLB_R_DROP_NO_BACKEND, bytes, TC_ACT_SHOT);
	r = p->proto == IPPROTO_UDP ? xlb_unreach6_skb(skb, p) : xlb_rst6_skb(skb, p);
	if (r > 0)
		return xlb_tc6_end(skb, t, svc_id, XLB_R_DROP_NO_BACKEND, bytes, TC_ACT_SHOT);
	if (r < 0)
		return xlb_tc6_end(skb, t, svc_id, XLB_R_DROP_ADJUST, bytes, TC_ACT_SHOT);
	xlb_tc6_end(skb, t, svc_id, XLB_R_TX_REJECT, bytes, 0);
	return bpf_redirect(skb->ifindex, 0);
}

#endif /* XLB_TC6_H */
