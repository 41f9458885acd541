//! The per-Service computation of the model: a Service with its slices ->
//! its ports, frontends and backends.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::{Service, ServicePort as K8sServicePort};
use xlb_bpf::consts::{
    XLB_SVC_F_AFFINITY, XLB_SVC_F_EXT_LOCAL, XLB_SVC_F_LOCAL, XLB_SVC_F_SRC_RANGES,
};
use xlb_bpf::{Kind, Proto};

use super::endpoints::{
    candidates, parse_cidr, parse_ip, parse_proto, select, Candidate, Candidates,
};
use super::{
    Backend, Family, Frontend, FrontendKey, ModelConfig, NodeInfo, ServiceDesired, ServicePort,
    Slice, DEFAULT_AFFINITY_TIMEOUT, HEADLESS_LABEL, SERVICE_PROXY_NAME_LABEL,
};

type Reasons = Vec<(String, String)>;

struct Policy {
    flags: u32,
    affinity_timeout: u32,
    etp_local: bool,
    itp_local: bool,
}

fn local_policy(v: Option<&str>, field: &str, obj: &str, reasons: &mut Reasons) -> bool {
    match v {
        None | Some("Cluster") => false,
        Some("Local") => true,
        Some(other) => {
            reasons.push((
                obj.to_string(),
                format!("{field} {other:?} unknown, using Cluster"),
            ));
            false
        }
    }
}

/// A Service with its slices -> its ports. `None`: nothing to program.
pub(crate) fn service<'a>(
    svc: &Service,
    key: &str,
    slices: impl Iterator<Item = &'a Slice>,
    nodes: &BTreeMap<String, NodeInfo>,
    cfg: &ModelConfig,
    reasons: &mut Reasons,
) -> Option<ServiceDesired> {
    let obj = format!("Service {key}");
    let slices: Vec<&Slice> = slices.collect();
    if let Some(why) = not_ours(svc, &slices) {
        reasons.push((obj, why));
        return None;
    }
    let Some(spec) = svc.spec.as_ref() else {
        reasons.push((obj, "spec missing".into()));
        return None;
    };
    let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
    match ty {
        "ExternalName" => return None,
        "ClusterIP" | "NodePort" | "LoadBalancer" => {}
        other => {
            reasons.push((obj, format!("unknown type {other:?}")));
            return None;
        }
    }
    let ip_strings: Vec<&String> = match spec.cluster_ips.as_ref().filter(|v| !v.is_empty()) {
        Some(v) => v.iter().collect(),
        None => spec.cluster_ip.iter().collect(),
    };
    if ip_strings.iter().any(|s| s.as_str() == "None") {
        return None; // headless: DNS only
    }
    let mut cluster_ips: Vec<IpAddr> = Vec::new();
    for s in &ip_strings {
        if s.is_empty() {
            continue;
        }
        match parse_ip(s) {
            Ok(ip) => match unroutable(ip) {
                None if cluster_ips.iter().any(|c| Family::of(*c) == Family::of(ip)) => reasons
                    .push((
                        obj.clone(),
                        format!(
                            "clusterIP {ip} ignored: a second {} clusterIP",
                            Family::of(ip)
                        ),
                    )),
                None => cluster_ips.push(ip),
                Some(why) => reasons.push((obj.clone(), format!("clusterIP {ip} refused: {why}"))),
            },
            Err(why) => reasons.push((obj.clone(), format!("bad clusterIP {s:?}: {why}"))),
        }
    }
    if cluster_ips.is_empty() && ip_strings.iter().all(|s| s.is_empty()) {
        reasons.push((obj.clone(), "no clusterIP allocated".into()));
    }
    let families = families(spec, &cluster_ips, &obj, reasons);

    // Policy.
    let mut flags = 0;
    let mut affinity_timeout = 0;
    match spec.session_affinity.as_deref() {
        None | Some("None") => {}
        Some("ClientIP") => {
            flags |= XLB_SVC_F_AFFINITY;
            affinity_timeout = DEFAULT_AFFINITY_TIMEOUT;
            if let Some(t) = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
            {
                if (1..=86400).contains(&t) {
                    affinity_timeout = t as u32;
                } else {
                    reasons.push((
                        obj.clone(),
                        format!("sessionAffinity timeoutSeconds {t} out of 1..=86400, using {DEFAULT_AFFINITY_TIMEOUT}"),
                    ));
                }
            }
        }
        Some(other) => reasons.push((
            obj.clone(),
            format!("sessionAffinity {other:?} unknown, ignored"),
        )),
    }
    let policy = Policy {
        flags,
        affinity_timeout,
        etp_local: local_policy(
            spec.external_traffic_policy.as_deref(),
            "externalTrafficPolicy",
            &obj,
            reasons,
        ),
        itp_local: local_policy(
            spec.internal_traffic_policy.as_deref(),
            "internalTrafficPolicy",
            &obj,
            reasons,
        ),
    };

    // External addresses: of the Service's families only (kube-proxy
    // serves a family only for a Service with a clusterIP of it).
    let mut external_ips = Vec::new();
    for s in spec.external_ips.iter().flatten() {
        if let Some(ip) = frontend_addr(s, "externalIP", &families, &obj, reasons) {
            external_ips.push(ip);
        }
    }
    let mut lb_ips = Vec::new();
    let mut src_ranges: Vec<(IpAddr, u8)> = Vec::new();
    if ty == "LoadBalancer" {
        for ing in svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_ref())
            .into_iter()
            .flatten()
        {
            let Some(s) = ing.ip.as_deref() else { continue }; // hostname-only
            if let Some(ip) = frontend_addr(s, "loadBalancer ingress ip", &families, &obj, reasons)
            {
                lb_ips.push(ip);
            }
        }
        for r in spec.load_balancer_source_ranges.iter().flatten() {
            match parse_cidr(r) {
                Ok(net) => src_ranges.push(net),
                Err(why) => reasons.push((
                    obj.clone(),
                    format!(
                        "bad loadBalancerSourceRange {r:?} (ignored: fewer sources allowed): {why}"
                    ),
                )),
            }
        }
        src_ranges.sort();
        src_ranges.dedup();
    }
    // Any range listed restricts every LoadBalancer frontend of both
    // families: a family without a range of its own admits no client
    // (docs/ipv6.md; kube-proxy admits every client of that family).
    let has_src_ranges = !spec
        .load_balancer_source_ranges
        .as_ref()
        .is_none_or(|v| v.is_empty())
        && ty == "LoadBalancer";

    let cands = candidates(slices.into_iter(), nodes, cfg, reasons);

    let mut ports = Vec::new();
    let mut seen_ports = BTreeSet::new();
    for sp in spec.ports.iter().flatten() {
        let pobj = format!(
            "{obj} port {}/{}",
            sp.port,
            sp.protocol.as_deref().unwrap_or("TCP")
        );
        let proto = match parse_proto(sp.protocol.as_deref()) {
            Ok(p) => p,
            Err(e) => {
                reasons.push((pobj, e));
                continue;
            }
        };
        if !(1..=65535).contains(&sp.port) {
            reasons.push((pobj, format!("port {} out of range", sp.port)));
            continue;
        }
        if !seen_ports.insert((sp.port, proto)) {
            reasons.push((pobj, "duplicate port".into()));
            continue;
        }
        let p = service_port(
            sp,
            proto,
            key,
            &pobj,
            ty,
            &cluster_ips,
            &families,
            &lb_ips,
            &external_ips,
            &policy,
            has_src_ranges,
            &src_ranges,
            &cands,
            cfg,
            reasons,
        );
        if !p.frontends.is_empty() {
            ports.push(p);
        }
    }
    if ports.is_empty() {
        if spec.ports.as_ref().is_none_or(|p| p.is_empty()) {
            reasons.push((obj, "no ports".into()));
        }
        return None;
    }
    let health_check_node_port = match spec.health_check_node_port {
        Some(p) if ty == "LoadBalancer" && policy.etp_local => {
            if (1..=65535).contains(&p) {
                Some(p as u16)
            } else {
                reasons.push((obj, format!("healthCheckNodePort {p} out of range")));
                None
            }
        }
        _ => None,
    };
    // Ready local endpoints (addr:port, over every port), as kube-proxy's
    // service health server counts them.
    let local_ready_endpoints = cands
        .values()
        .flat_map(|m| m.iter())
        .filter(|c| c.local() && c.ready)
        .map(|c| c.addr)
        .collect::<BTreeSet<_>>()
        .len() as u32;
    Some(ServiceDesired {
        ports,
        health_check_node_port,
        local_ready_endpoints,
    })
}

/// Why a Service is left to others (kube-proxy serves only Services without
/// these labels): `service.kubernetes.io/service-proxy-name` (any value: a
/// proxy of that name serves it), `service.kubernetes.io/headless` on the
/// Service or on one of its EndpointSlices.
fn not_ours(svc: &Service, slices: &[&Slice]) -> Option<String> {
    let labels = svc.metadata.labels.as_ref();
    if let Some(v) = labels.and_then(|l| l.get(SERVICE_PROXY_NAME_LABEL)) {
        return Some(format!(
            "label {SERVICE_PROXY_NAME_LABEL}={v:?}: served by that proxy, not xlb"
        ));
    }
    if labels.is_some_and(|l| l.contains_key(HEADLESS_LABEL)) {
        return Some(format!("label {HEADLESS_LABEL}: not proxied"));
    }
    slices
        .iter()
        .find(|s| {
            s.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(HEADLESS_LABEL))
        })
        .map(|s| {
            format!(
                "EndpointSlice {} has label {HEADLESS_LABEL}: not proxied",
                s.metadata.name.as_deref().unwrap_or("?")
            )
        })
}

/// The families a Service is served in: those of its clusterIPs; without
/// a usable one (manifests without clusterIP, a refused one), spec.ipFamilies,
/// else IPv4. A family spec.ipFamilies lists without a clusterIP of it is
/// reported (RequireDualStack not met).
fn families(
    spec: &k8s_openapi::api::core::v1::ServiceSpec,
    cluster_ips: &[IpAddr],
    obj: &str,
    reasons: &mut Reasons,
) -> Vec<Family> {
    let mut listed = Vec::new();
    for f in spec.ip_families.iter().flatten() {
        match f.as_str() {
            "IPv4" => listed.push(Family::V4),
            "IPv6" => listed.push(Family::V6),
            other => reasons.push((
                obj.to_string(),
                format!("ipFamilies {other:?} unknown, ignored"),
            )),
        }
    }
    match spec.ip_family_policy.as_deref() {
        None | Some("SingleStack") | Some("PreferDualStack") | Some("RequireDualStack") => {}
        Some(other) => reasons.push((
            obj.to_string(),
            format!("ipFamilyPolicy {other:?} unknown, ignored"),
        )),
    }
    let mut fams: Vec<Family> = cluster_ips.iter().map(|a| Family::of(*a)).collect();
    if fams.is_empty() {
        fams = listed.clone();
    } else {
        for f in &listed {
            if !fams.contains(f) {
                reasons.push((
                    obj.to_string(),
                    format!("ipFamilies lists {f} but no {f} clusterIP is allocated: not served over {f}"),
                ));
            }
        }
    }
    if fams.is_empty() {
        fams.push(Family::V4);
    }
    fams.sort();
    fams.dedup();
    fams
}

/// An external frontend address (externalIP, LoadBalancer ingress): a
/// routable address of one of the Service's families.
fn frontend_addr(
    s: &str,
    what: &str,
    families: &[Family],
    obj: &str,
    reasons: &mut Reasons,
) -> Option<IpAddr> {
    let ip = match parse_ip(s) {
        Ok(ip) => ip,
        Err(why) => {
            reasons.push((obj.to_string(), format!("bad {what} {s:?}: {why}")));
            return None;
        }
    };
    if let Some(why) = unroutable(ip) {
        reasons.push((obj.to_string(), format!("{what} {ip} refused: {why}")));
        return None;
    }
    let fam = Family::of(ip);
    if !families.contains(&fam) {
        reasons.push((
            obj.to_string(),
            format!("{what} {ip} ignored: the Service has no {fam} clusterIP (ipFamilies)"),
        ));
        return None;
    }
    Some(ip)
}

/// Why an address cannot be a frontend address: traffic to it is the
/// node's own or no single host's (CVE-2020-8554 class: a Service must not
/// capture it).
pub(crate) fn unroutable(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) if ip.is_broadcast() => Some("broadcast address"),
        IpAddr::V4(ip) if ip.is_link_local() => Some("link-local address"),
        IpAddr::V6(ip) if ip.is_unicast_link_local() => Some("link-local address"),
        IpAddr::V6(ip) if ip.to_ipv4_mapped().is_some() => Some("v4-mapped IPv6 address"),
        ip if ip.is_unspecified() => Some("unspecified address"),
        ip if ip.is_loopback() => Some("loopback address"),
        ip if ip.is_multicast() => Some("multicast address"),
        _ => None,
    }
}

#[allow(clippy::too_many_arguments)]
fn service_port(
    sp: &K8sServicePort,
    proto: Proto,
    key: &str,
    pobj: &str,
    ty: &str,
    cluster_ips: &[IpAddr],
    families: &[Family],
    lb_ips: &[IpAddr],
    external_ips: &[IpAddr],
    policy: &Policy,
    has_src_ranges: bool,
    src_ranges: &[(IpAddr, u8)],
    cands: &Candidates,
    cfg: &ModelConfig,
    reasons: &mut Reasons,
) -> ServicePort {
    let port = sp.port as u16;
    let pname = sp.name.clone().unwrap_or_default();
    let mine = cands.get(&(pname, proto));
    let all = mine.into_iter().flat_map(|m| m.iter());
    // Per family: a frontend balances over the endpoints of its family.
    let sets = [Family::V4, Family::V6].map(|fam| {
        let of_fam = all.clone().filter(move |c| Family::of(c.addr.ip()) == fam);
        let cluster_set = select(of_fam.clone());
        let local_set = select(of_fam.clone().filter(|c| c.local()));
        // Some endpoint anywhere to use: without one every frontend rejects;
        // with one, a Local policy without local endpoint drops.
        let has_any = of_fam.clone().any(Candidate::usable);
        (cluster_set, local_set, has_any)
    });

    let mut frontends: Vec<Frontend> = Vec::new();
    let mut add = |key: FrontendKey, kind: Kind, local: bool, extra: u32| {
        if frontends.iter().any(|f| f.key == key) {
            return;
        }
        let (cluster_set, local_set, has_any) = &sets[key.family as usize];
        let has_any = *has_any;
        let frontend = |key: FrontendKey, set: &[&Candidate], flags: u32| {
            let mut backends: Vec<SocketAddr> = set.iter().map(|c| c.addr).collect();
            backends.sort();
            Frontend {
                key,
                kind,
                flags,
                affinity_timeout: policy.affinity_timeout,
                table_size: cfg.maglev.table_size(backends.len()),
                n_local: set.iter().filter(|c| c.local()).count() as u32,
                backends,
            }
        };
        let flags = policy.flags | extra;
        if !local {
            frontends.push(frontend(key, cluster_set, flags));
            return;
        }
        let local_flag = if has_any { XLB_SVC_F_LOCAL } else { 0 };
        if kind == Kind::ClusterIp {
            frontends.push(frontend(key, local_set, flags | local_flag));
            return;
        }
        // externalTrafficPolicy Local: this node's endpoints for clients
        // outside the cluster; the cluster-wide set for clients inside it.
        frontends.push(frontend(
            key,
            local_set,
            flags | local_flag | XLB_SVC_F_EXT_LOCAL,
        ));
        frontends.push(frontend(
            FrontendKey {
                internal: true,
                ..key
            },
            cluster_set,
            flags,
        ));
    };
    for ip in cluster_ips {
        add(
            FrontendKey::on(*ip, port, proto),
            Kind::ClusterIp,
            policy.itp_local,
            0,
        );
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        match sp.node_port {
            None | Some(0) => {}
            Some(np) if u16::try_from(np).is_ok_and(|np| cfg.nodeport_range.contains(&np)) => {
                // A NodePort frontend per family the Service is served in.
                for fam in families {
                    add(
                        FrontendKey::nodeport(np as u16, proto, *fam),
                        Kind::NodePort,
                        policy.etp_local,
                        0,
                    )
                }
            }
            Some(np) => reasons.push((
                pobj.to_string(),
                format!(
                    "nodePort {np} refused: outside the NodePort range {}-{}",
                    cfg.nodeport_range.start(),
                    cfg.nodeport_range.end()
                ),
            )),
        }
    }
    let src_flag = if has_src_ranges {
        XLB_SVC_F_SRC_RANGES
    } else {
        0
    };
    for ip in lb_ips {
        add(
            FrontendKey::on(*ip, port, proto),
            Kind::LoadBalancer,
            policy.etp_local,
            src_flag,
        );
    }
    for ip in external_ips {
        add(
            FrontendKey::on(*ip, port, proto),
            Kind::ExternalIp,
            policy.etp_local,
            0,
        );
    }

    // Every endpoint listed for the port is a backend: those in a table as
    // chosen; the others (terminating, not ready, or outside a Local
    // policy's set) draining: flows that use them keep them until they
    // leave the EndpointSlices, new flows never choose them.
    let mut in_table: Vec<SocketAddr> =
        Vec::with_capacity(frontends.iter().map(|f| f.backends.len()).sum());
    in_table.extend(frontends.iter().flat_map(|f| f.backends.iter().copied()));
    in_table.sort_unstable();
    in_table.dedup();
    // A port's candidates are sorted by address (`candidates`), as is
    // `in_table`: one merge-join, with a search for any candidate out of
    // order.
    let mut rest = &in_table[..];
    let mut prev: Option<SocketAddr> = None;
    let backends = all
        .map(|c| {
            let listed = if prev.is_some_and(|p| c.addr < p) {
                in_table.binary_search(&c.addr).is_ok()
            } else {
                while rest.first().is_some_and(|a| *a < c.addr) {
                    rest = &rest[1..];
                }
                prev = Some(c.addr);
                rest.first() == Some(&c.addr)
            };
            Backend {
                addr: c.addr,
                node: c.place.node,
                terminating: c.terminating,
                draining: !listed,
                host_network: c.place.host_network,
            }
        })
        .collect();
    // Ranges of the families whose LoadBalancer frontends check them.
    let with_ranges: Vec<Family> = frontends
        .iter()
        .filter(|f| f.flags & XLB_SVC_F_SRC_RANGES != 0)
        .map(|f| f.key.family)
        .collect();
    ServicePort {
        name: format!("{key}:{port}/{proto}"),
        frontends,
        backends,
        src_ranges: src_ranges
            .iter()
            .filter(|r| with_ranges.contains(&Family::of(r.0)))
            .copied()
            .collect(),
    }
}
