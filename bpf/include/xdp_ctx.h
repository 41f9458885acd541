/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb uplink XDP, IPv4 path (xdp.bpf.c): the per-frame context every step
 * takes, and the counting of a frame's outcome (its reason counter; an event
 * for `xlb monitor` where it is a drop or an answer). Its own header so that
 * the steps in xdp_send.h, xdp_flow.h and xdp_related.h share one definition.
 */
#ifndef XLB_XDP_CTX_H
#define XLB_XDP_CTX_H

#include "maps.h"
#include "parse.h"
#include "stats.h"
#include "clock.h"
#include "hash.h"
#include "ct.h"
#include "vxlan.h"
#include "flowcache.h"

struct xlb_ctx {
	struct xdp_md *ctx;
	struct xlb_config *cfg;
	struct xlb_pkt p;
	struct xlb_tun tun;
	__u64 bytes;		/* frame length as received */
	__u64 now;		/* xlb_clock_now(), read once when needed: xlb_now_of */
	__u32 hash;		/* xlb_flow_hash of the (inner) 5-tuple: xlb_hash_of */
	__u32 has_hash;
	struct xlb_fc *fc;	/* this flow's flow-cache slot (hit or just filled), or NULL */
	const struct xlb_ct_key *t;	/* the (inner) 5-tuple as received, for events; or NULL */
	__u32 svc_id;		/* the frame's Service port once known, for events; else XLB_NO_SVC */
};


static __always_inline __u64 xlb_now_of(struct xlb_ctx *x)
{
	if (!x->now)
		x->now = xlb_clock_now();
	return x->now;
}

/* The flow hash of t (the frame's 5-tuple), computed once. */
static __always_inline __u32 xlb_hash_of(struct xlb_ctx *x, const struct xlb_ct_key *t)
{
	if (!x->has_hash) {
		x->hash = xlb_flow_hash(t, 0);
		x->has_hash = 1;
	}
	return x->hash;
}

static __always_inline int xlb_done(int reason, __u64 bytes, int verdict)
{
	xlb_count(reason, bytes);
	return verdict;
}

/* A frame's outcome where it may be a drop or an answer: its reason counter,
 * and an event for `xlb monitor` (only while a monitor is on). */
static __always_inline int xlb_end(struct xlb_ctx *x, int reason, int verdict)
{
	struct xlb_monitor *m;

	if (x->t && xlb_event_reason(reason) && (m = xlb_monitor_on()))
		/* the helper's clock, not the timer's: an event's time must be
		 * exact even where traffic is too light to re-arm the timer */
		xlb_event(m, reason, x->t, x->svc_id, x->bytes, XLB_HOOK_XDP,
			  x->ctx->ingress_ifindex, xlb_now());
	return xlb_done(reason, x->bytes, verdict);
}

#endif /* XLB_XDP_CTX_H */
