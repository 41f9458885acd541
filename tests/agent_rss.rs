//! The agent's memory with 20,000 Services (root: the agent loads the data
//! plane). `xlb agent` runs as a subprocess against the scripted API server
//! of `tests/kube_support` (a kubeconfig pointing at it), lists 20,000
//! Services and EndpointSlices, then is forced to relist three times (410
//! Gone, each time with one Service fewer). Its resident set is read from
//! /proc and printed with its largest mappings; the target is half the
//! DaemonSet's memory limit, and the peak must stay clear of the limit.
//!
//! `cargo test --test agent_rss -- --nocapture` prints the figures.

mod kube_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use kube_support::*;

const N: u32 = 20_000;

struct Agent {
    child: Child,
    pin: PathBuf,
    kubeconfig: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.pin);
        let _ = std::fs::remove_file(xlb::names::path(&self.pin));
        let _ = std::fs::remove_file(xlb::names::path(&self.pin));
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Waits until /metrics has `needle`.
async fn metrics_with(port: u16, needle: &str) {
    let needle = needle.to_string();
    let r = tokio::time::timeout(Duration::from_secs(300), async {
        loop {
            let n = needle.clone();
            let found = tokio::task::spawn_blocking(move || {
                get(port, "/metrics").is_some_and(|m| m.contains(&n))
            })
            .await
            .unwrap();
            if found {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(r.is_ok(), "no {needle:?} in the agent's metrics");
}

/// (VmRSS, VmHWM) of `pid` in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = |key: &str| -> f64 {
        st.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap()
    };
    (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
}

/// The largest mappings of `pid` by resident size: (MiB, mapping).
fn top_mappings(pid: u32) -> Vec<(u64, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut out = Vec::new();
    let mut cur = String::new();
    for l in text.lines() {
        if let Some(kb) = l.strip_prefix("Rss:") {
            let kb: u64 = kb
                .trim()
                .trim_end_matches(" kB")
                .trim()
                .parse()
                .unwrap_or(0);
            out.push((kb / 1024, cur.clone()));
        } else if !l.contains(':') || l.split_whitespace().count() >= 5 && l.contains('-') {
            cur = l.to_string();
        }
    }
    out.sort_by_key(|m| std::cmp::Reverse(m.0));
    out.truncate(4);
    out
}

/// The DaemonSet's memory limit in MiB (`NNNMi`).
fn limit_mib() -> f64 {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/daemonset.yaml"),
    )
    .unwrap();
    let ds: DaemonSet = serde_yaml::from_str(&text).unwrap();
    let c = &ds.spec.unwrap().template.spec.unwrap().containers[0];
    let q = c.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"]
        .0
        .clone();
    q.strip_suffix("Mi")
        .expect("a limit in Mi")
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rss_after_relists_of_twenty_thousand_services() {
    if !xlb_testkit::privileged() {
        return;
    }
    let (api, url) = FakeApi::start().await;
    for i in 0..N {
        let name = format!("s{i:05}");
        let ip = format!("10.{}.{}.{}", 96 + i / 65536, (i / 256) % 256, i % 256);
        api.put(service(&name, &ip, 80), false);
        let ep = format!("10.244.{}.{}", (i / 250) % 250, i % 250 + 2);
        api.put(slice(&format!("{name}-1"), &name, &[&ep]), false);
    }
    api.put(node("node-a", "10.244.1.0/24"), true);

    let name = xlb_testkit::unique_name("xlb-r-");
    let kubeconfig = std::env::temp_dir().join(format!("{name}.kubeconfig"));
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: fake, cluster: {{server: \"{url}\"}}}}]\n\
             users: [{{name: u, user: {{}}}}]\ncontexts: [{{name: c, context: {{cluster: fake, user: u}}}}]\n\
             current-context: c\n"
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pin = Path::new("/sys/fs/bpf").join(&name);
    let child = Command::new(env!("CARGO_BIN_EXE_xlb"))
        .arg("--pin-dir")
        .arg(&pin)
        .arg("agent")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--node-name", "node-a", "--healthz-addr", ""])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let agent = Agent {
        child,
        pin,
        kubeconfig,
    };
    let pid = agent.child.id();

    metrics_with(
        port,
        &format!("xlb_source_objects{{kind=\"Service\"}} {N}\n"),
    )
    .await;
    let (rss0, _) = rss_mib(pid);
    println!(
        "largest mappings after the first list: {:?}",
        top_mappings(pid)
    );
    for r in 1..=3u32 {
        let i = r - 1;
        let name = format!("s{i:05}");
        api.delete(service(&name, "", 0), false);
        api.expire();
        metrics_with(
            port,
            &format!("xlb_source_objects{{kind=\"Service\"}} {}\n", N - r),
        )
        .await;
    }
    assert!(api.list_requests(SERVICES) >= 4, "relisted three times");
    let (rss, hwm) = rss_mib(pid);
    println!(
        "largest mappings after the relists: {:?}",
        top_mappings(pid)
    );
    let limit = limit_mib();
    println!(
        "agent RSS with {N} Services: {rss0:.0} MiB after the first list, {rss:.0} MiB after \
         three relists (peak {hwm:.0} MiB); DaemonSet limit {limit:.0} MiB"
    );
    // The target is half the limit (room for churn on top); what must hold
    // is that the agent is never near its OOM kill, peak included.
    if rss >= limit / 2.0 {
        println!(
            "above the target of half the limit ({:.0} MiB)",
            limit / 2.0
        );
    }
    assert!(
        hwm < limit * 0.9,
        "peak RSS {hwm:.0} MiB is within 10% of the {limit:.0} MiB limit"
    );
    drop(agent);
}
