//! Shared by the `e2e_*` tests: a lab per test (or per file) that `xlb lab down`s
//! itself on drop, and helpers to talk from the client or a pod namespace.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use xlb_lab::{self as lab, netns, probe, Lab};

/// The xlb binary cargo built for these tests.
pub const XLB: &str = env!("CARGO_BIN_EXE_xlb");

pub const T: Duration = Duration::from_secs(3);

/// A running lab; `xlb lab down` on drop (also when the test panics).
pub struct LabGuard {
    pub lab: Lab,
}

impl LabGuard {
    /// `xlb lab up --prefix <unique>` (plus `extra` arguments).
    pub fn up(tag: &str, extra: &[&str]) -> Self {
        let prefix = xlb_testkit::unique_name(tag);
        let arg = |name: &str, default: u8| {
            extra
                .windows(2)
                .find(|w| w[0] == name)
                .map_or(default, |w| w[1].parse().unwrap())
        };
        let guard = LabGuard {
            lab: Lab::new(&prefix, arg("--nodes", 2), arg("--pods-per-node", 2))
                .unwrap()
                .with_dual_stack(extra.contains(&"--dual-stack")),
        };
        let mut args = vec!["lab", "up", "--prefix", &prefix];
        args.extend_from_slice(extra);
        let out = Command::new(XLB).args(&args).output().unwrap();
        if !out.status.success() {
            // The guard still drops (lab down) while this unwinds.
            panic!(
                "xlb {}: {}\n{}\n--- lab logs ---\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                guard.logs()
            );
        }
        guard
    }

    /// The lab with xlb (data plane + agents).
    pub fn with_xlb(tag: &str) -> Self {
        Self::up(tag, &[])
    }

    /// Network and backends only.
    pub fn topology(tag: &str) -> Self {
        Self::up(tag, &["--topology-only"])
    }

    pub fn prefix(&self) -> &str {
        &self.lab.prefix
    }

    /// `xlb lab up` on the running lab, with `env` for what it starts: it
    /// restarts only what is not running (an agent killed or stopped).
    pub fn up_again(&self, env: &[(&str, &str)]) {
        self.up_with(None, env);
    }

    /// [`Self::up_again`], starting `xlb_bin` (a copy of the binary: "a new
    /// build") instead of the test's own when given.
    pub fn up_with(&self, xlb_bin: Option<&std::path::Path>, env: &[(&str, &str)]) {
        let mut c = Command::new(XLB);
        c.args(["lab", "up", "--prefix", self.prefix()])
            .envs(env.iter().copied());
        if let Some(b) = xlb_bin {
            c.arg("--xlb-bin").arg(b);
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "xlb lab up: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
    }

    /// Every log file of the lab, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(rd) = std::fs::read_dir(self.lab.state_dir()) {
            let mut paths: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
            paths.sort();
            for p in paths
                .iter()
                .filter(|p| p.extension().is_some_and(|x| x == "log"))
            {
                let text = std::fs::read_to_string(p).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                s.push_str(&format!("== {}\n", p.display()));
                for l in tail.into_iter().rev() {
                    s.push_str(l);
                    s.push('\n');
                }
            }
        }
        s
    }

    /// Runs `f` in the client namespace.
    pub fn client<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        netns::run(&self.lab.ns_client(), f).unwrap()
    }

    /// Runs `f` in pod `(n, k)`'s namespace.
    pub fn pod<R: Send + 'static>(
        &self,
        n: u8,
        k: u8,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> R {
        netns::run(&self.lab.ns_pod(n, k), f).unwrap()
    }

    /// Runs `f` in node `n`'s namespace.
    pub fn node<R: Send + 'static>(&self, n: u8, f: impl FnOnce() -> R + Send + 'static) -> R {
        netns::run(&self.lab.ns_node(n), f).unwrap()
    }

    /// Replaces a Service's endpoints in the lab's manifest directory.
    pub fn set_endpoints(&self, service: &str, pods: &[(u8, u8)]) {
        lab::manifests::set_endpoints(&self.lab.manifests_dir(), service, pods).unwrap();
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        if let Err(e) = lab::down(&self.lab.prefix) {
            eprintln!("lab down {}: {e}", self.lab.prefix);
        }
    }
}

/// One lab shared by the tests of a file that run at the same time; the
/// last one to finish takes it down.
pub fn shared(
    slot: &'static Mutex<Weak<LabGuard>>,
    make: impl FnOnce() -> LabGuard,
) -> Arc<LabGuard> {
    let mut g = slot.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(l) = g.upgrade() {
        return l;
    }
    let l = Arc::new(make());
    *g = Arc::downgrade(&l);
    l
}

pub fn sa(a: [u8; 4], port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(a), port)
}

pub fn node(n: u8, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(lab::node_addr(n), port)
}

/// `count` TCP connections from `from` (inside the calling namespace): backend name -> count.
/// Panics on any failed connection.
pub fn spread(from: Option<Ipv4Addr>, to: SocketAddrV4, count: usize) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for i in 0..count {
        let r = probe::tcp(from, to, T).unwrap_or_else(|e| panic!("connection {i} to {to}: {e}"));
        *m.entry(r.name).or_insert(0) += 1;
    }
    m
}

/// Retries `f` until it returns `Some`, for state that converges (an agent
/// picking up a manifest change). Not a timing assertion: the limit is a
/// generous bound for a hung agent.
pub fn eventually<R>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<R>) -> R {
    let start = Instant::now();
    loop {
        if let Some(r) = f() {
            return r;
        }
        assert!(
            start.elapsed() < limit,
            "{what}: not reached within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Names of pods as the backends answer.
pub fn names(pods: &[(u8, u8)]) -> Vec<String> {
    pods.iter().map(|&(n, k)| lab::pod_name(n, k)).collect()
}
