//! `xlb attach` and `xlb detach`: put the data plane on an uplink and the pod
//! veths, upgrade it in place, take it off.

use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use xlb_bpf::consts::XLB_SOCK_F_LOOPBACK;
use xlb_loader::attach::{self, AttachMode, Attached};
use xlb_loader::cgroup::{self, SockAttached, SockLb};
use xlb_loader::netlink::{IfacePatterns, PodIfaceWatcher};
use xlb_loader::{DataPlane, LoadOptions};

/// Attach xlb: XDP on the uplink, tc (tcx) on every pod veth.
///
/// Loads the data plane, reusing the maps pinned under --pin-dir (their state
/// survives), attaches the XDP program to --iface through a pinned bpf_link
/// and the tc program to every interface matching --pod-ifaces. Run it again
/// with a new xlb to upgrade: each attached program is swapped atomically
/// inside its link, no packet is lost.
///
/// Examples:
///   xlb attach --iface eth0
///   xlb attach --iface eth0 --mode generic
///   xlb attach --iface eth0 --fallback-generic --pod-ifaces 'veth*,cni*'
///   xlb attach --iface eth0 --pod-ifaces '' --follow
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct AttachArgs {
    /// Uplink interface for the XDP program.
    #[arg(long, short = 'i', value_name = "IF")]
    pub iface: String,

    /// XDP mode: native (in the driver), generic (any device, slow), offload (SmartNIC).
    #[arg(long, default_value = "native", value_parser = parse_mode)]
    pub mode: AttachMode,

    /// If the driver has no native XDP, attach in generic mode with a warning instead of failing.
    #[arg(long)]
    pub fallback_generic: bool,

    /// Pod interface name patterns (comma-separated, * and ?); '' attaches no pod interface.
    #[arg(long, default_value = xlb_loader::netlink::DEFAULT_POD_PATTERNS, value_parser = parse_patterns)]
    pub pod_ifaces: IfacePatterns,

    /// Stay in the foreground and attach pod interfaces as they appear (until Ctrl-C).
    #[arg(long)]
    pub follow: bool,

    /// Connection-tracking entries: two per connection, so about 4 x the
    /// connections you expect (default 1048576, or the size of the pinned
    /// map). Changing the size of a pinned map takes `xlb detach --all` first.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1024..=134_217_728))]
    pub ct_entries: Option<u32>,

    /// IPv6 connection-tracking entries (`ct6`), as `--ct-entries` for the
    /// IPv6 flows (default 262144, or the size of the pinned map).
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1024..=134_217_728))]
    pub ct6_entries: Option<u32>,

    /// Leave node processes' traffic alone: no cgroup socket hooks (by
    /// default connect/sendmsg to a Service from this network namespace is
    /// balanced at the socket, see docs/socket-lb.md).
    #[arg(long)]
    pub no_socket_lb: bool,

    /// Root of the host's cgroup v2 hierarchy for the socket hooks (default:
    /// the cgroup2 mount in /proc/self/mountinfo).
    #[arg(long, value_name = "DIR")]
    pub cgroup_root: Option<std::path::PathBuf>,

    /// Print what was done as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Detach xlb from an interface, from every pod interface, or entirely.
///
/// --iface removes xlb's hooks on that interface (the maps stay pinned, so a
/// later attach keeps its state); --pods removes the hooks of every pod
/// interface; --sockets removes the cgroup socket hooks (node processes'
/// traffic is then left alone); --all removes every hook and every pin of
/// xlb's, maps included (connection tracking is lost). --all acts only on a
/// directory on a bpf filesystem and there only on the names xlb pins: other
/// files and other tools' pins stay (exit 2 for a --pin-dir that is not on
/// bpffs).
///
/// Examples:
///   xlb detach --iface eth0
///   xlb detach --pods
///   xlb detach --sockets
///   xlb detach --all
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
#[group(required = true, multiple = false)]
pub struct DetachArgs {
    /// Interface to detach from.
    #[arg(long, short = 'i', value_name = "IF")]
    pub iface: Option<String>,

    /// Detach every pod interface (keeps the uplink).
    #[arg(long)]
    pub pods: bool,

    /// Detach the cgroup socket hooks (node processes' Service traffic).
    #[arg(long)]
    pub sockets: bool,

    /// Detach everything and remove xlb's pins under --pin-dir.
    #[arg(long)]
    pub all: bool,
}

fn parse_mode(s: &str) -> Result<AttachMode, String> {
    s.parse()
}

fn parse_patterns(s: &str) -> Result<IfacePatterns, String> {
    s.parse()
}

fn describe(a: &Attached) -> String {
    format!(
        "{:<16} {:<20} {}",
        a.iface,
        a.hook.describe(),
        if a.replaced { "replaced" } else { "attached" }
    )
}

fn json_of(a: &Attached) -> serde_json::Value {
    serde_json::json!({
        "iface": a.iface,
        "ifindex": a.ifindex,
        "hook": a.hook.describe(),
        "replaced": a.replaced,
        "warning": a.warning,
    })
}

fn describe_socket(s: &SockAttached) -> String {
    format!(
        "{:<16} {:<20} {}",
        s.cgroup.display(),
        format!("cgroup/{}", s.hook.name()),
        if s.replaced { "replaced" } else { "attached" }
    )
}

/// Loads the socket hooks beside `dp` and attaches them to the cgroup v2
/// root (`cgroup`, else the one mounted) for the calling thread's network
/// namespace (`flags`: XLB_SOCK_F_*).
pub fn attach_sockets(
    pin_dir: &Path,
    dp: &DataPlane,
    flags: u32,
    cgroup: Option<&Path>,
) -> anyhow::Result<Vec<SockAttached>> {
    let sock = SockLb::load(dp).context("loading the socket hooks")?;
    let root = match cgroup {
        Some(p) => p.to_owned(),
        None => cgroup::cgroup2_root()?,
    };
    cgroup::attach(pin_dir, &sock, &root, flags)
        .with_context(|| format!("attaching the socket hooks to {}", root.display()))
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

pub fn run_attach(a: AttachArgs, pin_dir: &Path) -> anyhow::Result<()> {
    // Before loading (which pins maps): a typo must not leave state behind.
    if xlb_loader::sys::ifindex(&a.iface).is_none() {
        return Err(xlb_loader::Error::NoSuchInterface(a.iface).into());
    }
    let dp = DataPlane::load(&LoadOptions {
        pin_dir: Some(pin_dir.to_owned()),
        ct_entries: a.ct_entries,
        ct6_entries: a.ct6_entries,
        ..Default::default()
    })
    .with_context(|| {
        format!(
            "loading the data plane with maps under {}",
            pin_dir.display()
        )
    })?;
    if let Some(m) = &dp.mounted {
        eprintln!("warning: {}", m.note());
    }

    // Watch before listing so no pod interface slips between the two.
    let mut watcher = if a.follow {
        Some(PodIfaceWatcher::new(a.pod_ifaces.clone()).context("opening a netlink socket")?)
    } else {
        None
    };

    let mut done = vec![attach::attach_uplink(
        pin_dir,
        dp.xdp_prog().as_fd(),
        &a.iface,
        a.mode,
        a.fallback_generic,
    )
    // (the loader's errors name the interface and the way out already)
    ?];
    // its egress: replies of this node's host-network endpoints (docs/dp.md)
    match attach::attach_pod_egress(pin_dir, dp.tc_egress_prog().as_fd(), &a.iface) {
        Ok(Some(_)) => {}
        Ok(None) => eprintln!(
            "warning: {}: no tcx egress (tcx unavailable or turned off): replies of host-network endpoints to clients balanced by XDP leave untranslated",
            a.iface
        ),
        Err(e) => eprintln!("warning: {} (egress): {e}", a.iface),
    }

    let mut failures = Vec::new();
    let pods: Vec<String> = xlb_loader::sys::interfaces()
        .into_iter()
        .map(|(_, n)| n)
        .filter(|n| n != &a.iface && a.pod_ifaces.matches(n))
        .collect();
    for name in &pods {
        match attach::attach_pod(pin_dir, dp.tc_prog().as_fd(), name) {
            Ok(r) => done.push(r),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
        if let Err(e) = attach::attach_pod_egress(pin_dir, dp.tc_egress_prog().as_fd(), name) {
            failures.push(format!("{name} (egress): {e}"));
        }
    }
    // Pod interfaces attached earlier and not matched now (pattern changed,
    // interface gone): their links follow the program too.
    let seen: Vec<String> = done.iter().map(|d| d.iface.clone()).collect();
    for old in attach::list(pin_dir)? {
        if seen.contains(&old.iface) || matches!(old.hook, attach::Hook::Xdp(_)) {
            continue;
        }
        match old.ifindex {
            Some(_) => match attach::attach_pod(pin_dir, dp.tc_prog().as_fd(), &old.iface) {
                Ok(r) => done.push(r),
                Err(e) => failures.push(format!("{}: {e}", old.iface)),
            },
            None => {
                xlb_loader::pin::unpin(&old.pin).ok();
            }
        }
    }
    attach::pin_programs(pin_dir, &dp).context("pinning the programs")?;
    let sockets = if a.no_socket_lb {
        let gone = cgroup::detach(pin_dir).context("detaching the socket hooks")?;
        if !gone.is_empty() {
            eprintln!("--no-socket-lb: socket hooks of an earlier attach removed");
        }
        Vec::new()
    } else {
        attach_sockets(pin_dir, &dp, XLB_SOCK_F_LOOPBACK, a.cgroup_root.as_deref())?
    };

    if a.json {
        let v = serde_json::json!({
            "pin_dir": pin_dir,
            "attached": done.iter().map(json_of).collect::<Vec<_>>(),
            "sockets": sockets.iter().map(|s| serde_json::json!({
                "hook": s.hook.name(),
                "cgroup": s.cgroup,
                "prog_id": s.prog_id,
                "replaced": s.replaced,
            })).collect::<Vec<_>>(),
            "failed": failures,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for d in &done {
            println!("{}", describe(d));
            if let Some(w) = &d.warning {
                eprintln!("warning: {w}");
            }
        }
        for s in &sockets {
            println!("{}", describe_socket(s));
        }
        for f in &failures {
            eprintln!("error: {f}");
        }
        println!(
            "{} interface(s), maps pinned under {}",
            done.len(),
            pin_dir.display()
        );
    }
    if let Some(w) = watcher.as_mut() {
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
            libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        }
        eprintln!("following pod interfaces {} (Ctrl-C stops)", a.pod_ifaces);
        while !STOP.load(Ordering::Relaxed) {
            for ev in w.poll(Duration::from_millis(500))? {
                match xlb_loader::netlink::apply_event(pin_dir, &ev) {
                    Ok(()) => println!("{ev:?}"),
                    Err(e) => eprintln!("error: {ev:?}: {e}"),
                }
            }
        }
    }
    if !failures.is_empty() {
        anyhow::bail!("{} pod interface(s) could not be attached", failures.len());
    }
    Ok(())
}

pub fn run_detach(a: DetachArgs, pin_dir: &Path) -> anyhow::Result<()> {
    if a.all {
        return remove_everything(pin_dir);
    }
    if a.sockets {
        let sockets = cgroup::detach(pin_dir).context("detaching the socket hooks")?;
        print_sockets_detached(&sockets);
        println!("{} hook(s) detached", sockets.len());
        return Ok(());
    }
    let removed = if a.pods {
        attach::detach_pods(pin_dir).context("detaching pod interfaces")?
    } else {
        let iface = a.iface.as_deref().unwrap_or_default();
        attach::detach(pin_dir, iface).with_context(|| format!("detaching from {iface}"))?
    };
    for r in &removed {
        println!("{:<16} {:<20} detached", r.iface, r.hook.describe());
    }
    println!("{} hook(s) detached", removed.len());
    Ok(())
}

/// `xlb detach --all` and `xlb agent --cleanup`: takes every hook of xlb's
/// off and removes xlb's pins (maps, programs, links) and its Service names
/// file; anything else under `pin_dir` stays and is listed. A `pin_dir`
/// that is not a directory on bpffs is refused with nothing touched.
pub fn remove_everything(pin_dir: &Path) -> anyhow::Result<()> {
    let done = attach::detach_all(pin_dir)
        .with_context(|| format!("removing xlb's pins under {}", pin_dir.display()))?;
    crate::names::remove(&crate::names::path(pin_dir))?;
    crate::unprogrammed::write(&crate::unprogrammed::path(pin_dir), &[])
        .context("removing the unprogrammed file")?;
    for r in &done.hooks {
        println!("{:<16} {:<20} detached", r.iface, r.hook.describe());
    }
    print_sockets_detached(&done.sockets);
    for k in &done.pins.kept {
        println!("{:<37} kept (not xlb's)", k.display());
    }
    let dir = if done.pins.dir_removed {
        format!(", {} removed", pin_dir.display())
    } else if done.pins.removed.is_empty() && done.hooks.is_empty() && done.sockets.is_empty() {
        format!(": nothing of xlb's under {}", pin_dir.display())
    } else {
        String::new()
    };
    println!(
        "{} hook(s) detached, {} pin(s) removed{dir}",
        done.hooks.len() + done.sockets.len(),
        done.pins.removed.len()
    );
    Ok(())
}

fn print_sockets_detached(hooks: &[cgroup::SockHook]) {
    for h in hooks {
        println!(
            "{:<16} {:<20} detached",
            "cgroup",
            format!("cgroup/{}", h.name())
        );
    }
}
