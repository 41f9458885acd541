//! Churn: 50 long-lived connections keep exchanging data while backends they
//! do not use are added and removed through the lab's manifest directory.
//! Every connection survives; new connections follow the new set.

mod e2e_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use e2e_support::*;
use xlb_lab::probe::Conn;

/// Keeps every connection talking until `stop`; returns the exchanges done
/// and every failure (connection index, error).
fn talk(mut conns: Vec<Conn>, stop: Arc<AtomicBool>) -> (Vec<Conn>, usize, Vec<(usize, String)>) {
    let mut done = 0;
    let mut failures = Vec::new();
    let mut dead = vec![false; conns.len()];
    let mut round = 0;
    while !stop.load(Ordering::Relaxed) {
        for (i, c) in conns.iter_mut().enumerate() {
            if dead[i] {
                continue;
            }
            match c.exchange(&format!("round {round} conn {i}")) {
                Ok(_) => done += 1,
                Err(e) => {
                    dead[i] = true;
                    failures.push((i, format!("{} ({}): {e}", c.greeting.name, c.greeting.peer)));
                }
            }
        }
        round += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    (conns, done, failures)
}

#[test]
fn connections_survive_backend_churn_and_new_ones_follow_the_new_set() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = LabGuard::with_xlb("xeh");
    // churn (NodePort 30089) starts with n1p1 and n2p1.
    let to = node(1, 30089);
    let conns: Vec<Conn> = g.client(move || {
        (0..50)
            .map(|i| Conn::open(None, to, T).unwrap_or_else(|e| panic!("connection {i}: {e}")))
            .collect()
    });
    let in_use: BTreeMap<String, usize> = conns.iter().fold(BTreeMap::new(), |mut m, c| {
        *m.entry(c.greeting.name.clone()).or_default() += 1;
        m
    });
    assert_eq!(
        in_use.keys().cloned().collect::<Vec<_>>(),
        ["n1p1", "n2p1"],
        "{in_use:?}"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let talker = {
        let stop = stop.clone();
        std::thread::spawn(move || talk(conns, stop))
    };

    // Add the two idle pods: new connections reach them.
    g.set_endpoints("churn", &[(1, 1), (2, 1), (1, 2), (2, 2)]);
    let seen = eventually("new backends in use", Duration::from_secs(20), || {
        let m = g.client(move || spread(None, to, 40));
        (m.len() == 4).then_some(m)
    });
    println!("after adding n1p2, n2p2: {seen:?}");

    // Remove one of the added pods (no long-lived connection uses it).
    g.set_endpoints("churn", &[(1, 1), (2, 1), (2, 2)]);
    let seen = eventually(
        "removed backend out of use",
        Duration::from_secs(20),
        || {
            let m = g.client(move || spread(None, to, 60));
            (!m.contains_key("n1p2")).then_some(m)
        },
    );
    assert_eq!(seen.len(), 3, "{seen:?}");
    // And it stays out: another batch never reaches it.
    let m = g.client(move || spread(None, to, 100));
    assert!(!m.contains_key("n1p2"), "{m:?}");

    // Remove the other added pod too, then put both back.
    g.set_endpoints("churn", &[(1, 1), (2, 1)]);
    eventually("back to the first set", Duration::from_secs(20), || {
        let m = g.client(move || spread(None, to, 60));
        (m.len() == 2).then_some(())
    });

    stop.store(true, Ordering::Relaxed);
    let (mut conns, done, failures) = talker.join().unwrap();
    assert!(
        failures.is_empty(),
        "connections broken by churn: {failures:?}\n{}",
        g.logs()
    );
    assert!(done >= 50, "only {done} exchanges");
    // Each one still talks to the backend it started with.
    for (i, c) in conns.iter_mut().enumerate() {
        let r = c
            .exchange("final")
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        assert_eq!(r.name, c.greeting.name);
    }
}
