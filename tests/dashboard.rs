//! `deploy/grafana/xlb.json` asks only for what the agent exports: every
//! metric named in a panel query or template variable, and every label (and
//! value) an exact matcher selects on, appear in the `/metrics` scrape of a
//! running agent (root: it creates maps); and every metric family the agent
//! exports has a panel. The agent runs without an interface,
//! on the lab's example manifests, with its own pin directory.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use xlb_testkit::{privileged, unique_name};

const BIN: &str = env!("CARGO_BIN_EXE_xlb");
const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Labels Prometheus adds to every scraped sample.
const TARGET_LABELS: [&str; 2] = ["instance", "job"];

fn dashboard() -> Value {
    let path = Path::new(REPO).join("deploy/grafana/xlb.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every PromQL expression: panel targets (rows included) and query variables.
fn queries(d: &Value) -> Vec<(String, String)> {
    fn panels(list: &Value, out: &mut Vec<(String, String)>) {
        for p in list.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?").to_owned();
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str();
                out.push((
                    title.clone(),
                    expr.expect("a target without expr").to_owned(),
                ));
            }
            panels(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&d["panels"], &mut out);
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] == "query" {
            let q = v["query"]["query"].as_str().or(v["query"].as_str());
            out.push((format!("${}", v["name"]), q.unwrap().to_owned()));
        }
    }
    out
}

/// A selector in a PromQL expression: metric name and its exact (`=`)
/// matchers, plus the names of every other matcher.
#[derive(Debug, PartialEq)]
struct Selector {
    metric: String,
    exact: Vec<(String, String)>,
    other_labels: Vec<String>,
}

/// The `xlb_*` metrics an expression selects (every identifier starting with
/// `xlb_` outside strings and label braces), with their matchers.
fn selectors(expr: &str) -> Vec<Selector> {
    let b = expr.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => i = skip_string(b, i),
            b'{' => i = close_brace(b, i) + 1,
            c if ident(c) && (i == 0 || !ident(b[i - 1])) => {
                let start = i;
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
                let name = &expr[start..i];
                if !name.starts_with("xlb_") {
                    continue;
                }
                let mut s = Selector {
                    metric: name.to_owned(),
                    exact: vec![],
                    other_labels: vec![],
                };
                if b.get(i) == Some(&b'{') {
                    let end = close_brace(b, i);
                    for m in split_matchers(&expr[i + 1..end]) {
                        let k = m.find(['=', '!']).expect("matcher without operator");
                        let label = m[..k].trim().to_owned();
                        let rest = &m[k..];
                        if let Some(v) = rest.strip_prefix('=').filter(|v| !v.starts_with('~')) {
                            s.exact.push((label, v.trim().trim_matches('"').to_owned()));
                        } else {
                            s.other_labels.push(label);
                        }
                    }
                    i = end + 1;
                }
                out.push(s);
            }
            _ => i += 1,
        }
    }
    out
}

/// Index of the `}` closing the `{` at `open` (braces in strings ignored).
fn close_brace(b: &[u8], open: usize) -> usize {
    let mut i = open + 1;
    while i < b.len() && b[i] != b'}' {
        i = if b[i] == b'"' {
            skip_string(b, i)
        } else {
            i + 1
        };
    }
    assert!(i < b.len(), "unclosed {{ in {}", String::from_utf8_lossy(b));
    i
}

/// Index just past the string literal starting at `start`.
fn skip_string(b: &[u8], start: usize) -> usize {
    let q = b[start];
    let mut i = start + 1;
    while i < b.len() && b[i] != q {
        i += if b[i] == b'\\' { 2 } else { 1 };
    }
    i + 1
}

/// Matchers inside `{...}`, split on commas outside quotes.
fn split_matchers(s: &str) -> Vec<&str> {
    let (mut out, mut start, mut quoted) = (Vec::new(), 0, false);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().filter(|m| !m.trim().is_empty()).collect()
}

/// Metric name -> label name -> values seen, from Prometheus text format.
fn parse_scrape(text: &str) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut m: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = m.entry(line[..end].to_owned()).or_default();
        if line[end..].starts_with('{') {
            let close = line.rfind('}').unwrap();
            for pair in split_matchers(&line[end + 1..close]) {
                let (k, v) = pair.split_once('=').unwrap();
                labels
                    .entry(k.to_owned())
                    .or_default()
                    .insert(v.trim_matches('"').to_owned());
            }
        }
    }
    m
}

#[test]
fn selectors_find_metrics_and_matchers() {
    let e = r#"sum by (reason) (rate(xlb_a_total{action="drop",instance=~"$i"}[5m])) / on (map) xlb_b{m="xlb_c,}"} + time()"#;
    assert_eq!(
        selectors(e),
        [
            Selector {
                metric: "xlb_a_total".into(),
                exact: vec![("action".into(), "drop".into())],
                other_labels: vec!["instance".into()],
            },
            Selector {
                metric: "xlb_b".into(),
                exact: vec![("m".into(), "xlb_c,}".into())],
                other_labels: vec![],
            },
        ]
    );
    assert_eq!(
        selectors("label_values(xlb_ready, instance)")[0].metric,
        "xlb_ready"
    );
}

/// The agent, killed on drop; its pins and names file removed.
struct Agent {
    child: Child,
    pin: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.pin);
        let _ = std::fs::remove_file(xlb::names::path(&self.pin));
    }
}

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, buf.split_once("\r\n\r\n")?.1.to_owned()))
}

/// A scrape of an agent that has synced deploy/examples.
fn scrape() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pin = Path::new("/sys/fs/bpf").join(unique_name("xlb-dash-"));
    let examples = Path::new(REPO).join("deploy/examples");
    let child = Command::new(BIN)
        .arg("--pin-dir")
        .arg(&pin)
        .arg("agent")
        .arg("--manifests")
        .arg(&examples)
        .args(["--node-name", "node1"])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawning xlb agent");
    let mut agent = Agent { child, pin };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((200, body)) = get(port, "/metrics") {
            if body.contains("\nxlb_ready 1\n") {
                return body;
            }
        }
        assert!(
            agent.child.try_wait().unwrap().is_none(),
            "the agent exited"
        );
        assert!(Instant::now() < deadline, "the agent did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_dashboard_query_names_what_the_agent_exports() {
    if !privileged() {
        return;
    }
    let d = dashboard();
    let qs = queries(&d);
    assert!(qs.len() >= 10, "{qs:?}");
    let text = scrape();
    let exported = parse_scrape(&text);
    let mut used = BTreeSet::new();
    for (title, expr) in &qs {
        let sels = selectors(expr);
        assert!(!sels.is_empty(), "{title}: {expr} names no xlb metric");
        for s in sels {
            let labels = exported.get(&s.metric).unwrap_or_else(|| {
                panic!(
                    "{title}: {} is not exported; the agent exports {:?}",
                    s.metric,
                    exported.keys().collect::<Vec<_>>()
                )
            });
            for l in s.other_labels.iter().chain(s.exact.iter().map(|(k, _)| k)) {
                assert!(
                    TARGET_LABELS.contains(&l.as_str()) || labels.contains_key(l),
                    "{title}: {} has no label {l} (it has {:?})",
                    s.metric,
                    labels.keys().collect::<Vec<_>>()
                );
            }
            for (l, v) in &s.exact {
                if let Some(values) = labels.get(l) {
                    assert!(
                        values.contains(v),
                        "{title}: {}{{{l}=\"{v}\"}} matches nothing (values: {values:?})",
                        s.metric
                    );
                }
            }
            used.insert(s.metric);
        }
    }
    // Every metric family the agent exports has a panel (a histogram by any of its series).
    let families = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split_whitespace().next());
    for family in families {
        assert!(
            used.iter()
                .any(|m| m == family || m.strip_prefix(family).is_some_and(|s| s.starts_with('_'))),
            "no panel shows {family}"
        );
    }
}
