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

use super::attention_common::{attend_f64, lengths, reference_kernel, sample_indices, validate_heads, DECODE_SOURCE};
use super::support;
use super::tunables::{LauncherCache, Tunables};
use super::{ceil_div, DType, Family, Geometry, Problem, Shape};
use crate::gpu::device::{Arg, DevBuf, Gpu, Kernel};
use crate::gpu::util::{Comparison, Util};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;

/// Most KV splits one launch may use (sizes the fp32 workspace).
pub const MAX_SPLITS: i64 = 256;

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

/// Dynamic shared memory of one split block: the K/V ring, or the warps' partial states
/// when those are larger.
pub fn decode_smem_bytes(block_n: i64, warps: i64, stages: i64, d: i64, elem: i64) -> i64 {
    (stages * block_n * d * 2 * elem).max(warps * 16 * (d + 2) * 4)
}

/// Splits used for `requested` (0 = automatic): enough blocks for about two waves of the
/// GPU, no more than the longest cache has tiles, at most MAX_SPLITS.
pub fn choose_splits(requested: i64, blocks_without_splits: i64, max_len: i64, block_n: i64, sm_count: i64) -> i64 {
    if requested > 0 {
        return requested;
    }
    let want = ceil_div(2 * sm_count.max(1), blocks_without_splits.max(1));
    want.clamp(1, ceil_div(max_len.max(1), block_n).clamp(1, MAX_SPLITS))
}

/// Splits for `requested` (0 = automatic) as the sweep measures them: automatic means as
/// many blocks as `blocks_per_sm` resident blocks on every SM hold, rounded down so one wave
/// holds the whole grid (a second, partial wave would double the time), at least 1, no more
/// than the longest cache has tiles, at most MAX_SPLITS.
pub fn choose_splits_per_sm(
    requested: i64,
    blocks_per_sm: i64,
    blocks_without_splits: i64,
    max_len: i64,
    block_n: i64,
    sm_count: i64,
) -> i64 {
    if requested > 0 {
        return requested;
    }
    let want = blocks_per_sm.max(1) * sm_count.max(1) / blocks_without_splits.max(1);
    want.clamp(1, ceil_div(max_len.max(1), block_n).clamp(1, MAX_SPLITS))
}

/// Length (u32 words) of the fused combine's counter buffer: one per (sequence, KV head,
/// 16-head group tile). It must be zero before the first fused launch; launches leave it zero.
pub fn counter_words(batch: i64, h: i64, kvh: i64) -> usize {
    (batch * kvh * ceil_div(h / kvh.max(1), 16)).max(1) as usize
}

/// Device pointers of one decode launch (contract in kernels/attention/decode_splitkv.cu):
/// Q, O `[B, H, D]`, caches `[B, max_seq, KVH, D]`, `lens` int32 `[B]`, the split workspace
/// fp32 `[B, H, splits, D]` and `[B, H, splits, 2]`.
#[derive(Debug, Clone, Copy)]
pub struct DecodeIo {
    pub q: u64,
    pub k: u64,
    pub v: u64,
    pub out: u64,
    pub ws_o: u64,
    pub ws_ml: u64,
    pub lens: u64,
}

/// The integers of one decode launch.
#[derive(Debug, Clone, Copy)]
pub struct DecodeDims {
    pub batch: i64,
    /// Positions per sequence in the caches.
    pub max_seq: i64,
    pub h: i64,
    pub kvh: i64,
    pub d: i64,
    pub scale: f32,
}

/// The launches of splitkv, built once from a variant's tunables: the split kernel (plain
/// or with the fused combine) and the combine kernel. The sweep, the selftest and the model
/// launch through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLaunch {
    pub head_dim: i64,
    block_n: i64,
    warps: i64,
    stages: i64,
    splits: i64,
    blocks_per_sm: i64,
    /// FUSED_COMBINE = 1: the last split block merges (the model launches split + combine).
    pub fused: bool,
}

impl DecodeLaunch {
    pub fn new(t: &Tunables) -> Result<DecodeLaunch> {
        if t.variant() != "splitkv" {
            bail!("the attention decode families have no variant {:?}", t.variant());
        }
        let fused = match t.get("FUSED_COMBINE")? {
            0 => false,
            1 => true,
            v => bail!("FUSED_COMBINE must be 0 or 1, got {v}"),
        };
        Ok(DecodeLaunch {
            head_dim: t.get("HEAD_DIM")?,
            block_n: t.get("BLOCK_N")?,
            warps: t.get("NUM_WARPS")?,
            stages: t.get("STAGES")?,
            splits: t.get("SPLITS")?,
            blocks_per_sm: t.get("BLOCKS_PER_SM")?,
            fused,
        })
    }

    /// Dynamic shared memory of one split block for elements of `elem` bytes.
    pub fn smem_bytes(&self, elem: i64) -> i64 {
        decode_smem_bytes(self.block_n, self.warps, self.stages, self.head_dim, elem)
    }

    /// KV splits for `batch` sequences whose longest cache holds `max_len` positions, as the
    /// sweep measures them (one wave at BLOCKS_PER_SM blocks per SM); may exceed MAX_SPLITS.
    pub fn splits(&self, batch: i64, h: i64, kvh: i64, max_len: i64, sm_count: i64) -> i64 {
        let gtiles = ceil_div(h / kvh, 16);
        choose_splits_per_sm(self.splits, self.blocks_per_sm, batch * kvh * gtiles, max_len, self.block_n, sm_count)
    }

    /// The split kernel's geometry: (splits, KV heads × 16-head tiles, sequences).
    pub fn split_geometry(&self, n: &DecodeDims, splits: i64, dt: DType) -> Geometry {
        let gtiles = ceil_div(n.h / n.kvh, 16);
        Geometry {
            grid: (splits as u32, (n.kvh * gtiles) as u32, n.batch as u32),
            block: ((self.warps * 32) as u32, 1, 1),
            smem: self.smem_bytes(dt.bytes() as i64) as u32,
        }
    }

    /// The combine kernel's geometry: one block of D threads per (head, sequence).
    pub fn combine_geometry(n: &DecodeDims) -> Geometry {
        Geometry { grid: (n.h as u32, n.batch as u32, 1), block: (n.d as u32, 1, 1), smem: 0 }
    }

    fn split_args(io: &DecodeIo, n: &DecodeDims) -> Vec<Arg> {
        vec![
            Arg::Ptr(io.q),
            Arg::Ptr(io.k),
            Arg::Ptr(io.v),
            Arg::Ptr(io.out),
            Arg::Ptr(io.ws_o),
            Arg::Ptr(io.ws_ml),
            Arg::Ptr(io.lens),
            Arg::I32(n.max_seq as i32),
            Arg::I32(n.h as i32),
            Arg::I32(n.kvh as i32),
            Arg::F32(n.scale),
        ]
    }

    fn check(&self, n: &DecodeDims, splits: i64) -> Result<()> {
        if n.d != self.head_dim {
            bail!("splitkv compiled for HEAD_DIM = {} cannot run D = {}", self.head_dim, n.d);
        }
        if splits > MAX_SPLITS {
            bail!("SPLITS = {splits} exceeds the workspace's {MAX_SPLITS}");
        }
        Ok(())
    }

    /// attn_decode_split with `splits` splits, then attn_decode_combine when there are several.
    ///
    /// # Safety
    /// `split` and `combine` are attn_decode_split / attn_decode_combine of a module compiled
    /// with these tunables; Q and O hold batch·H·D elements, the caches
    /// [batch][max_seq][KVH][D] with lens[b] ≤ max_seq, the workspace batch·H·`splits` slots;
    /// all live until the launches ran.
    pub unsafe fn launch(
        &self,
        gpu: &Gpu,
        (split, combine): (&Kernel, &Kernel),
        io: &DecodeIo,
        n: &DecodeDims,
        splits: i64,
        dt: DType,
    ) -> Result<()> {
        self.check(n, splits)?;
        let g = self.split_geometry(n, splits, dt);
        // SAFETY: the caller's contract; the arguments follow the entry's signature.
        unsafe { gpu.launch(split, g.grid, g.block, g.smem, &Self::split_args(io, n))? };
        if splits > 1 {
            let c = Self::combine_geometry(n);
            let args = [
                Arg::Ptr(io.ws_o),
                Arg::Ptr(io.ws_ml),
                Arg::Ptr(io.out),
                Arg::I32(n.h as i32),
                Arg::I32(splits as i32),
            ];
            // SAFETY: as above; combine reads the `splits` partial states the split kernel wrote.
            unsafe { gpu.launch(combine, c.grid, c.block, c.smem, &args)? };
        }
        Ok(())
    }

    /// attn_decode_split_fused: the split kernel whose last block per head tile merges.
    ///
    /// # Safety
    /// As [`DecodeLaunch::launch`], with `fused` the attn_decode_split_fused entry and
    /// `counters` [`counter_words`] u32 words that are zero (launches leave them zero).
    pub unsafe fn launch_fused(
        &self,
        gpu: &Gpu,
        fused: &Kernel,
        io: &DecodeIo,
        counters: u64,
        n: &DecodeDims,
        splits: i64,
        dt: DType,
    ) -> Result<()> {
        self.check(n, splits)?;
        let g = self.split_geometry(n, splits, dt);
        // Its static flag counts against the 48 KiB a launch may use without opting in.
        if g.smem + fused.static_smem() > 48 * 1024 {
            fused.set_max_dynamic_smem(g.smem)?;
        }
        let mut args = Self::split_args(io, n);
        args.push(Arg::Ptr(counters));
        // SAFETY: the caller's contract; the arguments follow the entry's signature.
        unsafe { gpu.launch(fused, g.grid, g.block, g.smem, &args) }
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
        let (free, _) = gpu.ctx.mem_get_info().unwrap_or((usize::MAX, 0));
        if need > free {
            bail!(
                "attention decode {}: needs {:.1} GiB of GPU memory, {:.1} GiB free",
                s.label(),
                need as f64 / 1073741824.0,
                free as f64 / 1073741824.0
            );
        }
        let lens32: Vec<i32> = lens.iter().map(|&l| l as i32).collect();
        let lens_buf = gpu.alloc(lens32.len() * 4)?;
        lens_buf.upload(&lens32)?;
        let counters = gpu.alloc(counter_words(b, h, kvh) * 4)?;
        zero(gpu, &counters)?;
        Ok(DecodeProblem {
            l_cap,
            h,
            kvh,
            d,
            dt,
            scale: 1.0 / (d as f32).sqrt(),
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

/// Sets a buffer to zero, ordered on the stream.
fn zero(gpu: &Gpu, buf: &DevBuf) -> Result<()> {
    // SAFETY: the buffer holds `bytes` bytes; the memset is ordered on the stream.
    unsafe { cudarc::driver::result::memset_d8_async(buf.ptr, 0, buf.bytes, gpu.stream.cu_stream()) }
        .map_err(|e| anyhow::anyhow!("zeroing the decode counters failed: {e:?}"))
}

/// Sets every byte to 0xFF (NaN in bf16 and fp16), ordered on the stream.
fn poison_bytes(gpu: &Gpu, buf: &DevBuf) -> Result<()> {
    // SAFETY: the buffer holds `bytes` bytes; the memset is ordered on the stream.
    unsafe { cudarc::driver::result::memset_d8_async(buf.ptr, 0xFF, buf.bytes, gpu.stream.cu_stream()) }
        .map_err(|e| anyhow::anyhow!("poisoning the decode output failed: {e:?}"))
}

impl Problem for DecodeProblem {
    fn randomize(&mut self, gpu: &Gpu, util: &Util, seed: u64) -> Result<()> {
        util.fill(gpu, &self.q, self.dt, self.n_out(), seed, 2.0)?;
        util.fill(gpu, &self.kc, self.dt, self.n_cache(), seed ^ 0xdec0_0001, 1.0)?;
        util.fill(gpu, &self.vc, self.dt, self.n_cache(), seed ^ 0xdec0_0002, 1.0)?;
        // SAFETY: one block per (sequence, head) over buffers `new` allocated for this shape;
        // the arguments are attn_ref_decode's (kernels/attention/reference.cu).
        unsafe {
            gpu.launch(
                &self.reference,
                (self.batch() as u32, self.h as u32, 1),
                (128, 1, 1),
                0,
                &[
                    self.q.arg(),
                    self.kc.arg(),
                    self.vc.arg(),
                    self.o_ref.arg(),
                    self.lens_buf.arg(),
                    Arg::I32(self.l_cap as i32),
                    Arg::I32(self.h as i32),
                    Arg::I32(self.kvh as i32),
                    Arg::I32(self.d as i32),
                    Arg::F32(self.scale),
                ],
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
        zero(gpu, &self.counters)
    }

    fn run(
        &mut self,
        gpu: &Gpu,
        variant: &str,
        kernels: &BTreeMap<String, Kernel>,
        p: &BTreeMap<String, i64>,
    ) -> Result<()> {
        let l = *self
            .launcher
            .get(variant, p, |v, p| DecodeLaunch::new(&Tunables::from_template(v, DECODE_SOURCE, DType::BF16, p)))?;
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
                poison_bytes(gpu, &self.o)?;
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
        let (mut max_diff, mut max_ref) = (0.0f64, 0.0f64);
        for pair in sample_indices(self.batch() as usize * h, 256) {
            let (b, hh) = (pair / h, pair % h);
            let kv = hh / (h / kvh);
            let qo = pair * d;
            let r = attend_f64(&q[qo..qo + d], &k, &v, self.lens[b] as usize, d, self.scale as f64, |j| {
                ((b * l_cap + j) * kvh + kv) * d
            });
            for (x, y) in r.iter().zip(&o[qo..qo + d]) {
                max_diff = max_diff.max((x - y).abs());
                max_ref = max_ref.max(x.abs());
            }
        }
        Ok(Some(max_diff / max_ref.max(1e-30)))
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
    fn splits_and_smem() {
        // B=1, 8 KV heads on 132 SMs: 33 splits, within the 128 tiles of 8192 keys
        assert_eq!(choose_splits(0, 8, 8192, 64, 132), 33);
        assert_eq!(choose_splits(0, 8, 100, 64, 132), 2); // no more splits than tiles
        assert_eq!(choose_splits(0, 8, 1, 64, 132), 1);
        assert_eq!(choose_splits(0, 1024, 8192, 64, 132), 1);
        assert_eq!(choose_splits(16, 8, 8192, 64, 132), 16);
        // per-SM rule: whole waves only (B=8 x 8 KV heads at 2 per SM: 4 splits, 256 <= 264 slots)
        assert_eq!(choose_splits_per_sm(0, 2, 8, 8192, 32, 132), 33);
        assert_eq!(choose_splits_per_sm(0, 2, 64, 4096, 32, 132), 4);
        assert_eq!(choose_splits_per_sm(0, 1, 64, 4096, 32, 132), 2);
        assert_eq!(choose_splits_per_sm(0, 8, 8, 8192, 32, 132), 132);
        assert_eq!(choose_splits_per_sm(0, 8, 8, 8192, 16, 132), 132);
        assert_eq!(choose_splits_per_sm(0, 1, 1024, 8192, 64, 132), 1);
        assert_eq!(choose_splits_per_sm(0, 4, 8, 100, 64, 132), 2); // no more splits than tiles
        assert_eq!(choose_splits_per_sm(200, 4, 8, 100, 64, 132), 200);
        assert_eq!(counter_words(8, 32, 8), 64);
        assert_eq!(counter_words(2, 40, 1), 6); // G = 40: three 16-head tiles
        assert_eq!(decode_smem_bytes(64, 4, 3, 128, 2), 3 * 64 * 128 * 4);
        // the ring is always at least twice the merge area for valid tunables (BLOCK_N >= 16·warps)
        assert_eq!(decode_smem_bytes(16, 1, 2, 128, 2), 2 * 16 * 128 * 4);
    }

    #[test]
    fn launch_geometry() {
        let p = [("HEAD_DIM", 128), ("BLOCK_N", 64), ("NUM_WARPS", 4), ("STAGES", 3), ("SPLITS", 0)];
        let mut t = Tunables::new("splitkv", p.iter().map(|(k, v)| (k.to_string(), *v)).collect());
        assert!(DecodeLaunch::new(&t).unwrap_err().to_string().contains("variant splitkv has no tunable"));
        t.set("BLOCKS_PER_SM", 2);
        t.set("FUSED_COMBINE", 0);
        let l = DecodeLaunch::new(&t).unwrap();
        // B = 8, L = 4096, H = 32, KVH = 8 on 132 SMs: 8·8 blocks without splits, 4 splits.
        let n = DecodeDims { batch: 8, max_seq: 4096, h: 32, kvh: 8, d: 128, scale: 0.1 };
        let splits = l.splits(8, 32, 8, 4096, 132);
        assert_eq!(splits, 4);
        // Values of the launch before the launcher existed: (splits, KVH·⌈G/16⌉, B), 32·warps,
        // max(stages·BLOCK_N·D·2·elem, warps·16·(D+2)·4).
        let g = l.split_geometry(&n, splits, DType::BF16);
        assert_eq!(g, Geometry { grid: (4, 8, 8), block: (128, 1, 1), smem: 3 * 64 * 128 * 4 });
        let g = l.split_geometry(&DecodeDims { h: 40, kvh: 1, ..n }, 2, DType::BF16);
        assert_eq!(g.grid, (2, 3, 8));
        assert_eq!(DecodeLaunch::combine_geometry(&n), Geometry { grid: (32, 8, 1), block: (128, 1, 1), smem: 0 });
        t.set("FUSED_COMBINE", 2);
        assert!(DecodeLaunch::new(&t).is_err());
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
