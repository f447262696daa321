//! `kernlab merge`: sweep CSVs into one CSV, or tuned databases into one database, with
//! the winners picked as one sweep picks them ([`super::merge`]).

use super::db::TunedDb;
use super::merge::{check_out_is_not_an_input, merge_csvs, merge_dbs, write_atomically, MergedShape};
use anyhow::{bail, Result};
use clap::Args;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  kernlab merge reports/gemm-shard*.csv --out reports/gemm-all.csv
  kernlab merge host1/tuned.json host2/tuned.json --out reports/tuned.json

CSVs (.csv, .csv.gz) give one CSV with every row and a table of each shape's winner per GPU
model; databases (.json) give one database with each slot's winner (entries already in --out
take part). See docs/multi-gpu.md for a Slurm job array that ends with this.")]
pub struct MergeArgs {
    /// Sweep CSVs of one kernel family, or tuned databases (all of one kind), e.g.
    /// gemm-0.csv gemm-1.csv.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Where the merge goes: a .csv for CSVs, a .json for databases, e.g. --out all.csv.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// What the inputs are.
#[derive(Debug, PartialEq)]
enum Kind {
    Csv,
    Db,
}

fn kind_of(p: &Path) -> Option<Kind> {
    let name = p.file_name()?.to_string_lossy().to_lowercase();
    if name.ends_with(".csv") || name.ends_with(".csv.gz") {
        Some(Kind::Csv)
    } else if name.ends_with(".json") {
        Some(Kind::Db)
    } else {
        None
    }
}

/// Entry point of `kernlab merge`.
pub fn run(a: MergeArgs) -> Result<ExitCode> {
    let mut kinds = Vec::new();
    for f in &a.files {
        let Some(k) = kind_of(f) else {
            bail!("{}: not a sweep CSV (.csv, .csv.gz) or a tuned database (.json)", f.display());
        };
        if !f.is_file() {
            bail!("{}: no such file", f.display());
        }
        kinds.push(k);
    }
    let kind = kinds.remove(0);
    if kinds.iter().any(|k| *k != kind) {
        bail!("the files mix sweep CSVs and tuned databases; merge each kind on its own");
    }
    let want_out = if kind == Kind::Csv { ".csv" } else { ".json" };
    if kind_of(&a.out).as_ref() != Some(&kind) || a.out.to_string_lossy().ends_with(".gz") {
        bail!("--out {}: the merge of these files is written as a {want_out} file", a.out.display());
    }
    match kind {
        Kind::Csv => merge_csv_files(&a.files, &a.out),
        Kind::Db => merge_db_files(&a.files, &a.out),
    }
}

fn merge_csv_files(files: &[PathBuf], out: &Path) -> Result<ExitCode> {
    check_out_is_not_an_input(out, files)?;
    let merged = merge_csvs(files)?;
    if merged.records.is_empty() {
        bail!("the files hold no trusted rows; nothing to merge");
    }
    write_atomically(out, &super::record::to_csv_bytes(&merged.records)?)?;
    print!("{}", format_winners(&merged.shapes));
    let skipped = if merged.untrusted > 0 {
        format!(" ({} torn or unverifiable rows left out)", merged.untrusted)
    } else {
        String::new()
    };
    println!("{} rows of {} files written to {}{skipped}", merged.records.len(), files.len(), out.display());
    Ok(ExitCode::SUCCESS)
}

fn merge_db_files(files: &[PathBuf], out: &Path) -> Result<ExitCode> {
    let inputs: Vec<TunedDb> = files.iter().map(|f| TunedDb::load(f)).collect::<Result<_>>()?;
    let (mut before, mut after) = (0, 0);
    TunedDb::update(out, |db| {
        before = db.entries.len();
        let mut all = vec![db.clone()];
        all.extend(inputs.iter().cloned());
        *db = merge_dbs(&all, &current_hashes);
        after = db.entries.len();
    })?;
    let read: usize = inputs.iter().map(|d| d.entries.len()).sum();
    println!(
        "{read} entries of {} files merged into {} ({before} entries before, {after} winners now)",
        files.len(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A built-in kernel's current template hash per variant, from its sweep file; `None` for
/// kernels this checkout does not know (their entries are then all taken as current).
fn current_hashes(kernel: &str) -> Option<BTreeMap<String, String>> {
    let fam = crate::kernels::builtin(kernel)?;
    let sweep = super::space::Sweep::load(&crate::paths::sweep_file(kernel), fam.shape_dims()).ok()?;
    Some(sweep.variants.iter().map(|v| (v.name.clone(), crate::gpu::cache::source_hash(&v.source))).collect())
}

/// One line per (GPU, dtype, shape): the winner, its time, and the rows behind it.
pub fn format_winners(shapes: &[MergedShape]) -> String {
    let mut out = format!(
        "{:<24} {:<5} {:<16} {:<18} {:<44} {:>10} {:>9} {:>6}\n",
        "gpu", "dtype", "shape", "winner", "config", "median us", "peer us", "rows"
    );
    for s in shapes {
        let (variant, cfg, t) = match &s.winner {
            Some(w) => {
                let cfg: Vec<String> = w.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                (w.variant.clone(), cfg.join(","), w.median_us().map_or("-".into(), |t| format!("{t:.2}")))
            }
            None => ("(none verified)".into(), String::new(), "-".into()),
        };
        let peer = s.peer_us.map_or("-".into(), |p| format!("{p:.2}"));
        out.push_str(&format!(
            "{:<24} {:<5} {:<16} {:<18} {:<44} {:>10} {:>9} {:>6}\n",
            s.gpu, s.dtype, s.shape, variant, cfg, t, peer, s.rows
        ));
    }
    out
}
