//! `kernlab replay` end to end on a sweep CSV made here: the table, both CSVs and the chart.

mod report_support;

use kernlab::tune::record::{to_csv_bytes, CandidateRecord, Status, Timing};
use kernlab::tune::replay::load_spaces;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn row(shape: &str, variant: &str, x: i64, y: i64, status: Status, time: Option<f64>) -> CandidateRecord {
    let mut params = BTreeMap::new();
    if variant != "cublas" {
        params.insert("X".to_string(), x);
        params.insert("Y".to_string(), y);
    }
    CandidateRecord {
        family: "gemm".into(),
        variant: variant.into(),
        dtype: "bf16".into(),
        shape: shape.into(),
        params,
        status: Some(status),
        timing: time.and_then(|t| Timing::from_samples(&[t * 0.99, t, t * 1.01])),
        gpu: "test GPU".into(),
        ..CandidateRecord::default()
    }
}

/// Two shapes of an 8×8 grid with a smooth optimum each, one wrong candidate, one peer row.
fn fixture(dir: &Path) -> std::path::PathBuf {
    let mut rows = Vec::new();
    for (shape, ox, oy) in [("16x4096x4096", 2, 5), ("1x4096x4096", 6, 1)] {
        rows.push(row(shape, "cublas", 0, 0, Status::Peer, Some(1.0)));
        for x in 0..8 {
            for y in 0..8 {
                let t = 10.0 + ((x - ox) * (x - ox) + (y - oy) * (y - oy)) as f64;
                let (status, time) = if (x, y) == (0, 0) { (Status::Wrong, None) } else { (Status::Ok, Some(t)) };
                rows.push(row(shape, "mma", 1 << x, 1 << y, status, time));
            }
        }
    }
    let path = dir.join("grid.csv");
    std::fs::write(&path, to_csv_bytes(&rows).unwrap()).unwrap();
    path
}

#[test]
fn spaces_come_from_the_rows_without_the_peer() {
    let dir = tempfile::tempdir().unwrap();
    let spaces = load_spaces(&fixture(dir.path())).unwrap();
    assert_eq!(spaces.len(), 2);
    assert_eq!(spaces[0].shape, "16x4096x4096");
    assert_eq!(spaces[0].size(), 64, "the wrong row is in the space (as a failure), the peer is not");
    assert_eq!(spaces[0].optimum_us, 10.0);
    let wrong = spaces[0].times.iter().find(|(c, _)| c.params["X"] == 1 && c.params["Y"] == 1).unwrap();
    assert_eq!(*wrong.1, None);
}

#[test]
fn replay_prints_the_table_and_writes_csvs_and_a_chart() {
    let dir = tempfile::tempdir().unwrap();
    let csv = fixture(dir.path());
    let out = dir.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_kernlab"))
        .args(["replay", csv.to_str().unwrap(), "--seeds", "6", "--within", "3", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("within 3 % of the optimum"), "{stdout}");
    for s in ["tpe+warm", "tpe", "evolve", "random", "grid", "grid bf16 16x4096x4096", "grid bf16 1x4096x4096"] {
        assert!(stdout.contains(s), "{s} missing from\n{stdout}");
    }
    let table = std::fs::read_to_string(out.join("search-replay.csv")).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 1 + 5 * 2, "a row per strategy and space:\n{table}");
    assert!(lines[0].starts_with("source,space,size,strategy,seeds,median_evals"));
    // The seeds column: 6 runs, grid once.
    assert!(lines.iter().any(|l| l.contains(",tpe,6,")) && lines.iter().any(|l| l.contains(",grid,1,")));
    let curves = std::fs::read_to_string(out.join("search-replay-curves.csv")).unwrap();
    let last_tpe = curves.lines().filter(|l| l.contains(",tpe,")).last().unwrap().to_string();
    // At 100 % of the space every run has seen the optimum.
    assert!(last_tpe.ends_with(",1.0000,1.0000,1.0000"), "{last_tpe}");
    let ((w, h), colors) = report_support::png_info(&out.join("search-replay.png"));
    assert!(w >= 700 && h >= 400 && colors > 5, "{w}x{h}, {colors} colours");
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let peer_only = dir.path().join("peer.csv");
    std::fs::write(&peer_only, to_csv_bytes(&[row("1x1x1", "cublas", 0, 0, Status::Peer, Some(1.0))]).unwrap())
        .unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_kernlab")).arg("replay").args(args).output().unwrap();
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    let e = run(&[peer_only.to_str().unwrap(), "--out", dir.path().to_str().unwrap()]);
    assert!(e.contains("peer.csv") && e.contains("status ok"), "{e}");
    let e = run(&[dir.path().join("none.csv").to_str().unwrap()]);
    assert!(e.contains("none.csv"), "{e}");
    let csv = fixture(dir.path());
    let e = run(&[csv.to_str().unwrap(), "--seeds", "0"]);
    assert!(e.contains("--seeds"), "{e}");
    let e = run(&[csv.to_str().unwrap(), "--strategy", "annealing"]);
    assert!(e.contains("annealing") && e.contains("tpe"), "{e}");
}
