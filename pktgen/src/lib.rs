//! # xlb-pktgen
//!
//! A packet generator on BPF_PROG_RUN with `BPF_F_TEST_XDP_LIVE_FRAMES`: the
//! generator XDP program (`bpf/pktgen.bpf.c`) rewrites a header template into
//! every frame, varies the flow from a per-CPU counter, stamps the time and
//! returns XDP_TX (or redirects), so each repetition sends one real frame out
//! of the chosen interface. One thread per requested CPU, pinned. A sink XDP
//! program counts what arrives per CPU and collects latency into a per-CPU
//! log-linear histogram, turned into percentiles here.
//!
//! libbpf-rs has no `batch_size` for test runs, so the run calls libbpf-sys's
//! `bpf_prog_test_run_opts` directly.
//!
//! ```no_run
//! use xlb_pktgen::{L4, Limit, PacketSpec, Pktgen, RunOptions, Template};
//! let spec = PacketSpec::new("198.18.0.64:1024".parse()?, "198.18.0.2:80".parse()?, L4::Udp);
//! let gen = Pktgen::load()?;
//! gen.set_template(&Template::build(&spec)?, 0)?;
//! let report = gen.run(&RunOptions::new(7, vec![0], Limit::Count(1000)), |_| {})?;
//! assert_eq!(report.sent(), 1000);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod run;
mod sink;
mod template;

pub use run::{
    attach_xdp_link, attach_xdp_link_mode, enable_run_stats, enter_netns, pin_to_cpu,
    prog_run_count, CoreReport, Limit, Pktgen, Progress, RunOptions, RunReport,
};
pub use sink::{bucket_value, Latency, SinkCpu, SinkStats, HIST_BUCKETS};
pub use template::{
    PacketSpec, Template, Vary, Vxlan, L4, MAX_SIZE, MIN_SIZE, STAMP_LEN, STAMP_MAGIC, TMPL_MAX,
};

/// Errors of the generator and sink.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Bpf {
        what: String,
        source: libbpf_rs::Error,
    },
    #[error("packet spec: {0}")]
    Spec(String),
    #[error("{what}: {source}")]
    Os {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Run(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn bpf_err(what: impl Into<String>) -> impl FnOnce(libbpf_rs::Error) -> Error {
    let what = what.into();
    move |source| Error::Bpf { what, source }
}

pub(crate) fn os_err(what: impl Into<String>) -> Error {
    Error::Os {
        what: what.into(),
        source: std::io::Error::last_os_error(),
    }
}
