/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: every struct shared by the data plane and userspace. Declared once,
 * here; Rust uses the skeleton's generated types (xlb_bpf::types) with
 * size/offset assertions. Addresses and ports are network byte order.
 */
#ifndef XLB_TYPES_H
#define XLB_TYPES_H

#include <linux/types.h>
#include "consts.h"

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

/*
 * svc_stable: svc_id -> the Maglev table the Service's stateless UDP flows
 * follow (docs/dp.md, "Stateless flows"). Written by the agent (sync),
 * read by the XDP program; ct_seen is the data plane's.
 */
struct xlb_svc_stable {
	__u32 table_off;	/* the stable table's region in maglev */
	__u32 table_size;	/* 0: no stateless path (every flow of the Service in ct) */
	__u64 window_end;	/* CLOCK_MONOTONIC ns: until then the table changed within
				 * ct_udp, and a flow without a ct entry follows the
				 * stable table (while its backend lives) */
	__u64 ct_seen;		/* CLOCK_MONOTONIC ns a ct entry of the Service was last
				 * hit or written (data plane, at most once a second;
				 * userspace writes its own now with every update) */
};

/* After the VXLAN header of a frame marked XLB_VXLAN_F_FE: the frontend the
 * flow was balanced from, for the backend's node to reverse-NAT the replies. */
struct xlb_vxlan_fe {
	__be32 addr;
	__be16 port;
	__u16 pad;
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
	/* ct timeouts in seconds (ct.h); 0 = the default */
	__u32 ct_tcp_established;	/* XLB_CT_TCP_ESTABLISHED_S */
	__u32 ct_tcp_close;	/* FIN from both sides, or a RST: XLB_CT_TCP_CLOSE_S */
	__u32 ct_udp;		/* XLB_CT_UDP_S */
};

/* stats and backend_stats: PERCPU_ARRAY */
struct xlb_counter {
	__u64 packets;
	__u64 bytes;
};

/* monitor: ARRAY[1], written by `xlb monitor` */
struct xlb_monitor {
	__u32 on;		/* a monitor is reading `events` */
	__u32 rate;		/* events per second and CPU; 0 = XLB_MON_RATE_DEFAULT */
};

/* monitor_cpu: PERCPU_ARRAY[1], the events' rate limiter and its counts */
struct xlb_monitor_cpu {
	__u64 window;		/* start of the current one-second window (ns) */
	__u64 sent;		/* events written to the ring buffer */
	__u64 suppressed;	/* events over the rate, not written */
	__u64 lost;		/* events the ring buffer had no room for */
	__u32 in_window;	/* events written in the current window */
	__u32 pad;
};

/* events: one dropped or rejected frame (RINGBUF record) */
struct xlb_event {
	__u64 ts;		/* CLOCK_MONOTONIC ns (coarse) */
	__u32 reason;		/* enum xlb_reason */
	__u32 svc_id;		/* XLB_NO_SVC: no Service known */
	__be32 saddr;		/* the (inner) frame's 5-tuple as received */
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 hook;		/* XLB_HOOK_* */
	__u8 family;		/* 0 (or 4): saddr/daddr; 6: saddr6/daddr6 */
	__u8 pad;
	__u32 ifindex;		/* ingress interface */
	__u32 len;		/* frame length */
	__be32 saddr6[4];	/* family 6: the addresses (saddr, daddr are 0) */
	__be32 daddr6[4];
};

/* The packet generator and sink (pktgen.bpf.c; xlb-pktgen) */

/* pg_conf: generator settings (ARRAY[1]), written by userspace before a run. */
struct pg_conf {
	__u32 copy_len;		/* template bytes copied into every frame (multiple of 8) */
	__u32 ip_off;		/* the IP header whose address varies (inner one with VXLAN);
				 * IPv4 or IPv6 by the ethertype in front of it */
	__u32 l4_off;		/* its L4 header */
	__u32 csum_off;		/* its L4 checksum field */
	__u32 stamp_off;	/* struct pg_stamp */
	__u32 outer_sport_off;	/* VXLAN: outer UDP source port (flow entropy); 0 = none */
	__u32 flows;		/* distinct flows, >= 1; 0: every frame a new flow */
	__u32 addrs;		/* distinct addresses the flows are spread over, >= 1 */
	__u32 addr_base;	/* host order: first varied address (IPv6: its last 32 bits) */
	__u16 port_base;	/* host order: first varied port */
	__u8 vary_dst;		/* 0: vary source address/port; 1: destination */
	__u8 is_udp;		/* L4 is UDP: a computed checksum of 0 is sent as 0xffff */
	__u32 redirect_ifindex;	/* 0: XDP_TX out of the ingress interface; else bpf_redirect */
	__u32 l4_csum_seed;	/* ~L4 checksum of the template with the varied fields zero */
	__u8 tmpl[XLB_PG_TMPL_MAX];
};

/* pg_gen: per-CPU generator state */
struct pg_gen_state {
	__u64 seq;		/* repetitions run on this CPU */
	__u64 errors;		/* of which the template did not fit (dropped, not sent) */
};

/* pg_sink: per-CPU sink counters and latency histogram */
struct pg_sink_stats {
	__u64 packets;		/* every frame seen */
	__u64 bytes;
	__u64 stamped;		/* frames carrying a generator stamp */
	__u64 vxlan;		/* stamped frames that arrived VXLAN-encapsulated */
	__u64 hist[XLB_PG_HIST_BUCKETS];	/* latency ns, see lat_bucket() in pktgen.bpf.c */
};

/* the socket hooks (sock.bpf.c) */
/* sock_config: ARRAY[1] */
struct xlb_sock_config {
	__u64 netns_cookie;	/* the network namespace the hooks act in; 0 = none */
	__u32 flags;		/* XLB_SOCK_F_* */
	__u32 pad;
};

/* sock_rnat: a socket that was sent to a backend -> the frontend it dialled */
struct xlb_sock_rnat_key {
	__u64 cookie;		/* bpf_get_socket_cookie */
	__be32 addr;		/* backend address */
	__be16 port;		/* backend port */
	__u8 proto;		/* IPPROTO_TCP / IPPROTO_UDP */
	__u8 pad;
};

struct xlb_sock_rnat_val {
	__be32 addr;		/* frontend address as dialled (ClusterIP, node address, 127.0.0.1) */
	__be16 port;		/* frontend port as dialled */
	__u16 pad;
};

/*
 * IPv6 (docs/ipv6.md). The same shapes as the IPv4 maps above with 16-byte
 * addresses (four network-order words, as struct in6_addr's s6_addr32), in
 * maps of their own: the IPv4 keys, hashes and entries stay exactly as they
 * are, and a frame does one lookup in its family's map. Values that hold no
 * address (xlb_svc_val, xlb_affinity_val, xlb_counter) are shared; svc_id,
 * backend_id and the Maglev slot array are one space for both families.
 */

/* services6: frontend -> Service port (value: struct xlb_svc_val) */
struct xlb_svc6_key {
	__be32 addr[4];		/* all zero for XLB_KIND_NODEPORT */
	__be16 port;
	__u8 proto;
	__u8 kind;		/* XLB_KIND_* */
};

/* backends6: backend_id (array index, the ids of `backends`) -> IPv6 endpoint */
struct xlb_backend6 {
	__be32 addr[4];
	__be16 port;
	__u8 flags;		/* XLB_BE_F_* */
	__u8 pad;
	__u32 generation;	/* bumped when the id is freed or reused */
	__be32 node[4];		/* the node's IPv6 underlay address; all zero = this node */
};

/* ct6: 5-tuple as seen on the wire in that direction */
struct xlb_ct6_key {
	__be32 saddr[4];
	__be32 daddr[4];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct xlb_ct6_val {
	__u32 backend_id;	/* forward: chosen backend (backends6) */
	__u32 generation;
	__u32 svc_id;
	__u32 flags;		/* XLB_CT_F_* */
	__be32 tunnel_peer[4];	/* XLB_CT_F_TUNNEL: node (IPv6 underlay) to return replies to */
	__be32 nat_addr[4];	/* reverse: address to restore as source (VIP) */
	__be16 nat_port;	/* reverse: port to restore as source */
	__u16 pad;
	__u32 pad2;
	__u64 last_seen;	/* CLOCK_MONOTONIC ns (coarse) */
};

/* affinity6: sessionAffinity ClientIP on the /128 (value: struct xlb_affinity_val) */
struct xlb_affinity6_key {
	__u32 svc_id;
	__be32 client[4];
};

/* src_ranges6: LPM, prefixlen counts svc_id's 32 bits plus the address prefix */
struct xlb_src_range6_key {
	__u32 prefixlen;	/* 32 + address prefix length (0..=128) */
	__be32 svc_id;		/* big endian so the trie matches it bit by bit */
	__be32 addr[4];
};

/* tunnel6: IPv6 pod CIDR -> node (flannel's IPv6 VXLAN: IPv6 underlay) */
struct xlb_tunnel6_key {
	__u32 prefixlen;
	__be32 addr[4];
};

struct xlb_tunnel6_val {
	__be32 node[4];		/* the node's IPv6 underlay address (public-ipv6) */
	__u8 vtep_mac[6];	/* its IPv6 VTEP MAC (backend-v6-data) */
	__u8 pad[2];
};

/* local_addrs6 / remote_addrs6 key: one IPv6 address */
struct xlb_addr6 {
	__be32 addr[4];
};

/* config6: ARRAY[1], what the IPv6 paths need beyond struct xlb_config
 * (VXLAN port, VNI, MTU, uplink and flags are config's) */
struct xlb_config6 {
	__be32 node_addr[4];	/* this node's IPv6 underlay address (outer source); 0 = none */
	__u32 flags;		/* XLB_CFG6_F_* */
	__u32 pad;
};

/* sock_rnat6: an IPv6 socket that was sent to a backend -> the frontend it dialled */
struct xlb_sock_rnat6_key {
	__u64 cookie;		/* bpf_get_socket_cookie */
	__be32 addr[4];		/* backend address */
	__be16 port;
	__u8 proto;
	__u8 pad;
	__u32 pad2;
};

struct xlb_sock_rnat6_val {
	__be32 addr[4];		/* frontend address as dialled */
	__be16 port;
	__u16 pad;
};

#endif /* XLB_TYPES_H */
