// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Kernel floors for `xlb bench prog`: what single kernel operations of the
 * data plane cost on this machine, timed like the paths (one frame per
 * BPF_PROG_RUN) next to the XDP_DROP baseline. Each program does one kind of
 * operation on maps shaped like the data plane's `ct` (same key, value and
 * map type) and drops. A path can be no cheaper than the floors it must pay:
 * a new connection writes two ct entries (forward and reverse), which is
 * `floor_ct_insert_pair`.
 *
 * Keys are taken from the frame (IPv4 addresses and ports at their fixed
 * offsets for a 20-byte header), so distinct frames give distinct keys.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include "types.h"

#define FLOOR_CT_ENTRIES	(1 << 20)

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FLOOR_CT_ENTRIES);
	__type(key, struct xlb_ct_key);
	__type(value, struct xlb_ct_val);
} floor_ct SEC(".maps");

/* The 5-tuple of a plain Ethernet + 20-byte IPv4 + TCP/UDP frame. */
static __always_inline int floor_key(struct xdp_md *ctx, struct xlb_ct_key *k)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + sizeof(struct ethhdr);
	__be16 *ports = (void *)(ip + 1);

	if ((void *)(ports + 2) > data_end)
		return 0;
	k->saddr = ip->saddr;
	k->daddr = ip->daddr;
	k->sport = ports[0];
	k->dport = ports[1];
	k->proto = ip->protocol;
	return 1;
}

/* One ct lookup (hit when the frame's flow was inserted, else a miss). */
SEC("xdp")
int floor_ct_lookup(struct xdp_md *ctx)
{
	struct xlb_ct_key k = {};
	struct xlb_ct_val *v;

	if (!floor_key(ctx, &k))
		return XDP_ABORTED;
	v = bpf_map_lookup_elem(&floor_ct, &k);
	if (v)
		v->flags |= 1;
	return XDP_DROP;
}

/* One new ct entry: the frame's flow. */
SEC("xdp")
int floor_ct_insert(struct xdp_md *ctx)
{
	struct xlb_ct_key k = {};
	struct xlb_ct_val v = { .backend_id = 1 };

	if (!floor_key(ctx, &k))
		return XDP_ABORTED;
	if (bpf_map_update_elem(&floor_ct, &k, &v, BPF_ANY))
		return XDP_ABORTED;
	return XDP_DROP;
}

/* The two entries of a new connection: the flow and its reverse. */
SEC("xdp")
int floor_ct_insert_pair(struct xdp_md *ctx)
{
	struct xlb_ct_key k = {}, r = {};
	struct xlb_ct_val v = { .backend_id = 1 };

	if (!floor_key(ctx, &k))
		return XDP_ABORTED;
	if (bpf_map_update_elem(&floor_ct, &k, &v, BPF_ANY))
		return XDP_ABORTED;
	r.saddr = k.daddr;
	r.daddr = k.saddr;
	r.sport = k.dport;
	r.dport = k.sport;
	r.proto = k.proto;
	if (bpf_map_update_elem(&floor_ct, &r, &v, BPF_NOEXIST))
		return XDP_ABORTED;
	return XDP_DROP;
}

/* Room for an outer header and back (encapsulation / decapsulation). */
SEC("xdp")
int floor_adjust_head(struct xdp_md *ctx)
{
	if (bpf_xdp_adjust_head(ctx, -50))
		return XDP_ABORTED;
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
