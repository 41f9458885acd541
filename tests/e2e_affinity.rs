//! sessionAffinity ClientIP over time: a client keeps its backend while it
//! keeps talking, even after the Service's Maglev table changes, and is
//! balanced afresh once it has been quiet for longer than timeoutSeconds.

mod e2e_support;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;
use std::time::Duration;

use e2e_support::*;
use xlb_bpf::wire::Proto;
use xlb_lab::{self as lab, manifests, probe};

const PORT: u16 = 30090;
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 20);
const TIMEOUT_S: u64 = 2;

fn service_yaml() -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: sticky-short
  namespace: default
spec:
  type: NodePort
  clusterIP: {VIP}
  clusterIPs: [{VIP}]
  sessionAffinity: ClientIP
  sessionAffinityConfig:
    clientIP:
      timeoutSeconds: {TIMEOUT_S}
  ports:
  - name: http
    protocol: TCP
    port: 80
    targetPort: 8080
    nodePort: {PORT}
---
{}",
        manifests::endpoint_slice_yaml(
            "sticky-short",
            &[(1, 1), (2, 1)],
            manifests::default_ports()
        )
    )
}

/// Where node1's services map points the ClusterIP frontend: (table_off, table_size).
fn table(g: &LabGuard) -> Option<(u32, u32)> {
    let m = xlb_bpf::Maps::from_pin_dir(&g.lab.pin_dir(1)).ok()?;
    let k = xlb_bpf::types::xlb_svc_key::addr(SocketAddrV4::new(VIP, 80), Proto::Tcp);
    m.service(&k).ok()?.map(|v| (v.table_off, v.table_size))
}

#[test]
fn affinity_holds_while_in_use_and_expires_after_the_timeout() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = LabGuard::with_xlb("xea");
    // 16 more client addresses, so that some of them are mapped elsewhere by the new table.
    let clients: Vec<Ipv4Addr> = (20..36).map(|i| Ipv4Addr::new(198, 18, 0, i)).collect();
    for a in &clients {
        let st = Command::new("ip")
            .args([
                "-n",
                &g.lab.ns_client(),
                "addr",
                "add",
                &format!("{a}/24"),
                "dev",
                "eth0",
            ])
            .status()
            .unwrap();
        assert!(st.success());
    }
    let path = g.lab.manifests_dir().join("sticky-short.yaml");
    manifests::write_atomic(&path, &service_yaml()).unwrap();
    let before = eventually("sticky-short synced", Duration::from_secs(20), || table(&g));

    let to = SocketAddrV4::new(lab::node_addr(1), PORT);
    let ask = move |cs: Vec<Ipv4Addr>| -> BTreeMap<Ipv4Addr, String> {
        cs.into_iter()
            .map(|c| {
                let r = probe::tcp(Some(c), to, T).unwrap_or_else(|e| panic!("{c}: {e}"));
                (c, r.name)
            })
            .collect()
    };
    let first = g.client({
        let cs = clients.clone();
        move || ask(cs)
    });
    // Sticky: the same answers again.
    assert_eq!(
        g.client({
            let cs = clients.clone();
            move || ask(cs)
        }),
        first
    );

    // Two more backends: a new Maglev table. Clients that keep talking keep their backend.
    g.set_endpoints("sticky-short", &[(1, 1), (2, 1), (1, 2), (2, 2)]);
    eventually("new table in place", Duration::from_secs(20), || {
        let now = g.client({
            let cs = clients.clone();
            move || ask(cs)
        });
        assert_eq!(now, first, "a client in use lost its backend");
        (table(&g) != Some(before)).then_some(())
    });
    for _ in 0..3 {
        let now = g.client({
            let cs = clients.clone();
            move || ask(cs)
        });
        assert_eq!(
            now, first,
            "a client in use lost its backend after the table changed"
        );
    }

    // Quiet for longer than the timeout: chosen afresh by the new table.
    std::thread::sleep(Duration::from_secs(TIMEOUT_S + 1));
    let fresh = g.client({
        let cs = clients.clone();
        move || ask(cs)
    });
    let moved = clients.iter().filter(|c| fresh[*c] != first[*c]).count();
    assert!(
        moved > 0,
        "no client moved after the affinity timeout: {fresh:?}"
    );
    assert!(
        fresh.values().any(|n| n == "n1p2" || n == "n2p2"),
        "{fresh:?}"
    );
    // And they stick to the new choice.
    let again = g.client({
        let cs = clients.clone();
        move || ask(cs)
    });
    assert_eq!(again, fresh);
    println!(
        "affinity: {moved} of {} clients moved after the timeout",
        clients.len()
    );
}
