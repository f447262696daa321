//! Bringing the pieces of a sweep together: the CSVs of `--shard` jobs (or of several
//! hosts), and their tuned databases.
//!
//! A CSV merge keeps every trusted row of every file, in file order, and picks each
//! (GPU model, dtype, shape)'s winner with [`winner::pick`], the rule a sweep applies to its
//! own rows; rows of different GPU models are never compared. (A live sweep then
//! re-measures the winner's close contenders, [`super::settle`]; that needs a GPU, so a
//! merged winner may be the other member of a statistical tie a single sweep settles.)
//!
//! A database merge takes every entry of every file and, per slot (kernel, GPU, compute
//! capability, NVRTC, dtype, format, shape: the database's own key, so GPU models stay
//! apart), keeps the entry [`winner::pick`] picks among them, stale ones (a template edited
//! since) only when the slot has no other.

use super::db::{TunedDb, TunedEntry};
use super::record::{self, CandidateRecord, Status, Timing};
use super::winner;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One (GPU model, dtype, shape) of a merged CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedShape {
    pub gpu: String,
    pub dtype: String,
    pub shape: String,
    /// Candidate rows (peer rows not counted) and how many of them failed.
    pub rows: usize,
    pub failed: usize,
    pub winner: Option<CandidateRecord>,
    /// The first peer row's median, as the sweep's summary takes it.
    pub peer_us: Option<f64>,
}

/// Every row of several sweep CSVs and each group's winner.
#[derive(Debug, Clone)]
pub struct MergedCsv {
    pub records: Vec<CandidateRecord>,
    pub shapes: Vec<MergedShape>,
    /// Rows of the inputs that were not trusted (torn or failing their check), left out.
    pub untrusted: usize,
}

/// Reads the CSVs and merges them. They must be sweeps of one family (the same tunables
/// and shape dimensions make one set of columns).
pub fn merge_csvs(inputs: &[PathBuf]) -> Result<MergedCsv> {
    let mut records: Vec<CandidateRecord> = Vec::new();
    let mut untrusted = 0;
    let mut family: Option<(String, Vec<String>, PathBuf)> = None;
    for path in inputs {
        let found = record::read_sweep_csv(path)?;
        untrusted += found.untrusted_lines.len();
        for r in &found.records {
            match &family {
                None => family = Some((r.family.clone(), r.dim_names.clone(), path.clone())),
                Some((f, _, first)) if f != &r.family => bail!(
                    "{} holds {} rows and {} holds {f} rows: merge the CSVs of one kernel family at a time",
                    path.display(),
                    r.family,
                    first.display()
                ),
                Some(_) => {}
            }
        }
        records.extend(found.records);
    }
    // Files from before the dim_* columns have no dimension names: take them from any file.
    if let Some((_, dims, _)) = &family {
        let dims = records.iter().map(|r| &r.dim_names).find(|d| !d.is_empty()).unwrap_or(dims).clone();
        records.iter_mut().for_each(|r| r.dim_names = dims.clone());
    }
    let shapes = winners_of(&records);
    Ok(MergedCsv { records, shapes, untrusted })
}

/// The groups of `records` in first-seen order, each with its winner.
pub fn winners_of(records: &[CandidateRecord]) -> Vec<MergedShape> {
    let mut groups: Vec<((String, String, String), Vec<&CandidateRecord>)> = Vec::new();
    for r in records {
        let key = (r.gpu.clone(), r.dtype.clone(), r.shape.clone());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, rows)) => rows.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    groups
        .into_iter()
        .map(|((gpu, dtype, shape), rows)| {
            let peer_us = rows.iter().find(|r| r.status == Some(Status::Peer)).and_then(|r| r.median_us());
            let cands: Vec<&CandidateRecord> = rows.into_iter().filter(|r| r.status != Some(Status::Peer)).collect();
            MergedShape {
                gpu,
                dtype,
                shape,
                rows: cands.len(),
                failed: cands.iter().filter(|r| r.status != Some(Status::Ok)).count(),
                winner: winner::pick(cands.iter().copied()).cloned(),
                peer_us,
            }
        })
        .collect()
}

/// Merges tuned databases (see the module's comment); `current` gives a kernel's current
/// template hash per variant, when its sweep file can be read.
pub fn merge_dbs(dbs: &[TunedDb], current: &dyn Fn(&str) -> Option<BTreeMap<String, String>>) -> TunedDb {
    let mut slots: BTreeMap<String, Vec<&TunedEntry>> = BTreeMap::new();
    for e in dbs.iter().flat_map(|db| &db.entries) {
        slots.entry(slot_key(e)).or_default().push(e);
    }
    let mut hashes: BTreeMap<String, Option<BTreeMap<String, String>>> = BTreeMap::new();
    let mut out = TunedDb { version: 1, entries: vec![] };
    for entries in slots.into_values() {
        let kernel = &entries[0].kernel;
        let fresh = hashes.entry(kernel.clone()).or_insert_with(|| current(kernel));
        let is_fresh = |e: &&&TunedEntry| fresh.as_ref().is_none_or(|h| h.get(&e.variant) == Some(&e.source_hash));
        let live: Vec<&TunedEntry> = entries.iter().filter(is_fresh).copied().collect();
        let pool = if live.is_empty() { entries } else { live };
        if let Some(best) = pick_entry(&pool) {
            out.upsert(best.clone());
        }
    }
    out
}

/// The database's slot of an entry, as text (its fields joined; the shape sorted by name).
fn slot_key(e: &TunedEntry) -> String {
    let shape: Vec<String> = e.shape.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let fmt = e.format.as_deref().unwrap_or("");
    format!("{}|{}|{}|{}|{}|{}|{}", e.kernel, e.gpu, e.cc, e.nvrtc, e.dtype, fmt, shape.join(","))
}

/// The winner among a slot's entries by [`winner::pick`]: the fastest, a tie (the
/// database keeps no spread, so only equal times tie) to the smallest candidate key.
fn pick_entry<'a>(entries: &[&'a TunedEntry]) -> Option<&'a TunedEntry> {
    let as_rows: Vec<CandidateRecord> = entries.iter().map(|e| as_record(e)).collect();
    let best = winner::pick(as_rows.iter())?;
    let at = as_rows.iter().position(|r| std::ptr::eq(r, best))?;
    Some(entries[at])
}

/// An entry seen as a verified row, for [`winner::pick`].
fn as_record(e: &TunedEntry) -> CandidateRecord {
    let t = e.time_us;
    CandidateRecord {
        family: e.kernel.clone(),
        variant: e.variant.clone(),
        dtype: e.dtype.clone(),
        params: e.params.clone(),
        status: Some(Status::Ok),
        timing: t.is_finite().then_some(Timing { median_us: t, p20_us: t, p80_us: t, min_us: t, reps: 1 }),
        ..Default::default()
    }
}

/// Refuses an output that is one of the inputs (it would be read and overwritten at once).
pub fn check_out_is_not_an_input(out: &Path, inputs: &[PathBuf]) -> Result<()> {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let o = canon(out);
    if let Some(i) = inputs.iter().find(|i| canon(i) == o) {
        bail!("--out {} is also an input; write the merge to a new file", i.display());
    }
    let mut seen: Vec<PathBuf> = Vec::new();
    for i in inputs {
        let c = canon(i);
        if seen.contains(&c) {
            bail!("{} is given twice; each file is merged once", i.display());
        }
        seen.push(c);
    }
    Ok(())
}

/// Writes `bytes` to `out` atomically (a temp file renamed over it), refusing a file a
/// sweep is writing (it holds the file's lock).
pub fn write_atomically(out: &Path, bytes: &[u8]) -> Result<()> {
    if let Ok(f) = std::fs::File::open(out) {
        if let Err(std::fs::TryLockError::WouldBlock) = f.try_lock() {
            bail!("{} is being written by a kernlab sweep; merge into another --out file", out.display());
        }
    }
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".kernlab-merge.")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, bytes).with_context(|| format!("writing {}", tmp.path().display()))?;
    tmp.as_file().sync_all().with_context(|| format!("syncing {}", tmp.path().display()))?;
    tmp.persist(out).map_err(|e| e.error).with_context(|| format!("replacing {}", out.display()))?;
    Ok(())
}
