//! NVRTC compilation of the gemm_int4 templates (no GPU needed): both kernels at their
//! defaults in bf16 and fp16, the reference module, a sample of the sweep space and every
//! selftest format, for sm_80, sm_86 and sm_90a; sampled sweep candidates must not spill.
//!
//! NVRTC comes from the CUDA toolkit or the pip wheels (see docs / scripts). Where it is
//! missing the test says so and passes, unless KERNLAB_REQUIRE_NVRTC=1 (set it in CI).

mod nvrtc_support;

use kernlab::gpu::nvrtc::CompileRequest;
use kernlab::kernels::gemm_int4::act_order::act_order_request;
use kernlab::kernels::gemm_int4::quantize::{quantize_request, QUANTIZE_CHECKS};
use kernlab::kernels::gemm_int4::tiled::repack_request;
use kernlab::kernels::gemm_int4::{reference_request, variant_takes_format, with_format, GemmInt4, SELFTEST_FORMATS};
use kernlab::kernels::{DType, Family, Shape};
use kernlab::tune::compile::request;
use kernlab::tune::space::{Candidate, DeviceLimits, Sweep};
use nvrtc_support::{assert_all_compile, nvrtc_available, Job};
use std::collections::BTreeMap;
use std::path::Path;

const ARCHS: &[&str] = &["sm_80", "sm_86", "sm_90a"];

fn sweep() -> Sweep {
    Sweep::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("sweeps/gemm_int4.toml"), GemmInt4.shape_dims()).unwrap()
}

fn template(variant: &str) -> CompileRequest {
    let s = sweep();
    let v = s.variant(variant).unwrap();
    CompileRequest {
        name: v.file.display().to_string(),
        source: v.source.clone(),
        defines: BTreeMap::new(),
        arch: String::new(),
    }
}

#[test]
fn templates_compile_at_their_defaults_and_the_reference_and_quantizer_modules_compile() {
    if !nvrtc_available() {
        return;
    }
    let mut reqs = Vec::new();
    for arch in ARCHS {
        for variant in ["int4_gemv", "int4_gemv_tc", "int4_gemv_bulk", "int4_mma", "int4_mma_wgmma", "int4_wgmma_rs"] {
            if (variant.contains("wgmma") || variant == "int4_gemv_bulk") && *arch != "sm_90a" {
                continue; // wgmma and bulk copies: Hopper only (min_cc = 90)
            }
            for dt in [DType::BF16, DType::F16] {
                let mut r = template(variant);
                r.arch = arch.to_string();
                r.defines = dt.defines();
                reqs.push(Job::new(format!("{variant} defaults {}", dt.name()), r));
            }
        }
        // The SwiGLU epilogue the model compiles for gate+up (bf16 only, M up to 16), at
        // configurations inside the sweep's register constraints (it adds no registers).
        for (m_tiles, n_tiles) in [(1, 1), (2, 2)] {
            let mut r = template("int4_gemv_tc");
            r.arch = arch.to_string();
            r.defines = DType::BF16.defines();
            for (k, v) in [("SWIGLU", 1), ("SPLITK", 1), ("M_TILES", m_tiles), ("N_TILES", n_tiles), ("UNROLL", 1)] {
                r.defines.insert(k.into(), v.to_string());
            }
            reqs.push(Job::new(format!("int4_gemv_tc SWIGLU M_TILES {m_tiles} N_TILES {n_tiles}"), r));
        }
        reqs.push(Job::new("reference.cu", reference_request(arch)).spills_allowed());
        reqs.push(Job::new("repack.cu", repack_request(arch)));
        reqs.push(Job::new("act_order.cu", act_order_request(arch)));
        for dt in [DType::BF16, DType::F16] {
            for &(g, _) in QUANTIZE_CHECKS {
                reqs.push(Job::new(format!("quantize.cu g{g} {}", dt.name()), quantize_request(arch, dt, g)));
            }
        }
    }
    assert_all_compile(reqs);
}

/// The candidates of `s` the constraints keep at `shape` (MxNxK) in bf16 on `arch`.
fn kept(s: &Sweep, shape: &str, arch: &str) -> Vec<Candidate> {
    let shape = Shape::parse(shape, GemmInt4.shape_dims()).unwrap();
    s.enumerate(&shape.dims, 2, &DeviceLimits::for_arch(arch).unwrap()).unwrap().kept
}

/// Every `step`-th kept candidate of a few default shapes (both variants, both ends of M).
fn sample(arch: &str, step: usize) -> Vec<Candidate> {
    let s = sweep();
    let mut out: Vec<Candidate> = Vec::new();
    for shape in ["1x4096x14336", "16x28672x4096", "2048x4096x4096"] {
        out.extend(kept(&s, shape, arch).into_iter().step_by(step));
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn a_sample_of_the_sweep_space_compiles_without_spills() {
    if !nvrtc_available() {
        return;
    }
    let s = sweep();
    let mut reqs = Vec::new();
    for arch in ARCHS {
        for c in sample(arch, 9) {
            reqs.push(Job::new(format!("{} {:?}", c.variant, c.params), request(&s, &c, DType::BF16, arch)));
        }
    }
    assert_all_compile(reqs);
}

#[test]
fn every_selftest_format_compiles_for_every_variant_and_dtype() {
    if !nvrtc_available() {
        return;
    }
    let s = sweep();
    let mut reqs = Vec::new();
    for arch in ARCHS {
        // The largest-register candidates of each variant: the worst case for the formats' extra
        // dequant constants.
        for (variant, shape) in [
            ("int4_gemv", "16x4096x4096"),
            ("int4_gemv_tc", "16x4096x4096"),
            ("int4_gemv_bulk", "16x4096x4096"),
            ("int4_mma", "2048x4096x4096"),
            ("int4_mma_wgmma", "2048x4096x4096"),
            ("int4_wgmma_rs", "2048x4096x4096"),
            ("int4_wgmma_rs", "1x4096x4096"),
        ] {
            let Some(c) =
                kept(&s, shape, arch).into_iter().filter(|c| c.variant == variant).max_by_key(|c| match variant {
                    "int4_gemv" => c.params["ROWS_PER_WARP"] * c.params["M_MAX"] * c.params["VEC"],
                    "int4_gemv_tc" => c.params["N_TILES"] * c.params["UNROLL"] * c.params["M_TILES"],
                    "int4_gemv_bulk" => c.params["CHUNK"] * c.params["M_TILES"],
                    "int4_mma_wgmma" => (c.params["BM"] / 64) * c.params["BN"] / c.params["WG_N"],
                    "int4_wgmma_rs" => c.params["MT"] * c.params["BT"],
                    _ => (c.params["WM"] / 16) * (c.params["WN"] / 8) * (c.params["BK"] / 64),
                })
            else {
                assert!(
                    (variant.contains("wgmma") || variant == "int4_gemv_bulk") && *arch != "sm_90a",
                    "{variant} has no candidate for {arch}"
                );
                continue;
            };
            for (label, overlay) in SELFTEST_FORMATS {
                if !variant_takes_format(variant, overlay) {
                    continue;
                }
                let c2 = Candidate { variant: c.variant.clone(), params: with_format(&c.params, overlay) };
                for dt in [DType::BF16, DType::F16] {
                    reqs.push(
                        Job::new(format!("{variant} {label} {}", dt.name()), request(&s, &c2, dt, arch))
                            .spills_allowed(),
                    );
                }
            }
        }
    }
    assert_all_compile(reqs);
}
