//! The manifest-directory source when the directory misbehaves: replaced
//! atomically the way a ConfigMap volume does it (a `..data` symlink swap),
//! removed, or holding a file that cannot be read. The last good snapshot
//! stays in force and the source reports itself behind until it can read a
//! complete directory again.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, SystemTime};

use xlb::sources::{SnapshotRx, SourceOptions, SourceStatus};
use xlb_testkit::TempDir;

/// A Service manifest; names of one length give files of one size.
fn svc(name: &str, ip: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{clusterIP: {ip}, ports: [{{port: 80}}]}}\n")
}

fn start(dir: &Path) -> (SnapshotRx, SourceStatus) {
    let status = SourceStatus::default();
    let opts = SourceOptions {
        debounce: Duration::from_millis(20),
        poll: Duration::from_millis(20),
        status: status.clone(),
        ..Default::default()
    };
    let rx = xlb::sources::manifests::watch_dir(dir.to_owned(), opts).unwrap();
    (rx, status)
}

fn names(rx: &SnapshotRx) -> Vec<String> {
    rx.borrow()
        .as_ref()
        .unwrap()
        .services
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect()
}

async fn wait_names(rx: &mut SnapshotRx, want: &[&str]) {
    let r = tokio::time::timeout(Duration::from_secs(30), async {
        while names(rx) != want {
            rx.changed().await.unwrap();
        }
    })
    .await;
    assert!(r.is_ok(), "wanted {want:?}, have {:?}", names(rx));
}

async fn wait_for(mut f: impl FnMut() -> bool) {
    let r = tokio::time::timeout(Duration::from_secs(30), async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(r.is_ok(), "condition not reached");
}

/// Writes `text` as `DIR/..NAME/svc.yaml` with a fixed mtime.
fn data_dir(dir: &Path, name: &str, text: &str, mtime: SystemTime) {
    let d = dir.join(name);
    std::fs::create_dir(&d).unwrap();
    let f = d.join("svc.yaml");
    std::fs::write(&f, text).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

/// kubelet's atomic writer: new files in a new hidden directory, then the
/// `..data` symlink renamed over; the visible names never change. The new
/// file has the same size and mtime as the old one.
#[tokio::test]
async fn configmap_symlink_swap_is_picked_up() {
    let d = TempDir::new("xlb-manifests-f");
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    data_dir(d.path(), "..2026_a", &svc("web-a", "10.96.0.10"), t);
    symlink("..2026_a", d.path().join("..data")).unwrap();
    symlink("..data/svc.yaml", d.path().join("svc.yaml")).unwrap();
    let (mut rx, status) = start(d.path());
    assert_eq!(names(&rx), ["web-a"]);

    data_dir(d.path(), "..2026_b", &svc("web-b", "10.96.0.11"), t);
    symlink("..2026_b", d.path().join("..data_tmp")).unwrap();
    std::fs::rename(d.path().join("..data_tmp"), d.path().join("..data")).unwrap();
    std::fs::remove_dir_all(d.path().join("..2026_a")).unwrap();
    wait_names(&mut rx, &["web-b"]).await;
    assert!(status.behind().is_none());
}

/// The directory goes away: the last snapshot stays, the source is behind;
/// it comes back with new content: reloaded, caught up.
#[tokio::test]
async fn removed_directory_keeps_the_last_snapshot() {
    let d = TempDir::new("xlb-manifests-f");
    std::fs::write(d.path().join("svc.yaml"), svc("web", "10.96.0.10")).unwrap();
    let (mut rx, status) = start(d.path());
    assert_eq!(names(&rx), ["web"]);
    std::fs::remove_dir_all(d.path()).unwrap();
    wait_for(|| status.behind().is_some()).await;
    let why = status.behind().unwrap();
    assert!(why.contains("manifests"), "{why}");
    assert!(!rx.has_changed().unwrap(), "nothing published while gone");
    assert_eq!(names(&rx), ["web"]);

    std::fs::create_dir_all(d.path()).unwrap();
    std::fs::write(d.path().join("svc.yaml"), svc("api", "10.96.0.12")).unwrap();
    wait_names(&mut rx, &["api"]).await;
    wait_for(|| status.behind().is_none()).await;
}

/// A manifest that cannot be read (a dangling symlink here: root reads any
/// mode) is an outage, not an empty file: the snapshot keeps its Services.
#[tokio::test]
async fn unreadable_file_keeps_the_last_snapshot() {
    let d = TempDir::new("xlb-manifests-f");
    std::fs::write(d.path().join("a.yaml"), svc("web", "10.96.0.10")).unwrap();
    std::fs::write(d.path().join("b.yaml"), svc("api", "10.96.0.12")).unwrap();
    let (mut rx, status) = start(d.path());
    assert_eq!(names(&rx), ["api", "web"]);

    std::fs::remove_file(d.path().join("b.yaml")).unwrap();
    symlink("/nonexistent/xlb/b.yaml", d.path().join("b.yaml")).unwrap();
    wait_for(|| status.behind().is_some()).await;
    let why = status.behind().unwrap();
    assert!(why.contains("b.yaml"), "{why}");
    assert!(!rx.has_changed().unwrap(), "nothing published");
    assert_eq!(names(&rx), ["api", "web"]);

    // Readable again (with other content): reloaded.
    std::fs::remove_file(d.path().join("b.yaml")).unwrap();
    std::fs::write(d.path().join("b.yaml"), svc("db", "10.96.0.13")).unwrap();
    wait_names(&mut rx, &["db", "web"]).await;
    wait_for(|| status.behind().is_none()).await;
}
