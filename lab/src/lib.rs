//! # Lab: a two-node Kubernetes-shaped network in namespaces
//!
//! `xlb lab up` builds, from nothing but a name prefix `P`:
//!
//! ```text
//!                         P-ul (bridge br0, 198.18.0.0/24)
//!            c0 |               n1 |                   n2 |
//!   P-client eth0            P-node1 eth0              P-node2 eth0
//!   198.18.0.1 (+ .3)        198.18.0.11               198.18.0.12
//!                            flannel.1 (VNI 1, 8472)   flannel.1
//!                            lo 10.244.1.1             lo 10.244.2.1
//!                          vethp1   vethp2           vethp1   vethp2
//!                         P-n1p1   P-n1p2           P-n2p1   P-n2p2
//!                       10.244.1.2 10.244.1.3     10.244.2.2 10.244.2.3
//! ```
//!
//! Every name, address and MAC is derived from the prefix and the node/pod
//! numbers ([`Lab`]), so `down` needs no saved state: it removes every
//! namespace called `P-*`, every process inside them, the pin directories
//! `/sys/fs/bpf/P-node*` and the state directory `/run/xlb-lab/P`.
//! `deploy/examples` names the same addresses (Nodes, EndpointSlices).
//! With `--dual-stack` every node, pod and client also gets the IPv6
//! counterpart of each address ([`v6`]), the nodes a `flannel-v6.1` VXLAN
//! device over an IPv6 underlay, and the manifests dual-stack Services.
//!
//! A crate of its own so the harness stays out of the product: the xlb
//! binary's `xlb lab` commands call into it, and it runs the xlb binary it is
//! given (`xlb lab backend` in the pods, `xlb agent` in the nodes). It depends
//! on `xlb-loader` only, never on the xlb crate. Module map: docs/lab.md.

pub mod backend;
mod build;
mod build6;
pub mod check;
mod cmd;
pub mod daemons;
pub mod down;
pub mod dual;
pub mod manifests;
pub mod netns;
pub mod objects;
pub mod probe;
pub mod procs;
pub mod up;
pub mod v6;
pub mod xdp_pass;

use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Errors of the lab.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{cmd}: {msg}")]
    Command { cmd: String, msg: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("invalid lab setting: {0}")]
    Invalid(String),
    #[error("{0}")]
    NotReady(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_ctx(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// Root of the per-lab state directories (pid files, logs, manifests).
pub const STATE_ROOT: &str = "/run/xlb-lab";
/// Root under which each node's maps are pinned (`<root>/<prefix>-node<N>`).
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";
/// Port every lab backend listens on (TCP and UDP).
pub const BACKEND_PORT: u16 = 8080;
/// VXLAN port and VNI of the overlay (flannel's defaults).
pub const VXLAN_PORT: u16 = 8472;
pub const VXLAN_VNI: u32 = 1;
/// MTU of the overlay and of the pods (uplinks stay at 1500; 50 bytes for VXLAN).
pub const POD_MTU: u32 = 1450;
/// Uplink interface name inside each node namespace.
pub const UPLINK: &str = "eth0";
/// Kernel VXLAN device inside each node namespace.
pub const VXLAN_DEV: &str = "flannel.1";
/// Service range routed from the client to node 1.
pub const SERVICE_CIDR: &str = "10.96.0.0/16";

/// The client's address on the underlay.
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// A second client address (outside the examples' loadBalancerSourceRanges).
pub const CLIENT_ALT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);

/// Largest lab: keeps every derived address and name valid.
pub const MAX_NODES: u8 = 9;
pub const MAX_PODS_PER_NODE: u8 = 50;

/// Underlay address of node `n` (1-based).
pub fn node_addr(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 10 + n)
}

/// MAC of node `n`'s uplink.
pub fn node_mac(n: u8) -> String {
    format!("02:18:00:00:00:{:02x}", 0x10 + n)
}

/// MAC of node `n`'s VXLAN device (the VTEP MAC its Node object announces).
pub fn vtep_mac(n: u8) -> String {
    format!("0e:18:00:00:01:{n:02x}")
}

/// Node `n`'s name in Kubernetes objects.
pub fn node_name(n: u8) -> String {
    format!("node{n}")
}

/// Pod CIDR of node `n`: 10.244.n.0/24.
pub fn pod_cidr(n: u8) -> String {
    format!("10.244.{n}.0/24")
}

/// Node `n`'s address on the pod side (gateway of its pods, on its `lo`).
pub fn pod_gateway(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, n, 1)
}

/// Node `n`'s overlay address on its VXLAN device (flannel: the .0 of the pod CIDR).
pub fn vtep_addr(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, n, 0)
}

/// Address of pod `k` (1-based) on node `n`: 10.244.n.(k+1).
pub fn pod_addr(n: u8, k: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, n, k + 1)
}

/// Name of pod `k` on node `n` (also the name its backend answers with).
pub fn pod_name(n: u8, k: u8) -> String {
    format!("n{n}p{k}")
}

/// One lab: a prefix and a size. Everything else is derived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lab {
    pub prefix: String,
    pub nodes: u8,
    pub pods_per_node: u8,
    /// IPv6 beside IPv4 everywhere (`xlb lab up --dual-stack`).
    pub dual_stack: bool,
}

impl Lab {
    /// Checks the prefix and sizes.
    pub fn new(prefix: &str, nodes: u8, pods_per_node: u8) -> Result<Self> {
        validate_prefix(prefix)?;
        if !(1..=MAX_NODES).contains(&nodes) {
            return Err(Error::Invalid(format!(
                "--nodes {nodes}: must be 1..={MAX_NODES}"
            )));
        }
        if !(1..=MAX_PODS_PER_NODE).contains(&pods_per_node) {
            return Err(Error::Invalid(format!(
                "--pods-per-node {pods_per_node}: must be 1..={MAX_PODS_PER_NODE}"
            )));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
            nodes,
            pods_per_node,
            dual_stack: false,
        })
    }

    /// The same lab with IPv6 beside IPv4 (or IPv4 only).
    pub fn with_dual_stack(mut self, on: bool) -> Self {
        self.dual_stack = on;
        self
    }

    pub fn ns_underlay(&self) -> String {
        underlay_ns(&self.prefix)
    }
    pub fn ns_client(&self) -> String {
        client_ns(&self.prefix)
    }
    pub fn ns_node(&self, n: u8) -> String {
        node_ns(&self.prefix, n)
    }
    pub fn ns_pod(&self, n: u8, k: u8) -> String {
        format!("{}-{}", self.prefix, pod_name(n, k))
    }
    /// `/run/xlb-lab/<prefix>`.
    pub fn state_dir(&self) -> PathBuf {
        state_dir(&self.prefix)
    }
    /// The manifest directory the agents read (a copy of deploy/examples).
    pub fn manifests_dir(&self) -> PathBuf {
        self.state_dir().join("manifests")
    }
    /// `/sys/fs/bpf/<prefix>-node<N>`.
    pub fn pin_dir(&self, n: u8) -> PathBuf {
        pin_dir(&self.prefix, n)
    }
    pub fn node_numbers(&self) -> impl Iterator<Item = u8> {
        1..=self.nodes
    }
    /// Every (node, pod) pair.
    pub fn pods(&self) -> impl Iterator<Item = (u8, u8)> + '_ {
        self.node_numbers()
            .flat_map(move |n| (1..=self.pods_per_node).map(move |k| (n, k)))
    }
}

/// The prefix becomes part of namespace names and pin directories: keep it plain.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 24
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && prefix.as_bytes()[0].is_ascii_alphabetic();
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "prefix {prefix:?}: use 1-24 letters, digits or '_', starting with a letter"
        )))
    }
}

pub fn underlay_ns(prefix: &str) -> String {
    format!("{prefix}-ul")
}
pub fn client_ns(prefix: &str) -> String {
    format!("{prefix}-client")
}
pub fn node_ns(prefix: &str, n: u8) -> String {
    format!("{prefix}-node{n}")
}
pub fn state_dir(prefix: &str) -> PathBuf {
    PathBuf::from(STATE_ROOT).join(prefix)
}
pub fn pin_dir(prefix: &str, n: u8) -> PathBuf {
    PathBuf::from(BPFFS_ROOT).join(format!("{prefix}-node{n}"))
}

/// Whether `name` is one of the namespaces a lab with `prefix` creates.
pub fn is_lab_ns(prefix: &str, name: &str) -> bool {
    let Some(rest) = name.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if rest == "ul" || rest == "client" {
        return true;
    }
    if let Some(n) = rest.strip_prefix("node") {
        return digits(n);
    }
    if let Some(np) = rest.strip_prefix('n') {
        if let Some((n, p)) = np.split_once('p') {
            return digits(n) && digits(p);
        }
    }
    false
}

/// Whether `name` (an entry of /sys/fs/bpf) is a pin directory of the lab.
pub fn is_lab_pin_dir(prefix: &str, name: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix("-node"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

pub use check::{check, CheckRow};
pub use down::{down, DownReport};
pub use up::{up, LabInfo, UpOptions};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_derived_from_the_prefix() {
        let lab = Lab::new("xlb", 2, 2).unwrap();
        assert_eq!(lab.ns_node(2), "xlb-node2");
        assert_eq!(lab.ns_pod(1, 2), "xlb-n1p2");
        assert_eq!(lab.pin_dir(1), PathBuf::from("/sys/fs/bpf/xlb-node1"));
        assert_eq!(pod_addr(2, 1), Ipv4Addr::new(10, 244, 2, 2));
        assert_eq!(node_addr(1), Ipv4Addr::new(198, 18, 0, 11));
        assert_eq!(vtep_mac(2), "0e:18:00:00:01:02");
        assert_eq!(lab.pods().count(), 4);
    }

    #[test]
    fn lab_namespaces_are_recognised_exactly() {
        for ok in [
            "xlb-ul",
            "xlb-client",
            "xlb-node1",
            "xlb-n1p2",
            "xlb-node12",
        ] {
            assert!(is_lab_ns("xlb", ok), "{ok}");
        }
        for no in [
            "xlb2-node1",
            "xlb-node",
            "xlb-nodex",
            "xlb-n1",
            "xlb-n1p",
            "xlbnode1",
            "other-ul",
            "xlb-ul2",
        ] {
            assert!(!is_lab_ns("xlb", no), "{no}");
        }
        assert!(is_lab_pin_dir("xlb", "xlb-node1"));
        assert!(!is_lab_pin_dir("xlb", "xlb"));
        assert!(!is_lab_pin_dir("xlb", "xlb2-node1"));
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(Lab::new("", 2, 2).is_err());
        assert!(Lab::new("a/b", 2, 2).is_err());
        assert!(Lab::new("1x", 2, 2).is_err());
        assert!(Lab::new("x-y", 2, 2).is_err());
        assert!(Lab::new("xlb", 0, 2).is_err());
        assert!(Lab::new("xlb", 10, 2).is_err());
        assert!(Lab::new("xlb", 2, 0).is_err());
        assert!(Lab::new("xlb", 2, 51).is_err());
    }
}
