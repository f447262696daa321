//! One gemm_int8 shape on the GPU: random activations and a random 16-bit weight quantized
//! by the device quantizer, the dequantize-then-cuBLAS reference, the candidates' launches
//! and the cuBLAS bf16 peer.

use super::linear::{launch_linear, workspace_bytes, Int8Io, GEMV_MAX_M, MAX_SPLITK, VARIANTS};
use super::quantize::{DeviceInt8, Int8Quantizer};
use crate::gpu::blas::Blas;
use crate::gpu::cache::{self, ModuleCache};
use crate::gpu::device::{DevBuf, Gpu};
use crate::gpu::util::{Comparison, Util};
use crate::kernels::gemm_common::{ensure_cpu_checkable, ensure_fits_with_reference, ensure_workspace, poison_output};
use crate::kernels::support::{download_f64, rel_err};
use crate::kernels::{DType, Problem, Shape};
use crate::kernels::{Kernels, Params};
use crate::quant::{quantize_int8_per_channel, HalfDtype};
use anyhow::{bail, Context, Result};

/// Seed offset of the weight (the activations use the seed itself).
const WEIGHT_SEED: u64 = 0x1a7_0008;

pub struct GemmInt8Problem {
    pub m: i64,
    pub n: i64,
    pub k: i64,
    pub dt: DType,
    /// Seed of the current inputs (`reference_vs_cpu` regenerates the weight from it).
    seed: u64,
    x: DevBuf,
    /// The random weight until it is quantized, then dequant(W) in the activation dtype: the
    /// reference's and the peer's weight.
    w: DevBuf,
    wq: DeviceInt8,
    y: DevBuf,
    y_ref: DevBuf,
    /// fp32 split-K partials (M ≤ 16, up to MAX_SPLITK splits).
    ws: DevBuf,
    quantizer: Int8Quantizer,
    blas: Blas,
}

impl GemmInt8Problem {
    pub fn new(gpu: &Gpu, s: &Shape, dt: DType) -> Result<GemmInt8Problem> {
        let (m, n, k) = (s.get("M"), s.get("N"), s.get("K"));
        let e = dt.bytes() as i64;
        let ws_bytes = if m <= GEMV_MAX_M { MAX_SPLITK * m * n * 4 } else { 0 };
        let need = m * k * e + n * k * e + n * k + 2 * n + 2 * m * n * e + ws_bytes;
        ensure_fits_with_reference(gpu, "gemm_int8", s, need, "16-bit")?;
        let cache = ModuleCache::open(&cache::default_dir())?;
        let alloc = |b: i64| gpu.alloc(b as usize);
        Ok(GemmInt8Problem {
            m,
            n,
            k,
            dt,
            seed: 1,
            x: alloc(m * k * e)?,
            w: alloc(n * k * e)?,
            wq: DeviceInt8::alloc(gpu, n, k)?,
            y: alloc(m * n * e)?,
            y_ref: alloc(m * n * e)?,
            ws: alloc(ws_bytes)?,
            quantizer: Int8Quantizer::new(gpu, &cache, dt)?,
            blas: Blas::new(gpu)?,
        })
    }

    /// The random weight of `seed` into `buf`: uniform in ±1/√K, so outputs have rms ≈ 0.33
    /// whatever K is.
    fn fill_weight(&self, gpu: &Gpu, util: &Util, buf: &DevBuf, seed: u64) -> Result<()> {
        let scale = 1.0 / (self.k as f32).sqrt();
        util.fill(gpu, buf, self.dt, (self.n * self.k) as usize, seed ^ WEIGHT_SEED, scale)
    }

    /// y_ref = X · dequant(W)ᵀ on cuBLAS (`w` holds dequant(W) once `randomize` has run): the
    /// reference's product and the peer's whole run.
    fn cublas_on_dequantized(&self) -> Result<()> {
        self.blas.linear(self.dt, self.x.ptr, self.w.ptr, self.y_ref.ptr, self.m, self.n, self.k, false)
    }

    /// The workspace a candidate's split-K needs must fit the one this problem allocated.
    fn check_workspace(&self, variant: &str, p: &Params) -> Result<()> {
        let need = workspace_bytes(variant, p, self.m, self.n);
        let split_k_is_for = format!("M <= {GEMV_MAX_M}, SPLITK <= {MAX_SPLITK}");
        ensure_workspace(variant, p, (self.m, self.n, self.k), need, self.ws.bytes, &split_k_is_for)
    }
}

impl Problem for GemmInt8Problem {
    fn randomize(&mut self, gpu: &Gpu, util: &Util, seed: u64) -> Result<()> {
        self.seed = seed;
        util.fill(gpu, &self.x, self.dt, (self.m * self.k) as usize, seed, 1.0)?;
        self.fill_weight(gpu, util, &self.w, seed)?;
        self.quantizer.quantize_into(gpu, self.w.ptr, &self.wq)?;
        // The 16-bit weight is not needed any more: it becomes dequant(W).
        self.quantizer.dequantize(gpu, &self.wq, &self.w)?;
        self.cublas_on_dequantized()?;
        gpu.synchronize()
    }

    fn poison(&mut self, gpu: &Gpu, util: &Util) -> Result<()> {
        poison_output(gpu, util, &self.y, &self.ws)
    }

    fn run(&mut self, gpu: &Gpu, variant: &str, kernels: &Kernels, p: &Params) -> Result<()> {
        if !VARIANTS.contains(&variant) {
            bail!("the gemm_int8 family has no variant {variant:?} (known: {})", VARIANTS.join(", "));
        }
        self.check_workspace(variant, p)?;
        let io = Int8Io {
            x: self.x.ptr,
            wq: self.wq.q.ptr,
            scales: self.wq.scales.ptr,
            r: 0, // no residual (selftest checks the residual through the model's linear)
            y: self.y.ptr,
            ws: self.ws.ptr,
        };
        // SAFETY: the buffers were allocated by `new` for (M, N, K), the workspace for the
        // largest split; `kernels` are compiled with `p` in this dtype.
        unsafe { launch_linear(gpu, kernels, variant, p, io, self.m, self.n, self.k, self.dt) }
    }

    fn check(&mut self, gpu: &Gpu, util: &Util) -> Result<Comparison> {
        util.compare(gpu, &self.y, &self.y_ref, self.dt, (self.m * self.n) as usize)
    }

    /// cuBLAS bf16 (or fp16) GEMM on the dequantized weight: what the int8 kernels replace.
    /// It recomputes the reference bit for bit (same inputs, same cuBLAS call).
    fn run_peer(&mut self, _gpu: &Gpu) -> Result<Option<()>> {
        self.cublas_on_dequantized()?;
        Ok(Some(()))
    }

    /// Checks every step of the reference on the host: the device quantizer's codes and
    /// scales bit for bit against `quant::quantize_int8_per_channel` on the same weight
    /// (regenerated from the seed), the dequantized weight bit for bit against
    /// `Int8Weight::dequantize` rounded to the activation dtype, and y_ref against the f64
    /// product on that rounded weight.
    fn reference_vs_cpu(&mut self, gpu: &Gpu) -> Result<Option<f64>> {
        gpu.synchronize()?;
        ensure_cpu_checkable("gemm_int8", self.m, self.n, self.k)?;
        let label = format!("gemm_int8 {}x{}x{}", self.m, self.n, self.k);
        let (m, n, k) = (self.m as usize, self.n as usize, self.k as usize);
        let act = HalfDtype::of(self.dt);
        let cache = ModuleCache::open(&cache::default_dir())?;
        let util = Util::new(gpu, &cache)?;
        let w_dev = gpu.alloc(n * k * 2)?;
        self.fill_weight(gpu, &util, &w_dev, self.seed)?;
        gpu.synchronize()?;
        let w: Vec<f32> = w_dev.download::<u16>(n * k)?.iter().map(|b| act.to_f32(*b)).collect();
        let host = quantize_int8_per_channel(&w, n, k, act).context("host int8 quantization of the random weight")?;
        let q: Vec<i8> = self.wq.q.download(n * k)?;
        let scales: Vec<u16> = self.wq.scales.download(n)?;
        if let Some(i) = scales.iter().zip(&host.scales).position(|(a, b)| a != b) {
            bail!(
                "{label}: the device quantizer's scale of row {i} is {:#06x}, the host's {:#06x}",
                scales[i],
                host.scales[i]
            );
        }
        if let Some(i) = q.iter().zip(&host.q).position(|(a, b)| a != b) {
            bail!(
                "{label}: the device quantizer's code at row {}, column {} is {}, the host's {}",
                i / k,
                i % k,
                q[i],
                host.q[i]
            );
        }
        let deq: Vec<u16> = self.w.download(n * k)?;
        let deq_host: Vec<f32> = host.dequantize();
        for (i, (d, h)) in deq.iter().zip(&deq_host).enumerate() {
            if *d != act.from_f32(*h) {
                bail!(
                    "{label}: int8_dequantize disagrees with Int8Weight::dequantize at row {}, column {}: device \
                     {d:#06x}, host {:#06x}",
                    i / k,
                    i % k,
                    act.from_f32(*h)
                );
            }
        }
        let x: Vec<f64> = self.x.download::<u16>(m * k)?.iter().map(|b| f64::from(act.to_f32(*b))).collect();
        let wr: Vec<f64> = deq.iter().map(|b| f64::from(act.to_f32(*b))).collect();
        let y_cpu: Vec<f64> = (0..m * n)
            .map(|i| x[i / n * k..][..k].iter().zip(&wr[i % n * k..][..k]).map(|(a, b)| a * b).sum())
            .collect();
        Ok(Some(rel_err(&download_f64(&self.y_ref, self.dt, m * n)?, &y_cpu)))
    }
}
