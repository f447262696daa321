//! Prefill attention: causal, grouped-query, flash-attention style on tensor cores.
//!
//! Shape `BxSxHxKVHxD`: B sequences, S tokens each, H query heads, KVH key/value heads, head
//! dim D. Tensors are packed along a token axis ("varlen" layout, see
//! kernels/attention/prefill.cu): Q, O `[tokens, H, D]`, K, V `[tokens, KVH, D]`, with
//! `cu_seqlens` giving where each sequence starts. `attention_prefill` runs B sequences of
//! equal length S (the same memory as `[B, S, H, D]`); `attention_prefill_varlen` runs the
//! ragged lengths of [`lengths`] (S is the longest), to exercise the cu_seqlens contract.
//!
//! Variants: `flash_mma` (kernels/attention/prefill.cu: mma.sync, any sm_80+ GPU) and
//! `flash_wgmma` (kernels/attention/prefill_wgmma.cu: sm_90a only, wgmma + TMA with a producer
//! warpgroup; host side in attention_prefill_wgmma.rs).
//!
//! FLOPs, by the usual causal convention: 2 matmuls × 2·H·D per (query, key) pair over half
//! the square, `4·H·D·len²/2` per sequence (= 4·B·H·S²·D/2 at equal lengths); the diagonal's
//! extra len/2 pairs are not counted. Minimum bytes: Q, K, V read and O written once.
//! Reference: `attn_ref_prefill` (fp32, two-pass softmax), itself checked against f64 on the
//! CPU at small sizes. Peer: PyTorch SDPA, measured by the peer script, not in-process.

use super::attention_common::{
    attend_f64, cu_seqlens, launch_reference, lengths, max_rel_diff, reference_kernel, sample_indices, softmax_scale,
    upload_ints, validate_heads, PREFILL_SOURCE,
};
use super::support;
use super::tunables::{LauncherCache, Tunables};
use super::{ceil_div, checked_ceil_div, DType, Family, Geometry, Kernels, Params, Problem, Shape};
use crate::gpu::device::{Arg, DevBuf, Gpu, Kernel};
use crate::gpu::util::{Comparison, Util};
use anyhow::{bail, Context, Result};

#[path = "attention_prefill_wgmma.rs"]
pub mod wgmma;

/// The prefill variants this family launches.
pub const VARIANTS: [&str; 2] = ["flash_mma", "flash_wgmma"];

pub struct AttentionPrefill {
    /// Ragged lengths (the `_varlen` family) instead of B equal ones.
    pub ragged: bool,
}

pub static PREFILL: AttentionPrefill = AttentionPrefill { ragged: false };
pub static PREFILL_VARLEN: AttentionPrefill = AttentionPrefill { ragged: true };

impl AttentionPrefill {
    fn lens(&self, s: &Shape) -> Vec<i64> {
        lengths(s.get("B"), s.get("S"), self.ragged)
    }
}

/// Dynamic shared memory of one prefill block.
pub fn prefill_smem_bytes(block_m: i64, block_n: i64, stages: i64, d: i64, elem: i64) -> i64 {
    (block_m + 2 * stages * block_n) * d * elem
}

/// The grid of both prefill kernels: (H, ⌈max_len/BLOCK_M⌉, sequences) blocks; an error
/// when it exceeds the grid's y or z limit.
pub fn prefill_grid(h: i64, seqs: i64, max_len: i64, block_m: i64) -> Result<(u32, u32, u32)> {
    if checked_ceil_div(max_len, block_m)? > 65_535 || seqs > 65_535 {
        bail!("prefill attention: {seqs} sequences of up to {max_len} tokens exceed one launch's grid");
    }
    Ok((h as u32, ceil_div(max_len, block_m) as u32, seqs as u32))
}

/// The launch of flash_mma (kernels/attention/prefill.cu), built once from a variant's
/// tunables; the sweep, the selftest and the model launch through it. (flash_wgmma's is
/// [`wgmma::launch`] with its [`wgmma::WgmmaConfig`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmaPrefillLaunch {
    pub head_dim: i64,
    pub block_m: i64,
    block_n: i64,
    warps: i64,
    stages: i64,
}

impl MmaPrefillLaunch {
    pub fn new(t: &Tunables) -> Result<MmaPrefillLaunch> {
        if t.variant() != "flash_mma" {
            bail!("flash_mma's launch cannot run variant {:?}", t.variant());
        }
        Ok(MmaPrefillLaunch {
            head_dim: t.get("HEAD_DIM")?,
            block_m: t.get("BLOCK_M")?,
            block_n: t.get("BLOCK_N")?,
            warps: t.get("NUM_WARPS")?,
            stages: t.get("STAGES")?,
        })
    }

    pub fn smem_bytes(&self, elem: i64) -> i64 {
        prefill_smem_bytes(self.block_m, self.block_n, self.stages, self.head_dim, elem)
    }

    /// (H, ⌈max_len/BLOCK_M⌉, sequences) blocks of 32·NUM_WARPS threads.
    pub fn geometry(&self, h: i64, seqs: i64, max_len: i64, dt: DType) -> Result<Geometry> {
        Ok(Geometry {
            grid: prefill_grid(h, seqs, max_len, self.block_m)?,
            block: ((self.warps * 32) as u32, 1, 1),
            smem: self.smem_bytes(dt.bytes() as i64) as u32,
        })
    }

    /// `seqs` sequences packed by cu_seqlens, the longest `max_len` (> 0) tokens.
    ///
    /// # Safety
    /// `k` is attn_prefill of a module compiled with these tunables; Q, O hold io.tokens·H·D
    /// elements, K, V io.tokens·KVH·D, cu_seqlens seqs + 1 ints ending at io.tokens; all live
    /// until the launch ran.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn launch(
        &self,
        gpu: &Gpu,
        k: &Kernel,
        io: &wgmma::PrefillIo,
        seqs: i64,
        max_len: i64,
        scale: f32,
        dt: DType,
    ) -> Result<()> {
        if io.d != self.head_dim {
            bail!("flash_mma compiled for HEAD_DIM = {} cannot run D = {}", self.head_dim, io.d);
        }
        let g = self.geometry(io.h, seqs, max_len, dt)?;
        let mut args = Arg::ptrs([io.q, io.k, io.v, io.o, io.cu_seqlens]);
        args.extend(Arg::i32s([io.h, io.kvh]));
        args.push(Arg::F32(scale));
        // SAFETY: the caller's contract; the arguments follow the entry's signature.
        unsafe { gpu.launch(k, g.grid, g.block, g.smem, &args) }
    }
}

impl Family for AttentionPrefill {
    fn name(&self) -> &'static str {
        if self.ragged {
            "attention_prefill_varlen"
        } else {
            "attention_prefill"
        }
    }
    fn shape_dims(&self) -> &'static [&'static str] {
        &["B", "S", "H", "KVH", "D"]
    }
    fn flops(&self, s: &Shape) -> f64 {
        let (h, d) = (s.get("H") as f64, s.get("D") as f64);
        self.lens(s).iter().map(|&l| 4.0 * h * d * (l as f64) * (l as f64) / 2.0).sum()
    }
    fn min_bytes(&self, s: &Shape, dt: DType) -> f64 {
        let tokens: i64 = self.lens(s).iter().sum();
        let (h, kvh, d) = (s.get("H") as f64, s.get("KVH") as f64, s.get("D") as f64);
        tokens as f64 * (2.0 * h + 2.0 * kvh) * d * dt.bytes() as f64
    }
    fn entries(&self, variant: &str) -> Result<&'static [&'static str]> {
        match variant {
            "flash_mma" => Ok(&["attn_prefill"]),
            "flash_wgmma" => Ok(&["attn_prefill_wgmma"]),
            other => bail!("the {} family has no variant {other:?} (known: {})", self.name(), VARIANTS.join(", ")),
        }
    }
    fn validate(&self, s: &Shape, dt: DType) -> Result<()> {
        validate_heads(self.name(), s, dt)?;
        let tokens: i64 = self.lens(s).iter().sum();
        if tokens * s.get("H") * s.get("D") > i32::MAX as i64 * 4 {
            bail!("{} {}: too large for one launch's token offsets", self.name(), s.label());
        }
        if ceil_div(s.get("S"), 16) > 65_535 {
            bail!("{} {}: S too long for the grid's y dimension", self.name(), s.label());
        }
        Ok(())
    }
    fn peer(&self) -> &'static str {
        "torch"
    }
    fn selftest_shapes(&self) -> &'static [&'static str] {
        if self.ragged {
            &["4x300x4x2x128", "6x129x4x1x64", "3x17x8x8x128", "7x1000x8x2x128"]
        } else {
            &["1x1x4x1x128", "1x17x4x2x128", "1x129x8x2x64", "2x200x4x4x128", "1x1000x8x2x64", "3x513x32x8x128"]
        }
    }
    fn problem(&self, gpu: &Gpu, s: &Shape, dt: DType) -> Result<Box<dyn Problem>> {
        self.validate(s, dt)?;
        Ok(Box::new(PrefillProblem::new(gpu, s, dt, self.lens(s))?))
    }
}

/// Inputs, reference and output of one prefill shape.
pub struct PrefillProblem {
    pub lens: Vec<i64>,
    pub cu: Vec<i32>,
    pub tokens: i64,
    pub h: i64,
    pub kvh: i64,
    pub d: i64,
    pub dt: DType,
    pub scale: f32,
    pub q: DevBuf,
    pub k: DevBuf,
    pub v: DevBuf,
    pub o: DevBuf,
    pub o_ref: DevBuf,
    pub cu_buf: DevBuf,
    reference: Kernel,
    /// flash_wgmma's tensor maps over q, k, v (they depend only on the buffers and the box
    /// sizes, so they are built once per box size, not on every timed launch).
    wgmma_maps: Option<wgmma::PrefillMaps>,
    mma_launcher: LauncherCache<MmaPrefillLaunch>,
    wgmma_launcher: LauncherCache<wgmma::WgmmaConfig>,
}

impl PrefillProblem {
    pub fn new(gpu: &Gpu, s: &Shape, dt: DType, lens: Vec<i64>) -> Result<PrefillProblem> {
        let (h, kvh, d) = (s.get("H"), s.get("KVH"), s.get("D"));
        let tokens: i64 = lens.iter().sum();
        let e = dt.bytes();
        let (nq, nkv) = ((tokens * h * d) as usize, (tokens * kvh * d) as usize);
        let need = (3 * nq + 2 * nkv) * e;
        support::ensure_fits(gpu, "attention prefill", s, need)?;
        let cu = cu_seqlens(&lens);
        let cu_buf = upload_ints(gpu, &cu)?;
        Ok(PrefillProblem {
            tokens,
            h,
            kvh,
            d,
            dt,
            scale: softmax_scale(d),
            q: gpu.alloc(nq * e)?,
            k: gpu.alloc(nkv * e)?,
            v: gpu.alloc(nkv * e)?,
            o: gpu.alloc(nq * e)?,
            o_ref: gpu.alloc(nq * e)?,
            cu_buf,
            reference: reference_kernel(gpu, dt, "attn_ref_prefill")?,
            wgmma_maps: None,
            mma_launcher: LauncherCache::default(),
            wgmma_launcher: LauncherCache::default(),
            lens,
            cu,
        })
    }

    fn n_out(&self) -> usize {
        (self.tokens * self.h * self.d) as usize
    }

    fn io(&self) -> wgmma::PrefillIo {
        wgmma::PrefillIo {
            q: self.q.ptr,
            k: self.k.ptr,
            v: self.v.ptr,
            o: self.o.ptr,
            cu_seqlens: self.cu_buf.ptr,
            tokens: self.tokens,
            h: self.h,
            kvh: self.kvh,
            d: self.d,
        }
    }

    fn run_flash_wgmma(&mut self, gpu: &Gpu, kernels: &Kernels, p: &Params) -> Result<()> {
        let cfg = *self.wgmma_launcher.get("flash_wgmma", p, |v, p| {
            wgmma::WgmmaConfig::new(&Tunables::from_template(v, wgmma::PREFILL_WGMMA_SOURCE, DType::BF16, p))
        })?;
        let max_len = *self.lens.iter().max().unwrap_or(&0);
        if max_len == 0 {
            return Ok(());
        }
        let io = self.io();
        let maps = match self.wgmma_maps {
            Some(m) if m.boxes == (cfg.block_m(), cfg.block_n) => m,
            _ => {
                let m = wgmma::build_maps(self.dt, &io, &cfg)?;
                self.wgmma_maps = Some(m);
                m
            }
        };
        let kern = kernels.get("attn_prefill_wgmma").context("module lacks attn_prefill_wgmma")?;
        // SAFETY: the maps cover q, k, v (built above from `io`, whose buffers `new`
        // allocated for this shape), O and cu_seqlens are sized for it; `kern` is compiled with `p`.
        unsafe { wgmma::launch(gpu, kern, &cfg, &maps, self.dt, &io, self.lens.len() as i64, max_len, self.scale) }
    }
}

impl Problem for PrefillProblem {
    fn randomize(&mut self, gpu: &Gpu, util: &Util, seed: u64) -> Result<()> {
        let nkv = (self.tokens * self.kvh * self.d) as usize;
        // Q at scale 2: scores of std ≈ 0.7, so the softmax is far from uniform.
        util.fill(gpu, &self.q, self.dt, self.n_out(), seed, 2.0)?;
        util.fill(gpu, &self.k, self.dt, nkv, seed ^ 0xa77e_0001, 1.0)?;
        util.fill(gpu, &self.v, self.dt, nkv, seed ^ 0xa77e_0002, 1.0)?;
        if self.tokens > 0 {
            let (bufs, seqs) = ([&self.q, &self.k, &self.v, &self.o_ref, &self.cu_buf], self.lens.len() as i64);
            // SAFETY: attn_ref_prefill over buffers `new` allocated for this shape, one row per
            // token, cu_seqlens B + 1 ints.
            unsafe {
                launch_reference(gpu, &self.reference, self.tokens, bufs, seqs, self.h, self.kvh, self.d, self.scale)?
            };
        }
        gpu.synchronize()
    }

    fn poison(&mut self, gpu: &Gpu, util: &Util) -> Result<()> {
        util.poison(gpu, &self.o)
    }

    fn run(&mut self, gpu: &Gpu, variant: &str, kernels: &Kernels, p: &Params) -> Result<()> {
        match variant {
            "flash_mma" => {}
            "flash_wgmma" => return self.run_flash_wgmma(gpu, kernels, p),
            other => bail!("the attention prefill families have no variant {other:?} (known: {})", VARIANTS.join(", ")),
        }
        let l = *self.mma_launcher.get(variant, p, |v, p| {
            MmaPrefillLaunch::new(&Tunables::from_template(v, PREFILL_SOURCE, DType::BF16, p))
        })?;
        let max_len = *self.lens.iter().max().unwrap_or(&0);
        if max_len == 0 {
            return Ok(());
        }
        let kern = kernels.get("attn_prefill").context("module lacks attn_prefill")?;
        // SAFETY: Q, K, V, O and cu_seqlens were allocated by `new` for this shape (packed
        // along its tokens, cu_seqlens B + 1 entries); `kern` is compiled with `p`.
        unsafe { l.launch(gpu, kern, &self.io(), self.lens.len() as i64, max_len, self.scale, self.dt) }
    }

    fn check(&mut self, gpu: &Gpu, util: &Util) -> Result<Comparison> {
        util.compare(gpu, &self.o, &self.o_ref, self.dt, self.n_out())
    }

    fn run_peer(&mut self, _gpu: &Gpu) -> Result<Option<()>> {
        Ok(None) // PyTorch SDPA figures come from the peer script (scripts/), not in-process.
    }

    fn reference_vs_cpu(&mut self, gpu: &Gpu) -> Result<Option<f64>> {
        gpu.synchronize()?;
        let (h, kvh, d) = (self.h as usize, self.kvh as usize, self.d as usize);
        let q = support::download_f64(&self.q, self.dt, self.n_out())?;
        let k = support::download_f64(&self.k, self.dt, (self.tokens * self.kvh * self.d) as usize)?;
        let v = support::download_f64(&self.v, self.dt, (self.tokens * self.kvh * self.d) as usize)?;
        let o = support::download_f64(&self.o_ref, self.dt, self.n_out())?;
        // every (token, head) pair at small sizes, an even sample (with both ends) otherwise
        let rows = sample_indices(self.tokens as usize * h, 2048).into_iter().map(|pair| {
            let (t, hh) = (pair / h, pair % h);
            let b =
                (0..self.lens.len()).find(|&bb| (self.cu[bb] as usize) <= t && t < self.cu[bb + 1] as usize).unwrap();
            let tok0 = self.cu[b] as usize;
            let kv = hh / (h / kvh);
            let qo = (t * h + hh) * d;
            let r =
                attend_f64(&q[qo..qo + d], &k, &v, t - tok0 + 1, d, self.scale as f64, |j| ((tok0 + j) * kvh + kv) * d);
            (r, &o[qo..qo + d])
        });
        Ok(Some(max_rel_diff(rows)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_geometry() {
        let p = [("HEAD_DIM", 128), ("BLOCK_M", 128), ("BLOCK_N", 64), ("NUM_WARPS", 8), ("STAGES", 2)];
        let l =
            MmaPrefillLaunch::new(&Tunables::new("flash_mma", p.iter().map(|(k, v)| (k.to_string(), *v)).collect()))
                .unwrap();
        // Values of the launch before the launcher existed: (H, ⌈S/BLOCK_M⌉, B), 32·warps,
        // (BLOCK_M + 2·STAGES·BLOCK_N)·D·elem.
        let g = l.geometry(32, 3, 513, DType::BF16).unwrap();
        assert_eq!(g, Geometry { grid: (32, 5, 3), block: (256, 1, 1), smem: (128 + 2 * 2 * 64) * 128 * 2 });
        assert!(l.geometry(32, 70_000, 1, DType::BF16).is_err());
        assert!(MmaPrefillLaunch::new(&Tunables::new("flash_wgmma", Params::new())).is_err());
    }

    fn shape(s: &str) -> Shape {
        Shape::parse(s, PREFILL.shape_dims()).unwrap()
    }

    #[test]
    fn counts() {
        let s = shape("1x4096x32x8x128");
        assert_eq!(PREFILL.flops(&s), 4.0 * 32.0 * 4096.0 * 4096.0 * 128.0 / 2.0);
        assert_eq!(PREFILL.min_bytes(&s, DType::BF16), 4096.0 * (64.0 + 16.0) * 128.0 * 2.0);
        let s = shape("2x100x4x2x64");
        assert_eq!(PREFILL.flops(&s), 2.0 * 4.0 * 4.0 * 64.0 * 100.0 * 100.0 / 2.0);
        // ragged: lengths 100, 1, 50
        let s = shape("3x100x4x2x64");
        let want = 4.0 * 4.0 * 64.0 * (100.0f64 * 100.0 + 1.0 + 2500.0) / 2.0;
        assert_eq!(PREFILL_VARLEN.flops(&s), want);
        assert_eq!(PREFILL_VARLEN.min_bytes(&s, DType::F16), 151.0 * 12.0 * 64.0 * 2.0);
    }

    #[test]
    fn validation() {
        assert!(PREFILL.validate(&shape("1x4096x32x8x128"), DType::BF16).is_ok());
        assert!(PREFILL.validate(&shape("1x64x32x8x64"), DType::F16).is_ok());
        assert!(PREFILL.validate(&shape("1x64x32x8x96"), DType::BF16).is_err());
        assert!(PREFILL.validate(&shape("1x64x32x6x128"), DType::BF16).is_err());
        assert!(PREFILL.validate(&shape("1x64x32x8x128"), DType::F32).is_err());
        assert!(PREFILL.entries("flash_mma").is_ok() && PREFILL.entries("nope").is_err());
        assert_eq!(PREFILL_VARLEN.entries("flash_wgmma").unwrap(), ["attn_prefill_wgmma"]);
        for s in PREFILL.selftest_shapes().iter().chain(PREFILL_VARLEN.selftest_shapes()) {
            PREFILL.validate(&shape(s), DType::BF16).unwrap();
        }
        assert_eq!(PREFILL_VARLEN.name(), "attention_prefill_varlen");
        assert_eq!(prefill_smem_bytes(128, 64, 2, 128, 2), (128 + 256) * 256);
    }
}
