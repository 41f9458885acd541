/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: counters and events. Every packet increments exactly one reason
 * counter (its final outcome); packets of a Service also count on the
 * Service's slot, packets forwarded to a backend on the backend's. Dropped
 * and rejected frames are written to the `events` ring buffer while a
 * monitor reads it (xlb_event), at most `rate` per second and CPU.
 */
#ifndef XLB_STATS_H
#define XLB_STATS_H

#include "maps.h"

static __always_inline void xlb_count_idx(__u32 idx, __u64 bytes)
{
	struct xlb_counter *c = bpf_map_lookup_elem(&stats, &idx);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

static __always_inline void xlb_count(int reason, __u64 bytes)
{
	xlb_count_idx((__u32)reason & (XLB_NR_REASONS - 1), bytes);
}

static __always_inline void xlb_count_svc(__u32 svc_id, __u64 bytes)
{
	if (svc_id < XLB_MAX_SVC)
		xlb_count_idx(XLB_STATS_SVC_BASE + svc_id, bytes);
}

/* A frame forwarded to backend id (per CPU; no atomics, no shared lines). */
static __always_inline void xlb_count_backend(__u32 id, __u64 bytes)
{
	struct xlb_counter *c = bpf_map_lookup_elem(&backend_stats, &id);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

/* The monitor settings while a monitor reads `events`, else NULL (one
 * inlined array lookup: what a drop costs when nobody watches). */
static __always_inline struct xlb_monitor *xlb_monitor_on(void)
{
	__u32 zero = 0;
	struct xlb_monitor *m = bpf_map_lookup_elem(&monitor, &zero);

	return m && m->on ? m : NULL;
}

/* Fills an event's 5-tuple. Not inlined: the BTF of its prototype carries
 * struct xlb_event (a ring buffer record, no map's value type) to
 * userspace's generated types (xlb_bpf::types). Called at most `rate` times
 * per second and CPU. */
static __noinline void xlb_event_tuple(struct xlb_event *e, const struct xlb_ct_key *t)
{
	e->saddr = t->saddr;
	e->daddr = t->daddr;
	e->sport = t->sport;
	e->dport = t->dport;
	e->proto = t->proto;
}

/*
 * Writes one event for a dropped or rejected frame (5-tuple t as received),
 * unless this CPU already wrote `rate` events in the current second: then it
 * only counts it as suppressed. So a flood costs at most `rate` ring buffer
 * writes per second and CPU, plus this check per frame.
 */
static __always_inline void xlb_event(const struct xlb_monitor *m, int reason,
				      const struct xlb_ct_key *t, __u32 svc_id, __u64 len,
				      __u32 hook, __u32 ifindex, __u64 now)
{
	__u32 zero = 0, rate = m->rate ? m->rate : XLB_MON_RATE_DEFAULT;
	struct xlb_monitor_cpu *c = bpf_map_lookup_elem(&monitor_cpu, &zero);
	struct xlb_event *e;

	if (!c)
		return;
	if (now < c->window || now - c->window >= XLB_NSEC) {
		c->window = now;
		c->in_window = 0;
	}
	if (c->in_window >= rate) {
		c->suppressed++;
		return;
	}
	c->in_window++;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		c->lost++;
		return;
	}
	e->ts = now;
	e->reason = (__u32)reason;
	e->svc_id = svc_id;
	xlb_event_tuple(e, t);
	e->hook = (__u8)hook;
	e->family = 0;		/* IPv4 (IPv6 events: stats6.h) */
	e->pad = 0;
	e->ifindex = ifindex;
	e->len = (__u32)len;
	/* No wakeup per event (an interrupt-time wakeup costs microseconds):
	 * the monitor drains the ring every 100 ms, and is woken only when
	 * the ring is half full. */
	bpf_ringbuf_submit(e, bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > XLB_EVENTS_BYTES / 2 ?
				 BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
	c->sent++;
}

/* Reasons that are worth an event: drops, and frames answered instead of
 * forwarded (reject, fragmentation needed). */
static __always_inline int xlb_event_reason(int reason)
{
	return reason == XLB_R_DROP_NO_BACKEND || reason == XLB_R_DROP_SRC_RANGE ||
	       reason == XLB_R_DROP_ETP_LOCAL || reason == XLB_R_DROP_NO_TUNNEL || reason == XLB_R_DROP_FIB ||
	       reason == XLB_R_TX_FRAG_NEEDED || reason == XLB_R_TX_REJECT ||
	       reason == XLB_R_DROP_BAD_MAGLEV || reason == XLB_R_DROP_ADJUST;
}

#endif /* XLB_STATS_H */
