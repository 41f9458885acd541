//! Nodes and endpoints: what the model uses of a Node, where an endpoint
//! lives, and which endpoints a port's frontends balance over.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use k8s_openapi::api::core::v1::Node;
use xlb_bpf::Proto;

use super::{
    in_cidr, EndpointAddr, Family, ModelConfig, NodeInfo, Slice, FLANNEL_PUBLIC_IPV6_ANNOTATION,
    FLANNEL_VTEP6_ANNOTATION, XLB_VTEP_ANNOTATION,
};

type Reasons = Vec<(String, String)>;

/// Parses an address of either family. A v4-mapped IPv6 address
/// (`::ffff:a.b.c.d`) is refused: it names an IPv4 host in IPv6 clothes,
/// which neither data-plane family would match.
pub(crate) fn parse_ip(s: &str) -> Result<IpAddr, String> {
    match s.trim().parse::<IpAddr>() {
        Ok(IpAddr::V6(a)) if a.to_ipv4_mapped().is_some() => {
            Err(format!("v4-mapped IPv6 address {s:?}"))
        }
        Ok(a) => Ok(a),
        Err(_) => Err(format!("unparsable address {s:?}")),
    }
}

/// Parses `addr/n` of either family (n at most 32 for IPv4, 128 for
/// IPv6), masking host bits.
pub(crate) fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let Some((a, p)) = s.trim().split_once('/') else {
        return Err(format!("not a CIDR: {s:?}"));
    };
    let a = parse_ip(a)?;
    let max = match a {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    let p: u8 = match p.parse::<u32>() {
        Ok(p) if p <= max => p as u8,
        Ok(p) => return Err(format!("prefix /{p} longer than {max} in {s:?}")),
        Err(_) => return Err(format!("bad prefix in {s:?}")),
    };
    Ok(match a {
        IpAddr::V4(a) => {
            let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            (IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask)), p)
        }
        IpAddr::V6(a) => (IpAddr::V6(xlb_bpf::wire6::mask6(a, p)), p),
    })
}

pub(super) fn parse_proto(p: Option<&str>) -> Result<Proto, String> {
    match p.unwrap_or("TCP") {
        "TCP" => Ok(Proto::Tcp),
        "UDP" => Ok(Proto::Udp),
        "SCTP" => Err("protocol SCTP not supported yet".into()),
        other => Err(format!("unknown protocol {other:?}")),
    }
}

/// Flannel's JSON (`{"VNI":1,"VtepMAC":".."}`) or a plain MAC.
fn parse_mac_annotation(v: &str) -> Option<[u8; 6]> {
    let v = v.trim();
    if let Some(m) = xlb_bpf::wire::parse_mac(v) {
        return Some(m);
    }
    let j: serde_json::Value = serde_json::from_str(v).ok()?;
    xlb_bpf::wire::parse_mac(j.get("VtepMAC")?.as_str()?)
}

/// What the model uses of a Node: its addresses of both families, pod
/// CIDRs, and per family its underlay address and VTEP MAC.
pub(crate) fn node_info(n: &Node, cfg: &ModelConfig, reasons: &mut Reasons) -> NodeInfo {
    let name = n.metadata.name.as_deref().unwrap_or("?");
    let obj = format!("Node {name}");
    let mut info = NodeInfo::default();
    let mut first6 = None;
    for a in n
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
    {
        if a.type_ != "InternalIP" && a.type_ != "ExternalIP" {
            continue;
        }
        let ip = match parse_ip(&a.address) {
            Ok(ip) => ip,
            Err(why) => {
                reasons.push((obj.clone(), format!("bad address {:?}: {why}", a.address)));
                continue;
            }
        };
        if let Some(why) = unusable_node_addr(ip) {
            reasons.push((obj.clone(), format!("address {ip} skipped: {why}")));
            continue;
        }
        match ip {
            IpAddr::V4(v4) if a.type_ == "InternalIP" && info.addr.is_none() => {
                info.addr = Some(v4)
            }
            IpAddr::V6(v6) if a.type_ == "InternalIP" && first6.is_none() => first6 = Some(v6),
            _ => {}
        }
        if !info.addrs.contains(&ip) {
            info.addrs.push(ip);
        }
    }
    let ann = n.metadata.annotations.as_ref();
    info.addr6 = first6;
    if let Some(v) = ann.and_then(|a| a.get(FLANNEL_PUBLIC_IPV6_ANNOTATION)) {
        match parse_ip(v) {
            Ok(IpAddr::V6(a)) if unusable_node_addr(IpAddr::V6(a)).is_none() => {
                info.addr6 = Some(a)
            }
            Ok(a) => reasons.push((
                obj.clone(),
                format!(
                    "annotation {FLANNEL_PUBLIC_IPV6_ANNOTATION}: {a} is not a global IPv6 address"
                ),
            )),
            Err(why) => reasons.push((
                obj.clone(),
                format!("annotation {FLANNEL_PUBLIC_IPV6_ANNOTATION}: {why}"),
            )),
        }
    }
    if info.addr.is_none() && info.addr6.is_none() {
        reasons.push((obj.clone(), "no InternalIP".into()));
    }
    let spec = n.spec.as_ref();
    let mut cidrs: Vec<&String> = spec
        .and_then(|s| s.pod_cidrs.as_ref())
        .into_iter()
        .flatten()
        .collect();
    if cidrs.is_empty() {
        cidrs.extend(spec.and_then(|s| s.pod_cidr.as_ref()));
    }
    for c in cidrs {
        match parse_cidr(c) {
            Ok(net) if !info.cidrs.contains(&net) => info.cidrs.push(net),
            Ok(_) => {}
            Err(why) => reasons.push((obj.clone(), format!("bad podCIDR {c:?}: {why}"))),
        }
    }
    for key in [cfg.vtep_mac_annotation.as_str(), XLB_VTEP_ANNOTATION] {
        if let Some(v) = ann.and_then(|a| a.get(key)) {
            match parse_mac_annotation(v) {
                Some(m) => {
                    info.vtep_mac = Some(m);
                    break;
                }
                None => reasons.push((obj.clone(), format!("annotation {key}: no MAC in {v:?}"))),
            }
        }
    }
    if let Some(v) = ann.and_then(|a| a.get(FLANNEL_VTEP6_ANNOTATION)) {
        match parse_mac_annotation(v) {
            Some(m) => info.vtep_mac6 = Some(m),
            None => reasons.push((
                obj.clone(),
                format!("annotation {FLANNEL_VTEP6_ANNOTATION}: no MAC in {v:?}"),
            )),
        }
    }
    info
}

/// Why an endpoint address cannot be a backend: no single host's
/// (multicast, unspecified), or, for IPv6, link-local (meaningless without
/// an interface).
fn bad_backend_addr(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V6(a) if a.is_unicast_link_local() => Some("link-local address"),
        a if a.is_multicast() => Some("multicast address"),
        a if a.is_unspecified() => Some("unspecified address"),
        IpAddr::V4(a) if a.is_broadcast() => Some("broadcast address"),
        _ => None,
    }
}

/// Why a Node address cannot be used: an IPv6 link-local address is only
/// meaningful with an interface, multicast and unspecified ones are no
/// host's.
fn unusable_node_addr(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V6(a) if a.is_unicast_link_local() => Some("link-local address"),
        a if a.is_multicast() => Some("multicast address"),
        a if a.is_unspecified() => Some("unspecified address"),
        _ => None,
    }
}

/// One endpoint of one port, before selection. Conditions as published
/// (missing ones as Kubernetes documents them: ready unset = ready, serving
/// unset = ready, terminating unset = false).
#[derive(Clone, Debug)]
pub(super) struct Candidate {
    pub addr: SocketAddr,
    pub place: Place,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

impl Candidate {
    pub fn local(&self) -> bool {
        self.place.node.is_none()
    }

    /// Usable at all: ready, or the serving-and-terminating fallback.
    pub fn usable(&self) -> bool {
        self.ready || (self.serving && self.terminating)
    }
}

/// Where an endpoint lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Place {
    /// Underlay address of its node, of the endpoint's family; `None` =
    /// this node.
    pub node: Option<IpAddr>,
    /// Its address is its node's own address (a hostNetwork pod, the API
    /// server of the `kubernetes` Service).
    pub host_network: bool,
}

/// Whether `ip` is one of this node's addresses (its Node's, or configured).
fn is_own_addr(ip: IpAddr, nodes: &BTreeMap<String, NodeInfo>, cfg: &ModelConfig) -> bool {
    cfg.node_addrs.contains(&ip)
        || nodes
            .get(&cfg.node_name)
            .is_some_and(|me| me.addrs.contains(&ip))
}

/// Where an endpoint lives. With nodeName, that node; without, the node
/// whose address it is (a host-network endpoint), else the node whose pod
/// CIDR holds it, else this node (the kernel routes it, e.g. an address
/// outside the cluster in a hand-written EndpointSlice).
fn place(
    node_name: Option<&str>,
    ip: IpAddr,
    nodes: &BTreeMap<String, NodeInfo>,
    cfg: &ModelConfig,
) -> Result<Place, String> {
    let fam = Family::of(ip);
    let here = |host_network| Place {
        node: None,
        host_network,
    };
    let remote = |name: &str, info: &NodeInfo, host_network| {
        info.underlay(fam)
            .map(|a| Place {
                node: Some(a),
                host_network,
            })
            .ok_or_else(|| match fam {
                Family::V4 => format!("node {name} has no IPv4 InternalIP"),
                Family::V6 => format!(
                    "node {name} has no IPv6 address (InternalIP or annotation {FLANNEL_PUBLIC_IPV6_ANNOTATION})"
                ),
            })
    };
    match node_name.filter(|n| !n.is_empty()) {
        Some(n) if n == cfg.node_name => Ok(here(is_own_addr(ip, nodes, cfg))),
        Some(n) => match nodes.get(n) {
            Some(info) => remote(n, info, info.addrs.contains(&ip)),
            None => Err(format!("node {n} unknown")),
        },
        None => {
            if is_own_addr(ip, nodes, cfg) {
                return Ok(here(true));
            }
            for (name, info) in nodes {
                if *name != cfg.node_name && info.addrs.contains(&ip) {
                    return remote(name, info, true);
                }
            }
            if let Some(me) = nodes.get(&cfg.node_name) {
                if me.cidrs.iter().any(|c| in_cidr(ip, *c)) {
                    return Ok(here(false));
                }
            }
            for (name, info) in nodes {
                if *name != cfg.node_name && info.cidrs.iter().any(|c| in_cidr(ip, *c)) {
                    return remote(name, info, false);
                }
            }
            Ok(here(false))
        }
    }
}

/// Candidates per (slice port name, proto): sorted by address, one per
/// address.
pub(super) type Candidates = BTreeMap<(String, Proto), Vec<Candidate>>;

/// Endpoints of the slices, per (slice port name, proto) -> candidates.
/// (Collected into vectors and sorted once: a tree map per port costs an
/// allocation per node, which dominates a recompute of thousands of
/// endpoints.)
pub(super) fn candidates<'a>(
    slices: impl Iterator<Item = &'a Slice>,
    nodes: &BTreeMap<String, NodeInfo>,
    cfg: &ModelConfig,
    reasons: &mut Reasons,
) -> Candidates {
    let mut out: Candidates = BTreeMap::new();
    for s in slices {
        let sname = format!(
            "EndpointSlice {}/{}",
            s.metadata.namespace.as_deref().unwrap_or("default"),
            s.metadata.name.as_deref().unwrap_or("?")
        );
        let fam = match s.address_type.as_str() {
            "IPv4" => Family::V4,
            "IPv6" => Family::V6,
            other => {
                reasons.push((sname, format!("addressType {other:?} not supported")));
                continue;
            }
        };
        let mut ports = Vec::new();
        for p in &s.ports {
            let pname = p.name.clone().unwrap_or_default();
            let proto = match parse_proto(p.protocol.as_deref()) {
                Ok(pr) => pr,
                Err(e) => {
                    reasons.push((sname.clone(), format!("port {pname:?}: {e}")));
                    continue;
                }
            };
            match p.port {
                Some(n) if (1..=65535).contains(&n) => ports.push((pname, proto, n as u16)),
                other => reasons.push((
                    sname.clone(),
                    format!("port {pname:?}: port {other:?} out of range"),
                )),
            }
        }
        if ports.is_empty() {
            continue;
        }
        // The candidates of each port, taken out of `out` for the slice (one
        // key lookup per port, not per endpoint) and put back after it.
        // Ports of the same name and protocol share one.
        let mut maps: Vec<((String, Proto), Vec<Candidate>)> = Vec::new();
        let mut port_map: Vec<usize> = Vec::with_capacity(ports.len());
        for (pname, proto, _) in &ports {
            let key = (pname.clone(), *proto);
            let i = match maps.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    let mut m = out.remove(&key).unwrap_or_default();
                    m.reserve(s.endpoints.len());
                    maps.push((key, m));
                    maps.len() - 1
                }
            };
            port_map.push(i);
        }
        for e in &s.endpoints {
            let ip = match &e.address {
                None => {
                    reasons.push((sname.clone(), "endpoint without addresses".into()));
                    continue;
                }
                Some(EndpointAddr::Ip(ip)) => Ok(*ip),
                Some(EndpointAddr::Bad(first)) => Err(first),
            };
            let ip = match ip {
                Ok(ip) if Family::of(ip) != fam => {
                    reasons.push((
                        sname.clone(),
                        format!(
                            "endpoint {ip} skipped: an {} address in an {fam} EndpointSlice",
                            Family::of(ip)
                        ),
                    ));
                    continue;
                }
                Ok(ip) => ip,
                Err(first) => {
                    let why = parse_ip(first).err().unwrap_or_default();
                    reasons.push((
                        sname.clone(),
                        format!("bad endpoint address {first:?}: {why}"),
                    ));
                    continue;
                }
            };
            if let Some(why) = bad_backend_addr(ip) {
                reasons.push((sname.clone(), format!("endpoint {ip} skipped: {why}")));
                continue;
            }
            let place = match place(e.node_name.as_deref(), ip, nodes, cfg) {
                Ok(p) => p,
                Err(why) => {
                    reasons.push((sname.clone(), format!("endpoint {ip}: {why}")));
                    continue;
                }
            };
            let ready = e.ready.unwrap_or(true);
            let serving = e.serving.unwrap_or(ready);
            let terminating = e.terminating.unwrap_or(false);
            for ((_, _, port), &i) in ports.iter().zip(&port_map) {
                let addr = SocketAddr::new(ip, *port);
                let cand = Candidate {
                    addr,
                    place,
                    ready,
                    serving,
                    terminating,
                };
                maps[i].1.push(cand);
            }
        }
        out.extend(maps);
    }
    for v in out.values_mut() {
        // The same endpoint twice (in two slices during a move): the first
        // ready one wins, else the first one (the sort is stable).
        v.sort_by_key(|c| c.addr);
        let mut kept: Vec<Candidate> = Vec::with_capacity(v.len());
        for c in v.drain(..) {
            match kept.last_mut() {
                Some(last) if last.addr == c.addr => {
                    if c.ready && !last.ready {
                        *last = c;
                    }
                }
                _ => kept.push(c),
            }
        }
        *v = kept;
    }
    out
}

/// As kube-proxy's CategorizeEndpoints: the ready ones (`ready` as
/// published, whatever `terminating` says: publishNotReadyAddresses); when
/// there is none, the serving-and-terminating ones.
/// (Counted first, so the vector is allocated once: growing it by
/// reallocation right after a big EndpointSlice was freed costs most of a
/// recompute in glibc's malloc.)
pub(super) fn select<'a>(cands: impl Iterator<Item = &'a Candidate> + Clone) -> Vec<&'a Candidate> {
    let collect = |keep: fn(&Candidate) -> bool| {
        let mut v = Vec::with_capacity(cands.clone().filter(|c| keep(c)).count());
        v.extend(cands.clone().filter(|c| keep(c)));
        v
    };
    let ready = collect(|c| c.ready);
    if !ready.is_empty() {
        return ready;
    }
    collect(|c| c.serving && c.terminating)
}
