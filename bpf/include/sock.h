/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: the socket hooks' own types and maps (sock.bpf.c). The Service,
 * backend and Maglev maps are the shared ones of maps.h; these two are used
 * by the socket hooks only and pinned next to them.
 */
#ifndef XLB_SOCK_H
#define XLB_SOCK_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"

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

/* where (which network namespace) and how the socket hooks act */
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

#endif /* XLB_SOCK_H */
