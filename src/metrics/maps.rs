//! Map occupancy for the metrics: what each map holds, counted off the
//! scrape path ([`super::Metrics::sample`]).

use std::collections::BTreeMap;
use std::os::fd::AsFd as _;
use std::sync::Arc;
use std::time::Duration;

use libbpf_rs::MapCore as _;
use xlb_bpf::Maps;

use super::unix_now;

/// Every how many samples the LRU maps are counted too: counting a full
/// connection-tracking table costs about half a second of CPU at 1M
/// entries, so once a minute.
pub const LRU_SAMPLE_RATIO: u32 = 6;
/// Maps that grow with traffic, counted only every [`LRU_SAMPLE_RATIO`] samples.
pub const LRU_MAPS: [&str; 4] = ["ct", "affinity", "ct6", "affinity6"];

/// Map occupancy as last sampled: (map, entries in use, capacity).
#[derive(Clone, Debug, Default)]
pub struct MapSample {
    pub at_unix: f64,
    pub maps: Vec<(&'static str, u64, u32)>,
}

/// Entries in use per map (the IPv6 maps after the IPv4 ones, when pinned):
/// key counts for hash-like maps, active slots for `backends` and
/// `backends6`, slots owned by Services of either family for `maglev`, the
/// fixed size for the `config`, `config6` and `stats` arrays.
pub fn map_usage(maps: &Maps) -> xlb_bpf::Result<Vec<(&'static str, u64)>> {
    map_usage_with(maps, &|_| None)
}

/// [`map_usage`], with the figure of each map for which `known` has one
/// taken from it instead of counted.
pub fn map_usage_with(
    maps: &Maps,
    known: &dyn Fn(&str) -> Option<u64>,
) -> xlb_bpf::Result<Vec<(&'static str, u64)>> {
    let services = maps.services()?;
    let services6 = maps.services6()?;
    let mut regions: Vec<(u32, u32)> = services
        .iter()
        .map(|(_, v)| (v.table_off, v.table_size))
        .chain(services6.iter().map(|(_, v)| (v.table_off, v.table_size)))
        .collect();
    regions.sort_unstable();
    regions.dedup();
    let maglev: u64 = regions.iter().map(|(_, n)| u64::from(*n)).sum();
    let mut out = Vec::new();
    let v6 = maps.v6().map(|m| m.all()).into_iter().flatten();
    for (name, h) in maps.all().into_iter().chain(v6) {
        if let Some(n) = known(name) {
            out.push((name, n));
            continue;
        }
        let used = match name {
            "services" => services.len() as u64,
            "services6" => services6.len() as u64,
            "backends" => maps.backends()?.len() as u64,
            "backends6" => maps.backends6()?.len() as u64,
            "maglev" => maglev,
            "config" | "config6" | "stats" => u64::from(h.max_entries()),
            _ => count_entries(h),
        };
        out.push((name, used));
    }
    Ok(out)
}

/// Entries of a hash-like map, read in batches of 4096 (one syscall per
/// batch instead of one per key); a kernel without batch lookups for the map
/// type gets the key walk.
pub fn count_entries(h: &libbpf_rs::MapHandle) -> u64 {
    use std::os::fd::AsRawFd as _;
    const BATCH: u32 = 4096;
    let (ks, vs) = (h.key_size() as usize, h.value_size() as usize);
    let mut keys = vec![0u8; ks * BATCH as usize];
    let mut vals = vec![0u8; vs * BATCH as usize];
    // The batch token: a bucket index for hash maps; key-sized to be safe.
    let tok = ks.max(8);
    let (mut in_b, mut out_b) = (vec![0u8; tok], vec![0u8; tok]);
    let opts = libbpf_sys::bpf_map_batch_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
        elem_flags: 0,
        flags: 0,
    };
    let mut total = 0u64;
    let mut first = true;
    loop {
        let mut count = BATCH;
        // SAFETY: the buffers hold BATCH keys and values of the map's sizes
        // and a token of at least the key size; `count` says how many fit.
        let rc = unsafe {
            libbpf_sys::bpf_map_lookup_batch(
                h.as_fd().as_raw_fd(),
                if first {
                    std::ptr::null_mut()
                } else {
                    in_b.as_mut_ptr().cast()
                },
                out_b.as_mut_ptr().cast(),
                keys.as_mut_ptr().cast(),
                vals.as_mut_ptr().cast(),
                &mut count,
                &opts,
            )
        };
        total += u64::from(count);
        if rc == -libc::ENOENT {
            return total; // the last batch
        }
        if rc < 0 {
            // No batch support for this map type or kernel.
            return Maps::count(h) as u64;
        }
        std::mem::swap(&mut in_b, &mut out_b);
        first = false;
    }
}

impl super::Metrics {
    /// Counts every map's entries now (walks hash maps: call it off the
    /// request path); scrapes report the result until the next sample.
    pub fn sample_maps(&self) -> xlb_bpf::Result<()> {
        self.sample(true)
    }

    /// Like [`Self::sample_maps`]; without `lru` the [`LRU_MAPS`] keep their
    /// previous figures (counted anyway when there are none yet).
    pub fn sample(&self, lru: bool) -> xlb_bpf::Result<()> {
        let Some(maps) = self.maps() else {
            return Ok(());
        };
        let maps = &*maps;
        let prev: BTreeMap<&str, u64> = self
            .map_sample()
            .map(|s| s.maps.iter().map(|(n, u, _)| (*n, *u)).collect())
            .unwrap_or_default();
        let keep = |n: &str| {
            if lru || !LRU_MAPS.contains(&n) {
                None
            } else {
                prev.get(n).copied()
            }
        };
        let usage = map_usage_with(maps, &keep)?;
        let v6 = maps.v6().map(|m| m.all()).into_iter().flatten();
        let max: BTreeMap<&str, u32> = maps
            .all()
            .into_iter()
            .chain(v6)
            .map(|(n, h)| (n, h.max_entries()))
            .collect();
        let mut sample = MapSample {
            at_unix: unix_now(),
            maps: usage
                .into_iter()
                .map(|(n, used)| (n, used, max.get(n).copied().unwrap_or(0)))
                .collect(),
        };
        // The filters' slots with a count: their fill is the share of
        // frontends / source addresses they cannot rule out.
        sample.maps.extend(maps.filter_usage()?);
        *self.map_sample.lock().unwrap_or_else(|e| e.into_inner()) = Some(sample);
        self.sample_backend_rows(maps)
    }

    /// The last map sample, if any.
    pub fn map_sample(&self) -> Option<MapSample> {
        self.map_sample
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Samples the maps now and then every `every` (the [`LRU_MAPS`] every
    /// [`LRU_SAMPLE_RATIO`] times), on a blocking thread.
    pub fn spawn_sampler(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let m = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for n in 0u32.. {
                tick.tick().await;
                let m2 = m.clone();
                let lru = n % LRU_SAMPLE_RATIO == 0;
                match tokio::task::spawn_blocking(move || m2.sample(lru)).await {
                    Ok(Err(e)) => tracing::warn!("sampling map occupancy: {e}"),
                    Err(e) => tracing::warn!("sampling map occupancy: {e}"),
                    Ok(Ok(())) => {}
                }
            }
        })
    }
}
