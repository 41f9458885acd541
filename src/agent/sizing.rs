//! # Map sizes: set by flags, or following the desired state
//!
//! Each growable map (`xlb_loader::grow::GROWABLE_MAPS`) has a size that is
//! either *fixed* by a flag (`--max-frontends`, `--max-backends`,
//! `--maglev-slots`, `--affinity-entries`, `--max-src-ranges`, each with its
//! `XLB_*` environment variable) or *follows the desired state* ([`plan`]).
//! The flags of the per-family maps size both families' maps, each on its
//! own: `--max-frontends` sizes `services` and `services6`,
//! `--max-src-ranges` `src_ranges` and `src_ranges6`, `--affinity-entries`
//! `affinity` and `affinity6`.
//!
//! - what the desired state needs ([`need`]): a `services` entry per IPv4
//!   frontend and a `services6` entry per IPv6 one, a backend id per
//!   (Service port, endpoint) plus id 0 (both families: one id space,
//!   `backends6` is sized with `backends`), the Maglev slots of every table
//!   (one per distinct backend set of a port), a `src_ranges` entry per IPv4
//!   source range and a `src_ranges6` entry per IPv6 one;
//! - a map that follows is grown when the need passes [`FILL`] of its size
//!   (room for a change in flight: a new table is written before the old one
//!   is freed, and for gaps in the slot array), or when a sync found it full
//!   anyway (fragmentation): to [`HEADROOM`] x the need (x its size when it
//!   was found full), never below the compiled-in default, never above
//!   [`MAX_ENTRIES`];
//! - maps never shrink (a smaller flag than a pinned map keeps the map);
//! - `affinity` holds one entry per client and Service with session
//!   affinity, which the desired state does not tell: it is its flag's
//!   size (or the default), and so is `affinity6`, like connection tracking
//!   (`--ct-entries`, `--ct6-entries`), which is never grown at all.
//!
//! Whatever a fixed size cannot hold is reported as not programmed
//! ([`crate::unprogrammed`]).

use xlb_bpf::consts::{
    XLB_AFFINITY6_ENTRIES, XLB_AFFINITY_ENTRIES, XLB_MAGLEV_SLOTS, XLB_MAX_BACKENDS,
    XLB_MAX_FRONTENDS, XLB_MAX_FRONTENDS6, XLB_SRC_RANGES,
};
use xlb_loader::grow::Sizes;

use crate::model::{Desired, Family};

/// A following map's size after growing, as a multiple of the need.
pub const HEADROOM: u64 = 2;
/// A following map grows when the need passes this share of its size.
pub const FILL: (u64, u64) = (3, 4);
/// Largest size the agent grows a map to (2^28 Maglev slots are 1 GiB).
pub const MAX_ENTRIES: u32 = 1 << 28;

/// What the desired state needs of each growable map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Need {
    pub services: u64,
    pub backends: u64,
    pub maglev: u64,
    pub src_ranges: u64,
    pub services6: u64,
    pub src_ranges6: u64,
}

/// What `d` needs.
pub fn need(d: &Desired) -> Need {
    let mut n = Need {
        // backend id 0 is never used
        backends: 1,
        ..Default::default()
    };
    for p in d.ports() {
        let v4 = p.frontends.iter().filter(|f| f.key.family == Family::V4);
        let v4 = v4.count() as u64;
        n.services += v4;
        n.services6 += p.frontends.len() as u64 - v4;
        n.backends += p.backends.len() as u64;
        let r4 = p.src_ranges.iter().filter(|r| r.0.is_ipv4()).count() as u64;
        n.src_ranges += r4;
        n.src_ranges6 += p.src_ranges.len() as u64 - r4;
        let mut groups: Vec<(&[std::net::SocketAddr], u32)> = Vec::new();
        for f in &p.frontends {
            if f.table_size > 0 && !groups.contains(&(&f.backends[..], f.table_size)) {
                groups.push((&f.backends[..], f.table_size));
            }
        }
        n.maglev += groups.iter().map(|(_, s)| u64::from(*s)).sum::<u64>();
    }
    n
}

/// Sizes set by flags (`None`: the map follows the desired state). Each
/// per-family size is both families' maps' (`services` also `services6`,
/// `affinity` also `affinity6`, `src_ranges` also `src_ranges6`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fixed {
    pub services: Option<u32>,
    pub backends: Option<u32>,
    pub maglev: Option<u32>,
    pub affinity: Option<u32>,
    pub src_ranges: Option<u32>,
}

/// The compiled-in sizes: the floor of a following map.
pub const DEFAULTS: Sizes = Sizes {
    services: XLB_MAX_FRONTENDS,
    backends: XLB_MAX_BACKENDS,
    maglev: XLB_MAGLEV_SLOTS,
    affinity: XLB_AFFINITY_ENTRIES,
    src_ranges: XLB_SRC_RANGES,
    services6: XLB_MAX_FRONTENDS6,
    affinity6: XLB_AFFINITY6_ENTRIES,
    src_ranges6: XLB_SRC_RANGES,
};

/// Maps a sync found full (their name in `xlb_loader::grow::GROWABLE_MAPS`).
pub type FullMaps<'a> = &'a [&'a str];

/// The sizes the maps should have: `cur` where they hold `need` with room
/// to spare, larger where not (see the module docs).
pub fn plan(need: &Need, cur: &Sizes, fixed: &Fixed, full: FullMaps<'_>) -> Sizes {
    let follow = |name: &str, need: u64, cur: u32, fixed: Option<u32>, floor: u32| -> u32 {
        if let Some(f) = fixed {
            return f.max(cur);
        }
        let found_full = full.contains(&name);
        if !found_full && need * FILL.1 <= u64::from(cur) * FILL.0 {
            return cur;
        }
        let base = if found_full {
            need.max(u64::from(cur))
        } else {
            need
        };
        let want = (base * HEADROOM)
            .max(u64::from(floor))
            .min(u64::from(MAX_ENTRIES)) as u32;
        want.max(cur)
    };
    Sizes {
        services: follow(
            "services",
            need.services,
            cur.services,
            fixed.services,
            DEFAULTS.services,
        ),
        backends: follow(
            "backends",
            need.backends,
            cur.backends,
            fixed.backends,
            DEFAULTS.backends,
        ),
        maglev: follow(
            "maglev",
            need.maglev,
            cur.maglev,
            fixed.maglev,
            DEFAULTS.maglev,
        ),
        affinity: fixed.affinity.unwrap_or(cur.affinity).max(cur.affinity),
        src_ranges: follow(
            "src_ranges",
            need.src_ranges,
            cur.src_ranges,
            fixed.src_ranges,
            DEFAULTS.src_ranges,
        ),
        services6: follow(
            "services6",
            need.services6,
            cur.services6,
            fixed.services,
            DEFAULTS.services6,
        ),
        affinity6: fixed.affinity.unwrap_or(cur.affinity6).max(cur.affinity6),
        src_ranges6: follow(
            "src_ranges6",
            need.src_ranges6,
            cur.src_ranges6,
            fixed.src_ranges,
            DEFAULTS.src_ranges6,
        ),
    }
}

/// The maps a sync report found full (from its failure reasons).
pub fn full_maps(list: &[crate::unprogrammed::Unprogrammed]) -> Vec<&'static str> {
    let mut out = Vec::new();
    for u in list {
        let m = match u.reason.as_str() {
            "maglev_full" => "maglev",
            "backends_full" => "backends",
            "services_full" => "services",
            "src_ranges_full" => "src_ranges",
            "services6_full" => "services6",
            "src_ranges6_full" => "src_ranges6",
            _ => continue,
        };
        if !out.contains(&m) {
            out.push(m);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cur() -> Sizes {
        DEFAULTS
    }

    #[test]
    fn a_following_map_grows_past_three_quarters_to_twice_the_need() {
        let none = Fixed::default();
        let small = Need {
            services: 100,
            backends: 1001,
            maglev: 100 * 1009,
            src_ranges: 0,
            ..Default::default()
        };
        assert_eq!(
            plan(&small, &cur(), &none, &[]),
            cur(),
            "the defaults hold it"
        );
        // 10,000 Services x 10 endpoints: 10,090,000 slots > 8 Mi.
        let big = Need {
            services: 10_000,
            backends: 100_001,
            maglev: 10_000 * 1009,
            src_ranges: 0,
            ..Default::default()
        };
        let p = plan(&big, &cur(), &none, &[]);
        assert_eq!(p.maglev, 2 * 10_000 * 1009);
        assert_eq!((p.services, p.backends), (cur().services, cur().backends));
        // Exactly at three quarters: no growth; one past: growth.
        let at = Need {
            maglev: u64::from(cur().maglev) * 3 / 4,
            ..small
        };
        assert_eq!(plan(&at, &cur(), &none, &[]).maglev, cur().maglev);
        let past = Need {
            maglev: at.maglev + 1,
            ..small
        };
        assert_eq!(
            plan(&past, &cur(), &none, &[]).maglev,
            2 * (at.maglev as u32 + 1)
        );
        // Found full (fragmentation) below three quarters: twice its size.
        assert_eq!(
            plan(&small, &cur(), &none, &["maglev"]).maglev,
            2 * cur().maglev
        );
        // Never above the ceiling, never below the current size.
        let huge = Need {
            maglev: u64::from(MAX_ENTRIES),
            ..small
        };
        assert_eq!(plan(&huge, &cur(), &none, &[]).maglev, MAX_ENTRIES);
        let grown = Sizes {
            maglev: 1 << 25,
            ..cur()
        };
        assert_eq!(plan(&small, &grown, &none, &[]).maglev, 1 << 25);
    }

    #[test]
    fn a_fixed_size_is_kept_whatever_the_need() {
        let fixed = Fixed {
            maglev: Some(5000),
            services: Some(16),
            affinity: Some(1 << 20),
            ..Default::default()
        };
        let small_cur = Sizes {
            maglev: 5000,
            services: 16,
            ..cur()
        };
        let big = Need {
            services: 10_000,
            backends: 1,
            maglev: 10_000_000,
            src_ranges: 0,
            ..Default::default()
        };
        let p = plan(&big, &small_cur, &fixed, &["maglev", "services"]);
        assert_eq!((p.maglev, p.services), (5000, 16));
        assert_eq!(p.affinity, 1 << 20, "affinity follows its flag only");
        // A flag larger than the map: grown to it; smaller: the map stays.
        assert_eq!(
            plan(&Need::default(), &cur(), &fixed, &[]).services,
            cur().services
        );
        let bigger = Fixed {
            maglev: Some(1 << 24),
            ..Default::default()
        };
        assert_eq!(plan(&Need::default(), &cur(), &bigger, &[]).maglev, 1 << 24);
    }

    #[test]
    fn ipv6_maps_follow_their_own_need_and_the_same_flags() {
        let none = Fixed::default();
        // More IPv6 frontends than services6 holds, few IPv4 ones: only
        // services6 grows, to twice its need.
        let v6 = Need {
            services: 10,
            backends: 1,
            services6: u64::from(DEFAULTS.services6) + 1,
            src_ranges6: u64::from(DEFAULTS.src_ranges6),
            ..Default::default()
        };
        let p = plan(&v6, &cur(), &none, &[]);
        assert_eq!(p.services6, 2 * (DEFAULTS.services6 + 1));
        assert_eq!(p.src_ranges6, 2 * DEFAULTS.src_ranges6);
        assert_eq!(
            (p.services, p.src_ranges, p.affinity6),
            (cur().services, cur().src_ranges, cur().affinity6)
        );
        // Found full below three quarters: twice its size, alone.
        let p = plan(&Need::default(), &cur(), &none, &["services6"]);
        assert_eq!(p.services6, 2 * cur().services6);
        assert_eq!(p.services, cur().services);
        // The flags fix both families' maps.
        let fixed = Fixed {
            services: Some(1 << 20),
            affinity: Some(1 << 19),
            src_ranges: Some(16),
            ..Default::default()
        };
        let p = plan(&v6, &cur(), &fixed, &["services6", "src_ranges6"]);
        assert_eq!((p.services, p.services6), (1 << 20, 1 << 20));
        assert_eq!((p.affinity, p.affinity6), (1 << 19, 1 << 19));
        // smaller than the maps: they stay
        assert_eq!(
            (p.src_ranges, p.src_ranges6),
            (cur().src_ranges, cur().src_ranges6)
        );
        let reasons = [
            ("services6_full", "services6"),
            ("src_ranges6_full", "src_ranges6"),
        ];
        for (reason, map) in reasons {
            let u = crate::unprogrammed::Unprogrammed {
                what: "default/web:80/TCP".into(),
                reason: reason.into(),
                why: String::new(),
            };
            assert_eq!(full_maps(&[u]), vec![map]);
        }
    }

    #[test]
    fn need_counts_ipv4_frontends_and_ranges_and_backends_of_both_families() {
        use std::sync::Arc;
        let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.10", "fd00:96::10"],
                     "loadBalancerSourceRanges": ["192.0.2.0/24", "2001:db8::/32"],
                     "ports": [{"port": 80, "nodePort": 30080}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.1"}, {"ip": "2001:db8::1"}]}}}))
        .unwrap();
        let sl = |fam: &str, addr: &str| -> k8s_openapi::api::discovery::v1::EndpointSlice {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("web-{fam}"), "namespace": "default",
                             "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": fam, "ports": [{"port": 8080}],
                "endpoints": [{"addresses": [addr]}]}))
            .unwrap()
        };
        let d = crate::model::build(
            &crate::model::Snapshot {
                services: vec![Arc::new(svc)],
                slices: vec![
                    Arc::new(sl("IPv4", "10.244.0.5").into()),
                    Arc::new(sl("IPv6", "fd00:244::5").into()),
                ],
                nodes: Vec::new(),
            },
            &Default::default(),
        );
        let n = need(&d);
        // ClusterIP, NodePort, LoadBalancer of each family (the IPv6 ones in
        // services6); both backends and id 0; one range per family.
        assert_eq!(d.frontends().count(), 6);
        assert_eq!((n.services, n.backends, n.src_ranges), (3, 3, 1));
        assert_eq!((n.services6, n.src_ranges6), (3, 1));
    }
}
