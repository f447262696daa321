//! Tests of sweep-file parsing and lazy enumeration.

use super::*;
use std::io::Write;

fn setup(sweep: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sweeps")).unwrap();
    std::fs::create_dir_all(dir.path().join("kernels/t")).unwrap();
    std::fs::write(
        dir.path().join("kernels/t/k.cu"),
        "#ifndef BM\n#define BM 64\n#endif\n#ifndef BN\n#define BN 64\n#endif\n#ifndef WM\n#define WM 32\n#endif\n",
    )
    .unwrap();
    let p = dir.path().join("sweeps/t.toml");
    std::fs::File::create(&p).unwrap().write_all(sweep.as_bytes()).unwrap();
    (dir, p)
}

const GOOD: &str = r#"
family = "gemm"
shapes = ["16x64x64"]
[tolerance]
bf16 = 0.02
[[variant]]
name = "k"
file = "kernels/t/k.cu"
params = { BM = [32, 64, 128], BN = [32, 64], WM = [16, 32, 64] }
derived = { WARPS = "BM / WM" }
constraints = [
  "BM % WM == 0",
  "WARPS <= 2",
  "BM * BN * 2 <= max_smem",
]
"#;

fn limits() -> DeviceLimits {
    DeviceLimits { max_smem: 8192, max_threads: 1024, sm_count: 132, cc: 90 }
}

#[test]
fn enumerates_and_counts_drops() {
    let (_d, p) = setup(GOOD);
    let s = Sweep::load(&p, &["M", "N", "K"]).unwrap();
    let shape = vec![("M".to_string(), 16), ("N".to_string(), 64), ("K".to_string(), 64)];
    let e = s.enumerate(&shape, 2, &limits()).unwrap();
    assert_eq!(e.total, 18);
    // Hand count: pairs (BM,WM) with BM%WM==0 and BM/WM<=2:
    // (32,16),(32,32),(64,32),(64,64),(128,64) → 5, × BN {32,64} = 10;
    // smem BM*BN*2 <= 8192 drops (128,64)×BN=64 (16384) and (128,64)×BN=32 is 8192 (kept),
    // (64,*)×BN=64 = 8192 kept. So 9 kept.
    assert_eq!(e.kept.len(), 9, "{:?}", e.kept);
    let dropped: usize = e.dropped.iter().map(|(_, n)| n).sum();
    assert_eq!(dropped + e.kept.len(), e.total);
    assert!(e.dropped.iter().any(|(r, _)| r.contains("BM % WM == 0")));
    // Deterministic order.
    let e2 = s.enumerate(&shape, 2, &limits()).unwrap();
    assert_eq!(e.kept, e2.kept);
}

#[test]
fn when_filters_by_shape() {
    let (_d, p) = setup(&GOOD.replace("name = \"k\"", "name = \"k\"\nwhen = \"M > 16\""));
    let s = Sweep::load(&p, &["M", "N", "K"]).unwrap();
    let e = s.enumerate(&[("M".into(), 16), ("N".into(), 64), ("K".into(), 64)], 2, &limits()).unwrap();
    assert!(e.kept.is_empty());
    assert!(e.dropped[0].0.contains("not for this shape"));
}

#[test]
fn unknown_parameter_in_constraint_names_file_and_line() {
    let (_d, p) = setup(&GOOD.replace("\"WARPS <= 2\"", "\"WARPZ <= 2\""));
    let err = format!("{:#}", Sweep::load(&p, &["M", "N", "K"]).unwrap_err());
    assert!(err.contains("t.toml:13"), "{err}");
    assert!(err.contains("WARPZ"), "{err}");
}

#[test]
fn parameter_the_template_does_not_declare_is_an_error() {
    let (_d, p) = setup(&GOOD.replace("WM = [16, 32, 64] }", "WM = [16, 32, 64], XX = [1] }"));
    let err = format!("{:#}", Sweep::load(&p, &["M", "N", "K"]).unwrap_err());
    assert!(err.contains("unknown parameter XX"), "{err}");
}

#[test]
fn empty_values_and_malformed_toml_are_errors_with_lines() {
    let (_d, p) = setup(&GOOD.replace("BN = [32, 64]", "BN = []"));
    let err = format!("{:#}", Sweep::load(&p, &["M", "N", "K"]).unwrap_err());
    assert!(err.contains("no values"), "{err}");
    let (_d, p) = setup("family = \"gemm\"\n[[variant]\nname = 1\n");
    let err = format!("{:#}", Sweep::load(&p, &["M", "N", "K"]).unwrap_err());
    assert!(err.contains("line 2"), "{err}");
    let (_d, p) = setup(&GOOD.replace("constraints", "constrains"));
    let err = format!("{:#}", Sweep::load(&p, &["M", "N", "K"]).unwrap_err());
    assert!(err.contains("constrains"), "{err}");
}

#[test]
fn bad_expression_is_an_error() {
    let (_d, p) = setup(&GOOD.replace("\"BM % WM == 0\"", "\"BM % (WM == 0\""));
    let err = format!("{:#}", Sweep::load(&p, &["M", "N", "K"]).unwrap_err());
    assert!(err.contains("bad expression"), "{err}");
}

#[test]
fn ceil_div_and_limits_for_arch() {
    let (_d, p) = setup(&GOOD.replace("\"WARPS <= 2\"", "\"ceil_div(M, BM) * BM >= M\""));
    let s = Sweep::load(&p, &["M", "N", "K"]).unwrap();
    let e = s.enumerate(&[("M".into(), 17), ("N".into(), 64), ("K".into(), 64)], 2, &limits()).unwrap();
    assert!(!e.kept.is_empty());
    assert_eq!(DeviceLimits::for_arch("sm_90a").unwrap().max_smem, 232_448);
    assert!(DeviceLimits::for_arch("gpu").is_err());
}
