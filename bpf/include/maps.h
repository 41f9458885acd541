/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: every map of the data plane, BTF-style. The uplink XDP object and the
 * pod-veth tc object both include this file; the loader shares the maps
 * between them (pinned under the pin directory, or reuse_fd).
 *
 * Two kinds, each listed in the loader (xlb_loader::pin):
 *   - the contract (CONTRACT_MAPS): read or written by userspace, or state
 *     that must outlive a restart. Their value types live in types.h; a new
 *     layout is a new pin directory;
 *   - private maps (PRIVATE_MAPS): the data plane's own caches, clock and
 *     fragment ports,
 *     declared with their value types at the end of this file; a new build
 *     may change them freely (the loader replaces them).
 *
 * One map lives elsewhere: sock_term, of sock_term.bpf.c, filled and emptied
 * around each run of its iterator by the process that loaded it, never
 * pinned.
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

/* Epoch of `ct` as cached by the XDP program's flow cache (flow_cache):
 * whoever replaces or deletes a ct entry that may be cached bumps it, which
 * voids every cached hit on every CPU. The data plane adds 1; userspace
 * (xlb_bpf::Maps) adds 1 << 32, so a value it writes was never seen before. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} ct_epoch SEC(".maps");

/* svc_id -> the table of the Service's stateless UDP flows (struct xlb_svc_stable) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_MAX_SVC);
	__type(key, __u32);
	__type(value, struct xlb_svc_stable);
} svc_stable SEC(".maps");

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

/* pod CIDR (or a node's IPv4 address/32: its host-network endpoints) -> node underlay address
 * and VTEP MAC */
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

/* the other nodes' addresses -> 1: a pod's NodePort traffic to one of them is
 * balanced at the pod's veth (tc) like traffic to this node's; the uplink
 * never matches them */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XLB_REMOTE_ADDRS);
	__type(key, __be32);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} remote_addrs SEC(".maps");

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

/* Forward packets/bytes per backend_id, per CPU (sized like backends by the
 * loader). Reset by userspace when an id is given to another endpoint
 * (xlb_bpf::Maps::put_backend), so a reused id starts from zero. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XLB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct xlb_counter);
} backend_stats SEC(".maps");

/* `xlb monitor`: whether a monitor reads `events`, and its rate. Off: the
 * drop paths write no events. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xlb_monitor);
} monitor SEC(".maps");

/* per-CPU rate limiter of `events` and what it sent, suppressed, lost */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xlb_monitor_cpu);
} monitor_cpu SEC(".maps");

/* dropped and rejected frames (struct xlb_event), for `xlb monitor` */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, XLB_EVENTS_BYTES);
} events SEC(".maps");


/* ---- IPv6 contract maps (types.h, docs/ipv6.md): the IPv4 maps' shapes
 * with 16-byte addresses. maglev, stats, backend_stats and the monitor maps
 * serve both families. ---- */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XLB_MAX_FRONTENDS6);
	__type(key, struct xlb_svc6_key);
	__type(value, struct xlb_svc_val);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} services6 SEC(".maps");

/* indexed by the backend ids of `backends` (one id space); sized like it */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct xlb_backend6);
	__uint(map_flags, BPF_F_MMAPABLE);
} backends6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XLB_CT6_ENTRIES);
	__type(key, struct xlb_ct6_key);
	__type(value, struct xlb_ct6_val);
} ct6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XLB_AFFINITY6_ENTRIES);
	__type(key, struct xlb_affinity6_key);
	__type(value, struct xlb_affinity_val);
} affinity6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, XLB_SRC_RANGES);
	__type(key, struct xlb_src_range6_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} src_ranges6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, XLB_TUNNEL_ENTRIES);
	__type(key, struct xlb_tunnel6_key);
	__type(value, struct xlb_tunnel6_val);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} tunnel6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XLB_LOCAL_ADDRS);
	__type(key, struct xlb_addr6);
	__type(value, __u32);
} local_addrs6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XLB_REMOTE_ADDRS);
	__type(key, struct xlb_addr6);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} remote_addrs6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xlb_config6);
} config6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XLB_SOCK_RNAT_ENTRIES);
	__type(key, struct xlb_sock_rnat6_key);
	__type(value, struct xlb_sock_rnat6_val);
} sock_rnat6 SEC(".maps");

/* ---- private maps (not shared with userspace; XDP only but `frag`) ---- */

/* How a flow was last sent to a remote node: the next hop (nh_cache) and the
 * VTEP MAC (vtep_cache) it resolved to, valid until the earlier of those two
 * entries' expiries. A cached hit of a remote flow sends without looking at
 * either cache. */
struct xlb_fc_enc {
	__u64 expires;		/* 0 = none */
	__be32 peer;		/* outer destination */
	__u32 in_ifindex;	/* fib input ifindex it is for */
	__u32 out_ifindex;	/* fib output ifindex */
	__u8 vtep[6];		/* inner destination MAC */
	__u8 dmac[6];		/* outer destination MAC */
	__u8 smac[6];		/* outer source MAC */
	__u8 pad[6];
};

/* A flow_cache slot: a copy of the ct entry of one 5-tuple (128 bytes). */
struct xlb_fc {
	struct xlb_ct_key key;
	struct xlb_ct_val val;
	__u64 expires;		/* clock + XLB_FC_TTL_NS; 0 = empty */
	__u64 epoch;		/* ct_epoch when cached */
	__u32 hash;		/* xlb_flow_hash(key, 0) */
	__u32 pad;
	struct xlb_fc_enc enc;
};
_Static_assert(sizeof(struct xlb_fc) == 128, "flow_cache slot size (docs/dp.md)");

/* per-CPU copies of the ct entries each CPU hit last, by xlb_fc_slot (flowcache.h) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XLB_FC_SLOTS);
	__type(key, __u32);
	__type(value, struct xlb_fc);
} flow_cache SEC(".maps");

/* An nh_cache slot: a fib answer for an outer destination (32 bytes). */
struct xlb_nh {
	__u64 expires;		/* xlb_now() + XLB_NH_TTL_NS; 0 = empty */
	__be32 peer;		/* outer destination */
	__u32 in_ifindex;	/* fib input ifindex the answer is for */
	__u32 out_ifindex;	/* fib output ifindex */
	__u8 dmac[6];
	__u8 smac[6];
};
_Static_assert(sizeof(struct xlb_nh) == 32, "nh_cache slot size (docs/dp.md)");

/* per-CPU fib answers: (peer, input ifindex) -> output ifindex and MACs (nh.h) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XLB_NH_SLOTS);
	__type(key, __u32);
	__type(value, struct xlb_nh);
} nh_cache SEC(".maps");

/* A vtep_cache slot: a backend's VTEP MAC from the tunnel map (24 bytes). */
struct xlb_vtep {
	__u64 expires;		/* 0 = empty */
	__be32 addr;		/* backend address */
	__u8 vtep_mac[6];
	__u8 pad[2];
};
_Static_assert(sizeof(struct xlb_vtep) == 24, "vtep_cache slot size (docs/dp.md)");

/* per-CPU tunnel answers: backend address -> VTEP MAC (nh.h) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XLB_VTEP_SLOTS);
	__type(key, __u32);
	__type(value, struct xlb_vtep);
} vtep_cache SEC(".maps");

/* nh6_cache / vtep6_cache: nh_cache and vtep_cache for the IPv6 program's
 * encapsulation (nh6.h): an IPv6 outer destination, an IPv6 backend. */
struct xlb_nh6 {
	__u64 expires;		/* xlb_now() + XLB_NH_TTL_NS; 0 = empty */
	__be32 peer[4];		/* outer destination */
	__u32 in_ifindex;	/* fib input ifindex the answer is for */
	__u32 out_ifindex;	/* fib output ifindex */
	__u8 dmac[6];
	__u8 smac[6];
	__u32 pad;
};
_Static_assert(sizeof(struct xlb_nh6) == 48, "nh6_cache slot size (docs/dp.md)");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XLB_NH_SLOTS);
	__type(key, __u32);
	__type(value, struct xlb_nh6);
} nh6_cache SEC(".maps");

struct xlb_vtep6 {
	__u64 expires;		/* 0 = empty */
	__be32 addr[4];		/* backend address */
	__u8 vtep_mac[6];
	__u8 pad[2];
};
_Static_assert(sizeof(struct xlb_vtep6) == 32, "vtep6_cache slot size (docs/dp.md)");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XLB_VTEP_SLOTS);
	__type(key, __u32);
	__type(value, struct xlb_vtep6);
} vtep6_cache SEC(".maps");

/* The timer-driven clock (clock.h). */
struct xlb_clock {
	struct bpf_timer timer;
	__u64 now;		/* coarse CLOCK_MONOTONIC ns; 0 = not started */
	__u32 broken;		/* the timer cannot run: read the helper */
	__u32 pad;
};

/* the coarse clock as last stored by its timer */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xlb_clock);
} clock SEC(".maps");

/* A datagram's fragments: source, destination, IP ID and protocol, as on
 * the wire (frag.h). */
struct xlb_frag_key {
	__be32 saddr;
	__be32 daddr;
	__be16 id;
	__u8 proto;
	__u8 pad;
};

/* The ports its first fragment carried. */
struct xlb_frag_val {
	__be16 sport;
	__be16 dport;
};

/* first fragments translated here -> their ports, for the later fragments
 * (frag.h); XDP and tc */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XLB_FRAG_ENTRIES);
	__type(key, struct xlb_frag_key);
	__type(value, struct xlb_frag_val);
} frag SEC(".maps");

/* An IPv6 datagram's fragments: source, destination, fragment header id
 * (the IPv6 reassembly key, RFC 8200 4.5) and upper-layer protocol (frag6.h). */
struct xlb_frag6_key {
	__be32 saddr[4];
	__be32 daddr[4];
	__be32 id;
	__u8 proto;
	__u8 pad[3];
};

/* first IPv6 fragments translated here -> their ports (value: struct
 * xlb_frag_val), for the later fragments (frag6.h); XDP */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XLB_FRAG6_ENTRIES);
	__type(key, struct xlb_frag6_key);
	__type(value, struct xlb_frag_val);
} frag6 SEC(".maps");

/* An IPv6 backend as chosen, copied out of backends6 (lb6.h). */
struct xlb_choice6 {
	__u32 backend_id;
	__u32 generation;
	__be32 addr[4];
	__be32 node[4];		/* all zero: this node */
	__be16 port;
	__u8 flags;		/* XLB_BE_F_* */
	__u8 pad;
};

/* What xlb6_to_peer sends, and how (in scratch6). */
struct xlb_send6 {
	__be32 peer[4];			/* the node to encapsulate to */
	__be32 nat_addr[4];		/* with has_nat: the address to NAT to */
	__u8 inner_dmac[6];		/* with has_dmac; else config.mac */
	__u8 has_dmac;
	__u8 has_nat;
	__u32 hash;			/* flow hash: outer UDP source port */
	__u32 backend_id;		/* with has_be: the backend a forwarded frame counts on */
	__u16 ok_reason;		/* the reason counted when sent */
	__u8 nat_dir;			/* XLB_NAT_SRC / XLB_NAT_DST */
	__u8 mark;			/* set XLB_VXLAN_F_SVC */
	__be16 nat_port;
	__u8 has_be;
	__u8 pad;
};

/* A reply's reverse entry as read. */
struct xlb_rev6 {
	__be32 nat_addr[4];
	__be32 peer[4];
	__u32 flags;
	__u32 svc_id;
	__be16 nat_port;
	__u16 pad;
};

/* The XDP IPv6 path's working state that holds no pointer (xdp6.h): per
 * CPU, so that its subprograms' stack frames stay small (their sum on a
 * call chain is bounded by 512 bytes). */
struct xlb_scratch6 {
	struct xlb_ct6_key t;		/* the (inner) 5-tuple as received */
	struct xlb_choice6 ch;		/* the chosen backend */
	struct xlb_send6 s;
	struct xlb_rev6 rv;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xlb_scratch6);
} scratch6 SEC(".maps");

/* The XDP IPv6 path (xdp6.h), a program of its own: xlb_xdp tail-calls it
 * for IPv6 frames. Filled when the XDP object loads. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__array(values, int(void *));
} xdp6_prog SEC(".maps")
#ifdef XLB_XDP_OBJECT
	= { .values = { [0] = (void *)&xlb_xdp6 } }
#endif
	;

/* per-CPU count of clock reads (one in XLB_CLOCK_CHECK checks the timer) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} clock_reads SEC(".maps");

/* where (which network namespace) and how the socket hooks (sock.bpf.c) act */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xlb_sock_config);
} sock_config SEC(".maps");

/* {socket, backend} -> frontend: getpeername()/recvmsg() show the frontend
 * (Cilium's lb4_reverse_nat_sk map); LRU: a closed socket's entry ages out */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XLB_SOCK_RNAT_ENTRIES);
	__type(key, struct xlb_sock_rnat_key);
	__type(value, struct xlb_sock_rnat_val);
} sock_rnat SEC(".maps");

/*
 * A half-open TCP connection: the client's SYN was balanced, nothing else of
 * the client seen yet (ctsyn.h). Keyed by the client (slot = hash of its
 * address and port); names the frontend it dialled and the backend chosen,
 * so the backend's SYN-ACK can be reverse-NATed and the client's ACK
 * promotes the connection into `ct` with that backend. `check` is a hash of
 * the other fields: slots are shared by every CPU and written without a lock,
 * so a torn copy (two CPUs writing one slot) is seen as empty.
 */
struct xlb_syn {
	__u32 check;		/* xlb_syn_sum of the fields below; 0 with them all: empty */
	__u32 flags;		/* XLB_CT_F_SYN | XLB_CT_F_REMOTE | XLB_CT_F_TUNNEL | XLB_CT_F_RST */
	__be32 client;
	__be32 fe_addr;		/* the frontend the client dialled */
	__be32 be_addr;		/* the backend chosen */
	__be32 tunnel_peer;	/* XLB_CT_F_TUNNEL: the node the SYN came by */
	__be16 client_port;
	__be16 fe_port;
	__be16 be_port;
	__u16 pad;
	__u32 backend_id;
	__u32 generation;
	__u32 svc_id;
	__u32 pad1;
	__u64 last_seen;	/* the SYN (or its last retransmit) */
	__u64 pad2;
};
_Static_assert(sizeof(struct xlb_syn) == 64, "ct_syn slot size (docs/dp.md)");

/* half-open TCP connections, by xlb_syn_slot (ctsyn.h); both programs */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_SYN_SLOTS);
	__type(key, __u32);
	__type(value, struct xlb_syn);
} ct_syn SEC(".maps");

#endif /* XLB_MAPS_H */
