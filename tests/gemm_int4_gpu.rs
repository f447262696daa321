//! GPU check of the gemm_int4 family (ignored by default: needs a GPU). Until
//! `kernlab selftest` covers it, run on the GPU machine with
//!
//!     cargo test --release --test gemm_int4_gpu -- --ignored --nocapture
//!
//! (or the test binary from `cargo test --no-run`). For every selftest shape, a sample of the
//! sweep's candidates of each variant runs under every selftest format in bf16 and fp16 and
//! is compared with the dequantize-then-cuBLAS reference; the reference itself is checked
//! against the host (`reference_vs_cpu`). Prints the worst error per variant/format/dtype,
//! so the sweep file's tolerance can be judged against measured margins.

use kernlab::gpu::cache::{self, ModuleCache};
use kernlab::gpu::device::{Gpu, Kernel};
use kernlab::gpu::util::Util;
use kernlab::kernels::gemm_int4::{with_format, GemmInt4, SELFTEST_FORMATS};
use kernlab::kernels::{DType, Family, Shape};
use kernlab::tune::compile::request;
use kernlab::tune::space::{Candidate, Sweep};
use rayon::prelude::*;
use std::collections::BTreeMap;

/// Candidates per variant and shape (evenly spaced over the kept space).
const PER_VARIANT: usize = 2;

fn sample(kept: &[Candidate], variant: &str) -> Vec<Candidate> {
    let of: Vec<&Candidate> = kept.iter().filter(|c| c.variant == variant).collect();
    if of.is_empty() {
        return vec![];
    }
    let n = PER_VARIANT.min(of.len());
    (0..n).map(|i| of[i * of.len() / n].clone()).collect()
}

#[test]
#[ignore = "needs a GPU: cargo test --test gemm_int4_gpu -- --ignored"]
fn every_variant_and_format_matches_the_reference() {
    let gpu = Gpu::open(0).expect("a GPU");
    let arch = gpu.props.arch();
    let cache = ModuleCache::open(&cache::default_dir()).unwrap();
    let util = Util::new(&gpu, &cache).unwrap();
    // Found from the current folder, so the test binary runs from any checkout.
    let sweep = Sweep::load(&kernlab::paths::sweep_file("gemm_int4"), GemmInt4.shape_dims()).unwrap();
    let limits = gpu.props.limits();
    println!("gemm_int4 GPU check on {} ({arch})", gpu.props.name);

    // Compile everything first, on all cores (into the module cache).
    let mut reqs = Vec::new();
    for text in GemmInt4.selftest_shapes() {
        let shape = Shape::parse(text, GemmInt4.shape_dims()).unwrap();
        let kept = sweep.enumerate(&shape.dims, 2, &limits).unwrap().kept;
        for c in ["int4_gemv", "int4_gemv_tc", "int4_mma", "int4_mma_wgmma"].iter().flat_map(|v| sample(&kept, v)) {
            for (_, overlay) in SELFTEST_FORMATS {
                let c2 = Candidate { variant: c.variant.clone(), params: with_format(&c.params, overlay) };
                for dt in [DType::BF16, DType::F16] {
                    reqs.push(request(&sweep, &c2, dt, &arch));
                }
            }
        }
    }
    reqs.sort_by_key(|r| r.defines_string() + &r.name);
    reqs.dedup();
    let started = std::time::Instant::now();
    reqs.par_iter().for_each(|r| {
        let _ = cache.get_or_compile(r); // errors are reported per candidate below
    });
    println!("compiled {} modules in {:.1} s", reqs.len(), started.elapsed().as_secs_f64());

    let mut failures: Vec<String> = Vec::new();
    // (variant, format, dtype) → (worst error, runs)
    let mut worst: BTreeMap<(String, String, String), (f64, usize)> = BTreeMap::new();
    let mut seed = 100u64;
    for text in GemmInt4.selftest_shapes() {
        let shape = Shape::parse(text, GemmInt4.shape_dims()).unwrap();
        let kept = sweep.enumerate(&shape.dims, 2, &limits).unwrap().kept;
        let cands: Vec<Candidate> =
            ["int4_gemv", "int4_gemv_tc", "int4_mma", "int4_mma_wgmma"].iter().flat_map(|v| sample(&kept, v)).collect();
        for dt in [DType::BF16, DType::F16] {
            let tol = sweep.tolerance.get(dt.name()).copied().unwrap_or(dt.default_tolerance());
            let mut problem = GemmInt4.problem(&gpu, &shape, dt).unwrap();
            for (label, overlay) in SELFTEST_FORMATS {
                let mut ref_checked = false;
                for c in &cands {
                    let c2 = Candidate { variant: c.variant.clone(), params: with_format(&c.params, overlay) };
                    let what = format!("{text} {} {} {label} {:?}", dt.name(), c2.variant, c.params);
                    let module = match cache.get_or_compile(&request(&sweep, &c2, dt, &arch)) {
                        Ok(m) => m,
                        Err(e) => {
                            failures.push(format!("{what}: compile: {e:#}"));
                            continue;
                        }
                    };
                    let entries = GemmInt4.entries(&c2.variant).unwrap();
                    let kernels: BTreeMap<String, Kernel> =
                        entries.iter().map(|e| (e.to_string(), gpu.load(&module.cubin, e).unwrap())).collect();
                    for round in 0..2 {
                        seed += 1;
                        problem.randomize(&gpu, &util, seed).unwrap();
                        problem.poison(&gpu, &util).unwrap();
                        if let Err(e) = problem.run(&gpu, &c2.variant, &kernels, &c2.params) {
                            failures.push(format!("{what}: run: {e:#}"));
                            break;
                        }
                        gpu.synchronize().unwrap_or_else(|e| panic!("{what}: CUDA error (sticky; stopping): {e:#}"));
                        let err = problem.check(&gpu, &util).unwrap().rel_err();
                        let w = worst
                            .entry((c2.variant.clone(), label.to_string(), dt.name().to_string()))
                            .or_insert((0.0, 0));
                        w.0 = w.0.max(err);
                        w.1 += 1;
                        if err.is_nan() || err > tol {
                            failures.push(format!("{what} round {round}: rel err {err:.3e} > tolerance {tol:.1e}"));
                        }
                        // After run: the inputs now have this candidate's format.
                        if !ref_checked {
                            ref_checked = true;
                            match problem.reference_vs_cpu(&gpu) {
                                Ok(Some(e)) if e <= 0.25 * tol => {}
                                Ok(r) => failures.push(format!("{text} {} {label}: reference vs CPU {r:?}", dt.name())),
                                Err(e) => {
                                    failures.push(format!("{text} {} {label}: reference vs CPU: {e:#}", dt.name()))
                                }
                            }
                        }
                    }
                }
            }
        }
        println!("  {text}: {} candidates x {} formats x 2 dtypes done", cands.len(), SELFTEST_FORMATS.len());
    }
    println!("worst max|y-ref|/max|ref| per variant, format and dtype:");
    for ((v, f, d), (e, n)) in &worst {
        println!("  {v:<10} {d:<5} {f:<45} {e:.2e}  ({n} runs)");
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
#[ignore = "needs a GPU: cargo test --test gemm_int4_gpu -- --ignored"]
fn an_unwritten_output_fails_the_check() {
    let gpu = Gpu::open(0).expect("a GPU");
    let cache = ModuleCache::open(&cache::default_dir()).unwrap();
    let util = Util::new(&gpu, &cache).unwrap();
    let shape = Shape::parse("3x17x384", GemmInt4.shape_dims()).unwrap();
    let mut p = GemmInt4.problem(&gpu, &shape, DType::BF16).unwrap();
    p.randomize(&gpu, &util, 7).unwrap();
    p.poison(&gpu, &util).unwrap();
    let c = p.check(&gpu, &util).unwrap();
    assert_eq!(c.non_finite, 17 * 3);
    assert!(c.rel_err().is_infinite());
    // The reference itself is sound.
    let e = p.reference_vs_cpu(&gpu).unwrap().unwrap();
    assert!(e < 5e-3, "{e}");
}
