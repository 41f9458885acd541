/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: events of IPv6 frames: stats.h's xlb_event (same per-CPU rate limit,
 * same ring buffer) with family 6 and the addresses in saddr6/daddr6. A copy
 * rather than a shared helper, so that the IPv4 event code stays as it is.
 */
#ifndef XLB_STATS6_H
#define XLB_STATS6_H

#include "stats.h"

static __always_inline void xlb_event6(const struct xlb_monitor *m, int reason,
				       const struct xlb_ct6_key *t, __u32 svc_id, __u64 len,
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
	e->saddr = 0;
	e->daddr = 0;
	e->sport = t->sport;
	e->dport = t->dport;
	e->proto = t->proto;
	e->hook = (__u8)hook;
	e->family = 6;
	e->pad = 0;
	e->ifindex = ifindex;
	e->len = (__u32)len;
	__builtin_memcpy(e->saddr6, t->saddr, 16);
	__builtin_memcpy(e->daddr6, t->daddr, 16);
	bpf_ringbuf_submit(e, bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > XLB_EVENTS_BYTES / 2 ?
				 BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
	c->sent++;
}

#endif /* XLB_STATS6_H */
