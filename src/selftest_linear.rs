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

/// What each selftest check of the quantized paths runs on.
pub struct CheckEnv<'a> {
    pub gpu: &'a Gpu,
    pub util: &'a Util,
    pub cache: &'a ModuleCache,
}

/// One such check: it records a line per case and errs only when it cannot go on.
pub type Check = fn(&CheckEnv, &mut dyn FnMut(bool, String)) -> Result<()>;

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
