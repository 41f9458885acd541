//! The test executables of a `cargo test --no-run` build, read from cargo's
//! JSON messages (`compiler-artifact` lines of test-profile targets).
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One test executable: a crate's unit tests, a `tests/*.rs` file, ...
#[derive(Clone, Debug)]
pub struct Binary {
    /// `PACKAGE KIND NAME`, e.g. `xlb test agent_e2e`: stable across builds.
    pub key: String,
    /// The package name (`CARGO_PKG_NAME`).
    pub package: String,
    /// What cargo prints when running it, e.g. `tests/agent_e2e.rs`.
    pub label: String,
    pub exe: PathBuf,
    /// The package's directory: cargo runs tests there.
    pub dir: PathBuf,
}

/// Builds the tests (`cargo test --no-run ARGS`; diagnostics and progress go
/// to stderr as usual) and returns the executables, or why it failed.
pub fn build(cargo: &str, args: &[String]) -> Result<Vec<Binary>, String> {
    let mut cmd = Command::new(cargo);
    clean_env(&mut cmd);
    let mut child = cmd
        .args([
            "test",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawning {cargo}: {e}"))?;
    let mut bins = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.map_err(|e| format!("reading cargo's output: {e}"))?;
        if let Some(b) = parse_artifact(&line) {
            bins.push(b);
        }
    }
    let st = child
        .wait()
        .map_err(|e| format!("waiting for cargo: {e}"))?;
    if !st.success() {
        return Err(format!("cargo test --no-run: {st}"));
    }
    Ok(bins)
}

/// Removes what `cargo run` sets for the program it runs (when this runner
/// is started that way): cargo compares the variables build scripts watch
/// (`rerun-if-env-changed`, ring: `CARGO_PKG_NAME`) with their last run's
/// and would rebuild those crates and everything above them.
pub fn clean_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        let set_by_run = k.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_MANIFEST_LINKS",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "OUT_DIR",
            ]
            .contains(&&*k);
        if set_by_run {
            cmd.env_remove(&*k);
        }
    }
}

/// A test executable from one JSON message line, if it is one.
fn parse_artifact(line: &str) -> Option<Binary> {
    if field(line, "reason")? != "compiler-artifact" {
        return None;
    }
    let profile = &line[line.find("\"profile\":")?..];
    if !profile.contains("\"test\":true") {
        return None;
    }
    let exe = PathBuf::from(field(line, "executable")?);
    let manifest = PathBuf::from(field(line, "manifest_path")?);
    let dir = manifest.parent()?.to_path_buf();
    let target = &line[line.find("\"target\":")?..];
    let kind = field(target, "kind")?;
    let name = field(target, "name")?;
    let src = PathBuf::from(field(target, "src_path")?);
    let rel = src.strip_prefix(&dir).unwrap_or(&src).display().to_string();
    let package = package_name(&field(line, "package_id")?, &dir);
    let label = if kind == "lib" || kind == "bin" && name == package {
        format!("unittests {rel} ({package})")
    } else {
        format!("{rel} ({package})")
    };
    Some(Binary {
        key: format!("{package} {kind} {name}"),
        package,
        label,
        exe,
        dir,
    })
}

/// The package name from a package id: `path+file:///dir#name@0.1.0`, or
/// `path+file:///dir/name#0.1.0` (the directory's name is the package's).
fn package_name(id: &str, dir: &Path) -> String {
    let frag = id.rsplit('#').next().unwrap_or(id);
    match frag.split_once('@') {
        Some((name, _)) => name.to_string(),
        None => dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
    }
}

/// The first string value of `"key":` in `json` (for arrays, the first
/// element): enough for cargo's messages, whose strings here are paths and
/// names (escapes `\"` and `\\` are undone).
fn field(json: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":");
    let rest = &json[json.find(&pat)? + pat.len()..];
    let rest = rest.trim_start().trim_start_matches('[');
    let rest = rest.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"reason":"compiler-artifact","package_id":"path+file:///w/x/loader#xlb-loader@0.1.0","manifest_path":"/w/x/loader/Cargo.toml","target":{"kind":["test"],"crate_types":["bin"],"name":"attach","src_path":"/w/x/loader/tests/attach.rs","edition":"2021","doctest":false,"test":true},"profile":{"opt_level":"0","debuginfo":0,"debug_assertions":true,"overflow_checks":true,"test":true},"features":[],"filenames":["/w/x/target/debug/deps/attach-0a"],"executable":"/w/x/target/debug/deps/attach-0a","fresh":true}"#;

    #[test]
    fn reads_a_test_artifact() {
        let b = parse_artifact(LINE).unwrap();
        assert_eq!(b.key, "xlb-loader test attach");
        assert_eq!(b.package, "xlb-loader");
        assert_eq!(b.label, "tests/attach.rs (xlb-loader)");
        assert_eq!(b.exe, PathBuf::from("/w/x/target/debug/deps/attach-0a"));
        assert_eq!(b.dir, PathBuf::from("/w/x/loader"));
    }

    #[test]
    fn skips_non_test_artifacts() {
        let lib = LINE.replace("\"test\":true}", "\"test\":false}");
        assert!(parse_artifact(&lib).is_none());
        let noexe = LINE.replace(
            "\"executable\":\"/w/x/target/debug/deps/attach-0a\"",
            "\"executable\":null",
        );
        assert!(parse_artifact(&noexe).is_none());
        assert!(parse_artifact(r#"{"reason":"build-finished","success":true}"#).is_none());
    }

    #[test]
    fn names_packages_and_unit_tests() {
        assert_eq!(
            package_name("path+file:///w/x/pktgen#0.1.0", Path::new("/w/x/pktgen")),
            "pktgen"
        );
        let lib = LINE
            .replace("[\"test\"]", "[\"lib\"]")
            .replace("\"attach\"", "\"xlb_loader\"")
            .replace("tests/attach.rs", "src/lib.rs");
        assert_eq!(
            parse_artifact(&lib).unwrap().label,
            "unittests src/lib.rs (xlb-loader)"
        );
        assert_eq!(field(r#"{"a":"x\"y\\z"}"#, "a").unwrap(), "x\"y\\z");
    }
}
