/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: the counting filters fe_filter and be_filter (maps.h). A zero slot
 * proves that no services key / no backend address hashes there, so traffic
 * that is no Service skips the services and ct lookups. xlb_bpf computes the
 * same slots (fe_slot, be_slot) when it counts.
 */
#ifndef XLB_FILTER_H
#define XLB_FILTER_H

#include "maps.h"
#include "hash.h"

/* A services key with the words the filter and the map hash it by, each
 * written whole: a key assembled by 16- and 8-bit stores and read back as
 * 32-bit words (xlb_fe_slot here, the map's jhash) waits for those stores
 * (no store-to-load forwarding), at every probe of a frame that misses the
 * flow cache. */
union xlb_svc_key_w {
	struct xlb_svc_key k;
	__u32 w[2];
};

/* The second word of a services key as stored: port, proto, kind. */
static __always_inline __u32 xlb_svc_key_w1(__be16 port, __u8 proto, __u8 kind)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return (__u32)port | ((__u32)proto << 16) | ((__u32)kind << 24);
#else
	return ((__u32)port << 16) | ((__u32)proto << 8) | kind;
#endif
}

/* fe_filter slot of a services key: its two words as stored. */
static __always_inline __u32 xlb_fe_slot(const struct xlb_svc_key *k)
{
	const __u32 *w = (const __u32 *)k;

	return xlb_hash3(w[0], w[1], 0, 0) & (XLB_FE_FILTER_SLOTS - 1);
}

/* 0 when no services key can be k (fe_filter); 1 = look it up. */
static __always_inline int xlb_fe_maybe(const struct xlb_svc_key *k)
{
	__u32 slot = xlb_fe_slot(k);
	__u32 *n = bpf_map_lookup_elem(&fe_filter, &slot);

	return !n || *n;
}

/* 0 when no backends slot holds addr (be_filter); 1 = it may. */
static __always_inline int xlb_be_maybe(__be32 addr)
{
	__u32 slot = xlb_hash3(addr, 0, 0, 1) & (XLB_BE_FILTER_SLOTS - 1);
	__u32 *n = bpf_map_lookup_elem(&be_filter, &slot);

	return !n || *n;
}

/* 0 when (daddr, dport, proto) is no frontend: neither an address frontend
 * nor a NodePort (fe_filter); 1 = it may be one. */
static __always_inline int xlb_frontend_maybe(__be32 daddr, __be16 dport, __u8 proto)
{
	union xlb_svc_key_w u = { .w = { daddr, xlb_svc_key_w1(dport, proto, XLB_KIND_ADDR) } };

	if (xlb_fe_maybe(&u.k))
		return 1;
	u.w[0] = 0;
	u.w[1] = xlb_svc_key_w1(dport, proto, XLB_KIND_NODEPORT);
	return xlb_fe_maybe(&u.k);
}

#endif /* XLB_FILTER_H */
