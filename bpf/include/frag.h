/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: IPv4 fragments of balanced datagrams (XDP and tc).
 *
 * A first fragment (MF set, offset 0) carries the ports and is balanced like
 * a whole datagram. The later fragments carry no ports: when a first
 * fragment is translated here (forward, reply, tunnel), its ports are kept
 * in `frag` under {source, destination, IP ID, protocol} as on the wire (the
 * IPv4 reassembly key, RFC 791), as Cilium's IPv4 fragment map does. A later
 * fragment with an entry takes those ports and goes through the same path as
 * its first fragment (ct entry, flow cache, NAT, tunnel): the same backend
 * and translation, address only (the L4 header and its checksum are in the
 * first fragment). Without an entry (its first fragment not seen yet, or not
 * translated here) it passes untranslated: `pass_frag_no_first`.
 *
 * No timeout: a new first fragment with the same key replaces the entry, and
 * IP IDs of one source/destination pair repeat only after 65536 datagrams,
 * far longer than a reassembly (30 s); LRU eviction bounds the map.
 */
#ifndef XLB_FRAG_H
#define XLB_FRAG_H

#include "maps.h"
#include "parse.h"

/* p is a first fragment about to be translated: remember its ports. */
static __always_inline void xlb_frag_put(const struct xlb_pkt *p, void *data_end)
{
	struct iphdr *ip = p->ip;
	struct xlb_frag_key k = {
		.saddr = p->saddr, .daddr = p->daddr, .proto = p->proto,
	};
	struct xlb_frag_val v = { .sport = p->sport, .dport = p->dport };

	if ((void *)(ip + 1) > data_end)
		return;
	k.id = ip->id;
	bpf_map_update_elem(&frag, &k, &v, BPF_ANY);
}

/* p is a non-first fragment (p->l4 NULL): its datagram's ports into p when
 * its first fragment was translated here. 1 = found. */
static __always_inline int xlb_frag_get(struct xlb_pkt *p, void *data_end)
{
	struct iphdr *ip = p->ip;
	struct xlb_frag_key k = {
		.saddr = p->saddr, .daddr = p->daddr, .proto = p->proto,
	};
	struct xlb_frag_val *v;

	if (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP)
		return 0;
	if ((void *)(ip + 1) > data_end)
		return 0;
	k.id = ip->id;
	v = bpf_map_lookup_elem(&frag, &k);
	if (!v)
		return 0;
	p->sport = v->sport;
	p->dport = v->dport;
	return 1;
}

#endif /* XLB_FRAG_H */
