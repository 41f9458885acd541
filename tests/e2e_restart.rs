//! Restart: SIGKILL an agent while traffic flows. The data plane keeps
//! forwarding (existing connections live on, new ones are balanced) while it
//! is down; once restarted it adopts the pinned maps and changes nothing that
//! did not change. Streams with counted losses across SIGKILL, SIGTERM and
//! upgrades: upgrade_streams.rs.

mod e2e_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use e2e_support::*;
use xlb_bpf::Maps;
use xlb_lab::probe::Conn;
use xlb_lab::{self as lab, procs};

fn bytes<T: plain::Plain>(v: &T) -> Vec<u8> {
    // SAFETY: map types are Plain C structs, every byte initialised.
    unsafe { plain::as_bytes(v) }.to_vec()
}

/// Everything the agent writes (not ct/affinity/stats, which traffic changes),
/// as sorted byte rows per map.
fn snapshot(pin: &Path) -> BTreeMap<&'static str, Vec<Vec<u8>>> {
    let m = Maps::from_pin_dir(pin).unwrap();
    let mut s = BTreeMap::new();
    let svcs = m.services().unwrap();
    let mut maglev = Vec::new();
    for (_, v) in &svcs {
        let t = m.read_maglev(v.table_off, v.table_size).unwrap();
        maglev.push(t.iter().flat_map(|x| x.to_ne_bytes()).collect());
    }
    s.insert(
        "services",
        svcs.iter()
            .map(|(k, v)| [bytes(k), bytes(v)].concat())
            .collect(),
    );
    s.insert("maglev", maglev);
    s.insert(
        "backends",
        m.backends()
            .unwrap()
            .iter()
            .map(|(id, b)| [id.to_ne_bytes().to_vec(), bytes(b)].concat())
            .collect(),
    );
    s.insert(
        "tunnel",
        m.tunnels()
            .unwrap()
            .iter()
            .map(|(k, v)| [bytes(k), bytes(v)].concat())
            .collect(),
    );
    s.insert(
        "src_ranges",
        m.src_ranges().unwrap().iter().map(bytes).collect(),
    );
    s.insert(
        "local_addrs",
        m.local_addrs()
            .unwrap()
            .iter()
            .map(|a| a.octets().to_vec())
            .collect(),
    );
    s.insert(
        "remote_addrs",
        m.remote_addrs()
            .unwrap()
            .iter()
            .map(|a| a.octets().to_vec())
            .collect(),
    );
    s.insert("config", vec![bytes(&m.config().unwrap())]);
    for rows in s.values_mut() {
        rows.sort();
    }
    s
}

/// Waits until two snapshots a second apart agree (the agent is done syncing).
fn steady(pin: &Path) -> BTreeMap<&'static str, Vec<Vec<u8>>> {
    eventually("maps steady", Duration::from_secs(30), || {
        let a = snapshot(pin);
        std::thread::sleep(Duration::from_secs(1));
        let b = snapshot(pin);
        (a == b && !a["services"].is_empty()).then_some(b)
    })
}

#[test]
fn agent_killed_under_traffic_then_restarted_changes_nothing() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = LabGuard::with_xlb("xer");
    let l = g.lab.clone();
    let to = node(1, 30080);

    let conns: Vec<Conn> = g.client(move || {
        (0..20)
            .map(|i| Conn::open(None, to, T).unwrap_or_else(|e| panic!("connection {i}: {e}")))
            .collect()
    });
    let stop = Arc::new(AtomicBool::new(false));
    let talker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut conns = conns;
            let mut failures = Vec::new();
            let mut round = 0;
            while !stop.load(Ordering::Relaxed) && failures.is_empty() {
                for (i, c) in conns.iter_mut().enumerate() {
                    if let Err(e) = c.exchange(&format!("round {round}")) {
                        failures.push(format!("connection {i} ({}): {e}", c.greeting.name));
                    }
                }
                round += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            (conns, round, failures)
        })
    };

    let before: Vec<_> = [1, 2].map(|n| steady(&l.pin_dir(n))).into();
    let agent = lab::daemons::agent_daemon(&l, 1);
    let pid = agent.kill().expect("agent of node1 was not running");
    assert!(!procs::alive(pid));

    // Down: new connections are still served and balanced over all four.
    let m = g.client(move || spread(None, to, 400));
    assert_eq!(m.len(), 4, "{m:?}");
    for (name, &c) in &m {
        assert!(
            (60..=140).contains(&c),
            "{name}: {c} of 400 while the agent is down: {m:?}"
        );
    }

    // Restart it (an idempotent `up` restarts what is not running).
    g.up_again(&[]);
    let new_pid = agent.running().expect("agent restarted");
    assert_ne!(new_pid, pid);

    let after: Vec<_> = [1, 2].map(|n| steady(&l.pin_dir(n))).into();
    for (n, (b, a)) in before.iter().zip(&after).enumerate() {
        for (map, rows) in b {
            assert_eq!(
                rows,
                &a[map],
                "node{}: map {map} changed across the restart",
                n + 1
            );
        }
    }

    // New connections after the restart are fine too.
    let m = g.client(move || spread(None, to, 40));
    assert!(m.len() >= 3, "{m:?}");

    stop.store(true, Ordering::Relaxed);
    let (mut conns, rounds, failures) = talker.join().unwrap();
    assert!(failures.is_empty(), "{failures:?}\n{}", g.logs());
    assert!(rounds > 0);
    for (i, c) in conns.iter_mut().enumerate() {
        c.exchange("after restart")
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
    }
}
