/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: address + port rewriting with incremental checksums.
 *   XDP: direct writes, RFC 1624 updates (csum.h).
 *   tc:  bpf_l3/l4_csum_replace, which also keep CHECKSUM_PARTIAL / COMPLETE
 *        skbs (pod traffic is usually offloaded) right.
 * A UDP checksum of 0 (none) stays 0; a computed 0 becomes 0xffff.
 * A non-first fragment (no L4 header: p->l4 NULL, l4_off 0) gets its address
 * rewritten only: its datagram's ports and L4 checksum are in the first
 * fragment, which got the same translation (frag.h).
 */
#ifndef XLB_NAT_H
#define XLB_NAT_H

#include <linux/pkt_cls.h>
#include <stddef.h>
#include "parse.h"
#include "csum.h"

#define XLB_NAT_SRC	0
#define XLB_NAT_DST	1

static __always_inline void xlb_nat_xdp(struct xlb_pkt *p, int dir, __be32 addr, __be16 port)
{
	struct iphdr *ip = p->ip;
	__be32 old_addr = dir == XLB_NAT_DST ? ip->daddr : ip->saddr;
	__be16 old_port = dir == XLB_NAT_DST ? p->dport : p->sport;
	__sum16 *l4sum = p->l4sum;

	xlb_csum_replace4(&ip->check, old_addr, addr);
	if (dir == XLB_NAT_DST)
		ip->daddr = addr;
	else
		ip->saddr = addr;
	if (!p->l4 || !l4sum) {
		if (dir == XLB_NAT_DST)
			p->daddr = addr;
		else
			p->saddr = addr;
		return;
	}
	if (p->proto == IPPROTO_TCP || *l4sum) {
		xlb_csum_replace4(l4sum, old_addr, addr);
		xlb_csum_replace2(l4sum, old_port, port);
		if (p->proto == IPPROTO_UDP && !*l4sum)
			*l4sum = 0xffff;
	}
	if (dir == XLB_NAT_DST) {
		((struct udphdr *)p->l4)->dest = port;
		p->daddr = addr;
		p->dport = port;
	} else {
		((struct udphdr *)p->l4)->source = port;
		p->saddr = addr;
		p->sport = port;
	}
}

/* l3_off / l4_off: offsets of the IPv4 and L4 headers in the skb (l4_off 0:
 * a non-first fragment, the address only). */
static __always_inline int xlb_nat_skb(struct __sk_buff *skb, __u32 l3_off, __u32 l4_off,
				       __u8 proto, int dir, __be32 old_addr, __be32 addr,
				       __be16 old_port, __be16 port)
{
	__u32 addr_off = l3_off + (dir == XLB_NAT_DST ? offsetof(struct iphdr, daddr) :
							 offsetof(struct iphdr, saddr));
	__u32 port_off = l4_off + (dir == XLB_NAT_DST ? 2 : 0);
	__u32 sum_off = l4_off + (proto == IPPROTO_TCP ? offsetof(struct tcphdr, check) :
							 offsetof(struct udphdr, check));
	__u64 mangled = proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (!l4_off) {
		if (bpf_l3_csum_replace(skb, l3_off + offsetof(struct iphdr, check), old_addr,
					addr, sizeof(addr)))
			return -1;
		return bpf_skb_store_bytes(skb, addr_off, &addr, sizeof(addr), 0) ? -1 : 0;
	}
	if (bpf_l4_csum_replace(skb, sum_off, old_addr, addr,
				mangled | BPF_F_PSEUDO_HDR | sizeof(addr)))
		return -1;
	if (bpf_l4_csum_replace(skb, sum_off, old_port, port, mangled | sizeof(port)))
		return -1;
	if (bpf_l3_csum_replace(skb, l3_off + offsetof(struct iphdr, check), old_addr, addr,
				sizeof(addr)))
		return -1;
	if (bpf_skb_store_bytes(skb, addr_off, &addr, sizeof(addr), 0))
		return -1;
	if (bpf_skb_store_bytes(skb, port_off, &port, sizeof(port), 0))
		return -1;
	return 0;
}

#endif /* XLB_NAT_H */
