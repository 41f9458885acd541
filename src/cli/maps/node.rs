//! `xlb maps tunnel` and `xlb maps config`: the VXLAN peers and the
//! data plane's node settings.

use super::*;

pub(super) fn tunnel(maps: &Maps) -> anyhow::Result<Table> {
    let mut entries = tunnels_all(maps)?;
    entries.sort();
    let mut t = Table::new("tunnel entries", &["POD_CIDR", "NODE", "VTEP_MAC"]);
    for ((net, len), node, mac) in entries {
        t.push(
            vec![format!("{net}/{len}"), node.to_string(), mac_string(&mac)],
            json!({"cidr": format!("{net}/{len}"), "node": node.to_string(), "vtep_mac": mac_string(&mac)}),
        );
    }
    Ok(t)
}

pub(super) fn config(maps: &Maps) -> anyhow::Result<Table> {
    let c = maps.config().context("reading config")?;
    let mut t = Table::new("settings", &["SETTING", "VALUE"]);
    let mut kv = |k: &'static str, v: String, j: Value| {
        t.push(vec![k.into(), v], json!({"setting": k, "value": j}))
    };
    kv(
        "node_addr",
        c.node_addr().to_string(),
        json!(c.node_addr().to_string()),
    );
    kv(
        "vxlan_port",
        c.vxlan_port().to_string(),
        json!(c.vxlan_port()),
    );
    kv("vni", c.vni.to_string(), json!(c.vni));
    kv("mtu", c.mtu.to_string(), json!(c.mtu));
    kv("ifindex", c.ifindex.to_string(), json!(c.ifindex));
    kv("mac", mac_string(&c.mac), json!(mac_string(&c.mac)));
    kv("flags", format!("{:#x}", c.flags), json!(c.flags));
    let addrs: Vec<String> = maps.local_addrs()?.iter().map(|a| a.to_string()).collect();
    kv("local_addrs", addrs.join(","), json!(addrs));
    let addrs: Vec<String> = maps.remote_addrs()?.iter().map(|a| a.to_string()).collect();
    kv("remote_addrs", addrs.join(","), json!(addrs));
    // the filters' fill: the share of frontends / source addresses that
    // cannot be ruled out without a lookup (docs/dp.md, "Filters")
    for (name, used, slots) in maps.filter_usage()? {
        kv(
            name,
            format!(
                "{used} of {slots} slots ({:.1}%)",
                100.0 * used as f64 / f64::from(slots.max(1))
            ),
            json!({"used": used, "slots": slots}),
        );
    }
    // IPv6 (pins of an xlb without IPv6: none)
    if maps.v6().is_some() {
        let c6 = maps.config6().context("reading config6")?;
        let a6 = c6.node_addr().map(|a| a.to_string());
        kv(
            "node_addr6",
            a6.clone().unwrap_or_else(|| "-".into()),
            json!(a6),
        );
        let addrs: Vec<String> = maps.local_addrs6()?.iter().map(|a| a.to_string()).collect();
        kv("local_addrs6", addrs.join(","), json!(addrs));
        let addrs: Vec<String> = maps
            .remote_addrs6()?
            .iter()
            .map(|a| a.to_string())
            .collect();
        kv("remote_addrs6", addrs.join(","), json!(addrs));
    }
    Ok(t)
}
