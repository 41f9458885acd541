//! The agent image, built and run (root): `scripts/image.sh` (what `make
//! image` runs) builds it from Debian roots with this test's xlb binary; the
//! test checks its entrypoint and contents (no shell, compiler or package
//! manager), runs `xlb --version` and `xlb doctor` in it, and runs it as node2's
//! agent of a lab (`xlb lab up`, then node2's own agent replaced by the
//! image's): Services answer through node2 again once the container's agent has
//! synced, and `xlb lab check` passes.
//!
//! The lab is used through the `xlb` CLI only. Skipped (saying why) when not
//! root, or when neither buildah nor podman runs here.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use xlb_testkit::{privileged, unique_name};

const XLB: &str = env!("CARGO_BIN_EXE_xlb");
const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// What `podman run` needs on this kind of VM: runc (crun refuses hybrid
/// cgroups) and explicit ulimits (the defaults are refused).
const RUN: [&str; 6] = [
    "--runtime",
    "runc",
    "run",
    "--ulimit=nofile=1024:1024",
    "--ulimit=nproc=1024:1024",
    "--rm",
];

fn runs(tool: &str) -> Result<(), String> {
    match Command::new(tool).arg("images").output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "`{tool} images` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("{tool}: {e}")),
    }
}

fn output(cmd: &mut Command) -> Output {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    if !o.status.success() {
        panic!(
            "{cmd:?}: {}\n--- stdout\n{}\n--- stderr\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    o
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(output(cmd).stdout).unwrap()
}

fn podman(args: &[&str]) -> Command {
    let mut c = Command::new("podman");
    c.args(args);
    c
}

/// The image under test; removed on drop.
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = podman(&["rmi", "-f", &self.0]).output();
    }
}

/// A container by name; removed (killed) on drop.
struct Container(String);

impl Container {
    fn logs(&self) -> String {
        podman(&["logs", &self.0])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr)
            })
            .unwrap_or_default()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", "-t", "0", &self.0]).output();
    }
}

/// `xlb lab up --prefix P`; `xlb lab down` on drop (also on failure).
struct Lab(String);

impl Lab {
    fn up() -> Self {
        let lab = Lab(unique_name("xim"));
        output(Command::new(XLB).args(["lab", "up", "--prefix", &lab.0]));
        lab
    }
    fn state(&self, file: &str) -> std::path::PathBuf {
        Path::new("/run/xlb-lab").join(&self.0).join(file)
    }
    fn netns(&self, node: &str) -> String {
        format!("/run/netns/{}-{node}", self.0)
    }
    fn pin_dir(&self, node: &str) -> String {
        format!("/sys/fs/bpf/{}-{node}", self.0)
    }
    /// `xlb lab spread --json`: backend name (or `error: KIND`) -> connections.
    fn spread(&self, to: &str, count: u32) -> serde_json::Map<String, serde_json::Value> {
        let text = stdout(Command::new(XLB).args([
            "lab",
            "spread",
            "--prefix",
            &self.0,
            "--to",
            to,
            "--count",
            &count.to_string(),
            "--json",
        ]));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(XLB)
            .args(["lab", "down", "--prefix", &self.0])
            .output();
    }
}

/// GET `path` on 127.0.0.1:9402 inside the network namespace at `netns`.
fn get_in(netns: &str, path: &str) -> Option<(u16, String)> {
    let (netns, path) = (netns.to_owned(), path.to_owned());
    std::thread::spawn(move || {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(&netns).ok()?;
        // SAFETY: setns on an open namespace file, affecting only this thread.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return None;
        }
        let addr = "127.0.0.1:9402".parse().unwrap();
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        let status = buf.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, buf.split_once("\r\n\r\n")?.1.to_owned()))
    })
    .join()
    .unwrap()
}

/// The value of the sample `line_start` (metric name and labels) in a scrape.
fn sample(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
}

#[test]
fn image_builds_and_runs_as_a_lab_nodes_agent() {
    if !privileged() {
        return;
    }
    let (buildah, podman_ok) = (runs("buildah"), runs("podman"));
    if let (Err(b), Err(p)) = (&buildah, &podman_ok) {
        eprintln!(
            "skipping: neither buildah nor podman runs here ({b}; {p}); `make image` installs them"
        );
        return;
    }
    if let Err(p) = podman_ok {
        // buildah builds but cannot run the agent in a lab node's namespace.
        panic!("podman is needed to run the image ({p}); `make image` installs it");
    }

    // Build, with this test's binary.
    let image = Image(format!("localhost/{}:test", unique_name("xlb-image-")));
    let build = output(
        Command::new(Path::new(REPO).join("scripts/image.sh"))
            .args(["--binary", XLB, "--tag", &image.0])
            .stdin(Stdio::null()),
    );
    let log = String::from_utf8_lossy(&build.stdout);
    let version = format!("xlb {}", env!("CARGO_PKG_VERSION"));
    assert!(
        log.contains(&version),
        "the build runs the binary in the runtime root:\n{log}"
    );

    // Entrypoint and command, as the DaemonSet expects them.
    let cfg = stdout(&mut podman(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Entrypoint}} {{json .Config.Cmd}} {{.Size}}",
        &image.0,
    ]));
    let mut it = cfg.split_whitespace();
    assert_eq!(it.next(), Some(r#"["/usr/local/bin/xlb"]"#), "{cfg}");
    assert_eq!(it.next(), Some(r#"["agent"]"#), "{cfg}");
    let size: u64 = it.next().unwrap().parse().unwrap();
    eprintln!("image {}: {} MB", image.0, size / 1_000_000);

    // Contents: executables are the xlb binary and shared objects only.
    let files = image_files(&image.0);
    assert!(files.iter().any(|(p, _)| p == "usr/local/bin/xlb"));
    assert!(files.iter().any(|(p, _)| p.ends_with("/libc.so.6")));
    for (path, exec) in &files {
        let name = path.rsplit('/').next().unwrap();
        let shared = name.contains(".so");
        assert!(
            !exec || shared || path == "usr/local/bin/xlb",
            "the runtime image holds an executable {path}"
        );
        for forbidden in [
            "sh", "bash", "dash", "busybox", "apt", "dpkg", "cc", "gcc", "perl",
        ] {
            assert_ne!(name, forbidden, "{path} in the runtime image");
        }
        assert!(!path.starts_with("var/lib/dpkg"), "{path}");
    }

    // The binary starts.
    let v = stdout(podman(&RUN).arg(&image.0).arg("--version"));
    assert_eq!(v.trim(), version);

    // A lab; node2's agent is replaced by the image's, its data plane removed first.
    let lab = Lab::up();
    let pid: i32 = std::fs::read_to_string(lab.state("agent-node2.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) on the lab agent's pid, read from the lab's state.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    output(
        Command::new("nsenter")
            .arg(format!("--net={}", lab.netns("node2")))
            .args([XLB, "--pin-dir", &lab.pin_dir("node2"), "detach", "--all"]),
    );
    let nodeport2 = "198.18.0.12:30080";
    let before = lab.spread(nodeport2, 4);
    assert!(
        before.keys().all(|k| k.starts_with("error")),
        "node2 has no xlb now, its NodePort must not answer: {before:?}"
    );

    // `xlb doctor` in a privileged container in node2's network namespace.
    let net = format!("--network=ns:{}", lab.netns("node2"));
    let bpf = "--volume=/sys/fs/bpf:/sys/fs/bpf";
    let doctor = stdout(podman(&RUN).args([
        "--privileged",
        &net,
        bpf,
        &image.0,
        "doctor",
        "--iface",
        "eth0",
    ]));
    assert!(doctor.contains("xlb can run here"), "{doctor}");
    assert!(
        doctor.contains("eth0 (index"),
        "sees node2's eth0: {doctor}"
    );
    assert!(doctor.contains("driver veth"), "{doctor}");

    // The agent from the image, with the lab agent's arguments.
    let manifests = lab.state("manifests").display().to_string();
    let agent = Container(format!("{}-agent", lab.0));
    let mut run = podman(&RUN[..5]);
    // The host's cgroup v2 root, for the socket hooks (as the DaemonSet
    // mounts the host's /sys/fs/cgroup).
    let cgroup = xlb_loader::cgroup::cgroup2_root().expect("the host's cgroup2 mount");
    run.args(["--detach", "--name", &agent.0, "--privileged", &net, bpf])
        .arg(format!("--volume={}:/sys/fs/cgroup:ro", cgroup.display()))
        .arg(format!("--volume={manifests}:{manifests}:ro"))
        .arg(&image.0)
        .args(["--pin-dir", &lab.pin_dir("node2"), "agent"])
        .args([
            "--manifests",
            &manifests,
            "--node-name",
            "node2",
            "--iface",
            "eth0",
        ])
        .args(["--pod-ifaces", "vethp*", "--metrics-addr", "127.0.0.1:9402"]);
    output(&mut run);
    let deadline = Instant::now() + Duration::from_secs(60);
    while get_in(&lab.netns("node2"), "/readyz").map(|r| r.0) != Some(200) {
        assert!(
            Instant::now() < deadline,
            "the image's agent did not become ready:\n{}",
            agent.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(Path::new(&lab.pin_dir("node2")).join("links").exists());

    // Services answer through node2 again, balanced over the pods of both nodes.
    let after = lab.spread(nodeport2, 40);
    assert!(
        after.keys().all(|k| !k.starts_with("error")),
        "NodePort on node2 through the image's agent: {after:?}\n{}",
        agent.logs()
    );
    assert!(after.len() >= 2, "{after:?}");
    let (_, metrics) = get_in(&lab.netns("node2"), "/metrics").unwrap();
    let web = sample(
        &metrics,
        r#"xlb_service_packets_total{namespace="default",service="web",port="80",protocol="TCP"}"#,
    );
    assert!(web.is_some_and(|p| p >= 40.0), "{web:?}\n{metrics}");

    // And the whole lab passes its probes (remote NodePorts need node2's tunnel return).
    let check = Command::new(XLB)
        .args(["lab", "check", "--prefix", &lab.0])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&check.stdout),
        agent.logs()
    );
}

/// The image's root file system, mounted read-only; unmounted on drop.
struct Mounted(String, std::path::PathBuf);

impl Mounted {
    fn new(image: &str) -> Self {
        let dir = stdout(&mut podman(&["image", "mount", image]));
        Mounted(image.to_owned(), dir.trim().into())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = podman(&["image", "unmount", &self.0]).output();
    }
}

/// (path relative to the root, is a non-empty executable regular file) of
/// every entry. (The RUN step leaves empty mount points such as /etc/hosts,
/// mode 0755.)
fn image_files(image: &str) -> Vec<(String, bool)> {
    use std::os::unix::fs::PermissionsExt;
    let root = Mounted::new(image);
    let mut out = Vec::new();
    let mut stack = vec![root.1.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let meta = e.path().symlink_metadata().unwrap();
            let rel = e
                .path()
                .strip_prefix(&root.1)
                .unwrap()
                .display()
                .to_string();
            if meta.is_dir() {
                stack.push(e.path());
            }
            let exec = meta.is_file() && meta.len() > 0 && meta.permissions().mode() & 0o111 != 0;
            out.push((rel, exec));
        }
    }
    out
}
