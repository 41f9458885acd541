//! The DaemonSet's capabilities are enough, and each is needed: the agent
//! runs with exactly the capabilities `deploy/daemonset.yaml` grants (read
//! from the manifest), inside a network namespace this test creates, attaches
//! XDP to the uplink and tc to a pod veth, and becomes ready. Without
//! CAP_BPF or CAP_NET_ADMIN it fails with a clear error. (CAP_PERFMON is not
//! needed to load today's programs; it keeps the verifier from adding its
//! Spectre sanitation to the packet path, see docs/deploy.md.)

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::DaemonSet;
mod cli_support;
use cli_support::{KillOnDrop as Agent, Netns};
use xlb_testkit::agent::{free_port, http_status};
use xlb_testkit::{privileged, unique_name};

const BIN: &str = env!("CARGO_BIN_EXE_xlb");

fn granted_caps() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/daemonset.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let ds: DaemonSet = serde_json::from_value(serde_json::to_value(v).unwrap()).unwrap();
    let c = &ds.spec.unwrap().template.spec.unwrap().containers[0];
    let sc = c.security_context.clone().unwrap();
    assert_eq!(sc.privileged, Some(false));
    let caps = sc.capabilities.unwrap();
    assert_eq!(caps.drop.unwrap(), ["ALL"]);
    caps.add.unwrap()
}

struct Scratch {
    pin: PathBuf,
    dir: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Detach whatever is left (links pinned under pin), then the pins.
        let _ = Command::new(BIN)
            .arg("--pin-dir")
            .arg(&self.pin)
            .args(["agent", "--cleanup"])
            .output();
        let _ = std::fs::remove_dir_all(&self.pin);
        let _ = xlb::names::remove(&xlb::names::path(&self.pin));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn setup() -> (Netns, Scratch) {
    let ns = Netns::new();
    ns.ip(&["link", "set", "lo", "up"]);
    ns.ip(&["link", "add", "up0", "type", "veth", "peer", "name", "up1"]);
    ns.ip(&["addr", "add", "198.18.0.2/24", "dev", "up0"]);
    ns.ip(&["link", "set", "up0", "up"]);
    ns.ip(&["link", "set", "up1", "up"]);
    ns.ip(&[
        "link", "add", "vethp1", "type", "veth", "peer", "name", "podp1",
    ]);
    ns.ip(&["link", "set", "vethp1", "up"]);
    let name = unique_name("xlb-t-");
    let s = Scratch {
        pin: Path::new("/sys/fs/bpf").join(&name),
        dir: std::env::temp_dir().join(format!("{name}-m")),
    };
    std::fs::create_dir_all(&s.dir).unwrap();
    std::fs::write(
        s.dir.join("all.yaml"),
        xlb_testkit::manifests::NODE_A_AND_WEB,
    )
    .unwrap();
    (ns, s)
}

/// Starts the agent in `ns` with exactly `caps` (names like "BPF").
fn start(ns: &Netns, s: &Scratch, caps: &[String], port: u16) -> Agent {
    let set: String = std::iter::once("-all".to_string())
        .chain(caps.iter().map(|c| format!("+{}", c.to_ascii_lowercase())))
        .collect::<Vec<_>>()
        .join(",");
    Agent(
        Command::new("nsenter")
            .arg(format!("--net={}", ns.path().display()))
            .args([
                "setpriv",
                "--bounding-set",
                &set,
                "--inh-caps",
                &set,
                "--ambient-caps",
                &set,
                "--",
            ])
            .arg(BIN)
            .arg("--pin-dir")
            .arg(&s.pin)
            .arg("agent")
            .arg("--manifests")
            .arg(&s.dir)
            .args([
                "--node-name",
                "node-a",
                "--iface",
                "auto",
                "--fallback-generic",
            ])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

fn cap_bit(name: &str) -> u32 {
    match name {
        "NET_ADMIN" => 12,
        "SYS_ADMIN" => 21,
        "PERFMON" => 38,
        "BPF" => 39,
        other => panic!("unexpected capability {other} in the DaemonSet"),
    }
}

/// CapEff of a process, as a bit mask.
fn cap_eff(pid: u32) -> Option<u64> {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hex = st
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim()
        .to_owned();
    u64::from_str_radix(&hex, 16).ok()
}

#[test]
fn agent_works_with_exactly_the_daemonset_capabilities() {
    if !privileged() {
        return;
    }
    let caps = granted_caps();
    assert!(
        !caps.iter().any(|c| c == "SYS_ADMIN"),
        "SYS_ADMIN is not needed on kernels >= 5.8"
    );
    let (ns, s) = setup();
    let port = free_port();
    let mut agent = start(&ns, &s, &caps, port);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if ns.run(move || http_status(port, "/readyz")) == Some(200) {
            break;
        }
        if let Some(st) = agent.0.try_wait().unwrap() {
            let mut err = String::new();
            agent
                .0
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("agent exited with {st} under {caps:?}: {err}");
        }
        assert!(Instant::now() < deadline, "agent not ready under {caps:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
    // The agent (the process setpriv exec'd into) has exactly those capabilities.
    let want: u64 = caps.iter().map(|c| 1u64 << cap_bit(c)).sum();
    assert_eq!(cap_eff(agent.0.id()), Some(want));

    let pin = s.pin.clone();
    let att: Vec<String> = ns.run(move || {
        xlb_loader::attach::list(&pin)
            .unwrap()
            .into_iter()
            .map(|a| format!("{} {}", a.iface, a.hook.describe()))
            .collect()
    });
    assert!(att.iter().any(|a| a.starts_with("up0 xdp")), "{att:?}");
    assert!(att.iter().any(|a| a.starts_with("vethp1 ")), "{att:?}");
}

#[test]
fn agent_fails_clearly_without_bpf_or_net_admin() {
    if !privileged() {
        return;
    }
    let caps = granted_caps();
    for missing in ["BPF", "NET_ADMIN"] {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != missing).cloned().collect();
        let (ns, s) = setup();
        let port = free_port();
        let mut agent = start(&ns, &s, &fewer, port);
        let deadline = Instant::now() + Duration::from_secs(60);
        let st = loop {
            if let Some(st) = agent.0.try_wait().unwrap() {
                break st;
            }
            assert!(
                ns.run(move || http_status(port, "/readyz")) != Some(200),
                "ready without {missing}"
            );
            assert!(
                Instant::now() < deadline,
                "agent neither failed nor got ready without {missing}"
            );
            std::thread::sleep(Duration::from_millis(25));
        };
        assert!(!st.success(), "without {missing}");
        let mut err = String::new();
        agent
            .0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        eprintln!("without {missing}: {}", err.lines().last().unwrap_or(""));
        assert!(
            err.contains("CAP_BPF, CAP_NET_ADMIN"),
            "without {missing}: {err}"
        );
    }
}
