/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: the IPv6 flow hash. Each 16-byte address folds to one word with the
 * Jenkins mix (xlb_hash3 of its first three words, the fourth as init), then
 * the two words, the ports and the protocol mix as in xlb_flow_hash.
 * Userspace (tests, `xlb explain`) reproduces it to predict Maglev slots;
 * every node computes the same value.
 */
#ifndef XLB_HASH6_H
#define XLB_HASH6_H

#include "hash.h"

/* One word of a 16-byte address (four network-order words as stored). */
static __always_inline __u32 xlb_addr6_fold(const __be32 *a)
{
	return xlb_hash3(a[0], a[1], a[2], a[3]);
}

/* Flow hash of an IPv6 5-tuple; with session affinity the source port is
 * left out so that one client (/128) always lands on one backend. */
static __always_inline __u32 xlb_flow_hash6(const struct xlb_ct6_key *t, int no_sport)
{
	__u32 ports = ((__u32)(no_sport ? 0 : t->sport) << 16) | t->dport;

	return xlb_hash3(xlb_addr6_fold(t->saddr), xlb_addr6_fold(t->daddr), ports, t->proto);
}

#endif /* XLB_HASH6_H */
