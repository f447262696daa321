//! `kernlab merge` on recorded H200 sweeps split as `--shard` would split them: the merged
//! CSV holds every row and the same winners as the whole sweep; merged databases keep the
//! same winners and keep GPU models apart. Bad `--shard` and `--gpus` are clear errors.

use kernlab::tune::db::{TunedDb, TunedEntry};
use kernlab::tune::merge::{merge_csvs, merge_dbs, winners_of};
use kernlab::tune::record::{read_sweep_csv, to_csv_bytes, CandidateRecord, Status};
use kernlab::tune::shard::shard_of;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const RECORDED: [&str; 3] = ["gemm-h200.csv", "softmax-h200.csv", "gemm_int4-bulk-decode-h200.csv"];

fn recorded(name: &str) -> Vec<CandidateRecord> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    read_sweep_csv(&root.join("docs/results").join(name)).unwrap().records
}

/// The rows as `n` shard jobs would have written them: each candidate in its shard's file,
/// the peer rows in every file (each job times the peer).
fn split(rows: &[CandidateRecord], n: u64, dir: &Path) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let piece: Vec<CandidateRecord> = rows
                .iter()
                .filter(|r| r.status == Some(Status::Peer) || shard_of(&r.variant, &r.params, n) == i)
                .cloned()
                .collect();
            let p = dir.join(format!("piece-{i}.csv"));
            std::fs::write(&p, to_csv_bytes(&piece).unwrap()).unwrap();
            p
        })
        .collect()
}

fn winner_keys(rows: &[CandidateRecord]) -> BTreeMap<(String, String, String), Option<String>> {
    winners_of(rows).into_iter().map(|s| ((s.gpu, s.dtype, s.shape), s.winner.map(|w| w.key()))).collect()
}

#[test]
fn merged_shards_have_every_row_and_the_whole_sweeps_winners() {
    for name in RECORDED {
        let rows = recorded(name);
        let whole = winner_keys(&rows);
        assert!(whole.values().filter(|w| w.is_some()).count() >= 1, "{name} has winners");
        for n in [1, 3, 4] {
            let dir = tempfile::tempdir().unwrap();
            let merged = merge_csvs(&split(&rows, n, dir.path())).unwrap();
            let peers = rows.iter().filter(|r| r.status == Some(Status::Peer)).count();
            let cands = rows.len() - peers;
            assert_eq!(merged.records.len(), cands + peers * n as usize, "{name} in {n}: every row kept");
            let mut got: Vec<String> =
                merged.records.iter().filter(|r| r.status != Some(Status::Peer)).map(|r| r.key()).collect();
            let mut want: Vec<String> =
                rows.iter().filter(|r| r.status != Some(Status::Peer)).map(|r| r.key()).collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{name} in {n}");
            assert_eq!(winner_keys(&merged.records), whole, "{name} in {n} pieces: the same winners");
        }
    }
}

#[test]
fn rows_of_different_gpu_models_pick_their_own_winners() {
    let h200 = recorded("softmax-h200.csv");
    // The same rows "measured" on another model, ten times faster for one candidate only
    // elsewhere: it must not win on the H200.
    let mut other: Vec<CandidateRecord> = h200.clone();
    let fastest_elsewhere = other.iter().rposition(|r| r.status == Some(Status::Ok)).unwrap();
    for (i, r) in other.iter_mut().enumerate() {
        r.gpu = "NVIDIA A100-SXM4-80GB".into();
        if i == fastest_elsewhere {
            r.timing.as_mut().unwrap().median_us /= 10.0;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("h200.csv"), dir.path().join("a100.csv"));
    std::fs::write(&a, to_csv_bytes(&h200).unwrap()).unwrap();
    std::fs::write(&b, to_csv_bytes(&other).unwrap()).unwrap();
    let merged = merge_csvs(&[a, b]).unwrap();
    let w = winner_keys(&merged.records);
    for (key, winner) in winner_keys(&h200) {
        assert_eq!(w[&key], winner, "{key:?}: the H200's winner is the H200 rows' own");
    }
    let moved = &other[fastest_elsewhere];
    let key = (moved.gpu.clone(), moved.dtype.clone(), moved.shape.clone());
    assert_eq!(w[&key], Some(moved.key()), "the A100's own fastest wins there");
}

fn entry(gpu: &str, m: i64, variant: &str, t: f64) -> TunedEntry {
    TunedEntry {
        kernel: "gemm".into(),
        variant: variant.into(),
        source_hash: format!("hash-{variant}"),
        gpu: gpu.into(),
        cc: "9.0".into(),
        nvrtc: "13.0".into(),
        dtype: "bf16".into(),
        format: None,
        shape: [("M".to_string(), m), ("N".to_string(), 4096), ("K".to_string(), 4096)].into(),
        params: [("BM".to_string(), (t * 10.0) as i64)].into(),
        time_us: t,
        peer_us: None,
        measured_at: "2026-12-01T00:00:00Z".into(),
    }
}

#[test]
fn merged_databases_keep_each_slots_fastest_and_gpu_models_apart() {
    let db = |entries: Vec<TunedEntry>| TunedDb { version: 1, entries };
    let a = db(vec![entry("H200", 1, "gemv", 9.0), entry("H200", 16, "mma", 20.0), entry("A100", 1, "gemv", 15.0)]);
    let b = db(vec![entry("H200", 1, "mma", 8.0), entry("H200", 16, "mma", 22.0), entry("A100", 1, "mma", 30.0)]);
    let unknown = |_: &str| None;
    let m = merge_dbs(&[a.clone(), b.clone()], &unknown);
    let get = |gpu: &str, mm: i64| m.entries.iter().find(|e| e.gpu == gpu && e.shape["M"] == mm).unwrap();
    assert_eq!(m.entries.len(), 3);
    assert_eq!((get("H200", 1).variant.as_str(), get("H200", 1).time_us), ("mma", 8.0));
    assert_eq!(get("H200", 16).time_us, 20.0);
    assert_eq!((get("A100", 1).variant.as_str(), get("A100", 1).time_us), ("gemv", 15.0), "A100 keeps its own");
    assert_eq!(merge_dbs(&[b, a], &unknown), m, "the order of the files does not matter");
    // A faster entry measured with a template since edited loses to a current one.
    let current = |_: &str| Some(BTreeMap::from([("gemv".to_string(), "hash-gemv".to_string())]));
    let stale = TunedEntry { source_hash: "old".into(), ..entry("H200", 1, "gemv", 1.0) };
    let m = merge_dbs(&[db(vec![stale.clone(), entry("H200", 1, "gemv", 9.0)])], &current);
    assert_eq!(m.entries[0].time_us, 9.0);
    // With nothing current in the slot, the stale one is all there is.
    assert_eq!(merge_dbs(&[db(vec![stale.clone()])], &current).entries, vec![stale]);
}

fn kernlab(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kernlab"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn the_merge_command_writes_one_csv_and_prints_the_winners() {
    let dir = tempfile::tempdir().unwrap();
    let rows = recorded("softmax-h200.csv");
    let pieces = split(&rows, 3, dir.path());
    let out = dir.path().join("all.csv");
    let mut args: Vec<&str> = vec!["merge"];
    args.extend(pieces.iter().map(|p| p.to_str().unwrap()));
    args.extend(["--out", out.to_str().unwrap()]);
    let (code, stdout, stderr) = kernlab(&args);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("NVIDIA H200") && stdout.contains("written to"), "{stdout}");
    let back = read_sweep_csv(&out).unwrap();
    assert!(back.checked && back.untrusted_lines.is_empty());
    assert_eq!(winner_keys(&back.records), winner_keys(&rows));
    // The output may not be an input, nor a file given twice, nor of the other kind.
    let p0 = pieces[0].to_str().unwrap();
    let db = dir.path().join("tuned.json");
    std::fs::write(&db, r#"{"version": 1, "entries": []}"#).unwrap();
    let db = db.to_str().unwrap();
    for (bad, says) in [
        (vec!["merge", p0, "--out", p0], "also an input"),
        (vec!["merge", p0, p0, "--out", out.to_str().unwrap()], "given twice"),
        (vec!["merge", p0, "--out", "x.json"], "written as a .csv"),
        (vec!["merge", p0, db, "--out", "x.csv"], "mix sweep CSVs and tuned databases"),
        (vec!["merge", "no-such.csv", "--out", "x.csv"], "no such file"),
        (vec!["merge", "README.md", "--out", "x.csv"], "not a sweep CSV"),
    ] {
        let (code, _, stderr) = kernlab(&bad);
        assert_ne!(code, 0, "{bad:?}");
        assert!(stderr.contains(says) && !stderr.contains("panicked"), "{bad:?}: {stderr}");
    }
}

#[test]
fn bad_shard_and_gpus_are_clear_errors_not_panics() {
    for (args, says) in [
        (vec!["sweep", "gemm", "--shard", "4/4"], "the index must be below the count"),
        (vec!["sweep", "gemm", "--shard", "0/0"], "the count must be at least 1"),
        (vec!["sweep", "gemm", "--shard", "two/4"], "not a whole number"),
        (vec!["sweep", "gemm", "--shard", "3"], "INDEX/COUNT"),
        (vec!["sweep", "gemm", "--gpus", "0,0"], "listed twice"),
        (vec!["sweep", "gemm", "--gpus", "first"], "not a GPU ordinal"),
        (vec!["sweep", "gemm", "--gpus", "0,1", "--gpu", "1"], "cannot be used with"),
    ] {
        let (code, _, stderr) = kernlab(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(says) && !stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // A shard of a dry run lists only its piece (no GPU needed).
    let (code, stdout, stderr) = kernlab(&["sweep", "softmax", "--dry-run", "--no-compile", "--shard", "1/2"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("in another shard than 1/2"), "{stdout}");
}
