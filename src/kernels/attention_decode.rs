//! Decode attention: one new query per sequence against its KV cache, split-KV
//! ("flash-decoding"), grouped-query aware (each KV head's cache is read once for all of its
//! query heads). The splits are merged by a second kernel, or (`FUSED_COMBINE = 1`) by the
//! last split block of each KV head, found with a counter that the kernel leaves at zero.
//!
//! Shape `BxLxHxKVHxD`: B sequences, cache capacity L tokens, H query heads, KVH KV heads,
//! head dim D. Layout (kernels/attention/decode_splitkv.cu): Q, O `[B, H, D]`, caches
//! `[B, L, KVH, D]`, `lens[b]` valid tokens of sequence b. `attention_decode` fills every
//! cache (lens = L); `attention_decode_varlen` uses the ragged lengths of [`lengths`].
//!
//! FLOPs: 4·H·D per cached token (Q·K and P·V). Minimum bytes: the valid K and V rows once,
//! plus Q read and O written. Reference: `attn_ref_decode` (fp32, two-pass softmax), checked
//! against f64 on the CPU at small sizes. Peer: PyTorch SDPA via the peer script.

use super::attention_common::{
    attend_f64, launch_reference, lengths, max_rel_diff, reference_kernel, sample_indices, softmax_scale, upload_ints,
    validate_heads, DECODE_SOURCE,
};
use super::support;
use super::tunables::LauncherCache;
use super::{ceil_div, DType, Family, Kernels, Params, Problem, Shape};
use crate::gpu::device::{DevBuf, Gpu, Kernel};
use crate::gpu::util::{Comparison, Util};
use anyhow::{bail, Context, Result};

mod launch;
pub use launch::{
    choose_splits, choose_splits_per_sm, counter_words, decode_smem_bytes, DecodeDims, DecodeIo, DecodeLaunch,
    MAX_SPLITS,
};

pub struct AttentionDecode {
    pub ragged: bool,
}

pub static DECODE: AttentionDecode = AttentionDecode { ragged: false };
pub static DECODE_VARLEN: AttentionDecode = AttentionDecode { ragged: true };

impl AttentionDecode {
    fn lens(&self, s: &Shape) -> Vec<i64> {
        lengths(s.get("B"), s.get("L"), self.ragged)
    }
}

impl Family for AttentionDecode {
    fn name(&self) -> &'static str {
        if self.ragged {
            "attention_decode_varlen"
        } else {
            "attention_decode"
        }
    }
    fn shape_dims(&self) -> &'static [&'static str] {
        &["B", "L", "H", "KVH", "D"]
    }
    fn flops(&self, s: &Shape) -> f64 {
        let tokens: i64 = self.lens(s).iter().sum();
        4.0 * s.get("H") as f64 * s.get("D") as f64 * tokens as f64
    }
    fn min_bytes(&self, s: &Shape, dt: DType) -> f64 {
        let tokens: i64 = self.lens(s).iter().sum();
        let (b, h, kvh, d) = (s.get("B") as f64, s.get("H") as f64, s.get("KVH") as f64, s.get("D") as f64);
        (2.0 * tokens as f64 * kvh * d + 2.0 * b * h * d) * dt.bytes() as f64
    }
    fn entries(&self, variant: &str) -> Result<&'static [&'static str]> {
        match variant {
            "splitkv" => Ok(&["attn_decode_split", "attn_decode_combine", "attn_decode_split_fused"]),
            other => bail!("the {} family has no variant {other:?} (known: splitkv)", self.name()),
        }
    }
    fn validate(&self, s: &Shape, dt: DType) -> Result<()> {
        validate_heads(self.name(), s, dt)?;
        let g = s.get("H") / s.get("KVH");
        if s.get("KVH") * ceil_div(g, 16) > 65_535 || s.get("B") > 65_535 {
            bail!("{} {}: too many heads or sequences for one launch's grid", self.name(), s.label());
        }
        if s.get("B") * s.get("L") * s.get("KVH") * s.get("D") > (1i64 << 40) {
            bail!("{} {}: cache too large", self.name(), s.label());
        }
        Ok(())
    }
    fn peer(&self) -> &'static str {
        "torch"
    }
    fn selftest_shapes(&self) -> &'static [&'static str] {
        if self.ragged {
            &["6x1000x8x2x128", "4x77x32x8x64", "7x300x20x4x128"]
        } else {
            &["1x1x4x1x128", "1x1000x8x2x128", "3x17x4x4x64", "1x300x32x1x128", "2x129x20x4x64", "2x4100x32x8x128"]
        }
    }
    fn problem(&self, gpu: &Gpu, s: &Shape, dt: DType) -> Result<Box<dyn Problem>> {
        self.validate(s, dt)?;
        Ok(Box::new(DecodeProblem::new(gpu, s, dt, self.lens(s))?))
    }
}

/// Inputs, reference, output and split workspace of one decode shape.
pub struct DecodeProblem {
    pub lens: Vec<i64>,
    pub l_cap: i64,
    pub h: i64,
    pub kvh: i64,
    pub d: i64,
    pub dt: DType,
    pub scale: f32,
    pub q: DevBuf,
    pub kc: DevBuf,
    pub vc: DevBuf,
    pub o: DevBuf,
    pub o_ref: DevBuf,
    pub lens_buf: DevBuf,
    ws_o: DevBuf,
    ws_ml: DevBuf,
    /// The fused combine's arrival counters (zero between launches).
    counters: DevBuf,
    /// Set by `randomize`: the next fused run launches twice (see `run`).
    verify_pending: bool,
    sm_count: i64,
    reference: Kernel,
    launcher: LauncherCache<DecodeLaunch>,
}

impl DecodeProblem {
    pub fn new(gpu: &Gpu, s: &Shape, dt: DType, lens: Vec<i64>) -> Result<DecodeProblem> {
        let (b, l_cap, h, kvh, d) = (s.get("B"), s.get("L"), s.get("H"), s.get("KVH"), s.get("D"));
        let e = dt.bytes();
        let nq = (b * h * d) as usize;
        let ncache = (b * l_cap * kvh * d) as usize;
        let nws = (b * h * MAX_SPLITS) as usize;
        let need = (3 * nq + 2 * ncache) * e + nws * (d as usize + 2) * 4;
        support::ensure_fits(gpu, "attention decode", s, need)?;
        let lens_buf = upload_ints(gpu, &lens.iter().map(|&l| l as i32).collect::<Vec<_>>())?;
        let counters = gpu.alloc(counter_words(b, h, kvh) * 4)?;
        zero_counters(gpu, &counters)?;
        Ok(DecodeProblem {
            l_cap,
            h,
            kvh,
            d,
            dt,
            scale: softmax_scale(d),
            q: gpu.alloc(nq * e)?,
            kc: gpu.alloc(ncache * e)?,
            vc: gpu.alloc(ncache * e)?,
            o: gpu.alloc(nq * e)?,
            o_ref: gpu.alloc(nq * e)?,
            lens_buf,
            ws_o: gpu.alloc(nws * d as usize * 4)?,
            ws_ml: gpu.alloc(nws * 2 * 4)?,
            counters,
            verify_pending: false,
            sm_count: gpu.props.sm_count as i64,
            reference: reference_kernel(gpu, dt, "attn_ref_decode")?,
            launcher: LauncherCache::default(),
            lens,
        })
    }

    fn batch(&self) -> i64 {
        self.lens.len() as i64
    }
    fn n_out(&self) -> usize {
        (self.batch() * self.h * self.d) as usize
    }
    fn n_cache(&self) -> usize {
        (self.batch() * self.l_cap * self.kvh * self.d) as usize
    }
}

/// Sets the fused combine's counters to zero (their contract between launches).
fn zero_counters(gpu: &Gpu, buf: &DevBuf) -> Result<()> {
    support::fill_bytes(gpu, buf, 0).context("zeroing the decode counters")
}

impl Problem for DecodeProblem {
    fn randomize(&mut self, gpu: &Gpu, util: &Util, seed: u64) -> Result<()> {
        util.fill(gpu, &self.q, self.dt, self.n_out(), seed, 2.0)?;
        util.fill(gpu, &self.kc, self.dt, self.n_cache(), seed ^ 0xdec0_0001, 1.0)?;
        util.fill(gpu, &self.vc, self.dt, self.n_cache(), seed ^ 0xdec0_0002, 1.0)?;
        let bufs = [&self.q, &self.kc, &self.vc, &self.o_ref, &self.lens_buf];
        // SAFETY: attn_ref_decode over buffers `new` allocated for this shape, one row per
        // sequence.
        unsafe {
            launch_reference(
                gpu,
                &self.reference,
                self.batch(),
                bufs,
                self.l_cap,
                self.h,
                self.kvh,
                self.d,
                self.scale,
            )?
        };
        self.verify_pending = true;
        gpu.synchronize()
    }

    fn poison(&mut self, gpu: &Gpu, util: &Util) -> Result<()> {
        util.poison(gpu, &self.o)?;
        util.poison(gpu, &self.ws_o)?;
        util.poison(gpu, &self.ws_ml)?;
        // Not poison: the counters' contract is zero between launches. Zeroing them here keeps
        // a wrong candidate's leftovers from failing the next one.
        zero_counters(gpu, &self.counters)
    }

    fn run(&mut self, gpu: &Gpu, variant: &str, kernels: &Kernels, p: &Params) -> Result<()> {
        let l = *self.launcher.from_template(variant, p, DECODE_SOURCE, DType::BF16, DecodeLaunch::new)?;
        let max_len = *self.lens.iter().max().unwrap_or(&0);
        let splits = l.splits(self.batch(), self.h, self.kvh, max_len, self.sm_count);
        let io = DecodeIo {
            q: self.q.ptr,
            k: self.kc.ptr,
            v: self.vc.ptr,
            out: self.o.ptr,
            ws_o: self.ws_o.ptr,
            ws_ml: self.ws_ml.ptr,
            lens: self.lens_buf.ptr,
        };
        let n = DecodeDims {
            batch: self.batch(),
            max_seq: self.l_cap,
            h: self.h,
            kvh: self.kvh,
            d: self.d,
            scale: self.scale,
        };
        // SAFETY (both paths): the buffers were allocated by `new` for this shape (caches
        // [B][L][KVH][D] with lens ≤ L, workspace B·H·MAX_SPLITS slots, counters
        // counter_words(B, H, KVH) words, zeroed by `poison`); the kernels come from the
        // candidate's module, compiled with `p`.
        if l.fused {
            let k = kernels.get("attn_decode_split_fused").context("module lacks attn_decode_split_fused")?;
            if std::mem::take(&mut self.verify_pending) && splits > 1 {
                // Verification runs check the second of two launches, with the output
                // poisoned between them: a launch that left a counter non-zero would leave
                // rows unmerged (NaN) in the next one. Timed runs launch back to back as well.
                unsafe { l.launch_fused(gpu, k, &io, self.counters.ptr, &n, splits, self.dt)? };
                support::fill_bytes(gpu, &self.o, 0xFF).context("poisoning the decode output")?;
            }
            return unsafe { l.launch_fused(gpu, k, &io, self.counters.ptr, &n, splits, self.dt) };
        }
        let split = kernels.get("attn_decode_split").context("module lacks attn_decode_split")?;
        let combine = kernels.get("attn_decode_combine").context("module lacks attn_decode_combine")?;
        unsafe { l.launch(gpu, (split, combine), &io, &n, splits, self.dt) }
    }

    fn check(&mut self, gpu: &Gpu, util: &Util) -> Result<Comparison> {
        util.compare(gpu, &self.o, &self.o_ref, self.dt, self.n_out())
    }

    fn run_peer(&mut self, _gpu: &Gpu) -> Result<Option<()>> {
        Ok(None) // PyTorch SDPA figures come from the peer script (scripts/), not in-process.
    }

    fn reference_vs_cpu(&mut self, gpu: &Gpu) -> Result<Option<f64>> {
        gpu.synchronize()?;
        let (h, kvh, d, l_cap) = (self.h as usize, self.kvh as usize, self.d as usize, self.l_cap as usize);
        let q = support::download_f64(&self.q, self.dt, self.n_out())?;
        let k = support::download_f64(&self.kc, self.dt, self.n_cache())?;
        let v = support::download_f64(&self.vc, self.dt, self.n_cache())?;
        let o = support::download_f64(&self.o_ref, self.dt, self.n_out())?;
        let rows = sample_indices(self.batch() as usize * h, 256).into_iter().map(|pair| {
            let (b, hh) = (pair / h, pair % h);
            let kv = hh / (h / kvh);
            let qo = pair * d;
            let r = attend_f64(&q[qo..qo + d], &k, &v, self.lens[b] as usize, d, self.scale as f64, |j| {
                ((b * l_cap + j) * kvh + kv) * d
            });
            (r, &o[qo..qo + d])
        });
        Ok(Some(max_rel_diff(rows)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(s: &str) -> Shape {
        Shape::parse(s, DECODE.shape_dims()).unwrap()
    }

    #[test]
    fn counts() {
        let s = shape("1x8192x32x8x128");
        assert_eq!(DECODE.flops(&s), 4.0 * 32.0 * 128.0 * 8192.0);
        assert_eq!(DECODE.min_bytes(&s, DType::BF16), (2.0 * 8192.0 * 8.0 * 128.0 + 2.0 * 32.0 * 128.0) * 2.0);
        // ragged: 100, 1, 50
        let s = shape("3x100x8x2x64");
        assert_eq!(DECODE_VARLEN.flops(&s), 4.0 * 8.0 * 64.0 * 151.0);
        assert_eq!(DECODE_VARLEN.min_bytes(&s, DType::BF16), (2.0 * 151.0 * 2.0 * 64.0 + 2.0 * 3.0 * 8.0 * 64.0) * 2.0);
    }

    #[test]
    fn validation() {
        assert!(DECODE.validate(&shape("8x4096x32x8x128"), DType::BF16).is_ok());
        assert!(DECODE.validate(&shape("8x4096x32x8x80"), DType::BF16).is_err());
        assert!(DECODE.validate(&shape("8x4096x32x5x128"), DType::BF16).is_err());
        assert!(DECODE.entries("splitkv").unwrap().len() == 3 && DECODE.entries("x").is_err());
        for s in DECODE.selftest_shapes().iter().chain(DECODE_VARLEN.selftest_shapes()) {
            DECODE.validate(&shape(s), DType::BF16).unwrap();
        }
    }
}
