/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: IPv6 fragments of balanced datagrams (XDP), frag.h's scheme: a first
 * fragment (fragment header with offset 0 and M) carries the ports and is
 * balanced like a whole datagram; when it is translated its ports are kept
 * in the private LRU map `frag6` under {source, destination, fragment id,
 * protocol} as on the wire (the IPv6 reassembly key, RFC 8200 4.5). A later
 * fragment with an entry takes them and follows its first fragment's path
 * (address only); without one it passes untranslated: pass_frag_no_first.
 * Fragment ids are 32 bits: a new first fragment with the same key replaces
 * the entry; LRU eviction bounds the map.
 */
#ifndef XLB_FRAG6_H
#define XLB_FRAG6_H

#include "maps.h"
#include "parse6.h"
#include "lb6.h"

static __always_inline void xlb_frag6_key(const struct xlb_pkt6 *p, struct xlb_frag6_key *k)
{
	xlb_addr6_copy(k->saddr, p->saddr);
	xlb_addr6_copy(k->daddr, p->daddr);
	k->id = p->frag_id;
	k->proto = p->proto;
}

/* p is a first fragment about to be translated: remember its ports. */
static __always_inline void xlb_frag6_put(const struct xlb_pkt6 *p)
{
	struct xlb_frag6_key k = {};
	struct xlb_frag_val v = { .sport = p->sport, .dport = p->dport };

	xlb_frag6_key(p, &k);
	bpf_map_update_elem(&frag6, &k, &v, BPF_ANY);
}

/* p is a non-first fragment: its datagram's ports into p when its first
 * fragment was translated here. 1 = found. */
static __always_inline int xlb_frag6_get(struct xlb_pkt6 *p)
{
	struct xlb_frag6_key k = {};
	struct xlb_frag_val *v;

	if (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP)
		return 0;
	xlb_frag6_key(p, &k);
	v = bpf_map_lookup_elem(&frag6, &k);
	if (!v)
		return 0;
	p->sport = v->sport;
	p->dport = v->dport;
	return 1;
}

#endif /* XLB_FRAG6_H */
