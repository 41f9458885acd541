//! `xlb agent --iface auto` inside a network namespace this test creates
//! (root): the agent finds the uplink from the Node's InternalIP, attaches
//! XDP to it and tc to the pod veths (also to one created later), writes the
//! uplink into the config map, leaves everything attached on SIGTERM, and
//! `--cleanup` takes it all off. No traffic leaves the namespace.

use std::net::Ipv4Addr;
use std::path::Path;

use xlb_bpf::Maps;
use xlb_loader::attach::{self, Hook};
mod cli_support;
use cli_support::{agent_cleanup, spawn_agent, Netns, Pins};
use xlb_testkit::agent::{free_port, http_status, wait_for};
use xlb_testkit::{privileged, unique_name};

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
    std::fs::write(
        pins.1.join("all.yaml"),
        xlb_testkit::manifests::node_a_and_web_with_endpoint(),
    )
    .unwrap();
    let port = free_port();

    let agent = spawn_agent(&ns, &pins, port, &[]);
    wait_for("/readyz in the namespace", || {
        (ns.run(move || http_status(port, "/readyz")) == Some(200)).then_some(())
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
    wait_for("vethp2 attached", || {
        attachments(&ns, &pins.0)
            .contains(&("vethp2".into(), false))
            .then_some(())
    });

    // SIGTERM: the agent exits, the data plane stays attached.
    let mut agent = agent;
    let st = agent.terminate();
    assert!(st.success(), "{st:?}");
    assert_eq!(
        ns.xdp_prog("up0"),
        prog,
        "still attached after the agent stopped"
    );
    drop(maps);

    // Uninstall: every hook and pin gone.
    agent_cleanup(&ns, &pins.0);
    assert_eq!(ns.xdp_prog("up0"), 0, "XDP detached");
    assert!(!pins.0.exists());
}
