// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xlb socket hooks (cgroup v2, sock_addr): Services for the traffic that the
 * node's own processes send (kubelet, hostNetwork pods, the API server), as
 * Cilium's socket LB does. No packet is rewritten: the socket is pointed at
 * the backend before the first packet exists.
 *
 *   connect4     connect() to a frontend (ClusterIP, LoadBalancer IP,
 *                ExternalIP, node address:NodePort, 127.0.0.0/8:NodePort with
 *                XLB_SOCK_F_LOOPBACK) -> the destination becomes a backend
 *                chosen like the XDP/tc programs choose (affinity, Maglev,
 *                traffic policy as the frontend's table holds it). A Service
 *                without endpoints fails the connect with ECONNREFUSED.
 *   sendmsg4     the same for each datagram of an unconnected UDP socket.
 *   recvmsg4     a datagram from a backend this socket was sent to shows the
 *                frontend as its source.
 *   getpeername4 a connected socket shows the frontend as its peer.
 *
 * connect4/sendmsg4 remember {socket cookie, backend} -> frontend in
 * sock_rnat for the last two. Every hook acts only in the network namespace
 * whose cookie sock_config holds (0: nowhere): the programs are attached to
 * the cgroup v2 root, so they run for every process of the machine, in every
 * namespace, and must leave all the others alone.
 *
 * connect6, sendmsg6, recvmsg6, getpeername6: the same for IPv6 sockets
 * over the IPv6 maps (services6, backends6, affinity6, src_ranges6,
 * local_addrs6, config6's node address as the client, ::1 as 127.0.0.1,
 * sock_rnat6). An IPv6 socket dialling a v4-mapped address
 * (::ffff:a.b.c.d, a dual-stack socket reaching an IPv4 Service) is
 * balanced through the IPv4 maps, as connect4 would, and remembered in
 * sock_rnat (the kernel sends such a socket's unconnected datagrams
 * through sendmsg4).
 */
#include "include/maps.h"
#include "include/stats.h"
#include "include/lb.h"
#include "include/lb6.h"

#define XLB_SOCK_PROCEED	1
#define XLB_SOCK_REJECT		0
#define XLB_ECONNREFUSED	111

/* sock_config when ctx's socket lives in the namespace xlb was attached
 * for; NULL otherwise (then the hook must change nothing). */
static __always_inline struct xlb_sock_config *xlb_sock_cfg(struct bpf_sock_addr *ctx)
{
	__u32 zero = 0;
	struct xlb_sock_config *sc = bpf_map_lookup_elem(&sock_config, &zero);

	if (!sc || !sc->netns_cookie || bpf_get_netns_cookie(ctx) != sc->netns_cookie)
		return NULL;
	return sc;
}

static __always_inline int xlb_is_loopback(__be32 a)
{
	return (a & bpf_htonl(0xff000000)) == bpf_htonl(0x7f000000);
}

static __always_inline int xlb_sock_proto(struct bpf_sock_addr *ctx, __u8 *proto)
{
	__u32 p = ctx->protocol;

	if (p != IPPROTO_TCP && p != IPPROTO_UDP)
		return 0;
	*proto = p;
	return 1;
}

/* The Service of a destination dialled from this node: xlb_service, with a
 * loopback address counted as a node address (NodePort) when sc asks. */
static __always_inline struct xlb_svc_val *xlb_sock_service(__be32 daddr, __be16 dport, __u8 proto,
							    const struct xlb_sock_config *sc,
							    __be32 node_addr)
{
	if ((sc->flags & XLB_SOCK_F_LOOPBACK) && xlb_is_loopback(daddr))
		node_addr = daddr;	/* xlb_service: daddr == node_addr is local */
	return xlb_service(daddr, dport, proto, node_addr);
}

/* Remembers which frontend the socket dialled when it is sent to ch. */
static __always_inline void xlb_sock_remember(struct bpf_sock_addr *ctx, __u64 cookie, __u8 proto,
					      const struct xlb_choice *ch, __be32 daddr,
					      __be16 dport)
{
	struct xlb_sock_rnat_key k = {
		.cookie = cookie, .addr = ch->addr, .port = ch->port, .proto = proto,
	};
	struct xlb_sock_rnat_val v = { .addr = daddr, .port = dport };
	struct xlb_sock_rnat_val *old = bpf_map_lookup_elem(&sock_rnat, &k);

	/* one write per new {socket, backend}, not one per datagram */
	if (old && old->addr == daddr && old->port == dport)
		return;
	bpf_map_update_elem(&sock_rnat, &k, &v, BPF_ANY);
}

/*
 * connect4 / sendmsg4: point the socket at a backend of the Service it
 * dials. The flow hash takes the node address as the client (affinity is
 * per node, as kube-proxy sees node-originated traffic) and as source port a
 * random number per connect, or the socket cookie per datagram (one
 * unconnected UDP socket keeps talking to one backend).
 *
 * *daddr:*dport is the destination as dialled (an IPv4 address, or the one
 * of a v4-mapped IPv6 address) and becomes the backend when this returns
 * XLB_SOCK_PROCEED with *xlated set.
 */
static __always_inline int xlb_sock_fwd4(struct bpf_sock_addr *ctx,
					 const struct xlb_sock_config *sc, __u8 proto,
					 int is_connect, __be32 *daddr_p, __be16 *dport_p,
					 int *xlated)
{
	struct xlb_ct_key t = {};
	struct xlb_choice ch = {};
	struct xlb_config *cfg;
	struct xlb_svc_val *svc;
	__be32 daddr = *daddr_p, node_addr = 0;
	__be16 dport = *dport_p;
	__u32 zero = 0;
	__u64 cookie;
	int r, event = XLB_OK;

	cfg = bpf_map_lookup_elem(&config, &zero);
	if (cfg)
		node_addr = cfg->node_addr;
	svc = xlb_sock_service(daddr, dport, proto, sc, node_addr);
	if (!svc)
		return XLB_SOCK_PROCEED;
	svc = xlb_service_internal(svc, daddr, dport, proto);	/* the node: inside the cluster */
	cookie = bpf_get_socket_cookie(ctx);
	t.saddr = node_addr;
	t.daddr = daddr;
	t.sport = is_connect ? (__be16)bpf_get_prandom_u32() : (__be16)(cookie ^ (cookie >> 16));
	t.dport = dport;
	t.proto = proto;
	r = xlb_choose(svc, &t, xlb_now(), &ch, &event);
	if (event != XLB_OK)
		xlb_count(event, 0);
	if (r == XLB_R_DROP_NO_BACKEND || r == XLB_R_DROP_ETP_LOCAL || r == XLB_R_DROP_ITP_LOCAL) {
		/* kube-proxy rejects; a connect() that hangs would be worse */
		xlb_count(XLB_R_SOCK_REFUSED, 0);
		bpf_set_retval(-XLB_ECONNREFUSED);
		return XLB_SOCK_REJECT;
	}
	if (r != XLB_OK) {
		/* source range not allowed, or a table being rewritten: the
		 * packets go where the process sent them */
		xlb_count(XLB_R_SOCK_UNCHANGED, 0);
		return XLB_SOCK_PROCEED;
	}
	xlb_sock_remember(ctx, cookie, proto, &ch, daddr, dport);
	*daddr_p = ch.addr;
	*dport_p = ch.port;
	*xlated = 1;
	xlb_count(XLB_R_SOCK_XLATE, 0);
	return XLB_SOCK_PROCEED;
}

static __always_inline int xlb_sock_fwd(struct bpf_sock_addr *ctx, int is_connect)
{
	struct xlb_sock_config *sc = xlb_sock_cfg(ctx);
	__be32 daddr;
	__be16 dport;
	int r, xlated = 0;
	__u8 proto;

	if (!sc || !xlb_sock_proto(ctx, &proto))
		return XLB_SOCK_PROCEED;
	daddr = ctx->user_ip4;
	dport = (__be16)ctx->user_port;
	r = xlb_sock_fwd4(ctx, sc, proto, is_connect, &daddr, &dport, &xlated);
	if (xlated) {
		ctx->user_ip4 = daddr;
		ctx->user_port = (__u32)dport;
	}
	return r;
}

/* The frontend a socket sent to backend addr:port dialled, while that
 * frontend's Service exists; NULL otherwise. The Service gone: the peer is
 * the backend now. (node_addr = the frontend address: it was local when it
 * was dialled.) The entry stays (LRU) until the socket is terminated
 * (sock_term.bpf.c), which needs it to know what the socket dialled. */
static __always_inline struct xlb_sock_rnat_val *xlb_sock_rev4(struct bpf_sock_addr *ctx,
							       __u8 proto, __be32 addr,
							       __be16 port)
{
	struct xlb_sock_rnat_key k = {
		.cookie = bpf_get_socket_cookie(ctx), .addr = addr, .port = port, .proto = proto,
	};
	struct xlb_sock_rnat_val *v = bpf_map_lookup_elem(&sock_rnat, &k);

	if (!v || !xlb_service(v->addr, v->port, proto, v->addr))
		return NULL;
	return v;
}

/* recvmsg4 / getpeername4: a backend this socket was sent to shows as the
 * frontend it dialled, while that frontend exists. */
static __always_inline void xlb_sock_rev(struct bpf_sock_addr *ctx)
{
	struct xlb_sock_rnat_val *v;
	__u8 proto;

	if (!xlb_sock_cfg(ctx) || !xlb_sock_proto(ctx, &proto))
		return;
	v = xlb_sock_rev4(ctx, proto, ctx->user_ip4, (__be16)ctx->user_port);
	if (!v)
		return;
	ctx->user_ip4 = v->addr;
	ctx->user_port = (__u32)v->port;
}

/* ---- IPv6 sockets ---- */

static __always_inline int xlb_is_mapped6(const __be32 *a)
{
	return !a[0] && !a[1] && a[2] == bpf_htonl(0xffff);
}

static __always_inline int xlb_is_loopback6(const __be32 *a)
{
	return !a[0] && !a[1] && !a[2] && a[3] == bpf_htonl(1);
}

static __always_inline void xlb_sock_read6(struct bpf_sock_addr *ctx, __be32 *a)
{
	a[0] = ctx->user_ip6[0];
	a[1] = ctx->user_ip6[1];
	a[2] = ctx->user_ip6[2];
	a[3] = ctx->user_ip6[3];
}

static __always_inline void xlb_sock_write6(struct bpf_sock_addr *ctx, const __be32 *a, __be16 port)
{
	ctx->user_ip6[0] = a[0];
	ctx->user_ip6[1] = a[1];
	ctx->user_ip6[2] = a[2];
	ctx->user_ip6[3] = a[3];
	ctx->user_port = (__u32)port;
}

/* xlb_sock_remember for sock_rnat6 */
static __always_inline void xlb_sock_remember6(__u64 cookie, __u8 proto,
					       const struct xlb_choice6 *ch, const __be32 *daddr,
					       __be16 dport)
{
	struct xlb_sock_rnat6_key k = { .cookie = cookie, .port = ch->port, .proto = proto };
	struct xlb_sock_rnat6_val v = { .port = dport };
	struct xlb_sock_rnat6_val *old;

	xlb_addr6_copy(k.addr, ch->addr);
	xlb_addr6_copy(v.addr, daddr);
	old = bpf_map_lookup_elem(&sock_rnat6, &k);
	if (old && xlb_addr6_eq(old->addr, daddr) && old->port == dport)
		return;
	bpf_map_update_elem(&sock_rnat6, &k, &v, BPF_ANY);
}

/* connect6 / sendmsg6: xlb_sock_fwd4 on the IPv6 maps; a v4-mapped
 * destination through xlb_sock_fwd4 itself. */
static __always_inline int xlb_sock_fwd6(struct bpf_sock_addr *ctx, int is_connect)
{
	struct xlb_sock_config *sc = xlb_sock_cfg(ctx);
	struct xlb_ct6_key t = {};
	struct xlb_choice6 ch = {};
	struct xlb_config6 *cfg6;
	struct xlb_svc_val *svc;
	const __be32 *node_addr = NULL;
	__be32 daddr[4];
	__be16 dport;
	__u32 zero = 0;
	__u64 cookie;
	int r, event = XLB_OK;
	__u8 proto;

	if (!sc || !xlb_sock_proto(ctx, &proto))
		return XLB_SOCK_PROCEED;
	xlb_sock_read6(ctx, daddr);
	dport = (__be16)ctx->user_port;
	if (xlb_is_mapped6(daddr)) {
		__be32 a = daddr[3];
		int xlated = 0;

		r = xlb_sock_fwd4(ctx, sc, proto, is_connect, &a, &dport, &xlated);
		if (xlated) {
			ctx->user_ip6[3] = a;
			ctx->user_port = (__u32)dport;
		}
		return r;
	}
	cfg6 = bpf_map_lookup_elem(&config6, &zero);
	if (cfg6) {
		node_addr = cfg6->node_addr;
		xlb_addr6_copy(t.saddr, cfg6->node_addr);
	}
	if ((sc->flags & XLB_SOCK_F_LOOPBACK) && xlb_is_loopback6(daddr))
		node_addr = daddr;	/* xlb_service6: daddr == node_addr is local */
	svc = xlb_service6(daddr, dport, proto, node_addr);
	if (!svc)
		return XLB_SOCK_PROCEED;
	svc = xlb_service6_internal(svc, daddr, dport, proto);
	cookie = bpf_get_socket_cookie(ctx);
	xlb_addr6_copy(t.daddr, daddr);
	t.sport = is_connect ? (__be16)bpf_get_prandom_u32() : (__be16)(cookie ^ (cookie >> 16));
	t.dport = dport;
	t.proto = proto;
	r = xlb_choose6(svc, &t, xlb_now(), &ch, &event);
	if (event != XLB_OK)
		xlb_count(event, 0);
	if (r == XLB_R_DROP_NO_BACKEND || r == XLB_R_DROP_ETP_LOCAL || r == XLB_R_DROP_ITP_LOCAL) {
		xlb_count(XLB_R_SOCK_REFUSED, 0);
		bpf_set_retval(-XLB_ECONNREFUSED);
		return XLB_SOCK_REJECT;
	}
	if (r != XLB_OK) {
		xlb_count(XLB_R_SOCK_UNCHANGED, 0);
		return XLB_SOCK_PROCEED;
	}
	xlb_sock_remember6(cookie, proto, &ch, daddr, dport);
	xlb_sock_write6(ctx, ch.addr, ch.port);
	xlb_count(XLB_R_SOCK_XLATE, 0);
	return XLB_SOCK_PROCEED;
}

/* recvmsg6 / getpeername6: xlb_sock_rev for IPv6 sockets (sock_rnat6; a
 * v4-mapped peer through sock_rnat). */
static __always_inline void xlb_sock_rev6(struct bpf_sock_addr *ctx)
{
	struct xlb_sock_rnat6_key k = {};
	struct xlb_sock_rnat6_val *v;
	__be32 a[4];
	__be16 port;
	__u8 proto;

	if (!xlb_sock_cfg(ctx) || !xlb_sock_proto(ctx, &proto))
		return;
	xlb_sock_read6(ctx, a);
	port = (__be16)ctx->user_port;
	if (xlb_is_mapped6(a)) {
		struct xlb_sock_rnat_val *v4 = xlb_sock_rev4(ctx, proto, a[3], port);

		if (v4) {
			ctx->user_ip6[3] = v4->addr;
			ctx->user_port = (__u32)v4->port;
		}
		return;
	}
	k.cookie = bpf_get_socket_cookie(ctx);
	xlb_addr6_copy(k.addr, a);
	k.port = port;
	k.proto = proto;
	v = bpf_map_lookup_elem(&sock_rnat6, &k);
	if (!v || !xlb_service6(v->addr, v->port, proto, v->addr))
		return;
	xlb_sock_write6(ctx, v->addr, v->port);
}

SEC("cgroup/connect4")
int xlb_connect4(struct bpf_sock_addr *ctx)
{
	return xlb_sock_fwd(ctx, 1);
}

SEC("cgroup/sendmsg4")
int xlb_sendmsg4(struct bpf_sock_addr *ctx)
{
	return xlb_sock_fwd(ctx, 0);
}

SEC("cgroup/recvmsg4")
int xlb_recvmsg4(struct bpf_sock_addr *ctx)
{
	xlb_sock_rev(ctx);
	return XLB_SOCK_PROCEED;
}

SEC("cgroup/getpeername4")
int xlb_getpeer4(struct bpf_sock_addr *ctx)
{
	xlb_sock_rev(ctx);
	return XLB_SOCK_PROCEED;
}

SEC("cgroup/connect6")
int xlb_connect6(struct bpf_sock_addr *ctx)
{
	return xlb_sock_fwd6(ctx, 1);
}

SEC("cgroup/sendmsg6")
int xlb_sendmsg6(struct bpf_sock_addr *ctx)
{
	return xlb_sock_fwd6(ctx, 0);
}

SEC("cgroup/recvmsg6")
int xlb_recvmsg6(struct bpf_sock_addr *ctx)
{
	xlb_sock_rev6(ctx);
	return XLB_SOCK_PROCEED;
}

SEC("cgroup/getpeername6")
int xlb_getpeer6(struct bpf_sock_addr *ctx)
{
	xlb_sock_rev6(ctx);
	return XLB_SOCK_PROCEED;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
