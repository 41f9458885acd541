//! Connection-tracking timeouts of the data plane, written into the `config`
//! map (`ct_tcp_established`, `ct_tcp_close`, `ct_udp`; bpf/include/ct.h), as
//! kube-proxy's `--conntrack-tcp-timeout-established` and
//! `--conntrack-tcp-timeout-close-wait`. A half-open TCP entry (only the SYN
//! seen) lives `XLB_CT_TCP_SYN_S` (60 s), not configurable.

use xlb_bpf::consts::{XLB_CT_TCP_CLOSE_S, XLB_CT_TCP_ESTABLISHED_S, XLB_CT_UDP_S};
use xlb_bpf::types::xlb_config;

#[derive(Debug, Clone, clap::Args)]
pub struct CtTimeouts {
    /// Seconds an established TCP connection's ct entries live without a
    /// packet (kube-proxy's --conntrack-tcp-timeout-established, 24 h).
    #[arg(long = "ct-tcp-established", env = "XLB_CT_TCP_ESTABLISHED", value_name = "SECONDS",
          default_value_t = XLB_CT_TCP_ESTABLISHED_S,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub tcp_established: u32,

    /// Seconds a TCP connection's ct entries live once both sides sent a FIN
    /// or one sent a RST (kube-proxy's --conntrack-tcp-timeout-close-wait);
    /// a new SYN on the same ports is balanced again at once.
    #[arg(long = "ct-tcp-close", env = "XLB_CT_TCP_CLOSE", value_name = "SECONDS",
          default_value_t = XLB_CT_TCP_CLOSE_S,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub tcp_close: u32,

    /// Seconds a UDP flow's ct entries live without a datagram.
    #[arg(long = "ct-udp", env = "XLB_CT_UDP", value_name = "SECONDS",
          default_value_t = XLB_CT_UDP_S,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub udp: u32,
}

impl CtTimeouts {
    /// Sets the timeouts in a `config` map value.
    pub fn apply(&self, c: &mut xlb_config) {
        c.ct_tcp_established = self.tcp_established;
        c.ct_tcp_close = self.tcp_close;
        c.ct_udp = self.udp;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        ct: CtTimeouts,
    }

    #[test]
    fn defaults_are_kube_proxys_and_flags_override() {
        let d = Cli::try_parse_from(["x"]).unwrap().ct;
        assert_eq!((d.tcp_established, d.tcp_close, d.udp), (86400, 10, 120));
        let c = Cli::try_parse_from(["x", "--ct-tcp-close", "30", "--ct-udp", "60"])
            .unwrap()
            .ct;
        let mut cfg = xlb_config::default();
        c.apply(&mut cfg);
        assert_eq!(
            (cfg.ct_tcp_established, cfg.ct_tcp_close, cfg.ct_udp),
            (86400, 30, 60)
        );
        assert!(Cli::try_parse_from(["x", "--ct-udp", "0"]).is_err());
    }
}
