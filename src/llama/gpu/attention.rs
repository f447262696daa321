//! The model's side of the tuned attention families: which steps fit which family's contract,
//! the per-step integers those families read (decode `lens`, prefill `cu_seqlens`), and their
//! launches.
//!
//! * `attention_decode` (kernels/attention/decode_splitkv.cu, split-KV + combine) takes one
//!   query per sequence, Q `[B, H, D]`, against the model's own cache layout
//!   `[B][max_seq][KVH][D]` with `lens[b]` valid positions: it fits every decode step whose
//!   token t belongs to sequence t (what `Step::decode` builds).
//! * `attention_prefill` (kernels/attention/prefill.cu, flash_mma; on sm_90a also
//!   kernels/attention/prefill_wgmma.cu, flash_wgmma, which reads them through TMA tensor maps
//!   built per step) takes Q, K, V packed along
//!   the tokens with `cu_seqlens`, each sequence attending causally to itself only. It has no
//!   cached prefix, so it fits a prefill whose sequences all start at position 0 (the
//!   model's batched prefill); a step continuing a cached prefix takes the plain kernel.
//!
//! Both take contiguous Q (and the prefill contiguous K, V), which the fused q|k|v rows are
//! not: `kv_append_pack` (kernels/llama/ops.cu) copies them out while it appends to the cache.

use super::tuned_op::TunedLauncher;
use crate::gpu::device::{Gpu, Kernel};
use crate::kernels::attention_common::{softmax_scale, HEAD_DIMS};
use crate::kernels::attention_decode::{DecodeDims, DecodeIo, DecodeLaunch, MAX_SPLITS};
use crate::kernels::attention_prefill::{prefill_grid, wgmma, MmaPrefillLaunch};
use crate::kernels::tunables::Tunables;
use crate::kernels::DType;
use anyhow::{bail, Result};
use std::cell::RefCell;

/// How a step's tokens are laid out, as far as attention cares.
#[derive(Debug, Clone, PartialEq)]
pub enum StepLayout {
    /// Token t is the one new token of sequence t: the decode family fits.
    Decode { max_len: usize },
    /// Every sequence's tokens are consecutive in the step at positions 0, 1, 2, ... (no cached
    /// prefix): the varlen prefill family fits, `seqs` runs of at most `max_len` tokens.
    FreshPrefill { seqs: usize, max_len: usize },
    /// Anything else (a prefill continuing a cached prefix, interleaved tokens).
    Other,
}

impl StepLayout {
    /// The layout of a step's (sequence, position) tags and the integers its family reads:
    /// `lens` (position + 1 per token) for `Decode`, `cu_seqlens` (runs + 1) for
    /// `FreshPrefill`, nothing for `Other`.
    pub fn of(seq: &[usize], pos: &[usize]) -> (StepLayout, Vec<i32>) {
        if seq.is_empty() || seq.len() != pos.len() {
            return (StepLayout::Other, vec![]);
        }
        if seq.iter().enumerate().all(|(t, &s)| s == t) {
            let lens: Vec<i32> = pos.iter().map(|&p| p as i32 + 1).collect();
            let max_len = pos.iter().max().map_or(0, |p| p + 1);
            return (StepLayout::Decode { max_len }, lens);
        }
        let mut cu = vec![0i32];
        let mut seen = std::collections::BTreeSet::new();
        let mut max_len = 0;
        for t in 0..seq.len() {
            let starts_run = t == 0 || seq[t] != seq[t - 1];
            if starts_run {
                if pos[t] != 0 || !seen.insert(seq[t]) {
                    return (StepLayout::Other, vec![]);
                }
                if t > 0 {
                    cu.push(t as i32);
                }
            } else if pos[t] != pos[t - 1] + 1 {
                return (StepLayout::Other, vec![]);
            }
            max_len = max_len.max(pos[t] + 1);
        }
        cu.push(seq.len() as i32);
        (StepLayout::FreshPrefill { seqs: cu.len() - 1, max_len }, cu)
    }

    pub fn is_decode(&self) -> bool {
        matches!(self, StepLayout::Decode { .. })
    }
}

/// Whether the attention families can run a model of this head dimension and grouping.
pub fn families_fit(n_heads: usize, n_kv_heads: usize, head_dim: usize) -> Result<()> {
    if !HEAD_DIMS.contains(&(head_dim as i64)) {
        bail!("head dim {head_dim} is not one the attention families take ({HEAD_DIMS:?})");
    }
    if n_kv_heads == 0 || !n_heads.is_multiple_of(n_kv_heads) {
        bail!("{n_heads} query heads are not a multiple of {n_kv_heads} KV heads");
    }
    Ok(())
}

/// Buffers of one attention launch (device pointers).
#[derive(Debug, Clone, Copy)]
pub struct AttnIo {
    /// Contiguous Q [T, H, D] (kv_append_pack's q_out).
    pub q: u64,
    /// Prefill: packed K, V [T, KVH, D]. Decode: the layer's caches [B][max_seq][KVH][D].
    pub k: u64,
    pub v: u64,
    /// O [T, H, D].
    pub out: u64,
    /// Decode: lens [T]; prefill: cu_seqlens [seqs + 1] (int32).
    pub ints: u64,
    /// Decode split workspace: fp32 [T, H, splits, D] and [T, H, splits, 2].
    pub ws_o: u64,
    pub ws_ml: u64,
}

/// Shapes of the model's attention.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub h: i64,
    pub kvh: i64,
    pub d: i64,
    /// Positions per sequence in the cache.
    pub max_seq: i64,
}

impl Heads {
    fn scale(&self) -> f32 {
        softmax_scale(self.d)
    }
}

/// Bytes of the decode split workspace (ws_o, ws_ml) for `batch` sequences.
pub fn decode_workspace_bytes(batch: usize, h: usize, d: usize) -> (usize, usize) {
    let slots = batch * h * MAX_SPLITS as usize;
    (slots * d * 4, slots * 2 * 4)
}

/// The decode family compiled for the model: its split and combine kernels and the family's
/// launcher (the geometry is computed there, as for the sweep).
pub struct DecodeKernels {
    split: Kernel,
    combine: Kernel,
    launch: DecodeLaunch,
    sm_count: i64,
}

impl TunedLauncher for DecodeKernels {}

/// The model launches split + combine (the family's FUSED_COMBINE = 0 path, same values
/// bit for bit): the fused path's counters would be one more buffer for ~0.3–1 µs.
impl DecodeKernels {
    pub fn new(gpu: &Gpu, split: Kernel, combine: Kernel, t: &Tunables) -> Result<DecodeKernels> {
        Ok(DecodeKernels { split, combine, launch: DecodeLaunch::new(t)?, sm_count: gpu.props.sm_count as i64 })
    }

    /// Dynamic shared memory one block of the config `t` needs in bf16, as the model runs it.
    pub fn smem_bytes(t: &Tunables) -> Result<i64> {
        Ok(DecodeLaunch::new(t)?.smem_bytes(2))
    }

    /// KV splits for `batch` sequences whose longest cache holds `max_len` positions: the
    /// count the sweep measured with, at most MAX_SPLITS (the model's workspace). The only
    /// launch parameter of a decode step that changes from step to step.
    pub fn splits(&self, hd: Heads, batch: usize, max_len: usize) -> i64 {
        self.launch.splits(batch as i64, hd.h, hd.kvh, max_len as i64, self.sm_count).min(MAX_SPLITS)
    }

    /// One query per sequence for `batch` sequences whose longest cache holds `max_len` positions.
    pub fn launch(&self, gpu: &Gpu, io: &AttnIo, hd: Heads, batch: usize, max_len: usize) -> Result<()> {
        if hd.d != self.launch.head_dim {
            bail!("attention_decode compiled for HEAD_DIM = {}, the model has head dim {}", self.launch.head_dim, hd.d);
        }
        let dio = DecodeIo { q: io.q, k: io.k, v: io.v, out: io.out, ws_o: io.ws_o, ws_ml: io.ws_ml, lens: io.ints };
        let n =
            DecodeDims { batch: batch as i64, max_seq: hd.max_seq, h: hd.h, kvh: hd.kvh, d: hd.d, scale: hd.scale() };
        // SAFETY: pointers are the model's buffers: Q and O hold batch·H·D bf16, the caches
        // [batch ≤ B][max_seq][KVH][D] with lens[b] ≤ max_seq (Step::check), the workspace
        // batch·H·MAX_SPLITS slots (decode_workspace_bytes) and splits ≤ MAX_SPLITS; the
        // kernels were compiled with the launcher's tunables (OpKernels::new).
        unsafe {
            self.launch.launch(
                gpu,
                (&self.split, &self.combine),
                &dio,
                &n,
                self.splits(hd, batch, max_len),
                DType::BF16,
            )
        }
    }
}

/// The prefill family compiled for the model, per variant, with the family's launcher.
pub enum PrefillKernels {
    /// flash_mma (kernels/attention/prefill.cu), plain pointer arguments.
    Mma { kernel: Kernel, launch: MmaPrefillLaunch },
    /// flash_wgmma (kernels/attention/prefill_wgmma.cu, sm_90a): Q, K, V through TMA tensor
    /// maps, which cover this step's tokens. Every layer of a step reads the same packed
    /// buffers, so the maps are kept and built again only when the buffers or T change.
    Wgmma { kernel: Kernel, cfg: wgmma::WgmmaConfig, maps: RefCell<Option<(MapKey, wgmma::PrefillMaps)>> },
}

impl TunedLauncher for PrefillKernels {}

/// What flash_wgmma's tensor maps depend on: the Q, K, V buffers, T, H, KVH, D.
type MapKey = (u64, u64, u64, i64, i64, i64, i64);

impl PrefillKernels {
    pub fn new(kernel: Kernel, t: &Tunables) -> Result<PrefillKernels> {
        if t.variant() == "flash_wgmma" {
            return Ok(PrefillKernels::Wgmma { kernel, cfg: wgmma::WgmmaConfig::new(t)?, maps: RefCell::new(None) });
        }
        Ok(PrefillKernels::Mma { kernel, launch: MmaPrefillLaunch::new(t)? })
    }

    /// Dynamic shared memory one block of the config `t` needs in bf16 at head dim `d`, as
    /// the model runs it.
    pub fn smem_bytes(t: &Tunables, d: i64) -> Result<i64> {
        if t.variant() == "flash_wgmma" {
            let c = wgmma::WgmmaConfig::new(t)?;
            Ok(wgmma::wgmma_smem_bytes(c.block_m(), c.block_n, c.stages, d, 2))
        } else {
            Ok(MmaPrefillLaunch::new(t)?.smem_bytes(2))
        }
    }

    fn head_dim(&self) -> i64 {
        match self {
            PrefillKernels::Mma { launch, .. } => launch.head_dim,
            PrefillKernels::Wgmma { cfg, .. } => cfg.head_dim,
        }
    }

    /// `seqs` sequences packed by cu_seqlens (io.ints) into `tokens` rows, the longest
    /// `max_len` tokens.
    pub fn launch(&self, gpu: &Gpu, io: &AttnIo, hd: Heads, tokens: usize, seqs: usize, max_len: usize) -> Result<()> {
        if hd.d != self.head_dim() {
            bail!("attention_prefill compiled for HEAD_DIM = {}, the model has head dim {}", self.head_dim(), hd.d);
        }
        if max_len == 0 {
            return Ok(());
        }
        let pio = wgmma::PrefillIo {
            q: io.q,
            k: io.k,
            v: io.v,
            o: io.out,
            cu_seqlens: io.ints,
            tokens: tokens as i64,
            h: hd.h,
            kvh: hd.kvh,
            d: hd.d,
        };
        match self {
            PrefillKernels::Mma { kernel, launch } => {
                // SAFETY: Q/O hold T·H·D bf16 and K/V T·KVH·D (packed by kv_append_pack for
                // this step), cu_seqlens has seqs + 1 entries ending at T; the kernel was
                // compiled with the launcher's tunables (OpKernels::new).
                unsafe { launch.launch(gpu, kernel, &pio, seqs as i64, max_len as i64, hd.scale(), DType::BF16) }
            }
            PrefillKernels::Wgmma { kernel, cfg, maps } => {
                // The grid wgmma::launch will use, checked before the maps are built.
                prefill_grid(hd.h, seqs as i64, max_len as i64, cfg.block_m())?;
                // The maps cover exactly this step's T rows of the packed buffers (rows past T
                // read as zeros: masked keys must be finite), so T is part of the key.
                let key: MapKey = (pio.q, pio.k, pio.v, pio.tokens, pio.h, pio.kvh, pio.d);
                let mut cached = maps.borrow_mut();
                let m = match cached.as_ref() {
                    Some((k, m)) if *k == key => *m,
                    _ => {
                        let m = wgmma::build_maps(DType::BF16, &pio, cfg)?;
                        *cached = Some((key, m));
                        m
                    }
                };
                // SAFETY: as for flash_mma; the maps were built from this `pio` (key above).
                unsafe {
                    wgmma::launch(gpu, kernel, cfg, &m, DType::BF16, &pio, seqs as i64, max_len as i64, hd.scale())
                }
            }
        }
    }
}

/// Shape arguments shared by the attention-side kernels.
#[derive(Debug, Clone, Copy)]
pub struct AttnDims {
    pub n_heads: i32,
    pub n_kv_heads: i32,
    pub head_dim: i32,
    /// Positions per sequence in the KV cache.
    pub max_seq: i32,
}

impl AttnDims {
    pub fn heads(&self) -> Heads {
        Heads {
            h: self.n_heads as i64,
            kvh: self.n_kv_heads as i64,
            d: self.head_dim as i64,
            max_seq: self.max_seq as i64,
        }
    }
}

/// Which attention kernel a step runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttnPath {
    /// The plain kernel of ops.cu (reads q from the fused rows and K/V from the cache).
    Plain,
    /// attention_decode on the cache, Q packed.
    Decode,
    /// attention_prefill on this step's packed Q, K, V.
    Prefill,
}

/// The buffers of one layer's KV append and attention for one step.
#[derive(Debug, Clone, Copy)]
pub struct AttnStep<'a> {
    pub layout: &'a StepLayout,
    /// Fused q|k|v rows [T, qkv_dim], RoPE already applied.
    pub qkv: u64,
    pub k_cache: u64,
    pub v_cache: u64,
    /// [T, H*D].
    pub out: u64,
    pub tok_seq: u64,
    pub tok_pos: u64,
    /// Packed Q [T, H*D] and K, V [T, KVH*D] for the families.
    pub q_pack: u64,
    pub k_pack: u64,
    pub v_pack: u64,
    /// The layout's integers (StepLayout::of).
    pub ints: u64,
    /// Decode split workspace.
    pub ws_o: u64,
    pub ws_ml: u64,
    pub t: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_steps_give_lens() {
        let (l, ints) = StepLayout::of(&[0, 1, 2], &[5, 9, 0]);
        assert_eq!(l, StepLayout::Decode { max_len: 10 });
        assert_eq!(ints, vec![6, 10, 1]);
        assert!(l.is_decode());
    }

    #[test]
    fn fresh_prefills_give_cu_seqlens() {
        // Step::prefill of prompts of 3, 1 and 2 tokens
        let (l, cu) = StepLayout::of(&[0, 0, 0, 1, 2, 2], &[0, 1, 2, 0, 0, 1]);
        assert_eq!(l, StepLayout::FreshPrefill { seqs: 3, max_len: 3 });
        assert_eq!(cu, vec![0, 3, 4, 6]);
        // sequences in any slot order
        let (l, cu) = StepLayout::of(&[2, 2, 0], &[0, 1, 0]);
        assert_eq!(l, StepLayout::FreshPrefill { seqs: 2, max_len: 2 });
        assert_eq!(cu, vec![0, 2, 3]);
    }

    #[test]
    fn other_steps_fall_back() {
        // a cached prefix (sequence 0 continues at position 4)
        assert_eq!(StepLayout::of(&[0, 0, 1], &[4, 5, 0]).0, StepLayout::Other);
        // a gap inside a run
        assert_eq!(StepLayout::of(&[1, 1], &[0, 2]).0, StepLayout::Other);
        // one sequence in two runs
        assert_eq!(StepLayout::of(&[1, 0, 1], &[0, 0, 0]).0, StepLayout::Other);
        // one token per sequence but not in slot order
        assert_eq!(StepLayout::of(&[1, 0], &[3, 3]).0, StepLayout::Other);
        assert_eq!(StepLayout::of(&[], &[]).0, StepLayout::Other);
    }

    #[test]
    fn fit_and_workspace() {
        assert!(families_fit(32, 8, 128).is_ok());
        assert!(families_fit(9, 3, 64).is_ok());
        assert!(families_fit(4, 2, 32).is_err());
        assert!(families_fit(32, 5, 128).is_err());
        let slots = 32 * MAX_SPLITS as usize;
        assert_eq!(decode_workspace_bytes(1, 32, 128), (slots * 128 * 4, slots * 8));
    }
}
