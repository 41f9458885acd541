/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: Service match and backend choice for a new flow (source ranges,
 * endpoints, traffic policy, session affinity, Maglev). No loops over
 * backends: a choice is at most one lookup in each of services, affinity,
 * maglev and backends. Connection tracking (ct.h) keeps the choice.
 */
#ifndef XLB_LB_H
#define XLB_LB_H

#include "maps.h"
#include "parse.h"
#include "clock.h"
#include "hash.h"
#include "filter.h"

/* A backend as chosen, copied out of the map. */
struct xlb_choice {
	__u32 backend_id;
	__u32 generation;
	__be32 addr;
	__be32 node;
	__be16 port;
	__u8 flags;		/* XLB_BE_F_* */
	__u8 pad;
};

/* The Service of (daddr, dport, proto): by address first; a NodePort only
 * when daddr is one of this node's addresses, or, with remote (a constant:
 * pods' traffic, tc), one of another node's (remote_addrs). Each services
 * lookup is taken only when fe_filter says the key may exist, so traffic
 * that is no Service usually costs no lookup at all. The NodePort entry is
 * looked up before the address check: traffic to the node itself that is no
 * NodePort (ssh, kubelet, the API server) then costs one lookup less, and the
 * node's own address (node_addr) needs no local_addrs lookup. */
static __always_inline struct xlb_svc_val *xlb_service_of(__be32 daddr, __be16 dport, __u8 proto,
							  __be32 node_addr, int remote)
{
	/* (whole-word stores: filter.h, xlb_svc_key_w) */
	union xlb_svc_key_w u = { .w = { daddr, xlb_svc_key_w1(dport, proto, XLB_KIND_ADDR) } };
	struct xlb_svc_val *v;

	if (xlb_fe_maybe(&u.k)) {
		v = bpf_map_lookup_elem(&services, &u.k);
		if (v)
			return v;
	}
	u.w[0] = 0;
	u.w[1] = xlb_svc_key_w1(dport, proto, XLB_KIND_NODEPORT);
	if (!xlb_fe_maybe(&u.k))
		return NULL;
	v = bpf_map_lookup_elem(&services, &u.k);
	if (!v)
		return NULL;
	if ((!node_addr || daddr != node_addr) && !bpf_map_lookup_elem(&local_addrs, &daddr) &&
	    !(remote && bpf_map_lookup_elem(&remote_addrs, &daddr)))
		return NULL;
	return v;
}

/* The Service of (daddr, dport, proto) for a frame of the uplink or a socket
 * of this node: NodePorts on this node's addresses only. */
static __always_inline struct xlb_svc_val *xlb_service(__be32 daddr, __be16 dport, __u8 proto,
						       __be32 node_addr)
{
	return xlb_service_of(daddr, dport, proto, node_addr, 0);
}

/* The entry a client inside the cluster (a pod, a tunnel, the node) uses for
 * frontend svc of (daddr, dport, proto): its XLB_KIND_F_INTERNAL entry when it
 * is an XLB_SVC_F_EXT_LOCAL one, else svc itself. */
static __always_inline struct xlb_svc_val *xlb_service_internal(struct xlb_svc_val *svc,
								__be32 daddr, __be16 dport,
								__u8 proto)
{
	struct xlb_svc_key k = {
		.addr = daddr, .port = dport, .proto = proto,
		.kind = XLB_KIND_ADDR | XLB_KIND_F_INTERNAL,
	};
	struct xlb_svc_val *v;

	if (!(svc->flags & XLB_SVC_F_EXT_LOCAL))
		return svc;
	if (svc->fe_type == XLB_FE_NODEPORT) {
		k.addr = 0;
		k.kind = XLB_KIND_NODEPORT | XLB_KIND_F_INTERNAL;
	}
	v = bpf_map_lookup_elem(&services, &k);
	return v ? v : svc;
}

/* Copies an active backend into ch; 0 when the slot holds none. */
static __always_inline int xlb_backend_get(__u32 id, struct xlb_choice *ch)
{
	struct xlb_backend *b = bpf_map_lookup_elem(&backends, &id);

	if (!b || !(b->flags & XLB_BE_F_ACTIVE))
		return 0;
	ch->backend_id = id;
	ch->generation = b->generation;
	ch->addr = b->addr;
	ch->port = b->port;
	ch->node = b->node;
	ch->flags = b->flags;
	return 1;
}

/*
 * Chooses a backend for a new flow t of Service svc: source ranges, traffic
 * policy Local without local endpoint, no endpoint, affinity (never to a
 * draining backend), then the Maglev slot
 * hash % table_size + table_off (with affinity and no entry for the client,
 * the hash of its address alone; else of the whole flow). Returns XLB_OK or the reason to drop/reject;
 * *event gets XLB_R_EVENT_AFFINITY_FULL when the affinity entry could not be saved.
 * When the whole flow's hash (xlb_flow_hash(t, 0)) was computed and hash is
 * not NULL: *hash gets it and *has_hash 1 (the caller needs it again for the
 * outer source port of an encapsulation).
 */
static __always_inline int xlb_choose_hash(struct xlb_svc_val *svc, const struct xlb_ct_key *t,
					   __u64 now, struct xlb_choice *ch, int *event,
					   __u32 *hash, __u32 *has_hash)
{
	__u32 flags = svc->flags, size = svc->table_size, slot, *id;
	struct xlb_affinity_key ak = { .svc_id = svc->svc_id, .client = t->saddr };
	int aff = flags & XLB_SVC_F_AFFINITY, by_client = aff;

	if (flags & XLB_SVC_F_SRC_RANGES) {
		struct xlb_src_range_key rk = {
			.prefixlen = 64, .svc_id = bpf_htonl(svc->svc_id), .addr = t->saddr,
		};

		if (!bpf_map_lookup_elem(&src_ranges, &rk))
			return XLB_R_DROP_SRC_RANGE;
	}
	if ((flags & XLB_SVC_F_LOCAL) && !svc->n_local)
		return svc->fe_type == XLB_FE_CLUSTERIP ? XLB_R_DROP_ITP_LOCAL : XLB_R_DROP_ETP_LOCAL;
	if (!size)
		return XLB_R_DROP_NO_BACKEND;
	if (aff) {
		struct xlb_affinity_val *av = bpf_map_lookup_elem(&affinity, &ak);
		__u64 timeout = svc->affinity_timeout ? svc->affinity_timeout : XLB_AFFINITY_DEFAULT_S;

		if (av && xlb_age(now, av->last_seen) < timeout * XLB_NSEC &&
		    xlb_backend_get(av->backend_id, ch) && ch->generation == av->generation &&
		    !(ch->flags & XLB_BE_F_DRAINING)) {
			av->last_seen = now;
			return XLB_OK;
		}
		/* An expired (or stale) entry: a fresh choice, as kube-proxy
		 * makes, from the whole flow; the client's address alone would
		 * give the same slot again. */
		by_client = !av;
	}
	slot = xlb_flow_hash(t, by_client);
	if (hash && !by_client) {
		*hash = slot;
		*has_hash = 1;
	}
	slot = svc->table_off + slot % size;
	id = bpf_map_lookup_elem(&maglev, &slot);
	if (!id || !xlb_backend_get(*id, ch))
		return XLB_R_DROP_BAD_MAGLEV;
	if (aff) {
		struct xlb_affinity_val nv = {
			.backend_id = ch->backend_id, .generation = ch->generation, .last_seen = now,
		};

		if (bpf_map_update_elem(&affinity, &ak, &nv, BPF_ANY))
			*event = XLB_R_EVENT_AFFINITY_FULL;
	}
	return XLB_OK;
}

static __always_inline int xlb_choose(struct xlb_svc_val *svc, const struct xlb_ct_key *t,
				      __u64 now, struct xlb_choice *ch, int *event)
{
	return xlb_choose_hash(svc, t, now, ch, event, NULL, NULL);
}

#endif /* XLB_LB_H */
