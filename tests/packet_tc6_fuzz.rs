//! # Fuzz-style test of the pod-veth program's IPv6 path
//!
//! The IPv6 frames of the fuzz test (`fuzz6`: structured frames to the IPv6
//! fixture's Services and from its backends, extension headers, fragments,
//! zero UDP checksums, VXLAN over IPv6, ICMPv6 errors and neighbour
//! discovery, their mutations and noise; seeded) through xlb_tc (every
//! fourth through the uplink XDP program instead, which writes the flows,
//! tunnel-return entries included, whose replies then reach tc), and
//! checks that
//! - BPF_PROG_RUN never fails on a frame the kernel takes, and the verdict
//!   is one the program may return;
//! - every frame counts exactly one reason;
//! - every changed frame is well formed IPv6 (header, extension chain,
//!   lengths exact, bytes after the packet aside); when the input was well formed, or the output is an
//!   answer the program built (RST, ICMPv6 port unreachable), its checksums
//!   are valid too (VXLAN: outer and inner), and no UDP checksum is 0.
mod packet_util;

#[allow(dead_code)]
mod fuzz6;

use packet_util::v6::*;
use packet_util::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

const SEED: u64 = 0x786c_6200_2026 ^ 0x7c6;
const TC6_FRAMES: usize = 150_000;

fn total(env: &Env) -> u64 {
    env.reasons().iter().sum()
}

/// `f` without bytes after its IPv6 packet (Ethernet padding, junk: the
/// program leaves them).
fn trim(f: &[u8]) -> &[u8] {
    if f.len() >= 54 && f[12..14] == ETH_P_IPV6.to_be_bytes() {
        let end = 54 + usize::from(u16::from_be_bytes([f[18], f[19]]));
        if end <= f.len() {
            return &f[..end];
        }
    }
    f
}

/// The check of one (input, output) pair.
fn check(input: &[u8], out: &[u8]) -> Result<(), String> {
    if out == input {
        return Ok(());
    }
    let (input, out) = (trim(input), trim(out));
    let p = parse6(out).map_err(|e| format!("changed frame: {e}"))?;
    let q = parse6(input).ok();
    // an answer built from scratch: from the input's destination to its source
    let answer = q
        .as_ref()
        .is_some_and(|q| q.proto != ICMP6 && p.src == q.dst && p.dst == q.src);
    if answer || check_frame6(input).is_ok() {
        check_frame6(out).map_err(|e| format!("emitted: {e}"))?;
    }
    Ok(())
}

#[test]
fn fuzz_tc_ipv6() {
    let Some(env) = Env::new() else { return };
    fixture6(&env);
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut failures = Vec::new();
    let (mut runs, mut changed, mut redirected, mut tunnelled) = (0u64, 0usize, 0usize, 0usize);
    for i in 0..TC6_FRAMES {
        let f = fuzz6::generate6(&mut rng);
        if i % 4 == 0 {
            // through the uplink instead: the flows (and tunnel-return
            // entries) whose replies the pod veth then sees
            env.xdp_in(&f, Some(env.uplink));
            continue;
        }
        let before = total(&env);
        let Ok((rc, out)) = env.try_tc(&f) else {
            // refused by the kernel before the program ran (a cut header)
            continue;
        };
        runs += 1;
        if total(&env) != before + 1 {
            failures.push(format!("tc6 #{i}: {} reasons", total(&env) - before));
        }
        if ![TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT].contains(&rc) {
            failures.push(format!("tc6 #{i}: verdict {rc}"));
        }
        if out != f {
            changed += 1;
        }
        if rc == TC_ACT_REDIRECT {
            redirected += 1;
            if out.len() > 60 && out[20] == UDP && out[56..58] == VXLAN_PORT.to_be_bytes() {
                tunnelled += 1;
            }
        }
        if let Err(e) = check(&f, &out) {
            failures.push(format!("tc6 #{i}: {e}\n  in  {f:02x?}\n  out {out:02x?}"));
        }
        if failures.len() > 5 {
            break;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(runs > 100_000, "frames the kernel ran: {runs}");
    assert!(
        changed > 10_000,
        "the fuzz must exercise rewriting ({changed})"
    );
    assert!(
        redirected > 1_000,
        "and the answers and hairpins ({redirected})"
    );
    assert!(tunnelled > 100, "and tunnel returns ({tunnelled})");
    eprintln!(
        "tc6 fuzz: {runs} frames, {changed} rewritten, {redirected} redirected, {tunnelled} tunnelled"
    );
}
