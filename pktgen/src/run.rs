//! Loading the generator/sink object and running the generator: one pinned
//! thread per CPU, each calling `bpf_prog_test_run_opts` in live-frames mode.

use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, OpenObject};
use xlb_bpf::pktgen::types::{pg_gen_state, pg_sink_stats};
use xlb_bpf::pktgen::{PktgenSkel, PktgenSkelBuilder};

use crate::sink::SinkStats;
use crate::template::Template;
use crate::{bpf_err, os_err, Error, Result};

/// `BPF_F_TEST_XDP_LIVE_FRAMES`.
const LIVE_FRAMES: u32 = 1 << 1;
/// First test-run call of a run, in packets. Each live-frames call sets up and
/// tears down a page pool (tens of milliseconds on this kernel), so later calls
/// grow to about [`CALL_TARGET`] of work each; the clock and the stop flag are
/// checked between calls.
const FIRST_CHUNK: u64 = 1 << 16;
const MAX_CHUNK: u64 = 1 << 26;
const CALL_TARGET: Duration = Duration::from_millis(250);

/// When a run stops.
#[derive(Clone, Copy, Debug)]
pub enum Limit {
    /// Exactly this many packets in total, split over the CPUs.
    Count(u64),
    /// As many as fit in this time on every CPU.
    Duration(Duration),
}

/// How to run the generator.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Interface the frames leave from (XDP_TX out of it), in `netns`.
    pub ifindex: u32,
    /// Network namespace (a path like /run/netns/NAME) the threads enter first.
    pub netns: Option<PathBuf>,
    /// One thread per CPU, pinned.
    pub cpus: Vec<usize>,
    pub limit: Limit,
    /// Total packets per second over all CPUs; `None` = as fast as possible.
    pub rate_pps: Option<u64>,
    /// Frames per live-frames batch (1..=256).
    pub batch: u32,
    /// Set to stop early (Ctrl-C).
    pub stop: Option<Arc<AtomicBool>>,
}

impl RunOptions {
    pub fn new(ifindex: u32, cpus: Vec<usize>, limit: Limit) -> Self {
        Self {
            ifindex,
            netns: None,
            cpus,
            limit,
            rate_pps: None,
            batch: 64,
            stop: None,
        }
    }
}

/// What one CPU's thread did.
#[derive(Clone, Debug)]
pub struct CoreReport {
    pub cpu: usize,
    /// Frames the generator program produced on this CPU (its per-CPU counter).
    pub sent: u64,
    /// Frames whose template did not fit (dropped by the generator; 0 normally).
    pub errors: u64,
    /// Wall time of this thread's sending loop.
    pub elapsed: Duration,
    /// Kernel-timed busy time of the test runs (BPF_PROG_RUN's own clock:
    /// excludes the per-call page-pool set-up that wall time includes).
    pub busy: Duration,
}

/// A whole run.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub cores: Vec<CoreReport>,
    /// Wall time from the first thread's start to the last one's end.
    pub elapsed: Duration,
    /// Whether the stop flag ended the run early.
    pub interrupted: bool,
}

impl RunReport {
    /// Frames sent on all CPUs.
    pub fn sent(&self) -> u64 {
        self.cores.iter().map(|c| c.sent).sum()
    }
}

/// Live progress, handed to the run's callback about four times a second.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub sent: u64,
    pub elapsed: Duration,
}

/// The loaded generator and sink programs and their maps.
pub struct Pktgen {
    skel: PktgenSkel<'static>,
    frame: Mutex<Option<Vec<u8>>>,
}

/// Enters the network namespace at `path` (e.g. /run/netns/NAME) on the
/// calling thread.
pub fn enter_netns(path: &Path) -> Result<()> {
    let f = std::fs::File::open(path).map_err(|source| Error::Os {
        what: format!("opening netns {}", path.display()),
        source,
    })?;
    // SAFETY: a valid namespace fd; only this thread changes namespace.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(os_err(format!("entering netns {}", path.display())));
    }
    Ok(())
}

/// Pins the calling thread to `cpu`.
pub fn pin_to_cpu(cpu: usize) -> Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET bounds-checks nothing, so check first.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
            return Err(Error::Run(format!("cpu {cpu} out of range")));
        }
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(os_err(format!("pinning to cpu {cpu}")));
        }
    }
    Ok(())
}

#[repr(C)]
#[derive(Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

/// One live-frames run; returns the kernel-timed nanoseconds per repetition
/// (the generator, and everything the frames trigger in softirq on this CPU,
/// without the page pool's set-up and tear-down).
fn test_run(prog_fd: i32, frame: &[u8], ifindex: u32, repeat: u32, batch: u32) -> Result<u32> {
    let ctx = XdpMd {
        data_end: frame.len() as u32,
        ingress_ifindex: ifindex,
        ..Default::default()
    };
    let mut opts = libbpf_sys::bpf_test_run_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _,
        data_in: frame.as_ptr().cast(),
        data_size_in: frame.len() as u32,
        ctx_in: (&ctx as *const XdpMd).cast(),
        ctx_size_in: std::mem::size_of::<XdpMd>() as u32,
        repeat: repeat as i32,
        flags: LIVE_FRAMES,
        batch_size: batch,
        ..Default::default()
    };
    // SAFETY: opts points at live buffers for the whole call.
    let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(prog_fd, &mut opts) };
    if rc != 0 {
        let err = std::io::Error::from_raw_os_error(-rc);
        return Err(Error::Os {
            what: format!("BPF_PROG_RUN live frames (ifindex {ifindex})"),
            source: err,
        });
    }
    Ok(opts.duration)
}

impl Pktgen {
    /// Opens and loads `pktgen.bpf.c` (generator and sink share one object).
    pub fn load() -> Result<Self> {
        // The skeleton borrows its object storage for its whole life: one
        // small leaked box per load (the BPF object is closed on drop).
        let storage: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let open = PktgenSkelBuilder::default()
            .open(storage)
            .map_err(bpf_err("opening the pktgen object"))?;
        let skel = open.load().map_err(bpf_err("loading the pktgen object"))?;
        Ok(Self {
            skel,
            frame: Mutex::new(None),
        })
    }

    /// The generator program (run by [`Pktgen::run`]).
    pub fn gen_prog(&self) -> &libbpf_rs::ProgramMut<'static> {
        &self.skel.progs.xlb_pg_gen
    }

    /// The sink program: attach it where the frames arrive.
    pub fn sink_prog(&self) -> &libbpf_rs::ProgramMut<'static> {
        &self.skel.progs.xlb_pg_sink
    }

    /// Installs `t` as the frame every repetition sends; `redirect_ifindex`
    /// 0 sends with XDP_TX out of the run's interface, else bpf_redirect.
    pub fn set_template(&self, t: &Template, redirect_ifindex: u32) -> Result<()> {
        let conf = t.conf(redirect_ifindex);
        // SAFETY: pg_conf is Plain.
        let v = unsafe { plain::as_bytes(&conf) };
        self.skel
            .maps
            .pg_conf
            .update(&0u32.to_ne_bytes(), v, MapFlags::ANY)
            .map_err(bpf_err("writing pg_conf"))?;
        *self.template_slot() = Some(t.frame.clone());
        Ok(())
    }

    fn template_slot(&self) -> std::sync::MutexGuard<'_, Option<Vec<u8>>> {
        self.frame.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn percpu<T: plain::Plain + Default + Copy>(map: &libbpf_rs::MapMut<'_>) -> Result<Vec<T>> {
        let vals = map
            .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(bpf_err("reading a per-CPU map"))?
            .unwrap_or_default();
        Ok(vals
            .iter()
            .map(|b| {
                let mut v = T::default();
                let _ = plain::copy_from_bytes(&mut v, b);
                v
            })
            .collect())
    }

    /// Per-CPU generator counters (repetitions run, template errors).
    pub fn gen_counts(&self) -> Result<Vec<(u64, u64)>> {
        Ok(Self::percpu::<pg_gen_state>(&self.skel.maps.pg_gen)?
            .into_iter()
            .map(|s| (s.seq, s.errors))
            .collect())
    }

    /// The sink's per-CPU counters and histogram.
    pub fn sink_stats(&self) -> Result<SinkStats> {
        Ok(SinkStats::from_percpu(&Self::percpu::<pg_sink_stats>(
            &self.skel.maps.pg_sink,
        )?))
    }

    /// Zeroes the sink's counters and histogram on every CPU.
    pub fn reset_sink(&self) -> Result<()> {
        let n = libbpf_rs::num_possible_cpus().map_err(bpf_err("counting CPUs"))?;
        let zero = vec![0u8; std::mem::size_of::<pg_sink_stats>()];
        self.skel
            .maps
            .pg_sink
            .update_percpu(&0u32.to_ne_bytes(), &vec![zero; n], MapFlags::ANY)
            .map_err(bpf_err("resetting pg_sink"))
    }

    /// Sends frames of the current template; `progress` is called from the
    /// calling thread while the generator threads run.
    pub fn run(&self, o: &RunOptions, mut progress: impl FnMut(Progress)) -> Result<RunReport> {
        let frame = self
            .template_slot()
            .clone()
            .ok_or_else(|| Error::Run("no template: call set_template first".into()))?;
        if o.cpus.is_empty() {
            return Err(Error::Run("no CPU to run on".into()));
        }
        let mut seen = o.cpus.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != o.cpus.len() {
            return Err(Error::Run("a CPU is listed twice".into()));
        }
        if !(1..=256).contains(&o.batch) {
            return Err(Error::Run(format!("batch {} not in 1..=256", o.batch)));
        }
        if o.rate_pps == Some(0) {
            return Err(Error::Run("rate must be positive".into()));
        }
        let before = self.gen_counts()?;
        let fd = self.gen_prog().as_fd().as_raw_fd();
        let n = o.cpus.len() as u64;
        let counter = Arc::new(AtomicU64::new(0));
        let stop = o.stop.clone().unwrap_or_default();
        let start = Instant::now();
        let results: Vec<Result<(usize, Duration, Duration)>> = std::thread::scope(|s| {
            let handles: Vec<_> = o
                .cpus
                .iter()
                .enumerate()
                .map(|(i, &cpu)| {
                    let quota = match o.limit {
                        Limit::Count(c) => Some(c / n + u64::from((i as u64) < c % n)),
                        Limit::Duration(_) => None,
                    };
                    let frame = &frame;
                    let counter = counter.clone();
                    let stop = stop.clone();
                    s.spawn(move || -> Result<(usize, Duration, Duration)> {
                        if let Some(ns) = &o.netns {
                            enter_netns(ns)?;
                        }
                        pin_to_cpu(cpu)?;
                        let t0 = Instant::now();
                        let rate = o.rate_pps.map(|r| (r as f64 / n as f64).max(1.0));
                        let mut chunk = match rate {
                            Some(r) => ((r / 100.0) as u64).clamp(1, FIRST_CHUNK),
                            None => FIRST_CHUNK,
                        };
                        let mut sent = 0u64;
                        let mut busy_ns = 0u128;
                        loop {
                            if stop.load(Ordering::Relaxed) {
                                break;
                            }
                            let want = match (quota, o.limit) {
                                (Some(q), _) => q.saturating_sub(sent).min(chunk),
                                (None, Limit::Duration(d)) => match d.checked_sub(t0.elapsed()) {
                                    None => 0,
                                    // do not run far past the deadline
                                    Some(left) => {
                                        let per_ns =
                                            sent as f64 / t0.elapsed().as_nanos().max(1) as f64;
                                        let fit = (per_ns * left.as_nanos() as f64) as u64;
                                        if sent == 0 {
                                            chunk
                                        } else {
                                            chunk.min(fit.max(1))
                                        }
                                    }
                                },
                                (None, Limit::Count(_)) => 0,
                            };
                            if want == 0 {
                                break;
                            }
                            if let Some(r) = rate {
                                let due = Duration::from_secs_f64(sent as f64 / r);
                                if let Some(wait) = due.checked_sub(t0.elapsed()) {
                                    std::thread::sleep(wait);
                                }
                            }
                            let call = Instant::now();
                            match test_run(fd, frame, o.ifindex, want as u32, o.batch) {
                                Ok(ns_per_pkt) => {
                                    busy_ns += u128::from(ns_per_pkt) * u128::from(want);
                                    if rate.is_none() {
                                        // aim the next call at CALL_TARGET of work
                                        let took = call.elapsed().as_secs_f64().max(1e-6);
                                        let next = want as f64 * CALL_TARGET.as_secs_f64() / took;
                                        chunk = (next as u64).clamp(FIRST_CHUNK, MAX_CHUNK);
                                    }
                                }
                                // a signal interrupted the run part-way: the
                                // per-CPU counter tells how far it got
                                Err(Error::Os { source, .. })
                                    if source.raw_os_error() == Some(libc::EINTR) =>
                                {
                                    stop.store(true, Ordering::Relaxed);
                                    break;
                                }
                                Err(e) => return Err(e),
                            }
                            sent += want;
                            counter.fetch_add(want, Ordering::Relaxed);
                        }
                        let busy = Duration::from_nanos(busy_ns.min(u64::MAX as u128) as u64);
                        Ok((cpu, t0.elapsed(), busy))
                    })
                })
                .collect();
            while handles.iter().any(|h| !h.is_finished()) {
                std::thread::sleep(Duration::from_millis(50));
                if start.elapsed().as_millis() % 250 < 50 {
                    progress(Progress {
                        sent: counter.load(Ordering::Relaxed),
                        elapsed: start.elapsed(),
                    });
                }
            }
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::Run("generator thread panicked".into())))
                })
                .collect()
        });
        let elapsed = start.elapsed();
        let after = self.gen_counts()?;
        let mut cores = Vec::new();
        for r in results {
            let (cpu, t, busy) = r?;
            let (s0, e0) = before.get(cpu).copied().unwrap_or_default();
            let (s1, e1) = after.get(cpu).copied().unwrap_or_default();
            cores.push(CoreReport {
                cpu,
                sent: (s1 - s0).saturating_sub(e1 - e0),
                errors: e1 - e0,
                elapsed: t,
                busy,
            });
        }
        Ok(RunReport {
            cores,
            elapsed,
            interrupted: stop.load(Ordering::Relaxed),
        })
    }
}

use std::os::fd::AsFd;

/// Attaches the XDP program `prog_fd` to `ifindex` (in the calling thread's
/// namespace) through a BPF link; dropping the returned fd detaches it.
/// Takes a raw program fd so it can run on a thread inside another namespace.
pub fn attach_xdp_link(prog_fd: i32, ifindex: u32) -> Result<std::os::fd::OwnedFd> {
    attach_xdp_link_mode(prog_fd, ifindex, false)
}

/// [`attach_xdp_link`], with `native` = driver mode only (`XDP_FLAGS_DRV_MODE`:
/// fails with `EOPNOTSUPP` where the driver has no XDP support, instead of
/// falling back to generic XDP).
pub fn attach_xdp_link_mode(
    prog_fd: i32,
    ifindex: u32,
    native: bool,
) -> Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: a zeroed opts struct is libbpf's documented default.
    let mut opts: libbpf_sys::bpf_link_create_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as _;
    if native {
        opts.flags = libbpf_sys::XDP_FLAGS_DRV_MODE;
    }
    // SAFETY: plain syscall wrapper; opts is a valid, sized struct.
    let fd =
        unsafe { libbpf_sys::bpf_link_create(prog_fd, ifindex as i32, libbpf_sys::BPF_XDP, &opts) };
    if fd < 0 {
        return Err(Error::Os {
            what: format!(
                "attaching XDP{} to ifindex {ifindex}",
                if native { " (driver mode)" } else { "" }
            ),
            source: std::io::Error::from_raw_os_error(-fd),
        });
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Turns on the kernel's per-program run counters (`BPF_ENABLE_STATS`) for as
/// long as the returned fd is open. They cost two clock reads per program run.
pub fn enable_run_stats() -> Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain syscall wrapper.
    let fd = unsafe { libbpf_sys::bpf_enable_stats(libbpf_sys::BPF_STATS_RUN_TIME) };
    if fd < 0 {
        return Err(Error::Os {
            what: "enabling BPF run statistics".into(),
            source: std::io::Error::from_raw_os_error(-fd),
        });
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// How many times the program `prog_fd` ran while run statistics were on
/// ([`enable_run_stats`]).
pub fn prog_run_count(prog_fd: i32) -> Result<u64> {
    // SAFETY: zeroed bpf_prog_info is valid input; the kernel fills it.
    let mut info: libbpf_sys::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: info/len describe a valid buffer.
    let r = unsafe {
        libbpf_sys::bpf_prog_get_info_by_fd(prog_fd, &mut info as *mut _ as *mut _, &mut len)
    };
    if r < 0 {
        return Err(Error::Os {
            what: "reading program info".into(),
            source: std::io::Error::from_raw_os_error(-r),
        });
    }
    Ok(info.run_cnt)
}
