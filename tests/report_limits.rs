//! Charts on data that used to panic them or make them allocate without bound: a parameter
//! with thousands of values, thousands of shapes or parameters, extreme and non-finite
//! numbers. Each chart must finish (or decline with a reason) on a bounded canvas.

mod report_support;

use kernlab::report::{
    heatmap_axes, heatmap_skipped, plot_param_heatmap, plot_param_strips, plot_winner_vs_peer, Caption, ShapeKey,
    MAX_HEATMAP_LEVELS,
};
use kernlab::tune::record::{to_csv_bytes, CandidateRecord, Status, Timing};
use report_support::*;
use std::collections::BTreeMap;

fn caption() -> Caption {
    Caption { gpu: "test GPU".into(), date: "2026-12-02".into() }
}

fn key() -> ShapeKey {
    ShapeKey { family: "gemm".into(), dtype: "bf16".into(), shape: "16x4096x4096".into() }
}

fn row(shape: &str, params: &[(&str, i64)], t: f64) -> CandidateRecord {
    CandidateRecord {
        family: "gemm".into(),
        variant: "mma".into(),
        dtype: "bf16".into(),
        shape: shape.into(),
        params: params.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
        status: Some(Status::Ok),
        timing: Some(Timing { median_us: t, p20_us: t, p80_us: t, min_us: t, reps: 5 }),
        ..Default::default()
    }
}

/// 3000 candidates whose OFFSET takes 3000 values and matters most; BM and STAGES vary too.
fn wide_records() -> Vec<CandidateRecord> {
    (0..3000i64)
        .map(|i| {
            let t = 10.0 + i as f64 + if i % 2 == 0 { 0.0 } else { 1.0 };
            row("16x4096x4096", &[("OFFSET", i), ("BM", 64 << (i % 2)), ("STAGES", 2 + i % 3)], t)
        })
        .collect()
}

#[test]
fn a_parameter_with_thousands_of_values_is_left_out_of_the_heat_map() {
    let records = wide_records();
    // The heat map takes the most influential axes that fit...
    let (x, y) = heatmap_axes(&records, &key()).unwrap();
    assert!(x != "OFFSET" && y != "OFFSET", "{x} × {y}");
    // ...and says why OFFSET is not one of them.
    let note = heatmap_skipped(&records, &key()).unwrap();
    assert!(note.contains("OFFSET (3000 values)") && note.contains(&MAX_HEATMAP_LEVELS.to_string()), "{note}");
    let (dir, _keep) = out_dir("wide_heatmap");
    plot_param_heatmap(&records, &key(), &x, &y, &caption(), &dir.join("h.png")).unwrap();
    // Asked for it anyway, the chart declines instead of building a gigapixel canvas.
    let err = plot_param_heatmap(&records, &key(), "OFFSET", "BM", &caption(), &dir.join("o.png")).unwrap_err();
    assert!(format!("{err:#}").contains("OFFSET takes 3000 values"), "{err:#}");
}

#[test]
fn heat_map_canvas_stays_bounded_at_the_level_limit() {
    let n = MAX_HEATMAP_LEVELS as i64;
    let long = |i: i64| 10_000_000_000 + i; // long labels
    let records: Vec<CandidateRecord> =
        (0..n * 2).map(|i| row("16x4096x4096", &[("A", long(i % n)), ("B", i / 2)], 1.0 + i as f64)).collect();
    let (dir, _keep) = out_dir("heatmap_limit");
    let p = dir.join("h.png");
    plot_param_heatmap(&records, &key(), "A", "B", &caption(), &p).unwrap();
    let ((w, h), _) = png_info(&p);
    assert!(w <= 5000 && h <= 5000, "{w}x{h}");
}

#[test]
fn thousands_of_shapes_make_a_bounded_bar_chart() {
    let records: Vec<CandidateRecord> =
        (1..=2000).map(|m| row(&format!("{m}x4096x4096"), &[("BM", 64)], 10.0 + m as f64)).collect();
    let (dir, _keep) = out_dir("many_bars");
    let p = dir.join("b.png");
    plot_winner_vs_peer(&records, &caption(), &p).unwrap();
    let ((w, h), colors) = png_info(&p);
    assert!(w <= 40 * 320 + 200 && h <= 650, "{w}x{h}");
    assert!(colors > 3, "blank chart");
}

#[test]
fn thousands_of_parameters_make_a_bounded_strip_chart() {
    let names: Vec<String> = (0..2000).map(|i| format!("P{i}")).collect();
    let records: Vec<CandidateRecord> = (0..4)
        .map(|j| {
            let params: Vec<(&str, i64)> = names.iter().map(|n| (n.as_str(), j)).collect();
            row("16x4096x4096", &params, 10.0 + j as f64)
        })
        .collect();
    let (dir, _keep) = out_dir("many_strips");
    let p = dir.join("s.png");
    plot_param_strips(&records, &key(), &caption(), &p).unwrap();
    let ((w, h), _) = png_info(&p);
    assert!(w <= 3 * 520 && h <= 4 * 400 + 90, "{w}x{h}");
}

#[test]
fn extreme_and_non_finite_numbers_do_not_break_the_charts() {
    let mut records = vec![
        row("16x4096x4096", &[("BM", 64), ("BN", 64)], 1e-300),
        row("16x4096x4096", &[("BM", 128), ("BN", 64)], 1e300),
        row("16x4096x4096", &[("BM", 64), ("BN", 128)], 3.0),
        row("32x4096x4096", &[("BM", 64), ("BN", 64)], 5.0),
    ];
    records[0].tflops = Some(f64::INFINITY);
    records[3].tflops = Some(f64::NAN);
    records[1].pct_of_bound = Some(f64::NAN);
    let (dir, _keep) = out_dir("extreme");
    plot_param_strips(&records, &key(), &caption(), &dir.join("s.png")).unwrap();
    plot_param_heatmap(&records, &key(), "BM", "BN", &caption(), &dir.join("h.png")).unwrap();
    // Whatever it decides to draw, the bar chart must not panic.
    let _ = plot_winner_vs_peer(&records, &caption(), &dir.join("b.png"));
}

/// The whole `kernlab report`, in a child process, on the CSV that used to make it
/// allocate ~3 GB and panic in the heat map: it finishes, says why the heat map left the
/// parameter out, and its peak memory stays small.
#[test]
fn report_on_a_wide_sweep_finishes_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gemm.csv"), to_csv_bytes(&wide_records()).unwrap()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kernlab"))
        .arg("report")
        .env("KERNLAB_REPORTS", dir.path())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && !text.contains("panicked"), "{text}");
    assert!(text.contains("OFFSET (3000 values)"), "{text}");
    // Peak resident memory of the waited-for children (this test binary starts no other).
    // SAFETY: getrusage writes one rusage struct through a valid pointer.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) }, 0);
    let peak_mib = usage.ru_maxrss / 1024;
    assert!(peak_mib < 1024, "kernlab report peaked at {peak_mib} MiB");
}
