//! Several processes updating one tuned database at once (two sweeps, one per GPU) lose no
//! update, and a reader that takes no lock never sees a partial file.
//!
//! The test re-runs its own binary as the writer processes: with `KERNLAB_DB_CHILD` set, the
//! test body is one writer instead of the coordinator.

use kernlab::tune::db::{TunedDb, TunedEntry};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const WRITERS: i64 = 4;
const UPDATES_PER_WRITER: i64 = 200;
const CHILD_ENV: &str = "KERNLAB_DB_CHILD";

/// The entry writer `w` stores in its update `i`: a slot of its own (shape M=w, N=i).
fn entry(w: i64, i: i64) -> TunedEntry {
    TunedEntry {
        kernel: "gemm".into(),
        variant: "v".into(),
        source_hash: "h".into(),
        gpu: "GPU".into(),
        cc: "9.0".into(),
        nvrtc: "13.0".into(),
        dtype: "bf16".into(),
        format: None,
        shape: [("M".to_string(), w), ("N".to_string(), i), ("K".to_string(), 64)].into_iter().collect(),
        params: BTreeMap::new(),
        time_us: (w * 1000 + i) as f64,
        peer_us: None,
        measured_at: "2026-12-02T00:00:00Z".into(),
    }
}

fn run_writer(path: &Path, w: i64) {
    for i in 0..UPDATES_PER_WRITER {
        TunedDb::update(path, |db| db.upsert(entry(w, i))).unwrap();
    }
}

/// Reads the file in a loop until `stop`; every read must parse as a whole database and
/// (since entries are only added) hold at least as many entries as the read before it.
fn run_reader(path: PathBuf, stop: Arc<AtomicBool>) -> usize {
    let (mut reads, mut last) = (0usize, 0usize);
    while !stop.load(Ordering::Relaxed) {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("reading {}: {e}", path.display()),
        };
        let db: TunedDb = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("read {reads}: a partial database ({} bytes): {e}", text.len()));
        assert!(db.entries.len() >= last, "read {reads}: {} entries after {last}: updates were lost", db.entries.len());
        last = db.entries.len();
        reads += 1;
    }
    reads
}

#[test]
fn concurrent_updates_lose_nothing_and_readers_see_whole_files() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        let (w, path) = spec.split_once(':').expect("KERNLAB_DB_CHILD=<writer>:<path>");
        run_writer(Path::new(path), w.parse().unwrap());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tuned.json");
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (path, stop) = (path.clone(), stop.clone());
        std::thread::spawn(move || run_reader(path, stop))
    };
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..WRITERS)
        .map(|w| {
            Command::new(&exe)
                .args(["concurrent_updates_lose_nothing_and_readers_see_whole_files", "--exact", "--quiet"])
                .env(CHILD_ENV, format!("{w}:{}", path.display()))
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let statuses: Vec<_> = children.into_iter().map(|mut c| c.wait().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    let reads = reader.join().expect("the reader saw a partial or shrinking database");
    assert!(statuses.iter().all(|s| s.success()), "a writer failed: {statuses:?}");
    assert!(reads > 0, "the reader never read the database");

    let db = TunedDb::load(&path).unwrap();
    let mut missing = Vec::new();
    for w in 0..WRITERS {
        for i in 0..UPDATES_PER_WRITER {
            if !db.entries.contains(&entry(w, i)) {
                missing.push((w, i));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} updates lost, e.g. {:?}",
        missing.len(),
        WRITERS * UPDATES_PER_WRITER,
        &missing[..missing.len().min(5)]
    );
    assert_eq!(db.entries.len() as i64, WRITERS * UPDATES_PER_WRITER);
}
