//! int4 weights for the model (`kernlab e2e --weights int4`): every layer's four linears
//! (qkv, o, gate_up, down) quantized on the GPU with round-to-nearest, g128 symmetric, bf16
//! scales by default — kernlab's int4 format (docs/int4-format.md) — or per `RtnPlan`: other
//! groups or one scale per row, zero points, act-order column permutations, some linears
//! left in bf16 (mixed precision); or a GPTQ/AWQ checkpoint's weights as stored. The
//! embeddings and norms stay bf16; the lm_head too, as AWQ/GPTQ checkpoints keep it, unless
//! asked (`--int4-lm-head`, as gpt-fast's int4 path quantizes every linear).
//!
//! `--weights int8` fills the same store with int8 weights instead (symmetric, one scale
//! per output channel: kernels/gemm_int8, the BitsAndBytes-style second precision).
//!
//! The store is keyed by the address of the bf16 buffer each weight came from, so the
//! model's forward pass stays the same: the linear backend swaps in the quantized weight.

use super::model_linear::{check_layers, LinearRef, ModelLinear};
use super::weights::GpuWeights;
use crate::gpu::cache::ModuleCache;
use crate::gpu::device::{DevBuf, Gpu};
use crate::kernels::gemm_int4::act_order::{ColumnGather, ColumnPerm};
use crate::kernels::gemm_int4::quantize::{DeviceInt4, Int4Quantizer};
use crate::kernels::gemm_int4::tiled::{PlainInt4, Repacker, TiledInt4};
use crate::kernels::gemm_int4::{Int4Format, RefKernels, ZeroMode, PER_CHANNEL};
use crate::kernels::gemm_int8::{DeviceInt8, Int8Quantizer};
use crate::kernels::support;
use crate::kernels::DType;
use crate::quant::{HalfDtype, Int4Weight, Zeros};
use anyhow::{bail, Context, Result};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

/// From this many rows (tokens) on, a linear dequantizes its weight into a scratch buffer and
/// runs the tuned bf16 GEMM: at prefill sizes the GEMM is compute bound, and int4_mma
/// (mma.sync with the dequant in its inner loop) reaches only 0.30× cuBLAS at M = 1024 on an
/// H200 (1025 µs vs 311 µs for 1024×28672×4096), while the dequantize pass costs about
/// 0.3 GB of traffic (≈ 75 µs). vLLM's AWQ layer makes the same switch at 256 tokens.
pub const DEQUANT_GEMM_MIN_M: i64 = 256;

pub struct QuantStore {
    /// The weights' format: g`group` (or per-channel) symmetric bf16 for the device
    /// quantizer's, what the file stores for a GPTQ/AWQ checkpoint (integer zero points,
    /// f16 scales). A per-channel format's group is each weight's K ([`Int4Format::at_k`]).
    /// None for a store of int8 weights.
    pub format: Option<Int4Format>,
    /// What made the weights, for reports: "RTN on the GPU" or the checkpoint's method.
    pub origin: String,
    /// The device quantizers by group (RTN stores; none for checkpoints), whose
    /// dequantizers prefill uses for symmetric weights.
    quantizers: HashMap<i64, Int4Quantizer>,
    /// The family's reference dequantizer: the --validate copy, and prefill for formats the
    /// device quantizer's dequantizer does not read.
    refk: RefKernels,
    by_ptr: HashMap<u64, DeviceInt4>,
    /// int8 weights (`--weights int8`), keyed like `by_ptr`, and their quantizer (whose
    /// dequantizer serves prefill and the --validate copy).
    int8: HashMap<u64, DeviceInt8>,
    int8_quantizer: Option<Int8Quantizer>,
    /// Act-order weights: the permutation of their input columns (the stored weight is
    /// W[:, perm], the activations are gathered with it), keyed like `by_ptr`.
    perms: HashMap<u64, ColumnPerm>,
    /// Does those gathers; present when some weight has a permutation.
    gather: Option<ColumnGather>,
    shapes: HashSet<(i64, i64)>,
    dense_shapes: HashSet<(i64, i64)>,
    /// Bytes of bf16 the quantized weights replace, and their own bytes (codes + scales).
    pub bf16_bytes: usize,
    pub quant_bytes: usize,
    /// Whether the lm_head is one of the int4 weights.
    pub lm_head: bool,
    /// Layer linears left in bf16 (mixed precision, `--int4-keep-bf16`).
    pub kept_bf16: Vec<LinearRef>,
    /// Tiled copies (docs/int4-format.md) made on first use by a decode kernel that reads
    /// them (int4_gemv_bulk), kept beside the plain weights that prefill and the other
    /// kernels read; a model whose plans never name such a kernel pays nothing for them.
    tiled: RefCell<HashMap<u64, Rc<TiledInt4>>>,
    /// Makes them: needs groups of 128 or more and bulk copies (sm_90).
    repacker: Option<Repacker>,
    /// Each layer's gate+up weight again with its rows interleaved in 8-row blocks (gate
    /// rows 8i..8i+7, then the up rows of the same outputs), keyed like `by_ptr`: the decode
    /// kernel's SwiGLU epilogue reads it (int4_gemv_tc with SWIGLU = 1). The plain one stays
    /// for prefill, whose kernels write gate and up as two halves.
    gate_up_interleaved: HashMap<u64, DeviceInt4>,
    /// Bytes of those copies.
    pub interleaved_bytes: usize,
}

/// Rows per block of the interleaved gate+up layout (half the decode kernel's 16-row tile).
pub const GATE_UP_BLOCK_ROWS: usize = 8;

/// How the device quantizer writes a model's int4 weights (`kernlab e2e --weights int4`).
#[derive(Debug, Clone)]
pub struct RtnPlan {
    /// K columns per scale, or [`PER_CHANNEL`].
    pub group: i64,
    /// `Symmetric`, or `Int` for a zero point per group (the format AWQ and GPTQ
    /// checkpoints store, so their speed can be measured without one).
    pub zeros: ZeroMode,
    /// Quantize the lm_head too (refused for a model whose lm_head is its embedding table:
    /// the embedding lookup would then need the dequantized table as well).
    pub lm_head: bool,
    /// Also keep each gate+up weight with its rows interleaved for the SwiGLU epilogue
    /// (symmetric only, the epilogue's selftested format; needs ffn % 8 == 0; skipped
    /// otherwise, and for act-order and kept-bf16 gate+up weights).
    pub interleave_gate_up: bool,
    /// Quantize each linear's input columns in a permuted order, as GPTQ's act-order does,
    /// and gather the activations before it. The device RTN has no Hessian to order by, so
    /// the permutation is a seeded shuffle: what it measures is the cost of the gather and
    /// of the permuted layout, which do not depend on the order.
    pub act_order: bool,
    /// Layer linears left in bf16 (mixed precision).
    pub keep_bf16: Vec<LinearRef>,
}

/// The (buffer, N, K) of each linear the store may quantize, with its name: the layers' in
/// forward order, then the lm_head (named None) when `lm_head`.
fn model_linears(w: &GpuWeights, lm_head: bool) -> Vec<(Option<LinearRef>, &DevBuf, i64, i64)> {
    let c = &w.config;
    let (dim, q, kv, ffn) = (c.dim as i64, c.q_dim() as i64, c.kv_dim() as i64, c.ffn_dim as i64);
    let mut v: Vec<(Option<LinearRef>, &DevBuf, i64, i64)> = w
        .layers
        .iter()
        .enumerate()
        .flat_map(|(layer, l)| {
            let at = |linear| Some(LinearRef { layer, linear });
            [
                (at(ModelLinear::Qkv), &l.wqkv, q + 2 * kv, dim),
                (at(ModelLinear::O), &l.wo, dim, q),
                (at(ModelLinear::GateUp), &l.w_gate_up, 2 * ffn, dim),
                (at(ModelLinear::Down), &l.w_down, dim, ffn),
            ]
        })
        .collect();
    if lm_head {
        v.push((None, w.lm_head(), c.vocab_size as i64, dim));
    }
    v
}

/// A seeded shuffle of 0..k, standing in for act-order's permutation.
fn shuffled(k: i64, seed: u64) -> Vec<u32> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut p: Vec<u32> = (0..k as u32).collect();
    p.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    p
}

impl QuantStore {
    /// Quantizes the layer linears of `w` on the GPU as `plan` says, each with its own
    /// group where the plan is per-channel; the linears `plan.keep_bf16` names stay bf16
    /// (the linear backend runs the dense GEMM on any weight the store does not hold).
    pub fn quantize(gpu: &Gpu, cache: &ModuleCache, w: &GpuWeights, plan: &RtnPlan) -> Result<QuantStore> {
        let c = &w.config;
        if plan.lm_head && w.lm_head.is_none() {
            bail!(
                "{}: the lm_head is the embedding table (tied weights), which stays bf16 for the lookup; \
                 leave out --int4-lm-head for this model",
                c.name
            );
        }
        check_layers(&plan.keep_bf16, c.n_layers)?;
        let asym = match plan.zeros {
            ZeroMode::Symmetric => false,
            ZeroMode::Int => true,
            other => bail!("internal: the device quantizer writes symmetric or integer zero points, not {other:?}"),
        };
        let format = Int4Format { group: plan.group, zeros: plan.zeros, ..Int4Format::default_for(DType::BF16) };
        let linears: Vec<_> = model_linears(w, plan.lm_head)
            .into_iter()
            .filter(|(name, ..)| name.is_none_or(|r| !plan.keep_bf16.contains(&r)))
            .collect();
        let mut quantizers = HashMap::new();
        for (.., k) in &linears {
            let g = format.at_k(*k).group;
            if let std::collections::hash_map::Entry::Vacant(e) = quantizers.entry(g) {
                e.insert(Int4Quantizer::new(gpu, cache, DType::BF16, g)?);
            }
        }
        // The tiled layout's repacker reads symmetric weights in their plain column order.
        let tileable = linears.iter().all(|(.., k)| format.at_k(*k).group % 128 == 0);
        let repacker = (tileable && gpu.props.cc_major >= 9 && !asym && !plan.act_order)
            .then(|| Repacker::with_cache(gpu, cache))
            .transpose()?;
        let group = if plan.group == PER_CHANNEL { "per-channel".to_string() } else { format!("g{}", plan.group) };
        let origin = format!(
            "RTN {group} {}{} on the GPU, bf16 scales",
            if asym { "with zero points" } else { "symmetric" },
            if plan.act_order { ", act-order (shuffled columns)" } else { "" }
        );
        let mut store = QuantStore::empty(gpu, Some(format), origin, quantizers, plan.lm_head, repacker)?;
        store.kept_bf16 = plan.keep_bf16.clone();
        let largest = linears.iter().map(|(_, b, ..)| b.bytes).max().unwrap_or(0);
        let scratch = if plan.act_order { Some(gpu.alloc(largest)?) } else { None };
        if plan.act_order {
            store.gather = Some(ColumnGather::new(gpu, cache)?);
        }
        for (i, (_, buf, n, k)) in linears.iter().enumerate() {
            let (n, k) = (*n, *k);
            let mut src = buf.ptr;
            if let Some(s) = &scratch {
                let perm = ColumnPerm::upload(gpu, &shuffled(k, 0x5eed + i as u64))?;
                // SAFETY: buf and the scratch hold N·K bf16 (the scratch the largest weight); the
                // permutation has K entries.
                unsafe { store.gather()?.gather(gpu, buf.ptr, s.ptr, perm.perm.ptr, n, k)? };
                src = s.ptr;
                store.perms.insert(buf.ptr, perm);
            }
            let quantizer = store.quantizer(format.at_k(k).group)?;
            let dq = if asym { quantizer.quantize_asym(gpu, src, n, k) } else { quantizer.quantize(gpu, src, n, k) }
                .with_context(|| format!("quantizing a {n}x{k} linear to int4"))?;
            store.bf16_bytes += buf.bytes;
            store.quant_bytes += dq.bytes();
            store.shapes.insert((n, k));
            store.by_ptr.insert(buf.ptr, dq);
        }
        for (name, _, n, k) in model_linears(w, true) {
            let kept = name.is_some_and(|r| plan.keep_bf16.contains(&r));
            if kept || (name.is_none() && !plan.lm_head) {
                store.dense_shapes.insert((n, k));
            }
        }
        if plan.interleave_gate_up && !asym && !plan.act_order && c.ffn_dim % GATE_UP_BLOCK_ROWS == 0 {
            store.interleave_gate_up(gpu, w)?;
        }
        gpu.synchronize()?;
        Ok(store)
    }

    /// Quantizes every layer linear of `w` to int8 on the GPU (symmetric, one bf16 scale per
    /// output row, bit for bit `quant::quantize_int8_per_channel`), except the ones in
    /// `keep_bf16`; the lm_head stays bf16.
    pub fn quantize_int8(
        gpu: &Gpu,
        cache: &ModuleCache,
        w: &GpuWeights,
        keep_bf16: &[LinearRef],
    ) -> Result<QuantStore> {
        check_layers(keep_bf16, w.config.n_layers)?;
        let origin = "int8 per-channel RTN on the GPU, bf16 scales".to_string();
        let mut store = QuantStore::empty(gpu, None, origin, HashMap::new(), false, None)?;
        store.kept_bf16 = keep_bf16.to_vec();
        let q8 = Int8Quantizer::new(gpu, cache, DType::BF16)?;
        for (name, buf, n, k) in model_linears(w, true) {
            let kept = name.is_some_and(|r| keep_bf16.contains(&r));
            if kept || name.is_none() {
                store.dense_shapes.insert((n, k));
                continue;
            }
            let dq = q8.quantize(gpu, buf.ptr, n, k).with_context(|| format!("quantizing a {n}x{k} linear to int8"))?;
            store.bf16_bytes += buf.bytes;
            store.quant_bytes += dq.bytes();
            store.shapes.insert((n, k));
            store.int8.insert(buf.ptr, dq);
        }
        store.int8_quantizer = Some(q8);
        gpu.synchronize()?;
        Ok(store)
    }

    /// The int8 weight that came from `bf16_ptr`, if the store holds one.
    pub fn get_int8(&self, bf16_ptr: u64) -> Option<&DeviceInt8> {
        self.int8.get(&bf16_ptr)
    }

    /// Whether the store holds int8 weights (`--weights int8`).
    /// The format of the store's int4 weights (an error for a store of int8 weights).
    pub fn int4_format(&self) -> Result<Int4Format> {
        self.format.context("internal: a store of int8 weights has no int4 format")
    }

    pub fn is_int8(&self) -> bool {
        !self.int8.is_empty()
    }

    /// dequant(q) into `out` (bf16), for the prefill path of an int8 weight.
    pub fn dequantize_int8(&self, gpu: &Gpu, q: &DeviceInt8, out: &DevBuf) -> Result<()> {
        self.int8_quantizer.as_ref().context("internal: an int8 weight without its quantizer")?.dequantize(gpu, q, out)
    }

    /// Quantizes each held gate+up weight once more with its rows interleaved: the bf16
    /// rows go into one scratch matrix, then through the quantizer. RTN is per row, so the
    /// codes and scales are the plain weight's, rows reordered.
    fn interleave_gate_up(&mut self, gpu: &Gpu, w: &GpuWeights) -> Result<()> {
        let (ffn, dim) = (w.config.ffn_dim, w.config.dim);
        let scratch = gpu.alloc(2 * ffn * dim * 2)?;
        let run = GATE_UP_BLOCK_ROWS * dim * 2;
        let group = self.int4_format()?.at_k(dim as i64).group;
        for l in &w.layers {
            let src = &l.w_gate_up;
            if self.get(src.ptr).is_none() {
                continue; // kept in bf16
            }
            let blocks = ffn / GATE_UP_BLOCK_ROWS;
            support::copy_runs(gpu, &scratch, 0, 2 * run, src, 0, run, blocks)?;
            support::copy_runs(gpu, &scratch, run, 2 * run, src, ffn * dim * 2, run, blocks)?;
            let dq = self
                .quantizer(group)?
                .quantize(gpu, scratch.ptr, 2 * ffn as i64, dim as i64)
                .context("quantizing an interleaved gate+up linear to int4")?;
            // The next layer's copies into the scratch wait for this quantization (one stream).
            self.interleaved_bytes += dq.bytes();
            self.gate_up_interleaved.insert(src.ptr, dq);
        }
        Ok(())
    }

    /// The int4 weights of a GPTQ/AWQ checkpoint (`linears`: every layer's qkv, o, gate_up
    /// and down, as [`QuantizedSource::model_linears`] stacks them, each with its act-order
    /// permutation if it has one), uploaded as stored and keyed by the bf16 buffers of `w`
    /// (which hold their dequantized values). One format serves the whole store, so
    /// symmetric linears beside ones with zero points get explicit zero points of 8 (the
    /// same values); per-channel checkpoints (`per_channel`) take each weight's K as its group.
    ///
    /// [`QuantizedSource::model_linears`]: crate::llama::quantized::QuantizedSource::model_linears
    pub fn from_checkpoint(
        gpu: &Gpu,
        cache: &ModuleCache,
        w: &GpuWeights,
        linears: Vec<(Int4Weight, Option<Vec<u32>>)>,
        per_channel: bool,
        origin: String,
    ) -> Result<QuantStore> {
        let targets = model_linears(w, false);
        anyhow::ensure!(
            targets.len() == linears.len(),
            "internal: {} checkpoint linears for {} model linears",
            linears.len(),
            targets.len()
        );
        let first = &linears.first().context("the checkpoint has no linears")?.0;
        let group = if per_channel { PER_CHANNEL } else { first.group_size as i64 };
        let scale_dtype = first.scale_dtype;
        let any_int = linears.iter().any(|(q, _)| matches!(q.zeros, Zeros::Int(_)));
        let zeros = if any_int { ZeroMode::Int } else { ZeroMode::Symmetric };
        let format = Int4Format { group, zeros, scale_dtype };
        let mut store = QuantStore::empty(gpu, Some(format), origin, HashMap::new(), false, None)?;
        for ((_, buf, n, k), (mut q, perm)) in targets.into_iter().zip(linears) {
            let g = format.at_k(k).group;
            if (q.n as i64, q.k as i64) != (n, k) || q.group_size as i64 != g || q.scale_dtype != scale_dtype {
                bail!(
                    "checkpoint linear [{}, {}] g{} {} does not fit the model's [{n}, {k}] g{g} {scale_dtype}",
                    q.n,
                    q.k,
                    q.group_size,
                    q.scale_dtype
                );
            }
            if any_int && q.zeros == Zeros::Symmetric {
                q.zeros = Zeros::Int(vec![8; q.num_groups() * q.n]);
            }
            if let Zeros::Min(_) = q.zeros {
                bail!("float-minimum zero points (GGUF Q4_1) are not a checkpoint format the model path loads");
            }
            let dq = upload_int4(gpu, &q).with_context(|| format!("uploading a {n}x{k} int4 linear"))?;
            if let Some(p) = perm {
                if store.gather.is_none() {
                    store.gather = Some(ColumnGather::new(gpu, cache)?);
                }
                store.perms.insert(buf.ptr, ColumnPerm::upload(gpu, &p)?);
            }
            store.bf16_bytes += buf.bytes;
            store.quant_bytes += dq.bytes();
            store.shapes.insert((n, k));
            store.by_ptr.insert(buf.ptr, dq);
        }
        let c = &w.config;
        store.dense_shapes.insert((c.vocab_size as i64, c.dim as i64));
        gpu.synchronize()?;
        Ok(store)
    }

    /// A store holding no weights yet.
    fn empty(
        gpu: &Gpu,
        format: Option<Int4Format>,
        origin: String,
        quantizers: HashMap<i64, Int4Quantizer>,
        lm_head: bool,
        repacker: Option<Repacker>,
    ) -> Result<QuantStore> {
        Ok(QuantStore {
            format,
            origin,
            quantizers,
            refk: RefKernels::new(gpu)?,
            by_ptr: HashMap::new(),
            int8: HashMap::new(),
            int8_quantizer: None,
            perms: HashMap::new(),
            gather: None,
            shapes: HashSet::new(),
            dense_shapes: HashSet::new(),
            bf16_bytes: 0,
            quant_bytes: 0,
            lm_head,
            kept_bf16: Vec::new(),
            tiled: RefCell::new(HashMap::new()),
            repacker,
            gate_up_interleaved: HashMap::new(),
            interleaved_bytes: 0,
        })
    }

    fn quantizer(&self, group: i64) -> Result<&Int4Quantizer> {
        self.quantizers.get(&group).with_context(|| format!("internal: no device quantizer for g{group} in this store"))
    }

    fn gather(&self) -> Result<&ColumnGather> {
        self.gather.as_ref().context("internal: an act-order store without its gather kernel")
    }

    /// The act-order permutation of the weight that came from `bf16_ptr`, if it has one.
    pub fn perm(&self, bf16_ptr: u64) -> Option<&ColumnPerm> {
        self.perms.get(&bf16_ptr)
    }

    /// Whether any weight needs its activations gathered (act-order).
    pub fn has_act_order(&self) -> bool {
        !self.perms.is_empty()
    }

    /// xg[M, K] = x[:, perm] for the act-order weight that came from `bf16_ptr`.
    ///
    /// # Safety
    /// `x` and `xg` are distinct device buffers of at least M·K bf16.
    pub unsafe fn gather_input(&self, gpu: &Gpu, bf16_ptr: u64, x: u64, xg: u64, m: i64) -> Result<()> {
        let p = self.perm(bf16_ptr).context("internal: gather_input on a weight without act-order")?;
        // SAFETY: the caller's contract; the permutation is this weight's, of its K.
        unsafe { self.gather()?.gather(gpu, x, xg, p.perm.ptr, m, p.k) }
    }

    /// The gate+up weight that came from `bf16_ptr` with its rows interleaved for the SwiGLU
    /// epilogue, if the store made one.
    pub fn gate_up_interleaved(&self, bf16_ptr: u64) -> Option<&DeviceInt4> {
        self.gate_up_interleaved.get(&bf16_ptr)
    }

    /// The tiled copy of the int4 weight that came from `bf16_ptr`, made on first use (on
    /// the stream of `gpu`, ordered before the launch that reads it).
    pub fn tiled(&self, gpu: &Gpu, bf16_ptr: u64) -> Result<Rc<TiledInt4>> {
        if let Some(t) = self.tiled.borrow().get(&bf16_ptr) {
            return Ok(t.clone());
        }
        let q = self.get(bf16_ptr).context("internal: no int4 weight to tile")?;
        anyhow::ensure!(!self.quantizers.is_empty(), "internal: the tiled layout is made for RTN stores only");
        let r = self.repacker.as_ref().with_context(|| {
            format!("the tiled int4 layout needs symmetric groups of 128 or more in column order and an sm_90 GPU (group {})", q.group)
        })?;
        let t = TiledInt4::alloc(gpu, q.n, q.k, q.group, ZeroMode::Symmetric)?;
        let plain = PlainInt4 { packed: q.packed.ptr, scales: q.scales.ptr, zeros: 0 };
        r.repack(gpu, plain, &t, q.n, q.k, q.group).with_context(|| format!("tiling a {}x{} int4 linear", q.n, q.k))?;
        let t = Rc::new(t);
        self.tiled.borrow_mut().insert(bf16_ptr, t.clone());
        Ok(t)
    }

    /// Bytes of the tiled copies made so far.
    pub fn tiled_bytes(&self) -> usize {
        self.tiled.borrow().values().map(|t| t.bytes()).sum()
    }

    /// Bytes of the largest weight dequantized to bf16 (the prefill scratch buffer).
    pub fn max_dequantized_bytes(&self) -> usize {
        let int4 = self.by_ptr.values().map(|q| q.n * q.k * 2);
        int4.chain(self.int8.values().map(|q| q.n * q.k * 2)).max().unwrap_or(0) as usize
    }

    /// dequant(q) into `out` (bf16), for the prefill path.
    pub fn dequantize(&self, gpu: &Gpu, q: &DeviceInt4, out: &DevBuf) -> Result<()> {
        match self.quantizers.get(&q.group) {
            Some(quantizer) if q.zeros.is_none() => quantizer.dequantize(gpu, q, out),
            _ => {
                let zeros = q.zeros.as_ref().unwrap_or(&q.scales); // unread when symmetric
                let fmt = self.int4_format()?.at_k(q.k);
                self.refk.dequantize(gpu, &q.packed, &q.scales, zeros, out, q.n, q.k, &fmt, HalfDtype::Bf16)
            }
        }
    }

    pub fn get(&self, bf16_ptr: u64) -> Option<&DeviceInt4> {
        self.by_ptr.get(&bf16_ptr)
    }
    pub fn has_shape(&self, n: i64, k: i64) -> bool {
        self.shapes.contains(&(n, k))
    }
    pub fn has_dense_shape(&self, n: i64, k: i64) -> bool {
        self.dense_shapes.contains(&(n, k))
    }
    pub fn len(&self) -> usize {
        self.by_ptr.len() + self.int8.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of `w` whose layer linears hold dequant(int4) in bf16 (every other tensor
    /// copied, and so the linears kept in bf16): the weights the int4 kernels effectively
    /// use, for the cuBLAS reference path, in the original column order (an act-order
    /// weight is dequantized, then its permutation undone). It uses the family's plain
    /// reference dequantizer, not `int4_dequantize` (the prefill path's), so a layout slip
    /// in the fast kernels cannot hide behind the same slip here.
    pub fn dequantized_copy(&self, gpu: &Gpu, w: &GpuWeights) -> Result<GpuWeights> {
        let refk = &self.refk;
        let out = w.empty_like(gpu, format!("{} ({}, dequantized)", w.source, self.origin))?;
        let no_zeros = gpu.alloc(16)?;
        // The other tensors first: the lm_head is one of them, and an int4 one is then
        // overwritten by its dequantized values below.
        for (s, d) in w.non_linear_buffers().into_iter().zip(out.non_linear_buffers()) {
            support::copy(gpu, d, s)?;
        }
        let largest = self.perms.keys().filter_map(|p| self.get(*p)).map(|q| (q.n * q.k * 2) as usize).max();
        let unpermuted = largest.map(|b| gpu.alloc(b)).transpose()?;
        for ((_, src, n, k), (_, dst, ..)) in
            model_linears(w, self.lm_head).into_iter().zip(model_linears(&out, self.lm_head))
        {
            if let Some(q8) = self.get_int8(src.ptr) {
                self.dequantize_int8(gpu, q8, dst)?;
                continue;
            }
            let Some(q) = self.get(src.ptr) else {
                support::copy(gpu, dst, src)?; // kept in bf16
                continue;
            };
            let zeros = q.zeros.as_ref().unwrap_or(&no_zeros);
            // The store's format at this K, not the kernels' default: a g64 store read as
            // g128 pairs every other group with the wrong scale (SmolLM2's validation failed
            // so on an H200).
            let fmt = self.int4_format()?.at_k(k);
            match (self.perm(src.ptr), &unpermuted) {
                (Some(p), Some(tmp)) => {
                    refk.dequantize(gpu, &q.packed, &q.scales, zeros, tmp, n, k, &fmt, HalfDtype::Bf16)?;
                    // SAFETY: tmp and dst hold N·K bf16; the inverse has K entries.
                    unsafe { self.gather()?.gather(gpu, tmp.ptr, dst.ptr, p.inverse.ptr, n, k)? };
                }
                _ => refk.dequantize(gpu, &q.packed, &q.scales, zeros, dst, n, k, &fmt, HalfDtype::Bf16)?,
            }
        }
        gpu.synchronize()?;
        Ok(out)
    }
}

/// One host int4 weight on the device, as stored (codes, scales, zero points).
fn upload_int4(gpu: &Gpu, q: &Int4Weight) -> Result<DeviceInt4> {
    let packed = gpu.alloc(q.packed.len() * 4)?;
    packed.upload(&q.packed)?;
    let scales = gpu.alloc(q.scales.len() * 2)?;
    scales.upload(&q.scales)?;
    let zeros = match &q.zeros {
        Zeros::Int(z) => {
            let b = gpu.alloc(z.len())?;
            b.upload(z)?;
            Some(b)
        }
        _ => None,
    };
    Ok(DeviceInt4 { n: q.n as i64, k: q.k as i64, group: q.group_size as i64, packed, scales, zeros })
}
