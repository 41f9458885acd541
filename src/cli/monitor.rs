//! `xlb monitor`: a live stream of the frames the data plane drops or
//! answers instead of forwarding (reason, 5-tuple, Service), read from the
//! `events` ring buffer, with a summary at Ctrl-C.
//!
//! A BPF ring buffer has one consumer position: two readers would each get
//! a share of the events. So one monitor per pin directory leads: it holds
//! an exclusive lock (`/run/xlb/...monitor.lock`), turns the events on, reads
//! the ring buffer and copies every event as a JSON line to the other
//! monitors, which follow through a Unix socket next to the lock. When the
//! leader ends, a follower takes the lock and leads. The events are off again
//! when the last monitor ends (the leader turns them off on its way out; a
//! killed leader leaves them on, bounded by the rate limit, until the next
//! monitor leads and ends).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use xlb_bpf::monitor::{Event, MonitorCounts, MonitorMaps};
use xlb_bpf::wire::proto_name;

/// Stream the frames the data plane drops or rejects, live.
///
/// Each line: time, reason (docs/dp.md lists them), protocol, source ->
/// destination as received, the Service port, the program (xdp: uplink, tc:
/// a pod's veth), the interface and the frame length. The data plane writes
/// events only while a monitor runs, at most --rate per second and CPU (the
/// rest are counted as suppressed and shown in the summary). Ctrl-C prints
/// the summary. Several monitors may run at once: the first reads the ring
/// buffer and the others receive a copy of every event from it.
///
/// Examples:
///   xlb monitor
///   xlb monitor --json | jq 'select(.reason == "drop_src_range")'
///   xlb monitor --count 10 --rate 100
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct MonitorArgs {
    /// One JSON object per event, and {"summary": {...}} at the end.
    #[arg(long)]
    pub json: bool,
    /// Events per second and CPU the data plane may write (0: its default, 1000).
    #[arg(long, default_value_t = 0)]
    pub rate: u32,
    /// Stop after N events.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

/// One event as printed and as copied to following monitors.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EventLine {
    /// Unix time, seconds.
    pub ts: f64,
    pub reason: String,
    pub proto: String,
    pub src: String,
    pub dst: String,
    pub svc_id: Option<u32>,
    pub service: Option<String>,
    pub hook: String,
    pub ifindex: u32,
    pub len: u32,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn stopping() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// `/run/xlb/<names file stem>.monitor.<ext>` for this pin directory: the
/// leader's lock (`lock`, kept: an flock file) and socket (`sock`).
pub fn state_path(pin_dir: &Path, ext: &str) -> PathBuf {
    let names = crate::names::path(pin_dir);
    PathBuf::from(format!(
        "{}.monitor.{ext}",
        names.with_extension("").display()
    ))
}

fn clock(id: libc::clockid_t) -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// What a monitor printed, for the summary.
struct Printer {
    json: bool,
    events: u64,
    reasons: BTreeMap<String, u64>,
    services: BTreeMap<String, u64>,
    out: std::io::Stdout,
}

impl Printer {
    fn print(&mut self, e: &EventLine) -> anyhow::Result<()> {
        self.events += 1;
        *self.reasons.entry(e.reason.clone()).or_default() += 1;
        let svc = match (&e.service, e.svc_id) {
            (Some(n), _) => n.clone(),
            (None, Some(id)) => format!("svc {id}"),
            (None, None) => "-".into(),
        };
        *self.services.entry(svc.clone()).or_default() += 1;
        let mut o = self.out.lock();
        if self.json {
            writeln!(o, "{}", serde_json::to_string(e)?)?;
        } else {
            let day = e.ts.rem_euclid(86_400.0);
            writeln!(
                o,
                "{:02}:{:02}:{:06.3}  {:<16} {:<4} {:>21} -> {:<21} {:<28} {} if {} {} B",
                (day / 3600.0) as u32,
                (day / 60.0) as u32 % 60,
                day % 60.0,
                e.reason,
                e.proto,
                e.src,
                e.dst,
                svc,
                e.hook,
                e.ifindex,
                e.len
            )?;
        }
        o.flush()?;
        Ok(())
    }

    fn summary(&self, secs: f64, dp: MonitorCounts, rate: u32) -> anyhow::Result<()> {
        let mut o = self.out.lock();
        if self.json {
            let s = serde_json::json!({"summary": {
                "events": self.events, "seconds": secs, "reasons": self.reasons,
                "services": self.services, "written": dp.sent, "suppressed": dp.suppressed,
                "lost": dp.lost,
            }});
            writeln!(o, "{s}")?;
            return Ok(());
        }
        let rate = if rate == 0 {
            xlb_bpf::consts::XLB_MON_RATE_DEFAULT
        } else {
            rate
        };
        writeln!(
            o,
            "--- {} events in {secs:.1} s; data plane meanwhile: {} written, {} suppressed \
             (over {rate}/s per CPU), {} lost (ring buffer full)",
            self.events, dp.sent, dp.suppressed, dp.lost
        )?;
        for (title, m) in [("reason", &self.reasons), ("service", &self.services)] {
            if m.is_empty() {
                continue;
            }
            writeln!(o, "  {title:<30} {:>8}", "events")?;
            for (k, n) in m {
                writeln!(o, "  {k:<30} {n:>8}")?;
            }
        }
        Ok(())
    }
}

pub fn run(a: MonitorArgs, pin_dir: &Path) -> anyhow::Result<()> {
    let mon = MonitorMaps::from_pin_dir(pin_dir)
        .with_context(|| format!("opening the monitor maps under {}", pin_dir.display()))?;
    // SAFETY: installs an async-signal-safe handler (one atomic store).
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    std::fs::create_dir_all(crate::names::STATE_DIR)
        .with_context(|| format!("creating {}", crate::names::STATE_DIR))?;
    let started = Instant::now();
    let before = mon.counts()?;
    let mut p = Printer {
        json: a.json,
        events: 0,
        reasons: BTreeMap::new(),
        services: BTreeMap::new(),
        out: std::io::stdout(),
    };
    let lock_path = state_path(pin_dir, "lock");
    let sock_path = state_path(pin_dir, "sock");
    let done = |p: &Printer| stopping() || a.count.is_some_and(|n| p.events >= n);
    let mut told = false;
    while !done(&p) {
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        // SAFETY: flock on an open file descriptor.
        let locked = unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&lock),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        } == 0;
        if locked {
            lead(&mon, &a, pin_dir, &sock_path, &mut p, &done)?;
            drop(lock);
        } else {
            if !told {
                eprintln!(
                    "xlb monitor: another monitor reads the ring buffer (a BPF ring buffer has \
                     one reader); following its events through {}",
                    sock_path.display()
                );
                told = true;
            }
            follow(&sock_path, &mut p, &done)?;
        }
    }
    let after = mon.counts()?;
    let delta = MonitorCounts {
        sent: after.sent.saturating_sub(before.sent),
        suppressed: after.suppressed.saturating_sub(before.suppressed),
        lost: after.lost.saturating_sub(before.lost),
    };
    p.summary(started.elapsed().as_secs_f64(), delta, a.rate)
}

/// Turns the events off and removes the socket when the leader ends.
struct Leading<'a> {
    mon: &'a MonitorMaps,
    sock: &'a Path,
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.mon.set(false, 0) {
            eprintln!("xlb monitor: turning the events off: {e}");
        }
        let _ = std::fs::remove_file(self.sock);
    }
}

fn lead(
    mon: &MonitorMaps,
    a: &MonitorArgs,
    pin_dir: &Path,
    sock: &Path,
    p: &mut Printer,
    done: &dyn Fn(&Printer) -> bool,
) -> anyhow::Result<()> {
    // The lock is ours: a socket file left there is a dead leader's.
    let _ = std::fs::remove_file(sock);
    let listener =
        UnixListener::bind(sock).with_context(|| format!("listening on {}", sock.display()))?;
    listener.set_nonblocking(true)?;
    let _guard = Leading { mon, sock };
    mon.set(true, a.rate)?;
    let offset = clock(libc::CLOCK_REALTIME) - clock(libc::CLOCK_MONOTONIC);
    let mut names = crate::names::read_or_warn(pin_dir);
    let mut names_read = Instant::now();
    let pending = std::rc::Rc::new(std::cell::RefCell::new(Vec::<Event>::new()));
    let sink = pending.clone();
    let mut b = libbpf_rs::RingBufferBuilder::new();
    b.add(&mon.events, move |d: &[u8]| {
        if let Some(e) = Event::parse(d) {
            sink.borrow_mut().push(e);
        }
        0
    })?;
    let rb = b.build().context("reading the events ring buffer")?;
    let mut followers: Vec<UnixStream> = Vec::new();
    while !done(p) {
        // The data plane wakes the reader only when the ring is half full;
        // otherwise what is there is drained after the 100 ms wait.
        let polled = rb
            .poll(Duration::from_millis(100))
            .and_then(|()| rb.consume());
        if let Err(e) = polled {
            if !stopping() {
                return Err(e).context("reading the events ring buffer");
            }
        }
        while let Ok((s, _)) = listener.accept() {
            if s.set_nonblocking(true).is_ok() {
                followers.push(s);
            }
        }
        let batch: Vec<Event> = std::mem::take(&mut *pending.borrow_mut());
        for e in batch {
            if e.svc_id.is_some_and(|id| !names.contains_key(&id))
                && names_read.elapsed() > Duration::from_secs(1)
            {
                names = crate::names::read_or_warn(pin_dir);
                names_read = Instant::now();
            }
            let line = EventLine {
                ts: offset + e.ts as f64 / 1e9,
                reason: e.reason.name(),
                proto: proto_name(e.proto),
                src: e.src.to_string(),
                dst: e.dst.to_string(),
                svc_id: e.svc_id,
                service: e.svc_id.and_then(|id| names.get(&id).cloned()),
                hook: e.hook.name().into(),
                ifindex: e.ifindex,
                len: e.len,
            };
            let mut text = serde_json::to_string(&line)?;
            text.push('\n');
            // A follower that cannot take a line now (full socket buffer) or
            // went away is dropped; it reconnects or ends.
            followers.retain_mut(|s| s.write_all(text.as_bytes()).is_ok());
            p.print(&line)?;
            if done(p) {
                break;
            }
        }
    }
    Ok(())
}

/// Prints the leader's events until it ends (Ok: the caller may lead) or
/// this monitor is done.
fn follow(sock: &Path, p: &mut Printer, done: &dyn Fn(&Printer) -> bool) -> anyhow::Result<()> {
    let s = match UnixStream::connect(sock) {
        Ok(s) => s,
        Err(_) => {
            // The leader is starting (socket not bound yet) or just ended.
            std::thread::sleep(Duration::from_millis(100));
            return Ok(());
        }
    };
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    while !done(p) {
        match r.read_line(&mut line) {
            Ok(0) => return Ok(()),
            Ok(_) if line.ends_with('\n') => {
                match serde_json::from_str::<EventLine>(&line) {
                    Ok(e) => p.print(&e)?,
                    Err(e) => eprintln!("xlb monitor: a line from the leader: {e}"),
                }
                line.clear();
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("reading the leading monitor's events"),
        }
    }
    Ok(())
}
