/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: Service match and backend choice for a new IPv6 flow, lb.h's
 * semantics on the IPv6 maps (services6, local_addrs6, remote_addrs6,
 * backends6, affinity6, src_ranges6) and the shared maglev array. No loops
 * over backends: a choice is at most one lookup in each of services6,
 * affinity6, maglev and backends6. Connection tracking (ct6.h) keeps it.
 */
#ifndef XLB_LB6_H
#define XLB_LB6_H

#include "maps.h"
#include "parse.h"
#include "clock.h"
#include "hash6.h"

static __always_inline int xlb_addr6_eq(const __be32 *a, const __be32 *b)
{
	return !((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]));
}

static __always_inline int xlb_addr6_zero(const __be32 *a)
{
	return !(a[0] | a[1] | a[2] | a[3]);
}

static __always_inline void xlb_addr6_copy(__be32 *d, const __be32 *s)
{
	d[0] = s[0];
	d[1] = s[1];
	d[2] = s[2];
	d[3] = s[3];
}

/* The Service of (daddr, dport, proto): by address first; a NodePort only
 * when daddr is one of this node's addresses (node_addr, local_addrs6), or,
 * with remote (a constant: pods' traffic, tc), one of another node's
 * (remote_addrs6). node_addr may be NULL (none). There is no IPv6 frontend
 * filter: a frame that is no Service costs the two services6 lookups. */
static __always_inline struct xlb_svc_val *xlb_service6_of(const __be32 *daddr, __be16 dport,
							   __u8 proto, const __be32 *node_addr,
							   int remote)
{
	struct xlb_svc6_key k = { .port = dport, .proto = proto, .kind = XLB_KIND_ADDR };
	struct xlb_addr6 a;
	struct xlb_svc_val *v;

	xlb_addr6_copy(k.addr, daddr);
	v = bpf_map_lookup_elem(&services6, &k);
	if (v)
		return v;
	__builtin_memset(k.addr, 0, sizeof(k.addr));
	k.kind = XLB_KIND_NODEPORT;
	v = bpf_map_lookup_elem(&services6, &k);
	if (!v)
		return NULL;
	if (node_addr && !xlb_addr6_zero(node_addr) && xlb_addr6_eq(daddr, node_addr))
		return v;
	xlb_addr6_copy(a.addr, daddr);
	if (bpf_map_lookup_elem(&local_addrs6, &a))
		return v;
	if (remote && bpf_map_lookup_elem(&remote_addrs6, &a))
		return v;
	return NULL;
}

/* The Service of (daddr, dport, proto) for a frame of the uplink or a socket
 * of this node: NodePorts on this node's addresses only. */
static __always_inline struct xlb_svc_val *xlb_service6(const __be32 *daddr, __be16 dport,
							__u8 proto, const __be32 *node_addr)
{
	return xlb_service6_of(daddr, dport, proto, node_addr, 0);
}

/* The entry a client inside the cluster (a pod, a tunnel, the node) uses for
 * frontend svc of (daddr, dport, proto): its XLB_KIND_F_INTERNAL entry when it
 * is an XLB_SVC_F_EXT_LOCAL one, else svc itself. */
static __always_inline struct xlb_svc_val *xlb_service6_internal(struct xlb_svc_val *svc,
								 const __be32 *daddr,
								 __be16 dport, __u8 proto)
{
	struct xlb_svc6_key k = {
		.port = dport, .proto = proto, .kind = XLB_KIND_ADDR | XLB_KIND_F_INTERNAL,
	};
	struct xlb_svc_val *v;

	if (!(svc->flags & XLB_SVC_F_EXT_LOCAL))
		return svc;
	if (svc->fe_type == XLB_FE_NODEPORT)
		k.kind = XLB_KIND_NODEPORT | XLB_KIND_F_INTERNAL;
	else
		xlb_addr6_copy(k.addr, daddr);
	v = bpf_map_lookup_elem(&services6, &k);
	return v ? v : svc;
}

/* Copies an active IPv6 backend into ch; 0 when the slot holds none. */
static __always_inline int xlb_backend6_get(__u32 id, struct xlb_choice6 *ch)
{
	struct xlb_backend6 *b = bpf_map_lookup_elem(&backends6, &id);

	if (!b || !(b->flags & XLB_BE_F_ACTIVE))
		return 0;
	ch->backend_id = id;
	ch->generation = b->generation;
	xlb_addr6_copy(ch->addr, b->addr);
	xlb_addr6_copy(ch->node, b->node);
	ch->port = b->port;
	ch->flags = b->flags;
	return 1;
}

/*
 * Chooses a backend for a new IPv6 flow t of Service svc, as xlb_choose_hash:
 * source ranges (src_ranges6), traffic policy Local without local endpoint,
 * no endpoint, affinity on the /128 client (affinity6; never to a draining
 * backend), then the Maglev slot hash % table_size + table_off (with affinity
 * and no entry for the client, xlb_flow_hash6(t, 1); else of the whole flow).
 * Returns XLB_OK or the reason to drop/reject; *event gets
 * XLB_R_EVENT_AFFINITY_FULL when the affinity entry could not be saved.
 * When the whole flow's hash was computed and hash is not NULL: *hash gets
 * it and *has_hash 1 (the outer source port of an encapsulation).
 */
static __always_inline int xlb_choose6_hash(struct xlb_svc_val *svc, const struct xlb_ct6_key *t,
					    __u64 now, struct xlb_choice6 *ch, int *event,
					    __u32 *hash, __u32 *has_hash)
{
	__u32 flags = svc->flags, size = svc->table_size, slot, *id;
	struct xlb_affinity6_key ak = { .svc_id = svc->svc_id };
	int aff = flags & XLB_SVC_F_AFFINITY, by_client = aff;

	xlb_addr6_copy(ak.client, t->saddr);
	if (flags & XLB_SVC_F_SRC_RANGES) {
		struct xlb_src_range6_key rk = {
			.prefixlen = 32 + 128, .svc_id = bpf_htonl(svc->svc_id),
		};

		xlb_addr6_copy(rk.addr, t->saddr);
		if (!bpf_map_lookup_elem(&src_ranges6, &rk))
			return XLB_R_DROP_SRC_RANGE;
	}
	if ((flags & XLB_SVC_F_LOCAL) && !svc->n_local)
		return svc->fe_type == XLB_FE_CLUSTERIP ? XLB_R_DROP_ITP_LOCAL : XLB_R_DROP_ETP_LOCAL;
	if (!size)
		return XLB_R_DROP_NO_BACKEND;
	if (aff) {
		struct xlb_affinity_val *av = bpf_map_lookup_elem(&affinity6, &ak);
		__u64 timeout = svc->affinity_timeout ? svc->affinity_timeout : XLB_AFFINITY_DEFAULT_S;

		if (av && xlb_age(now, av->last_seen) < timeout * XLB_NSEC &&
		    xlb_backend6_get(av->backend_id, ch) && ch->generation == av->generation &&
		    !(ch->flags & XLB_BE_F_DRAINING)) {
			av->last_seen = now;
			return XLB_OK;
		}
		/* An expired (or stale) entry: a fresh choice from the whole
		 * flow, as lb.h makes. */
		by_client = !av;
	}
	slot = xlb_flow_hash6(t, by_client);
	if (hash && !by_client) {
		*hash = slot;
		*has_hash = 1;
	}
	slot = svc->table_off + slot % size;
	id = bpf_map_lookup_elem(&maglev, &slot);
	if (!id || !xlb_backend6_get(*id, ch))
		return XLB_R_DROP_BAD_MAGLEV;
	if (aff) {
		struct xlb_affinity_val nv = {
			.backend_id = ch->backend_id, .generation = ch->generation, .last_seen = now,
		};

		if (bpf_map_update_elem(&affinity6, &ak, &nv, BPF_ANY))
			*event = XLB_R_EVENT_AFFINITY_FULL;
	}
	return XLB_OK;
}

static __always_inline int xlb_choose6(struct xlb_svc_val *svc, const struct xlb_ct6_key *t,
				       __u64 now, struct xlb_choice6 *ch, int *event)
{
	return xlb_choose6_hash(svc, t, now, ch, event, NULL, NULL);
}

#endif /* XLB_LB6_H */
