//! `xlb agent --iface auto` inside a network namespace this test creates
//! (root): the agent finds the uplink from the Node's InternalIP, attaches
//! XDP to it and tc to the pod veths (also to one created later), writes the
//! uplink into the config map, leaves everything attached on SIGTERM, and
//! `--cleanup` takes it all off. No traffic leaves the namespace.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use xlb_bpf::Maps;
use xlb_loader::attach::{self, Hook};
mod cli_support;
use cli_support::{KillOnDrop as Agent, Netns};
use xlb_loader::testutil::{privileged, unique_name};

const BIN: &str = env!("CARGO_BIN_EXE_xlb");

struct Pins(PathBuf, PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = xlb::names::remove(&xlb::names::path(&self.0));
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn get(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
}

fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// (iface, is XDP) of every attachment, seen from inside the namespace.
fn attachments(ns: &Netns, pin: &Path) -> Vec<(String, bool)> {
    let pin = pin.to_owned();
    ns.run(move || {
        attach::list(&pin)
            .unwrap()
            .into_iter()
            .map(|a| (a.iface, matches!(a.hook, Hook::Xdp(_))))
            .collect()
    })
}

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: node-a}
spec: {podCIDR: 10.244.1.0/24}
status:
  addresses: [{type: InternalIP, address: 198.18.0.2}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.96.0.10
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{port: 8080, protocol: TCP}]
endpoints:
- addresses: ["10.244.1.5"]
  nodeName: node-a
"#;

#[test]
fn agent_attaches_to_the_uplink_and_pod_veths_and_cleans_up() {
    if !privileged() {
        return;
    }
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
    let pins = Pins(
        Path::new("/sys/fs/bpf").join(&name),
        std::env::temp_dir().join(format!("{name}-m")),
    );
    std::fs::create_dir_all(&pins.1).unwrap();
    std::fs::write(pins.1.join("all.yaml"), MANIFESTS).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    let agent = Agent(
        Command::new("nsenter")
            .arg(format!("--net={}", ns.path().display()))
            .arg(BIN)
            .arg("--pin-dir")
            .arg(&pins.0)
            .arg("agent")
            .arg("--manifests")
            .arg(&pins.1)
            .args([
                "--node-name",
                "node-a",
                "--iface",
                "auto",
                "--fallback-generic",
            ])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait("/readyz in the namespace", || {
        ns.run(move || get(port, "/readyz")) == Some(200)
    });

    // XDP on the uplink found through the Node's InternalIP, tc on the pod veth.
    let prog = ns.xdp_prog("up0");
    assert_ne!(prog, 0, "XDP attached to up0");
    let att = attachments(&ns, &pins.0);
    assert!(att.contains(&("up0".into(), true)), "{att:?}");
    assert!(att.contains(&("vethp1".into(), false)), "{att:?}");
    assert!(!att.iter().any(|(i, _)| i == "up1" || i == "lo"), "{att:?}");

    // The config map describes the uplink.
    let maps = Maps::from_pin_dir(&pins.0).unwrap();
    let cfg = maps.config().unwrap();
    let (idx, mtu) = ns.run(|| {
        let i = xlb_loader::sys::ifindex("up0").unwrap();
        (i, 1500u16)
    });
    assert_eq!(cfg.ifindex, idx);
    assert_eq!(cfg.mtu, mtu);
    assert_ne!(cfg.mac, [0; 6]);
    assert_eq!(cfg.node_addr(), Ipv4Addr::new(198, 18, 0, 2));

    // A pod veth created later is followed.
    ns.ip(&[
        "link", "add", "vethp2", "type", "veth", "peer", "name", "podp2",
    ]);
    ns.ip(&["link", "set", "vethp2", "up"]);
    wait("vethp2 attached", || {
        attachments(&ns, &pins.0).contains(&("vethp2".into(), false))
    });

    // SIGTERM: the agent exits, the data plane stays attached.
    let mut agent = agent;
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(agent.0.id() as i32, libc::SIGTERM) };
    let st = agent.0.wait().unwrap();
    assert!(st.success(), "{st:?}");
    assert_eq!(
        ns.xdp_prog("up0"),
        prog,
        "still attached after the agent stopped"
    );
    drop(maps);

    // Uninstall: every hook and pin gone.
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.path().display()))
        .arg(BIN)
        .arg("--pin-dir")
        .arg(&pins.0)
        .args(["agent", "--cleanup"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ns.xdp_prog("up0"), 0, "XDP detached");
    assert!(!pins.0.exists());
}
