//! What an explanation says: the frame asked about ([`Flow`]), the steps of
//! the walk, and the [`Outcome`] (verdict, reason counter, backend, rewritten
//! addresses).

use super::*;

/// Where the frame enters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Iface {
    /// The node's uplink NIC (the XDP program).
    Uplink,
    /// A pod's veth, i.e. the frame leaves a pod (the tc program).
    Pod,
}

/// The frame to explain.
#[derive(Clone, Copy, Debug)]
pub struct Flow {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub proto: Proto,
    pub iface: Iface,
    /// The TCP frame has RST set (a RST is never answered with a RST).
    pub rst: bool,
}

/// An IPv6 frame to explain (the uplink only: `xlb_xdp6`).
#[derive(Clone, Copy, Debug)]
pub struct Flow6 {
    pub src: SocketAddrV6,
    pub dst: SocketAddrV6,
    pub proto: Proto,
    /// The TCP frame has RST set (a RST is never answered with a RST).
    pub rst: bool,
}

/// What the program returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// XDP_PASS / TC_ACT_OK: to the kernel's stack.
    Pass,
    /// XDP_DROP / TC_ACT_SHOT.
    Drop,
    /// XDP_TX: back out of the uplink (encapsulated, or an answer).
    Tx,
    /// bpf_redirect: into a veth (tc answers, hairpin) or the uplink.
    Redirect,
}

/// One step of the walk: what was looked at and what it said.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    pub step: &'static str,
    pub found: String,
}

/// How the data plane ends with the frame.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outcome {
    pub verdict: Verdict,
    /// The reason counter it moves (`xlb maps stats`).
    pub reason: String,
    pub svc_id: Option<u32>,
    pub backend_id: Option<u32>,
    pub backend: Option<SocketAddr>,
    /// The backend's node (underlay address); `None`: this node.
    pub node: Option<IpAddr>,
    /// The frame's destination after the rewrite (DNAT, hairpin).
    pub new_dst: Option<SocketAddr>,
    /// The frame's source after the rewrite (reverse NAT, hairpin).
    pub new_src: Option<SocketAddr>,
    /// The node it is sent to through VXLAN.
    pub tunnel_to: Option<IpAddr>,
    /// What the outcome depends on that the maps do not hold.
    pub note: Option<String>,
}

impl Outcome {
    /// `reason`: a reason counter's name (`xlb_bpf::Reason::name`).
    pub(super) fn new(verdict: Verdict, reason: &str) -> Self {
        debug_assert!(xlb_bpf::Reason::from_name(reason).is_some(), "{reason}");
        Self {
            verdict,
            reason: reason.to_string(),
            svc_id: None,
            backend_id: None,
            backend: None,
            node: None,
            new_dst: None,
            new_src: None,
            tunnel_to: None,
            note: None,
        }
    }
}

/// The whole walk.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    pub steps: Vec<Step>,
    pub outcome: Outcome,
}
