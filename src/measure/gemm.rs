//! Tensor-core rates at 8192³: cuBLAS (the peer) and our own `gemm_mma`
//! (kernels/gemm/mma_multistage.cu) with its tuned configuration when the database has
//! one for this GPU, verified against cuBLAS before it is timed.

use super::{keys, Figure};
use crate::gpu::blas::Blas;
use crate::gpu::cache::{self, ModuleCache};
use crate::gpu::device::{Gpu, Kernel};
use crate::gpu::nvrtc::CompileRequest;
use crate::gpu::timer::Timer;
use crate::gpu::util::Util;
use crate::kernels::gemm::GemmProblem;
use crate::kernels::{DType, Problem, Shape};
use crate::tune::db::{Query, TunedDb};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;

pub const N: i64 = 8192;
pub const MMA_FILE: &str = "kernels/gemm/mma_multistage.cu";

/// The template as the sweep loads it, shared headers expanded: the text the tuned database's
/// source hash is taken of, so the lookup below can find the sweep's winner.
pub fn mma_source() -> Result<String> {
    crate::gpu::nvrtc::load_source(&crate::paths::project_root().join(MMA_FILE))
}
const MMA_VARIANT: &str = "mma_multistage";

fn flops() -> f64 {
    2.0 * (N as f64).powi(3)
}

/// cuBLAS bf16 and fp16 (fp32 accumulation) at 8192³ on random inputs.
pub fn cublas_8192(gpu: &Gpu, timer: &Timer, cache: &ModuleCache) -> Result<Vec<Figure>> {
    let util = Util::new(gpu, cache)?;
    let blas = Blas::new(gpu)?;
    let elems = (N * N) as usize;
    let x = gpu.alloc(elems * 2)?;
    let w = gpu.alloc(elems * 2)?;
    let y = gpu.alloc(elems * 2)?;
    let mut out = Vec::new();
    for (dt, key) in [(DType::BF16, keys::CUBLAS_BF16), (DType::F16, keys::CUBLAS_F16)] {
        // Random data: zeros would draw less power and flatter the rate.
        util.fill(gpu, &x, dt, elems, 1, 1.0)?;
        util.fill(gpu, &w, dt, elems, 2, 1.0)?;
        let t = timer.time(gpu, || blas.linear(dt, x.ptr, w.ptr, y.ptr, N, N, N, false))?;
        out.push(Figure::new(key, flops(), 1e12, t, format!("cublasGemmEx {} {N}³, fp32 compute", dt.name())));
    }
    Ok(out)
}

/// Defaults of the template (its `#ifndef` values), the parameters `GemmProblem::run` reads.
pub fn default_params() -> BTreeMap<String, i64> {
    [("BM", 128), ("BN", 128), ("BK", 32), ("WM", 64), ("WN", 64), ("STAGES", 4), ("GROUP_M", 8)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// The tuned parameters of `gemm_mma` for 8192³ (or the nearest measured shape) on this
/// GPU, over the defaults; and a note saying where they came from.
pub fn tuned_params(gpu: &Gpu, cache: &ModuleCache, dt: DType) -> (BTreeMap<String, i64>, String) {
    let mut params = default_params();
    let db_path = crate::paths::default_db();
    let db = match TunedDb::load(&db_path) {
        Ok(db) => db,
        Err(e) => return (params, format!("template defaults (tuned database unreadable: {e:#})")),
    };
    let shape: BTreeMap<String, i64> = ["M", "N", "K"].iter().map(|d| (d.to_string(), N)).collect();
    let source = match mma_source() {
        Ok(s) => s,
        Err(e) => return (params, format!("template defaults (cannot read the template: {e:#})")),
    };
    let hashes: BTreeMap<String, String> = [(MMA_VARIANT.to_string(), cache::source_hash(&source))].into();
    let q = Query {
        kernel: "gemm",
        gpu: &gpu.props.name,
        cc: &gpu.props.cc(),
        nvrtc: cache.nvrtc_version(),
        dtype: dt.name(),
        format: None,
        shape: &shape,
        source_hashes: &hashes,
    };
    match db.lookup(&q) {
        Some(found) => {
            params.extend(found.entry.params.iter().map(|(k, v)| (k.clone(), *v)));
            let how = if found.exact { "tuned for 8192³".to_string() } else { format!("tuned: {}", found.note) };
            (params, format!("{how} in {}", db_path.display()))
        }
        None => (params, "template defaults (no tuned mma_multistage entry for this GPU)".into()),
    }
}

/// Our `gemm_mma` at 8192³: verified against cuBLAS, then timed. Returns the figure and a
/// note with the configuration.
pub fn ours_8192(gpu: &Gpu, timer: &Timer, cache: &ModuleCache, dt: DType) -> Result<(Figure, String)> {
    let (params, how) = tuned_params(gpu, cache, dt);
    let mut defines = dt.defines();
    defines.extend(params.iter().map(|(k, v)| (k.clone(), v.to_string())));
    let req = CompileRequest { name: MMA_FILE.into(), source: mma_source()?, defines, arch: gpu.props.arch() };
    let m = cache.get_or_compile(&req).context("compiling gemm_mma")?;
    let mut kernels: BTreeMap<String, Kernel> = BTreeMap::new();
    kernels.insert("gemm_mma".into(), gpu.load(&m.cubin, "gemm_mma")?);
    let util = Util::new(gpu, cache)?;
    let shape = Shape::parse(&format!("{N}x{N}x{N}"), &["M", "N", "K"])?;
    let mut p = GemmProblem::new(gpu, &shape, dt, false)?;
    p.randomize(gpu, &util, 7)?;
    p.poison(gpu, &util)?;
    p.run(gpu, MMA_VARIANT, &kernels, &params)?;
    gpu.synchronize().context("gemm_mma 8192³ failed")?;
    let cmp = p.check(gpu, &util)?;
    let tol = dt.default_tolerance();
    if cmp.rel_err().is_nan() || cmp.rel_err() > tol {
        bail!(
            "gemm_mma {} 8192³ disagrees with cuBLAS (relative error {:.3e} > {tol:.1e}); not used as a ceiling",
            dt.name(),
            cmp.rel_err()
        );
    }
    let t = timer.time(gpu, || p.run(gpu, MMA_VARIANT, &kernels, &params))?;
    let key = if dt == DType::F16 { keys::GEMM_MMA_F16 } else { keys::GEMM_MMA_BF16 };
    let cfg: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let note = format!("{} ({how})", cfg.join(" "));
    Ok((Figure::new(key, flops(), 1e12, t, format!("gemm_mma {} {N}³, error {:.1e}", dt.name(), cmp.rel_err())), note))
}
