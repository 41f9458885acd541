//! The sink's counters and latency histogram.

use xlb_bpf::pktgen::types::pg_sink_stats;

/// Buckets of the sink's log-linear histogram (`XLB_PG_HIST_BUCKETS`, consts.h).
pub const HIST_BUCKETS: usize = xlb_bpf::consts::XLB_PG_HIST_BUCKETS as usize;

/// One CPU's sink counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SinkCpu {
    /// Every frame the sink saw.
    pub packets: u64,
    pub bytes: u64,
    /// Frames carrying a generator stamp (ours, whatever was done to them).
    pub stamped: u64,
    /// Stamped frames that arrived VXLAN-encapsulated.
    pub vxlan: u64,
}

/// The sink's counters (per CPU) and the histogram summed over CPUs.
#[derive(Clone, Debug, Default)]
pub struct SinkStats {
    pub per_cpu: Vec<SinkCpu>,
    /// Latency counts per bucket, nanoseconds; see [`bucket_value`].
    pub hist: Vec<u64>,
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    /// Samples behind the figures.
    pub samples: u64,
}

/// The middle of bucket `b` in nanoseconds (the inverse of the C
/// `lat_bucket`: values below 16 have their own bucket, then 16 per power of two).
pub fn bucket_value(b: usize) -> u64 {
    if b < 16 {
        return b as u64;
    }
    let e = (b / 16 + 3) as u32;
    let sub = (b % 16) as u64;
    let low = (16 + sub) << (e - 4);
    low + ((1u64 << (e - 4)) >> 1)
}

impl SinkStats {
    pub(crate) fn from_percpu(v: &[pg_sink_stats]) -> Self {
        let mut hist = vec![0u64; HIST_BUCKETS];
        for s in v {
            for (h, x) in hist.iter_mut().zip(s.hist.iter()) {
                *h += x;
            }
        }
        Self {
            per_cpu: v
                .iter()
                .map(|s| SinkCpu {
                    packets: s.packets,
                    bytes: s.bytes,
                    stamped: s.stamped,
                    vxlan: s.vxlan,
                })
                .collect(),
            hist,
        }
    }

    /// Sum over CPUs.
    pub fn total(&self) -> SinkCpu {
        self.per_cpu
            .iter()
            .fold(SinkCpu::default(), |a, c| SinkCpu {
                packets: a.packets + c.packets,
                bytes: a.bytes + c.bytes,
                stamped: a.stamped + c.stamped,
                vxlan: a.vxlan + c.vxlan,
            })
    }

    /// Counters of `cpu` (zero when out of range).
    pub fn cpu(&self, cpu: usize) -> SinkCpu {
        self.per_cpu.get(cpu).copied().unwrap_or_default()
    }

    /// Difference `self - earlier` (counters only grow between resets).
    pub fn since(&self, earlier: &SinkStats) -> SinkStats {
        let per_cpu = self
            .per_cpu
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let e = earlier.cpu(i);
                SinkCpu {
                    packets: c.packets.saturating_sub(e.packets),
                    bytes: c.bytes.saturating_sub(e.bytes),
                    stamped: c.stamped.saturating_sub(e.stamped),
                    vxlan: c.vxlan.saturating_sub(e.vxlan),
                }
            })
            .collect();
        let hist = self
            .hist
            .iter()
            .enumerate()
            .map(|(i, h)| h.saturating_sub(earlier.hist.get(i).copied().unwrap_or(0)))
            .collect();
        SinkStats { per_cpu, hist }
    }

    /// p50/p99/p99.9 through an hdrhistogram; `None` without samples.
    pub fn latency(&self) -> Option<Latency> {
        let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 1 << 46, 3).ok()?;
        let mut samples = 0;
        for (b, &n) in self.hist.iter().enumerate() {
            if n > 0 {
                h.saturating_record_n(bucket_value(b).max(1), n);
                samples += n;
            }
        }
        if samples == 0 {
            return None;
        }
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Some(Latency {
            p50: us(0.5),
            p99: us(0.99),
            p999: us(0.999),
            samples,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The C bucket function, transcribed, to check the inverse against.
    fn lat_bucket(v: u64) -> usize {
        if v < 16 {
            return v as usize;
        }
        let e = 63 - v.leading_zeros();
        let b = (e as usize - 3) * 16 + ((v >> (e - 4)) & 15) as usize;
        b.min(HIST_BUCKETS - 1)
    }

    #[test]
    fn buckets_invert_within_one_sixteenth() {
        for v in [
            1u64,
            15,
            16,
            17,
            31,
            32,
            100,
            1000,
            12_345,
            1 << 30,
            987_654_321,
        ] {
            let b = lat_bucket(v);
            let m = bucket_value(b);
            assert_eq!(lat_bucket(m), b, "{v}");
            assert!((m as f64 - v as f64).abs() <= v as f64 / 16.0, "{v} -> {m}");
        }
    }

    #[test]
    fn percentiles_from_buckets() {
        let mut s = SinkStats {
            per_cpu: vec![SinkCpu::default()],
            hist: vec![0; HIST_BUCKETS],
        };
        assert!(s.latency().is_none());
        s.hist[lat_bucket(2_000)] = 990;
        s.hist[lat_bucket(50_000)] = 10;
        let l = s.latency().unwrap();
        assert!((l.p50 - 2.0).abs() < 0.2, "{l:?}");
        assert!((l.p999 - 50.0).abs() < 4.0, "{l:?}");
        assert_eq!(l.samples, 1000);
    }
}
