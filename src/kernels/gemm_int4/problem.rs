//! One gemm_int4 shape on the GPU: a random int4 weight and activations, the
//! dequantize-then-cuBLAS reference, the candidates' launches and the cuBLAS bf16 peer.

use super::format::{Int4Format, ZeroMode, MIN_GROUP};
use super::launch::{GEMV_MAX_M, MAX_SPLITK, WGMMA_MAX_SPLITK};
use super::linear::{launch_linear, workspace_bytes, Int4Io};
use super::reference::RefKernels;
use super::tiled::{reads_tiled, PlainInt4, Repacker, TiledInt4};
use super::VARIANTS;
use crate::gpu::blas::Blas;
use crate::gpu::device::{DevBuf, Gpu};
use crate::gpu::util::{Comparison, Util};
use crate::kernels::gemm_common::{ensure_cpu_checkable, ensure_fits_with_reference, ensure_workspace, poison_output};
use crate::kernels::support::{download_f64, rel_err};
use crate::kernels::{DType, Problem, Shape};
use crate::kernels::{Kernels, Params};
use crate::quant::{reference_gemm_int4_with, HalfDtype, Int4Weight, WeightRounding, Zeros};
use anyhow::{bail, Context, Result};

/// Scales are uniform in [0.5, 1.5]/√K: weights of rms ≈ 4.6/√K and outputs of rms ≈ 2.7
/// whatever K is, well inside fp16's range and far from its subnormals.
const SCALE_RANGE: (f32, f32) = (0.5, 1.5);
/// Float minimums (ZERO_MODE 2) uniform in [-11.5, -3.5]/√K: q·s + m then centres near 0
/// like the symmetric format, while every minimum is a different, non-integer offset.
const MIN_RANGE: (f32, f32) = (-11.5, -3.5);
/// Integer zero points span the whole range the format allows (16 = GPTQ v1's stored 15).
const MAX_ZERO: i32 = crate::quant::format::MAX_INT_ZERO as i32;
/// Largest M·N for which int4_mma_wgmma gets a split-K workspace (8 splits of 128×28672 is
/// 117 MB); larger outputs have enough tiles to fill the GPU without splitting.
const WGMMA_SPLITK_MAX_MN: i64 = 1 << 22;

pub struct GemmInt4Problem {
    pub m: i64,
    pub n: i64,
    pub k: i64,
    pub dt: DType,
    /// The format the inputs and the reference currently have.
    fmt: Int4Format,
    /// Seed of the current inputs (a format switch regenerates scales/zeros from it).
    seed: u64,
    x: DevBuf,
    wq: DevBuf,
    scales: DevBuf,
    zeros: DevBuf,
    /// dequant(W) in the activation dtype: the reference's and the peer's weight.
    w_deq: DevBuf,
    y: DevBuf,
    y_ref: DevBuf,
    /// fp32 split-K partials of the decode kernels (M ≤ 16) and of int4_mma_wgmma (M·N ≤ 2^22).
    ws: DevBuf,
    /// The weight in the tiled layout (int4_gemv_bulk), sized for groups of 128 or more with
    /// u8 zeros; rewritten from the plain one before a tiled variant's first run after each
    /// new weight or format (`tiled_fresh`).
    tiled: TiledInt4,
    tiled_fresh: bool,
    repack: Repacker,
    blas: Blas,
    refk: RefKernels,
}

impl GemmInt4Problem {
    pub fn new(gpu: &Gpu, s: &Shape, dt: DType) -> Result<GemmInt4Problem> {
        let (m, n, k) = (s.get("M"), s.get("N"), s.get("K"));
        let e = dt.bytes() as i64;
        // Scales and zeros are sized for the smallest group any candidate may ask for.
        let group_bytes = (k / MIN_GROUP) * n * 2;
        let ws_bytes = if m <= GEMV_MAX_M {
            MAX_SPLITK * m * n * 4
        } else if m * n <= WGMMA_SPLITK_MAX_MN {
            WGMMA_MAX_SPLITK * m * n * 4
        } else {
            0
        };
        let (tc, ts, tz) = super::tiled::tiled_bytes(n, k, 128);
        let need =
            m * k * e + n * k / 2 + 2 * group_bytes + n * k * e + 2 * m * n * e + ws_bytes + (tc + ts + tz) as i64;
        ensure_fits_with_reference(gpu, "gemm_int4", s, need, "bf16")?;
        let alloc = |b: i64| gpu.alloc(b as usize);
        Ok(GemmInt4Problem {
            m,
            n,
            k,
            dt,
            fmt: Int4Format::default_for(dt),
            seed: 1,
            x: alloc(m * k * e)?,
            wq: alloc(n * k / 2)?,
            scales: alloc(group_bytes)?,
            zeros: alloc(group_bytes)?,
            w_deq: alloc(n * k * e)?,
            y: alloc(m * n * e)?,
            y_ref: alloc(m * n * e)?,
            ws: alloc(ws_bytes)?,
            tiled: TiledInt4::alloc(gpu, n, k, 128, ZeroMode::Int)?,
            tiled_fresh: false,
            repack: Repacker::new(gpu)?,
            blas: Blas::new(gpu)?,
            refk: RefKernels::new(gpu)?,
        })
    }

    fn groups(&self) -> usize {
        ((self.k / self.fmt.group) * self.n) as usize
    }

    /// Random scales (and zero points or minimums) of the current format, from `self.seed`.
    fn randomize_format(&self, gpu: &Gpu) -> Result<()> {
        let inv = 1.0 / (self.k as f32).sqrt();
        let (g, sd, seed) = (self.groups(), self.fmt.scale_dtype, self.seed);
        self.refk.random_halfs(
            gpu,
            &self.scales,
            g,
            seed ^ 0x5ca1e5,
            (SCALE_RANGE.0 * inv, SCALE_RANGE.1 * inv),
            sd,
        )?;
        match self.fmt.zeros {
            ZeroMode::Symmetric => Ok(()),
            ZeroMode::Int => self.refk.random_zeros(gpu, &self.zeros, g, seed ^ 0x2e505, MAX_ZERO),
            ZeroMode::Min => {
                self.refk.random_halfs(gpu, &self.zeros, g, seed ^ 0x313, (MIN_RANGE.0 * inv, MIN_RANGE.1 * inv), sd)
            }
        }
    }

    /// y_ref = X · dequant(W)ᵀ: the plain dequantizer, then cuBLAS (fp32 accumulation).
    fn compute_reference(&self, gpu: &Gpu) -> Result<()> {
        self.refk.dequantize(
            gpu,
            &self.wq,
            &self.scales,
            &self.zeros,
            &self.w_deq,
            self.n,
            self.k,
            &self.fmt,
            HalfDtype::of(self.dt),
        )?;
        self.cublas_on_dequantized()
    }

    /// y_ref = X · w_deqᵀ on cuBLAS: the reference's product and the peer's whole run.
    fn cublas_on_dequantized(&self) -> Result<()> {
        self.blas.linear(self.dt, self.x.ptr, self.w_deq.ptr, self.y_ref.ptr, self.m, self.n, self.k, false)
    }

    /// Makes the inputs match the format a candidate was compiled for. The kernels take the
    /// format as macros, so it is known only here; the switch regenerates scales/zeros from
    /// the current seed and recomputes the reference, and happens once per format change
    /// (never between timed runs of one candidate).
    fn ensure_format(&mut self, gpu: &Gpu, params: &Params) -> Result<()> {
        let fmt = Int4Format::from_params(params, self.dt)?;
        if self.k % fmt.group != 0 {
            bail!(
                "gemm_int4 {}x{}x{}: K = {} is not a multiple of the group size {}",
                self.m,
                self.n,
                self.k,
                self.k,
                fmt.group
            );
        }
        if fmt != self.fmt {
            self.fmt = fmt;
            self.tiled_fresh = false;
            self.randomize_format(gpu)?;
            self.compute_reference(gpu)?;
        }
        Ok(())
    }

    /// The workspace a candidate's split-K needs must fit the one this problem allocated.
    fn check_workspace(&self, variant: &str, p: &Params) -> Result<()> {
        let need = workspace_bytes(variant, p, self.m, self.n);
        let split_k_is_for = format!("M <= {GEMV_MAX_M}, or M·N <= {WGMMA_SPLITK_MAX_MN} for int4_mma_wgmma");
        ensure_workspace(variant, p, (self.m, self.n, self.k), need, self.ws.bytes, &split_k_is_for)
    }

    /// The current weight as the host format, downloaded (small shapes only).
    fn download_weight(&self) -> Result<Int4Weight> {
        let (n, k, g) = (self.n as usize, self.k as usize, self.groups());
        let zeros = match self.fmt.zeros {
            ZeroMode::Symmetric => Zeros::Symmetric,
            ZeroMode::Int => Zeros::Int(self.zeros.download::<u8>(g)?),
            ZeroMode::Min => Zeros::Min(self.zeros.download::<u16>(g)?),
        };
        let w = Int4Weight {
            n,
            k,
            group_size: self.fmt.group as usize,
            scale_dtype: self.fmt.scale_dtype,
            packed: self.wq.download::<u32>(n * k / 8)?,
            scales: self.scales.download::<u16>(g)?,
            zeros,
        };
        w.validate().context("the random device weight is not a valid Int4Weight")?;
        Ok(w)
    }
}

impl Problem for GemmInt4Problem {
    fn randomize(&mut self, gpu: &Gpu, util: &Util, seed: u64) -> Result<()> {
        self.seed = seed;
        self.tiled_fresh = false;
        util.fill(gpu, &self.x, self.dt, (self.m * self.k) as usize, seed, 1.0)?;
        // Random bits are uniformly random codes 0..15 in every nibble.
        util.fill_bits(gpu, &self.wq, (self.n * self.k / 8) as usize, seed ^ 0x1a7_0004)?;
        self.randomize_format(gpu)?;
        self.compute_reference(gpu)?;
        gpu.synchronize()
    }

    fn poison(&mut self, gpu: &Gpu, util: &Util) -> Result<()> {
        poison_output(gpu, util, &self.y, &self.ws)
    }

    fn run(&mut self, gpu: &Gpu, variant: &str, kernels: &Kernels, p: &Params) -> Result<()> {
        self.ensure_format(gpu, p)?;
        if !VARIANTS.contains(&variant) {
            bail!("the gemm_int4 family has no variant {variant:?} (known: {})", VARIANTS.join(", "));
        }
        self.check_workspace(variant, p)?;
        let zeros = if self.fmt.zeros == ZeroMode::Symmetric { 0 } else { self.zeros.ptr };
        let tiled = reads_tiled(variant);
        if tiled && !self.tiled_fresh {
            if self.fmt.group % 128 != 0 || self.fmt.zeros == ZeroMode::Min {
                bail!("{variant} takes groups of 128 or more and no float minimums, not {}", self.fmt.label());
            }
            let plain = PlainInt4 { packed: self.wq.ptr, scales: self.scales.ptr, zeros };
            self.repack.repack(gpu, plain, &self.tiled, self.n, self.k, self.fmt.group)?;
            self.tiled_fresh = true;
        }
        let io = Int4Io {
            x: self.x.ptr,
            wq: if tiled { self.tiled.codes.ptr } else { self.wq.ptr },
            scales: if tiled { self.tiled.scales.ptr } else { self.scales.ptr },
            zeros: match (tiled, &self.tiled.zeros) {
                (true, Some(z)) if zeros != 0 => z.ptr,
                _ => zeros,
            },
            r: 0, // no residual (selftest checks the residual through the model's linear)
            y: self.y.ptr,
            ws: self.ws.ptr,
        };
        // SAFETY: the buffers were allocated by `new` for (M, N, K) in this format, the
        // workspace for the largest split; `kernels` are compiled with `p`.
        unsafe { launch_linear(gpu, kernels, variant, p, io, self.m, self.n, self.k, self.dt) }
    }

    fn check(&mut self, gpu: &Gpu, util: &Util) -> Result<Comparison> {
        util.compare(gpu, &self.y, &self.y_ref, self.dt, (self.m * self.n) as usize)
    }

    /// cuBLAS bf16 (or fp16) GEMM on the dequantized weight: what the int4 kernels replace.
    /// It recomputes the reference bit for bit (same inputs, same cuBLAS call).
    fn run_peer(&mut self, _gpu: &Gpu) -> Result<Option<()>> {
        self.cublas_on_dequantized()?;
        Ok(Some(()))
    }

    /// Checks both halves of the reference on the host: the dequantized weight bit for bit
    /// against `Int4Weight::dequantize` (rounded to the activation dtype), and y_ref against
    /// the f64 CPU product `quant::reference_gemm_int4_with(.., WeightRounding::To(dtype))`.
    fn reference_vs_cpu(&mut self, gpu: &Gpu) -> Result<Option<f64>> {
        gpu.synchronize()?;
        ensure_cpu_checkable("gemm_int4", self.m, self.n, self.k)?;
        let (m, n, k) = (self.m as usize, self.n as usize, self.k as usize);
        let act = HalfDtype::of(self.dt);
        let w = self.download_weight()?;
        let dev_w: Vec<u16> = self.w_deq.download(n * k)?;
        for (i, (v, d)) in w.dequantize().iter().zip(&dev_w).enumerate() {
            if act.from_f32(*v) != *d {
                bail!(
                    "gemm_int4 reference dequantizer ({}) disagrees with Int4Weight::dequantize at row {}, column {}: \
                     device {:#06x}, host {:#06x}",
                    self.fmt.label(),
                    i / k,
                    i % k,
                    d,
                    act.from_f32(*v)
                );
            }
        }
        let x: Vec<f32> = self.x.download::<u16>(m * k)?.iter().map(|b| act.to_f32(*b)).collect();
        let y_cpu = reference_gemm_int4_with(&x, m, &w, None, WeightRounding::To(act))?;
        let y_cpu: Vec<f64> = y_cpu.into_iter().map(f64::from).collect();
        Ok(Some(rel_err(&download_f64(&self.y_ref, self.dt, m * n)?, &y_cpu)))
    }
}
