//! `deploy/`: every manifest parses as its k8s-openapi type with no field
//! lost (a misspelt field fails), RBAC grants exactly what the agent
//! watches, the DaemonSet's flags and environment are ones `xlb agent`
//! knows and accepts, the probes reach endpoints the agent serves, and the
//! image's entrypoint is the binary the build stage produces.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde_json::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    xlb::sources::manifests::split_documents(&text)
        .into_iter()
        .filter_map(|d| {
            let v: serde_yaml::Value =
                serde_yaml::from_str(d).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (!v.is_null()).then(|| serde_json::to_value(v).unwrap())
        })
        .collect()
}

fn kustomization() -> Value {
    let docs = yaml_docs(&deploy_dir().join("kustomization.yaml"));
    assert_eq!(docs.len(), 1);
    docs.into_iter().next().unwrap()
}

/// Every object the kustomization applies, in order.
fn objects() -> Vec<Value> {
    let k = kustomization();
    k["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .flat_map(|r| yaml_docs(&deploy_dir().join(r.as_str().unwrap())))
        .collect()
}

/// Where `orig` has something `typed` lacks or differs: the path, else None.
/// k8s-openapi ignores unknown fields when deserialising, so comparing the
/// original with the typed object serialised back is what catches typos.
fn lost(orig: &Value, typed: &Value, path: &str) -> Option<String> {
    match (orig, typed) {
        (Value::Object(a), Value::Object(b)) => a.iter().find_map(|(k, v)| match b.get(k) {
            Some(w) => lost(v, w, &format!("{path}.{k}")),
            None if v.is_null() => None,
            None => Some(format!("{path}.{k}")),
        }),
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (v, w))| lost(v, w, &format!("{path}[{i}]"))),
        (a, b) if a == b => None,
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => None,
        _ => Some(format!("{path} ({orig} became {typed})")),
    }
}

fn typed_roundtrip<T: serde::de::DeserializeOwned + serde::Serialize>(
    v: &Value,
) -> Result<Value, String> {
    let t: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    Ok(serde_json::to_value(t).unwrap())
}

/// Parses an object as its k8s-openapi type; Err names what was lost.
fn check_typed(v: &Value) -> Result<(), String> {
    let kind = v["kind"].as_str().unwrap_or("");
    let api = v["apiVersion"].as_str().unwrap_or("");
    let back = match (api, kind) {
        ("v1", "Namespace") => typed_roundtrip::<Namespace>(v)?,
        ("v1", "ServiceAccount") => typed_roundtrip::<ServiceAccount>(v)?,
        ("v1", "ConfigMap") => typed_roundtrip::<ConfigMap>(v)?,
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => typed_roundtrip::<ClusterRole>(v)?,
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            typed_roundtrip::<ClusterRoleBinding>(v)?
        }
        ("apps/v1", "DaemonSet") => typed_roundtrip::<DaemonSet>(v)?,
        _ => return Err(format!("unexpected {api} {kind}")),
    };
    match lost(v, &back, "") {
        Some(p) => Err(format!("{kind}: field {p} is not part of the type (typo?)")),
        None => Ok(()),
    }
}

fn one<T: serde::de::DeserializeOwned>(kind: &str) -> T {
    let mut found: Vec<T> = objects()
        .into_iter()
        .filter(|o| o["kind"] == kind)
        .map(|o| serde_json::from_value(o).unwrap())
        .collect();
    assert_eq!(found.len(), 1, "exactly one {kind}");
    found.pop().unwrap()
}

#[test]
fn every_manifest_parses_as_its_type() {
    let objs = objects();
    assert!(objs.len() >= 6);
    for o in &objs {
        if let Err(e) = check_typed(o) {
            panic!("{e}");
        }
    }
    let kinds: BTreeSet<&str> = objs.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    for k in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "DaemonSet",
    ] {
        assert!(kinds.contains(k), "missing {k}");
    }
    // Every namespaced object is in the kustomization's namespace.
    let ns = kustomization()["namespace"].as_str().unwrap().to_owned();
    for o in &objs {
        if matches!(
            o["kind"].as_str(),
            Some("ServiceAccount" | "ConfigMap" | "DaemonSet")
        ) {
            assert_eq!(o["metadata"]["namespace"], ns.as_str());
        }
    }
}

#[test]
fn the_typo_check_catches_typos() {
    let mut ds = objects()
        .into_iter()
        .find(|o| o["kind"] == "DaemonSet")
        .unwrap();
    assert!(check_typed(&ds).is_ok());
    let spec = ds["spec"]["template"]["spec"].as_object_mut().unwrap();
    let v = spec.remove("hostNetwork").unwrap();
    spec.insert("hostNetwrok".into(), v);
    let e = check_typed(&ds).unwrap_err();
    assert!(e.contains("hostNetwrok"), "{e}");

    let mut ds = objects()
        .into_iter()
        .find(|o| o["kind"] == "DaemonSet")
        .unwrap();
    ds["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] =
        "/readyz".into();
    assert!(check_typed(&ds).is_err());
}

#[test]
fn every_deploy_file_is_in_the_kustomization() {
    let listed: BTreeSet<String> = kustomization()["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    for e in std::fs::read_dir(deploy_dir()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".yaml") && name != "kustomization.yaml" {
            assert!(
                listed.contains(&name),
                "{name} is not in kustomization.yaml"
            );
        }
    }
    for r in &listed {
        assert!(deploy_dir().join(r).is_file(), "{r} listed but missing");
    }
}

#[test]
fn rbac_grants_exactly_what_the_agent_watches() {
    let role: ClusterRole = one("ClusterRole");
    let mut granted = BTreeSet::new();
    for r in role.rules.unwrap_or_default() {
        assert!(r.non_resource_urls.is_none() && r.resource_names.is_none());
        for g in r.api_groups.unwrap_or_default() {
            for res in r.resources.clone().unwrap_or_default() {
                for v in &r.verbs {
                    assert!(g != "*" && res != "*" && v != "*", "no wildcards");
                    granted.insert((g.clone(), res.clone(), v.clone()));
                }
            }
        }
    }
    let mut want = BTreeSet::new();
    for (g, res) in xlb::sources::kube::watched_resources() {
        for v in ["get", "list", "watch"] {
            want.insert((g.to_owned(), res.to_owned(), v.to_owned()));
        }
    }
    assert_eq!(granted, want);

    // The binding gives that role to the DaemonSet's service account.
    let b: ClusterRoleBinding = one("ClusterRoleBinding");
    let ds: DaemonSet = one("DaemonSet");
    let sa: ServiceAccount = one("ServiceAccount");
    assert_eq!(b.role_ref.kind, "ClusterRole");
    assert_eq!(Some(&b.role_ref.name), role.metadata.name.as_ref());
    let pod = ds.spec.unwrap().template.spec.unwrap();
    let subj = &b.subjects.unwrap()[0];
    assert_eq!(subj.kind, "ServiceAccount");
    assert_eq!(Some(&subj.name), pod.service_account_name.as_ref());
    assert_eq!(Some(&subj.name), sa.metadata.name.as_ref());
    assert_eq!(subj.namespace, sa.metadata.namespace);
}

fn agent_container() -> k8s_openapi::api::core::v1::Container {
    let ds: DaemonSet = one("DaemonSet");
    let mut c = ds.spec.unwrap().template.spec.unwrap().containers;
    assert_eq!(c.len(), 1);
    c.pop().unwrap()
}

fn config_data() -> BTreeMap<String, String> {
    let cm: ConfigMap = one("ConfigMap");
    let c = agent_container();
    let from = c.env_from.unwrap_or_default();
    assert!(
        from.iter()
            .any(|f| f.config_map_ref.as_ref().map(|r| r.name.as_str())
                == cm.metadata.name.as_deref()),
        "the DaemonSet takes its environment from the ConfigMap"
    );
    cm.data.unwrap_or_default()
}

fn agent_help() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_xlb"))
        .args(["agent", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn daemonset_flags_and_environment_are_known_to_the_agent() {
    let help = agent_help();
    let c = agent_container();
    assert!(c.command.is_none(), "the image entrypoint is used");
    let args = c.args.unwrap();
    assert_eq!(args[0], "agent");
    for a in &args[1..] {
        assert!(a.starts_with("--"), "{a}");
        let flag = a.split('=').next().unwrap();
        // --pin-dir is global (shown in the subcommand's help too).
        assert!(
            help.contains(&format!("{flag} "))
                || help.contains(&format!("{flag}\n"))
                || help.contains(&format!("{flag} <")),
            "{flag} is not an `xlb agent` flag"
        );
    }
    let mut env: Vec<String> = config_data().into_keys().collect();
    env.extend(c.env.unwrap_or_default().into_iter().map(|e| e.name));
    for k in env {
        if k == "RUST_LOG" {
            continue; // read by tracing's EnvFilter, not a flag
        }
        assert!(
            help.contains(&format!("[env: {k}=")),
            "{k} is not read by `xlb agent`"
        );
    }
}

/// The DaemonSet's arguments and ConfigMap values are accepted: the agent
/// parses them and prints its effective configuration.
#[test]
fn daemonset_configuration_is_accepted() {
    let c = agent_container();
    let data = config_data();
    let out = xlb_testkit::run_ok(
        Command::new(env!("CARGO_BIN_EXE_xlb"))
            .args(c.args.unwrap())
            .arg("--print-config")
            .env_clear()
            .envs(&data)
            .env("NODE_NAME", "node-a"),
    );
    let cfg: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cfg["node_name"], "node-a");
    assert_eq!(cfg["vxlan_port"], 8472);
    assert_eq!(cfg["vni"], 1);
    assert_eq!(cfg["metrics_addr"], data["XLB_METRICS_ADDR"].as_str());
    assert_eq!(cfg["pin_dir"], "/sys/fs/bpf/xlb");
    assert_eq!(cfg["source"], "kubernetes");
}

#[tokio::test]
async fn probes_reach_endpoints_the_agent_serves() {
    let c = agent_container();
    let data = config_data();
    let metrics_addr: std::net::SocketAddr = data["XLB_METRICS_ADDR"].parse().unwrap();
    let port = metrics_addr.port();
    let ports = c.ports.clone().unwrap();
    let named = ports
        .iter()
        .find(|p| p.name.as_deref() == Some("metrics"))
        .unwrap();
    assert_eq!(named.container_port, i32::from(port));

    let ds: DaemonSet = one("DaemonSet");
    let ann = ds
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap_or_default();
    // Prometheus is told to scrape only what it can reach.
    if metrics_addr.ip().is_loopback() {
        assert!(!ann.contains_key("prometheus.io/scrape"), "{ann:?}");
    } else {
        assert_eq!(ann["prometheus.io/port"], port.to_string());
    }

    // Serve the agent's endpoints in-process and hit each probe's path.
    let metrics = xlb::metrics::Metrics::new();
    let l = xlb::metrics::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let local = l.local_addr().unwrap();
    tokio::spawn(xlb::metrics::serve(l, metrics.clone()));

    let live = c.liveness_probe.unwrap().http_get.unwrap();
    let ready = c.readiness_probe.unwrap().http_get.unwrap();
    for p in [&live, &ready] {
        use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
        let pp = match &p.port {
            IntOrString::Int(n) => *n,
            IntOrString::String(name) => {
                ports
                    .iter()
                    .find(|q| q.name.as_deref() == Some(name))
                    .unwrap()
                    .container_port
            }
        };
        assert_eq!(pp, i32::from(port), "probe port is the metrics port");
        // The probe host must be an address the agent listens on.
        if let Some(h) = &p.host {
            let h: std::net::IpAddr = h.parse().unwrap();
            assert!(metrics_addr.ip().is_unspecified() || metrics_addr.ip() == h);
        }
    }
    let path = |p: &k8s_openapi::api::core::v1::HTTPGetAction| p.path.clone().unwrap();
    assert_eq!(get(local, &path(&live)).await, 200, "liveness");
    assert_eq!(
        get(local, &path(&ready)).await,
        503,
        "not ready before the first sync"
    );
    metrics.set_ready();
    assert_eq!(
        get(local, &path(&ready)).await,
        200,
        "ready after the first sync"
    );
    assert_eq!(get(local, "/metrics").await, 200);
    assert_eq!(get(local, "/nope").await, 404);
}

async fn get(addr: std::net::SocketAddr, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    buf.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn image_entrypoint_is_the_built_binary() {
    let text = std::fs::read_to_string(deploy_dir().join("Containerfile")).unwrap();
    // Split into stages.
    let mut stages: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("FROM ") {
            let name = rest.split(" AS ").nth(1).unwrap_or("").trim().to_owned();
            stages.push((name, vec![]));
        } else if let Some(s) = stages.last_mut() {
            // Join continuation lines onto the instruction they continue.
            let is_cont = s.1.last().is_some_and(|l: &String| l.ends_with('\\'));
            if is_cont {
                let last = s.1.last_mut().unwrap();
                last.pop();
                last.push(' ');
                last.push_str(line);
            } else {
                s.1.push(line.to_owned());
            }
        }
    }
    assert!(stages.len() >= 2, "multi-stage build");
    let (build_name, build) = &stages[0];
    let (_, runtime) = stages.last().unwrap();

    // The build stage builds the `xlb` binary of this package and puts it at OUT.
    let cargo_toml =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    assert!(cargo_toml.contains("[[bin]]\nname = \"xlb\""));
    let run = build
        .iter()
        .find(|l| l.contains("cargo build"))
        .expect("cargo build");
    assert!(
        run.contains("--release") && run.contains("-p xlb") && run.contains("--bin xlb"),
        "{run}"
    );
    let install = run
        .split("&&")
        .map(str::trim)
        .find(|c| c.starts_with("install ") && c.contains("target/release/xlb"))
        .expect("the release binary is installed");
    let mut words = install.split_whitespace();
    words.find(|w| *w == "target/release/xlb");
    let out = words.next().unwrap().trim_end_matches(';');
    // A prebuilt binary (the local build, scripts/image.sh) goes to the same place.
    assert!(
        run.contains(&format!("install -D -m 0755 \"$XLB_PREBUILT\" {out};")),
        "{run}"
    );

    // The runtime stage copies exactly that file and runs it.
    let copy = runtime
        .iter()
        .find(|l| l.starts_with("COPY --from="))
        .expect("COPY --from");
    let parts: Vec<&str> = copy.split_whitespace().collect();
    assert_eq!(parts[1], format!("--from={build_name}"));
    assert_eq!(parts[2], out, "copies what the build stage produced");
    let dest = parts[3];
    let entry = runtime
        .iter()
        .find(|l| l.starts_with("ENTRYPOINT"))
        .expect("ENTRYPOINT");
    let entry: Vec<String> =
        serde_json::from_str(entry.trim_start_matches("ENTRYPOINT").trim()).unwrap();
    assert_eq!(entry, vec![dest.to_owned()]);
    let cmd = runtime.iter().find(|l| l.starts_with("CMD")).expect("CMD");
    let cmd: Vec<String> = serde_json::from_str(cmd.trim_start_matches("CMD").trim()).unwrap();
    assert_eq!(cmd, ["agent"]);

    // The DaemonSet runs that image (by its kustomize name) without overriding the entrypoint.
    let c = agent_container();
    let image = c.image.unwrap();
    let kimages = kustomization()["images"].clone();
    let kname = kimages[0]["name"].as_str().unwrap();
    assert!(image.starts_with(&format!("{kname}:")), "{image}");

    // The build stage installs what the Makefile says building needs.
    let makefile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Makefile")).unwrap();
    let pkgs_line = makefile.lines().find(|l| l.starts_with("PKGS")).unwrap();
    let apt = build
        .iter()
        .find(|l| l.contains("apt-get install"))
        .unwrap();
    for p in ["clang", "libelf-dev", "zlib1g-dev", "pkg-config"] {
        assert!(
            pkgs_line.split_whitespace().any(|w| w == p),
            "{p} not in Makefile PKGS"
        );
        assert!(
            apt.split_whitespace().any(|w| w == p),
            "{p} not installed in the build stage"
        );
    }
}

/// The runtime stage is distroless `cc` (glibc, libgcc, no libelf or zlib):
/// the binary cargo builds must need nothing else, or the image would not
/// start. (libbpf-sys's `static` feature links libelf and zlib in.)
#[test]
fn binary_needs_only_what_the_runtime_image_has() {
    let text = std::fs::read_to_string(deploy_dir().join("Containerfile")).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("ARG RUNTIME_BASE=gcr.io/distroless/cc-debian12")),
        "the allow-list below is distroless cc's (and that of the local runtime root, libc6 + libgcc-s1)"
    );
    let out = std::process::Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_xlb"))
        .output()
        .expect("ldd (libc-bin)");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let allowed = [
        "linux-vdso.so.1",
        "libc.so.6",
        "libm.so.6",
        "libgcc_s.so.1",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
        "ld-linux-x86-64.so.2",
        "ld-linux-aarch64.so.1",
    ];
    let needed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|lib| lib.rsplit('/').next().unwrap())
        .collect();
    assert!(needed.contains(&"libc.so.6"), "{text}");
    for lib in needed {
        assert!(
            allowed.contains(&lib),
            "{lib} is not in distroless cc:\n{text}"
        );
    }
}

/// The agent runs under the runtime's seccomp filter and mounts only what it
/// needs: its own pin directory (not all of /sys/fs/bpf), its names
/// directory, and the host cgroup hierarchy read-only.
#[test]
fn daemonset_is_confined() {
    let ds: DaemonSet = one("DaemonSet");
    let pod = ds.spec.unwrap().template.spec.unwrap();
    let c = agent_container();
    let sc = c.security_context.clone().unwrap();
    let seccomp = sc
        .seccomp_profile
        .or_else(|| pod.security_context.and_then(|p| p.seccomp_profile))
        .expect("a seccompProfile");
    assert_eq!(seccomp.type_, "RuntimeDefault");
    assert_ne!(sc.privileged, Some(true));
    assert_eq!(sc.read_only_root_filesystem, Some(true));

    let args = c.args.clone().unwrap();
    let pin = args
        .iter()
        .find_map(|a| a.strip_prefix("--pin-dir="))
        .expect("--pin-dir");
    let volumes: BTreeMap<String, String> = pod
        .volumes
        .unwrap()
        .into_iter()
        .filter_map(|v| Some((v.name, v.host_path?.path)))
        .collect();
    let mounts = c.volume_mounts.unwrap();
    let mut writable = Vec::new();
    for m in &mounts {
        let host = volumes
            .get(&m.name)
            .unwrap_or_else(|| panic!("{}: not a hostPath volume", m.name));
        assert_ne!(
            host.trim_end_matches('/'),
            "/sys/fs/bpf",
            "all of bpffs mounted"
        );
        assert_ne!(host.trim_end_matches('/'), "/sys", "all of sysfs mounted");
        if m.read_only != Some(true) {
            writable.push(m.mount_path.clone());
        }
    }
    writable.sort();
    assert_eq!(
        writable,
        ["/run/xlb".to_string(), pin.to_string()],
        "writable host paths: only the pins and the names"
    );
    let pin_mount = mounts.iter().find(|m| m.mount_path == pin).unwrap();
    assert_eq!(
        volumes[&pin_mount.name], pin,
        "the pin directory is the host's"
    );
    let cg = mounts
        .iter()
        .find(|m| volumes[&m.name] == "/sys/fs/cgroup")
        .expect("the cgroup2 hierarchy");
    assert_eq!(cg.read_only, Some(true));
}
