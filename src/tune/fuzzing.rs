//! Bodies of the cargo-fuzz targets for sweep inputs (fuzz/fuzz_targets/sweep_*.rs), kept
//! in the library so that tests/fuzz_sweep.rs drives the same code on stable Rust in CI.
//! Each takes arbitrary bytes; any input may be rejected, none may panic, hang, or allocate
//! far beyond its own size. A broken invariant panics, which the fuzzer reports.

use super::record::parse_sweep_csv;
use super::space::expr::{compile, MAX_LEN};
use super::space::{DeviceLimits, Strategy, Sweep};
use super::strategy;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Names the expression target compiles against (the first bytes give their values).
const EXPR_NAMES: &[&str] = &["BM", "BN", "BK", "M", "N", "K", "max_smem", "dtype_bytes"];

/// Expression text → compile → evaluate. The first 8 bytes pick the variables' values
/// (small numbers and the extremes); the rest, as UTF-8, is the expression.
pub fn expression(data: &[u8]) {
    let (head, text) = data.split_at(data.len().min(EXPR_NAMES.len()));
    let Ok(text) = std::str::from_utf8(text) else { return };
    let values: Vec<i64> = (0..EXPR_NAMES.len()).map(|i| value_of(head.get(i).copied().unwrap_or(1))).collect();
    if let Ok(p) = compile(text, EXPR_NAMES) {
        assert!(text.len() <= MAX_LEN, "accepted an expression of {} bytes, over the limit", text.len());
        let _ = p.eval(&values);
    }
}

fn value_of(b: u8) -> i64 {
    match b {
        0xff => i64::MAX,
        0xfe => i64::MIN,
        0xfd => -1,
        b => i64::from(b) * 16,
    }
}

/// A folder with the template the fuzzed sweep files name (`k.cu`, declaring P0..P5 and
/// BM, BN, BK), made once per process.
fn template_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("kernlab-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the fuzz template folder");
        let names = ["P0", "P1", "P2", "P3", "P4", "P5", "BM", "BN", "BK"];
        let macros: String = names.iter().map(|n| format!("#ifndef {n}\n#define {n} 1\n#endif\n")).collect();
        std::fs::write(dir.join("k.cu"), macros).expect("writing the fuzz template");
        dir
    })
    .as_path()
}

/// Sweep file text (a GEMM sweep, dims M, N, K) → parse → both strategies and the full
/// enumeration for two shapes on two architectures. Budgets stay within what
/// [`strategy::choose`] bounds; a selection larger than its budget is a bug.
pub fn sweep_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = template_dir().join("fuzz.toml");
    let Ok(sweep) = Sweep::parse(&path, text, &["M", "N", "K"]) else { return };
    let shapes = [[16, 4096, 4096], [1, 64, 7]];
    for (i, dims) in shapes.iter().enumerate() {
        let shape: Vec<(String, i64)> = ["M", "N", "K"].iter().zip(dims).map(|(n, v)| (n.to_string(), *v)).collect();
        let arch = if i == 0 { "sm_90a" } else { "sm_80" };
        let limits = DeviceLimits::for_arch(arch).expect("a known architecture");
        let Ok(env) = sweep.env(&shape, 2, &limits) else { continue };
        for (st, budget) in [(Strategy::Grid, 0), (Strategy::Random, 7), (Strategy::Grid, 5)] {
            if let Ok(sel) = strategy::choose(&sweep, &env, st, budget, 42) {
                assert!(budget == 0 || sel.chosen.len() <= budget, "{} chosen, budget {budget}", sel.chosen.len());
            }
        }
        let _ = sweep.enumerate(&shape, 2, &limits);
    }
}

/// Sweep CSV bytes → the reader. Whatever it trusts must be stable: reading only the bytes
/// up to the end of the last trusted row (what `--resume` keeps) gives the same rows.
pub fn sweep_csv(data: &[u8]) {
    let Ok(found) = parse_sweep_csv(data) else { return };
    assert!(found.complete_len as usize <= data.len());
    let kept = &data[..found.complete_len as usize];
    if found.records.is_empty() && found.complete_len == 0 {
        return; // not even a whole header line
    }
    let again = parse_sweep_csv(kept).expect("the kept part of a readable file is readable");
    // Compared as text: a cell may legally hold NaN, which is not equal to itself.
    assert_eq!(
        format!("{:?}", again.records),
        format!("{:?}", found.records),
        "cutting the torn tail changed the rows"
    );
    assert_eq!(again.complete_len, found.complete_len);
}
