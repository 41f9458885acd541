// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xlb packet generator and sink.
 *
 * xlb_pg_gen runs under BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES: every
 * repetition rewrites the whole header template (live frames recycle their
 * pages without resetting the bytes a data plane may have rewritten), varies
 * the flow from a per-CPU counter (or makes every frame a new flow: flows
 * == 0), fixes the IPv4 and L4 checksums (IPv6 has no header checksum; a
 * UDP checksum that computes to 0 is sent as 0xffff), stamps
 * bpf_ktime_get_ns() into the payload and returns XDP_TX (or redirects), so
 * each repetition transmits one real frame.
 *
 * xlb_pg_sink is attached where the frames arrive: it counts them per CPU,
 * finds the stamp (inside VXLAN too; IPv4 frames are parsed as the data
 * plane parses them, parse.h; IPv6 ones without extension headers, as the
 * generator and the data plane's VXLAN send them) and adds the latency to a per-CPU log-linear
 * histogram, then drops the frame.
 *
 * The map value types are declared in types.h (shared with xlb-pktgen).
 */
#include <linux/ipv6.h>
#include "parse.h"
#include "csum.h"
#include "types.h"

#ifndef ETH_P_IPV6
#define ETH_P_IPV6	0x86DD
#endif

#define PG_STAMP_MAGIC	0x786c6270	/* "xlbp", network order in the frame */
#define PG_VXLAN_PORT	8472
#define PG_VXLAN_IANA	4789

/* Payload stamp, right after the innermost L4 header. */
struct pg_stamp {
	__be32 magic;
	__u32 pad;
	__u64 ts;			/* bpf_ktime_get_ns() at generation */
};

/* generator settings */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pg_conf);
} pg_conf SEC(".maps");

/* generator per-CPU sequence and error counters */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pg_gen_state);
} pg_gen SEC(".maps");

/* sink per-CPU counters and histogram */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pg_sink_stats);
} pg_sink SEC(".maps");

SEC("xdp")
int xlb_pg_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct pg_gen_state *st;
	struct pg_conf *c;
	struct iphdr *ip;
	struct ipv6hdr *ip6;
	struct pg_stamp *stamp;
	__u32 zero = 0, off, f, addr, sum;
	__be32 varied;
	__be16 *ethertype;
	__u16 port, csum;
	__u64 seq;
	int i;

	c = bpf_map_lookup_elem(&pg_conf, &zero);
	st = bpf_map_lookup_elem(&pg_gen, &zero);
	if (!c || !st)
		return XDP_ABORTED;

	seq = st->seq++;
	/* the whole header template, 8 bytes at a time */
	for (i = 0; i < XLB_PG_TMPL_MAX / 8; i++) {
		if (i * 8 >= c->copy_len)
			break;
		if (data + i * 8 + 8 > data_end)
			goto bad;
		__builtin_memcpy(data + i * 8, &c->tmpl[i * 8], 8);
	}

	if (c->flows == 0) {
		/* every frame a new flow: 28 bits of this CPU's counter and 4
		 * of the CPU number make a 32-bit flow number, spread over 2^22
		 * source addresses and 1024 ports, which does not repeat within
		 * 2^28 frames per CPU (16 CPUs) */
		f = ((__u32)seq << 4) | (bpf_get_smp_processor_id() & 15);
		addr = c->addr_base + (f >> XLB_PG_NEW_PORT_BITS);
		port = c->port_base + (f & ((1u << XLB_PG_NEW_PORT_BITS) - 1));
	} else {
		f = c->flows > 1 ? seq % c->flows : 0;
		addr = c->addr_base + (c->addrs > 1 ? f % c->addrs : 0);
		port = c->port_base + (c->addrs > 1 ? f / c->addrs : f);
	}

	/* The template's family: the ethertype in front of the varied header.
	 * IPv6 varies the last 32 bits of the address. */
	varied = bpf_htonl(addr);
	off = c->ip_off - 2;	/* wraps (and fails the check) below 2 */
	if (off > XLB_PG_TMPL_MAX - 2 - sizeof(*ip6))
		goto bad;
	ethertype = data + off;
	if ((void *)(ethertype + 1) > data_end)
		goto bad;
	/* the IP header right after it (from the checked pointer: the verifier
	 * knows its range, not that of c->ip_off reloaded) */
	if (*ethertype == bpf_htons(ETH_P_IPV6)) {
		ip6 = (void *)(ethertype + 1);
		if ((void *)(ip6 + 1) > data_end)
			goto bad;
		if (c->vary_dst)
			ip6->daddr.in6_u.u6_addr32[3] = varied;
		else
			ip6->saddr.in6_u.u6_addr32[3] = varied;
	} else {
		ip = (void *)(ethertype + 1);
		if ((void *)(ip + 1) > data_end)
			goto bad;
		if (c->vary_dst)
			ip->daddr = varied;
		else
			ip->saddr = varied;
		ip->check = 0;
		ip->check = xlb_ipv4_csum(ip);
	}

	off = c->l4_off + (c->vary_dst ? 2 : 0);
	if (off > XLB_PG_TMPL_MAX - 2 || data + off + 2 > data_end)
		goto bad;
	*(__be16 *)(data + off) = bpf_htons(port);

	if (c->outer_sport_off) {
		off = c->outer_sport_off;
		if (off > XLB_PG_TMPL_MAX - 2 || data + off + 2 > data_end)
			goto bad;
		/* like a VXLAN device: a source port from the flow, in 49152..65535 */
		*(__be16 *)(data + off) = bpf_htons(0xc000 | ((f * 2654435761u) >> 18));
	}

	off = c->stamp_off;
	if (off > XLB_PG_TMPL_MAX - sizeof(*stamp))
		goto bad;
	stamp = data + off;
	if ((void *)(stamp + 1) > data_end)
		goto bad;
	stamp->ts = bpf_ktime_get_ns();

	/* L4 checksum: the template's seed plus the fields that vary */
	sum = xlb_csum_add32(c->l4_csum_seed, varied);
	sum += bpf_htons(port);
	sum = xlb_csum_add32(sum, (__u32)stamp->ts);
	sum = xlb_csum_add32(sum, (__u32)(stamp->ts >> 32));
	csum = xlb_csum_fold(sum);
	if (c->is_udp && csum == 0)
		csum = 0xffff;
	off = c->csum_off;
	if (off > XLB_PG_TMPL_MAX - 2 || data + off + 2 > data_end)
		goto bad;
	*(__u16 *)(data + off) = csum;

	if (c->redirect_ifindex)
		return bpf_redirect(c->redirect_ifindex, 0);
	return XDP_TX;
bad:
	st->errors++;
	return XDP_DROP;
}

/* Index of the highest set bit of v (v > 0). */
static __always_inline __u32 fls64(__u64 v)
{
	__u32 n = 0;

	if (v >> 32) { n += 32; v >>= 32; }
	if (v >> 16) { n += 16; v >>= 16; }
	if (v >> 8) { n += 8; v >>= 8; }
	if (v >> 4) { n += 4; v >>= 4; }
	if (v >> 2) { n += 2; v >>= 2; }
	if (v >> 1) { n += 1; }
	return n;
}

/*
 * Log-linear bucket: values below 16 have their own bucket; above, 16
 * sub-buckets per power of two (at most 1/16 relative error). Userspace
 * (xlb_pktgen::Histogram) holds the inverse.
 */
static __always_inline __u32 lat_bucket(__u64 v)
{
	__u32 e, b;

	if (v < 16)
		return v;
	e = fls64(v);
	b = (e - 3) * 16 + ((v >> (e - 4)) & 15);
	return b < XLB_PG_HIST_BUCKETS ? b : XLB_PG_HIST_BUCKETS - 1;
}

/* The L4 header of an Ethernet frame at `eth`: IPv4 as the data plane parses
 * it (parse.h), IPv6 with TCP or UDP right after its fixed header. */
static __always_inline int pg_l4(void *eth, void *data_end, __u8 *proto,
				 void **l4, __be16 *dport)
{
	struct ethhdr *e = eth;
	struct ipv6hdr *ip6;
	struct udphdr *u;
	struct xlb_pkt p = {};

	if ((void *)(e + 1) > data_end)
		return -1;
	if (e->h_proto == bpf_htons(ETH_P_IPV6)) {
		ip6 = (void *)(e + 1);
		if ((void *)(ip6 + 1) > data_end)
			return -1;
		if (ip6->nexthdr != IPPROTO_UDP && ip6->nexthdr != IPPROTO_TCP)
			return -1;
		u = (void *)(ip6 + 1);
		if ((void *)(u + 1) > data_end)
			return -1;
		*proto = ip6->nexthdr;
		*l4 = u;
		*dport = u->dest;
		return 0;
	}
	if (xlb_parse(eth, data_end, &p) != XLB_OK || !p.l4)
		return -1;
	*proto = p.proto;
	*l4 = p.l4;
	*dport = p.dport;
	return 0;
}

SEC("xdp")
int xlb_pg_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct pg_sink_stats *s;
	struct pg_stamp *stamp;
	struct tcphdr *tcp;
	void *l4 = NULL;
	__u32 zero = 0, b;
	__u64 now, ts;
	__be16 dport = 0;
	__u8 proto = 0;
	int vxlan = 0;

	s = bpf_map_lookup_elem(&pg_sink, &zero);
	if (!s)
		return XDP_DROP;
	s->packets++;
	s->bytes += data_end - data;

	if (pg_l4(data, data_end, &proto, &l4, &dport))
		return XDP_DROP;
	if (proto == IPPROTO_UDP &&
	    (dport == bpf_htons(PG_VXLAN_PORT) || dport == bpf_htons(PG_VXLAN_IANA))) {
		/* outer UDP, 8 bytes of VXLAN (then xlb's 8-byte frontend
		 * trailer when the flags carry XLB_VXLAN_F_FE, vxlan.h), inner
		 * Ethernet */
		__u8 *vx = l4 + sizeof(struct udphdr);
		__u32 skip = 8;

		if ((void *)(vx + 8) > data_end)
			return XDP_DROP;
		if (vx[3] & 0x02)
			skip += 8;
		if (pg_l4(vx + skip, data_end, &proto, &l4, &dport))
			return XDP_DROP;
		vxlan = 1;
	}
	if (proto == IPPROTO_UDP) {
		stamp = l4 + sizeof(struct udphdr);
	} else {
		tcp = l4;
		if ((void *)(tcp + 1) > data_end)
			return XDP_DROP;
		stamp = l4 + tcp->doff * 4;
	}
	if ((void *)(stamp + 1) > data_end || stamp->magic != bpf_htonl(PG_STAMP_MAGIC))
		return XDP_DROP;
	s->stamped++;
	s->vxlan += vxlan;
	now = bpf_ktime_get_ns();
	ts = stamp->ts;
	if (ts && ts <= now) {
		b = lat_bucket(now - ts);
		if (b < XLB_PG_HIST_BUCKETS)
			s->hist[b]++;
	}
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
