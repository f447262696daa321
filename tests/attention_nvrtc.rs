//! CI checks of the attention families that need no GPU: the sweep files load and enumerate
//! on their default and selftest shapes, the Rust-side defaults match the templates', and
//! every template compiles with NVRTC for sm_80 and sm_90a (the wgmma template for sm_90a
//! only) — at its defaults, in bf16 and fp16, and at an even sample of each variant's sweep
//! space — without register spills or ptxas serializing wgmma.

use kernlab::gpu::nvrtc::{compile, CompileRequest};
use kernlab::kernels::attention_common::{DECODE_SOURCE, PREFILL_SOURCE, REFERENCE_SOURCE};
use kernlab::kernels::attention_prefill::wgmma::PREFILL_WGMMA_SOURCE;
use kernlab::kernels::tunables::template_defaults;
use kernlab::kernels::{family, DType, Shape};
use kernlab::tune::compile::request;
use kernlab::tune::space::{DeviceLimits, Sweep};
use std::collections::BTreeMap;
use std::path::Path;

const FAMILIES: [&str; 4] =
    ["attention_prefill", "attention_prefill_varlen", "attention_decode", "attention_decode_varlen"];
const ARCHS: [&str; 2] = ["sm_80", "sm_90a"];

fn sweep(name: &str) -> Sweep {
    let fam = family(name).unwrap();
    Sweep::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("sweeps/{name}.toml")), fam.shape_dims()).unwrap()
}

#[test]
fn template_defaults_are_the_documented_ones() {
    // The values the launches used when they were Rust constants (before the defaults were
    // read from the templates): a template edit that changes one shows up here.
    let want: [(&str, &[(&str, i64)]); 3] = [
        (PREFILL_SOURCE, &[("HEAD_DIM", 128), ("BLOCK_M", 128), ("BLOCK_N", 64), ("NUM_WARPS", 8), ("STAGES", 2)]),
        (
            PREFILL_WGMMA_SOURCE,
            &[
                ("HEAD_DIM", 128),
                ("BLOCK_N", 128),
                ("CWG", 2),
                ("STAGES", 3),
                ("OVERLAP", 1),
                ("PINGPONG", 1),
                ("EPI_SMEM", 1),
            ],
        ),
        (
            DECODE_SOURCE,
            &[
                ("HEAD_DIM", 128),
                ("BLOCK_N", 64),
                ("NUM_WARPS", 4),
                ("STAGES", 3),
                ("SPLITS", 0),
                ("BLOCKS_PER_SM", 1),
                ("FUSED_COMBINE", 1),
            ],
        ),
    ];
    for (src, defaults) in want {
        let d = template_defaults(src, DType::BF16);
        for (name, v) in defaults {
            assert_eq!(d.get(*name), Some(v), "{name}");
        }
    }
}

#[test]
fn sweep_files_load_and_enumerate() {
    for name in FAMILIES {
        let s = sweep(name);
        let fam = family(name).unwrap();
        assert_eq!(s.family, name);
        assert!(!s.shapes.is_empty(), "{name}: no default shapes");
        for arch in ARCHS {
            let limits = DeviceLimits::for_arch(arch).unwrap();
            let shapes = s.shapes.iter().map(|x| x.as_str()).chain(fam.selftest_shapes().iter().copied());
            for text in shapes {
                let shape = Shape::parse(text, fam.shape_dims()).unwrap();
                fam.validate(&shape, DType::BF16).unwrap();
                let en = s.enumerate(&shape.dims, 2, &limits).unwrap();
                assert!(!en.kept.is_empty(), "{name} {text} on {arch}: every candidate was dropped: {:?}", en.dropped);
                for c in &en.kept {
                    assert_eq!(c.params["HEAD_DIM"], shape.get("D"), "{name} {text}");
                }
                // the Hopper variant is offered on sm_90a, and only there
                if name.starts_with("attention_prefill") {
                    let wgmma = en.kept.iter().filter(|c| c.variant == "flash_wgmma").count();
                    assert_eq!(wgmma > 0, arch == "sm_90a", "{name} {text} on {arch}: {wgmma} flash_wgmma candidates");
                }
            }
        }
    }
    // the defaults named in the issue
    assert_eq!(sweep("attention_prefill").shapes, ["1x4096x32x8x128", "1x8192x32x8x128"]);
    assert_eq!(sweep("attention_decode").shapes, ["1x8192x32x8x128", "8x4096x32x8x128"]);
}

fn check_compiles(name: &str, source: &str, defines: BTreeMap<String, String>, arch: &str, entries: &[&str]) {
    let req = CompileRequest { name: name.into(), source: source.into(), defines, arch: arch.into() };
    let m = compile(&req).unwrap_or_else(|e| panic!("{e:#}"));
    for e in entries {
        let r = m.resources.get(*e).unwrap_or_else(|| panic!("{name} {}: no entry {e}", req.defines_string()));
        assert_eq!(
            r.spill_store_bytes + r.spill_load_bytes,
            0,
            "{name} {} on {arch}: {e} spills: {r:?}",
            req.defines_string()
        );
    }
    // ptxas info C7510..C7520: "wgmma.mma_async instructions are serialized due to ..."
    assert!(
        !m.log.contains("serialized"),
        "{name} {} on {arch}: ptxas serializes wgmma:\n{}",
        req.defines_string(),
        m.log
    );
}

/// A template from disk, its quoted includes (attention_common.cuh, hopper.cuh) expanded by
/// load_source as the sweep does.
fn template_source(rel: &str) -> String {
    kernlab::gpu::nvrtc::load_source(&Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

#[test]
fn templates_compile_at_their_defaults() {
    let (prefill, decode) =
        (template_source("kernels/attention/prefill.cu"), template_source("kernels/attention/decode_splitkv.cu"));
    for arch in ARCHS {
        for dt in [DType::BF16, DType::F16] {
            check_compiles("kernels/attention/prefill.cu", &prefill, dt.defines(), arch, &["attn_prefill"]);
            check_compiles(
                "kernels/attention/decode_splitkv.cu",
                &decode,
                dt.defines(),
                arch,
                &["attn_decode_split", "attn_decode_combine"],
            );
            check_compiles(
                "kernels/attention/reference.cu",
                REFERENCE_SOURCE,
                dt.defines(),
                arch,
                &["attn_ref_prefill", "attn_ref_decode"],
            );
        }
    }
    let wgmma_source = template_source("kernels/attention/prefill_wgmma.cu");
    for dt in [DType::BF16, DType::F16] {
        check_compiles(
            "kernels/attention/prefill_wgmma.cu",
            &wgmma_source,
            dt.defines(),
            "sm_90a",
            &["attn_prefill_wgmma"],
        );
    }
}

#[test]
fn a_sample_of_each_sweep_space_compiles() {
    for name in ["attention_prefill", "attention_decode"] {
        let s = sweep(name);
        let fam = family(name).unwrap();
        // default shapes (D = 128) and a D = 64 selftest shape
        let d64 = fam.selftest_shapes().iter().find(|t| t.ends_with("x64")).unwrap();
        for arch in ARCHS {
            let limits = DeviceLimits::for_arch(arch).unwrap();
            for text in [s.shapes[0].as_str(), d64] {
                let shape = Shape::parse(text, fam.shape_dims()).unwrap();
                let en = s.enumerate(&shape.dims, 2, &limits).unwrap();
                let mut by_variant: BTreeMap<&str, Vec<_>> = BTreeMap::new();
                for c in &en.kept {
                    by_variant.entry(c.variant.as_str()).or_default().push(c);
                }
                for cands in by_variant.values() {
                    let n = cands.len();
                    let picks: Vec<usize> = if n <= 3 { (0..n).collect() } else { vec![0, n / 2, n - 1] };
                    for i in picks {
                        let c = cands[i];
                        let dt = if i % 2 == 0 { DType::BF16 } else { DType::F16 };
                        let req = request(&s, c, dt, arch);
                        let entries = fam.entries(&c.variant).unwrap();
                        check_compiles(&req.name, &req.source, req.defines.clone(), arch, entries);
                    }
                }
            }
        }
    }
}
