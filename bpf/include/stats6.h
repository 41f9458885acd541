/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* xlb: events of IPv6 frames (stats.h's limiter; family 6, saddr6/daddr6). */
#ifndef XLB_STATS6_H
#define XLB_STATS6_H

#include "stats.h"

static __always_inline void xlb_event6(const struct xlb_monitor *m, int reason,
				       const struct xlb_ct6_key *t, __u32 svc_id, __u64 len,
				       __u32 hook, __u32 ifindex, __u64 now)
{
	struct xlb_monitor_cpu *c = NULL;
	struct xlb_event *e = xlb_event_new(m, reason, svc_id, len, hook, ifindex, now, &c);

	if (!e || !c)
		return;
	e->family = 6;
	e->saddr = 0;
	e->daddr = 0;
	__builtin_memcpy(e->saddr6, t->saddr, 16);
	__builtin_memcpy(e->daddr6, t->daddr, 16);
	e->sport = t->sport;
	e->dport = t->dport;
	e->proto = t->proto;
	xlb_event_send(e, c);
}

#endif /* XLB_STATS6_H */
