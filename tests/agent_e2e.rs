//! `xlb agent` end to end, as a subprocess (root): manifest directory in,
//! pinned maps and Prometheus metrics out; changes picked up; a restart
//! adopts the maps and only then removes what went stale; `--cleanup`
//! uninstalls. A second test runs the agent inside a network namespace with
//! `--iface auto` and checks the XDP and pod-veth attachments.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use libbpf_rs::{MapCore, MapFlags};
use xlb_bpf::types::xlb_counter;
use xlb_bpf::{Maps, Proto};
use xlb_testkit::agent::{free_port, http_get, wait_for};
use xlb_testkit::{privileged, run_ok, unique_name, KillOnDrop};

const BIN: &str = env!("CARGO_BIN_EXE_xlb");

/// A pin directory, its names files and manifest directory, removed on drop.
struct Env {
    pin: PathBuf,
    dir: PathBuf,
}

impl Env {
    fn new() -> Self {
        let name = unique_name("xlb-t-");
        let pin = Path::new("/sys/fs/bpf").join(&name);
        let dir = std::env::temp_dir().join(format!("{name}-manifests"));
        std::fs::create_dir_all(&dir).unwrap();
        Env { pin, dir }
    }
    fn write(&self, file: &str, text: &str) {
        let tmp = self.dir.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.dir.join(file)).unwrap();
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.pin);
        let _ = xlb::names::remove(&xlb::names::path(&self.pin));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The agent process; killed on drop if still running.
struct Agent(KillOnDrop);

impl Agent {
    fn start(pre: &[&str], env: &Env, port: u16, extra: &[&str]) -> Self {
        let mut cmd = if pre.is_empty() {
            Command::new(BIN)
        } else {
            let mut c = Command::new(pre[0]);
            c.args(&pre[1..]).arg(BIN);
            c
        };
        cmd.arg("--pin-dir")
            .arg(&env.pin)
            .arg("agent")
            .arg("--manifests")
            .arg(&env.dir)
            .args(["--node-name", "node-a", "--debounce-ms", "20"])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null());
        Agent(KillOnDrop(cmd.spawn().expect("spawning xlb agent")))
    }

    /// SIGTERM, then the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        self.0.terminate()
    }
}

fn metrics_with(port: u16, needle: &str) -> String {
    wait_for(needle, || {
        http_get(port, "/metrics")
            .filter(|(s, b)| *s == 200 && b.contains(needle))
            .map(|(_, b)| b)
    })
}

const NODES: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: node-a
  annotations:
    flannel.alpha.coreos.com/backend-data: '{"VNI":1,"VtepMAC":"02:00:00:00:00:0a"}'
spec: {podCIDR: 10.244.1.0/24}
status:
  addresses: [{type: InternalIP, address: 198.18.0.2}]
---
apiVersion: v1
kind: Node
metadata:
  name: node-b
  annotations:
    flannel.alpha.coreos.com/backend-data: '{"VNI":1,"VtepMAC":"02:00:00:00:00:0b"}'
spec: {podCIDR: 10.244.2.0/24}
status:
  addresses: [{type: InternalIP, address: 198.18.0.3}]
"#;

fn service(name: &str, ip: &str, port: u16, backends: &[(&str, &str)]) -> String {
    let eps: String = backends
        .iter()
        .map(|(a, n)| {
            format!("- addresses: [\"{a}\"]\n  conditions: {{ready: true}}\n  nodeName: {n}\n")
        })
        .collect();
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  clusterIP: {ip}
  ports: [{{name: http, port: {port}, targetPort: 8080, protocol: TCP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: default
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints:
{eps}"#
    )
}

fn svc_entry(maps: &Maps, ip: &str, port: u16) -> Option<xlb_bpf::types::xlb_svc_val> {
    let key =
        xlb_bpf::types::xlb_svc_key::addr(SocketAddrV4::new(ip.parse().unwrap(), port), Proto::Tcp);
    maps.service(&key).unwrap()
}

/// Sets a per-CPU stats slot to the given per-CPU counters (as the data
/// plane would have counted them).
fn set_counter(maps: &Maps, index: u32, per_cpu: &[(u64, u64)]) {
    let n = libbpf_rs::num_possible_cpus().unwrap();
    let vals: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let (packets, bytes) = per_cpu.get(i).copied().unwrap_or((0, 0));
            let c = xlb_counter { packets, bytes };
            // SAFETY: xlb_counter is Plain.
            unsafe { plain::as_bytes(&c) }.to_vec()
        })
        .collect();
    maps.stats
        .update_percpu(&index.to_ne_bytes(), &vals, MapFlags::ANY)
        .unwrap();
}

#[test]
fn agent_syncs_manifests_serves_metrics_restarts_and_cleans_up() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    env.write("nodes.yaml", NODES);
    env.write(
        "web.yaml",
        &service(
            "web",
            "10.96.0.10",
            80,
            &[("10.244.1.5", "node-a"), ("10.244.2.7", "node-b")],
        ),
    );
    env.write(
        "api.yaml",
        &service("api", "10.96.0.20", 443, &[("10.244.2.9", "node-b")]),
    );
    let port = free_port();
    let agent = Agent::start(&[], &env, port, &[]);

    // Liveness comes first, readiness after the first complete sync.
    wait_for("/healthz", || {
        http_get(port, "/healthz").filter(|(s, _)| *s == 200)
    });
    wait_for("/readyz", || {
        http_get(port, "/readyz").filter(|(s, _)| *s == 200)
    });

    let maps = Maps::from_pin_dir(&env.pin).unwrap();
    let web = svc_entry(&maps, "10.96.0.10", 80).expect("web's ClusterIP in the services map");
    let api = svc_entry(&maps, "10.96.0.20", 443).expect("api's ClusterIP in the services map");
    assert_ne!(web.svc_id, api.svc_id);
    let backends: Vec<SocketAddrV4> = maps
        .backends()
        .unwrap()
        .into_iter()
        .map(|(_, b)| b.sockaddr())
        .collect();
    for b in ["10.244.1.5:8080", "10.244.2.7:8080", "10.244.2.9:8080"] {
        assert!(
            backends.contains(&b.parse().unwrap()),
            "{b} in {backends:?}"
        );
    }
    let cfg = maps.config().unwrap();
    assert_eq!(cfg.node_addr(), Ipv4Addr::new(198, 18, 0, 2));
    assert_eq!(cfg.vxlan_port(), 8472);
    assert_eq!(cfg.vni, 1);
    let tunnels = maps.tunnels().unwrap();
    assert!(
        tunnels
            .iter()
            .any(|(k, v)| k.net() == (Ipv4Addr::new(10, 244, 2, 0), 24)
                && v.node() == Ipv4Addr::new(198, 18, 0, 3)),
        "node-b's pod CIDR is tunnelled: {tunnels:?}"
    );

    // Per-Service and per-reason counters come out of the stats map, summed
    // over CPUs and labelled with the Service's name.
    set_counter(
        &maps,
        xlb_bpf::consts::XLB_STATS_SVC_BASE + web.svc_id,
        &[(3, 300), (4, 400)],
    );
    let drop_nb = xlb_bpf::Reason::from_name("drop_no_backend").unwrap();
    set_counter(&maps, drop_nb.0, &[(2, 120)]);
    metrics_with(
        port,
        "xlb_service_packets_total{namespace=\"default\",service=\"web\",port=\"80\",protocol=\"TCP\"} 7\n",
    );
    // Map occupancy is sampled in the background (every 10 s).
    let m = metrics_with(port, "xlb_map_entries{map=\"services\"} 2\n");
    for line in [
        "xlb_service_packets_total{namespace=\"default\",service=\"web\",port=\"80\",protocol=\"TCP\"} 7\n",
        "xlb_service_bytes_total{namespace=\"default\",service=\"web\",port=\"80\",protocol=\"TCP\"} 700\n",
        "xlb_service_packets_total{namespace=\"default\",service=\"api\",port=\"443\",protocol=\"TCP\"} 0\n",
        "xlb_reason_packets_total{action=\"drop\",reason=\"drop_no_backend\"} 2\n",
        "xlb_reason_bytes_total{action=\"drop\",reason=\"drop_no_backend\"} 120\n",
        "xlb_reason_packets_total{action=\"pass\",reason=\"pass_not_service\"} 0\n",
        "xlb_ready 1\n",
        "xlb_source_objects{kind=\"Service\"} 2\n",
        "xlb_source_objects{kind=\"Node\"} 2\n",
        "xlb_map_entries{map=\"services\"} 2\n",
        "xlb_map_entries{map=\"backends\"} 3\n",
        "# TYPE xlb_sync_duration_seconds histogram\n",
        "xlb_sync_duration_seconds_bucket{le=\"+Inf\"} ",
    ] {
        assert!(m.contains(line), "missing {line:?} in\n{m}");
    }
    // Per-backend counters, labelled with the Service port and the backend.
    let (web_be, _) = maps
        .backends()
        .unwrap()
        .into_iter()
        .find(|(_, b)| b.sockaddr() == "10.244.1.5:8080".parse().unwrap())
        .unwrap();
    let n = libbpf_rs::num_possible_cpus().unwrap();
    let vals: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let c = if i == 0 {
                xlb_counter {
                    packets: 5,
                    bytes: 500,
                }
            } else {
                xlb_counter::default()
            };
            // SAFETY: xlb_counter is Plain.
            unsafe { plain::as_bytes(&c) }.to_vec()
        })
        .collect();
    maps.backend_stats_handle()
        .update_percpu(&web_be.to_ne_bytes(), &vals, MapFlags::ANY)
        .unwrap();
    let m = metrics_with(
        port,
        "xlb_backend_packets_total{namespace=\"default\",service=\"web\",port=\"80\",protocol=\"TCP\",backend=\"10.244.1.5:8080\"} 5\n",
    );
    assert!(
        m.contains("xlb_backend_bytes_total{namespace=\"default\",service=\"web\",port=\"80\",protocol=\"TCP\",backend=\"10.244.1.5:8080\"} 500\n"),
        "{m}"
    );
    let maglev_used: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("xlb_map_entries{map=\"maglev\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(maglev_used, u64::from(web.table_size + api.table_size));
    // The filters' fill: slots with a count (of the backends' addresses,
    // of the services keys) out of 65,536.
    let entries = |map: &str| -> u64 {
        let p = format!("xlb_map_entries{{map=\"{map}\"}} ");
        m.lines()
            .find_map(|l| l.strip_prefix(p.as_str()))
            .unwrap_or_else(|| panic!("no {p} in\n{m}"))
            .parse()
            .unwrap()
    };
    let be_slots: std::collections::BTreeSet<u32> = maps
        .backends()
        .unwrap()
        .iter()
        .map(|(_, b)| xlb_bpf::wire::be_slot(b.addr))
        .collect();
    let fe_slots: std::collections::BTreeSet<u32> = maps
        .services()
        .unwrap()
        .iter()
        .map(|(k, _)| xlb_bpf::wire::fe_slot(k))
        .collect();
    assert_eq!(entries("be_filter"), be_slots.len() as u64, "{m}");
    assert_eq!(entries("fe_filter"), fe_slots.len() as u64, "{m}");
    for f in ["be_filter", "fe_filter"] {
        let line = format!("xlb_map_max_entries{{map=\"{f}\"}} 65536\n");
        assert!(m.contains(&line), "missing {line:?} in\n{m}");
    }

    // A change in the directory reaches the maps.
    env.write(
        "web.yaml",
        &service(
            "web",
            "10.96.0.10",
            80,
            &[
                ("10.244.1.5", "node-a"),
                ("10.244.2.7", "node-b"),
                ("10.244.1.6", "node-a"),
            ],
        ),
    );
    metrics_with(port, "xlb_map_entries{map=\"backends\"} 4\n");
    let web2 = svc_entry(&maps, "10.96.0.10", 80).unwrap();
    assert_eq!(web2.svc_id, web.svc_id, "svc_id is stable across changes");

    // SIGTERM: the agent exits cleanly and the maps stay as they are.
    let st = agent.stop();
    assert!(st.success(), "{st:?}");
    assert!(http_get(port, "/healthz").is_none());
    let web3 = svc_entry(&maps, "10.96.0.10", 80).expect("still there after the agent stopped");
    assert_eq!((web3.svc_id, web3.table_off), (web2.svc_id, web2.table_off));
    assert!(svc_entry(&maps, "10.96.0.20", 443).is_some());

    // While it is down, `api` goes away. The restarted agent adopts the
    // maps: `web` keeps its id and table (nothing that is right changes),
    // and `api` is removed once the first full sync is done.
    std::fs::remove_file(env.dir.join("api.yaml")).unwrap();
    let agent = Agent::start(&[], &env, port, &[]);
    wait_for("/readyz after restart", || {
        http_get(port, "/readyz").filter(|(s, _)| *s == 200)
    });
    assert!(
        svc_entry(&maps, "10.96.0.20", 443).is_none(),
        "stale Service removed"
    );
    let web4 = svc_entry(&maps, "10.96.0.10", 80).unwrap();
    assert_eq!(
        (web4.svc_id, web4.table_off, web4.table_size),
        (web2.svc_id, web2.table_off, web2.table_size)
    );
    // The counters survived the restart too.
    metrics_with(
        port,
        "xlb_service_packets_total{namespace=\"default\",service=\"web\",port=\"80\",protocol=\"TCP\"} 7\n",
    );
    assert!(agent.stop().success());

    // Uninstall.
    drop(maps);
    run_ok(
        Command::new(BIN)
            .arg("--pin-dir")
            .arg(&env.pin)
            .args(["agent", "--cleanup"]),
    );
    assert!(!env.pin.exists(), "pins removed");
    assert!(!xlb::names::path(&env.pin).exists());
}

#[test]
fn agent_refuses_a_missing_manifest_directory() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let port = free_port();
    let out = Command::new(BIN)
        .arg("--pin-dir")
        .arg(&env.pin)
        .args(["agent", "--manifests", "/nonexistent/xlb", "--metrics-addr"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["--healthz-addr", ""])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/xlb"), "{err}");
    // Logs to a pipe (kubectl logs) are plain text: no ANSI colour codes.
    assert!(err.contains("data plane loaded"), "{err}");
    assert!(!err.contains('\x1b'), "ANSI escapes in piped logs: {err:?}");
}
