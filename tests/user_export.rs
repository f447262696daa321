//! `kernlab export` (no GPU): winners of a user kernel and of a built-in family from a tuned
//! database, as JSON with the launch geometry and as a C/C++ header that compiles with the
//! system compiler and picks the nearest measured shape.

use kernlab::gpu::cache::source_hash;
use kernlab::tune::db::{TunedDb, TunedEntry};
use kernlab::tune::export::{collect, Exported};
use kernlab::tune::export_header::header;
use kernlab::tune::user::UserFamily;
use std::path::Path;
use std::process::Command;

fn transpose() -> UserFamily {
    UserFamily::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/transpose/transpose.toml")).unwrap()
}

fn entry(
    kernel: &str,
    variant: &str,
    hash: &str,
    gpu: &str,
    dtype: &str,
    shape: &[(&str, i64)],
    params: &[(&str, i64)],
) -> TunedEntry {
    TunedEntry {
        kernel: kernel.into(),
        variant: variant.into(),
        source_hash: hash.into(),
        gpu: gpu.into(),
        cc: "9.0".into(),
        nvrtc: "13.0".into(),
        dtype: dtype.into(),
        format: None,
        shape: shape.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        params: params.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        time_us: 10.0,
        peer_us: Some(20.0),
        measured_at: "2026-12-02T00:00:00Z".into(),
    }
}

fn transpose_db() -> TunedDb {
    let fam = transpose();
    let h = source_hash(&fam.sweep.variant("tiled").unwrap().source);
    // Winners of the one variant on one GPU, in a dtype and with a template hash.
    let tiled = |hash: &str, dtype: &str, shape: &[(&str, i64)], params: &[(&str, i64)]| {
        entry("transpose", "tiled", hash, "NVIDIA H200", dtype, shape, params)
    };
    let p = [("PAD", 1), ("ROWS", 8), ("TILE", 32)];
    TunedDb {
        version: 1,
        entries: vec![
            tiled(&h, "fp32", &[("rows", 4096), ("cols", 4096)], &p),
            tiled(&h, "fp32", &[("rows", 1000), ("cols", 3000)], &[("PAD", 0), ("ROWS", 4), ("TILE", 16)]),
            tiled(&h, "bf16", &[("rows", 4096), ("cols", 4096)], &[("PAD", 1), ("ROWS", 16), ("TILE", 64)]),
            // Measured with an older template: left out.
            tiled("0ld", "fp32", &[("rows", 8192), ("cols", 1024)], &p),
        ],
    }
}

#[test]
fn user_kernel_winners_carry_their_launch_geometry() {
    let x = collect(&transpose_db(), "transpose", None).unwrap();
    assert_eq!((x.entries.len(), x.stale, x.launches_per_run), (3, 1, 1));
    assert_eq!(x.dims, vec!["rows", "cols"]);
    let e = x.entries.iter().find(|e| e.dtype == "fp32" && e.shape == vec![4096, 4096]).unwrap();
    let l = &e.launches.as_ref().unwrap()[0];
    // grid (ceil(cols/TILE), ceil(rows/TILE)), block (TILE, ROWS), from transpose.toml.
    assert_eq!((l.entry.as_str(), l.grid, l.block, l.smem), ("transpose", [128, 128, 1], [32, 8, 1], 0));
    let odd = x.entries.iter().find(|e| e.shape == vec![1000, 3000]).unwrap();
    assert_eq!(odd.launches.as_ref().unwrap()[0].grid, [188, 63, 1]);
    let json: serde_json::Value = serde_json::from_str(&serde_json::to_string(&x).unwrap()).unwrap();
    // Sorted by dtype, then shape: bf16 4096x4096 (TILE 64) first.
    assert_eq!(json["entries"][0]["launches"][0]["block"][0], 64);
}

#[test]
fn several_gpus_need_a_choice_and_missing_winners_say_what_to_run() {
    let mut db = transpose_db();
    let mut other = db.entries[0].clone();
    other.gpu = "NVIDIA A100".into();
    db.entries.push(other);
    let e = format!("{:#}", collect(&db, "transpose", None).unwrap_err());
    assert!(e.contains("several GPUs") && e.contains("--gpu"), "{e}");
    assert_eq!(collect(&db, "transpose", Some("A100")).unwrap().entries.len(), 1);
    assert!(format!("{:#}", collect(&db, "transpose", Some("V100")).unwrap_err()).contains("NVIDIA A100"));
    let e = format!("{:#}", collect(&TunedDb { version: 1, entries: vec![] }, "transpose", None).unwrap_err());
    assert!(e.contains("kernlab sweep transpose"), "{e}");
}

#[test]
fn a_builtin_family_exports_its_tunables_without_geometry() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fam = kernlab::kernels::family("swiglu").unwrap();
    let sweep = kernlab::tune::space::Sweep::load(&root.join("sweeps/swiglu.toml"), fam.shape_dims()).unwrap();
    let v = &sweep.variants[0];
    let db = TunedDb {
        version: 1,
        entries: vec![entry(
            "swiglu",
            &v.name,
            &source_hash(&v.source),
            "G",
            "bf16",
            &[("tokens", 16), ("ffn", 14336)],
            &[("THREADS", 256)],
        )],
    };
    let x = collect(&db, "swiglu", None).unwrap();
    assert_eq!((x.launches_per_run, x.entries[0].launches.clone()), (0, None));
    assert!(header(&x).contains("#define SWIGLU_BF16_16X14336_THREADS 256"));
}

fn compiler() -> Option<&'static str> {
    ["c++", "g++", "clang++"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
}

/// Compiles `main` against the header of `x` and runs it; None when there is no compiler.
fn compile_and_run(x: &Exported, main: &str) -> Option<String> {
    let Some(cxx) = compiler() else {
        eprintln!("skipping the header compile check: no c++, g++ or clang++ on PATH");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("transpose.h"), header(x)).unwrap();
    std::fs::write(dir.path().join("main.cpp"), main).unwrap();
    let exe = dir.path().join("main");
    let out = Command::new(cxx)
        .args(["-std=c++11", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(dir.path().join("main.cpp"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), header(x));
    let run = Command::new(&exe).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    Some(String::from_utf8_lossy(&run.stdout).to_string())
}

#[test]
fn the_header_compiles_and_picks_the_nearest_measured_shape() {
    let x = collect(&transpose_db(), "transpose", None).unwrap();
    let h = header(&x);
    assert!(h.contains("#define TRANSPOSE_FP32_4096X4096_TILE 32"), "{h}");
    let main = r#"
#include "transpose.h"
#include <cstdio>
int main() {
    const transpose_config* a = transpose_pick("fp32", 4000, 4000);
    const transpose_config* b = transpose_pick("fp32", 900, 2500);
    const transpose_config* c = transpose_pick("bf16", 1, 1);
    const transpose_config* none = transpose_pick("fp16", 4096, 4096);
    std::printf("%lld %lld %u %lld %d %d\n", a->TILE, b->TILE, a->launch[0].grid[0], c->TILE, none == 0,
                TRANSPOSE_FP32_1000X3000_ROWS);
    return 0;
}
"#;
    if let Some(out) = compile_and_run(&x, main) {
        assert_eq!(out.trim(), "32 16 128 64 1 4");
    }
}
