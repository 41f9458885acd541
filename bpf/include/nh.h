/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: next-hop cache for the encapsulation path (XDP only).
 *
 * bpf_fib_lookup is the single most expensive step of sending a frame to a
 * remote node (`xlb bench prog`, path remote_vxlan_encap): the outer
 * destination is one of a few node addresses, so its answer (output ifindex,
 * next-hop and source MAC) is kept per CPU in `nh_cache` (maps.h) for
 * XLB_NH_TTL_NS and the
 * fib is asked again after that. A neighbour or route change therefore reaches
 * the fast path within XLB_NH_TTL_NS (the kernel's own neighbour state changes
 * on a scale of seconds: NUD reachable time, ARP probes).
 *
 * Only complete answers are kept: a fib success whose route MTU (mtu_result)
 * covers config.mtu, so every frame that passes xlb's own MTU check would pass
 * the fib's too. "No neighbour", fragmentation needed and every failure are
 * never cached: those frames take the fib path at every packet.
 *
 * Layout: a direct-mapped PERCPU_ARRAY (slot = hash(peer, ifindex)); each
 * slot names its peer and input ifindex, so a collision is just a miss.
 * Per-CPU: a CPU only ever reads and writes its own copy (no torn reads, no
 * shared cache lines), the lookup is inlined by the verifier, and nothing is
 * allocated or evicted.
 */
#ifndef XLB_NH_H
#define XLB_NH_H

#include "maps.h"
#include "parse.h"
#include "hash.h"

static __always_inline struct xlb_nh *xlb_nh_slot(__be32 peer, __u32 in_ifindex)
{
	__u32 slot = xlb_slot_hash(bpf_ntohl(peer) ^ in_ifindex, XLB_NH_BITS);

	return bpf_map_lookup_elem(&nh_cache, &slot);
}

/* Fills fib's output fields from a fresh entry for (peer, in_ifindex); 0 = miss. */
static __always_inline int xlb_nh_get(struct xlb_nh *nh, __be32 peer, __u32 in_ifindex,
				      __u64 now, struct bpf_fib_lookup *fib)
{
	if (!nh || nh->peer != peer || nh->in_ifindex != in_ifindex || now >= nh->expires)
		return 0;
	fib->ifindex = nh->out_ifindex;
	xlb_mac_copy(fib->dmac, nh->dmac);
	xlb_mac_copy(fib->smac, nh->smac);
	return 1;
}

/* Keeps a successful fib answer whose route MTU covers `mtu`. */
static __always_inline void xlb_nh_put(struct xlb_nh *nh, __be32 peer, __u32 in_ifindex,
				       __u64 now, __u32 mtu, const struct bpf_fib_lookup *fib)
{
	if (!nh || fib->mtu_result < mtu)
		return;
	nh->peer = peer;
	nh->in_ifindex = in_ifindex;
	nh->out_ifindex = fib->ifindex;
	xlb_mac_copy(nh->dmac, fib->dmac);
	xlb_mac_copy(nh->smac, fib->smac);
	nh->expires = now + XLB_NH_TTL_NS;
}

/*
 * The same for the tunnel LPM lookup (pod CIDR -> VTEP MAC of the backend's
 * node): a remote backend's VTEP MAC is kept per CPU in `vtep_cache` for
 * XLB_NH_TTL_NS, so a changed or removed tunnel entry reaches the fast path
 * within that time. Only found entries are kept (no entry -> drop_no_tunnel
 * is looked up every time).
 */
static __always_inline struct xlb_vtep *xlb_vtep_slot(__be32 addr)
{
	__u32 slot = xlb_slot_hash(bpf_ntohl(addr), XLB_VTEP_BITS);

	return bpf_map_lookup_elem(&vtep_cache, &slot);
}

/* The backend's VTEP MAC into mac: from the cache or the tunnel map; 0 = no
 * tunnel entry. *expires: until when the cache holds it (0: not cached). */
static __always_inline int xlb_vtep_mac(struct xlb_vtep *vc, __be32 addr, __u64 now, __u8 *mac,
					__u64 *expires)
{
	struct xlb_tunnel_key tk = { .prefixlen = 32, .addr = addr };
	struct xlb_tunnel_val *tv;

	*expires = 0;
	if (vc && vc->addr == addr && now < vc->expires) {
		xlb_mac_copy(mac, vc->vtep_mac);
		*expires = vc->expires;
		return 1;
	}
	tv = bpf_map_lookup_elem(&tunnel, &tk);
	if (!tv)
		return 0;
	xlb_mac_copy(mac, tv->vtep_mac);
	if (vc) {
		vc->addr = addr;
		xlb_mac_copy(vc->vtep_mac, mac);
		vc->expires = now + XLB_NH_TTL_NS;
		*expires = vc->expires;
	}
	return 1;
}

#endif /* XLB_NH_H */
