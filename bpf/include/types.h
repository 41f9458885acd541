/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: every struct shared by the data plane and userspace. Declared once,
 * here; Rust uses the skeleton's generated types (xlb_bpf::types) with
 * size/offset assertions. Addresses and ports are network byte order.
 */
#ifndef XLB_TYPES_H
#define XLB_TYPES_H

#include <linux/types.h>

/* services: frontend -> Service port */
struct xlb_svc_key {
	__be32 addr;		/* 0 for XLB_KIND_NODEPORT */
	__be16 port;
	__u8 proto;		/* IPPROTO_TCP / IPPROTO_UDP */
	__u8 kind;		/* XLB_KIND_* */
};

struct xlb_svc_val {
	__u32 svc_id;		/* < XLB_MAX_SVC; indexes stats and affinity */
	__u32 flags;		/* XLB_SVC_F_* */
	__u32 table_off;	/* first Maglev slot of this frontend's region */
	__u32 table_size;	/* M (prime); 0 = no usable endpoint -> reject */
	__u32 affinity_timeout;	/* seconds, with XLB_SVC_F_AFFINITY */
	__u32 n_local;		/* backends on this node in the region */
	__u8 fe_type;		/* XLB_FE_* */
	__u8 pad[3];
	__u32 pad2;
};

/* backends: backend_id (array index) -> endpoint */
struct xlb_backend {
	__be32 addr;
	__be16 port;
	__u8 flags;		/* XLB_BE_F_* */
	__u8 pad;
	__be32 node;		/* underlay address of the node; 0 = this node */
	__u32 generation;	/* bumped when the id is freed or reused */
};

/* ct: 5-tuple as seen on the wire in that direction */
struct xlb_ct_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct xlb_ct_val {
	__u32 backend_id;	/* forward: chosen backend */
	__u32 generation;	/* backend generation at choice time */
	__u32 svc_id;
	__u32 flags;		/* XLB_CT_F_* */
	__be32 tunnel_peer;	/* XLB_CT_F_TUNNEL: node to return replies to */
	__be32 nat_addr;	/* reverse: address to restore as source (VIP) */
	__be16 nat_port;	/* reverse: port to restore as source */
	__u16 pad;
	__u32 pad2;
	__u64 last_seen;	/* CLOCK_MONOTONIC ns (bpf_ktime_get_coarse_ns) */
};

/* affinity: sessionAffinity ClientIP */
struct xlb_affinity_key {
	__u32 svc_id;
	__be32 client;
};

struct xlb_affinity_val {
	__u32 backend_id;
	__u32 generation;
	__u64 last_seen;	/* CLOCK_MONOTONIC ns (bpf_ktime_get_coarse_ns) */
};

/* src_ranges: LPM, prefixlen counts svc_id's 32 bits plus the address prefix */
struct xlb_src_range_key {
	__u32 prefixlen;	/* 32 + address prefix length */
	__be32 svc_id;		/* big endian so the trie matches it bit by bit */
	__be32 addr;
};

/* tunnel: pod CIDR -> node */
struct xlb_tunnel_key {
	__u32 prefixlen;
	__be32 addr;
};

struct xlb_tunnel_val {
	__be32 node;		/* node underlay address (outer destination) */
	__u8 vtep_mac[6];	/* that node's VTEP MAC (inner destination) */
	__u8 pad[2];
};

/* config: ARRAY[1] */
struct xlb_config {
	__be32 node_addr;	/* this node's underlay address (outer source) */
	__be16 vxlan_port;	/* network order */
	__u16 mtu;		/* uplink MTU; 0 = 1500 */
	__u32 vni;		/* host order, 24 bits */
	__u32 ifindex;		/* uplink ifindex */
	__u8 mac[6];		/* uplink MAC */
	__u8 pad[2];
	__u32 flags;		/* XLB_CFG_F_* */
	__u32 pad2;
};

/* stats: PERCPU_ARRAY */
struct xlb_counter {
	__u64 packets;
	__u64 bytes;
};

#endif /* XLB_TYPES_H */
