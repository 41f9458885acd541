//! Runs jobs (test executables, the doc tests) a few at a time, longest
//! expected first, each with its output in a file that is printed whole when
//! the job ends, so the logs of jobs running together do not interleave.
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One command to run.
pub struct Job {
    pub key: String,
    pub label: String,
    pub cmd: Command,
    /// Expected wall time (from an earlier run); `None`: unknown, run first.
    pub estimate: Option<Duration>,
}

/// How a job went.
pub struct Outcome {
    pub key: String,
    pub label: String,
    pub ok: bool,
    pub status: String,
    pub wall: Duration,
    /// User + system CPU time of the job and its waited-for descendants.
    pub cpu: Duration,
}

/// Runs every job with at most `jobs` at a time; returns the outcomes in the
/// order the jobs ended.
pub fn run(mut all: Vec<Job>, jobs: usize) -> Vec<Outcome> {
    // Unknown first, then longest first: the makespan of a few long jobs
    // among many short ones is set by when the long ones start.
    all.sort_by_key(|j| std::cmp::Reverse(j.estimate.unwrap_or(Duration::MAX)));
    let total = all.len();
    let queue = Arc::new(Mutex::new(all.into_iter()));
    let (tx, rx) = mpsc::channel();
    let workers: Vec<_> = (0..jobs.max(1))
        .map(|_| {
            let (queue, tx) = (Arc::clone(&queue), tx.clone());
            std::thread::spawn(move || loop {
                let Some(job) = queue.lock().unwrap().next() else {
                    break;
                };
                eprintln!("     Started {}", job.label);
                let r = run_one(job);
                if tx.send(r).is_err() {
                    break;
                }
            })
        })
        .collect();
    drop(tx);
    let mut out = Vec::with_capacity(total);
    for (o, log) in rx {
        print_outcome(&o, &log, out.len() + 1, total);
        out.push(o);
    }
    for w in workers {
        let _ = w.join();
    }
    out
}

fn print_outcome(o: &Outcome, log: &str, n: usize, total: usize) {
    let mut so = std::io::stdout().lock();
    let _ = writeln!(
        so,
        "\n==== [{n}/{total}] {}: {} in {:.1} s (cpu {:.1} s)",
        o.label,
        if o.ok { "ok" } else { "FAILED" },
        o.wall.as_secs_f64(),
        o.cpu.as_secs_f64()
    );
    let _ = so.write_all(log.as_bytes());
    if !log.ends_with('\n') && !log.is_empty() {
        let _ = writeln!(so);
    }
    let _ = so.flush();
}

/// Runs one job to its end: its outcome and everything it printed.
fn run_one(mut job: Job) -> (Outcome, String) {
    let start = Instant::now();
    let fail = |why: String| Outcome {
        key: job.key.clone(),
        label: job.label.clone(),
        ok: false,
        status: why,
        wall: start.elapsed(),
        cpu: Duration::ZERO,
    };
    let mut log = match tempfile() {
        Ok(f) => f,
        Err(e) => return (fail(format!("log file: {e}")), String::new()),
    };
    let (Ok(o), Ok(e)) = (log.try_clone(), log.try_clone()) else {
        return (fail("log file: dup failed".into()), String::new());
    };
    let child = job
        .cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(o))
        .stderr(Stdio::from(e))
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => return (fail(format!("spawning: {e}")), String::new()),
    };
    let (status, cpu) = wait4(child.id() as libc::pid_t);
    let mut text = Vec::new();
    let _ = log.rewind();
    let _ = log.read_to_end(&mut text);
    let ok = status == Some(0);
    let status = match status {
        Some(0) => "ok".to_string(),
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".to_string(),
    };
    let o = Outcome {
        key: job.key,
        label: job.label,
        ok,
        status,
        wall: start.elapsed(),
        cpu,
    };
    (o, String::from_utf8_lossy(&text).into_owned())
}

/// Waits for `pid`: its exit code (`None`: a signal) and the CPU time it and
/// the children it waited for used.
fn wait4(pid: libc::pid_t) -> (Option<i32>, Duration) {
    let mut st = 0;
    // SAFETY: an all-zero rusage is valid; wait4 writes into both out-params.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: see above; pid is our child, not yet reaped.
        let r = unsafe { libc::wait4(pid, &mut st, 0, &mut ru) };
        if r == pid {
            break;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return (None, Duration::ZERO);
        }
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let cpu = tv(ru.ru_utime) + tv(ru.ru_stime);
    let code = libc::WIFEXITED(st).then(|| libc::WEXITSTATUS(st));
    (code, cpu)
}

/// An unlinked temporary file.
fn tempfile() -> std::io::Result<File> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let path: PathBuf = std::env::temp_dir().join(format!(
        "xlb-test-run-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(f)
}
