/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: the XDP program's clock without a helper call per packet.
 *
 * Every kernel call costs ~40 ns on the reference VM (AMD, "Safe RET"
 * mitigation of SRSO: each return goes through a thunk), and
 * bpf_ktime_get_coarse_ns was one of the two calls of a ct hit. Here a BPF
 * timer stores the coarse CLOCK_MONOTONIC into `clock` every
 * XLB_CLOCK_TICK_NS, and packets read it with a plain load (array lookups
 * are inlined). The value is the same clock as xlb_now() (lb.h), at most a
 * tick behind, which the second-scale timeouts and the once-a-second refresh
 * do not notice; ages are taken with xlb_age (never negative).
 *
 * The timer is armed by the first packet (value 0) and re-armed whenever it
 * lags: one packet in XLB_CLOCK_CHECK per CPU reads the real clock and
 * compares. When the timer cannot be armed (the kernel cancels map timers
 * once no file descriptor or pin holds the map: a private data plane whose
 * process left its programs attached), `broken` is set and every packet reads
 * the helper from then on. So a timer that stopped costs at most
 * XLB_CLOCK_CHECK packets per CPU of a stale clock. Not shared with userspace
 * (no contract type).
 */
#ifndef XLB_CLOCK_H
#define XLB_CLOCK_H

#include "maps.h"
#include "lb.h"

#ifndef CLOCK_MONOTONIC
#define CLOCK_MONOTONIC		1
#endif

#define XLB_CLOCK_TICK_NS	(4ULL * 1000000ULL)	/* 4 ms */
#define XLB_CLOCK_LAG_NS	(16ULL * 1000000ULL)	/* re-arm when this far behind */
#define XLB_CLOCK_CHECK		256			/* power of two */

#define XLB_EBUSY		16	/* bpf_timer_init: already initialised */

struct xlb_clock {
	struct bpf_timer timer;
	__u64 now;		/* coarse CLOCK_MONOTONIC ns; 0 = not started */
	__u32 broken;		/* the timer cannot run: read the helper */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xlb_clock);
} clock SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} clock_reads SEC(".maps");

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
