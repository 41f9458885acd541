//! Table-driven packet tests (Katran style): a case, and the runner that
//! checks its verdict, its one reason counter and its output.

use super::*;

pub fn reason_name(r: usize) -> String {
    Reason(r as u32).name()
}

/// The reason counters that moved between two snapshots.
pub fn moved(before: &[u64], after: &[u64]) -> Vec<(String, u64)> {
    before
        .iter()
        .zip(after)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| (reason_name(i), b - a))
        .collect()
}

/// One row of a packet table.
pub struct Case {
    pub name: &'static str,
    /// Extra map state (and packets) before the frame; the fixture is fresh.
    pub setup: fn(&Env),
    pub frame: fn() -> Vec<u8>,
    /// XDP: run with the uplink as ingress interface (else `lo`).
    pub on_uplink: bool,
    pub rc: u32,
    /// The outcome reason that must count exactly this one frame.
    pub reason: u32,
    /// Checks on (env, input, output).
    pub check: fn(&Env, &[u8], &[u8]),
}

pub fn no_setup(_: &Env) {}

pub fn unchanged(_: &Env, input: &[u8], out: &[u8]) {
    assert_eq!(input, out, "frame must pass untouched");
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Prog {
    Xdp,
    Tc,
}

/// Runs a table; every case gets a fresh fixture and empty ct/affinity.
/// Reports all failing rows at once.
pub fn run_table(env: &Env, prog: Prog, cases: &[Case]) {
    let mut failed = Vec::new();
    for c in cases {
        env.clear_state();
        fixture(env);
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            (c.setup)(env);
            let input = (c.frame)();
            let before = env.reasons();
            let (rc, out) = match prog {
                Prog::Xdp => env.xdp_in(&input, c.on_uplink.then_some(env.uplink)),
                Prog::Tc => env.tc(&input),
            };
            let after = env.reasons();
            assert_eq!(
                rc,
                c.rc,
                "return code (reasons moved: {:?})",
                moved(&before, &after)
            );
            let r = c.reason as usize;
            assert_eq!(
                after[r] - before[r],
                1,
                "reason {} must count the frame once; moved: {:?}",
                reason_name(r),
                moved(&before, &after)
            );
            (c.check)(env, &input, &out);
        }));
        if let Err(e) = res {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(format!("{}: {msg}", c.name));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} cases failed:\n  {}",
        failed.len(),
        cases.len(),
        failed.join("\n  ")
    );
}
