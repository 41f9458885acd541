//! Wall times per executable: read to order the next run, written after
//! each one, and the final table.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::pool::Outcome;

const FILE: &str = "xlb-test-times.tsv";
/// Committed times, for a fresh clone (CI): refresh by copying
/// `target/xlb-test-times.tsv` over it.
const COMMITTED: &str = ".ci/test-times.tsv";

/// The target directory of an executable in `TARGET/PROFILE/deps/`.
pub fn target_dir(exe: &Path) -> Option<PathBuf> {
    Some(exe.parent()?.parent()?.parent()?.to_path_buf())
}

/// Known wall times by key: the last run's, else the committed ones.
pub fn load(target: &Path) -> BTreeMap<String, Duration> {
    let text = std::fs::read_to_string(target.join(FILE))
        .or_else(|_| std::fs::read_to_string(COMMITTED))
        .unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (secs, key) = l.split_once('\t')?;
            Some((key.to_string(), Duration::from_secs_f64(secs.parse().ok()?)))
        })
        .collect()
}

/// Writes this run's wall times (merged over the known ones, so a run of a
/// few executables keeps the others').
pub fn save(target: &Path, outcomes: &[Outcome]) {
    let mut all = load(target);
    for o in outcomes {
        all.insert(o.key.clone(), o.wall);
    }
    let mut text = String::new();
    for (k, d) in &all {
        text.push_str(&format!("{:.1}\t{k}\n", d.as_secs_f64()));
    }
    if let Err(e) = std::fs::write(target.join(FILE), text) {
        eprintln!("xlb-test-run: writing {}: {e}", target.join(FILE).display());
    }
}

/// Prints the table (slowest first) and the failures; whether any failed.
pub fn report(outcomes: &[Outcome], build: Duration, total: Duration) -> bool {
    let mut v: Vec<&Outcome> = outcomes.iter().collect();
    v.sort_by_key(|o| std::cmp::Reverse(o.wall));
    println!("\n==== wall s   cpu s  executable");
    for o in &v {
        println!(
            "{:>10.1} {:>7.1}  {}{}",
            o.wall.as_secs_f64(),
            o.cpu.as_secs_f64(),
            o.label,
            if o.ok {
                String::new()
            } else {
                format!("  FAILED ({})", o.status)
            }
        );
    }
    let (wall, cpu): (Duration, Duration) = outcomes
        .iter()
        .fold(Default::default(), |(w, c), o| (w + o.wall, c + o.cpu));
    println!(
        "==== {} executables: {:.0} s of tests ({:.0} s cpu) in {:.0} s; build {:.0} s; total {:.0} s",
        outcomes.len(),
        wall.as_secs_f64(),
        cpu.as_secs_f64(),
        (total - build).as_secs_f64(),
        build.as_secs_f64(),
        total.as_secs_f64()
    );
    let failed: Vec<&&Outcome> = v.iter().filter(|o| !o.ok).collect();
    for o in &failed {
        println!("FAILED: {} ({})", o.label, o.status);
    }
    !failed.is_empty()
}
