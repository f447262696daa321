//! What the sweep-space test files share: sweep files over many made-up parameters, written
//! on the fly, and the 64x64x64 GEMM shape on sm_90a they are evaluated at.
#![allow(dead_code)]

use kernlab::tune::record::{CandidateRecord, Status, Timing};
use kernlab::tune::space::{Candidate, DeviceLimits, ShapeEnv, Sweep};
use std::path::Path;

/// A GEMM sweep file in `dir` over `n` parameters P0.. of values 1..=k (the space has k^n
/// points): `header` is added to the file's top-level lines and `variant_rest` (constraints,
/// derived values) to its one variant.
pub fn wide_sweep(dir: &Path, n: usize, k: usize, header: &str, variant_rest: &str) -> Sweep {
    let macros: String = (0..n).map(|i| format!("#ifndef P{i}\n#define P{i} 1\n#endif\n")).collect();
    std::fs::write(dir.join("w.cu"), macros).unwrap();
    let vals: Vec<String> = (1..=k).map(|v| v.to_string()).collect();
    let params: Vec<String> = (0..n).map(|i| format!("P{i} = [{}]", vals.join(", "))).collect();
    let text = format!(
        "family = \"gemm\"\n{header}\n[[variant]]\nname = \"w\"\nfile = \"w.cu\"\nparams = {{ {} }}\n{variant_rest}\n",
        params.join(", ")
    );
    let p = dir.join(format!("w{n}x{k}.toml"));
    std::fs::write(&p, text).unwrap();
    Sweep::load(&p, &["M", "N", "K"]).unwrap()
}

/// The GEMM shape M = N = K = 64, as the space's dimension values.
pub fn shape_64() -> Vec<(String, i64)> {
    vec![("M".to_string(), 64), ("N".to_string(), 64), ("K".to_string(), 64)]
}

pub fn sm90a() -> DeviceLimits {
    DeviceLimits::for_arch("sm_90a").unwrap()
}

/// The sweep's environment at [`shape_64`] in bf16 (2 bytes) on sm_90a.
pub fn env_64(s: &Sweep) -> ShapeEnv {
    s.env(&shape_64(), 2, &sm90a()).unwrap()
}

/// A timing of `median` µs with its 20th and 80th percentiles `half` µs either side.
pub fn timing(median: f64, half: f64) -> Timing {
    Timing { median_us: median, p20_us: median - half, p80_us: median + half, min_us: median - half, reps: 10 }
}

/// The CSV row of `c` measured at [`shape_64`] in bf16: `Ok` with `median` µs (a spread of
/// `half`), or a compile error when `median` is `None`.
pub fn row_64(c: &Candidate, median: Option<f64>, half: f64) -> CandidateRecord {
    CandidateRecord {
        family: "gemm".into(),
        variant: c.variant.clone(),
        dtype: "bf16".into(),
        shape: "64x64x64".into(),
        params: c.params.clone(),
        status: Some(if median.is_some() { Status::Ok } else { Status::CompileError }),
        timing: median.map(|t| timing(t, half)),
        ..Default::default()
    }
}
