//! Value types of `xlb agent` flags that clap does not have.

use std::net::SocketAddr;

/// Sizes of the maps that grow with the cluster (docs/agent.md, "Map
/// sizes"). A size not given follows the desired state: the map is grown,
/// without a gap, to twice what it must hold when that passes three
/// quarters of it; a size given is kept (never shrunk below a pinned map),
/// and whatever does not fit is reported as not programmed. The frontend,
/// affinity and source-range sizes are both families' maps' (`services`
/// and `services6`, ...), each map on its own.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MapSizeArgs {
    /// `services` entries (one per IPv4 frontend: ClusterIP, NodePort,
    /// external and LoadBalancer address, per port), and as many `services6`
    /// entries (IPv6 frontends). Default: each follows the Services.
    #[arg(long, env = "XLB_MAX_FRONTENDS", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=(1 << 28)))]
    pub max_frontends: Option<u32>,
    /// Backend ids (one per Service port and endpoint), also the size of
    /// `backend_stats`. Default: follows the EndpointSlices.
    #[arg(long, env = "XLB_MAX_BACKENDS", value_name = "N",
          value_parser = clap::value_parser!(u32).range(2..=(1 << 28)))]
    pub max_backends: Option<u32>,
    /// Maglev slots (every Service port's table: 251 to 65537 slots each,
    /// 1009 for 10 endpoints). Default: follows the Services.
    #[arg(long, env = "XLB_MAGLEV_SLOTS", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=(1 << 28)))]
    pub maglev_slots: Option<u32>,
    /// Session-affinity entries (one per client and Service with
    /// sessionAffinity: ClientIP), of `affinity` and of `affinity6` (IPv6
    /// clients); default 262144 and 65536, or the pinned maps'.
    #[arg(long, env = "XLB_AFFINITY_ENTRIES", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=(1 << 28)))]
    pub affinity_entries: Option<u32>,
    /// loadBalancerSourceRanges prefixes over all Services, of each family
    /// (`src_ranges`, `src_ranges6`). Default: each follows the Services.
    #[arg(long, env = "XLB_MAX_SRC_RANGES", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=(1 << 28)))]
    pub max_src_ranges: Option<u32>,
}

impl MapSizeArgs {
    /// The sizes fixed by these flags.
    pub fn fixed(&self) -> super::sizing::Fixed {
        super::sizing::Fixed {
            services: self.max_frontends,
            backends: self.max_backends,
            maglev: self.maglev_slots,
            affinity: self.affinity_entries,
            src_ranges: self.max_src_ranges,
        }
    }
}
/// A listen address, or none ('').
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptAddr(pub Option<SocketAddr>);

pub(crate) fn parse_opt_addr(s: &str) -> Result<OptAddr, String> {
    match s.trim() {
        "" => Ok(OptAddr(None)),
        a => a
            .parse()
            .map(|a| OptAddr(Some(a)))
            .map_err(|e| format!("{a:?}: {e} (want IP:PORT, or '' for none)")),
    }
}

/// An inclusive port range `LO-HI` (a single `PORT` is `PORT-PORT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        (self.lo..=self.hi).contains(&port)
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.lo, self.hi)
    }
}

/// Parses `LO-HI` like the API server's `--service-node-port-range` (also
/// `LO+N`, the range LO..=LO+N).
pub fn parse_port_range(s: &str) -> Result<PortRange, String> {
    let s = s.trim();
    let num = |t: &str| {
        t.trim()
            .parse::<u16>()
            .map_err(|e| format!("{s:?}: {t:?} is not a port: {e}"))
    };
    let (lo, hi) = if let Some((a, b)) = s.split_once('-') {
        (num(a)?, num(b)?)
    } else if let Some((a, n)) = s.split_once('+') {
        let lo = num(a)?;
        let hi = lo
            .checked_add(num(n)?)
            .ok_or_else(|| format!("{s:?}: runs past 65535"))?;
        (lo, hi)
    } else {
        let p = num(s)?;
        (p, p)
    };
    if lo == 0 || lo > hi {
        return Err(format!("{s:?}: want LO-HI with 1 <= LO <= HI <= 65535"));
    }
    Ok(PortRange { lo, hi })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_and_optional_addresses() {
        assert_eq!(
            parse_port_range("30000-32767").unwrap(),
            PortRange {
                lo: 30000,
                hi: 32767
            }
        );
        assert_eq!(
            parse_port_range("30000+100").unwrap(),
            PortRange {
                lo: 30000,
                hi: 30100
            }
        );
        assert_eq!(parse_port_range("8080").unwrap().to_string(), "8080-8080");
        assert!(parse_port_range("0-10").is_err());
        assert!(parse_port_range("200-100").is_err());
        assert!(parse_port_range("65000+1000").is_err());
        assert!(parse_port_range("a-b").is_err());
        assert!(parse_port_range("30000-32767").unwrap().contains(30080));
        assert!(!parse_port_range("30000-32767").unwrap().contains(22));
        assert_eq!(parse_opt_addr("").unwrap(), OptAddr(None));
        assert_eq!(
            parse_opt_addr("0.0.0.0:10256").unwrap().0.unwrap().port(),
            10256
        );
        assert!(parse_opt_addr("nope").is_err());
    }
}
