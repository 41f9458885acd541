//! # The lab's network: underlay bridge, client, nodes with VXLAN, pods
//!
//! Plain iproute2 commands (`ip -n NS ...`), each step idempotent: a link is
//! created only when missing, addresses/routes/neighbours use `replace`. The
//! layout is drawn in the crate documentation.

use std::path::Path;

use crate::cmd::{bridge, ip, link_exists};
use crate::*;

pub(crate) fn ensure_ns(name: &str) -> Result<()> {
    if !netns::exists(name) {
        ip(&["netns", "add", name])?;
    }
    ip(&["-n", name, "link", "set", "lo", "up"])?;
    Ok(())
}

/// Writes sysctls of the namespace (from a thread inside it: /proc/sys/net is per netns).
pub(crate) fn sysctls(ns: &str, kv: &[(&str, &str)]) -> Result<()> {
    let kv: Vec<(String, String)> = kv
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    netns::run(ns, move || -> Result<()> {
        for (k, v) in kv {
            let path = format!("/proc/sys/{}", k.replace('.', "/"));
            std::fs::write(&path, &v).map_err(io_ctx(format!("writing {path}")))?;
        }
        Ok(())
    })?
}

/// GRO on, so that the veth receives XDP_TX / redirected frames (DESIGN.md "Lab").
fn gro_on(ns: &str, dev: &str) -> Result<()> {
    netns::output(ns, "ethtool", &["-K", dev, "gro", "on"]).map(drop)
}

/// Underlay, client, nodes and pods, in that order (each needs the one
/// before); in a dual-stack lab, their IPv6 half ([`crate::build6`]) too.
pub(crate) fn network(lab: &Lab) -> Result<()> {
    if lab.dual_stack {
        crate::build6::prepare(lab)?;
    }
    underlay(lab)?;
    client(lab)?;
    for n in lab.node_numbers() {
        node(lab, n)?;
    }
    for (n, k) in lab.pods() {
        pod(lab, n, k)?;
    }
    if lab.dual_stack {
        crate::build6::network(lab)?;
    }
    Ok(())
}

fn underlay(lab: &Lab) -> Result<()> {
    let ul = lab.ns_underlay();
    ensure_ns(&ul)?;
    if !link_exists(&ul, "br0") {
        ip(&["-n", &ul, "link", "add", "br0", "type", "bridge"])?;
    }
    ip(&["-n", &ul, "link", "set", "br0", "up"])?;
    Ok(())
}

/// A veth from the underlay bridge (port `port`) to `eth0` of `ns`.
/// `receives_xdp_tx`: `ns` runs XDP on its eth0 (a node), so the bridge port
/// gets an XDP program to receive the frames it sends back (XDP_TX).
fn uplink(lab: &Lab, ns: &str, port: &str, mac: &str, receives_xdp_tx: bool) -> Result<()> {
    let ul = lab.ns_underlay();
    if !link_exists(ns, "eth0") {
        if link_exists(&ul, port) {
            ip(&["-n", &ul, "link", "del", port])?;
        }
        ip(&[
            "-n", &ul, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])?;
    }
    ip(&["-n", &ul, "link", "set", port, "master", "br0", "up"])?;
    ip(&["-n", ns, "link", "set", "eth0", "address", mac, "up"])?;
    gro_on(&ul, port)?;
    gro_on(ns, "eth0")?;
    if receives_xdp_tx {
        crate::xdp_pass::attach(&ul, port)?;
    }
    Ok(())
}

fn client(lab: &Lab) -> Result<()> {
    let c = lab.ns_client();
    ensure_ns(&c)?;
    uplink(lab, &c, "c0", "02:18:00:00:00:01", false)?;
    for a in [CLIENT_ADDR, CLIENT_ALT_ADDR] {
        ip(&[
            "-n",
            &c,
            "addr",
            "replace",
            &format!("{a}/24"),
            "dev",
            "eth0",
        ])?;
    }
    // Service addresses (ClusterIP, LoadBalancer, ExternalIP ranges) through node 1.
    ip(&[
        "-n",
        &c,
        "route",
        "replace",
        SERVICE_CIDR,
        "via",
        &node_addr(1).to_string(),
        "src",
        &CLIENT_ADDR.to_string(),
    ])?;
    Ok(())
}

fn node(lab: &Lab, n: u8) -> Result<()> {
    let ns = lab.ns_node(n);
    ensure_ns(&ns)?;
    sysctls(
        &ns,
        &[
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
            ("net.ipv4.conf.all.send_redirects", "0"),
            ("net.ipv4.conf.default.send_redirects", "0"),
            // Replies that xlb's tc program reverse-NATs to a NodePort source
            // carry the node's own address when they enter from a pod veth.
            ("net.ipv4.conf.all.accept_local", "1"),
            ("net.ipv4.conf.default.accept_local", "1"),
        ],
    )?;
    uplink(lab, &ns, &format!("n{n}"), &node_mac(n), true)?;
    let addr = node_addr(n).to_string();
    ip(&[
        "-n",
        &ns,
        "addr",
        "replace",
        &format!("{addr}/24"),
        "dev",
        UPLINK,
    ])?;
    // The pods' gateway: a local address answered by ARP on every pod veth.
    ip(&[
        "-n",
        &ns,
        "addr",
        "replace",
        &format!("{}/32", pod_gateway(n)),
        "dev",
        "lo",
    ])?;
    // flannel-style VXLAN: fixed MAC (the Node's VTEP MAC), no learning, static fdb/neigh.
    if !link_exists(&ns, VXLAN_DEV) {
        ip(&[
            "-n",
            &ns,
            "link",
            "add",
            VXLAN_DEV,
            "address",
            &vtep_mac(n),
            "mtu",
            &POD_MTU.to_string(),
            "type",
            "vxlan",
            "id",
            &VXLAN_VNI.to_string(),
            "local",
            &addr,
            "dev",
            UPLINK,
            "dstport",
            &VXLAN_PORT.to_string(),
            "nolearning",
        ])?;
    }
    ip(&["-n", &ns, "link", "set", VXLAN_DEV, "up"])?;
    ip(&[
        "-n",
        &ns,
        "addr",
        "replace",
        &format!("{}/32", vtep_addr(n)),
        "dev",
        VXLAN_DEV,
    ])?;
    for m in lab.node_numbers().filter(|&m| m != n) {
        // The underlay is static: permanent neighbours for the other nodes, so
        // xlb's fib lookup for the VXLAN next hop always finds one.
        ip(&[
            "-n",
            &ns,
            "neigh",
            "replace",
            &node_addr(m).to_string(),
            "lladdr",
            &node_mac(m),
            "dev",
            UPLINK,
            "nud",
            "permanent",
        ])?;
        let via = vtep_addr(m).to_string();
        ip(&[
            "-n",
            &ns,
            "route",
            "replace",
            &pod_cidr(m),
            "via",
            &via,
            "dev",
            VXLAN_DEV,
            "onlink",
        ])?;
        ip(&[
            "-n",
            &ns,
            "neigh",
            "replace",
            &via,
            "lladdr",
            &vtep_mac(m),
            "dev",
            VXLAN_DEV,
            "nud",
            "permanent",
        ])?;
        bridge(&[
            "-n",
            &ns,
            "fdb",
            "replace",
            &vtep_mac(m),
            "dev",
            VXLAN_DEV,
            "dst",
            &node_addr(m).to_string(),
            "self",
            "permanent",
        ])?;
    }
    Ok(())
}

/// Host-side name of pod `k`'s veth in its node namespace.
pub(crate) fn pod_veth(k: u8) -> String {
    format!("vethp{k}")
}

fn pod(lab: &Lab, n: u8, k: u8) -> Result<()> {
    let node = lab.ns_node(n);
    let pns = lab.ns_pod(n, k);
    ensure_ns(&pns)?;
    let veth = pod_veth(k);
    let mtu = POD_MTU.to_string();
    if !link_exists(&pns, "eth0") {
        if link_exists(&node, &veth) {
            ip(&["-n", &node, "link", "del", &veth])?;
        }
        ip(&[
            "-n", &node, "link", "add", &veth, "mtu", &mtu, "type", "veth", "peer", "name", "eth0",
            "mtu", &mtu, "netns", &pns,
        ])?;
    }
    let addr = pod_addr(n, k).to_string();
    let gw = pod_gateway(n).to_string();
    ip(&["-n", &node, "link", "set", &veth, "up"])?;
    ip(&[
        "-n",
        &node,
        "route",
        "replace",
        &format!("{addr}/32"),
        "dev",
        &veth,
        "src",
        &gw,
    ])?;
    ip(&["-n", &pns, "link", "set", "eth0", "up"])?;
    ip(&[
        "-n",
        &pns,
        "addr",
        "replace",
        &format!("{addr}/32"),
        "dev",
        "eth0",
    ])?;
    ip(&[
        "-n", &pns, "route", "replace", &gw, "dev", "eth0", "scope", "link",
    ])?;
    ip(&[
        "-n", &pns, "route", "replace", "default", "via", &gw, "dev", "eth0",
    ])?;
    gro_on(&node, &veth)?;
    gro_on(&pns, "eth0")?;
    // The node's XDP may redirect frames into the pod's veth.
    crate::xdp_pass::attach(&pns, "eth0")?;
    Ok(())
}

/// The agents' manifest directory: the embedded deploy/examples, or the
/// YAML files of `from` (files already there are kept).
pub(crate) fn install_manifests(lab: &Lab, from: Option<&Path>) -> Result<()> {
    let dir = lab.manifests_dir();
    match from {
        None => manifests::install(&dir, lab.nodes, lab.dual_stack),
        Some(src) => {
            std::fs::create_dir_all(&dir).map_err(io_ctx(format!("creating {}", dir.display())))?;
            let rd =
                std::fs::read_dir(src).map_err(io_ctx(format!("reading {}", src.display())))?;
            for e in rd.filter_map(|e| e.ok()) {
                let p = e.path();
                let yaml = p.extension().is_some_and(|x| x == "yaml" || x == "yml");
                let target = dir.join(e.file_name());
                if yaml && !target.exists() {
                    std::fs::copy(&p, &target)
                        .map_err(io_ctx(format!("copying {}", p.display())))?;
                }
            }
            Ok(())
        }
    }
}
