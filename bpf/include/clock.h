/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: the clock of every ct / affinity timestamp, and the XDP program's
 * reading of it without a helper call per packet.
 *
 * The clock is CLOCK_MONOTONIC at tick resolution (bpf_ktime_get_coarse_ns
 * reads the last tick's time, no clock source read). Timeouts are seconds and
 * refreshes once a second, so a tick is plenty. Userspace stamps entries with
 * the fine CLOCK_MONOTONIC, which may be ahead of the coarse clock by up to a
 * tick: ages are taken with xlb_age (never negative), so such an entry is
 * fresh, not "2^64 ns old".
 *
 * xlb_clock_now: a helper call is one of the costly steps of a ct hit, so a
 * BPF timer stores the coarse clock into the `clock` map every
 * XLB_CLOCK_TICK_NS and packets read it with a plain load (array lookups are
 * inlined). The value is xlb_now() at most a tick behind, which the
 * second-scale timeouts and the once-a-second refresh do not notice.
 *
 * The timer is armed by the first packet (value 0) and re-armed whenever it
 * lags: one packet in XLB_CLOCK_CHECK per CPU reads the real clock and
 * compares. When the timer cannot be armed (the kernel cancels map timers
 * once no file descriptor or pin holds the map: a private data plane whose
 * process left its programs attached), `broken` is set and every packet reads
 * the helper from then on. So a timer that stopped costs at most
 * XLB_CLOCK_CHECK packets per CPU of a stale clock.
 */
#ifndef XLB_CLOCK_H
#define XLB_CLOCK_H

#include "maps.h"

#ifndef CLOCK_MONOTONIC
#define CLOCK_MONOTONIC		1
#endif

#define XLB_EBUSY		16	/* bpf_timer_init: already initialised */

static __always_inline __u64 xlb_now(void)
{
	return bpf_ktime_get_coarse_ns();
}

static __always_inline __u64 xlb_age(__u64 now, __u64 then)
{
	return now > then ? now - then : 0;
}

static int xlb_clock_tick(void *map, __u32 *key, struct xlb_clock *c)
{
	c->now = xlb_now();
	bpf_timer_start(&c->timer, XLB_CLOCK_TICK_NS, 0);
	return 0;
}

static __always_inline __u64 xlb_clock_now(void)
{
	__u32 zero = 0;
	struct xlb_clock *c = bpf_map_lookup_elem(&clock, &zero);
	__u32 *n = bpf_map_lookup_elem(&clock_reads, &zero);
	__u64 now;

	long err;

	if (!c || !n || c->broken)
		return xlb_now();
	if (c->now && ((*n)++ & (XLB_CLOCK_CHECK - 1)))
		return c->now;
	now = xlb_now();
	if (xlb_age(now, c->now) > XLB_CLOCK_LAG_NS) {
		c->now = now;
		err = bpf_timer_init(&c->timer, &clock, CLOCK_MONOTONIC);
		if ((err && err != -XLB_EBUSY) ||
		    bpf_timer_set_callback(&c->timer, xlb_clock_tick) ||
		    bpf_timer_start(&c->timer, XLB_CLOCK_TICK_NS, 0))
			c->broken = 1;
	}
	return now;
}

#endif /* XLB_CLOCK_H */
