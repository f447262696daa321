//! The family's trusted device helpers (kernels/gemm_int4/reference.cu): random scales,
//! minimums and zero points, and the plain dequantizer behind the dequantize-then-cuBLAS
//! reference.

use super::format::{Int4Format, ZeroMode};
use crate::gpu::cache::{self, ModuleCache};
use crate::gpu::device::{Arg, DevBuf, Gpu, Kernel};
use crate::gpu::nvrtc::CompileRequest;
use crate::quant::HalfDtype;
use anyhow::{Context, Result};
use std::collections::BTreeMap;

pub const REFERENCE_SOURCE: &str = include_str!("../../../kernels/gemm_int4/reference.cu");

/// What `CompileRequest` the reference module is built from (also used by the NVRTC tests).
pub fn reference_request(arch: &str) -> CompileRequest {
    CompileRequest {
        name: "kernels/gemm_int4/reference.cu".into(),
        source: REFERENCE_SOURCE.into(),
        defines: BTreeMap::new(),
        arch: arch.into(),
    }
}

pub struct RefKernels {
    random_halfs: Kernel,
    random_zeros: Kernel,
    dequant: Kernel,
}

fn grid_for(n: usize) -> (u32, u32, u32) {
    (n.div_ceil(256).clamp(1, 65_535 * 4) as u32, 1, 1)
}

fn is_fp16(h: HalfDtype) -> i32 {
    i32::from(h == HalfDtype::F16)
}

impl RefKernels {
    /// Compiles (or takes from the module cache) and loads the reference module.
    pub fn new(gpu: &Gpu) -> Result<RefKernels> {
        let cache = ModuleCache::open(&cache::default_dir())?;
        let m = cache
            .get_or_compile(&reference_request(&gpu.props.arch()))
            .context("compiling kernels/gemm_int4/reference.cu")?;
        Ok(RefKernels {
            random_halfs: gpu.load(&m.cubin, "int4_ref_random_halfs")?,
            random_zeros: gpu.load(&m.cubin, "int4_ref_random_zeros")?,
            dequant: gpu.load(&m.cubin, "int4_ref_dequant")?,
        })
    }

    /// `n` 16-bit floats of type `dt`, uniform in [range.0, range.1).
    pub fn random_halfs(
        &self,
        gpu: &Gpu,
        out: &DevBuf,
        n: usize,
        seed: u64,
        range: (f32, f32),
        dt: HalfDtype,
    ) -> Result<()> {
        anyhow::ensure!(n * 2 <= out.bytes, "random_halfs: {n} values do not fit {} bytes", out.bytes);
        // SAFETY: the buffers were allocated by the problem for its (M, N, K) and group size; the arguments
        // follow gemm_int4/reference.cu's signature.
        unsafe {
            gpu.launch(
                &self.random_halfs,
                grid_for(n),
                (256, 1, 1),
                0,
                &[
                    out.arg(),
                    Arg::U64(n as u64),
                    Arg::U64(seed),
                    Arg::F32(range.0),
                    Arg::F32(range.1),
                    Arg::I32(is_fp16(dt)),
                ],
            )
        }
    }

    /// `n` u8 zero points uniform in 0..=max_zero.
    pub fn random_zeros(&self, gpu: &Gpu, out: &DevBuf, n: usize, seed: u64, max_zero: i32) -> Result<()> {
        anyhow::ensure!(n <= out.bytes, "random_zeros: {n} values do not fit {} bytes", out.bytes);
        // SAFETY: the buffers were allocated by the problem for its (M, N, K) and group size; the arguments
        // follow gemm_int4/reference.cu's signature.
        unsafe {
            gpu.launch(
                &self.random_zeros,
                grid_for(n),
                (256, 1, 1),
                0,
                &[out.arg(), Arg::U64(n as u64), Arg::U64(seed), Arg::I32(max_zero)],
            )
        }
    }

    /// W[N][K] in `out_dt` from the packed weight, scales and zeros of `fmt`.
    #[allow(clippy::too_many_arguments)]
    pub fn dequantize(
        &self,
        gpu: &Gpu,
        wq: &DevBuf,
        scales: &DevBuf,
        zeros: &DevBuf,
        out: &DevBuf,
        n: i64,
        k: i64,
        fmt: &Int4Format,
        out_dt: HalfDtype,
    ) -> Result<()> {
        anyhow::ensure!(
            (n * k * 2) as usize <= out.bytes && (n * k / 2) as usize <= wq.bytes,
            "dequantize: buffers too small"
        );
        let zeros_ptr = if fmt.zeros == ZeroMode::Symmetric { 0 } else { zeros.ptr };
        // SAFETY: the buffers were allocated by the problem for its (M, N, K) and group size; the arguments
        // follow gemm_int4/reference.cu's signature.
        unsafe {
            gpu.launch(
                &self.dequant,
                grid_for((n * k) as usize),
                (256, 1, 1),
                0,
                &[
                    wq.arg(),
                    scales.arg(),
                    Arg::Ptr(zeros_ptr),
                    out.arg(),
                    Arg::I32(n as i32),
                    Arg::I32(k as i32),
                    Arg::I32(fmt.group as i32),
                    Arg::I32(fmt.zeros as i32),
                    Arg::I32(is_fp16(fmt.scale_dtype)),
                    Arg::I32(is_fp16(out_dt)),
                ],
            )
        }
    }
}
