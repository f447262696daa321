//! The tuning loop's own helper kernels (kernels/util/util.cu): random fill, NaN poison and
//! on-device comparison, so verification never copies large outputs to the host.

use super::cache::ModuleCache;
use super::device::{Arg, DevBuf, Gpu, Kernel};
use super::nvrtc::CompileRequest;
use crate::core::DType;
use anyhow::Result;
use std::collections::BTreeMap;

pub const UTIL_SOURCE: &str = include_str!("../../kernels/util/util.cu");

pub struct Util {
    fill: PerDtype,
    fill_u32: Kernel,
    compare: PerDtype,
    res: DevBuf,
}

/// One util.cu entry point per element type (`<name>_bf16`, `<name>_f16`, `<name>_f32`).
struct PerDtype {
    bf16: Kernel,
    f16: Kernel,
    f32: Kernel,
}

impl PerDtype {
    fn load(load: impl Fn(&str) -> Result<Kernel>, name: &str) -> Result<PerDtype> {
        Ok(PerDtype {
            bf16: load(&format!("{name}_bf16"))?,
            f16: load(&format!("{name}_f16"))?,
            f32: load(&format!("{name}_f32"))?,
        })
    }

    fn get(&self, dtype: DType) -> &Kernel {
        match dtype {
            DType::BF16 => &self.bf16,
            DType::F16 => &self.f16,
            DType::F32 => &self.f32,
        }
    }
}

/// What an on-device comparison found.
#[derive(Debug, Clone, Copy)]
pub struct Comparison {
    pub max_abs_diff: f32,
    pub max_abs_ref: f32,
    pub non_finite: u32,
}

impl Comparison {
    /// max |out − ref| / max |ref|; infinite when any output is not finite.
    pub fn rel_err(&self) -> f64 {
        if self.non_finite > 0 {
            return f64::INFINITY;
        }
        self.max_abs_diff as f64 / (self.max_abs_ref as f64).max(1e-30)
    }
}

fn grid_for(n: usize) -> (u32, u32, u32) {
    (((n + 255) / 256).clamp(1, 65_535 * 4) as u32, 1, 1)
}

impl Util {
    pub fn new(gpu: &Gpu, cache: &ModuleCache) -> Result<Util> {
        let req = CompileRequest {
            name: "kernels/util/util.cu".into(),
            source: UTIL_SOURCE.into(),
            defines: BTreeMap::new(),
            arch: gpu.props.arch(),
        };
        let m = cache.get_or_compile(&req)?;
        let load = |e: &str| gpu.load(&m.cubin, e);
        Ok(Util {
            fill: PerDtype::load(load, "fill_uniform")?,
            fill_u32: load("fill_random_u32")?,
            compare: PerDtype::load(load, "compare")?,
            res: gpu.alloc(16)?,
        })
    }

    /// Fills `n` elements with scale·uniform[-1, 1) from `seed`.
    pub fn fill(&self, gpu: &Gpu, buf: &DevBuf, dtype: DType, n: usize, seed: u64, scale: f32) -> Result<()> {
        let k = self.fill.get(dtype);
        // SAFETY: the buffers hold the `n` elements the grid-stride loop touches (the callers pass each
        // buffer's own length); the arguments are util.cu's signature for this entry.
        unsafe {
            gpu.launch(
                k,
                grid_for(n),
                (256, 1, 1),
                0,
                &[buf.arg(), Arg::U64(n as u64), Arg::U64(seed), Arg::F32(scale)],
            )
        }
    }

    pub fn fill_bits(&self, gpu: &Gpu, buf: &DevBuf, n_words: usize, seed: u64) -> Result<()> {
        // SAFETY: the buffers hold the `n` elements the grid-stride loop touches (the callers pass each
        // buffer's own length); the arguments are util.cu's signature for this entry.
        unsafe {
            gpu.launch(
                &self.fill_u32,
                grid_for(n_words),
                (256, 1, 1),
                0,
                &[buf.arg(), Arg::U64(n_words as u64), Arg::U64(seed)],
            )
        }
    }

    /// Sets every byte to 0xFF: NaN in bf16, fp16 and fp32, so unwritten outputs fail.
    pub fn poison(&self, gpu: &Gpu, buf: &DevBuf) -> Result<()> {
        // SAFETY: the buffer holds `bytes` bytes; the memset is ordered on the stream.
        unsafe { cudarc::driver::result::memset_d8_async(buf.ptr, 0xFF, buf.bytes, gpu.stream.cu_stream()) }
            .map_err(|e| anyhow::anyhow!("poisoning the output failed: {e:?}"))
    }

    pub fn compare(&self, gpu: &Gpu, out: &DevBuf, reference: &DevBuf, dtype: DType, n: usize) -> Result<Comparison> {
        let k = self.compare.get(dtype);
        // SAFETY: res holds 16 bytes; zeroed on the stream before the kernel reads it.
        unsafe { cudarc::driver::result::memset_d8_async(self.res.ptr, 0, 16, gpu.stream.cu_stream()) }
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        // SAFETY: the buffers hold the `n` elements the grid-stride loop touches (the callers pass each
        // buffer's own length); the arguments are util.cu's signature for this entry.
        unsafe {
            gpu.launch(
                k,
                grid_for(n),
                (256, 1, 1),
                0,
                &[out.arg(), reference.arg(), Arg::U64(n as u64), self.res.arg()],
            )?
        };
        gpu.synchronize()?;
        let r: Vec<u32> = self.res.download(3)?;
        Ok(Comparison { max_abs_diff: f32::from_bits(r[0]), max_abs_ref: f32::from_bits(r[1]), non_finite: r[2] })
    }
}
