/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: connection tracking. A balanced flow has two entries in `ct`: the
 * forward one (client -> frontend, as on the wire) names the chosen backend
 * and its generation; the reverse one (backend -> client) names the frontend
 * to restore as the reply's source. A flow the uplink's XDP balances to a
 * remote backend has the forward entry only, flagged XLB_CT_F_TNAT: the
 * backend's node reverse-NATs its replies (tunnel NAT, vxlan.h), and nothing
 * here checks, restores or closes a reverse entry for it. Entries time out (xlb_ct_timeout) and are
 * refreshed at most once a second (XLB_CT_TOUCH_NS). A new TCP connection
 * enters ct at the client's ACK: until then it is half-open in ct_syn
 * (ctsyn.h).
 */
#ifndef XLB_CT_H
#define XLB_CT_H

#include "maps.h"
#include "clock.h"
#include "lb.h"

#define XLB_EEXIST		17	/* bpf_map_update_elem(BPF_NOEXIST): key exists */

/* Both directions closed: FIN from each side, or a RST. */
static __always_inline int xlb_ct_closed(__u32 flags)
{
	return (flags & XLB_CT_F_RST) ||
	       (flags & (XLB_CT_F_FIN_FWD | XLB_CT_F_FIN_REV)) ==
		       (XLB_CT_F_FIN_FWD | XLB_CT_F_FIN_REV);
}

/*
 * How long an entry with these flags lives without a packet: UDP
 * config.ct_udp; TCP established config.ct_tcp_established, half-open (only
 * the SYN seen) XLB_CT_TCP_SYN_S, closed (xlb_ct_closed) config.ct_tcp_close;
 * half-closed (one FIN) as established. An established TCP entry (no state
 * bit) takes the first branch that tests the flags.
 */
static __always_inline __u64 xlb_ct_timeout(const struct xlb_config *cfg, __u32 flags, __u8 proto)
{
	__u32 s;

	if (proto != IPPROTO_TCP)
		s = cfg->ct_udp ? cfg->ct_udp : XLB_CT_UDP_S;
	else if (!(flags & XLB_CT_F_TCP_STATE))
		s = cfg->ct_tcp_established ? cfg->ct_tcp_established : XLB_CT_TCP_ESTABLISHED_S;
	else if (xlb_ct_closed(flags))
		s = cfg->ct_tcp_close ? cfg->ct_tcp_close : XLB_CT_TCP_CLOSE_S;
	else if (flags & XLB_CT_F_SYN)
		s = XLB_CT_TCP_SYN_S;
	else
		s = cfg->ct_tcp_established ? cfg->ct_tcp_established : XLB_CT_TCP_ESTABLISHED_S;
	return (__u64)s * XLB_NSEC;
}

/* A pure SYN (no ACK): what opens a connection. */
static __always_inline int xlb_tcp_open(__u8 tcp_flags)
{
	return (tcp_flags & (XLB_TCP_SYN | XLB_TCP_ACK | XLB_TCP_RST)) == XLB_TCP_SYN;
}

/* The state bits of a new entry opened by a packet with these TCP flags
 * (0 for UDP): half-open when it is a pure SYN; a flow picked up mid-stream
 * (after an eviction) is established. */
static __always_inline __u32 xlb_ct_state_new(__u8 proto, __u8 tcp_flags)
{
	return proto == IPPROTO_TCP && xlb_tcp_open(tcp_flags) ? XLB_CT_F_SYN : 0;
}

/*
 * The flags of an entry after a packet with tcp_flags of its direction
 * (fin_bit: XLB_CT_F_FIN_FWD for the client's packets, XLB_CT_F_FIN_REV for
 * the backend's): the first packet without SYN of the client, or any reply,
 * ends the half-open state; FIN and RST are recorded.
 */
static __always_inline __u32 xlb_ct_state_next(__u32 flags, __u8 tcp_flags, __u32 fin_bit)
{
	if (fin_bit == XLB_CT_F_FIN_REV || !(tcp_flags & XLB_TCP_SYN))
		flags &= ~XLB_CT_F_SYN;
	if (tcp_flags & XLB_TCP_FIN)
		flags |= fin_bit;
	if (tcp_flags & XLB_TCP_RST)
		flags |= XLB_CT_F_RST;
	return flags;
}

/* A ct entry that a CPU may hold in its flow cache was replaced: void every
 * cached hit (rare: port reuse across frontends, flagged victims). */
static __always_inline void xlb_ct_epoch_bump(void)
{
	__u32 zero = 0;
	__u64 *e = bpf_map_lookup_elem(&ct_epoch, &zero);

	if (e)
		__sync_fetch_and_add(e, 1);
}

/* The backend of forward entry v into ch when the entry is live: not timed
 * out, its backend active at the generation it was chosen at. 0 = choose
 * again. (A check only: no refresh; xlb_ct_backend adds that.) */
static __always_inline int xlb_ct_live_backend(const struct xlb_ct_val *v,
					       const struct xlb_config *cfg, __u8 proto,
					       __u64 now, struct xlb_choice *ch)
{
	return xlb_age(now, v->last_seen) < xlb_ct_timeout(cfg, v->flags, proto) &&
	       xlb_backend_get(v->backend_id, ch) && ch->generation == v->generation;
}

#define XLB_CT_USE		1	/* forward hit: use the backend */
#define XLB_CT_CHECK		2	/* ... and check the flow's reverse entry (xlb_ct_reverse_keep) */
#define XLB_CT_SYNC		4	/* ... and copy the closing bits to it (xlb_ct_sync_reverse) */

/*
 * A forward-entry hit of a packet with tcp_flags: the backend it names, when
 * still live at the same generation and the entry has not timed out. 0 =
 * choose again (also for a pure SYN on a closed connection: a new one on the
 * same ports). Else XLB_CT_USE, with XLB_CT_CHECK / XLB_CT_SYNC for the caller.
 *
 * The flow's reverse entry is checked (one more ct lookup) only when it may
 * have changed: another flow took it (XLB_CT_F_REV_CHECK, set by whoever
 * replaced it: xlb_ct_flag_victim), or once a second with the last_seen
 * refresh (LRU eviction of the reverse entry alone is noticed then).
 * An established flow's packets (no state bit, no SYN/FIN/RST) test the
 * flags once and write nothing but the once-a-second refresh.
 */
static __always_inline int xlb_ct_backend(struct xlb_ct_val *v, const struct xlb_config *cfg,
					  __u8 proto, __u8 tcp_flags, __u64 now,
					  struct xlb_choice *ch)
{
	__u64 age = xlb_age(now, v->last_seen);
	__u32 f = v->flags, nf;
	int r = XLB_CT_USE;

	if (!xlb_ct_live_backend(v, cfg, proto, now, ch))
		return 0;
	if (age > XLB_CT_TOUCH_NS) {
		v->last_seen = now;
		r |= XLB_CT_CHECK;
	}
	if ((f & (XLB_CT_F_REV_CHECK | XLB_CT_F_TCP_STATE)) | (tcp_flags & XLB_TCP_CTRL)) {
		if (xlb_tcp_open(tcp_flags) && xlb_ct_closed(f))
			return 0;
		/* REV_CHECK cleared before the check: a flag set after this
		 * sees the replaced entry in the check or stays for the next
		 * packet. */
		if (f & XLB_CT_F_REV_CHECK)
			r |= XLB_CT_CHECK;
		nf = xlb_ct_state_next(f & ~XLB_CT_F_REV_CHECK, tcp_flags, XLB_CT_F_FIN_FWD);
		if ((nf & XLB_CT_F_CLOSING) != (f & XLB_CT_F_CLOSING))
			r |= XLB_CT_SYNC;
		if (nf != f)
			v->flags = nf;
	}
	/* tunnel NAT: no reverse entry on this node to check or close */
	if (f & XLB_CT_F_TNAT)
		r = XLB_CT_USE;
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

	/* (a tunnel NAT entry's frontend is another node's flow) */
	if (!(old_flags & XLB_CT_F_REVERSE) || !old_nat_addr || (old_flags & XLB_CT_F_TNAT))
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
 * flow arrived by tunnel from that node and replies go back through it. With
 * tnat (a remote backend whose node reverse-NATs the replies: the frames
 * carry the frontend, vxlan.h), the forward entry only, flagged XLB_CT_F_TNAT.
 */
static __always_inline int xlb_ct_create(const struct xlb_ct_key *t, const struct xlb_choice *ch,
					 __u32 svc_id, __be32 tunnel_peer, int tnat,
					 __u8 tcp_flags, __u64 now)
{
	__u32 state = xlb_ct_state_new(t->proto, tcp_flags);
	struct xlb_ct_key rk = {};
	struct xlb_ct_val v = {
		.backend_id = ch->backend_id,
		.generation = ch->generation,
		.svc_id = svc_id,
		.flags = (ch->node ? XLB_CT_F_REMOTE : 0) | (tunnel_peer ? XLB_CT_F_TUNNEL : 0) |
			 (tnat ? XLB_CT_F_TNAT : 0) | state,
		.tunnel_peer = tunnel_peer,
		.last_seen = now,
	};
	struct xlb_ct_val *old;
	int err, rerr;

	err = bpf_map_update_elem(&ct, t, &v, BPF_ANY);
	if (tnat)
		return err ? XLB_R_EVENT_CT_FULL : XLB_OK;
	xlb_ct_rkey(t, ch, &rk);
	v.flags = XLB_CT_F_REVERSE | (tunnel_peer ? XLB_CT_F_TUNNEL : 0) |
		  (xlb_hairpin(t, ch) ? XLB_CT_F_HAIRPIN : 0) | state;
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
	return err ? XLB_R_EVENT_CT_FULL : XLB_OK;
}

/*
 * On a forward hit: keep the flow's reverse entry pointing at this flow. A
 * later flow with the same backend and client ports (a client reusing its
 * source port towards another node's NodePort, or that node's tunnel entry)
 * may have replaced it, and the replies would be reverse-NATed to the wrong
 * frontend. One lookup; a write only when it differs.
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
	nv.flags = XLB_CT_F_REVERSE | tun | hp | (fv->flags & XLB_CT_F_CLOSING);
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

/*
 * A forward hit's FIN or RST changed its closing bits: the reverse entry
 * (when it is still this flow's) gets them too, so each entry knows when
 * both sides have closed. One lookup, on FIN/RST packets only.
 */
static __always_inline void xlb_ct_sync_reverse(const struct xlb_ct_key *t,
						const struct xlb_choice *ch, __u32 closing)
{
	struct xlb_ct_key rk = {};
	struct xlb_ct_val *rv;

	xlb_ct_rkey(t, ch, &rk);
	rv = bpf_map_lookup_elem(&ct, &rk);
	if (rv && (rv->flags & XLB_CT_F_REVERSE) && rv->nat_addr == t->daddr &&
	    rv->nat_port == t->dport)
		rv->flags |= closing;
}

/*
 * Reverse entry rv (key rk) of a live reply (not timed out) with tcp_flags;
 * refreshes last_seen. A reply ends the half-open state; its FIN / RST are
 * recorded here and, when this node balanced the flow, in the forward entry
 * {client -> frontend} too (one lookup, FIN/RST only).
 */
static __always_inline int xlb_ct_reverse_live(struct xlb_ct_val *v, const struct xlb_ct_key *rk,
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
		/* (a tunnel NAT entry's forward entry is on another node) */
		if ((nf & XLB_CT_F_CLOSING) != (f & XLB_CT_F_CLOSING) && v->nat_addr &&
		    !(f & XLB_CT_F_TNAT)) {
			struct xlb_ct_key fk = {
				.saddr = (f & XLB_CT_F_HAIRPIN) ? rk->saddr : rk->daddr,
				.daddr = v->nat_addr, .sport = rk->dport, .dport = v->nat_port,
				.proto = rk->proto,
			};
			struct xlb_ct_val *fv = bpf_map_lookup_elem(&ct, &fk);

			if (fv && !(fv->flags & XLB_CT_F_REVERSE))
				fv->flags |= nf & XLB_CT_F_CLOSING;
		}
	}
	return 1;
}

#endif /* XLB_CT_H */
