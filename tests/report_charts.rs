//! Chart writers on synthetic sweep results: files appear, decode as PNG, have the
//! expected size, and are not blank; empty inputs fail with a clear message.

mod report_support;

use kernlab::report::{
    heatmap_axes, plot_param_heatmap, plot_param_strips, plot_roofline, plot_winner_vs_peer, roofline_png_name,
    Caption, RooflineOptions, ShapeKey,
};
use report_support::*;

fn caption() -> Caption {
    Caption { gpu: "NVIDIA H100 80GB HBM3".into(), date: "2025-06-01".into() }
}

fn key(family: &str, shape: &str) -> ShapeKey {
    ShapeKey { family: family.into(), dtype: "bf16".into(), shape: shape.into() }
}

#[test]
fn roofline_png_has_requested_size() {
    let (dir, _keep) = out_dir("roofline");
    let mut records = gemm_records();
    records.extend(rmsnorm_records());
    let c = ceilings();
    let path = dir.join(roofline_png_name(&c));
    assert_eq!(path.file_name().unwrap(), "roofline-nvidia-h100-80gb-hbm3-sm90.png");
    let opts = RooflineOptions { size: (1400, 900), ..Default::default() };
    plot_roofline(&c, &records, &opts, &path).unwrap();
    let (size, colors) = png_info(&path);
    assert_eq!(size, (1400, 900));
    assert!(colors > 10, "chart looks blank");
}

#[test]
fn roofline_without_records_still_draws_ceilings() {
    let (dir, _keep) = out_dir("roofline_empty");
    let path = dir.join("r.png");
    plot_roofline(&ceilings(), &[], &RooflineOptions::default(), &path).unwrap();
    assert_eq!(png_info(&path).0, (1400, 900));
}

#[test]
fn roofline_rejects_empty_ceilings() {
    let (dir, _keep) = out_dir("roofline_bad");
    let c = kernlab::roofline::Ceilings::default();
    let err = plot_roofline(&c, &gemm_records(), &RooflineOptions::default(), &dir.join("r.png")).unwrap_err();
    assert!(format!("{err:#}").contains("re-measure"));
}

#[test]
fn strips_heatmap_and_bars() {
    let (dir, _keep) = out_dir("sweep");
    let gemm = gemm_records();
    let k = key("gemm", "16x4096x14336");
    let p = dir.join("strips.png");
    plot_param_strips(&gemm, &k, &caption(), &p).unwrap();
    // Four axes vary (variant, BM, BN, STAGES): 3 columns × 2 rows of panels.
    let (size, colors) = png_info(&p);
    assert_eq!(size, (3 * 520, 2 * 400 + 90));
    assert!(colors > 10);

    let (x, y) = heatmap_axes(&gemm, &k).unwrap();
    assert_eq!(x, "BM", "BM matters most in the synthetic data");
    let p = dir.join("heat.png");
    plot_param_heatmap(&gemm, &k, &x, &y, &caption(), &p).unwrap();
    assert!(png_info(&p).1 > 10);

    let p = dir.join("bars.png");
    plot_winner_vs_peer(&gemm, &caption(), &p).unwrap();
    let (size, _) = png_info(&p);
    assert_eq!(size.1, 650);

    let norm = rmsnorm_records();
    let p = dir.join("norm_bars.png");
    plot_winner_vs_peer(&norm, &caption(), &p).unwrap();
    let p = dir.join("norm_strips.png");
    plot_param_strips(&norm, &key("rmsnorm", "2048x4096"), &caption(), &p).unwrap();
    assert_eq!(png_info(&p).0, (2 * 520, 400 + 90));
}

#[test]
fn empty_and_untimed_inputs_are_clear_errors() {
    let (dir, _keep) = out_dir("empty");
    let k = key("gemm", "16x4096x14336");
    let err = plot_param_strips(&[], &k, &caption(), &dir.join("a.png")).unwrap_err();
    assert!(format!("{err:#}").contains("no verified, timed candidates"));
    let mut untimed = gemm_records();
    for r in &mut untimed {
        r.timing = None;
    }
    assert!(plot_winner_vs_peer(&untimed, &caption(), &dir.join("b.png")).is_err());
    assert!(heatmap_axes(&untimed, &k).is_none());
    assert!(plot_param_heatmap(&untimed, &k, "BM", "BN", &caption(), &dir.join("c.png")).is_err());
    assert!(!dir.join("a.png").exists());
}
