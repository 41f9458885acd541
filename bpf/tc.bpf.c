// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* xlb pod-veth tc program: pod-originated Service traffic, reverse NAT, tunnel return. */
#include <linux/pkt_cls.h>
#include "include/maps.h"

SEC("tc")
int xlb_tc(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
