/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: IPv6 connection tracking in `ct6`, ct.h's entries and rules with
 * 16-byte addresses: a forward entry (client -> frontend as on the wire)
 * names the backend and its generation, a reverse entry (backend -> client)
 * the frontend to restore; the TCP state bits, timeouts (xlb_ct_timeout)
 * and once-a-second refresh are ct.h's. A new IPv6 connection's SYN writes
 * both entries at once (XLB_CT_F_SYN, the half-open timeout): there is no
 * IPv6 half-open table (ctsyn.h) and no flow cache.
 */
#ifndef XLB_CT6_H
#define XLB_CT6_H

#include "maps.h"
#include "clock.h"
#include "ct.h"
#include "lb6.h"

/* Source address a pod's packets to itself through an IPv6 Service carry
 * (hairpin), as XLB_HAIRPIN_ADDR for IPv4: 100::a9fe:2a01, in the
 * discard-only prefix 100::/64 (RFC 6666), never a real peer. Not
 * link-local: a pod answers a link-local source on-link, through neighbour
 * discovery nobody answers; 100::/64 goes out by the pod's default route,
 * into its veth, where tc turns the reply around. Network-order words. */
#define XLB_HAIRPIN6_W0	bpf_htonl(0x01000000)
#define XLB_HAIRPIN6_W3	bpf_htonl(0xa9fe2a01)

static __always_inline void xlb_hairpin6_addr(__be32 *a)
{
	a[0] = XLB_HAIRPIN6_W0;
	a[1] = 0;
	a[2] = 0;
	a[3] = XLB_HAIRPIN6_W3;
}

/* The backend of forward entry v into ch when live (not timed out, backend
 * active at the same generation). 0 = choose again. No refresh. */
static __always_inline int xlb_ct6_live_backend(const struct xlb_ct6_val *v,
						const struct xlb_config *cfg, __u8 proto,
						__u64 now, struct xlb_choice6 *ch)
{
	return xlb_age(now, v->last_seen) < xlb_ct_timeout(cfg, v->flags, proto) &&
	       xlb_backend6_get(v->backend_id, ch) && ch->generation == v->generation;
}

/* A forward-entry hit of a packet with tcp_flags: xlb_ct_backend's rules
 * (XLB_CT_USE / XLB_CT_CHECK / XLB_CT_SYNC; 0 = choose again). */
static __always_inline int xlb_ct6_backend(struct xlb_ct6_val *v, const struct xlb_config *cfg,
					   __u8 proto, __u8 tcp_flags, __u64 now,
					   struct xlb_choice6 *ch)
{
	__u64 age = xlb_age(now, v->last_seen);
	__u32 f = v->flags, nf;
	int r = XLB_CT_USE;

	if (!xlb_ct6_live_backend(v, cfg, proto, now, ch))
		return 0;
	if (age > XLB_CT_TOUCH_NS) {
		v->last_seen = now;
		r |= XLB_CT_CHECK;
	}
	if ((f & (XLB_CT_F_REV_CHECK | XLB_CT_F_TCP_STATE)) | (tcp_flags & XLB_TCP_CTRL)) {
		if (xlb_tcp_open(tcp_flags) && xlb_ct_closed(f))
			return 0;
		if (f & XLB_CT_F_REV_CHECK)
			r |= XLB_CT_CHECK;
		nf = xlb_ct_state_next(f & ~XLB_CT_F_REV_CHECK, tcp_flags, XLB_CT_F_FIN_FWD);
		if ((nf & XLB_CT_F_CLOSING) != (f & XLB_CT_F_CLOSING))
			r |= XLB_CT_SYNC;
		if (nf != f)
			v->flags = nf;
	}
	return r;
}

/* The reverse entry at rk (old_* as it was) was replaced for another flow:
 * flag the victim's forward entry so it restores its own (xlb_ct_flag_victim). */
static __always_inline void xlb_ct6_flag_victim(const struct xlb_ct6_key *rk, __u32 old_flags,
						const __be32 *old_nat_addr, __be16 old_nat_port,
						const __be32 *keep_addr, __be16 keep_port)
{
	struct xlb_ct6_key fk = { .sport = rk->dport, .dport = old_nat_port, .proto = rk->proto };
	struct xlb_ct6_val *fv;

	if (!(old_flags & XLB_CT_F_REVERSE) || xlb_addr6_zero(old_nat_addr))
		return;
	if (keep_addr && xlb_addr6_eq(old_nat_addr, keep_addr) && old_nat_port == keep_port)
		return;
	xlb_addr6_copy(fk.saddr, (old_flags & XLB_CT_F_HAIRPIN) ? rk->saddr : rk->daddr);
	xlb_addr6_copy(fk.daddr, old_nat_addr);
	fv = bpf_map_lookup_elem(&ct6, &fk);
	if (fv && !(fv->flags & XLB_CT_F_REVERSE))
		fv->flags |= XLB_CT_F_REV_CHECK;
}

static __always_inline int xlb_hairpin6(const struct xlb_ct6_key *t, const struct xlb_choice6 *ch)
{
	return xlb_addr6_zero(ch->node) && xlb_addr6_eq(ch->addr, t->saddr);
}

/* Key of a flow's reverse entry: backend -> client (-> the hairpin address
 * when the client is the backend itself). */
static __always_inline void xlb_ct6_rkey(const struct xlb_ct6_key *t, const struct xlb_choice6 *ch,
					 struct xlb_ct6_key *rk)
{
	xlb_addr6_copy(rk->saddr, ch->addr);
	if (xlb_hairpin6(t, ch))
		xlb_hairpin6_addr(rk->daddr);
	else
		xlb_addr6_copy(rk->daddr, t->saddr);
	rk->sport = ch->port;
	rk->dport = t->sport;
	rk->proto = t->proto;
}

/* Writes the forward and reverse entries of a new flow (xlb_ct_create). */
static __always_inline int xlb_ct6_create(const struct xlb_ct6_key *t,
					  const struct xlb_choice6 *ch, __u32 svc_id,
					  const __be32 *tunnel_peer, __u8 tcp_flags, __u64 now)
{
	__u32 state = xlb_ct_state_new(t->proto, tcp_flags);
	__u32 tun = tunnel_peer && !xlb_addr6_zero(tunnel_peer) ? XLB_CT_F_TUNNEL : 0;
	struct xlb_ct6_key rk = {};
	struct xlb_ct6_val v = {
		.backend_id = ch->backend_id,
		.generation = ch->generation,
		.svc_id = svc_id,
		.flags = (xlb_addr6_zero(ch->node) ? 0 : XLB_CT_F_REMOTE) | tun | state,
		.last_seen = now,
	};
	struct xlb_ct6_val *old;
	int err, rerr;

	if (tun)
		xlb_addr6_copy(v.tunnel_peer, tunnel_peer);
	xlb_ct6_rkey(t, ch, &rk);
	err = bpf_map_update_elem(&ct6, t, &v, BPF_ANY);
	v.flags = XLB_CT_F_REVERSE | tun | (xlb_hairpin6(t, ch) ? XLB_CT_F_HAIRPIN : 0) | state;
	xlb_addr6_copy(v.nat_addr, t->daddr);
	v.nat_port = t->dport;
	rerr = bpf_map_update_elem(&ct6, &rk, &v, BPF_NOEXIST);
	if (rerr == -XLB_EEXIST) {
		__be32 oa[4] = {};
		__be16 op = 0;
		__u32 of = 0;

		old = bpf_map_lookup_elem(&ct6, &rk);
		if (old) {
			of = old->flags;
			op = old->nat_port;
			xlb_addr6_copy(oa, old->nat_addr);
		}
		rerr = bpf_map_update_elem(&ct6, &rk, &v, BPF_ANY);
		if (!rerr)
			xlb_ct6_flag_victim(&rk, of, oa, op, t->daddr, t->dport);
	}
	err |= rerr;
	return err ? XLB_R_EVENT_CT_FULL : XLB_OK;
}

/* On a forward hit: keep the flow's reverse entry pointing at this flow
 * (xlb_ct_reverse_keep). */
static __always_inline void xlb_ct6_reverse_keep(const struct xlb_ct6_key *t,
						 const struct xlb_choice6 *ch,
						 const struct xlb_ct6_val *fv, __u64 now)
{
	struct xlb_ct6_key rk = {};
	__u32 tun = fv->flags & XLB_CT_F_TUNNEL;
	struct xlb_ct6_val *rv, nv = {};
	__be32 oa[4] = {};
	__be16 op = 0;
	__u32 of = 0;

	xlb_ct6_rkey(t, ch, &rk);
	rv = bpf_map_lookup_elem(&ct6, &rk);
	if (rv && xlb_addr6_eq(rv->nat_addr, t->daddr) && rv->nat_port == t->dport &&
	    (rv->flags & XLB_CT_F_TUNNEL) == tun && xlb_addr6_eq(rv->tunnel_peer, fv->tunnel_peer))
		return;
	nv.backend_id = fv->backend_id;
	nv.generation = fv->generation;
	nv.svc_id = fv->svc_id;
	nv.flags = XLB_CT_F_REVERSE | tun | (xlb_hairpin6(t, ch) ? XLB_CT_F_HAIRPIN : 0) |
		   (fv->flags & XLB_CT_F_CLOSING);
	xlb_addr6_copy(nv.tunnel_peer, fv->tunnel_peer);
	xlb_addr6_copy(nv.nat_addr, t->daddr);
	nv.nat_port = t->dport;
	nv.last_seen = now;
	if (rv) {
		of = rv->flags;
		op = rv->nat_port;
		xlb_addr6_copy(oa, rv->nat_addr);
	}
	if (!bpf_map_update_elem(&ct6, &rk, &nv, BPF_ANY) && rv)
		xlb_ct6_flag_victim(&rk, of, oa, op, t->daddr, t->dport);
}

/* A forward hit's FIN or RST: the reverse entry gets the closing bits. */
static __always_inline void xlb_ct6_sync_reverse(const struct xlb_ct6_key *t,
						 const struct xlb_choice6 *ch, __u32 closing)
{
	struct xlb_ct6_key rk = {};
	struct xlb_ct6_val *rv;

	xlb_ct6_rkey(t, ch, &rk);
	rv = bpf_map_lookup_elem(&ct6, &rk);
	if (rv && (rv->flags & XLB_CT_F_REVERSE) && xlb_addr6_eq(rv->nat_addr, t->daddr) &&
	    rv->nat_port == t->dport)
		rv->flags |= closing;
}

/* Reverse entry v (key rk) of a reply: live? refresh, TCP state, closing
 * bits to the forward entry (xlb_ct_reverse_live). */
static __always_inline int xlb_ct6_reverse_live(struct xlb_ct6_val *v,
						const struct xlb_ct6_key *rk,
						const struct xlb_config *cfg, __u8 tcp_flags,
						__u64 now)
{
	__u64 age = xlb_age(now, v->last_seen);
	__u32 f = v->flags, nf;

	if (age >= xlb_ct_timeout(cfg, f, rk->proto))
		return 0;
	if (age > XLB_CT_TOUCH_NS)
		v->last_seen = now;
	if ((f & XLB_CT_F_TCP_STATE) | (tcp_flags & XLB_TCP_CTRL)) {
		nf = xlb_ct_state_next(f, tcp_flags, XLB_CT_F_FIN_REV);
		if (nf != f)
			v->flags = nf;
		if ((nf & XLB_CT_F_CLOSING) != (f & XLB_CT_F_CLOSING) &&
		    !xlb_addr6_zero(v->nat_addr)) {
			struct xlb_ct6_key fk = {
				.sport = rk->dport, .dport = v->nat_port, .proto = rk->proto,
			};
			struct xlb_ct6_val *fv;

			xlb_addr6_copy(fk.saddr, (f & XLB_CT_F_HAIRPIN) ? rk->saddr : rk->daddr);
			xlb_addr6_copy(fk.daddr, v->nat_addr);
			fv = bpf_map_lookup_elem(&ct6, &fk);
			if (fv && !(fv->flags & XLB_CT_F_REVERSE))
				fv->flags |= nf & XLB_CT_F_CLOSING;
		}
	}
	return 1;
}

#endif /* XLB_CT6_H */
