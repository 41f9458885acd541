/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: counters. Every packet increments exactly one reason counter (its
 * final outcome); packets of a Service also count on the Service's slot.
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

#endif /* XLB_STATS_H */
