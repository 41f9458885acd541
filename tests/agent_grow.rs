//! `xlb agent` grows a map while it runs (root, a network namespace with an
//! uplink, socket hooks on): the Maglev array pinned at 1,000 slots (by an
//! earlier agent with `--maglev-slots 1000`) follows the Services once the
//! flag is gone; when 20 Services of 251-slot tables arrive, the agent loads
//! larger maps, swaps them in with new programs inside the uplink's XDP link
//! and the socket hooks' cgroup links, and programs all 20.

mod cli_support;

use std::net::SocketAddrV4;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};

use cli_support::{pin_dir, KillOnDrop, Netns};
use libbpf_rs::MapCore;
use xlb_bpf::consts::XLB_MAGLEV_SLOTS;
use xlb_bpf::types::xlb_svc_key;
use xlb_bpf::{Maps, Proto};
use xlb_testkit::agent::{free_port, http_get, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_xlb");

fn manifests(n: u32) -> String {
    let mut s = String::from(
        "apiVersion: v1\nkind: Node\nmetadata: {name: node-a}\nspec: {podCIDR: 10.244.1.0/24}\n\
         status: {addresses: [{type: InternalIP, address: 198.18.0.2}]}\n",
    );
    for i in 0..n {
        s.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: t}}\n\
             spec: {{clusterIP: 10.96.0.{}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}\n\
             ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: s{i}-1, namespace: t, labels: {{kubernetes.io/service-name: s{i}}}}}\n\
             addressType: IPv4\nports: [{{name: http, port: 8080, protocol: TCP}}]\nendpoints:\n\
             - {{addresses: [\"10.244.1.{}\"], conditions: {{ready: true}}, nodeName: node-a}}\n",
            i + 10,
            i + 10
        ));
    }
    s
}

fn agent(ns: &Netns, pin: &Path, dir: &Path, port: u16, extra: &[&str]) -> KillOnDrop {
    KillOnDrop(
        Command::new("nsenter")
            .arg(format!("--net={}", ns.path().display()))
            .arg(BIN)
            .arg("--pin-dir")
            .arg(pin)
            .arg("agent")
            .arg("--manifests")
            .arg(dir)
            .args([
                "--node-name",
                "node-a",
                "--iface",
                "up0",
                "--fallback-generic",
            ])
            .args(["--pod-ifaces", "", "--healthz-addr", ""])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawning xlb agent"),
    )
}

/// The program id inside the link pinned at `path`.
fn link_prog(path: &Path) -> u32 {
    let fd = xlb_loader::sys::obj_get(path).unwrap();
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("prog_id:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no prog_id in {info}"))
}

fn ready(ns: &Netns, port: u16) -> Option<(u16, String)> {
    ns.run(move || http_get(port, "/readyz"))
}

#[test]
fn the_running_agent_grows_the_maglev_array_and_swaps_programs_in_their_links() {
    if !xlb_testkit::privileged() {
        return;
    }
    let ns = Netns::new();
    ns.ip(&["link", "set", "lo", "up"]);
    ns.ip(&["link", "add", "up0", "type", "veth", "peer", "name", "up1"]);
    ns.ip(&["addr", "add", "198.18.0.2/24", "dev", "up0"]);
    ns.ip(&["link", "set", "up0", "up"]);
    ns.ip(&["link", "set", "up1", "up"]);
    let mut pin = pin_dir();
    pin.also.push(xlb::unprogrammed::path(&pin.path));
    let dir = std::env::temp_dir().join(xlb_testkit::unique_name("xlb-grow-"));
    std::fs::create_dir_all(&dir).unwrap();
    struct Rm(std::path::PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _rm = Rm(dir.clone());
    let write = |n: u32| {
        let tmp = dir.join(".all.tmp");
        std::fs::write(&tmp, manifests(n)).unwrap();
        std::fs::rename(&tmp, dir.join("all.yaml")).unwrap();
    };
    write(1);
    let port = free_port();

    // An earlier agent left a 1000-slot array pinned.
    let a = agent(&ns, &pin.path, &dir, port, &["--maglev-slots", "1000"]);
    wait_for("/readyz of the first agent", || {
        ready(&ns, port).filter(|(s, _)| *s == 200)
    });
    drop(a);
    let maps = Maps::from_pin_dir(&pin.path).unwrap();
    assert_eq!(maps.maglev.max_entries(), 1000);

    // Without the flag it follows: 1 table of 251 slots fits, no growth.
    let a = agent(&ns, &pin.path, &dir, port, &[]);
    wait_for("/readyz", || ready(&ns, port).filter(|(s, _)| *s == 200));
    let maps = Maps::from_pin_dir(&pin.path).unwrap();
    assert_eq!(maps.maglev.max_entries(), 1000);
    let links = xlb_loader::pin::links_dir(&pin.path);
    let xdp_before = link_prog(&links.join("xdp_up0"));
    let sockets = xlb_loader::cgroup::list(&pin.path);
    assert!(!sockets.is_empty(), "socket hooks attached");
    let sock_before: Vec<u32> = sockets.iter().map(|(_, p)| link_prog(p)).collect();
    let map_id = |m: &libbpf_rs::MapHandle| {
        use std::os::fd::AsFd;
        libbpf_rs::MapInfo::new(m.as_fd()).unwrap().info.id
    };
    let old_maglev = map_id(&maps.maglev);
    assert!(prog_map_ids(xdp_before).contains(&old_maglev));

    // 20 tables of 251 slots: 5020 > 3/4 of 1000: grown while running.
    write(20);
    let maps = wait_for("the grown maglev array with all 20 Services", || {
        let m = Maps::from_pin_dir(&pin.path).ok()?;
        let all = (0..20).all(|i| {
            let k = xlb_svc_key::addr(
                SocketAddrV4::new(format!("10.96.0.{}", i + 10).parse().unwrap(), 80),
                Proto::Tcp,
            );
            m.service(&k).unwrap().is_some()
        });
        (all && m.maglev.max_entries() == XLB_MAGLEV_SLOTS).then_some(m)
    });
    wait_for("/readyz after growing", || {
        ready(&ns, port).filter(|(s, _)| *s == 200)
    });
    let xdp_after = link_prog(&links.join("xdp_up0"));
    assert_ne!(xdp_after, xdp_before, "XDP program swapped in its link");
    let sock_after: Vec<u32> = sockets.iter().map(|(_, p)| link_prog(p)).collect();
    assert!(
        sock_after.iter().zip(&sock_before).all(|(a, b)| a != b),
        "socket hooks swapped: {sock_before:?} -> {sock_after:?}"
    );
    // The programs in the links use the pinned (grown) map, none the old.
    let maglev = map_id(&maps.maglev);
    assert_ne!(maglev, old_maglev);
    assert!(prog_map_ids(xdp_after).contains(&maglev));
    let mut users = 0;
    for (p, (hook, _)) in sock_after.iter().zip(&sockets) {
        let ids = prog_map_ids(*p);
        assert!(!ids.contains(&old_maglev), "{hook:?} uses the old maglev");
        users += usize::from(ids.contains(&maglev));
    }
    assert!(users > 0, "a socket hook balances through the grown maglev");
    drop(a);
}

/// Ids of the maps program `id` uses.
fn prog_map_ids(id: u32) -> Vec<u32> {
    use libbpf_rs::libbpf_sys as bsys;
    // SAFETY: plain syscall wrappers; buffers outlive the calls.
    unsafe {
        let fd = bsys::bpf_prog_get_fd_by_id(id);
        assert!(fd >= 0, "prog {id}");
        let mut ids = vec![0u32; 64];
        let mut info = bsys::bpf_prog_info {
            nr_map_ids: ids.len() as u32,
            map_ids: ids.as_mut_ptr() as u64,
            ..Default::default()
        };
        let mut len = std::mem::size_of::<bsys::bpf_prog_info>() as u32;
        let rc = bsys::bpf_obj_get_info_by_fd(
            fd,
            (&mut info as *mut bsys::bpf_prog_info).cast(),
            &mut len,
        );
        libc::close(fd);
        assert_eq!(rc, 0);
        ids.truncate(info.nr_map_ids.min(64) as usize);
        ids
    }
}
