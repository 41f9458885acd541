//! Map sizes of `xlb agent` (root, subprocess, manifest source): a size set
//! by flag too small for the Services fails `/readyz` with the reason,
//! counts in `xlb_unprogrammed`, shows in `xlb doctor` and `xlb maps
//! services`; the same pinned map follows the Services once the flag goes
//! (grown at start); and 10,000 Services x 10 endpoints are all programmed
//! with the default sizes (the Maglev array grows past its default). The
//! same for `services6`: `--max-frontends` sizes it, and once the flag goes
//! it follows the IPv6 Services.

mod cli_support;

use std::net::SocketAddrV4;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cli_support::{pin_dir, xlb, KillOnDrop};
use libbpf_rs::{MapCore, MapHandle};
use xlb_bpf::consts::{XLB_MAGLEV_SLOTS, XLB_MAX_FRONTENDS6};
use xlb_bpf::types::xlb_svc_key;
use xlb_bpf::{Maps, Proto};
use xlb_testkit::agent::{free_port, http_get, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_xlb");

fn svc_ip(i: u32) -> String {
    let a = 10u32 << 24 | 96 << 16 | (i + 1);
    std::net::Ipv4Addr::from(a).to_string()
}

/// `n` Services (ClusterIP, port 80) with `m` ready endpoints each, in YAML.
fn manifests(n: u32, m: u32) -> String {
    let mut s = String::with_capacity(n as usize * (400 + 60 * m as usize));
    s.push_str(
        "apiVersion: v1\nkind: Node\nmetadata: {name: node-a}\nspec: {podCIDR: 10.244.1.0/24}\n\
         status: {addresses: [{type: InternalIP, address: 198.18.0.2}]}\n",
    );
    for i in 0..n {
        s.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: t}}\n\
             spec: {{clusterIP: {}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}\n\
             ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: s{i}-1, namespace: t, labels: {{kubernetes.io/service-name: s{i}}}}}\n\
             addressType: IPv4\nports: [{{name: http, port: 8080, protocol: TCP}}]\nendpoints:\n",
            svc_ip(i)
        ));
        for j in 0..m {
            let a = (10u32 << 24 | 128 << 16) + i * m + j + 1;
            s.push_str(&format!(
                "- {{addresses: [\"{}\"], conditions: {{ready: true}}, nodeName: node-a}}\n",
                std::net::Ipv4Addr::from(a)
            ));
        }
    }
    s
}

struct Dir(std::path::PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn manifest_dir(text: &str) -> Dir {
    let d = std::env::temp_dir().join(xlb_testkit::unique_name("xlb-sizes-"));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("all.yaml"), text).unwrap();
    Dir(d)
}

fn agent(pin: &Path, dir: &Path, port: u16, extra: &[&str]) -> KillOnDrop {
    KillOnDrop(
        Command::new(BIN)
            .arg("--pin-dir")
            .arg(pin)
            .arg("agent")
            .arg("--manifests")
            .arg(dir)
            .args(["--node-name", "node-a", "--no-socket-lb"])
            .args(["--healthz-addr", ""])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawning xlb agent"),
    )
}

fn in_services(maps: &Maps, i: u32) -> bool {
    let key = xlb_svc_key::addr(
        SocketAddrV4::new(svc_ip(i).parse().unwrap(), 80),
        Proto::Tcp,
    );
    maps.service(&key).unwrap().is_some()
}

#[test]
fn a_fixed_size_too_small_fails_readyz_and_the_map_follows_once_unset() {
    if !xlb_testkit::privileged() {
        return;
    }
    let pin = pin_dir();
    let mut pin = pin;
    pin.also.push(xlb::unprogrammed::path(&pin.path));
    let dir = manifest_dir(&manifests(20, 2));
    let port = free_port();
    // 20 tables of 251 slots; 1000 slots hold 3 of them.
    let a = agent(&pin.path, &dir.0, port, &["--maglev-slots", "1000"]);
    let body = wait_for("/readyz 503 naming the full maglev array", || {
        http_get(port, "/readyz").filter(|(s, b)| *s == 503 && b.contains("maglev_full"))
    })
    .1;
    assert!(body.contains("17 desired entries not programmed"), "{body}");
    let metrics = http_get(port, "/metrics").unwrap().1;
    assert!(
        metrics.contains("xlb_unprogrammed{reason=\"maglev_full\"} 17\n"),
        "{metrics}"
    );
    let maps = Maps::from_pin_dir(&pin.path).unwrap();
    assert_eq!(maps.maglev.max_entries(), 1000, "a fixed size is not grown");
    assert_eq!((0..20).filter(|i| in_services(&maps, *i)).count(), 3);

    let out = xlb(None, &pin.path, &["maps", "services"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("NOT PROGRAMMED (17"), "{text}");
    assert!(text.contains("t/s19:80/TCP  maglev_full"), "{text}");
    let out = xlb(None, &pin.path, &["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "programmed")
        .cloned()
        .unwrap_or_else(|| panic!("no programmed check: {v}"));
    assert_eq!(check["status"], "warn", "{check}");
    assert!(
        check["detail"].as_str().unwrap().contains("maglev_full"),
        "{check}"
    );
    drop(a);

    // Without the flag the pinned 1000-slot map follows the Services: it
    // is grown at the first sync (to the default floor) and all are in.
    let a = agent(&pin.path, &dir.0, port, &[]);
    wait_for("/readyz 200 after growing", || {
        http_get(port, "/readyz").filter(|(s, _)| *s == 200)
    });
    let maps = Maps::from_pin_dir(&pin.path).unwrap();
    assert_eq!(maps.maglev.max_entries(), XLB_MAGLEV_SLOTS);
    assert_eq!((0..20).filter(|i| in_services(&maps, *i)).count(), 20);
    let metrics = http_get(port, "/metrics").unwrap().1;
    assert!(
        metrics.contains("xlb_unprogrammed{reason=\"maglev_full\"} 0\n"),
        "{metrics}"
    );
    assert!(
        !xlb::unprogrammed::path(&pin.path).exists(),
        "the unprogrammed file goes when everything is programmed"
    );
    let out = xlb(None, &pin.path, &["maps", "services"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("NOT PROGRAMMED"));
    drop(a);
}

/// `n` IPv6 Services (ClusterIP fd00:96::N, port 80) of one ready endpoint
/// each, in YAML.
fn manifests6(n: u32) -> String {
    let mut s = String::from(
        "apiVersion: v1\nkind: Node\nmetadata: {name: node-a}\nspec: {podCIDR: 10.244.1.0/24}\n\
         status: {addresses: [{type: InternalIP, address: 198.18.0.2}, \
         {type: InternalIP, address: \"fd00:18::2\"}]}\n",
    );
    for i in 0..n {
        s.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: t}}\n\
             spec: {{ipFamilies: [IPv6], clusterIP: \"fd00:96::{:x}\", \
             ports: [{{name: http, port: 80, targetPort: 8080}}]}}\n\
             ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: s{i}-1, namespace: t, labels: {{kubernetes.io/service-name: s{i}}}}}\n\
             addressType: IPv6\nports: [{{name: http, port: 8080, protocol: TCP}}]\nendpoints:\n\
             - {{addresses: [\"fd00:244::{:x}\"], conditions: {{ready: true}}, nodeName: node-a}}\n",
            i + 1,
            i + 1
        ));
    }
    s
}

fn services6_size(pin: &Path) -> u32 {
    MapHandle::from_pinned_path(pin.join("services6"))
        .unwrap()
        .max_entries()
}

#[test]
fn services6_is_sized_by_max_frontends_and_follows_the_ipv6_services_once_unset() {
    if !xlb_testkit::privileged() {
        return;
    }
    let mut pin = pin_dir();
    pin.also.push(xlb::unprogrammed::path(&pin.path));
    let dir = manifest_dir(&manifests6(20));
    let port = free_port();
    // 20 IPv6 frontends; 16 entries hold 16 of them.
    let a = agent(&pin.path, &dir.0, port, &["--max-frontends", "16"]);
    let body = wait_for("/readyz 503 naming the full services6", || {
        http_get(port, "/readyz").filter(|(s, b)| *s == 503 && b.contains("services6_full"))
    })
    .1;
    assert!(body.contains("4 desired entries not programmed"), "{body}");
    let maps = Maps::from_pin_dir(&pin.path).unwrap();
    assert_eq!(services6_size(&pin.path), 16, "a fixed size is not grown");
    assert_eq!(maps.services6().unwrap().len(), 16);
    drop(a);

    // Without the flag the pinned 16-entry map follows the IPv6 Services:
    // grown at the first sync (to the default floor), all 20 in.
    let a = agent(&pin.path, &dir.0, port, &[]);
    wait_for("/readyz 200 after growing", || {
        http_get(port, "/readyz").filter(|(s, _)| *s == 200)
    });
    let maps = Maps::from_pin_dir(&pin.path).unwrap();
    assert_eq!(services6_size(&pin.path), XLB_MAX_FRONTENDS6);
    assert_eq!(maps.services6().unwrap().len(), 20);
    let metrics = http_get(port, "/metrics").unwrap().1;
    assert!(
        metrics.contains("xlb_unprogrammed{reason=\"services6_full\"} 0\n"),
        "{metrics}"
    );
    drop(a);
}

/// 10,000 Services x 10 endpoints: 10,090,000 Maglev slots, more than the
/// default array (8 Mi): the agent grows it and programs every frontend.
#[test]
fn ten_thousand_services_of_ten_endpoints_are_all_programmed() {
    if !xlb_testkit::privileged() {
        return;
    }
    const N: u32 = 10_000;
    let mut pin = pin_dir();
    pin.also.push(xlb::unprogrammed::path(&pin.path));
    let dir = manifest_dir(&manifests(N, 10));
    let port = free_port();
    let a = agent(&pin.path, &dir.0, port, &[]);
    // A debug build parses and syncs 20,000 objects slowly on a shared
    // machine: a wider hang guard than the test kit's.
    let deadline = Instant::now() + Duration::from_secs(900);
    let body = loop {
        match http_get(port, "/readyz") {
            Some((200, b)) => break b,
            Some((503, b)) if b.contains("not programmed") => {
                panic!("not everything programmed: {b}")
            }
            _ => {}
        }
        assert!(Instant::now() < deadline, "timed out waiting for /readyz");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(!body.contains("not programmed"), "{body}");
    let maps = Maps::from_pin_dir(&pin.path).unwrap();
    let missing: Vec<u32> = (0..N).filter(|i| !in_services(&maps, *i)).collect();
    assert!(
        missing.is_empty(),
        "{} frontends missing, first {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(
        maps.maglev.max_entries() >= 2 * N * 1009,
        "maglev {} slots",
        maps.maglev.max_entries()
    );
    // (The metric is checked by the test above: a debug build's scrape of
    // 100,000 backends' counters outlasts the client's read timeout.)
    assert!(!xlb::unprogrammed::path(&pin.path).exists());
    drop(a);
}
