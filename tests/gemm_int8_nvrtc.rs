//! NVRTC compilation of the gemm_int8 templates (no GPU needed): int8_gemv at its defaults
//! and the quantizer module in bf16 and fp16, a sample of the sweep space and its
//! largest-register candidates without spills, for sm_80, sm_86 and sm_90a.
//!
//! NVRTC comes from the CUDA toolkit or the pip wheels (scripts/setup-nvrtc.sh). Where it is
//! missing the test says so and passes, unless KERNLAB_REQUIRE_NVRTC=1 (set it in CI).

mod nvrtc_support;

use kernlab::gpu::nvrtc::CompileRequest;
use kernlab::kernels::gemm_int8::{quantize_request, GemmInt8};
use kernlab::kernels::{DType, Family, Shape};
use kernlab::tune::compile::request;
use kernlab::tune::space::{Candidate, DeviceLimits, Sweep};
use nvrtc_support::{assert_all_compile, nvrtc_available, Job};
use std::path::Path;

const ARCHS: &[&str] = &["sm_80", "sm_86", "sm_90a"];

fn sweep() -> Sweep {
    Sweep::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("sweeps/gemm_int8.toml"), GemmInt8.shape_dims()).unwrap()
}

fn kept(s: &Sweep, shape: &str, arch: &str) -> Vec<Candidate> {
    let shape = Shape::parse(shape, GemmInt8.shape_dims()).unwrap();
    s.enumerate(&shape.dims, 2, &DeviceLimits::for_arch(arch).unwrap()).unwrap().kept
}

#[test]
fn the_template_at_its_defaults_and_the_quantizer_compile_in_both_dtypes() {
    if !nvrtc_available() {
        return;
    }
    let s = sweep();
    let v = s.variant("int8_gemv").unwrap();
    let mut jobs = Vec::new();
    for arch in ARCHS {
        for dt in [DType::BF16, DType::F16] {
            let req = CompileRequest {
                name: v.file.display().to_string(),
                source: v.source.clone(),
                defines: dt.defines(),
                arch: arch.to_string(),
            };
            jobs.push(
                Job::new(format!("int8_gemv defaults {}", dt.name()), req)
                    .with_entries(GemmInt8.entries("int8_gemv").unwrap().to_vec()),
            );
            jobs.push(
                Job::new(format!("gemm_int8/quantize.cu {}", dt.name()), quantize_request(arch, dt))
                    .with_entries(vec!["int8_quantize_channel", "int8_dequantize"]),
            );
        }
    }
    assert_all_compile(jobs);
}

#[test]
fn a_sample_of_the_sweep_space_and_its_largest_candidates_compile_without_spills() {
    if !nvrtc_available() {
        return;
    }
    let s = sweep();
    let mut jobs = Vec::new();
    for arch in ARCHS {
        let mut cands: Vec<Candidate> = Vec::new();
        for shape in ["1x4096x4096", "8x28672x4096", "3x1000x4112", "16x1031x1024"] {
            let all = kept(&s, shape, arch);
            cands.extend(all.iter().step_by(7).cloned());
            // The most registers: accumulators, codes in flight and converted weights.
            let weight = |c: &Candidate| {
                c.params["ROWS_PER_WARP"] * (c.params["M_MAX"] + 4 * c.params["UNROLL"] + 8) + c.params["NUM_WARPS"]
            };
            cands.extend(all.iter().max_by_key(|c| weight(c)).cloned());
        }
        cands.sort();
        cands.dedup();
        for c in cands {
            for dt in [DType::BF16, DType::F16] {
                jobs.push(Job::new(format!("{} {:?} {}", c.variant, c.params, dt.name()), request(&s, &c, dt, arch)));
            }
        }
    }
    assert_all_compile(jobs);
}
