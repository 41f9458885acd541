//! `xlb agent` keeps `svc_stable` (root, subprocess, manifest source, a
//! short `--ct-udp`): a UDP Service's entry names its table with the window
//! closed; an endpoint change opens a window naming the previous table; with
//! no further change the agent's own tick ends it (the entry names the live
//! table again); a restarted agent keeps an open window and its table.

mod cli_support;

use std::path::Path;
use std::process::{Command, Stdio};

use cli_support::{pin_dir, KillOnDrop};
use xlb_bpf::types::xlb_svc_stable;
use xlb_bpf::Maps;
use xlb_testkit::agent::{free_port, http_get, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_xlb");

/// One UDP ClusterIP Service (10.96.7.1:53) with endpoints 10.244.1.`h`.
fn manifests(hosts: &[u8]) -> String {
    let mut s = String::from(
        "apiVersion: v1\nkind: Node\nmetadata: {name: node-a}\nspec: {podCIDR: 10.244.1.0/24}\n\
         status: {addresses: [{type: InternalIP, address: 198.18.0.2}]}\n\
         ---\napiVersion: v1\nkind: Service\nmetadata: {name: dns, namespace: t}\n\
         spec: {clusterIP: 10.96.7.1, ports: [{name: dns, port: 53, protocol: UDP, targetPort: 5353}]}\n\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {name: dns-1, namespace: t, labels: {kubernetes.io/service-name: dns}}\n\
         addressType: IPv4\nports: [{name: dns, port: 5353, protocol: UDP}]\nendpoints:\n",
    );
    for h in hosts {
        s.push_str(&format!(
            "- {{addresses: [\"10.244.1.{h}\"], conditions: {{ready: true}}, nodeName: node-a}}\n"
        ));
    }
    s
}

struct Dir(std::path::PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write(dir: &Dir, text: &str) {
    // Whole-file replace: the watcher never reads half a file.
    let tmp = dir.0.join(".all.yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.0.join("all.yaml")).unwrap();
}

fn agent(pin: &Path, dir: &Path, port: u16, ct_udp: &str) -> KillOnDrop {
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
            .args(["--ct-udp", ct_udp])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawning xlb agent"),
    )
}

/// `(svc_id, table_off, table_size)` of the Service's frontend.
fn frontend(maps: &Maps) -> Option<(u32, u32, u32)> {
    maps.services()
        .unwrap()
        .into_iter()
        .find(|(k, _)| k.port() == 53)
        .map(|(_, v)| (v.svc_id, v.table_off, v.table_size))
}

fn entry(maps: &Maps, id: u32) -> xlb_svc_stable {
    maps.svc_stable(id).unwrap()
}

#[test]
fn agent_opens_and_ends_windows_and_keeps_one_across_a_restart() {
    if !xlb_testkit::privileged() {
        return;
    }
    let pin = pin_dir();
    let dir = Dir(std::env::temp_dir().join(xlb_testkit::unique_name("xlb-stable-")));
    std::fs::create_dir_all(&dir.0).unwrap();
    write(&dir, &manifests(&[1, 2]));
    let port = free_port();
    let a = agent(&pin.path, &dir.0, port, "2");
    wait_for("/readyz 200", || {
        http_get(port, "/readyz").filter(|(s, _)| *s == 200)
    });
    let maps = Maps::from_pin_dir(&pin.path).unwrap();
    let (id, off1, size1) = frontend(&maps).expect("the Service's frontend");
    let v = entry(&maps, id);
    assert_eq!((v.table_off, v.table_size, v.window_end), (off1, size1, 0));

    // An endpoint added: a window on the first table...
    write(&dir, &manifests(&[1, 2, 3]));
    let (off2, size2) = wait_for("the frontend on a new table", || {
        frontend(&maps).filter(|f| f.1 != off1).map(|f| (f.1, f.2))
    });
    let v = entry(&maps, id);
    // (unless the window already ended and the tick ran: 2 s + 1 s margin)
    if v.window_end != 0 {
        assert_eq!((v.table_off, v.table_size), (off1, size1));
    }
    // ...ended by the agent's tick, with no other change.
    wait_for("the window's end", || {
        let v = entry(&maps, id);
        (v.window_end == 0).then_some(())
    });
    let v = entry(&maps, id);
    assert_eq!((v.table_off, v.table_size), (off2, size2));
    drop(a);

    // A long window, then a restart while it is open: the entry and the
    // held table stay as they are.
    let a = agent(&pin.path, &dir.0, port, "3600");
    wait_for("/readyz 200", || {
        http_get(port, "/readyz").filter(|(s, _)| *s == 200)
    });
    write(&dir, &manifests(&[1, 2, 3, 4]));
    wait_for("the frontend on a third table", || {
        frontend(&maps).filter(|f| f.1 != off2)
    });
    let open = entry(&maps, id);
    assert_eq!((open.table_off, open.table_size), (off2, size2));
    assert_ne!(open.window_end, 0);
    let held = maps.read_maglev(off2, size2).unwrap();
    drop(a);
    let a = agent(&pin.path, &dir.0, port, "3600");
    wait_for("/readyz 200", || {
        http_get(port, "/readyz").filter(|(s, _)| *s == 200)
    });
    let v = entry(&maps, id);
    assert_eq!(
        (v.table_off, v.table_size, v.window_end),
        (open.table_off, open.table_size, open.window_end)
    );
    assert_eq!(maps.read_maglev(off2, size2).unwrap(), held);
    drop(a);
}
