//! Test scaffolding shared by every xlb crate's tests: preconditions that fail
//! under CI instead of skipping, unique names, commands and child-process
//! guards (`cmd`), network namespaces and veth pairs (`netns`), bpffs pin
//! directories (`pin`), kernel state read with bpf(2) (`bpf`), the Internet
//! checksum (`csum`), frame builders (`frame`, IPv6: `frame6`,
//! checked by `check6`), a deterministic generator
//! (`rng`), self-removing temporary directories (`tmp`), and the agent
//! tests' HTTP/wait helpers and manifests (`agent`, `manifests`).
//!
//! A dev-dependency only: nothing here is part of the product.

pub mod agent;
pub mod bpf;
pub mod check6;
pub mod cmd;
pub mod csum;
pub mod frame;
pub mod frame6;
pub mod manifests;
pub mod netns;
pub mod pin;
pub mod rng;
pub mod tmp;

pub use cmd::{run_ok, sh, sh_out, stderr, stdout, KillOnDrop};
pub use netns::{enter, Netns};
pub use pin::PinDir;
pub use rng::XorShift;
pub use tmp::TempDir;

/// Whether a missing precondition must fail the test instead of skipping it:
/// under `CI=true` or with `XLB_REQUIRE_PRIV` set.
pub fn skip_forbidden() -> bool {
    std::env::var("CI").as_deref() == Ok("true") || std::env::var_os("XLB_REQUIRE_PRIV").is_some()
}

/// True when `ok`; otherwise the test skips (prints why, returns false), or,
/// where skipping is forbidden ([`skip_forbidden`]), panics with `what`.
pub fn precondition(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if skip_forbidden() {
        panic!("precondition missing: {what}; CI=true / XLB_REQUIRE_PRIV forbids skipping");
    }
    eprintln!("skipping: {what}");
    false
}

/// True when the test may run privileged work (BPF, netns, XDP): root.
/// Otherwise a [`precondition`] failure: skip, or panic under CI.
pub fn privileged() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    precondition(root, "this test needs root (BPF, netns, XDP)")
}

/// A name unique to this process and call, for namespaces, links and pins
/// (at most 15 bytes with a short prefix, to fit IFNAMSIZ).
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id() % 100_000;
    let mut s = format!("{prefix}{pid:x}{n:x}");
    s.truncate(15);
    s
}

/// Polls `f` every 50 ms until it holds (true) or 60 s have passed (false);
/// for kernel objects freed asynchronously and child processes' work. The
/// limit is a hang guard, wide enough for a loaded machine running several
/// test executables at once: a condition that holds returns at once.
pub fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Whether more than one CPU is online (tests that pin two threads need it).
pub fn several_cpus() -> bool {
    std::thread::available_parallelism().map_or(1, |n| n.get()) > 1
}
