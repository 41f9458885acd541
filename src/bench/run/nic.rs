//! Real ports for `--iface IF --peer-iface P`: what they look like before
//! the bench takes them, and the checks that refuse ports it must not move.

use std::process::Command;

use anyhow::{bail, Context, Result};

use super::topo::sh;

/// Real NICs instead of the xc0/xn0 veth pair.
#[derive(Clone, Debug)]
pub struct Nics {
    /// The node's port (xlb, the baselines, iptables attach there).
    pub iface: String,
    /// The port cabled to it (the generator sends, the client-side sink counts).
    pub peer: String,
}

/// What a real port looked like before the bench took it.
#[derive(Clone, Debug)]
pub struct NicInfo {
    pub name: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub mtu: u32,
    pub up: bool,
    pub rx_queues: usize,
    pub driver: String,
    pub veth: bool,
}

/// Reads a port in the calling process's namespace (`ip -j -d link`,
/// `ip -j addr`, `ethtool -i`).
pub fn nic_info(role: &str, name: &str) -> Result<NicInfo> {
    let out = Command::new("ip")
        .args(["-j", "-d", "link", "show", "dev", name])
        .output()
        .context("running ip (apt-get install iproute2)")?;
    if !out.status.success() {
        bail!(
            "{role} {name}: no such interface in this network namespace ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("parsing `ip -j -d link show dev {name}`"))?;
    let l = v
        .get(0)
        .with_context(|| format!("{role} {name}: not in `ip link`"))?;
    let s = |k: &str| l[k].as_str().unwrap_or_default().to_string();
    let n = |k: &str| l[k].as_u64().unwrap_or(0);
    if s("link_type") != "ether" {
        bail!(
            "{role} {name}: not an Ethernet port (link type {:?})",
            s("link_type")
        );
    }
    if let Some(m) = l["master"].as_str() {
        bail!("{role} {name}: enslaved to {m}; take it out of the bridge/bond first");
    }
    let mut mac = [0u8; 6];
    let parts: Vec<u8> = s("address")
        .split(':')
        .filter_map(|h| u8::from_str_radix(h, 16).ok())
        .collect();
    if parts.len() != 6 {
        bail!("{role} {name}: no MAC address ({:?})", s("address"));
    }
    mac.copy_from_slice(&parts);
    let up = l["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "UP"));
    let veth = l["linkinfo"]["info_kind"] == "veth";
    // addresses: moving the port drops them, so refuse any that matter
    let addrs = sh("ip", &["-j", "addr", "show", "dev", name])?;
    let a: serde_json::Value = serde_json::from_str(&addrs)
        .with_context(|| format!("parsing `ip -j addr show dev {name}`"))?;
    let kept: Vec<String> = a
        .get(0)
        .and_then(|x| x["addr_info"].as_array())
        .map(|v| {
            v.iter()
                .filter(|i| i["family"] == "inet" || i["scope"] == "global")
                .map(|i| {
                    format!(
                        "{}/{}",
                        i["local"].as_str().unwrap_or("?"),
                        i["prefixlen"].as_u64().unwrap_or(0)
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if !kept.is_empty() {
        bail!(
            "{role} {name} has address(es) {}: the bench moves the port into a namespace of its \
             own for the run, which drops them (a management port would go dark). Use ports \
             without IPv4/global IPv6 addresses, or remove them first if you mean it \
             (ip addr flush dev {name})",
            kept.join(", ")
        );
    }
    let driver = Command::new("ethtool")
        .args(["-i", name])
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("driver: ").map(str::to_string))
        })
        .unwrap_or_else(|| "unknown".into());
    Ok(NicInfo {
        name: name.to_string(),
        ifindex: n("ifindex") as u32,
        mac,
        mtu: n("mtu") as u32,
        up,
        rx_queues: n("num_rx_queues").max(1) as usize,
        driver,
        veth,
    })
}
