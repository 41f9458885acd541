/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* xlb: limits and constants shared by the data plane and userspace. */
#ifndef XLB_CONSTS_H
#define XLB_CONSTS_H

/* Default map sizes; userspace may resize before load (set_max_entries). */
#define XLB_MAX_FRONTENDS	262144	/* services map entries */
#define XLB_FE_FILTER_SLOTS	65536	/* fe_filter counters (power of two) */
#define XLB_BE_FILTER_SLOTS	65536	/* be_filter counters (power of two) */
#define XLB_MAX_SVC		131072	/* svc_id space (per Service port) */
#define XLB_MAX_BACKENDS	262144	/* backends array */
#define XLB_MAGLEV_SLOTS	(1 << 23)	/* one big slot array, 8 Mi slots */
#define XLB_CT_ENTRIES		(1 << 20)
#define XLB_AFFINITY_ENTRIES	(1 << 18)
#define XLB_SRC_RANGES		65536
#define XLB_TUNNEL_ENTRIES	16384
#define XLB_LOCAL_ADDRS		256
#define XLB_REMOTE_ADDRS	16384	/* remote_addrs: the other nodes' addresses (maps.h) */
#define XLB_SOCK_RNAT_ENTRIES	65536	/* sock_rnat: sockets' backend -> frontend (maps.h) */
#define XLB_SOCK_TERM_ENTRIES	4096	/* sock_term: (frontend, backend) pairs per run (sock_term.bpf.c) */
#define XLB_MAX_FRONTENDS6	65536	/* services6 map entries */
#define XLB_CT6_ENTRIES		(1 << 18)	/* ct6: IPv6 flows (two entries each, as ct) */
#define XLB_AFFINITY6_ENTRIES	(1 << 16)
#define XLB_EVENTS_BYTES	(256 * 1024)	/* events ring buffer (power of two pages) */

/* The data plane's private maps (maps.h): fixed sizes, per CPU. */
#define XLB_FC_BITS		12	/* flow_cache: 4096 slots */
#define XLB_FC_SLOTS		(1 << XLB_FC_BITS)
#define XLB_NH_BITS		10	/* nh_cache: 1024 slots */
#define XLB_NH_SLOTS		(1 << XLB_NH_BITS)
#define XLB_VTEP_BITS		10	/* vtep_cache: 1024 slots */
#define XLB_VTEP_SLOTS		(1 << XLB_VTEP_BITS)
#define XLB_FRAG_ENTRIES	8192	/* frag: datagrams in flight whose first fragment was translated */
#define XLB_FRAG6_ENTRIES	8192	/* frag6: the same for IPv6 (frag6.h) */
#define XLB_SYN_BITS		17	/* ct_syn: 131072 half-open TCP connections (shared by every CPU) */
#define XLB_SYN_SLOTS		(1 << XLB_SYN_BITS)

/* The packet generator (pktgen.bpf.c) */
#define XLB_PG_TMPL_MAX		160	/* header template + stamp, bytes */
#define XLB_PG_HIST_BUCKETS	640	/* log-linear: 16 sub-buckets per power of two */
#define XLB_PG_NEW_PORT_BITS	10	/* new-flows mode: source ports per address = 1 << this */

/* services key kind */
#define XLB_KIND_ADDR		0	/* ClusterIP, LoadBalancer ingress, ExternalIP: matched by address */
#define XLB_KIND_NODEPORT	1	/* addr 0: any address in local_addrs */
#define XLB_KIND_F_INTERNAL	2	/* or-ed into a kind: the entry for clients inside the cluster
					 * of an XLB_SVC_F_EXT_LOCAL frontend */

/* services value fe_type (what the frontend was made from; for display and policy) */
#define XLB_FE_CLUSTERIP	0
#define XLB_FE_NODEPORT		1
#define XLB_FE_LOADBALANCER	2
#define XLB_FE_EXTERNALIP	3

/* services value flags */
#define XLB_SVC_F_AFFINITY	(1 << 0)	/* sessionAffinity ClientIP */
/* externalTrafficPolicy / internalTrafficPolicy Local: the table holds this node's endpoints;
 * none (n_local 0) while the Service has endpoints elsewhere = drop (counted), not reject */
#define XLB_SVC_F_LOCAL		(1 << 1)
#define XLB_SVC_F_SRC_RANGES	(1 << 2)	/* check src_ranges (loadBalancerSourceRanges) */
/* externalTrafficPolicy Local frontend (NodePort, LoadBalancer, ExternalIP): its table holds this
 * node's endpoints, for clients outside the cluster; clients inside it (pods, tunnels, the node)
 * use its entry of kind | XLB_KIND_F_INTERNAL, whose table holds the cluster-wide set. */
#define XLB_SVC_F_EXT_LOCAL	(1 << 3)

/* backends value flags */
#define XLB_BE_F_ACTIVE		(1 << 0)	/* slot holds a live backend */
#define XLB_BE_F_TERMINATING	(1 << 1)	/* the endpoint is terminating (serving or not) */
#define XLB_BE_F_DRAINING	(1 << 2)	/* in no table of its Service port: flows that use it keep it,
						 * new ones (affinity included) never choose it */
#define XLB_BE_F_HOST_NETWORK	(1 << 3)	/* a host-network endpoint (its address is a Node's): a remote
						 * one is reached through the tunnel entry of that address
						 * (/32), its node's tc egress returns the replies */

/* ct value flags */
#define XLB_CT_F_REVERSE	(1 << 0)	/* reply direction entry: reverse NAT */
#define XLB_CT_F_TUNNEL		(1 << 1)	/* flow arrived by tunnel: return through tunnel_peer */
#define XLB_CT_F_REMOTE		(1 << 2)	/* forward entry whose backend is on another node */
#define XLB_CT_F_REV_CHECK	(1 << 3)	/* forward entry: another flow took its reverse entry; check it at the next packet */
#define XLB_CT_F_HAIRPIN	(1 << 4)	/* reverse entry of a pod that reached itself through a Service */
/* TCP state (ct.h), both entries of a flow; changed only by SYN/FIN/RST
 * packets and the first packet after a SYN */
#define XLB_CT_F_SYN		(1 << 5)	/* opened by a SYN, no other packet of its direction yet (half-open) */
#define XLB_CT_F_FIN_FWD	(1 << 6)	/* the client sent a FIN */
#define XLB_CT_F_FIN_REV	(1 << 7)	/* the backend sent a FIN */
#define XLB_CT_F_RST		(1 << 8)	/* a RST was seen */
/* tunnel NAT. On a tunnel-return entry (REVERSE | TUNNEL) of a flow whose frame carried
 * its frontend (XLB_VXLAN_F_FE): this node reverse-NATs the replies (nat_addr:nat_port)
 * and sends them back translated (XLB_VXLAN_F_XLATED). On the balancing node's forward
 * entry (with REMOTE): the flow's only entry there, no reverse entry to check or close */
#define XLB_CT_F_TNAT		(1 << 9)
#define XLB_CT_F_CLOSING	(XLB_CT_F_FIN_FWD | XLB_CT_F_FIN_REV | XLB_CT_F_RST)
#define XLB_CT_F_TCP_STATE	(XLB_CT_F_SYN | XLB_CT_F_CLOSING)

/* Source address (host order) a pod's packets to itself through a Service
 * carry (hairpin): link-local, never on the wire, as Cilium's 169.254.42.1. */
#define XLB_HAIRPIN_ADDR	0xa9fe2a01

/* config flags */
#define XLB_CFG_F_VXLAN		(1 << 0)	/* decap VXLAN addressed to this node */
#define XLB_CFG_F_REJECT	(1 << 1)	/* answer RST / ICMP unreachable for Services w/o endpoints */
/* tunnel NAT (vxlan.h): send the frontend with remote flows from the uplink, keep only their forward
 * entry; clear: the tunnel format of xlb builds before it (both entries here, no trailer), for a
 * rolling upgrade from one. Frames of either format are understood whatever this says. */
#define XLB_CFG_F_TNAT		(1 << 2)

/* sock_config flags (socket hooks, sock.bpf.c) */
#define XLB_SOCK_F_LOOPBACK	(1 << 0)	/* NodePort on 127.0.0.0/8 for node processes */

/* `xlb monitor` (monitor, monitor_cpu, events; stats.h) */
#define XLB_MON_RATE_DEFAULT	1000		/* events per second and CPU */
#define XLB_NO_SVC		0xffffffff	/* event of a frame of no Service */
#define XLB_HOOK_XDP		0		/* event from the uplink XDP program */
#define XLB_HOOK_TC		1		/* event from a pod veth's tc program */

#define XLB_VXLAN_PORT_DEFAULT	8472
#define XLB_VNI_DEFAULT		1

/* Lifetimes (ns unless named otherwise) */
#define XLB_NSEC		1000000000ULL
/* ct timeouts, seconds (config.ct_* overrides all but SYN; ct.h) */
#define XLB_CT_TCP_ESTABLISHED_S	86400	/* kube-proxy's --conntrack-tcp-timeout-established */
#define XLB_CT_TCP_CLOSE_S	10	/* kube-proxy's --conntrack-tcp-timeout-close-wait */
#define XLB_CT_TCP_SYN_S	60	/* half-open */
#define XLB_CT_UDP_S		120
#define XLB_CT_TOUCH_NS		(1ULL * XLB_NSEC)	/* refresh last_seen at most once a second */
#define XLB_AFFINITY_DEFAULT_S	10800			/* s: Kubernetes' default timeoutSeconds */
#define XLB_FC_TTL_NS		(50ULL * 1000000ULL)	/* a flow_cache copy */
#define XLB_NH_TTL_NS		(50ULL * 1000000ULL)	/* an nh_cache / vtep_cache answer */
#define XLB_CLOCK_TICK_NS	(4ULL * 1000000ULL)	/* the clock timer's period */
#define XLB_CLOCK_LAG_NS	(16ULL * 1000000ULL)	/* re-arm the timer when this far behind */
#define XLB_CLOCK_CHECK		256			/* one packet in this many per CPU checks (power of two) */

/*
 * stats map layout (PERCPU_ARRAY of struct xlb_counter):
 *   [0, XLB_NR_REASONS)                  per-reason counters (enum xlb_reason)
 *   [XLB_STATS_SVC_BASE + svc_id]         per-Service-port packets/bytes
 */
#define XLB_NR_REASONS		64
#define XLB_STATS_SVC_BASE	XLB_NR_REASONS
#define XLB_STATS_ENTRIES	(XLB_STATS_SVC_BASE + XLB_MAX_SVC)

/*
 * Reason counters. Each frame counts exactly one outcome, named for what
 * happened to it: pass_* (to the stack, untouched or NATed), drop_*, tx_*
 * (sent by xlb). event_* count something that went wrong on the way without
 * being the frame's outcome (the frame also counts its outcome).
 * Names in Rust: Reason (`XLB_R_PASS_NOT_IP` is `pass_not_ip`).
 */
enum xlb_reason {
	XLB_R_PASS_NOT_IP = 0,		/* ARP, anything neither IPv4 nor IPv6 */
	XLB_R_PASS_NOT_SERVICE = 1,	/* IPv4/IPv6 that matched no Service */
	XLB_R_PASS_FRAG_NO_FIRST = 2,	/* non-first fragment without a recorded first fragment: untranslated */
	XLB_R_PASS_L4_OTHER = 3,	/* IPv4 protocol we do not balance (ICMP, SCTP, ...) */
	XLB_R_PASS_TRUNC_ETH = 4,	/* shorter than an Ethernet header */
	XLB_R_PASS_TRUNC_IP = 5,	/* truncated or inconsistent IPv4 header or total length */
	XLB_R_PASS_TRUNC_L4 = 6,	/* truncated TCP/UDP header, bad data offset or UDP length */
	XLB_R_PASS_TRUNC_VXLAN = 7,	/* VXLAN for this node without a whole VXLAN header */
	XLB_R_DROP_NO_BACKEND = 8,	/* Service without usable endpoints, not answered */
	XLB_R_DROP_SRC_RANGE = 9,	/* loadBalancerSourceRanges denied */
	XLB_R_DROP_ETP_LOCAL = 10,	/* externalTrafficPolicy Local without local backend (external client) */
	XLB_R_EVENT_CT_FULL = 11,	/* a ct entry could not be written (frame still forwarded) */
	XLB_R_DROP_NO_TUNNEL = 12,	/* remote backend without tunnel entry */
	XLB_R_DROP_FIB = 13,		/* fib lookup failed */
	XLB_R_PASS_FIB_NO_NEIGH = 14,	/* neighbour unknown: passed to stack once */
	XLB_R_TX_FRAG_NEEDED = 15,	/* answered ICMP fragmentation needed */
	XLB_R_TX_REJECT = 16,		/* answered TCP RST / ICMP port unreachable */
	XLB_R_PASS_LOCAL = 17,		/* DNAT to a local backend, passed */
	XLB_R_TX_REMOTE = 18,		/* DNAT + encap to a remote backend, transmitted */
	XLB_R_PASS_DECAP = 19,		/* VXLAN decapsulated, passed */
	XLB_R_PASS_REVNAT = 20,		/* reply reverse-NATed */
	XLB_R_TX_TUNNEL_RETURN = 21,	/* reply sent back through the tunnel */
	XLB_R_DROP_BAD_MAGLEV = 22,	/* Maglev slot pointed outside backends or at a dead one */
	XLB_R_EVENT_AFFINITY_FULL = 23,	/* an affinity entry could not be written (frame still balanced) */
	XLB_R_DROP_ADJUST = 24,		/* bpf_xdp_adjust_head/tail or an skb rewrite failed */
	XLB_R_PASS_VXLAN_OTHER = 25,	/* VXLAN not for us (other VNI / not our address) */
	XLB_R_DROP_ITP_LOCAL = 26,	/* internalTrafficPolicy Local without local backend */
	XLB_R_SOCK_XLATE = 27,		/* socket hook: connect/sendmsg sent to a backend */
	XLB_R_SOCK_REFUSED = 28,	/* socket hook: connect/sendmsg refused (no endpoint) */
	XLB_R_SOCK_UNCHANGED = 29,	/* socket hook: Service matched, left as dialled (source range, bad table) */
	XLB_R_PASS_ICMP_RELATED = 30,	/* ICMP error about a balanced flow: translated, passed */
	XLB_R_TX_ICMP_RELATED = 31,	/* ICMP error about a balanced flow: sent through the tunnel */
	XLB_R_PASS_EXT6 = 32,		/* IPv6 extension headers not walked: unknown header, chain too long,
					 * routing header with segments left (parse6.h) */
	XLB_R_PASS_UDP6_NO_CSUM = 33,	/* UDP/IPv6 with checksum 0 (invalid, RFC 8200 8.1): untranslated */
	XLB_R__MAX
};

#endif /* XLB_CONSTS_H */
