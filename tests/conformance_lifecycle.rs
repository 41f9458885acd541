//! Conformance rows 8 and 9 (docs/conformance.md): Services keep working
//! while the agent is down and while its source of truth is away, and what
//! changed meanwhile is applied when they are back. The lab's agents read the
//! manifest directory, so "the API server goes away" is the directory going
//! away (renamed): the agent keeps its last snapshot, as it keeps its last
//! watch state when the API server is unreachable. The tests of this file
//! stop agents or hide the directory, so they take turns ([`TURN`]).

mod conformance_support;
mod e2e_support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use conformance_support::*;
use e2e_support::*;
use xlb_lab::{self as lab, objects, procs};

static LAB: Mutex<Weak<LabGuard>> = Mutex::new(Weak::new());
static TURN: Mutex<()> = Mutex::new(());

fn lab() -> (Arc<LabGuard>, MutexGuard<'static, ()>) {
    let turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    (shared(&LAB, || LabGuard::with_xlb("xcl")), turn)
}

fn cip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 96, 6, last)
}

fn svc(name: &str, ip: Ipv4Addr) -> ServiceDef {
    ServiceDef::cluster_ip(name, ip).port("http", "TCP", 80, 8080, None)
}

/// Row 8: node1's agent is killed; its Services keep working; a Service
/// changed and one created while it is down are applied once it is back.
fn row08(c: Client, prefix: &str, base: u8) {
    let (g, _turn) = lab();
    let (a, b) = (format!("{prefix}a"), format!("{prefix}b"));
    let (ipa, ipb) = (cip(base), cip(base + 100));
    apply(&g, &svc(&a, ipa), &[slice(&a, &[(1, 1), (2, 1)])]);
    let to_a = SocketAddrV4::new(ipa, 80);
    serves(&g, c, to_a, false, &["n1p1", "n2p1"]);

    let agent = lab::daemons::agent_daemon(&g.lab, 1);
    let pid = agent.kill().expect("node1's agent was running");
    assert!(!procs::alive(pid));
    // Down: the data plane keeps serving what it has.
    let v = answers(&g, c, to_a, false, 20).unwrap_or_else(|e| panic!("agent down: {e}"));
    assert!(
        v.iter().all(|r| r.name == "n1p1" || r.name == "n2p1"),
        "{v:?}"
    );
    // Changes meanwhile.
    apply(&g, &svc(&a, ipa), &[slice(&a, &[(2, 2)])]);
    apply(&g, &svc(&b, ipb), &[slice(&b, &[(1, 2)])]);
    std::thread::sleep(Duration::from_secs(1));
    assert!(agent.running().is_none(), "the agent came back on its own");

    g.up_again(&[]);
    assert!(agent.running().is_some_and(|p| p != pid));
    serves(&g, c, to_a, false, &["n2p2"]);
    serves(&g, c, SocketAddrV4::new(ipb, 80), false, &["n1p2"]);
    delete(&g, &a);
    delete(&g, &b);
}

#[test]
fn row08_services_work_across_an_agent_restart_from_pod() {
    if !xlb_testkit::privileged() {
        return;
    }
    row08(Client::Pod(1, 2), "r08p", 8);
}

#[test]
fn row08_services_work_across_an_agent_restart_from_host() {
    if !xlb_testkit::privileged() {
        return;
    }
    row08(Client::Host(1), "r08h", 18);
}

/// Puts the manifest directory back even when the test fails.
struct Away<'a> {
    dir: &'a std::path::Path,
    away: std::path::PathBuf,
}

impl Drop for Away<'_> {
    fn drop(&mut self) {
        if self.away.exists() {
            let _ = std::fs::rename(&self.away, self.dir);
        }
    }
}

#[test]
fn row09_services_keep_working_while_the_source_is_away() {
    if !xlb_testkit::privileged() {
        return;
    }
    let (g, _turn) = lab();
    let c1 = Client::Pod(1, 2);
    let c2 = Client::Pod(2, 2);
    let to = SocketAddrV4::new(cip(9), 80);
    let late = SocketAddrV4::new(cip(109), 80);
    apply(&g, &svc("r09", cip(9)), &[slice("r09", &[(1, 1), (2, 1)])]);
    for c in [c1, c2] {
        serves(&g, c, to, false, &["n1p1", "n2p1"]);
    }
    let dir = g.lab.manifests_dir();
    let away = Away {
        dir: &dir,
        away: dir.with_file_name("manifests.away"),
    };
    std::fs::rename(&dir, &away.away).unwrap();
    // Several poll periods with the source gone: nothing is withdrawn.
    std::thread::sleep(Duration::from_secs(3));
    for c in [c1, c2] {
        let v = answers(&g, c, to, false, 20).unwrap_or_else(|e| panic!("source away: {e}"));
        assert!(
            v.iter().all(|r| r.name == "n1p1" || r.name == "n2p1"),
            "{v:?}"
        );
    }
    for n in [1, 2] {
        assert!(lab::daemons::agent_daemon(&g.lab, n).running().is_some());
    }
    // A Service created while it is away is served once it is back.
    objects::apply(
        &away.away,
        &svc("r09b", cip(109)),
        &[slice("r09b", &[(2, 2)])],
    )
    .unwrap();
    std::fs::rename(&away.away, &dir).unwrap();
    drop(away);
    for c in [c1, c2] {
        serves(&g, c, late, false, &["n2p2"]);
        serves(&g, c, to, false, &["n1p1", "n2p1"]);
    }
}
