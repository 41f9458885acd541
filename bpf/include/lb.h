/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: Service match, backend choice (connection tracking, session affinity,
 * Maglev), and connection-tracking entries. No loops over backends: a choice
 * is at most one lookup in each of services, affinity, maglev and backends.
 */
#ifndef XLB_LB_H
#define XLB_LB_H

#include "maps.h"
#include "parse.h"

#define XLB_NSEC		1000000000ULL
#define XLB_AFFINITY_DEFAULT_S	10800	/* Kubernetes' default timeoutSeconds */
#define XLB_CT_TOUCH_NS		XLB_NSEC	/* refresh last_seen at most once a second */
#define XLB_HASH_INIT		0xdeadbeef
#define XLB_EEXIST		17	/* bpf_map_update_elem(BPF_NOEXIST): key exists */

/*
 * Clock of every ct / affinity timestamp: CLOCK_MONOTONIC at tick resolution
 * (bpf_ktime_get_coarse_ns reads the last tick's time, no clock source read).
 * Timeouts are seconds and refreshes once a second, so a tick is plenty.
 * Userspace stamps entries with the fine CLOCK_MONOTONIC, which may be ahead
 * of the coarse clock by up to a tick: ages are taken with xlb_age (never
 * negative), so such an entry is fresh, not "2^64 ns old".
 */
static __always_inline __u64 xlb_now(void)
{
	return bpf_ktime_get_coarse_ns();
}

static __always_inline __u64 xlb_age(__u64 now, __u64 then)
{
	return now > then ? now - then : 0;
}

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

/* A ct entry that a CPU may hold in its flow cache was replaced: void every
 * cached hit (rare: port reuse across frontends, flagged victims). */
static __always_inline void xlb_ct_epoch_bump(void)
{
	__u32 zero = 0;
	__u64 *e = bpf_map_lookup_elem(&ct_epoch, &zero);

	if (e)
		__sync_fetch_and_add(e, 1);
}

#define xlb_rol32(w, s) (((w) << (s)) | ((w) >> (32 - (s))))

/* Jenkins lookup3 final mix of three words (jhash_3words). Userspace tests
 * reproduce it to predict Maglev slots; every node computes the same value. */
static __always_inline __u32 xlb_hash3(__u32 a, __u32 b, __u32 c, __u32 init)
{
	a += XLB_HASH_INIT + init;
	b += XLB_HASH_INIT + init;
	c += XLB_HASH_INIT + init;
	c ^= b; c -= xlb_rol32(b, 14);
	a ^= c; a -= xlb_rol32(c, 11);
	b ^= a; b -= xlb_rol32(a, 25);
	c ^= b; c -= xlb_rol32(b, 16);
	a ^= c; a -= xlb_rol32(c, 4);
	b ^= a; b -= xlb_rol32(a, 14);
	c ^= b; c -= xlb_rol32(b, 24);
	return c;
}

/* Flow hash of a 5-tuple; with session affinity the source port is left out
 * so that one client always lands on one backend. Words are taken as stored
 * (network order). */
static __always_inline __u32 xlb_flow_hash(const struct xlb_ct_key *t, int no_sport)
{
	__u32 ports = ((__u32)(no_sport ? 0 : t->sport) << 16) | t->dport;

	return xlb_hash3(t->saddr, t->daddr, ports, t->proto);
}

static __always_inline __u64 xlb_ct_timeout(__u8 proto)
{
	return proto == IPPROTO_TCP ? XLB_CT_TIMEOUT_TCP_NS : XLB_CT_TIMEOUT_UDP_NS;
}

/* fe_filter slot of a services key: its two words as stored. xlb_bpf's
 * fe_slot computes the same. */
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

/* 0 when no backends slot holds addr (be_filter); 1 = it may. xlb_bpf's
 * be_slot computes the same slot. */
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
	struct xlb_svc_key k = {
		.addr = daddr, .port = dport, .proto = proto, .kind = XLB_KIND_ADDR,
	};

	if (xlb_fe_maybe(&k))
		return 1;
	k.addr = 0;
	k.kind = XLB_KIND_NODEPORT;
	return xlb_fe_maybe(&k);
}

/* The Service of (daddr, dport, proto): by address first; a NodePort only
 * when daddr is one of this node's addresses. Each services lookup is taken
 * only when fe_filter says the key may exist, so traffic that is no Service
 * usually costs no lookup at all. The NodePort entry is looked up before the
 * address check: traffic to the node itself that is no NodePort (ssh,
 * kubelet, the API server) then costs one lookup less, and the node's own
 * address (node_addr) needs no local_addrs lookup. */
static __always_inline struct xlb_svc_val *xlb_service(__be32 daddr, __be16 dport, __u8 proto,
						       __be32 node_addr)
{
	struct xlb_svc_key k = {
		.addr = daddr, .port = dport, .proto = proto, .kind = XLB_KIND_ADDR,
	};
	struct xlb_svc_val *v;

	if (xlb_fe_maybe(&k)) {
		v = bpf_map_lookup_elem(&services, &k);
		if (v)
			return v;
	}
	k.addr = 0;
	k.kind = XLB_KIND_NODEPORT;
	if (!xlb_fe_maybe(&k))
		return NULL;
	v = bpf_map_lookup_elem(&services, &k);
	if (!v)
		return NULL;
	if ((!node_addr || daddr != node_addr) && !bpf_map_lookup_elem(&local_addrs, &daddr))
		return NULL;
	return v;
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
 * hash % table_size + table_off. Returns XLB_OK or the reason to drop/reject;
 * *events gets XLB_R_AFFINITY_FULL when the affinity entry could not be saved.
 */
static __always_inline int xlb_choose(struct xlb_svc_val *svc, const struct xlb_ct_key *t,
				      __u64 now, struct xlb_choice *ch, int *event)
{
	__u32 flags = svc->flags, size = svc->table_size, slot, *id;
	struct xlb_affinity_key ak = { .svc_id = svc->svc_id, .client = t->saddr };
	int aff = flags & XLB_SVC_F_AFFINITY;

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
	}
	slot = svc->table_off + xlb_flow_hash(t, aff) % size;
	id = bpf_map_lookup_elem(&maglev, &slot);
	if (!id || !xlb_backend_get(*id, ch))
		return XLB_R_DROP_BAD_MAGLEV;
	if (aff) {
		struct xlb_affinity_val nv = {
			.backend_id = ch->backend_id, .generation = ch->generation, .last_seen = now,
		};

		if (bpf_map_update_elem(&affinity, &ak, &nv, BPF_ANY))
			*event = XLB_R_AFFINITY_FULL;
	}
	return XLB_OK;
}

/* The backend of forward entry v into ch when the entry is live: not timed
 * out, its backend active at the generation it was chosen at. 0 = choose
 * again. (A check only: no refresh; xlb_ct_backend adds that.) */
static __always_inline int xlb_ct_live_backend(const struct xlb_ct_val *v, __u8 proto,
					       __u64 now, struct xlb_choice *ch)
{
	return xlb_age(now, v->last_seen) < xlb_ct_timeout(proto) &&
	       xlb_backend_get(v->backend_id, ch) && ch->generation == v->generation;
}

#define XLB_CT_USE		1	/* forward hit: use the backend */
#define XLB_CT_USE_CHECK	2	/* ... and check the flow's reverse entry (xlb_ct_reverse_keep) */

/*
 * A forward-entry hit: the backend it names, when still live at the same
 * generation and the entry has not timed out. 0 = choose again.
 *
 * The flow's reverse entry is checked (one more ct lookup) only when it may
 * have changed: another flow took it (XLB_CT_F_REV_CHECK, set by whoever
 * replaced it: xlb_ct_flag_victim), or once a second with the last_seen
 * refresh (LRU eviction of the reverse entry alone is noticed then).
 */
static __always_inline int xlb_ct_backend(struct xlb_ct_val *v, __u8 proto, __u64 now,
					  struct xlb_choice *ch)
{
	__u64 age = xlb_age(now, v->last_seen);
	int r = XLB_CT_USE;

	if (!xlb_ct_live_backend(v, proto, now, ch))
		return 0;
	if (age > XLB_CT_TOUCH_NS) {
		v->last_seen = now;
		r = XLB_CT_USE_CHECK;
	}
	if (v->flags & XLB_CT_F_REV_CHECK) {
		/* Cleared before the check: a flag set after this sees the
		 * replaced entry in the check or stays for the next packet. */
		v->flags &= ~XLB_CT_F_REV_CHECK;
		r = XLB_CT_USE_CHECK;
	}
	return r;
}

/*
 * The reverse entry at rk, which said `old_flags/old_nat_*`, was just replaced
 * for another flow (or tunnel-return entry). When it belonged to a flow this
 * node balanced (a reverse entry with a frontend), that flow's forward entry
 * {client -> frontend} is flagged so its next packet restores its reverse
 * entry (xlb_ct_reverse_keep), as the replies must be reverse-NATed to the
 * frontend that client dialled. keep_*: the frontend of the flow that
 * replaced it (same frontend = same forward entry: nothing to do).
 */
static __always_inline void xlb_ct_flag_victim(const struct xlb_ct_key *rk, __u32 old_flags,
					       __be32 old_nat_addr, __be16 old_nat_port,
					       __be32 keep_addr, __be16 keep_port)
{
	struct xlb_ct_key fk = {
		.saddr = (old_flags & XLB_CT_F_HAIRPIN) ? rk->saddr : rk->daddr,
		.daddr = old_nat_addr, .sport = rk->dport, .dport = old_nat_port,
		.proto = rk->proto,
	};
	struct xlb_ct_val *fv;

	if (!(old_flags & XLB_CT_F_REVERSE) || !old_nat_addr)
		return;
	if (old_nat_addr == keep_addr && old_nat_port == keep_port)
		return;
	fv = bpf_map_lookup_elem(&ct, &fk);
	if (fv && !(fv->flags & XLB_CT_F_REVERSE))
		fv->flags |= XLB_CT_F_REV_CHECK;
	/* (every caller bumps ct_epoch next: the flow's next packet sees the
	 * flag, not a cached hit) */
}

/*
 * A pod whose Service chose the pod itself (hairpin): its packets must come
 * back from another address than its own, or its own replies would never
 * leave it. The tc program rewrites their source to XLB_HAIRPIN_ADDR.
 */
static __always_inline int xlb_hairpin(const struct xlb_ct_key *t, const struct xlb_choice *ch)
{
	return !ch->node && ch->addr == t->saddr;
}

/* Key of a flow's reverse entry: backend -> client (-> the hairpin address
 * when the client is the backend itself). */
static __always_inline void xlb_ct_rkey(const struct xlb_ct_key *t, const struct xlb_choice *ch,
					struct xlb_ct_key *rk)
{
	rk->saddr = ch->addr;
	rk->daddr = xlb_hairpin(t, ch) ? bpf_htonl(XLB_HAIRPIN_ADDR) : t->saddr;
	rk->sport = ch->port;
	rk->dport = t->sport;
	rk->proto = t->proto;
}

/*
 * Writes the forward entry (client -> frontend, as on the wire) and the
 * reverse entry (backend -> client, nat = frontend). With tunnel_peer, the
 * flow arrived by tunnel from that node and replies go back through it.
 */
static __always_inline int xlb_ct_create(const struct xlb_ct_key *t, const struct xlb_choice *ch,
					 __u32 svc_id, __be32 tunnel_peer, __u64 now)
{
	struct xlb_ct_key rk = {};
	struct xlb_ct_val v = {
		.backend_id = ch->backend_id,
		.generation = ch->generation,
		.svc_id = svc_id,
		.flags = (ch->node ? XLB_CT_F_REMOTE : 0) | (tunnel_peer ? XLB_CT_F_TUNNEL : 0),
		.tunnel_peer = tunnel_peer,
		.last_seen = now,
	};
	struct xlb_ct_val *old;
	int err, rerr;

	xlb_ct_rkey(t, ch, &rk);
	err = bpf_map_update_elem(&ct, t, &v, BPF_ANY);
	v.flags = XLB_CT_F_REVERSE | (tunnel_peer ? XLB_CT_F_TUNNEL : 0) |
		  (xlb_hairpin(t, ch) ? XLB_CT_F_HAIRPIN : 0);
	v.nat_addr = t->daddr;
	v.nat_port = t->dport;
	/* Usually new; when another flow's reverse entry is there, it is
	 * replaced (the newest flow wins, as its client is the one talking)
	 * and that flow is told to restore its own at its next packet. */
	rerr = bpf_map_update_elem(&ct, &rk, &v, BPF_NOEXIST);
	if (rerr == -XLB_EEXIST) {
		__u32 of = 0;
		__be32 oa = 0;
		__be16 op = 0;

		old = bpf_map_lookup_elem(&ct, &rk);
		if (old) {
			of = old->flags;
			oa = old->nat_addr;
			op = old->nat_port;
		}
		rerr = bpf_map_update_elem(&ct, &rk, &v, BPF_ANY);
		if (!rerr) {
			xlb_ct_flag_victim(&rk, of, oa, op, t->daddr, t->dport);
			xlb_ct_epoch_bump();
		}
	}
	err |= rerr;
	return err ? XLB_R_DROP_CT_FULL : XLB_OK;
}

/*
 * On a forward hit: keep the flow's reverse entry pointing at this flow. A
 * later flow with the same backend and client ports (a client reusing its
 * source port towards another node's NodePort, or that node's tunnel entry)
 * may have replaced it, and the replies would be reverse-NATed to the wrong
 * frontend (found by the lab). One lookup; a write only when it differs.
 */
static __always_inline void xlb_ct_reverse_keep(const struct xlb_ct_key *t,
						const struct xlb_choice *ch,
						const struct xlb_ct_val *fv, __u64 now)
{
	struct xlb_ct_key rk = {};
	__u32 tun = fv->flags & XLB_CT_F_TUNNEL;
	__u32 hp = xlb_hairpin(t, ch) ? XLB_CT_F_HAIRPIN : 0;
	struct xlb_ct_val *rv;
	struct xlb_ct_val nv = {};

	xlb_ct_rkey(t, ch, &rk);
	rv = bpf_map_lookup_elem(&ct, &rk);
	if (rv && rv->nat_addr == t->daddr && rv->nat_port == t->dport &&
	    (rv->flags & XLB_CT_F_TUNNEL) == tun && rv->tunnel_peer == fv->tunnel_peer)
		return;
	nv.backend_id = fv->backend_id;
	nv.generation = fv->generation;
	nv.svc_id = fv->svc_id;
	nv.flags = XLB_CT_F_REVERSE | tun | hp;
	nv.tunnel_peer = fv->tunnel_peer;
	nv.nat_addr = t->daddr;
	nv.nat_port = t->dport;
	nv.last_seen = now;
	if (rv) {
		__u32 of = rv->flags;
		__be32 oa = rv->nat_addr;
		__be16 op = rv->nat_port;

		if (!bpf_map_update_elem(&ct, &rk, &nv, BPF_ANY)) {
			xlb_ct_flag_victim(&rk, of, oa, op, t->daddr, t->dport);
			xlb_ct_epoch_bump();
		}
		return;
	}
	bpf_map_update_elem(&ct, &rk, &nv, BPF_ANY);
}

/* Reverse entry of a live reply (not timed out); refreshes last_seen. */
static __always_inline int xlb_ct_reverse_live(struct xlb_ct_val *v, __u8 proto, __u64 now)
{
	__u64 age = xlb_age(now, v->last_seen);

	if (age >= xlb_ct_timeout(proto))
		return 0;
	if (age > XLB_CT_TOUCH_NS)
		v->last_seen = now;
	return 1;
}

#endif /* XLB_LB_H */
