//! int8 per-channel quantization on the GPU (kernels/gemm_int8/quantize.cu): turns a
//! bf16/fp16 weight already on the device into the format of `quant::int8` (`Int8Weight`),
//! with the arithmetic of `quant::quantize_int8_per_channel`, so both give the same codes and
//! scales bit for bit; and the inverse, a 16-bit dequantized weight for prefill's bf16 GEMM
//! and the family's reference.

use super::linear::K_MULTIPLE;
use crate::gpu::cache::ModuleCache;
use crate::gpu::device::{Arg, DevBuf, Gpu, Kernel};
use crate::gpu::nvrtc::CompileRequest;
use crate::kernels::{ceil_div, DType};
use anyhow::{bail, Context, Result};

pub const QUANTIZE_SOURCE: &str = include_str!("../../../kernels/gemm_int8/quantize.cu");

/// The module for one weight dtype (the scales and the dequantized output have it too);
/// also used by the NVRTC tests.
pub fn quantize_request(arch: &str, dt: DType) -> CompileRequest {
    CompileRequest {
        name: "kernels/gemm_int8/quantize.cu".into(),
        source: QUANTIZE_SOURCE.into(),
        defines: dt.defines(),
        arch: arch.into(),
    }
}

/// An int8 weight on the device: W[n, k] as codes and one scale per row.
pub struct DeviceInt8 {
    pub n: i64,
    pub k: i64,
    /// i8 [n][k], row-major
    pub q: DevBuf,
    /// 16-bit float bits [n] (the activation dtype: bf16 for the model)
    pub scales: DevBuf,
}

impl DeviceInt8 {
    /// Buffers for an (n, k) weight, contents undefined.
    pub fn alloc(gpu: &Gpu, n: i64, k: i64) -> Result<DeviceInt8> {
        check_dims(n, k)?;
        Ok(DeviceInt8 { n, k, q: gpu.alloc((n * k) as usize)?, scales: gpu.alloc((n * 2) as usize)? })
    }

    /// Bytes a kernel reads to use the whole weight once.
    pub fn bytes(&self) -> usize {
        self.q.bytes + self.scales.bytes
    }
}

fn check_dims(n: i64, k: i64) -> Result<()> {
    if n < 1 || k < 1 || k % K_MULTIPLE != 0 {
        bail!("int8 weight of shape {n}x{k}: N must be at least 1 and K a positive multiple of {K_MULTIPLE}");
    }
    if n > i64::from(i32::MAX) || k > i64::from(i32::MAX) {
        bail!("int8 weight of shape {n}x{k}: dimensions must fit 32-bit indices");
    }
    Ok(())
}

pub struct Int8Quantizer {
    quant: Kernel,
    dequant: Kernel,
    dt: DType,
}

impl Int8Quantizer {
    /// Compiles (or takes from `cache`) and loads the module for weights of dtype `dt`.
    pub fn new(gpu: &Gpu, cache: &ModuleCache, dt: DType) -> Result<Int8Quantizer> {
        if dt == DType::F32 {
            bail!("the device int8 quantizer reads bf16 or fp16 weights, not fp32");
        }
        let m = cache
            .get_or_compile(&quantize_request(&gpu.props.arch(), dt))
            .context("compiling kernels/gemm_int8/quantize.cu")?;
        Ok(Int8Quantizer {
            quant: gpu.load(&m.cubin, "int8_quantize_channel")?,
            dequant: gpu.load(&m.cubin, "int8_dequantize")?,
            dt,
        })
    }

    /// The weight dtype this quantizer reads (and its scales' and dequantized output's).
    pub fn dtype(&self) -> DType {
        self.dt
    }

    /// Quantizes W[n, k] (16-bit floats at device address `w`, 16-byte aligned) into new
    /// device buffers.
    pub fn quantize(&self, gpu: &Gpu, w: u64, n: i64, k: i64) -> Result<DeviceInt8> {
        let out = DeviceInt8::alloc(gpu, n, k)?;
        self.quantize_into(gpu, w, &out)?;
        Ok(out)
    }

    /// The same into existing buffers of `out`'s (n, k).
    pub fn quantize_into(&self, gpu: &Gpu, w: u64, out: &DeviceInt8) -> Result<()> {
        let (n, k) = (out.n, out.k);
        check_dims(n, k)?;
        if out.q.bytes < (n * k) as usize || out.scales.bytes < (n * 2) as usize || w % 16 != 0 {
            bail!("int8 quantization of a {n}x{k} weight: output buffers too small or the weight not 16-byte aligned");
        }
        let blocks = ceil_div(n, 8);
        // SAFETY: `out` holds N·K codes and N scales (checked above); `w` holds N·K 16-bit
        // weights (the caller's contract); the arguments follow quantize.cu's signature.
        unsafe {
            gpu.launch(
                &self.quant,
                (blocks as u32, 1, 1),
                (256, 1, 1),
                0,
                &[Arg::Ptr(w), out.q.arg(), out.scales.arg(), Arg::I32(n as i32), Arg::I32(k as i32)],
            )
        }
    }

    /// out[n][k] = q·scale in the quantizer's dtype (16-bit), for a bf16 GEMM on it.
    pub fn dequantize(&self, gpu: &Gpu, q: &DeviceInt8, out: &DevBuf) -> Result<()> {
        check_dims(q.n, q.k)?;
        if out.bytes < (q.n * q.k * 2) as usize || out.ptr % 16 != 0 {
            bail!(
                "int8 dequantize of a {}x{} weight: needs {} 16-byte aligned output bytes (has {})",
                q.n,
                q.k,
                q.n * q.k * 2,
                out.bytes
            );
        }
        let chunks = q.n * q.k / 16;
        let blocks = ceil_div(chunks, 256).clamp(1, i64::from(gpu.props.sm_count) * 16);
        // SAFETY: the input holds N·K codes and N scales, the output N·K 16-bit values
        // (checked above); the arguments follow quantize.cu's signature.
        unsafe {
            gpu.launch(
                &self.dequant,
                (blocks as u32, 1, 1),
                (256, 1, 1),
                0,
                &[q.q.arg(), q.scales.arg(), out.arg(), Arg::I32(q.n as i32), Arg::I32(q.k as i32)],
            )
        }
    }
}
