//! What the selftest's checks of the model-facing quantized linears (selftest_int4,
//! selftest_int8) share: one variant compiled and loaded, bf16 buffers filled on the device
//! and read back for the host product, and the relative error recorded against a tolerance;
//! and the table of those checks `kernlab selftest` runs.

use crate::gpu::cache::ModuleCache;
use crate::gpu::device::{DevBuf, Gpu};
use crate::gpu::util::Util;
use crate::kernels::{DType, Family, Kernels, Params};
use crate::quant::HalfDtype;
use crate::tune::compile;
use crate::tune::space::{Candidate, Sweep};
use anyhow::Result;
use rand::{Rng, SeedableRng};

/// What each selftest check of the quantized paths runs on.
pub struct CheckEnv<'a> {
    pub gpu: &'a Gpu,
    pub util: &'a Util,
    pub cache: &'a ModuleCache,
}

/// One such check: it records a line per case and errs only when it cannot go on.
pub type Check = fn(&CheckEnv, &mut dyn FnMut(bool, String)) -> Result<()>;

/// The sweep file of `family` (sweeps/<family>.toml), whose variants the checks compile.
pub fn family_sweep(family: &dyn Family) -> Result<Sweep> {
    Sweep::load(&crate::paths::sweep_file(family.name()), family.shape_dims())
}

/// `variant` of `family` compiled in bf16 with `params` (through the module cache), every
/// entry point of it loaded.
pub fn compile_entries(
    gpu: &Gpu,
    cache: &ModuleCache,
    sweep: &Sweep,
    family: &dyn Family,
    variant: &str,
    params: &Params,
) -> Result<Kernels> {
    let cand = Candidate { variant: variant.into(), params: params.clone() };
    let module = cache.get_or_compile(&compile::request(sweep, &cand, DType::BF16, &gpu.props.arch()))?;
    let mut ks = Kernels::new();
    for e in family.entries(variant)? {
        ks.insert(e.to_string(), gpu.load(&module.cubin, e)?);
    }
    Ok(ks)
}

/// Uniform random weights in ±1 from `seed`, row r scaled by 10^(r mod 5 − 2): rows of very
/// different magnitude, the base the awkward test weights edit.
pub fn mixed_magnitude_weights(n: usize, k: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n * k)
        .map(|i| {
            let row_scale = 10f32.powi((i / k % 5) as i32 - 2);
            rng.random_range(-1.0f32..1.0) * row_scale
        })
        .collect()
}

/// `base` (a template's defaults) with the check's `extra` tunables over it.
pub fn with_overrides(mut base: Params, extra: &[(&str, i64)]) -> Params {
    base.extend(extra.iter().map(|(k, v)| (k.to_string(), *v)));
    base
}

/// A bf16 buffer of `n` random values from `seed`, and the same values on the host.
pub fn random_bf16(gpu: &Gpu, util: &Util, n: usize, seed: u64) -> Result<(DevBuf, Vec<f32>)> {
    let buf = gpu.alloc(n * 2)?;
    util.fill(gpu, &buf, DType::BF16, n, seed, 1.0)?;
    gpu.synchronize()?;
    let host = download_bf16(&buf, n)?;
    Ok((buf, host))
}

/// The first `n` bf16 values of `buf` as f32.
pub fn download_bf16(buf: &DevBuf, n: usize) -> Result<Vec<f32>> {
    Ok(buf.download::<u16>(n)?.iter().map(|b| HalfDtype::Bf16.to_f32(*b)).collect())
}

/// max |got − want| / max |want|.
pub fn rel_err(got: &[f32], want: impl IntoIterator<Item = f64>) -> f64 {
    let (mut d, mut mx) = (0f64, 0f64);
    for (g, e) in got.iter().zip(want) {
        d = d.max((f64::from(*g) - e).abs());
        mx = mx.max(e.abs());
    }
    d / mx.max(1e-30)
}

/// Records a check's relative error as a pass within `tol`, or the error that stopped it.
pub fn record_rel_err(record: &mut dyn FnMut(bool, String), what: &str, r: Result<f64>, tol: f64) {
    match r {
        Ok(err) => record(err <= tol && err.is_finite(), format!("{what}: rel err {err:.2e} (tol {tol:.0e})")),
        Err(e) => record(false, format!("{what}: {e:#}")),
    }
}
