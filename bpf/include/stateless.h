/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: stateless flows (XDP, uplink). While a Service's Maglev table stays
 * unchanged, a flow's backend is the table's choice for its hash at every
 * packet: a ct entry would only repeat it. So a new UDP or TCP flow of an
 * eligible Service (svc_stable, written by the agent: UDP or TCP, no
 * affinity, Cluster traffic policy) from the uplink to a remote backend gets
 * no ct entry; its replies are reverse-NATed by the backend's node (tunnel
 * NAT, vxlan.h), so this node keeps nothing of it.
 *
 * A table change opens a window of the protocol's idle timeout (window_end:
 * ct_udp, or ct_tcp_established): a flow without a ct entry may then be one
 * that followed the table in force before (the stable table). It keeps that
 * table's backend while the backend lives, in a ct entry when it differs
 * from the current table's choice; new UDP flows cannot be told apart from
 * those and are treated the same, which is why the window lasts as long as
 * an idle flow would keep its ct entry. A TCP SYN without ACK is a new
 * connection for sure: it follows the current table (never a backend the
 * change took out, such as a terminating one), in ct (half-open, ctsyn.h)
 * when the stable table would name another backend, so that its later
 * packets are not taken for an older flow's. After the window every flow
 * without a ct entry follows the current table again.
 *
 * ct is not even looked up for such a frame when no ct entry of its Service
 * can exist: the window is closed and no ct entry of the Service was hit or
 * written within the protocol's longest timeout (ct_seen; entries pinned in
 * a window stay live only while their flows send, and each real hit
 * refreshes ct_seen); nor ct_syn when no half-open slot of it was written
 * within a slot's timeout.
 * docs/dp.md, "Stateless flows".
 */
#ifndef XLB_STATELESS_H
#define XLB_STATELESS_H

#include "maps.h"
#include "clock.h"
#include "lb.h"
#include "ct.h"

#define XLB_STABLE_CT		0	/* keep the flow in ct, with the backend in ch */
#define XLB_STABLE_FREE		1	/* no ct entry: the flow follows the table */

/* svc_id's svc_stable entry when the Service has a stateless path, or NULL. */
static __always_inline struct xlb_svc_stable *xlb_stable_of(__u32 svc_id)
{
	struct xlb_svc_stable *st = bpf_map_lookup_elem(&svc_stable, &svc_id);

	return st && st->table_size ? st : NULL;
}

/* No entry of the Service hit or written within timeout (plus the second
 * ct_seen and an entry's last_seen may each lag behind the last hit); a
 * ct_seen of 0: none ever (the data plane's now is never 0). */
static __always_inline int xlb_stable_quiet(const struct xlb_svc_stable *st, __u64 timeout,
					    __u64 now)
{
	return !st->ct_seen || xlb_age(now, st->ct_seen) > timeout + XLB_CT_TOUCH_NS;
}

/* No ct entry of the Service (protocol proto) can be live: window closed,
 * and none hit or written within the longest timeout of proto (an
 * established TCP entry's). */
static __always_inline int xlb_stable_no_ct(const struct xlb_svc_stable *st,
					    const struct xlb_config *cfg, __u8 proto, __u64 now)
{
	return now >= st->window_end && xlb_stable_quiet(st, xlb_ct_timeout(cfg, 0, proto), now);
}

/* No half-open ct_syn slot of the Service can be live: none written (each
 * write refreshes ct_seen) within a slot's timeout. */
static __always_inline int xlb_stable_no_syn(const struct xlb_svc_stable *st, __u64 now)
{
	return xlb_stable_quiet(st, (__u64)XLB_CT_TCP_SYN_S * XLB_NSEC, now);
}

/* A ct (or ct_syn) entry of the Service was hit or written: its flows must
 * look ct up for one more timeout. A write at most once a second. */
static __always_inline void xlb_stable_seen(struct xlb_svc_stable *st, __u64 now)
{
	if (xlb_age(now, st->ct_seen) > XLB_CT_TOUCH_NS)
		st->ct_seen = now;
}

/*
 * A UDP or TCP flow from the uplink without a ct entry, of a Service with
 * svc_stable st; ch: the current table's choice for hash; fresh: the frame
 * opens a new connection (a TCP SYN without ACK). XLB_STABLE_FREE when the
 * flow needs no ct entry (a remote backend that the stable table names too,
 * or any remote choice once the window is closed; only under tunnel NAT,
 * tnat: the backend's node must reverse-NAT the replies); else
 * XLB_STABLE_CT, with ch the stable table's backend when it lives and
 * differs and the flow is not fresh.
 */
static __always_inline int xlb_stable_choice(const struct xlb_svc_stable *st, __u32 hash,
					     __u64 now, struct xlb_choice *ch, int tnat, int fresh)
{
	__u32 slot, *id;

	if (now < st->window_end) {
		slot = st->table_off + hash % st->table_size;
		id = bpf_map_lookup_elem(&maglev, &slot);
		/* its backend gone (xlb_backend_get leaves ch as it is when the
		 * slot names none): the current choice, kept */
		if (!id)
			return XLB_STABLE_CT;
		if (*id != ch->backend_id) {
			if (!fresh)
				xlb_backend_get(*id, ch);
			return XLB_STABLE_CT;
		}
	}
	return ch->node && tnat ? XLB_STABLE_FREE : XLB_STABLE_CT;
}

/* What the flow cache keeps of a stateless flow: its choice, as a forward
 * ct entry would say it (the same checks on a cached hit: backend active at
 * the same generation). */
static __always_inline void xlb_stable_val(const struct xlb_choice *ch, __u32 svc_id, __u64 now,
					   struct xlb_ct_val *v)
{
	*v = (struct xlb_ct_val){
		.backend_id = ch->backend_id,
		.generation = ch->generation,
		.svc_id = svc_id,
		.flags = XLB_CT_F_REMOTE,
		.last_seen = now,
	};
}

/*
 * The backend a stateless flow t from the uplink has now, as its forward ct
 * entry would say it (for an ICMP error about the flow: icmperr.h,
 * xdp_related.h): 1 and *out filled when t is such a flow (a UDP or TCP
 * Service with a stateless path whose table choice needs no ct entry), else
 * 0.
 */
static __always_inline int xlb_stable_view(const struct xlb_ct_key *t,
					   const struct xlb_config *cfg, __u64 now,
					   struct xlb_ct_val *out)
{
	struct xlb_choice ch = {};
	struct xlb_svc_stable *st;
	struct xlb_svc_val *svc;
	__u32 h, slot, *id;

	if (t->proto != IPPROTO_UDP && t->proto != IPPROTO_TCP)
		return 0;
	svc = xlb_service(t->daddr, t->dport, t->proto, cfg->node_addr);
	if (!svc || !svc->table_size || (svc->flags & XLB_SVC_F_AFFINITY))
		return 0;
	st = xlb_stable_of(svc->svc_id);
	if (!st)
		return 0;
	h = xlb_flow_hash(t, 0);
	slot = svc->table_off + h % svc->table_size;
	id = bpf_map_lookup_elem(&maglev, &slot);
	if (!id || !xlb_backend_get(*id, &ch) ||
	    xlb_stable_choice(st, h, now, &ch, cfg->flags & XLB_CFG_F_TNAT, 0) != XLB_STABLE_FREE)
		return 0;
	xlb_stable_val(&ch, svc->svc_id, now, out);
	return 1;
}

#endif /* XLB_STATELESS_H */
