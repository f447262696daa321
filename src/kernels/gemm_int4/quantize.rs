//! Round-to-nearest int4 quantization on the GPU (kernels/gemm_int4/quantize.cu): turns a
//! bf16/fp16 weight already on the device into kernlab's int4 format, with the arithmetic of
//! `quant::quantize_rtn` (symmetric, or with integer zero points), so both give the same
//! codes, scales and zero points bit for bit.

use crate::gpu::cache::ModuleCache;
use crate::gpu::device::{Arg, DevBuf, Gpu, Kernel};
use crate::gpu::nvrtc::CompileRequest;
use crate::kernels::DType;
use anyhow::{bail, Context, Result};

pub const QUANTIZE_SOURCE: &str = include_str!("../../../kernels/gemm_int4/quantize.cu");

/// Whether the device quantizer takes `group`: any multiple of 32, such as K itself for one
/// scale per row (per-channel).
pub fn quantizer_takes(group: i64) -> bool {
    group >= 32 && group % 32 == 0
}

/// (group, K) pairs the selftest and the NVRTC tests check the quantizer with, one for each
/// code path: 1, 2, 4 and 8 values a lane in one chunk, then per-channel groups walked in
/// chunks of 8 values a lane (768 = 3 · 256) and of 2 (SmolLM2's K = 576 = 9 · 64).
pub const QUANTIZE_CHECKS: &[(i64, i64)] = &[(32, 768), (64, 768), (128, 768), (256, 768), (768, 768), (576, 576)];

/// The module for one (activation dtype, group size); also used by the NVRTC tests.
pub fn quantize_request(arch: &str, dt: DType, group: i64) -> CompileRequest {
    let mut defines = dt.defines();
    defines.insert("GROUP".into(), group.to_string());
    CompileRequest {
        name: "kernels/gemm_int4/quantize.cu".into(),
        source: QUANTIZE_SOURCE.into(),
        defines,
        arch: arch.into(),
    }
}

/// An int4 weight on the device: W[n, k] as packed codes and scales (symmetric, no zeros).
pub struct DeviceInt4 {
    pub n: i64,
    pub k: i64,
    pub group: i64,
    /// u32 [n][k/8]
    pub packed: DevBuf,
    /// 16-bit float bits [k/group][n]: the activation dtype for the device quantizer's
    /// weights, f16 for most checkpoints (the store's format says which)
    pub scales: DevBuf,
    /// u8 zero points [k/group][n] for weights with integer zero points (GPTQ, AWQ)
    pub zeros: Option<DevBuf>,
}

impl DeviceInt4 {
    /// Bytes a kernel reads to use the whole weight once.
    pub fn bytes(&self) -> usize {
        self.packed.bytes + self.scales.bytes + self.zeros.as_ref().map_or(0, |z| z.bytes)
    }

    /// The zero-point pointer a launch passes (0 for symmetric weights, which have none).
    pub fn zeros_ptr(&self) -> u64 {
        self.zeros.as_ref().map_or(0, |z| z.ptr)
    }
}

pub struct Int4Quantizer {
    kernel: Kernel,
    asym: Kernel,
    dequant: Kernel,
    group: i64,
}

impl Int4Quantizer {
    pub fn new(gpu: &Gpu, cache: &ModuleCache, dt: DType, group: i64) -> Result<Int4Quantizer> {
        if !quantizer_takes(group) {
            bail!("the device int4 quantizer takes groups that are multiples of 32, not {group}");
        }
        if dt == DType::F32 {
            bail!("the device int4 quantizer reads bf16 or fp16 weights, not fp32");
        }
        let m = cache
            .get_or_compile(&quantize_request(&gpu.props.arch(), dt, group))
            .context("compiling kernels/gemm_int4/quantize.cu")?;
        Ok(Int4Quantizer {
            kernel: gpu.load(&m.cubin, "int4_quantize_rtn")?,
            asym: gpu.load(&m.cubin, "int4_quantize_rtn_asym")?,
            dequant: gpu.load(&m.cubin, "int4_dequantize")?,
            group,
        })
    }

    /// Quantizes W[n, k] (16-bit floats at device address `w`) symmetrically into new
    /// device buffers.
    pub fn quantize(&self, gpu: &Gpu, w: u64, n: i64, k: i64) -> Result<DeviceInt4> {
        self.run(gpu, w, n, k, false)
    }

    /// The same with an integer zero point per group (value = (q - z)·s, the format of AWQ
    /// and GPTQ checkpoints).
    pub fn quantize_asym(&self, gpu: &Gpu, w: u64, n: i64, k: i64) -> Result<DeviceInt4> {
        self.run(gpu, w, n, k, true)
    }

    fn run(&self, gpu: &Gpu, w: u64, n: i64, k: i64, asym: bool) -> Result<DeviceInt4> {
        if n < 1 || k < 1 || k % self.group != 0 {
            bail!(
                "int4 quantization of a {n}x{k} weight: K must be a positive multiple of the group size {}",
                self.group
            );
        }
        let groups = k / self.group;
        let packed = gpu.alloc((n * k / 2) as usize)?;
        let scales = gpu.alloc((groups * n * 2) as usize)?;
        let zeros = if asym { Some(gpu.alloc((groups * n) as usize)?) } else { None };
        let warps = n * groups;
        let blocks = crate::kernels::ceil_div(warps, 8);
        if blocks > i64::from(i32::MAX) {
            bail!("int4 quantization of a {n}x{k} weight: {blocks} blocks exceed a launch");
        }
        let mut args = vec![Arg::Ptr(w), packed.arg(), scales.arg()];
        args.extend(zeros.as_ref().map(|z| z.arg()));
        args.extend([Arg::I32(n as i32), Arg::I32(k as i32)]);
        let kernel = if asym { &self.asym } else { &self.kernel };
        // SAFETY: the outputs were just allocated for N·K codes and their groups; `w` holds
        // N·K 16-bit weights (the caller's contract); the arguments follow quantize.cu's
        // signatures (zeros only for the asymmetric kernel).
        unsafe { gpu.launch(kernel, (blocks as u32, 1, 1), (256, 1, 1), 0, &args)? };
        Ok(DeviceInt4 { n, k, group: self.group, packed, scales, zeros })
    }

    /// out[n][k] = dequant(q) in the activation dtype (16-bit), for a bf16 GEMM on it.
    pub fn dequantize(&self, gpu: &Gpu, q: &DeviceInt4, out: &DevBuf) -> Result<()> {
        if q.zeros.is_some() {
            bail!("internal: int4_dequantize reads symmetric weights; use the reference dequantizer for zero points");
        }
        if q.group != self.group || out.bytes < (q.n * q.k * 2) as usize {
            bail!(
                "int4 dequantize of a {}x{} g{} weight: needs a g{} quantizer and {} output bytes (has {})",
                q.n,
                q.k,
                q.group,
                self.group,
                q.n * q.k * 2,
                out.bytes
            );
        }
        let words = q.n * q.k / 8;
        let blocks = crate::kernels::ceil_div(words, 256).min(i64::from(gpu.props.sm_count) * 16);
        // SAFETY: input and outputs were allocated for N·K weights and their groups by the caller (see the
        // function's contract); the arguments follow quantize.cu's signature.
        unsafe {
            gpu.launch(
                &self.dequant,
                (blocks as u32, 1, 1),
                (256, 1, 1),
                0,
                &[q.packed.arg(), q.scales.arg(), out.arg(), Arg::I32(q.n as i32), Arg::I32(q.k as i32)],
            )
        }
    }
}
