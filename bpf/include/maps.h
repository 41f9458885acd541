/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: every map of the data plane, BTF-style. The uplink XDP object and the
 * pod-veth tc object both include this file; the loader shares the maps
 * between them (pinned by name under the pin directory, or reuse_fd).
 */
#ifndef XLB_MAPS_H
#define XLB_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "types.h"

/* frontend (VIP | NodePort) -> Service port and its Maglev region */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XLB_MAX_FRONTENDS);
	__type(key, struct xlb_svc_key);
	__type(value, struct xlb_svc_val);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} services SEC(".maps");

/* Counting filter over the services keys: slot xlb_fe_slot(key) counts the
 * keys that hash there. A zero slot proves a key absent without a hash
 * lookup (traffic that is no Service skips both services lookups). Kept by
 * userspace (xlb_bpf::Maps counts before an insert and after a delete, so it
 * never under-counts); memory-mapped. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_FE_FILTER_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
	__uint(map_flags, BPF_F_MMAPABLE);
} fe_filter SEC(".maps");

/* Counting filter over the backends' addresses: slot xlb_be_slot(addr)
 * counts the backends slots (active or not) holding an address that hashes
 * there. With fe_filter it proves that an untunneled frame can match no ct
 * entry (forward entries are keyed by a frontend, reverse entries by a
 * backend's address), so such traffic skips the ct lookup too. Kept by
 * xlb_bpf::Maps::put_backend (counts the new address before the write,
 * uncounts the old one after); memory-mapped. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_BE_FILTER_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
	__uint(map_flags, BPF_F_MMAPABLE);
} be_filter SEC(".maps");

/* backend_id -> endpoint address, port, node, generation.
 * Memory-mapped by the agent (written as memory, not one update per backend). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct xlb_backend);
	__uint(map_flags, BPF_F_MMAPABLE);
} backends SEC(".maps");

/* Maglev slot -> backend_id; each frontend owns [table_off, table_off + table_size).
 * Memory-mapped by the agent (tables written as memory, not per-slot updates). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_MAGLEV_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
	__uint(map_flags, BPF_F_MMAPABLE);
} maglev SEC(".maps");

/* connection tracking: forward (client -> VIP) and reverse (backend -> client) entries */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XLB_CT_ENTRIES);
	__type(key, struct xlb_ct_key);
	__type(value, struct xlb_ct_val);
} ct SEC(".maps");

/* Epoch of `ct` as cached by the XDP program's flow cache (flowcache.h):
 * whoever replaces or deletes a ct entry that may be cached bumps it, which
 * voids every cached hit on every CPU. The data plane adds 1; userspace
 * (xlb_bpf::Maps) adds 1 << 32, so a value it writes was never seen before. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} ct_epoch SEC(".maps");

/* sessionAffinity ClientIP: {svc_id, client} -> backend */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XLB_AFFINITY_ENTRIES);
	__type(key, struct xlb_affinity_key);
	__type(value, struct xlb_affinity_val);
} affinity SEC(".maps");

/* loadBalancerSourceRanges: {svc_id, prefix} -> allow (1) */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, XLB_SRC_RANGES);
	__type(key, struct xlb_src_range_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} src_ranges SEC(".maps");

/* pod CIDR -> node underlay address and VTEP MAC */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, XLB_TUNNEL_ENTRIES);
	__type(key, struct xlb_tunnel_key);
	__type(value, struct xlb_tunnel_val);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} tunnel SEC(".maps");

/* this node's addresses (NodePort matches any of them) -> 1 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XLB_LOCAL_ADDRS);
	__type(key, __be32);
	__type(value, __u32);
} local_addrs SEC(".maps");

/* runtime settings: VXLAN port/VNI, uplink, feature flags */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xlb_config);
} config SEC(".maps");

/* per-reason and per-Service-port counters (layout in consts.h) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XLB_STATS_ENTRIES);
	__type(key, __u32);
	__type(value, struct xlb_counter);
} stats SEC(".maps");

#endif /* XLB_MAPS_H */
