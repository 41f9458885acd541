//! `xlb doctor`: can xlb run here, and if not, what to do about it.

use std::path::Path;

use xlb_loader::attach::{probe_tcx, probe_xdp, AttachMode, Hook};
use xlb_loader::sys;

/// Check the kernel and an interface for what xlb needs.
///
/// Checks the kernel version, the bpf() syscall and privileges, kernel BTF,
/// bpffs (and that it is the host's, not one private to this mount
/// namespace as under `ip netns exec`), that the data plane passes the verifier, and with --iface the
/// driver, native XDP (by attaching a trivial XDP_PASS program and removing
/// it) and tcx. Prints what is missing and how to fix it; exits 1 when xlb
/// cannot run.
///
/// Examples:
///   xlb doctor
///   xlb doctor --iface eth0
///   xlb doctor --iface eth0 --json
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct DoctorArgs {
    /// Uplink to check for native XDP and tcx.
    #[arg(long, short = 'i', value_name = "IF")]
    pub iface: Option<String>,

    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Ok,
    Warn,
    Fail,
}

struct Check {
    name: &'static str,
    level: Level,
    detail: String,
    fix: Option<String>,
}

fn check(
    out: &mut Vec<Check>,
    name: &'static str,
    level: Level,
    detail: impl Into<String>,
    fix: Option<String>,
) {
    out.push(Check {
        name,
        level,
        detail: detail.into(),
        fix,
    });
}

/// (major, minor) of `uname -r`.
fn kernel_version() -> Option<(String, u32, u32)> {
    // SAFETY: zeroed utsname is valid; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: valid out pointer.
    if unsafe { libc::uname(&mut u) } != 0 {
        return None;
    }
    // SAFETY: uname NUL-terminates release.
    let rel = unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    let mut it = rel.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((rel, major, minor))
}

pub fn run(a: DoctorArgs, pin_dir: &Path) -> anyhow::Result<()> {
    let mut c = Vec::new();
    let kv = kernel_version();
    match &kv {
        Some((rel, maj, min)) if (*maj, *min) >= (6, 6) => {
            check(&mut c, "kernel", Level::Ok, rel.clone(), None)
        }
        Some((rel, maj, min)) if (*maj, *min) >= (5, 15) => check(
            &mut c,
            "kernel",
            Level::Warn,
            format!("{rel}: no tcx before 6.6, pod veths use classic tc (clsact) and the uplink gets no egress program (replies of host-network endpoints to clients XDP balanced leave untranslated)"),
            Some("upgrade to a 6.6+ kernel for tcx".into()),
        ),
        Some((rel, _, _)) => check(
            &mut c,
            "kernel",
            Level::Fail,
            format!("{rel}: xlb needs 5.15+ (XDP bpf_link, BTF, batch map ops)"),
            Some("upgrade the kernel to 5.15 or later (6.6+ recommended)".into()),
        ),
        None => check(&mut c, "kernel", Level::Warn, "version unknown", None),
    }

    // bpf() syscall and privileges: a tiny map.
    let bpf_ok = match sys::probe_map_create() {
        Ok(_) => {
            check(
                &mut c,
                "bpf syscall",
                Level::Ok,
                "maps can be created",
                None,
            );
            true
        }
        Err(e) => {
            check(
                &mut c,
                "bpf syscall",
                Level::Fail,
                format!("creating a map failed: {e}"),
                Some(
                    "run as root (or with CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON, CAP_SYS_ADMIN); \
                     check kernel.unprivileged_bpf_disabled and CONFIG_BPF_SYSCALL"
                        .into(),
                ),
            );
            false
        }
    };

    if Path::new("/sys/kernel/btf/vmlinux").exists() {
        check(
            &mut c,
            "BTF",
            Level::Ok,
            "/sys/kernel/btf/vmlinux present",
            None,
        );
    } else {
        check(
            &mut c,
            "BTF",
            Level::Fail,
            "/sys/kernel/btf/vmlinux missing",
            Some("use a kernel built with CONFIG_DEBUG_INFO_BTF=y".into()),
        );
    }

    bpffs_check(&mut c, pin_dir);

    // Do the programs pass this kernel's verifier?
    if bpf_ok {
        match xlb_loader::DataPlane::load_private() {
            Ok(_) => check(
                &mut c,
                "data plane",
                Level::Ok,
                "XDP and tc programs load (verifier accepts them)",
                None,
            ),
            Err(e) => check(
                &mut c,
                "data plane",
                Level::Fail,
                format!("loading failed: {e}"),
                Some("run with -vv to see the verifier log; report it with `uname -r`".into()),
            ),
        }
    }

    // Pinned state.
    if !pin_dir.join("services").exists() {
        check(
            &mut c,
            "pins",
            Level::Ok,
            format!("nothing pinned under {} yet", pin_dir.display()),
            None,
        );
    } else {
        match xlb_bpf::Maps::from_pin_dir(pin_dir) {
            Ok(_) => {
                let att = xlb_loader::attach::list(pin_dir).unwrap_or_default();
                let desc: Vec<String> = att
                    .iter()
                    .map(|a| format!("{} {}", a.iface, a.hook.describe()))
                    .collect();
                check(
                    &mut c,
                    "pins",
                    Level::Ok,
                    format!(
                        "maps pinned under {}; attached: {}",
                        pin_dir.display(),
                        if desc.is_empty() {
                            "nothing".into()
                        } else {
                            desc.join(", ")
                        }
                    ),
                    None,
                );
                programmed_check(&mut c, pin_dir);
            }
            Err(e) => check(
                &mut c,
                "pins",
                Level::Warn,
                format!(
                    "{} exists but its maps cannot be opened: {e}",
                    pin_dir.display()
                ),
                Some(format!(
                    "`xlb detach --all --pin-dir {}` clears it",
                    pin_dir.display()
                )),
            ),
        }
    }

    if let Some(iface) = &a.iface {
        iface_checks(&mut c, iface, bpf_ok, pin_dir);
    } else {
        check(
            &mut c,
            "interface",
            Level::Warn,
            "not checked",
            Some("pass --iface UPLINK to check native XDP and tcx on it".into()),
        );
    }

    let worst = c.iter().map(|x| x.level).max().unwrap_or(Level::Ok);
    if a.json {
        let v: Vec<_> = c
            .iter()
            .map(|x| {
                serde_json::json!({
                    "check": x.name,
                    "status": match x.level { Level::Ok => "ok", Level::Warn => "warn", Level::Fail => "fail" },
                    "detail": x.detail,
                    "fix": x.fix,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"checks": v, "ok": worst != Level::Fail})
            )?
        );
    } else {
        for x in &c {
            let tag = match x.level {
                Level::Ok => "ok  ",
                Level::Warn => "warn",
                Level::Fail => "FAIL",
            };
            println!("[{tag}] {:<12} {}", x.name, x.detail);
            if let Some(f) = &x.fix {
                println!("       {:<12} fix: {f}", "");
            }
        }
        match worst {
            Level::Fail => println!("xlb cannot run here: fix the FAIL lines above"),
            Level::Warn => println!("xlb can run here (see the warnings)"),
            Level::Ok => println!("xlb can run here"),
        }
    }
    if worst == Level::Fail {
        std::process::exit(1);
    }
    Ok(())
}

/// Does the agent have everything it wants in the maps? (Its list of what
/// it could not program, beside the names file.)
fn programmed_check(c: &mut Vec<Check>, pin_dir: &Path) {
    let path = crate::unprogrammed::path(pin_dir);
    match crate::unprogrammed::read(&path) {
        Ok(list) => match crate::unprogrammed::summary(&list) {
            None => check(
                c,
                "programmed",
                Level::Ok,
                "the agent reports nothing desired missing from the maps",
                None,
            ),
            Some(s) => check(
                c,
                "programmed",
                Level::Warn,
                s,
                Some(
                    "a map set by a flag is too small: raise it (--max-frontends, --max-backends, \
                     --maglev-slots, --max-src-ranges or their XLB_* variables) or unset it so \
                     the map follows the Services; `xlb maps services` lists what is missing"
                        .into(),
                ),
            ),
        },
        Err(e) => check(
            c,
            "programmed",
            Level::Warn,
            format!("{}: {e}", path.display()),
            None,
        ),
    }
}

/// Is the pin directory usable, on a bpffs, and is that bpffs the host's?
/// A bpffs private to this mount namespace (`ip netns exec` remounts /sys)
/// loses every pin, links included, when the namespace goes.
fn bpffs_check(c: &mut Vec<Check>, pin_dir: &Path) {
    use xlb_loader::mounts;
    if let Err(e) = xlb_loader::pin::check_pin_dir_path(pin_dir) {
        check(c, "bpffs", Level::Fail, e.to_string(), None);
        return;
    }
    let parent = pin_dir.parent().unwrap_or(Path::new("/sys/fs/bpf"));
    let on = [pin_dir, parent]
        .into_iter()
        .find(|d| xlb_loader::is_bpffs(d));
    let private_fix = Some(mounts::PRIVATE_BPFFS_FIX.to_string());
    match on {
        Some(d) => match mounts::bpffs_is_hosts(d) {
            Some(false) => check(
                c,
                "bpffs",
                Level::Warn,
                format!(
                    "{} is on a bpffs that is not the host's (pid 1's mount namespace does not \
                     have it): pins and attached programs there go away with this mount \
                     namespace",
                    d.display()
                ),
                private_fix,
            ),
            hosts => check(
                c,
                "bpffs",
                Level::Ok,
                format!(
                    "{} is on bpffs{}",
                    d.display(),
                    if hosts == Some(true) {
                        " (the host's)"
                    } else {
                        ""
                    }
                ),
                None,
            ),
        },
        None if mounts::same_mount_ns_as_init() == Some(false) => check(
            c,
            "bpffs",
            Level::Warn,
            format!(
                "no bpffs at {}, and this is not the host's mount namespace: a bpffs that \
                 `xlb attach` mounts here goes away, with its pins and links, when this \
                 namespace does",
                parent.display()
            ),
            private_fix,
        ),
        None => check(
            c,
            "bpffs",
            Level::Warn,
            format!("no bpffs at {} (xlb attach mounts it)", parent.display()),
            Some(format!(
                "or mount it yourself: `mount -t bpf bpf {}`",
                parent.display()
            )),
        ),
    }
}

fn iface_checks(c: &mut Vec<Check>, iface: &str, bpf_ok: bool, pin_dir: &Path) {
    let Some(ifindex) = sys::ifindex(iface) else {
        check(
            c,
            "interface",
            Level::Fail,
            format!("{iface} does not exist in this network namespace"),
            Some("`ip link` lists the interfaces".into()),
        );
        return;
    };
    let driver = sys::driver(iface).unwrap_or_else(|_| "unknown".into());
    check(
        c,
        "interface",
        Level::Ok,
        format!("{iface} (index {ifindex}, driver {driver})"),
        None,
    );
    if !bpf_ok {
        return;
    }

    // Is something already there?
    let ours = xlb_loader::attach::list(pin_dir)
        .unwrap_or_default()
        .into_iter()
        .find(|a| a.iface == iface && matches!(a.hook, Hook::Xdp(_)));
    let current = sys::xdp_query(ifindex).ok();
    match (current, ours) {
        (Some((mode, id)), Some(a)) if id != 0 => {
            let m = AttachMode::from_attached(mode)
                .map(|m| m.name())
                .unwrap_or("?");
            let level = if m == "generic" {
                Level::Warn
            } else {
                Level::Ok
            };
            check(
                c,
                "native XDP",
                level,
                format!(
                    "xlb is attached to {iface} in {m} mode (prog {id}, {})",
                    a.pin.display()
                ),
                (level == Level::Warn).then(|| {
                    format!("generic mode is slow; native needs driver support ({driver})")
                }),
            );
        }
        (Some((_, id)), None) if id != 0 => check(
            c,
            "native XDP",
            Level::Warn,
            format!("{iface} already has an XDP program (id {id}) that is not xlb's"),
            Some(format!(
                "xlb attach will refuse; remove it first (e.g. `ip link set dev {iface} xdp off`)"
            )),
        ),
        _ => probe_native_xdp(c, iface, ifindex, &driver),
    }
    probe_tcx_check(c, iface, ifindex);
    sysctl_checks(c, iface);
}

/// An IPv4 sysctl of this network namespace (`net.ipv4.conf.<dev>.<key>`).
fn ipv4_conf(dev: &str, key: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{dev}/{key}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// What the data plane needs of the uplink's IPv4 settings: forwarding for
/// `bpf_fib_lookup` (remote backends, tunnel return), and a reverse-path
/// filter that lets reverse-NATed replies (source = the Service address)
/// through.
fn sysctl_checks(c: &mut Vec<Check>, iface: &str) {
    match ipv4_conf(iface, "forwarding") {
        Some(1) => check(c, "forwarding", Level::Ok, format!("IPv4 forwarding on {iface}"), None),
        Some(_) => check(
            c,
            "forwarding",
            Level::Warn,
            format!("IPv4 forwarding is off on {iface}: frames for backends on other nodes are dropped (drop_fib)"),
            Some(format!("sysctl -w net.ipv4.conf.{iface}.forwarding=1 (every Kubernetes node has it on)")),
        ),
        None => check(
            c,
            "forwarding",
            Level::Warn,
            format!("cannot read net.ipv4.conf.{iface}.forwarding"),
            Some("is IPv4 enabled on the interface?".into()),
        ),
    }
    // The kernel uses the larger of the `all` and the interface value.
    let rp = ipv4_conf("all", "rp_filter")
        .into_iter()
        .chain(ipv4_conf(iface, "rp_filter"))
        .max()
        .unwrap_or(0);
    if rp == 1 {
        check(
            c,
            "rp_filter",
            Level::Warn,
            format!("strict reverse-path filtering on {iface}: replies reverse-NATed to a Service address may be dropped"),
            Some(format!(
                "sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.{iface}.rp_filter=2 (loose) or 0"
            )),
        );
    } else {
        let mode = if rp == 2 { "loose" } else { "off" };
        check(
            c,
            "rp_filter",
            Level::Ok,
            format!("reverse-path filtering {mode} on {iface}"),
            None,
        );
    }
}

fn probe_native_xdp(c: &mut Vec<Check>, iface: &str, ifindex: u32, driver: &str) {
    match probe_xdp(ifindex, AttachMode::Native) {
        Ok(()) => check(
            c,
            "native XDP",
            Level::Ok,
            format!("{iface} ({driver}) takes XDP in native mode (probed with XDP_PASS)"),
            None,
        ),
        Err(e) => {
            let (level, fix) = if probe_xdp(ifindex, AttachMode::Generic).is_ok() {
                (
                    Level::Warn,
                    format!(
                        "driver {driver} has no native XDP: run `xlb attach --iface {iface} --mode generic` \
                         (much slower); bonds/VLANs: attach to the physical NICs; or use a NIC whose driver has XDP"
                    ),
                )
            } else {
                (
                    Level::Fail,
                    "XDP cannot attach to this interface at all".to_string(),
                )
            };
            check(
                c,
                "native XDP",
                level,
                format!("{iface} ({driver}): native attach refused: {e}"),
                Some(fix),
            );
        }
    }
}

fn probe_tcx_check(c: &mut Vec<Check>, iface: &str, ifindex: u32) {
    match probe_tcx(ifindex) {
        Ok(()) => check(
            c,
            "tcx",
            Level::Ok,
            format!("tcx ingress attaches on {iface}"),
            None,
        ),
        Err(e) => check(
            c,
            "tcx",
            Level::Warn,
            format!("tcx unavailable ({e}): pod veths will use classic tc (clsact), and the uplink gets no egress program (replies of host-network endpoints to clients XDP balanced leave untranslated)"),
            Some("kernel 6.6+ has tcx".into()),
        ),
    }
}
