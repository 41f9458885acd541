/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: the IPv6 program's next-hop and VTEP caches (XDP only), nh.h's for
 * IPv6: a fib answer for an IPv6 outer destination (nh6_cache) and a
 * backend's VTEP MAC from tunnel6 (vtep6_cache), kept per CPU for
 * XLB_NH_TTL_NS, so a neighbour, route or tunnel change reaches the fast
 * path within that time. Only complete answers are kept (a fib success
 * whose route MTU covers config.mtu; a found tunnel entry).
 */
#ifndef XLB_NH6_H
#define XLB_NH6_H

#include "maps.h"
#include "parse.h"
#include "hash.h"
#include "lb6.h"

/* The words of an IPv6 address XORed into one (a slot's hash input: a
 * slot only spreads addresses over the cache, and names its address). */
static __always_inline __u32 xlb_addr6_xor(const __be32 *a)
{
	return bpf_ntohl(a[0] ^ a[1] ^ a[2] ^ a[3]);
}

static __always_inline struct xlb_nh6 *xlb_nh6_slot(const __be32 *peer, __u32 in_ifindex)
{
	__u32 slot = xlb_slot_hash(xlb_addr6_xor(peer) ^ in_ifindex, XLB_NH_BITS);

	return bpf_map_lookup_elem(&nh6_cache, &slot);
}

/* Fills fib's output fields from a fresh entry for (peer, in_ifindex); 0 = miss. */
static __always_inline int xlb_nh6_get(struct xlb_nh6 *nh, const __be32 *peer, __u32 in_ifindex,
				       __u64 now, struct bpf_fib_lookup *fib)
{
	if (!nh || !xlb_addr6_eq(nh->peer, peer) || nh->in_ifindex != in_ifindex ||
	    now >= nh->expires)
		return 0;
	fib->ifindex = nh->out_ifindex;
	xlb_mac_copy(fib->dmac, nh->dmac);
	xlb_mac_copy(fib->smac, nh->smac);
	return 1;
}

/* Keeps a successful fib answer whose route MTU covers `mtu`. */
static __always_inline void xlb_nh6_put(struct xlb_nh6 *nh, const __be32 *peer, __u32 in_ifindex,
					__u64 now, __u32 mtu, const struct bpf_fib_lookup *fib)
{
	if (!nh || fib->mtu_result < mtu)
		return;
	xlb_addr6_copy(nh->peer, peer);
	nh->in_ifindex = in_ifindex;
	nh->out_ifindex = fib->ifindex;
	xlb_mac_copy(nh->dmac, fib->dmac);
	xlb_mac_copy(nh->smac, fib->smac);
	nh->expires = now + XLB_NH_TTL_NS;
}

/* The VTEP MAC of the node holding IPv6 pod address addr: from the cache or
 * tunnel6; 0 = no tunnel entry (looked up again for every frame). */
static __always_inline int xlb_vtep6_mac(const __be32 *addr, __u64 now, __u8 *mac)
{
	__u32 slot = xlb_slot_hash(xlb_addr6_xor(addr), XLB_VTEP_BITS);
	struct xlb_vtep6 *vc = bpf_map_lookup_elem(&vtep6_cache, &slot);
	struct xlb_tunnel6_key tk = { .prefixlen = 128 };
	struct xlb_tunnel6_val *tv;

	if (vc && xlb_addr6_eq(vc->addr, addr) && now < vc->expires) {
		xlb_mac_copy(mac, vc->vtep_mac);
		return 1;
	}
	xlb_addr6_copy(tk.addr, addr);
	tv = bpf_map_lookup_elem(&tunnel6, &tk);
	if (!tv)
		return 0;
	xlb_mac_copy(mac, tv->vtep_mac);
	if (vc) {
		xlb_addr6_copy(vc->addr, addr);
		xlb_mac_copy(vc->vtep_mac, mac);
		vc->expires = now + XLB_NH_TTL_NS;
	}
	return 1;
}

#endif /* XLB_NH6_H */
