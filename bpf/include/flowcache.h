/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: per-CPU flow cache of connection-tracking hits (XDP only).
 *
 * A ct lookup is a call into the kernel's hash table (`xlb bench prog`,
 * floor `ct_lookup_miss`), a large part of a ct-hit path. A flow's packets
 * arrive on one CPU (RSS), so each CPU keeps a copy of the ct entries it hit
 * last in `flow_cache` (maps.h), a direct-mapped PERCPU_ARRAY indexed by a
 * hash of the 5-tuple (inlined array access, no call). A cached hit is used
 * when:
 *   - it is the same 5-tuple and younger than XLB_FC_TTL_NS, and
 *   - `ct_epoch` has not moved since it was cached.
 * Everything the ct entry would be checked for is still checked on the copy
 * (timeout, backend active at the same generation): a removed backend is
 * re-chosen at the next packet as without the cache.
 *
 * Staleness: whoever replaces a ct entry that may be cached for another flow
 * (a reverse entry taken over, a forward entry flagged XLB_CT_F_REV_CHECK,
 * userspace writes through xlb_bpf::Maps) bumps `ct_epoch`. What a cached
 * copy does not see: last_seen refreshes (the real entry is looked up, and
 * refreshed, every XLB_FC_TTL_NS per CPU, far more often than the
 * once-a-second refresh needs) and the LRU's reference bit of the entry
 * (likewise refreshed every XLB_FC_TTL_NS while the flow is active).
 *
 * Layout: slot = a cheap multiplicative hash of the 5-tuple (xlb_fc_slot); a
 * slot names its 5-tuple, so a collision is a miss. The entry also keeps the
 * flow's Jenkins hash (the outer UDP source port of an encapsulation), so a
 * cached hit computes no Jenkins hash. A remote flow's slot also keeps how
 * it was last sent (struct xlb_fc_enc: next hop and VTEP MAC, valid until the
 * earlier of the nh_cache / vtep_cache entries' expiries), so the 50 ms bound
 * on a neighbour or tunnel change holds as without it.
 */
#ifndef XLB_FLOWCACHE_H
#define XLB_FLOWCACHE_H

#include "maps.h"
#include "parse.h"
#include "hash.h"

/* Where flow t is cached, and ct_epoch now. */
struct xlb_fc_ref {
	struct xlb_fc *slot;
	__u64 epoch;
};

static __always_inline int xlb_fc_same(const struct xlb_ct_key *a, const struct xlb_ct_key *b)
{
	return a->saddr == b->saddr && a->daddr == b->daddr && a->sport == b->sport &&
	       a->dport == b->dport && a->proto == b->proto;
}

/* The slot of t: Fibonacci hashing of its words folded together (a few
 * instructions; the slot only spreads flows over the cache). */
static __always_inline __u32 xlb_fc_slot(const struct xlb_ct_key *t)
{
	__u32 w = t->saddr ^ ((t->daddr << 16) | (t->daddr >> 16)) ^
		  (((__u32)t->sport << 16) | t->dport) ^ t->proto;

	return xlb_slot_hash(w, XLB_FC_BITS);
}

/* The cache slot holding t at the current ct_epoch,
 * or NULL; the caller checks `expires` against the clock (read only when
 * something is cached). ref is set for a later xlb_fc_put either way. */
static __always_inline struct xlb_fc *xlb_fc_get(const struct xlb_ct_key *t,
						 struct xlb_fc_ref *ref)
{
	__u32 slot = xlb_fc_slot(t), zero = 0;
	__u64 *epoch = bpf_map_lookup_elem(&ct_epoch, &zero);
	struct xlb_fc *c = bpf_map_lookup_elem(&flow_cache, &slot);

	ref->slot = c;
	ref->epoch = epoch ? *epoch : 0;
	if (!c || !epoch || !c->expires || c->epoch != ref->epoch || !xlb_fc_same(&c->key, t))
		return NULL;
	return c;
}

/* Caches v as t's ct entry (after a ct hit); hash: xlb_flow_hash(t, 0). A
 * slot still live for another flow is left to it: with more flows than
 * slots, rewriting a slot on every miss would only cost writes. Returns
 * whether t is cached now. */
static __always_inline int xlb_fc_put(const struct xlb_fc_ref *ref, const struct xlb_ct_key *t,
				      const struct xlb_ct_val *v, __u64 now, __u32 hash)
{
	struct xlb_fc *c = ref->slot;

	if (!c || (v->flags & XLB_CT_F_TCP_STATE))
		return 0;	/* half-open or closing: every packet sees the ct entry */
	if (now < c->expires && c->epoch == ref->epoch && !xlb_fc_same(&c->key, t))
		return 0;
	c->key = *t;
	c->val = *v;
	c->epoch = ref->epoch;
	c->hash = hash;
	c->enc.expires = 0;
	c->expires = now + XLB_FC_TTL_NS;
	return 1;
}

/* c's encapsulation towards peer (from in_ifindex), when still valid. */
static __always_inline struct xlb_fc_enc *xlb_fc_enc_get(struct xlb_fc *c, __be32 peer,
							 __u32 in_ifindex, __u64 now)
{
	if (!c || c->enc.peer != peer || c->enc.in_ifindex != in_ifindex || now >= c->enc.expires)
		return NULL;
	return &c->enc;
}

/* Records in c how a frame was just sent to peer: the next hop nh (when it
 * holds the answer for peer / in_ifindex) and the VTEP MAC valid until
 * vtep_expires. */
static __always_inline void xlb_fc_enc_put(struct xlb_fc *c, __be32 peer, __u32 in_ifindex,
					   const struct xlb_nh *nh, const __u8 *vtep,
					   __u64 vtep_expires, __u64 now)
{
	if (!c || !nh || !vtep || nh->peer != peer || nh->in_ifindex != in_ifindex ||
	    now >= nh->expires || now >= vtep_expires)
		return;
	c->enc.peer = peer;
	c->enc.in_ifindex = in_ifindex;
	c->enc.out_ifindex = nh->out_ifindex;
	xlb_mac_copy(c->enc.vtep, vtep);
	xlb_mac_copy(c->enc.dmac, nh->dmac);
	xlb_mac_copy(c->enc.smac, nh->smac);
	c->enc.expires = nh->expires < vtep_expires ? nh->expires : vtep_expires;
}

/* Forgets t's cached entry (it is being replaced on this CPU). */
static __always_inline void xlb_fc_drop(const struct xlb_fc_ref *ref)
{
	if (ref->slot)
		ref->slot->expires = 0;
}

#endif /* XLB_FLOWCACHE_H */
