//! The launch contract of splitkv decode attention (kernels/attention/decode_splitkv.cu):
//! the split count, shared memory, grids and arguments, built once from a variant's
//! tunables. The sweep's problem, the selftest and the Llama model all launch through
//! [`DecodeLaunch`], so the model runs a winner exactly as it was measured.

use crate::gpu::device::{Arg, Gpu, Kernel};
use crate::kernels::tunables::Tunables;
use crate::kernels::{ceil_div, DType, Geometry};
use anyhow::{bail, Result};

/// Most KV splits one launch may use (sizes the fp32 workspace).
pub const MAX_SPLITS: i64 = 256;

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

    /// The arguments attn_decode_split and attn_decode_split_fused share (the fused one takes
    /// its counters after them).
    fn split_args(io: &DecodeIo, n: &DecodeDims) -> Vec<Arg> {
        let mut args = Arg::ptrs([io.q, io.k, io.v, io.out, io.ws_o, io.ws_ml, io.lens]);
        args.extend(Arg::i32s([n.max_seq, n.h, n.kvh]));
        args.push(Arg::F32(n.scale));
        args
    }

    /// The split kernel's geometry, once the head dim and split count are checked against
    /// what the module was compiled for and the workspace holds.
    fn checked_split_geometry(&self, n: &DecodeDims, splits: i64, dt: DType) -> Result<Geometry> {
        if n.d != self.head_dim {
            bail!("splitkv compiled for HEAD_DIM = {} cannot run D = {}", self.head_dim, n.d);
        }
        if splits > MAX_SPLITS {
            bail!("SPLITS = {splits} exceeds the workspace's {MAX_SPLITS}");
        }
        Ok(self.split_geometry(n, splits, dt))
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
        let g = self.checked_split_geometry(n, splits, dt)?;
        // SAFETY: the caller's contract; the arguments follow the entry's signature.
        unsafe { gpu.launch(split, g.grid, g.block, g.smem, &Self::split_args(io, n))? };
        if splits > 1 {
            let c = Self::combine_geometry(n);
            let mut args = Arg::ptrs([io.ws_o, io.ws_ml, io.out]);
            args.extend(Arg::i32s([n.h, splits]));
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
        let g = self.checked_split_geometry(n, splits, dt)?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn split_argument_list() {
        // attn_decode_split's signature: Q, K, V, O, ws_o, ws_ml, lens, max_seq, H, KVH, scale.
        let io = DecodeIo { q: 1, k: 2, v: 3, out: 4, ws_o: 5, ws_ml: 6, lens: 7 };
        let n = DecodeDims { batch: 8, max_seq: 4096, h: 32, kvh: 8, d: 128, scale: 0.5 };
        let want = "[Ptr(1), Ptr(2), Ptr(3), Ptr(4), Ptr(5), Ptr(6), Ptr(7), I32(4096), I32(32), I32(8), F32(0.5)]";
        assert_eq!(format!("{:?}", DecodeLaunch::split_args(&io, &n)), want);
    }
}
