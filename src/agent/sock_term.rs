//! Terminating node processes' UDP sockets whose backend left their Service
//! (`sock_term.bpf.c`, see docs/socket-lb.md): after each sync, the
//! (frontend, backend) pairs of UDP Service ports that the sync took away
//! go to the socket iterator, which destroys the connected UDP sockets of
//! this namespace that connect4 balanced through such a frontend to such a
//! backend. Their next connect() picks a live backend, as kube-proxy's UDP
//! conntrack flush and Cilium's socket termination give.
//!
//! IPv6: the sync hands the UDP (frontend, backend) pairs its IPv6 Service
//! ports hold ([`Pairs6`]) to [`Terminator::synced_dual`]; the pairs that
//! left since the last call go to the same iterator walk (connect6's
//! sockets, `sock_rnat6`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;

use xlb_bpf::Proto;
pub use xlb_loader::sock_term::TermPair6;
use xlb_loader::sock_term::{SockTerm, TermPair};
use xlb_loader::DataPlane;

use crate::metrics::Metrics;
use crate::model::{Family, Frontend, ServiceDesired, ServicePort};

/// Every (frontend, backend) pair of the UDP Service ports of `old` that
/// `new` no longer has: a backend no longer listed by its port's
/// EndpointSlices (draining ones are still listed: their sockets stay, as
/// their flows do), a frontend gone, a port or Service deleted. Services
/// whose desired state is the same (`Arc` or content) in both are skipped.
pub fn removed_pairs(
    old: &BTreeMap<String, Arc<ServiceDesired>>,
    new: &BTreeMap<String, Arc<ServiceDesired>>,
) -> Vec<TermPair> {
    let mut out = BTreeSet::new();
    for (name, o) in old {
        let n = new.get(name);
        if n.is_some_and(|n| Arc::ptr_eq(n, o) || n == o) {
            continue;
        }
        for op in &o.ports {
            let was = pairs(op);
            if was.is_empty() {
                continue;
            }
            let now = n
                .and_then(|n| n.ports.iter().find(|p| p.name == op.name))
                .map(pairs)
                .unwrap_or_default();
            out.extend(was.difference(&now).copied());
        }
    }
    out.into_iter().collect()
}

/// The pairs of `dialled` (frontend as a socket dialled it, backend: the
/// sockets the hooks balanced, from `sock_rnat`) whose backend the UDP
/// frontend no longer lists in `services`, or whose frontend is gone: what
/// changed while no agent ran. The frontend is resolved as the hooks do: by
/// address, else as the NodePort of its port. Each pair names the frontend
/// by address, which the iterator matches first whatever its kind.
pub fn stale_pairs(
    dialled: &[(SocketAddrV4, SocketAddrV4)],
    services: &BTreeMap<String, Arc<ServiceDesired>>,
) -> Vec<TermPair> {
    let mut listed: HashMap<(Option<Ipv4Addr>, u16), BTreeSet<SocketAddrV4>> = HashMap::new();
    for p in services.values().flat_map(|s| s.ports.iter()) {
        for (fe, port) in udp_frontends4(p) {
            listed.entry((fe, port)).or_default().extend(backends4(p));
        }
    }
    dialled
        .iter()
        .filter(|(fe, be)| {
            let bes = listed
                .get(&(Some(*fe.ip()), fe.port()))
                .or_else(|| listed.get(&(None, fe.port())));
            !bes.is_some_and(|s| s.contains(be))
        })
        .map(|(fe, be)| TermPair {
            frontend: Some(*fe.ip()),
            port: fe.port(),
            backend: *be,
        })
        .collect()
}

/// Every UDP (frontend, backend) pair of the IPv6 Service ports as synced:
/// each IPv6 UDP frontend as the socket hooks resolve it (`None`: the
/// NodePort on the node's IPv6 addresses; an externalTrafficPolicy Local
/// frontend's internal entry is the same frontend) with each IPv6 backend of
/// its port; draining backends included (their sockets stay).
pub type Pairs6 = BTreeSet<TermPair6>;

/// The [`Pairs6`] of `services`: each IPv6 UDP frontend with each IPv6
/// backend its port lists.
pub fn pairs6(services: &BTreeMap<String, Arc<ServiceDesired>>) -> Pairs6 {
    let mut out = Pairs6::new();
    for p in services.values().flat_map(|s| s.ports.iter()) {
        let bes: Vec<SocketAddrV6> = p
            .backends
            .iter()
            .filter_map(|b| match b.addr {
                SocketAddr::V6(a) => Some(a),
                SocketAddr::V4(_) => None,
            })
            .collect();
        for f in p
            .frontends
            .iter()
            .filter(|f| f.key.proto == Proto::Udp && f.key.family == Family::V6)
        {
            let frontend = match f.key.addr {
                None => None,
                Some(IpAddr::V6(a)) => Some(a),
                Some(IpAddr::V4(_)) => continue,
            };
            out.extend(bes.iter().map(|&backend| TermPair6 {
                frontend,
                port: f.key.port,
                backend,
            }));
        }
    }
    out
}

/// The pairs of `old` that `new` no longer has.
pub fn removed_pairs6(old: &Pairs6, new: &Pairs6) -> Vec<TermPair6> {
    old.difference(new).copied().collect()
}

/// [`stale_pairs`] for IPv6: the pairs of `dialled` (`sock_rnat6`) that
/// `now` does not hold, the frontend resolved by address, else as the
/// NodePort of its port.
pub fn stale_pairs6(dialled: &[(SocketAddrV6, SocketAddrV6)], now: &Pairs6) -> Vec<TermPair6> {
    let mut listed: HashMap<(Option<Ipv6Addr>, u16), BTreeSet<SocketAddrV6>> = HashMap::new();
    for p in now {
        listed
            .entry((p.frontend, p.port))
            .or_default()
            .insert(p.backend);
    }
    dialled
        .iter()
        .filter(|(fe, be)| {
            let bes = listed
                .get(&(Some(*fe.ip()), fe.port()))
                .or_else(|| listed.get(&(None, fe.port())));
            !bes.is_some_and(|s| s.contains(be))
        })
        .map(|(fe, be)| TermPair6 {
            frontend: Some(*fe.ip()),
            port: fe.port(),
            backend: *be,
        })
        .collect()
}

/// The (frontend, backend) pairs a node process's UDP socket can be
/// balanced to through `p`: each UDP frontend as the socket hooks resolve
/// it (an externalTrafficPolicy Local frontend's internal entry is the same
/// frontend to them) with each backend the port lists.
fn pairs(p: &ServicePort) -> BTreeSet<TermPair> {
    let fes: BTreeSet<_> = udp_frontends4(p).collect();
    fes.iter()
        .flat_map(|&(frontend, port)| {
            backends4(p).map(move |backend| TermPair {
                frontend,
                port,
                backend,
            })
        })
        .collect()
}

/// The IPv4 UDP frontends of `p` as `(address, port)` (`None`: the
/// NodePort): the socket iterator terminates IPv4 sockets only.
fn udp_frontends4(p: &ServicePort) -> impl Iterator<Item = (Option<Ipv4Addr>, u16)> + '_ {
    p.frontends
        .iter()
        .filter(|f: &&Frontend| f.key.proto == Proto::Udp && f.key.family == Family::V4)
        .filter_map(|f| match f.key.addr {
            None => Some((None, f.key.port)),
            Some(IpAddr::V4(a)) => Some((Some(a), f.key.port)),
            Some(IpAddr::V6(_)) => None,
        })
}

/// The IPv4 backends `p` lists.
fn backends4(p: &ServicePort) -> impl Iterator<Item = SocketAddrV4> + '_ {
    p.backends.iter().filter_map(|b| match b.addr {
        SocketAddr::V4(a) => Some(a),
        SocketAddr::V6(_) => None,
    })
}

/// The agent's socket iterator, and the Services as last synced.
pub struct Terminator {
    term: Option<SockTerm>,
    applied: BTreeMap<String, Arc<ServiceDesired>>,
    /// The IPv6 pairs as last synced ([`Terminator::synced_dual`]).
    applied6: Pairs6,
    /// The sockets of an earlier run (`sock_rnat`) were checked (at the
    /// first sync).
    swept: bool,
    /// The same for the IPv6 sockets (`sock_rnat6`), at the first
    /// [`Terminator::synced_dual`].
    swept6: bool,
    /// A run failed (warned once).
    run_failed: bool,
}

impl Terminator {
    /// Loads the iterator beside `dp`. A kernel that cannot load it (no
    /// `bpf_sock_destroy` before 6.5, no UDP socket iterator) gets one
    /// warning and runs without termination.
    pub fn load(dp: &DataPlane, metrics: &Metrics) -> Self {
        let term = match SockTerm::load(dp) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(
                    "UDP sockets of node processes will not be terminated when their backend \
                     leaves (a connected socket keeps sending to the old backend until the \
                     process reconnects): {e}"
                );
                None
            }
        };
        metrics.set_socket_termination(term.is_some());
        Terminator {
            term,
            applied: BTreeMap::new(),
            applied6: Pairs6::new(),
            swept: false,
            swept6: false,
            run_failed: false,
        }
    }

    /// No termination (`--no-socket-lb`: no socket was balanced).
    pub fn off() -> Self {
        Terminator {
            term: None,
            applied: BTreeMap::new(),
            applied6: Pairs6::new(),
            swept: true,
            swept6: true,
            run_failed: false,
        }
    }

    /// The data plane's maps were replaced by larger ones
    /// ([`xlb_loader::grow`]): the iterator is loaded again over them, so it
    /// reads the `services` and `sock_rnat` the hooks now use. A failure
    /// turns termination off (logged, in the gauge) rather than leaving it
    /// on the old maps.
    pub fn maps_replaced(&mut self, dp: &DataPlane, metrics: &Metrics) {
        if self.term.is_none() {
            return;
        }
        self.term = match SockTerm::load(dp) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!("socket termination off: reloading it over the grown maps: {e}");
                None
            }
        };
        metrics.set_socket_termination(self.term.is_some());
    }

    /// After a sync that applied `services`: terminates the sockets of the
    /// pairs it took away, and at the first sync those of sockets balanced
    /// before the agent started that `services` no longer backs (one log
    /// line per sync, the count in `metrics`).
    /// Runs in the calling thread's network namespace (the agent's). The
    /// IPv6 pairs stay as last given to [`Terminator::synced_dual`].
    pub fn synced(&mut self, services: &BTreeMap<String, Arc<ServiceDesired>>, metrics: &Metrics) {
        let now6 = self.applied6.clone();
        self.sync(services, None, &now6, metrics);
    }

    /// [`Terminator::synced`] with the IPv6 Service ports' UDP pairs as
    /// now synced (`udp6`): the pairs that left since the last call are
    /// terminated in the same walk, and at the first call the IPv6 sockets
    /// of an earlier run that `udp6` no longer backs.
    pub fn synced_dual(
        &mut self,
        services: &BTreeMap<String, Arc<ServiceDesired>>,
        udp6: &Pairs6,
        metrics: &Metrics,
    ) {
        let old6 = std::mem::replace(&mut self.applied6, udp6.clone());
        self.sync(services, Some(&old6), udp6, metrics);
    }

    fn sync(
        &mut self,
        services: &BTreeMap<String, Arc<ServiceDesired>>,
        old6: Option<&Pairs6>,
        now6: &Pairs6,
        metrics: &Metrics,
    ) {
        let Some(term) = &self.term else {
            return;
        };
        let old = std::mem::replace(&mut self.applied, services.clone());
        let mut pairs = removed_pairs(&old, services);
        let mut pairs6 = old6.map(|o| removed_pairs6(o, now6)).unwrap_or_default();
        if !self.swept {
            // The first sync: what the hooks balanced before this agent
            // started, against the Services now.
            self.swept = true;
            match term.dialled() {
                Ok(d) => pairs.extend(stale_pairs(&d, services)),
                Err(e) => tracing::warn!("reading sock_rnat for sockets of an earlier run: {e}"),
            }
        }
        if !self.swept6 && old6.is_some() {
            self.swept6 = true;
            match term.dialled6() {
                Ok(d) => pairs6.extend(stale_pairs6(&d, now6)),
                Err(e) => tracing::warn!("reading sock_rnat6 for sockets of an earlier run: {e}"),
            }
        }
        if pairs.is_empty() && pairs6.is_empty() {
            return;
        }
        match term.run_both(&pairs, &pairs6) {
            Ok(rep) => {
                let n = rep.terminated.len() + rep.terminated6.len();
                metrics.count_sockets_terminated(n as u64);
                if n > 0 {
                    tracing::info!(
                        sockets = n,
                        pairs = pairs.len() + pairs6.len(),
                        "terminated node processes' UDP sockets whose backend left their Service"
                    );
                } else {
                    tracing::debug!(
                        pairs = pairs.len() + pairs6.len(),
                        "no UDP socket to terminate"
                    );
                }
                let failed = rep
                    .failed
                    .iter()
                    .map(|(t, e)| (t.frontend.to_string(), t.backend.to_string(), *e))
                    .chain(
                        rep.failed6
                            .iter()
                            .map(|(t, e)| (t.frontend.to_string(), t.backend.to_string(), *e)),
                    )
                    .collect::<Vec<_>>();
                if let Some((fe, be, errno)) = failed.first() {
                    tracing::warn!(
                        failed = failed.len(),
                        "bpf_sock_destroy refused to terminate UDP sockets, e.g. {fe} -> {be}: {}",
                        std::io::Error::from_raw_os_error(*errno)
                    );
                }
            }
            // Once as a warning: a run that cannot work (say, an iterator
            // this kernel refuses) would otherwise warn at every change.
            Err(e) if !self.run_failed => {
                self.run_failed = true;
                tracing::warn!(
                    "terminating UDP sockets of removed backends: {e} (later failures are \
                     logged at debug level)"
                );
            }
            Err(e) => tracing::debug!("terminating UDP sockets of removed backends: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Backend, Frontend, FrontendKey};
    use xlb_bpf::Kind;

    fn be(last: u8) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, last), 5353)
    }

    fn fe(addr: Option<Ipv4Addr>, port: u16, proto: Proto, internal: bool) -> Frontend {
        Frontend {
            key: FrontendKey {
                addr: addr.map(IpAddr::V4),
                port,
                proto,
                internal,
                family: Family::V4,
            },
            kind: if addr.is_some() {
                Kind::ClusterIp
            } else {
                Kind::NodePort
            },
            flags: 0,
            affinity_timeout: 0,
            table_size: 0,
            backends: Vec::new(),
            n_local: 0,
        }
    }

    fn port(name: &str, fes: Vec<Frontend>, bes: &[u8]) -> ServicePort {
        ServicePort {
            name: name.into(),
            frontends: fes,
            backends: bes
                .iter()
                .map(|&b| Backend {
                    addr: SocketAddr::V4(be(b)),
                    node: None,
                    terminating: false,
                    draining: false,
                    host_network: false,
                })
                .collect(),
            src_ranges: Vec::new(),
        }
    }

    fn svc(ports: Vec<ServicePort>) -> Arc<ServiceDesired> {
        Arc::new(ServiceDesired {
            ports,
            health_check_node_port: None,
            local_ready_endpoints: 0,
        })
    }

    const CIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

    /// `pairs6`: each IPv6 UDP frontend with each IPv6 backend of its port;
    /// IPv4 frontends and backends, TCP, and the internal twin add nothing.
    #[test]
    fn pairs6_are_the_ipv6_udp_frontends_with_their_ipv6_backends() {
        let cip6: Ipv6Addr = "fd00:10:96::10".parse().unwrap();
        let fe6 = |addr: Option<Ipv6Addr>, port, proto, internal| Frontend {
            key: FrontendKey {
                addr: addr.map(IpAddr::V6),
                family: Family::V6,
                ..fe(None, port, proto, internal).key
            },
            ..fe(None, port, proto, internal)
        };
        let b6 = |a: &str| Backend {
            addr: SocketAddr::V6(SocketAddrV6::new(a.parse().unwrap(), 5353, 0, 0)),
            node: None,
            terminating: false,
            draining: true,
            host_network: false,
        };
        let mut udp = port(
            "kube-system/dns:53/UDP",
            vec![
                fe(Some(CIP), 53, Proto::Udp, false),
                fe6(Some(cip6), 53, Proto::Udp, false),
                fe6(None, 30053, Proto::Udp, false),
                fe6(None, 30053, Proto::Udp, true),
            ],
            &[1],
        );
        udp.backends.push(b6("fd00:10:244:1::2"));
        udp.backends.push(b6("fd00:10:244:2::2"));
        let mut tcp = port(
            "kube-system/dns:53/TCP",
            vec![fe6(Some(cip6), 53, Proto::Tcp, false)],
            &[],
        );
        tcp.backends.push(b6("fd00:10:244:1::3"));
        let services = BTreeMap::from([("kube-system/dns".to_owned(), svc(vec![udp, tcp]))]);
        let got = pairs6(&services);
        let p6 = |fe: Option<Ipv6Addr>, port, be: &str| TermPair6 {
            frontend: fe,
            port,
            backend: SocketAddrV6::new(be.parse().unwrap(), 5353, 0, 0),
        };
        let want: Pairs6 = [
            p6(Some(cip6), 53, "fd00:10:244:1::2"),
            p6(Some(cip6), 53, "fd00:10:244:2::2"),
            p6(None, 30053, "fd00:10:244:1::2"),
            p6(None, 30053, "fd00:10:244:2::2"),
        ]
        .into();
        assert_eq!(got, want);
    }

    fn dns(bes: &[u8]) -> Arc<ServiceDesired> {
        svc(vec![
            port(
                "kube-system/dns:53/UDP",
                vec![
                    fe(Some(CIP), 53, Proto::Udp, false),
                    fe(None, 30053, Proto::Udp, false),
                    fe(None, 30053, Proto::Udp, true),
                ],
                bes,
            ),
            port(
                "kube-system/dns:53/TCP",
                vec![fe(Some(CIP), 53, Proto::Tcp, false)],
                bes,
            ),
        ])
    }

    fn pair(frontend: Option<Ipv4Addr>, port: u16, b: u8) -> TermPair {
        TermPair {
            frontend,
            port,
            backend: be(b),
        }
    }

    #[test]
    fn a_backend_that_leaves_a_udp_port_is_paired_with_each_of_its_frontends() {
        let old = BTreeMap::from([("kube-system/dns".to_string(), dns(&[1, 2]))]);
        let new = BTreeMap::from([("kube-system/dns".to_string(), dns(&[2, 3]))]);
        // UDP only; the eTP-Local internal entry is the NodePort again.
        assert_eq!(
            removed_pairs(&old, &new),
            vec![pair(None, 30053, 1), pair(Some(CIP), 53, 1)]
        );
        // Nothing left: the Service deleted takes every pair.
        assert_eq!(removed_pairs(&old, &BTreeMap::new()).len(), 4);
        // Unchanged (same Arc, or equal content): nothing.
        assert!(removed_pairs(&old, &old.clone()).is_empty());
        let same = BTreeMap::from([("kube-system/dns".to_string(), dns(&[1, 2]))]);
        assert!(removed_pairs(&old, &same).is_empty());
        // Added backends take nothing away.
        let more = BTreeMap::from([("kube-system/dns".to_string(), dns(&[1, 2, 3]))]);
        assert!(removed_pairs(&new, &more).is_empty());
    }

    #[test]
    fn sockets_of_an_earlier_run_are_checked_against_the_services_now() {
        let now = BTreeMap::from([("kube-system/dns".to_string(), dns(&[2]))]);
        let node = Ipv4Addr::new(198, 18, 0, 2);
        let dialled = [
            (SocketAddrV4::new(CIP, 53), be(1)),     // left the ClusterIP
            (SocketAddrV4::new(CIP, 53), be(2)),     // still there
            (SocketAddrV4::new(node, 30053), be(2)), // NodePort, still there
            (SocketAddrV4::new(node, 30053), be(3)), // NodePort, left
            (SocketAddrV4::new(Ipv4Addr::new(10, 96, 9, 9), 53), be(2)), // Service gone
        ];
        assert_eq!(
            stale_pairs(&dialled, &now),
            vec![
                pair(Some(CIP), 53, 1),
                pair(Some(node), 30053, 3),
                pair(Some(Ipv4Addr::new(10, 96, 9, 9)), 53, 2),
            ]
        );
        // The TCP port of the same address is no UDP frontend.
        let tcp_only = BTreeMap::from([(
            "x/y".to_string(),
            svc(vec![port(
                "x/y:53/TCP",
                vec![fe(Some(CIP), 53, Proto::Tcp, false)],
                &[2],
            )]),
        )]);
        assert_eq!(
            stale_pairs(&dialled[1..2], &tcp_only),
            vec![pair(Some(CIP), 53, 2)]
        );
    }

    #[test]
    fn a_backend_that_still_backs_another_service_is_paired_only_with_the_one_it_left() {
        let other = |bes: &[u8]| {
            svc(vec![port(
                "default/other:53/UDP",
                vec![fe(
                    Some(Ipv4Addr::new(10, 96, 0, 11)),
                    53,
                    Proto::Udp,
                    false,
                )],
                bes,
            )])
        };
        let shared = other(&[1]);
        let old = BTreeMap::from([
            ("default/other".to_string(), shared.clone()),
            ("kube-system/dns".to_string(), dns(&[1])),
        ]);
        let new = BTreeMap::from([
            ("default/other".to_string(), shared),
            ("kube-system/dns".to_string(), dns(&[2])),
        ]);
        assert_eq!(
            removed_pairs(&old, &new),
            vec![pair(None, 30053, 1), pair(Some(CIP), 53, 1)]
        );
        // A frontend removed (the NodePort) keeps the port's backends but
        // takes its own pairs.
        let no_np = svc(vec![port(
            "kube-system/dns:53/UDP",
            vec![fe(Some(CIP), 53, Proto::Udp, false)],
            &[1],
        )]);
        let new = BTreeMap::from([("kube-system/dns".to_string(), no_np)]);
        let old = BTreeMap::from([("kube-system/dns".to_string(), dns(&[1]))]);
        assert_eq!(removed_pairs(&old, &new), vec![pair(None, 30053, 1)]);
    }

    fn p6(fe: Option<&str>, port: u16, be: &str) -> TermPair6 {
        TermPair6 {
            frontend: fe.map(|f| f.parse().unwrap()),
            port,
            backend: SocketAddrV6::new(be.parse().unwrap(), 5353, 0, 0),
        }
    }

    #[test]
    fn ipv6_pairs_that_left_and_ipv6_sockets_of_an_earlier_run() {
        let old: Pairs6 = [
            p6(Some("fd00:96::a"), 53, "fd00:10::1"),
            p6(Some("fd00:96::a"), 53, "fd00:10::2"),
            p6(None, 30053, "fd00:10::1"),
        ]
        .into();
        let new: Pairs6 = [
            p6(Some("fd00:96::a"), 53, "fd00:10::2"),
            p6(None, 30053, "fd00:10::2"),
        ]
        .into();
        assert_eq!(
            removed_pairs6(&old, &new),
            vec![
                p6(None, 30053, "fd00:10::1"),
                p6(Some("fd00:96::a"), 53, "fd00:10::1"),
            ]
        );
        // Added pairs take nothing away.
        let more: Pairs6 = old.union(&new).copied().collect();
        assert!(removed_pairs6(&old, &more).is_empty());
        let sa6 = |a: &str, port: u16| SocketAddrV6::new(a.parse().unwrap(), port, 0, 0);
        let dialled = [
            (sa6("fd00:96::a", 53), sa6("fd00:10::1", 5353)), // left the ClusterIP
            (sa6("fd00:96::a", 53), sa6("fd00:10::2", 5353)), // still there
            (sa6("2001:db8::2", 30053), sa6("fd00:10::2", 5353)), // NodePort, still there
            (sa6("2001:db8::2", 30053), sa6("fd00:10::1", 5353)), // NodePort, left
            (sa6("fd00:96::b", 53), sa6("fd00:10::2", 5353)), // Service gone
        ];
        assert_eq!(
            stale_pairs6(&dialled, &new),
            vec![
                p6(Some("fd00:96::a"), 53, "fd00:10::1"),
                p6(Some("2001:db8::2"), 30053, "fd00:10::1"),
                p6(Some("fd00:96::b"), 53, "fd00:10::2"),
            ]
        );
    }
}
