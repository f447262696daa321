//! The tuned-config database: the winner for each (kernel, GPU, dtype, shape).
//!
//! File format (JSON, `reports/tuned.json` by default; see README "File formats"):
//! ```json
//! { "version": 1,
//!   "entries": [ { "kernel": "gemm", "variant": "gemv_splitk", "source_hash": "3f2a...",
//!                  "gpu": "NVIDIA H100 80GB HBM3", "cc": "9.0", "nvrtc": "13.0",
//!                  "dtype": "bf16", "shape": {"M": 1, "N": 4096, "K": 4096},
//!                  "params": {"NUM_WARPS": 4, ...}, "time_us": 12.3, "peer_us": 20.1,
//!                  "measured_at": "2026-11-27T18:00:00Z" } ] }
//! ```
//! A family whose weights come in several formats (gemm_int4: group, zero points, scale
//! dtype) adds `"format": "g64-sym-bf16"` to a winner measured in another format than the
//! kernels' default, and a lookup takes only winners of the format it asks for (no
//! `format`: the default one), so a g128 winner never stands for a g64 weight.
//!
//! An entry is valid only for the template source it was measured with (`source_hash`):
//! editing a template makes its old winners stale, and lookups skip them.
//!
//! Several sweeps (one per GPU, say) may finish at once and all write the database, while a
//! Llama run reads it. Every write therefore goes through [`TunedDb::update`]: under an
//! exclusive lock on the sidecar `<db>.lock` it loads what is on disk *now*, applies the
//! change, writes a uniquely named temp file, syncs it and renames it over the database, so
//! no writer drops another's entries and a reader (which takes no lock) always sees a whole
//! file, the old one or the new one.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TunedEntry {
    pub kernel: String,
    pub variant: String,
    pub source_hash: String,
    pub gpu: String,
    pub cc: String,
    pub nvrtc: String,
    pub dtype: String,
    /// The weight format, where the family has several and this is not its default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    pub shape: BTreeMap<String, i64>,
    pub params: BTreeMap<String, i64>,
    pub time_us: f64,
    pub peer_us: Option<f64>,
    pub measured_at: String,
}

impl TunedEntry {
    fn slot(&self) -> (String, String, String, String, String, Option<String>, BTreeMap<String, i64>) {
        (
            self.kernel.clone(),
            self.gpu.clone(),
            self.cc.clone(),
            self.nvrtc.clone(),
            self.dtype.clone(),
            self.format.clone(),
            self.shape.clone(),
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TunedDb {
    pub version: u32,
    pub entries: Vec<TunedEntry>,
}

/// What a lookup is asked for.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    pub kernel: &'a str,
    pub gpu: &'a str,
    pub cc: &'a str,
    pub nvrtc: &'a str,
    pub dtype: &'a str,
    /// The weight format (None: the family's default), as [`TunedEntry::format`].
    pub format: Option<&'a str>,
    pub shape: &'a BTreeMap<String, i64>,
    /// Current source hash of each variant's template; entries for other hashes are stale.
    pub source_hashes: &'a BTreeMap<String, String>,
}

/// A lookup's answer: the entry, and whether it was measured on exactly this shape.
#[derive(Debug, Clone)]
pub struct Found<'a> {
    pub entry: &'a TunedEntry,
    pub exact: bool,
    /// Human-readable note for the fallback ("nearest measured shape 16x4096x4096").
    pub note: String,
}

impl TunedDb {
    pub fn load(path: &Path) -> Result<TunedDb> {
        if !path.exists() {
            return Ok(TunedDb { version: 1, entries: vec![] });
        }
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading tuned database {}", path.display()))?;
        let db: TunedDb = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a kernlab tuned database (JSON with version and entries); move it aside to start afresh",
                path.display()
            )
        })?;
        if db.version != 1 {
            bail!("{}: tuned database version {} is not supported (expected 1)", path.display(), db.version);
        }
        Ok(db)
    }

    /// Loads the database at `path` under its writers' lock, lets `change` edit it, and
    /// writes it back before the lock is released; returns what `change` returned.
    /// This is the only way the database is written.
    pub fn update<R>(path: &Path, change: impl FnOnce(&mut TunedDb) -> R) -> Result<R> {
        let dir = parent_dir(path);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let lock_path = lock_path(path);
        // Never deleted: every writer must lock the same file, or two could hold "the" lock.
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening the lock file {}", lock_path.display()))?;
        lock.lock().with_context(|| format!("locking {}", lock_path.display()))?;
        let mut db = TunedDb::load(path)?;
        let out = change(&mut db);
        db.replace_file(path, &dir)?;
        drop(lock); // unlocks, after the new file is in place
        Ok(out)
    }

    /// Writes a unique temp file in the database's directory, syncs it, renames it over
    /// `path` and syncs the directory, so a crash leaves the old file or the new one.
    fn replace_file(&self, path: &Path, dir: &Path) -> Result<()> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(dir)
            .with_context(|| format!("creating a temp file in {}", dir.display()))?;
        let bytes = serde_json::to_vec_pretty(self)?;
        tmp.write_all(&bytes).with_context(|| format!("writing {}", tmp.path().display()))?;
        tmp.as_file().sync_all().with_context(|| format!("syncing {}", tmp.path().display()))?;
        tmp.persist(path).map_err(|e| e.error).with_context(|| format!("replacing {}", path.display()))?;
        // The rename itself is durable only once the directory is synced.
        File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("syncing {}", dir.display()))?;
        Ok(())
    }

    /// Inserts or replaces the winner of the entry's slot.
    pub fn upsert(&mut self, e: TunedEntry) {
        let slot = e.slot();
        self.entries.retain(|x| x.slot() != slot);
        self.entries.push(e);
        self.entries.sort_by(|a, b| a.slot().cmp(&b.slot()));
    }

    /// Inserts the entry unless its slot holds an entry that is still fresh (its variant's
    /// hash in `fresh`) and at least as fast: a sweep of some variants only must not
    /// replace a faster winner of another.
    pub fn upsert_if_faster(&mut self, e: TunedEntry, fresh: &BTreeMap<String, String>) {
        let slot = e.slot();
        let beaten = self
            .entries
            .iter()
            .any(|x| x.slot() == slot && fresh.get(&x.variant) == Some(&x.source_hash) && x.time_us <= e.time_us);
        if !beaten {
            self.upsert(e);
        }
    }

    /// The winner for this exact shape, else the nearest measured shape (log distance over
    /// the dimensions) on the same kernel, GPU, NVRTC and dtype with a current source hash.
    pub fn lookup<'a>(&'a self, q: &Query) -> Option<Found<'a>> {
        let fresh = |e: &&TunedEntry| {
            e.kernel == q.kernel
                && e.gpu == q.gpu
                && e.cc == q.cc
                && e.nvrtc == q.nvrtc
                && e.dtype == q.dtype
                && e.format.as_deref() == q.format
                && q.source_hashes.get(&e.variant).map(|h| h == &e.source_hash).unwrap_or(false)
        };
        let dist = |e: &TunedEntry| -> f64 {
            q.shape
                .iter()
                .map(|(k, v)| {
                    let ev = *e.shape.get(k).unwrap_or(&1) as f64;
                    ((*v as f64).max(1.0).ln() - ev.max(1.0).ln()).powi(2)
                })
                .sum::<f64>()
        };
        let best = self
            .entries
            .iter()
            .filter(fresh)
            .min_by(|a, b| dist(a).total_cmp(&dist(b)).then_with(|| a.slot().cmp(&b.slot())))?;
        let exact = &best.shape == q.shape;
        let label = |s: &BTreeMap<String, i64>| s.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        let note = if exact {
            format!("tuned for {}", label(&best.shape))
        } else {
            format!("not tuned for {}; using the nearest measured shape {}", label(q.shape), label(&best.shape))
        };
        Some(Found { entry: best, exact, note })
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `reports/tuned.json` -> `reports/tuned.json.lock`.
fn lock_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(m: i64, n: i64, k: i64) -> BTreeMap<String, i64> {
        [("M".to_string(), m), ("N".to_string(), n), ("K".to_string(), k)].into_iter().collect()
    }

    fn entry(m: i64, n: i64, k: i64, hash: &str, t: f64) -> TunedEntry {
        TunedEntry {
            kernel: "gemm".into(),
            variant: "v".into(),
            source_hash: hash.into(),
            gpu: "H100".into(),
            cc: "9.0".into(),
            nvrtc: "13.0".into(),
            dtype: "bf16".into(),
            format: None,
            shape: shape(m, n, k),
            params: [("BM".to_string(), 64)].into_iter().collect(),
            time_us: t,
            peer_us: Some(t * 1.1),
            measured_at: "2026-11-27T00:00:00Z".into(),
        }
    }

    #[test]
    fn partial_sweep_replaces_only_slower_or_stale_entries() {
        let mut db = TunedDb { version: 1, entries: vec![] };
        let other = |t: f64| TunedEntry { variant: "w".into(), ..entry(1, 4096, 4096, "hw", t) };
        let fresh: BTreeMap<String, String> = [("v", "h1"), ("w", "hw")].map(|(a, b)| (a.into(), b.into())).into();
        db.upsert(other(10.0));
        db.upsert_if_faster(entry(1, 4096, 4096, "h1", 11.0), &fresh);
        assert_eq!(db.entries, vec![other(10.0)], "a slower winner of a partial sweep must not replace");
        db.upsert_if_faster(entry(1, 4096, 4096, "h1", 9.0), &fresh);
        assert_eq!(db.entries, vec![entry(1, 4096, 4096, "h1", 9.0)], "a faster one replaces");
        // An entry whose template changed since is no winner to keep.
        let mut db = TunedDb { version: 1, entries: vec![other(5.0)] };
        let changed: BTreeMap<String, String> = [("v", "h1"), ("w", "hw2")].map(|(a, b)| (a.into(), b.into())).into();
        db.upsert_if_faster(entry(1, 4096, 4096, "h1", 9.0), &changed);
        assert_eq!(db.entries, vec![entry(1, 4096, 4096, "h1", 9.0)]);
    }

    #[test]
    fn round_trip_upsert_and_nearest_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tuned.json");
        let db = TunedDb::update(&path, |db| {
            db.upsert(entry(1, 4096, 4096, "h1", 10.0));
            db.upsert(entry(2048, 4096, 4096, "h1", 500.0));
            db.clone()
        })
        .unwrap();
        // A second update merges into what is on disk.
        let db = TunedDb::update(&path, |d| {
            assert_eq!(d, &db);
            d.upsert(entry(1, 4096, 4096, "h1", 9.0)); // replaces
            d.clone()
        })
        .unwrap();
        let back = TunedDb::load(&path).unwrap();
        assert_eq!(back, db);
        assert_eq!(back.entries.len(), 2);
        let hashes: BTreeMap<String, String> = [("v".to_string(), "h1".to_string())].into_iter().collect();
        let s = shape(1, 4096, 4096);
        let q = Query {
            kernel: "gemm",
            gpu: "H100",
            cc: "9.0",
            nvrtc: "13.0",
            dtype: "bf16",
            format: None,
            shape: &s,
            source_hashes: &hashes,
        };
        let f = back.lookup(&q).unwrap();
        assert!(f.exact);
        assert_eq!(f.entry.time_us, 9.0);
        let s2 = shape(4, 4096, 4096);
        let f = back.lookup(&Query { shape: &s2, ..q.clone() }).unwrap();
        assert!(!f.exact);
        assert_eq!(f.entry.shape["M"], 1);
        assert!(f.note.contains("nearest"));
        let s3 = shape(1024, 4096, 4096);
        assert_eq!(back.lookup(&Query { shape: &s3, ..q.clone() }).unwrap().entry.shape["M"], 2048);
        // A changed template makes its entries stale.
        let stale: BTreeMap<String, String> = [("v".to_string(), "h2".to_string())].into_iter().collect();
        assert!(back.lookup(&Query { source_hashes: &stale, ..q.clone() }).is_none());
        // Another GPU has no entries.
        assert!(back.lookup(&Query { gpu: "A40", ..q.clone() }).is_none());
        // Winners are kept per weight format: a g64 one is neither taken for the default
        // format nor replaced by its winner, and a format nothing was measured in finds none.
        let mut d = back.clone();
        d.upsert(TunedEntry { format: Some("g64-sym-bf16".into()), ..entry(1, 4096, 4096, "h1", 11.0) });
        assert_eq!(d.entries.len(), 3);
        assert_eq!(d.lookup(&q).unwrap().entry.time_us, 9.0);
        assert_eq!(d.lookup(&Query { format: Some("g64-sym-bf16"), ..q.clone() }).unwrap().entry.time_us, 11.0);
        assert!(d.lookup(&Query { format: Some("g32-sym-bf16"), ..q }).is_none());
    }

    #[test]
    fn garbage_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tuned.json");
        std::fs::write(&path, "not json").unwrap();
        let err = format!("{:#}", TunedDb::load(&path).unwrap_err());
        assert!(err.contains("not a kernlab tuned database"), "{err}");
        // An update refuses it too, and leaves the file as it was.
        let err = format!("{:#}", TunedDb::update(&path, |db| db.upsert(entry(1, 1, 1, "h", 1.0))).unwrap_err());
        assert!(err.contains("not a kernlab tuned database"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not json");
    }

    #[test]
    fn update_leaves_only_the_database_and_its_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/tuned.json");
        for m in 1..4 {
            TunedDb::update(&path, |db| db.upsert(entry(m, 8, 8, "h", 1.0))).unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["tuned.json", "tuned.json.lock"]);
        assert_eq!(TunedDb::load(&path).unwrap().entries.len(), 3);
    }
}
