//! CI checks (no GPU) of the decode-attention and RoPE sweep spaces: the selftest's sample
//! (first candidate + 4 evenly spread, as `kernlab selftest` picks them) reaches both merge
//! paths of the split-KV kernel on shapes with several splits, the new tunables' Rust-side
//! defaults match the template, and (NVRTC) a spread of the decode space compiles for sm_86
//! with all three entry points and no spills (tests/attention_nvrtc.rs covers sm_80 and
//! sm_90a; tests/memkernels_nvrtc.rs compiles the RoPE space for all three).

use kernlab::gpu::nvrtc;
use kernlab::kernels::attention_common::DECODE_SOURCE;
use kernlab::kernels::tunables::template_defaults;
use kernlab::kernels::{family, DType, Shape};
use kernlab::tune::compile::request;
use kernlab::tune::space::{Candidate, DeviceLimits, Strategy, Sweep};
use kernlab::tune::strategy;
use std::path::Path;

fn sweep(name: &str) -> Sweep {
    let fam = family(name).unwrap();
    Sweep::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("sweeps/{name}.toml")), fam.shape_dims()).unwrap()
}

fn selftest_sample(name: &str, shape: &str) -> Vec<Candidate> {
    let s = sweep(name);
    let fam = family(name).unwrap();
    let shape = Shape::parse(shape, fam.shape_dims()).unwrap();
    let en = s.enumerate(&shape.dims, DType::BF16.bytes() as i64, &DeviceLimits::for_arch("sm_90a").unwrap()).unwrap();
    let mut chosen = strategy::select(&en.kept, Strategy::Grid, 4, 0);
    if !chosen.contains(&en.kept[0]) {
        chosen.insert(0, en.kept[0].clone());
    }
    chosen
}

#[test]
fn new_decode_tunables_default_as_in_the_template() {
    let d = template_defaults(DECODE_SOURCE, DType::BF16);
    for (name, v) in [("BLOCKS_PER_SM", 1), ("FUSED_COMBINE", 1), ("STAGES", 3), ("SPLITS", 0)] {
        assert_eq!(d.get(name), Some(&v), "{name}");
    }
}

#[test]
fn selftest_reaches_both_decode_merge_paths() {
    for (name, shapes) in [
        ("attention_decode", &["1x1000x8x2x128", "2x4100x32x8x128", "1x300x32x1x128"][..]),
        ("attention_decode_varlen", &["6x1000x8x2x128", "7x300x20x4x128"][..]),
    ] {
        for shape in shapes {
            let picks = selftest_sample(name, shape);
            for fused in [0, 1] {
                assert!(
                    picks.iter().any(|c| c.params.get("FUSED_COMBINE") == Some(&fused)),
                    "{name} {shape}: the selftest sample has no FUSED_COMBINE = {fused}: {picks:?}"
                );
            }
        }
    }
}

#[test]
fn a_spread_of_the_decode_space_compiles_for_sm86_without_spills() {
    let s = sweep("attention_decode");
    let fam = family("attention_decode").unwrap();
    let limits = DeviceLimits::for_arch("sm_86").unwrap();
    for text in ["1x8192x32x8x128", "3x17x4x4x64"] {
        let shape = Shape::parse(text, fam.shape_dims()).unwrap();
        let en = s.enumerate(&shape.dims, 2, &limits).unwrap();
        let n = en.kept.len();
        assert!(n > 0, "{text}: nothing left on sm_86");
        for (k, i) in [0, n / 3, 2 * n / 3, n - 1].into_iter().enumerate() {
            let dt = if k % 2 == 0 { DType::BF16 } else { DType::F16 };
            let req = request(&s, &en.kept[i], dt, "sm_86");
            let m = nvrtc::compile(&req).unwrap_or_else(|e| panic!("{text} {}: {e:#}", req.defines_string()));
            for e in fam.entries("splitkv").unwrap() {
                let r = m.resources.get(*e).unwrap_or_else(|| panic!("{}: no entry {e}", req.defines_string()));
                assert_eq!(r.spill_store_bytes + r.spill_load_bytes, 0, "{} {e} spills", req.defines_string());
            }
        }
    }
}
