// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xlb socket termination: a UDP socket iterator (SEC("iter/udp"), run by the
 * agent after a sync that took backends away) that destroys the connected
 * UDP sockets of the node's processes whose peer is a backend that left the
 * Service the socket was balanced to, as Cilium's socket LB does. The
 * process gets ECONNABORTED; its next connect() goes through connect4
 * (sock.bpf.c) again and gets a live backend. kube-proxy reaches the same
 * end by flushing the UDP conntrack entries of a removed endpoint.
 *
 * Which sockets: connected (TCP_ESTABLISHED), of the network namespace
 * whose cookie sock_config holds (the one the socket hooks act in; the
 * iterator itself walks the namespace of the thread that runs it, and both
 * must agree), with a sock_rnat entry {cookie, peer, UDP} (so connect4 sent
 * it there: a socket dialled straight to a pod address is none of xlb's
 * business), whose frontend and peer the agent listed in sock_term. A
 * backend that left Service A but still backs Service B loses only the
 * sockets balanced through A's frontends. IPv6 sockets the same way with
 * sock_rnat6 and sock_term6 (connect6); an IPv6 socket connected to a
 * v4-mapped address (::ffff:a.b.c.d) was balanced through the IPv4 maps by
 * connect6 and is matched as an IPv4 one.
 *
 * TCP is left alone, as kube-proxy and (by default) Cilium do: a TCP
 * connection to a removed endpoint ends on its own (RST, timeout).
 *
 * Needs the bpf_sock_destroy kfunc (kernel 6.5): without it this object does
 * not load and the agent runs without termination (one warning).
 */
#include <linux/in.h>
#include <bpf/bpf_endian.h>
#include "include/maps.h"

#define XLB_AF_INET		2
#define XLB_AF_INET6		10
#define XLB_TCP_ESTABLISHED	1

/* The kernel's structs, as far as this program reads them; field offsets
 * are relocated against the running kernel's BTF (CO-RE). */
#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)
struct net {
	__u64 net_cookie;
};

typedef struct {
	struct net *net;
} possible_net_t;

/* struct in6_addr (the suffix keeps it apart from linux/in6.h's; CO-RE
 * ignores it) */
struct in6_addr___xlb {
	union {
		__be32 u6_addr32[4];
	} in6_u;
};

struct sock_common {
	__be32 skc_daddr;
	__be16 skc_dport;
	unsigned short skc_family;
	unsigned char skc_state;
	possible_net_t skc_net;
	struct in6_addr___xlb skc_v6_daddr;
};

struct sock {
	struct sock_common __sk_common;
};

struct udp_sock;
struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
};

struct bpf_iter__udp {
	struct bpf_iter_meta *meta;
	struct udp_sock *udp_sk;
};
#pragma clang attribute pop

extern int bpf_sock_destroy(struct sock_common *sk) __ksym;

/* sock_term: a frontend as the socket hooks resolve it and a backend that
 * left it. Filled by the agent just before a run, emptied after. */
struct xlb_sock_term_key {
	__be32 fe_addr;		/* frontend address; 0 for XLB_KIND_NODEPORT */
	__be32 be_addr;		/* backend address */
	__be16 fe_port;		/* frontend port (Service port or NodePort) */
	__be16 be_port;		/* backend port */
	__u8 proto;		/* IPPROTO_UDP */
	__u8 kind;		/* XLB_KIND_ADDR / XLB_KIND_NODEPORT */
	__u8 pad[2];
};
_Static_assert(sizeof(struct xlb_sock_term_key) == 16, "sock_term key (loader/src/sock_term.rs)");

/* sock_term6: the same for IPv6 frontends and backends */
struct xlb_sock_term6_key {
	__be32 fe_addr[4];	/* frontend address; all zero for XLB_KIND_NODEPORT */
	__be32 be_addr[4];	/* backend address */
	__be16 fe_port;
	__be16 be_port;
	__u8 proto;		/* IPPROTO_UDP */
	__u8 kind;		/* XLB_KIND_ADDR / XLB_KIND_NODEPORT */
	__u8 pad[2];
};
_Static_assert(sizeof(struct xlb_sock_term6_key) == 40, "sock_term6 key (loader/src/sock_term.rs)");

/* What the iterator writes (bpf_seq_write) for each socket it destroyed,
 * one layout for both families (IPv4: the address in word 0, the rest 0). */
struct xlb_sock_term_rec {
	__u64 cookie;		/* the socket's cookie */
	__be32 be_addr[4];	/* its peer: the backend */
	__be32 fe_addr[4];	/* the frontend it dialled */
	__be16 be_port;
	__be16 fe_port;
	__s32 err;		/* bpf_sock_destroy's return (0: destroyed) */
	__u32 family;		/* XLB_AF_INET / XLB_AF_INET6 */
	__u32 pad;
};
_Static_assert(sizeof(struct xlb_sock_term_rec) == 56, "record (loader/src/sock_term.rs)");

/* This object's own map (not in maps.h, never pinned): its contents mean
 * something only during one run by the process that loaded it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XLB_SOCK_TERM_ENTRIES);
	__type(key, struct xlb_sock_term_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} sock_term SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XLB_SOCK_TERM_ENTRIES);
	__type(key, struct xlb_sock_term6_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} sock_term6 SEC(".maps");

/* Whether the socket that dialled fe_addr:fe_port and was sent to
 * be_addr:be_port is to go. An address frontend wins over a NodePort, as in
 * xlb_service: a socket that dialled a live address frontend was balanced
 * through it, whatever NodePort shares its port. */
static __always_inline int xlb_term_wanted(__be32 fe_addr, __be16 fe_port, __be32 be_addr,
					   __be16 be_port)
{
	struct xlb_sock_term_key k = {
		.fe_addr = fe_addr, .be_addr = be_addr, .fe_port = fe_port,
		.be_port = be_port, .proto = IPPROTO_UDP, .kind = XLB_KIND_ADDR,
	};
	struct xlb_svc_key sk = {
		.addr = fe_addr, .port = fe_port, .proto = IPPROTO_UDP, .kind = XLB_KIND_ADDR,
	};

	if (bpf_map_lookup_elem(&sock_term, &k))
		return 1;
	if (bpf_map_lookup_elem(&services, &sk))
		return 0;
	k.fe_addr = 0;
	k.kind = XLB_KIND_NODEPORT;
	return bpf_map_lookup_elem(&sock_term, &k) != NULL;
}

/* xlb_term_wanted for an IPv6 frontend and backend (services6, sock_term6) */
static __always_inline int xlb_term_wanted6(const __be32 *fe_addr, __be16 fe_port,
					    const __be32 *be_addr, __be16 be_port)
{
	struct xlb_sock_term6_key k = {
		.fe_port = fe_port, .be_port = be_port, .proto = IPPROTO_UDP,
		.kind = XLB_KIND_ADDR,
	};
	struct xlb_svc6_key sk = { .port = fe_port, .proto = IPPROTO_UDP, .kind = XLB_KIND_ADDR };

	__builtin_memcpy(k.fe_addr, fe_addr, 16);
	__builtin_memcpy(k.be_addr, be_addr, 16);
	__builtin_memcpy(sk.addr, fe_addr, 16);
	if (bpf_map_lookup_elem(&sock_term6, &k))
		return 1;
	if (bpf_map_lookup_elem(&services6, &sk))
		return 0;
	__builtin_memset(k.fe_addr, 0, 16);
	k.kind = XLB_KIND_NODEPORT;
	return bpf_map_lookup_elem(&sock_term6, &k) != NULL;
}

/* An IPv4 peer (an AF_INET socket, or an AF_INET6 one connected to a
 * v4-mapped address): sock_rnat and sock_term. 1 when the socket matched
 * (rec filled, bpf_sock_destroy called). */
static __always_inline int xlb_term4(struct sock *sk, __u64 cookie, struct xlb_sock_term_rec *rec)
{
	struct xlb_sock_rnat_key rk = {
		.cookie = cookie, .addr = sk->__sk_common.skc_daddr,
		.port = sk->__sk_common.skc_dport, .proto = IPPROTO_UDP,
	};
	struct xlb_sock_rnat_val *fe = bpf_map_lookup_elem(&sock_rnat, &rk);

	if (!fe || !xlb_term_wanted(fe->addr, fe->port, rk.addr, rk.port))
		return 0;
	rec->be_addr[0] = rk.addr;
	rec->fe_addr[0] = fe->addr;
	rec->be_port = rk.port;
	rec->fe_port = fe->port;
	rec->family = XLB_AF_INET;
	rec->err = bpf_sock_destroy((struct sock_common *)sk);
	if (!rec->err)
		bpf_map_delete_elem(&sock_rnat, &rk);
	return 1;
}

/* An IPv6 peer: sock_rnat6 and sock_term6. */
static __always_inline int xlb_term6(struct sock *sk, __u64 cookie, const __be32 *daddr,
				     struct xlb_sock_term_rec *rec)
{
	struct xlb_sock_rnat6_key rk = {
		.cookie = cookie, .port = sk->__sk_common.skc_dport, .proto = IPPROTO_UDP,
	};
	struct xlb_sock_rnat6_val *fe;

	__builtin_memcpy(rk.addr, daddr, 16);
	fe = bpf_map_lookup_elem(&sock_rnat6, &rk);
	if (!fe || !xlb_term_wanted6(fe->addr, fe->port, rk.addr, rk.port))
		return 0;
	__builtin_memcpy(rec->be_addr, rk.addr, 16);
	__builtin_memcpy(rec->fe_addr, fe->addr, 16);
	rec->be_port = rk.port;
	rec->fe_port = fe->port;
	rec->family = XLB_AF_INET6;
	rec->err = bpf_sock_destroy((struct sock_common *)sk);
	if (!rec->err)
		bpf_map_delete_elem(&sock_rnat6, &rk);
	return 1;
}

SEC("iter/udp")
int xlb_sock_term(struct bpf_iter__udp *ctx)
{
	struct sock *sk = (struct sock *)ctx->udp_sk;
	struct xlb_sock_term_rec rec = {};
	struct xlb_sock_config *sc;
	__be32 d6[4] = {};
	unsigned short family;
	struct net *net;
	__u32 zero = 0;
	__u64 cookie;
	int hit;

	if (!sk)
		return 0;
	sc = bpf_map_lookup_elem(&sock_config, &zero);
	if (!sc || !sc->netns_cookie)
		return 0;
	family = sk->__sk_common.skc_family;
	if ((family != XLB_AF_INET && family != XLB_AF_INET6) ||
	    sk->__sk_common.skc_state != XLB_TCP_ESTABLISHED)
		return 0;
	net = sk->__sk_common.skc_net.net;
	if (!net || net->net_cookie != sc->netns_cookie)
		return 0;
	cookie = bpf_get_socket_cookie(sk);
	if (family == XLB_AF_INET6) {
		d6[0] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[0];
		d6[1] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[1];
		d6[2] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[2];
		d6[3] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[3];
	}
	/* ::ffff:a.b.c.d: the kernel keeps a.b.c.d in skc_daddr as well */
	if (family == XLB_AF_INET || (!d6[0] && !d6[1] && d6[2] == bpf_htonl(0xffff)))
		hit = xlb_term4(sk, cookie, &rec);
	else
		hit = xlb_term6(sk, cookie, d6, &rec);
	if (!hit)
		return 0;
	rec.cookie = cookie;
	bpf_seq_write(ctx->meta->seq, &rec, sizeof(rec));
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
