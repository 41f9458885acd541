//! `xlb-test-run`: what `make test` runs. It builds the tests like `cargo
//! test` (`cargo test --no-run ARGS`), then runs the test executables and the
//! doc tests several at a time instead of one after another, longest first,
//! and prints each one's output whole when it ends, then a table of wall and
//! CPU times. Every executable runs, whatever the others do (as with
//! `--no-fail-fast`); the exit status is 101 if any failed.
//!
//! ```text
//! xlb-test-run [-j N] [CARGO TEST ARGS] [-- TEST BINARY ARGS]
//! ```
//!
//! Without cargo arguments it runs `--workspace`. `-j` (or `XLB_TEST_JOBS`)
//! sets how many run at once (default 3: the lab tests mostly wait on their
//! namespaces' agents and backends). Order comes from the wall times of the
//! last run (`target/xlb-test-times.tsv`, written at the end), else from
//! `.ci/test-times.tsv`; executables in neither run first.
//!
//! Each executable runs as cargo runs it: in its package's directory, with
//! `CARGO_MANIFEST_DIR` and `CARGO_PKG_NAME` set.
mod cargo;
mod pool;
mod times;

use std::process::Command;
use std::time::Instant;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let split = args.iter().position(|a| a == "--");
    let pass: Vec<String> = match split {
        Some(i) => args.split_off(i).into_iter().skip(1).collect(),
        None => Vec::new(),
    };
    let mut jobs: usize = std::env::var("XLB_TEST_JOBS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    if let Some(i) = args.iter().position(|a| a == "-j" || a == "--jobs") {
        let n = args.get(i + 1).and_then(|s| s.parse().ok());
        let Some(n) = n else {
            eprintln!("xlb-test-run: -j needs a number");
            std::process::exit(2);
        };
        jobs = n;
        args.drain(i..i + 2);
    }
    if args.is_empty() {
        args.push("--workspace".into());
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());

    let start = Instant::now();
    let bins = match cargo::build(&cargo, &args) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("xlb-test-run: {e}");
            std::process::exit(101);
        }
    };
    let build = start.elapsed();
    let Some(target) = bins.first().and_then(|b| times::target_dir(&b.exe)) else {
        eprintln!("xlb-test-run: no test executables");
        std::process::exit(if args.iter().any(|a| a == "--doc") {
            0
        } else {
            101
        });
    };
    let known = times::load(&target);

    let mut all = Vec::new();
    for b in &bins {
        let mut cmd = Command::new(&b.exe);
        cmd.args(&pass)
            .current_dir(&b.dir)
            .env("CARGO_MANIFEST_DIR", &b.dir)
            .env("CARGO_PKG_NAME", &b.package);
        all.push(pool::Job {
            key: b.key.clone(),
            label: b.label.clone(),
            cmd,
            estimate: known.get(&b.key).copied(),
        });
    }
    if runs_doc_tests(&args) {
        let key = "doc-tests".to_string();
        let mut cmd = Command::new(&cargo);
        cargo::clean_env(&mut cmd);
        cmd.args(["test", "--doc"]).args(&args);
        if !pass.is_empty() {
            cmd.arg("--").args(&pass);
        }
        all.push(pool::Job {
            estimate: known.get(&key).copied(),
            key,
            label: "doc tests".into(),
            cmd,
        });
    }
    eprintln!(
        "xlb-test-run: {} jobs, {jobs} at a time (build {:.1} s)",
        all.len(),
        build.as_secs_f64()
    );
    let outcomes = pool::run(all, jobs);
    times::save(&target, &outcomes);
    let failed = times::report(&outcomes, build, start.elapsed());
    std::process::exit(if failed { 101 } else { 0 });
}

/// Whether `cargo test ARGS` would run doc tests: no target selection.
fn runs_doc_tests(args: &[String]) -> bool {
    const SELECT: &[&str] = &[
        "--lib",
        "--bin",
        "--bins",
        "--test",
        "--tests",
        "--example",
        "--examples",
        "--bench",
        "--benches",
        "--all-targets",
        "--doc",
    ];
    !args.iter().any(|a| {
        SELECT
            .iter()
            .any(|s| a == s || a.starts_with(&format!("{s}=")))
    })
}
