/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xlb: hashes. The Jenkins hash chooses Maglev slots and filter slots, so
 * userspace reproduces it and every node computes the same value; the
 * Fibonacci hash only spreads keys over a private cache's slots.
 */
#ifndef XLB_HASH_H
#define XLB_HASH_H

#include <bpf/bpf_helpers.h>
#include "types.h"

#define XLB_HASH_INIT		0xdeadbeef

#define xlb_rol32(w, s) (((w) << (s)) | ((w) >> (32 - (s))))

/* Jenkins lookup3 final mix of three words (jhash_3words). Userspace tests
 * reproduce it to predict Maglev slots; every node computes the same value. */
static __always_inline __u32 xlb_hash3(__u32 a, __u32 b, __u32 c, __u32 init)
{
	a += XLB_HASH_INIT + init;
	b += XLB_HASH_INIT + init;
	c += XLB_HASH_INIT + init;
	c ^= b; c -= xlb_rol32(b, 14);
	a ^= c; a -= xlb_rol32(c, 11);
	b ^= a; b -= xlb_rol32(a, 25);
	c ^= b; c -= xlb_rol32(b, 16);
	a ^= c; a -= xlb_rol32(c, 4);
	b ^= a; b -= xlb_rol32(a, 14);
	c ^= b; c -= xlb_rol32(b, 24);
	return c;
}

/* Flow hash of a 5-tuple; with session affinity the source port is left out
 * so that one client always lands on one backend. Words are taken as stored
 * (network order). */
static __always_inline __u32 xlb_flow_hash(const struct xlb_ct_key *t, int no_sport)
{
	__u32 ports = ((__u32)(no_sport ? 0 : t->sport) << 16) | t->dport;

	return xlb_hash3(t->saddr, t->daddr, ports, t->proto);
}

/* Fibonacci hashing of a host-order word: the top `bits` bits of
 * w * 2^32/phi depend on every bit of w, so addresses that differ only in
 * their last octet (host order: the low bits) spread over the slots. (Network
 * order would put that octet in the top byte, where a multiplication can only
 * move it up: at most 4 slots for a whole /24.) A cache slot, not a Maglev
 * choice. */
static __always_inline __u32 xlb_slot_hash(__u32 w, int bits)
{
	return (w * 0x9e3779b1U) >> (32 - bits);
}

#endif /* XLB_HASH_H */
