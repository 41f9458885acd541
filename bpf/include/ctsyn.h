/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: half-open TCP connections, kept apart from `ct` (`ct_syn`, maps.h).
 *
 * A pure SYN of a 5-tuple without a ct entry writes one ct_syn slot instead
 * of the two ct entries of a connection: a SYN flood (any number of spoofed
 * sources) overwrites ct_syn slots and never evicts an established flow from
 * ct. The slot (keyed by the client's address and port) gives
 *   - a retransmitted SYN: the backend the first one went to;
 *   - the backend's replies before the client's ACK (SYN-ACK, RST): reverse
 *     NAT to the frontend dialled, or the way back through the tunnel;
 *   - the client's first packet without SYN (its ACK): the flow is promoted
 *     into ct (xlb_ct_create: forward and reverse entries, or the forward
 *     one only under tunnel NAT; established) with
 *     the backend the SYN went to, whatever the Maglev table says by then;
 *   - ICMP errors about the half-open connection (xlb_syn_view).
 * A slot lives XLB_CT_TCP_SYN_S without a packet, config.ct_tcp_close after a
 * RST (ct.h's timeouts of the same state bits), and ends when ct gets the
 * flow (promoted) or a later flow of the same client port and backend (a
 * client reusing its port towards another frontend, by another path than a
 * slot: a tunnelled flow, a SYN on the ports of a closed ct entry): an older
 * slot left behind would pass for the newer flow in xlb_syn_reply_newer and
 * reverse-NAT its SYN-ACK to the frontend the old flow dialled. A slot overwritten by another
 * client's SYN before the handshake ends (a collision, a flood faster than
 * the table turns over) loses its half-open connection as an LRU eviction
 * would: the client's ACK is balanced again by Maglev (the same backend while
 * the table is unchanged), a SYN-ACK in flight passes untranslated and the
 * client's SYN retransmit opens the connection again.
 *
 * Slots are shared by every CPU and written without a lock; `check` (a hash
 * of the other fields, never 0) is written with them, and a reader uses a
 * copy only when its check matches, so a slot torn by two writers is empty.
 * Hairpin flows (a pod reaching itself) and a SYN on the ports of a ct entry
 * that is no longer live (a closed connection) go to ct as before. A node
 * that receives a marked SYN for its backend (another node balanced it)
 * keeps it half-open too (xlb_syn_tunnel).
 */
#ifndef XLB_CTSYN_H
#define XLB_CTSYN_H

#include "maps.h"
#include "clock.h"
#include "hash.h"
#include "lb.h"
#include "ct.h"

#define XLB_SYN_USE		1	/* use the backend (a retransmitted SYN, a RST) */
#define XLB_SYN_PROMOTE		2	/* use it and promote the flow into ct */

static __always_inline struct xlb_syn *xlb_syn_at(__be32 client, __be16 port)
{
	__u32 i = xlb_slot_hash(bpf_ntohl(client) ^ ((__u32)port << 16), XLB_SYN_BITS);

	return bpf_map_lookup_elem(&ct_syn, &i);
}

/* The check of s: a multiplicative hash of every field but itself, never 0
 * (an all-zero slot is empty). */
static __always_inline __u32 xlb_syn_sum(const struct xlb_syn *s)
{
	const __u64 *w = (const __u64 *)s;
	__u64 k = 0x9e3779b97f4a7c15ULL, h = ((__u64)s->flags + 1) * k;

	h = (h ^ w[1]) * k;
	h = (h ^ w[2]) * k;
	h = (h ^ w[3]) * k;
	h = (h ^ w[4]) * k;
	h = (h ^ w[5]) * k;
	h = (h ^ w[6]) * k;
	h = (h ^ w[7]) * k;
	return (__u32)(h ^ (h >> 32)) | 1;
}

static __always_inline void xlb_syn_put(struct xlb_syn *s, struct xlb_syn *v)
{
	v->check = xlb_syn_sum(v);
	__builtin_memcpy(s, v, sizeof(*v));
}

/* The half-open connection t (client -> frontend, as the client sends) into
 * out; its slot, or NULL. */
static __always_inline struct xlb_syn *xlb_syn_fwd(const struct xlb_ct_key *t, struct xlb_syn *out)
{
	struct xlb_syn *s = xlb_syn_at(t->saddr, t->sport);

	if (!s)
		return NULL;
	__builtin_memcpy(out, s, sizeof(*out));
	if (out->client != t->saddr || out->client_port != t->sport || out->fe_addr != t->daddr ||
	    out->fe_port != t->dport || out->check != xlb_syn_sum(out))
		return NULL;
	return s;
}

/* The half-open connection a reply t (backend -> client) belongs to. */
static __always_inline struct xlb_syn *xlb_syn_rev(const struct xlb_ct_key *t, struct xlb_syn *out)
{
	struct xlb_syn *s = xlb_syn_at(t->daddr, t->dport);

	if (!s)
		return NULL;
	__builtin_memcpy(out, s, sizeof(*out));
	if (out->client != t->daddr || out->client_port != t->dport || out->be_addr != t->saddr ||
	    out->be_port != t->sport || out->check != xlb_syn_sum(out))
		return NULL;
	return s;
}

/* Empties slot s, when it still holds hs: its flow is in ct now. */
static __always_inline void xlb_syn_end(struct xlb_syn *s, const struct xlb_syn *hs)
{
	if (s->check == hs->check)
		s->check = 0;
}

/*
 * ct was just written for the flow whose replies are rk (backend -> client):
 * a half-open slot of the same client port and backend is older than that
 * entry (its flow promoted on another path, or another flow of the ports
 * opened in ct since) and is emptied, so that xlb_syn_reply_newer never
 * prefers it to ct's reverse entry.
 */
static __always_inline void xlb_syn_end_rev(const struct xlb_ct_key *rk)
{
	struct xlb_syn hs, *s;

	if (rk->proto != IPPROTO_TCP)
		return;
	s = xlb_syn_rev(rk, &hs);
	if (s)
		xlb_syn_end(s, &hs);
}

/* xlb_syn_end_rev for flow t (client -> frontend) to backend ch. */
static __always_inline void xlb_syn_end_flow(const struct xlb_ct_key *t,
					     const struct xlb_choice *ch)
{
	struct xlb_ct_key rk = {};

	xlb_ct_rkey(t, ch, &rk);
	xlb_syn_end_rev(&rk);
}

/*
 * A pure SYN t without a ct entry, balanced to ch: its half-open slot
 * (replacing whatever the slot held). tunnel_peer: the node it came by.
 */
static __always_inline void xlb_syn_create(const struct xlb_ct_key *t, const struct xlb_choice *ch,
					   __u32 svc_id, __be32 tunnel_peer, __u64 now)
{
	struct xlb_syn *s = xlb_syn_at(t->saddr, t->sport);
	struct xlb_syn v = {
		.flags = XLB_CT_F_SYN | (ch->node ? XLB_CT_F_REMOTE : 0) |
			 (tunnel_peer ? XLB_CT_F_TUNNEL : 0),
		.client = t->saddr, .client_port = t->sport,
		.fe_addr = t->daddr, .fe_port = t->dport,
		.be_addr = ch->addr, .be_port = ch->port,
		.tunnel_peer = tunnel_peer,
		.backend_id = ch->backend_id, .generation = ch->generation,
		.svc_id = svc_id,
		.last_seen = now,
	};

	if (s)
		xlb_syn_put(s, &v);
}

/*
 * A pure SYN that came marked by tunnel from node peer, whose backend (this
 * node's) is the reply rk's source: a half-open tunnel-return connection. Its
 * replies go back through the tunnel: untranslated (no frontend: the peer
 * reverse-NATs), or under tunnel NAT (the frontend trailer: fe_addr, fe_port)
 * reverse-NATed here and marked XLB_VXLAN_F_XLATED, as the tunnel-return ct
 * entry's will be (the peer may keep nothing of the connection: stateless.h).
 * The client's ACK, marked too, writes that ct entry (xlb_tunnel_in). A
 * client's own packet never uses the slot: it names no backend id, so
 * xlb_syn_backend chooses again.
 */
static __always_inline void xlb_syn_tunnel(const struct xlb_ct_key *rk, __be32 peer,
					   __be32 fe_addr, __be16 fe_port, __u64 now)
{
	struct xlb_syn *s = xlb_syn_at(rk->daddr, rk->dport);
	struct xlb_syn v = {
		.flags = XLB_CT_F_SYN | XLB_CT_F_TUNNEL | (fe_addr ? XLB_CT_F_TNAT : 0),
		.client = rk->daddr, .client_port = rk->dport,
		.fe_addr = fe_addr, .fe_port = fe_port,
		.be_addr = rk->saddr, .be_port = rk->sport,
		.tunnel_peer = peer,
		/* the Service is the peer's: none counted here */
		.svc_id = fe_addr ? XLB_NO_SVC : 0,
		.last_seen = now,
	};

	if (s)
		xlb_syn_put(s, &v);
}

/*
 * The client's packet (tcp_flags) on half-open hs (a copy of slot s): 0 =
 * choose again (timed out, backend gone or of another generation, a SYN
 * after a RST); else XLB_SYN_USE (a retransmitted SYN: last_seen refreshed at
 * most once a second; a RST: recorded) or XLB_SYN_PROMOTE (the first packet
 * without SYN). ch: the backend.
 */
static __always_inline int xlb_syn_backend(struct xlb_syn *s, struct xlb_syn *hs,
					   const struct xlb_config *cfg, __u8 tcp_flags, __u64 now,
					   struct xlb_choice *ch)
{
	__u64 age = xlb_age(now, hs->last_seen);
	__u32 f = hs->flags;

	if (age >= xlb_ct_timeout(cfg, f, IPPROTO_TCP) || !xlb_backend_get(hs->backend_id, ch) ||
	    ch->generation != hs->generation)
		return 0;
	if (tcp_flags & XLB_TCP_RST) {
		if (!(f & XLB_CT_F_RST)) {
			hs->flags = f | XLB_CT_F_RST;
			xlb_syn_put(s, hs);
		}
		return XLB_SYN_USE;
	}
	if (xlb_ct_closed(f))
		return xlb_tcp_open(tcp_flags) ? 0 : XLB_SYN_USE;
	if (tcp_flags & XLB_TCP_SYN) {
		if (age > XLB_CT_TOUCH_NS) {
			hs->last_seen = now;
			xlb_syn_put(s, hs);
		}
		return XLB_SYN_USE;
	}
	return XLB_SYN_PROMOTE;
}

/* hs (a copy of slot s) as the ct entry it stands for: the reverse entry
 * (backend -> client, nat = frontend) or the forward one. */
static __always_inline void xlb_syn_as_ct(const struct xlb_syn *hs, int reverse,
					  struct xlb_ct_val *v)
{
	__builtin_memset(v, 0, sizeof(*v));
	v->backend_id = hs->backend_id;
	v->generation = hs->generation;
	v->svc_id = hs->svc_id;
	v->tunnel_peer = hs->tunnel_peer;
	v->last_seen = hs->last_seen;
	if (reverse) {
		v->flags = XLB_CT_F_REVERSE |
			   (hs->flags & (XLB_CT_F_TUNNEL | XLB_CT_F_TNAT | XLB_CT_F_TCP_STATE));
		v->nat_addr = hs->fe_addr;
		v->nat_port = hs->fe_port;
	} else {
		v->flags = hs->flags;
	}
}

/*
 * A reply (tcp_flags) on half-open hs (a copy of slot s): 0 when timed out;
 * else 1 with v = the reverse entry to translate it by. A RST is recorded.
 */
static __always_inline int xlb_syn_reply(struct xlb_syn *s, struct xlb_syn *hs,
					 const struct xlb_config *cfg, __u8 tcp_flags, __u64 now,
					 struct xlb_ct_val *v)
{
	if (xlb_age(now, hs->last_seen) >= xlb_ct_timeout(cfg, hs->flags, IPPROTO_TCP))
		return 0;
	if ((tcp_flags & XLB_TCP_RST) && !(hs->flags & XLB_CT_F_RST)) {
		hs->flags |= XLB_CT_F_RST;
		xlb_syn_put(s, hs);
	}
	xlb_syn_as_ct(hs, 1, v);
	return 1;
}

/*
 * A reply t (tcp_flags) that found reverse entry rv in ct: the half-open
 * connection to use instead, when the reply may open a connection (SYN-ACK,
 * RST) and a newer SYN of the same client port to the same backend went to
 * another frontend (port reuse across frontends: ct's reverse entry is still
 * the earlier flow's until the new one is promoted). 1 with v set.
 */
static __always_inline int xlb_syn_reply_newer(const struct xlb_ct_key *t,
					       const struct xlb_ct_val *rv,
					       const struct xlb_config *cfg, __u8 tcp_flags,
					       __u64 now, struct xlb_ct_val *v)
{
	struct xlb_syn hs, *s;

	if (t->proto != IPPROTO_TCP || !(tcp_flags & (XLB_TCP_SYN | XLB_TCP_RST)))
		return 0;
	s = xlb_syn_rev(t, &hs);
	if (!s || (hs.fe_addr == rv->nat_addr && hs.fe_port == rv->nat_port))
		return 0;
	return xlb_syn_reply(s, &hs, cfg, tcp_flags, now, v);
}

/* The half-open connection k is a 5-tuple of (either direction), as the ct
 * entry it stands for, into v: for ICMP errors about it (icmperr.h). */
static __always_inline int xlb_syn_view(const struct xlb_ct_key *k, struct xlb_ct_val *v)
{
	struct xlb_syn hs;

	if (k->proto != IPPROTO_TCP)
		return 0;
	if (xlb_syn_fwd(k, &hs)) {
		xlb_syn_as_ct(&hs, 0, v);
		return 1;
	}
	if (xlb_syn_rev(k, &hs)) {
		xlb_syn_as_ct(&hs, 1, v);
		return 1;
	}
	return 0;
}

#endif /* XLB_CTSYN_H */
