//! # xlb-loader
//!
//! Opens and loads the data plane (the uplink XDP object and the pod-veth tc
//! object), sharing one set of maps between them: pinned by name under a pin
//! directory for a real node, or private (unpinned) for tests.
//!
//! [`grow`] replaces the maps that must hold more with larger copies under
//! the running programs. [`attach`] puts the programs on interfaces through pinned bpf_links and
//! replaces them in place; [`cgroup`] the socket hooks on the cgroup v2
//! root; [`sock_term`] the UDP socket iterator that terminates sockets of
//! removed backends; [`netlink`] follows pod interfaces; [`pin`] owns
//! the pin directory (bpffs mount, stale-pin checks); [`mounts`] tells
//! whose bpf filesystem a path is on; [`remove`] takes xlb's own pins away
//! and nothing else.

pub mod attach;
pub mod cgroup;
pub mod grow;
pub mod mounts;
pub mod netlink;
pub mod pin;
pub mod remove;
pub mod sock_term;
pub mod sys;

pub use mounts::is_bpffs;

use std::mem::MaybeUninit;
use std::path::PathBuf;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, OpenObject};
use xlb_bpf::tc::{TcSkel, TcSkelBuilder};
use xlb_bpf::xdp::{XdpSkel, XdpSkelBuilder};
use xlb_bpf::Maps;

/// Default pin directory.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/xlb";

/// Where xlb keeps the state that is no map (bpffs holds no regular files):
/// the agents' Service-names files (`xlb::names`), which the lab removes.
pub const STATE_DIR: &str = "/run/xlb";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Bpf {
        what: String,
        source: libbpf_rs::Error,
    },
    #[error(transparent)]
    Maps(#[from] xlb_bpf::Error),
    #[error("{what}: {err}; {hint}")]
    Io {
        what: String,
        err: std::io::Error,
        hint: String,
    },
    #[error("{iface}: {what}: {err}; {hint}")]
    Attach {
        iface: String,
        what: String,
        err: std::io::Error,
        hint: String,
    },
    #[error("interface {0:?} does not exist (in this network namespace); `ip link` lists them")]
    NoSuchInterface(String),
    #[error("xlb is not attached to {iface} (nothing under {}/links); `xlb detach --all` removes everything", pin_dir.display())]
    NotAttached { iface: String, pin_dir: PathBuf },
    #[error("stale pin {}: {why}. Remove the old state with `xlb detach --all --pin-dir {}` or `xlb agent --cleanup --pin-dir {}` (this drops connection tracking), or delete that directory, or use another --pin-dir", path.display(), pin_dir.display(), pin_dir.display())]
    StalePin {
        path: PathBuf,
        why: String,
        pin_dir: PathBuf,
    },
    /// A `--pin-dir` xlb must not use as given (a usage error: exit 2).
    #[error("--pin-dir {}: {why}", path.display())]
    PinDir { path: PathBuf, why: String },
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn ctx(what: impl Into<String>) -> impl FnOnce(libbpf_rs::Error) -> Error {
    let what = what.into();
    move |source| Error::Bpf { what, source }
}

/// Load-time settings: where to pin, and map sizes that override consts.h.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Pin (and reuse) maps under this directory; `None` = private maps.
    pub pin_dir: Option<PathBuf>,
    /// Size of the one Maglev slot array.
    pub maglev_slots: Option<u32>,
    /// Connection-tracking entries (`ct`, IPv4 flows).
    pub ct_entries: Option<u32>,
    /// IPv6 connection-tracking entries (`ct6`).
    pub ct6_entries: Option<u32>,
    /// Backend slots (and `backend_stats`, indexed alike).
    pub backends: Option<u32>,
    /// `services` entries (IPv4 frontends).
    pub services: Option<u32>,
    /// Session-affinity entries (`affinity`, IPv4 clients).
    pub affinity: Option<u32>,
    /// `src_ranges` entries (IPv4 loadBalancerSourceRanges prefixes).
    pub src_ranges: Option<u32>,
    /// `services6` entries (IPv6 frontends).
    pub services6: Option<u32>,
    /// `affinity6` entries (IPv6 clients).
    pub affinity6: Option<u32>,
    /// `src_ranges6` entries (IPv6 source-range prefixes).
    pub src_ranges6: Option<u32>,
}

/// A loaded data plane: both programs and typed handles on the shared maps.
pub struct DataPlane {
    pub xdp: XdpSkel<'static>,
    pub tc: TcSkel<'static>,
    pub maps: Maps,
    /// The bpf filesystem mounted for the pin directory by this load, if
    /// one was: its [`pin::Mounted::note`] is for the operator.
    pub mounted: Option<pin::Mounted>,
}

fn storage() -> &'static mut MaybeUninit<OpenObject> {
    // The skeleton borrows its object storage for its whole life; a loaded data
    // plane lives as long as its owner, so one small box per load is leaked
    // (the bpf_object itself is closed when the skeleton drops).
    Box::leak(Box::new(MaybeUninit::uninit()))
}

impl DataPlane {
    /// Opens and loads both objects.
    pub fn load(opts: &LoadOptions) -> Result<Self> {
        let mut open = XdpSkelBuilder::default()
            .open(storage())
            .map_err(ctx("opening the XDP object"))?;
        {
            // A size not given is the pinned map's (set by whoever created
            // it, e.g. `xlb attach --ct-entries`), else the object's default.
            let pinned = |name: &str| {
                opts.pin_dir
                    .as_ref()
                    .and_then(|d| pin::pinned_max_entries(&d.join(name)))
            };
            let m = &mut open.maps;
            let sizes = [
                (&mut m.maglev, "maglev", opts.maglev_slots),
                (&mut m.ct, "ct", opts.ct_entries),
                (&mut m.backends, "backends", opts.backends),
                (&mut m.services, "services", opts.services),
                (&mut m.affinity, "affinity", opts.affinity),
                (&mut m.src_ranges, "src_ranges", opts.src_ranges),
                (&mut m.ct6, "ct6", opts.ct6_entries),
                (&mut m.services6, "services6", opts.services6),
                (&mut m.affinity6, "affinity6", opts.affinity6),
                (&mut m.src_ranges6, "src_ranges6", opts.src_ranges6),
                // indexed by backend_id like backends
                (
                    &mut m.backend_stats,
                    "backend_stats",
                    opts.backends.or_else(|| pinned("backends")),
                ),
                (
                    &mut m.backends6,
                    "backends6",
                    opts.backends.or_else(|| pinned("backends")),
                ),
            ];
            for (map, name, given) in sizes {
                if let Some(n) = given.or_else(|| pinned(name)) {
                    map.set_max_entries(n)
                        .map_err(ctx(format!("sizing {name}")))?;
                }
            }
        }
        let mut mounted = None;
        let mut grown = Vec::new();
        if let Some(dir) = &opts.pin_dir {
            mounted = pin::ensure_pin_dir(dir)?;
            let mut contract = Vec::new();
            let mut private = Vec::new();
            for m in open.open_object().maps() {
                let name = m.name().to_string_lossy().into_owned();
                let role = match pin::map_role(&name) {
                    Some(r) => r,
                    None if name.contains('.') => continue, // .rodata/.bss: one object's
                    None => {
                        return Err(Error::Other(format!(
                            "map {name} is in neither pin::CONTRACT_MAPS nor pin::PRIVATE_MAPS"
                        )))
                    }
                };
                let spec = pin::MapSpec {
                    name,
                    map_type: m.map_type() as u32,
                    key_size: m.key_size(),
                    value_size: m.value_size(),
                    max_entries: m.max_entries(),
                    flags: m.map_flags(),
                };
                match role {
                    pin::MapRole::Contract => contract.push(spec),
                    pin::MapRole::Private => private.push(spec),
                }
            }
            // Checks the other contract pins before it touches an older one.
            grown = pin::take_grown(dir, &contract)?;
            for p in pin::replace_stale_private(dir, &private)? {
                tracing::info!(pin = %p.display(), "replacing a private map of another layout");
            }
            for map in open.open_object_mut().maps_mut() {
                let Some(role) = pin::map_role(&map.name().to_string_lossy()) else {
                    continue;
                };
                let path = pin::map_pin_path(dir, &map.name().to_string_lossy(), role);
                let mut map = map;
                map.set_pin_path(&path)
                    .map_err(ctx(format!("setting pin path {}", path.display())))?;
            }
        }
        let xdp = open.load().map_err(|source| Error::Bpf {
            what: match &opts.pin_dir {
                Some(d) => format!(
                    "loading the XDP object (pins under {} may be stale or of another size: \
                     `xlb detach --all --pin-dir {}` removes them)",
                    d.display(),
                    d.display()
                ),
                None => "loading the XDP object".into(),
            },
            source,
        })?;
        // An older layout's value, carried over zero-extended (the new
        // fields' zero is their default): settings survive the upgrade.
        for (name, old) in &grown {
            use libbpf_rs::MapCore;
            if let Some(m) = xdp.object().maps().find(|m| m.name() == name.as_str()) {
                let mut v = vec![0u8; m.value_size() as usize];
                let n = old.len().min(v.len());
                v[..n].copy_from_slice(&old[..n]);
                m.update(&0u32.to_ne_bytes(), &v, libbpf_rs::MapFlags::ANY)
                    .map_err(ctx(format!("carrying {name} over from the older layout")))?;
                tracing::info!(map = %name, "carried over from an older layout");
            }
        }

        let tc = load_tc(&xdp)?;
        if let Some(dir) = &opts.pin_dir {
            pin_tc6_progs(&tc, dir)?;
        }
        let maps = Maps::from_skel(&xdp)?;
        // Adopted pins of an xlb without the filters: count what is there.
        if maps.filters_repair()? {
            tracing::info!("fe_filter / be_filter recounted from the services and backends maps");
        }
        Ok(Self {
            xdp,
            tc,
            maps,
            mounted,
        })
    }

    /// A private, unpinned data plane (tests, benchmarks).
    pub fn load_private() -> Result<Self> {
        Self::load(&LoadOptions::default())
    }

    /// The uplink XDP program.
    pub fn xdp_prog(&self) -> &libbpf_rs::ProgramMut<'static> {
        &self.xdp.progs.xlb_xdp
    }

    /// The pod-veth tc program.
    pub fn tc_prog(&self) -> &libbpf_rs::ProgramMut<'static> {
        &self.tc.progs.xlb_tc
    }

    /// The pod-veth egress program (replies of local host-network endpoints).
    pub fn tc_egress_prog(&self) -> &libbpf_rs::ProgramMut<'static> {
        &self.tc.progs.xlb_tc_egress
    }
}

/// Pins the tc object's IPv6 tail-call table (`tc6_progs`) under
/// `<pin>/private/`: a program array loses its entries when no user
/// reference is left, and the programs outlive the process that loaded them
/// (`xlb attach` exits; an agent may stop).
pub(crate) fn pin_tc6_progs(tc: &TcSkel<'static>, pin_dir: &std::path::Path) -> Result<()> {
    use std::os::fd::AsFd;
    let path = pin::map_pin_path(pin_dir, "tc6_progs", pin::MapRole::Private);
    pin::repin(tc.maps.tc6_progs.as_fd(), &path)
}

/// Opens and loads the tc object over `xdp`'s maps (every map it declares
/// is the XDP object's, shared by file descriptor).
fn load_tc(xdp: &XdpSkel<'static>) -> Result<TcSkel<'static>> {
    let mut open_tc = TcSkelBuilder::default()
        .open(storage())
        .map_err(ctx("opening the tc object"))?;
    {
        let shared = xdp.object().maps();
        let mut by_name: std::collections::HashMap<_, _> =
            shared.map(|m| (m.name().to_owned(), m)).collect();
        for mut map in open_tc.open_object_mut().maps_mut() {
            let name = map.name().to_owned();
            if let Some(src) = by_name.remove(&name) {
                use std::os::fd::AsFd;
                map.reuse_fd(src.as_fd())
                    .map_err(ctx(format!("sharing map {}", name.to_string_lossy())))?;
            }
        }
    }
    open_tc.load().map_err(ctx("loading the tc object"))
}

/// Names of every map the data plane's objects declare (pinned or not, the
/// internal `.rodata`/`.bss` aside): what xlb may have pinned under a pin
/// directory by name.
pub fn declared_map_names() -> Result<std::collections::BTreeSet<String>> {
    let xdp = XdpSkelBuilder::default()
        .open(storage())
        .map_err(ctx("opening the XDP object"))?;
    let tc = TcSkelBuilder::default()
        .open(storage())
        .map_err(ctx("opening the tc object"))?;
    Ok(xdp
        .open_object()
        .maps()
        .chain(tc.open_object().maps())
        .map(|m| m.name().to_string_lossy().into_owned())
        // libbpf's internal maps are named after their section (a dot)
        .filter(|n| !n.contains('.'))
        .collect())
}
