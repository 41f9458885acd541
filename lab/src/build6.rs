//! # The IPv6 half of a dual-stack lab's network
//!
//! Added to the IPv4 network ([`crate::build`]) by `xlb lab up --dual-stack`,
//! each step idempotent as there. Addresses are the IPv4 ones' counterparts
//! ([`crate::v6`]), all added with `nodad` in namespaces whose `accept_dad` is
//! 0, so they are usable at once:
//!
//! - underlay fd00:198:18::/64 on the same bridge (client ::1, and ::3
//!   deprecated so that it is a source only when bound to; node n ::1n);
//!   the client routes the IPv6 Service range (fd00:10:96::/48) via node 1;
//! - node n: IPv6 forwarding, pod gateway fd00:10:244:n::1/128 on `lo`,
//!   `flannel-v6.1` (VNI 1, port 8472, IPv6 underlay, MAC 0e:18:00:00:06:0n,
//!   fd00:10:244:n::/128, MTU 1430) with a route, a permanent neighbour and a
//!   permanent fdb entry per other node, as flannel's dual-stack VXLAN does;
//! - pod k: fd00:10:244:n::(k+1)/128, default route via the gateway with MTU
//!   1430 (the IPv6 overlay's), the gateway's neighbour entry pinned to the
//!   host veth's MAC (the gateway lives on the node's `lo`, which IPv6
//!   neighbour discovery does not answer for on another link).

use crate::build::{ensure_ns, sysctls};
use crate::cmd::{bridge, ip, link_exists};
use crate::v6::*;
use crate::*;

const NO_DAD: [(&str, &str); 2] = [
    ("net.ipv6.conf.all.accept_dad", "0"),
    ("net.ipv6.conf.default.accept_dad", "0"),
];

/// Namespaces with DAD off, before any device is made (devices take the
/// namespace's defaults when they appear).
pub(crate) fn prepare(lab: &Lab) -> Result<()> {
    let mut all = vec![lab.ns_underlay(), lab.ns_client()];
    all.extend(lab.node_numbers().map(|n| lab.ns_node(n)));
    all.extend(lab.pods().map(|(n, k)| lab.ns_pod(n, k)));
    for ns in &all {
        ensure_ns(ns)?;
        sysctls(ns, &NO_DAD)?;
    }
    for n in lab.node_numbers() {
        sysctls(&lab.ns_node(n), &[("net.ipv6.conf.all.forwarding", "1")])?;
    }
    Ok(())
}

/// The IPv6 addresses, devices and routes (after [`crate::build::network`]).
pub(crate) fn network(lab: &Lab) -> Result<()> {
    client(lab)?;
    for n in lab.node_numbers() {
        node(lab, n)?;
    }
    for (n, k) in lab.pods() {
        pod(lab, n, k)?;
    }
    Ok(())
}

fn addr(ns: &str, a: &str, dev: &str) -> Result<()> {
    ip(&["-n", ns, "addr", "replace", a, "dev", dev, "nodad"]).map(drop)
}

fn client(lab: &Lab) -> Result<()> {
    let c = lab.ns_client();
    addr(
        &c,
        &format!("{}/{UNDERLAY_PREFIX_LEN}", client_addr6()),
        "eth0",
    )?;
    // The second address is deprecated (preferred_lft 0): used only when
    // bound to, never picked as a source (as the IPv4 secondary address).
    ip(&[
        "-n",
        &c,
        "addr",
        "replace",
        &format!("{}/{UNDERLAY_PREFIX_LEN}", client_alt_addr6()),
        "dev",
        "eth0",
        "nodad",
        "preferred_lft",
        "0",
    ])?;
    ip(&[
        "-n",
        &c,
        "-6",
        "route",
        "replace",
        SERVICE_CIDR6,
        "via",
        &node_addr6(1).to_string(),
        "src",
        &client_addr6().to_string(),
    ])
    .map(drop)
}

fn node(lab: &Lab, n: u8) -> Result<()> {
    let ns = lab.ns_node(n);
    let me = node_addr6(n).to_string();
    addr(&ns, &format!("{me}/{UNDERLAY_PREFIX_LEN}"), UPLINK)?;
    addr(&ns, &format!("{}/128", pod_gateway6(n)), "lo")?;
    if !link_exists(&ns, VXLAN6_DEV) {
        ip(&[
            "-n",
            &ns,
            "link",
            "add",
            VXLAN6_DEV,
            "address",
            &vtep_mac6(n),
            "mtu",
            &POD_MTU6.to_string(),
            "type",
            "vxlan",
            "id",
            &VXLAN_VNI.to_string(),
            "local",
            &me,
            "dev",
            UPLINK,
            "dstport",
            &VXLAN_PORT.to_string(),
            "nolearning",
        ])?;
    }
    ip(&["-n", &ns, "link", "set", VXLAN6_DEV, "up"])?;
    addr(&ns, &format!("{}/128", vtep_addr6(n)), VXLAN6_DEV)?;
    for m in lab.node_numbers().filter(|&m| m != n) {
        let peer = node_addr6(m).to_string();
        ip(&[
            "-n",
            &ns,
            "-6",
            "neigh",
            "replace",
            &peer,
            "lladdr",
            &node_mac(m),
            "dev",
            UPLINK,
            "nud",
            "permanent",
        ])?;
        let via = vtep_addr6(m).to_string();
        ip(&[
            "-n",
            &ns,
            "-6",
            "route",
            "replace",
            &pod_cidr6(m),
            "via",
            &via,
            "dev",
            VXLAN6_DEV,
            "onlink",
        ])?;
        ip(&[
            "-n",
            &ns,
            "-6",
            "neigh",
            "replace",
            &via,
            "lladdr",
            &vtep_mac6(m),
            "dev",
            VXLAN6_DEV,
            "nud",
            "permanent",
        ])?;
        bridge(&[
            "-n",
            &ns,
            "fdb",
            "replace",
            &vtep_mac6(m),
            "dev",
            VXLAN6_DEV,
            "dst",
            &peer,
            "self",
            "permanent",
        ])?;
    }
    Ok(())
}

/// MAC address of `dev` in `ns`.
fn link_mac(ns: &str, dev: &str) -> Result<String> {
    let out = ip(&["-n", ns, "-o", "link", "show", "dev", dev])?;
    out.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .map(str::to_owned)
        .ok_or_else(|| Error::Command {
            cmd: format!("ip -n {ns} link show dev {dev}"),
            msg: format!("no link/ether address in {out:?}"),
        })
}

fn pod(lab: &Lab, n: u8, k: u8) -> Result<()> {
    let node = lab.ns_node(n);
    let pns = lab.ns_pod(n, k);
    let veth = crate::build::pod_veth(k);
    let a = pod_addr6(n, k).to_string();
    let gw = pod_gateway6(n).to_string();
    ip(&[
        "-n",
        &node,
        "-6",
        "route",
        "replace",
        &format!("{a}/128"),
        "dev",
        &veth,
        "src",
        &gw,
    ])?;
    addr(&pns, &format!("{a}/128"), "eth0")?;
    ip(&["-n", &pns, "-6", "route", "replace", &gw, "dev", "eth0"])?;
    let mac = link_mac(&node, &veth)?;
    ip(&[
        "-n",
        &pns,
        "-6",
        "neigh",
        "replace",
        &gw,
        "lladdr",
        &mac,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ])?;
    ip(&[
        "-n",
        &pns,
        "-6",
        "route",
        "replace",
        "default",
        "via",
        &gw,
        "dev",
        "eth0",
        "mtu",
        &POD_MTU6.to_string(),
    ])
    .map(drop)
}
