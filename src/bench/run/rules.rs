//! kube-proxy's rules for the same Services: iptables-restore and nft input.

use std::fmt::Write as _;

use super::args::{ProtoArg, RunArgs};
use super::frames::{backend_addr, svc_addr, target, BACKENDS, NODEPORT};

pub(super) fn ipt_proto(p: ProtoArg) -> &'static str {
    match p {
        ProtoArg::Udp => "udp",
        _ => "tcp",
    }
}

/// kube-proxy iptables mode for the same Services: every ClusterIP is a rule in
/// KUBE-SERVICES (matched in order), NodePorts come last, the Service's chain
/// picks a backend with `statistic`, the backend's chain DNATs.
pub(super) fn iptables_rules(a: &RunArgs, services: u32) -> String {
    let pr = ipt_proto(a.proto);
    let mut r = String::from(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n\
         :KUBE-SVC-OTHER - [0:0]\n:KUBE-SVC-BENCH - [0:0]\n",
    );
    for j in 0..BACKENDS {
        let _ = writeln!(r, ":KUBE-SEP-{j} - [0:0]");
    }
    r.push_str("-A PREROUTING -j KUBE-SERVICES\n");
    let tgt = target(services);
    for i in 0..services {
        let s = svc_addr(i);
        let chain = if i == tgt {
            "KUBE-SVC-BENCH"
        } else {
            "KUBE-SVC-OTHER"
        };
        let _ = writeln!(
            r,
            "-A KUBE-SERVICES -d {}/32 -p {pr} -m {pr} --dport {} -j {chain}",
            s.ip(),
            s.port()
        );
    }
    r.push_str("-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n");
    let _ = writeln!(
        r,
        "-A KUBE-NODEPORTS -p {pr} -m {pr} --dport {NODEPORT} -j KUBE-SVC-BENCH"
    );
    for j in 0..BACKENDS {
        let left = BACKENDS - j;
        if left > 1 {
            let _ = writeln!(
                r,
                "-A KUBE-SVC-BENCH -m statistic --mode random --probability {:.11} -j KUBE-SEP-{j}",
                1.0 / left as f64
            );
        } else {
            let _ = writeln!(r, "-A KUBE-SVC-BENCH -j KUBE-SEP-{j}");
        }
        let _ = writeln!(
            r,
            "-A KUBE-SEP-{j} -p {pr} -m {pr} -j DNAT --to-destination {}",
            backend_addr(j)
        );
    }
    r.push_str("COMMIT\n");
    r
}

/// kube-proxy nftables mode: a verdict map on (address, protocol, port), one
/// on NodePorts, `numgen` over the backends.
pub(super) fn nft_rules(a: &RunArgs, services: u32) -> String {
    let pr = ipt_proto(a.proto);
    let tgt = target(services);
    let mut r = String::from("table ip xlb-bench {\n chain svc-other {\n }\n");
    for j in 0..BACKENDS {
        let _ = writeln!(
            r,
            " chain sep-{j} {{\n  meta l4proto {pr} dnat to {}\n }}",
            backend_addr(j)
        );
    }
    let _ = write!(
        r,
        " chain svc-bench {{\n  numgen random mod {BACKENDS} vmap {{ "
    );
    for j in 0..BACKENDS {
        let _ = write!(r, "{}{j} : goto sep-{j}", if j > 0 { ", " } else { "" });
    }
    r.push_str(" }\n }\n");
    r.push_str(
        " map service-ips {\n  type ipv4_addr . inet_proto . inet_service : verdict\n  elements = { ",
    );
    for i in 0..services {
        let s = svc_addr(i);
        let chain = if i == tgt { "svc-bench" } else { "svc-other" };
        let _ = write!(
            r,
            "{}{} . {pr} . {} : goto {chain}",
            if i > 0 { ",\n   " } else { "" },
            s.ip(),
            s.port()
        );
    }
    r.push_str(" }\n }\n");
    let _ = writeln!(
        r,
        " map service-nodeports {{\n  type inet_proto . inet_service : verdict\n  elements = {{ {pr} . {NODEPORT} : goto svc-bench }}\n }}"
    );
    r.push_str(
        " chain services {\n  ip daddr . meta l4proto . th dport vmap @service-ips\n  \
         fib daddr type local meta l4proto . th dport vmap @service-nodeports\n }\n \
         chain prerouting {\n  type nat hook prerouting priority dstnat; policy accept;\n  jump services\n }\n}\n",
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::run::args::Scenario;
    use crate::bench::run::topo::Egress;

    #[test]
    fn rules_name_every_service_once() {
        let a = RunArgs {
            scenario: Scenario::Iptables,
            cores: 1,
            flows: 1,
            services: 10,
            size: 64,
            seconds: 1.0,
            proto: ProtoArg::Udp,
            rate: None,
            batch: 64,
            egress: Egress::Same,
            iface: None,
            peer_iface: None,
            new_flows: false,
            sweep: None,
            svg: None,
            repeat: 1,
            json: false,
        };
        let r = iptables_rules(&a, 10);
        assert_eq!(r.matches("-A KUBE-SERVICES -d ").count(), 10);
        assert_eq!(
            r.matches("DNAT --to-destination").count(),
            BACKENDS as usize
        );
        let n = nft_rules(&a, 10);
        assert_eq!(n.matches(" : goto svc-").count(), 11);
    }
}
