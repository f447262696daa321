//! The non-linear ops of the model (kernels/llama/ops.cu) and the seam where tuned kernel
//! families plug in.
//!
//! Every op kind has an [`OpImpl`]: `Reference` (the plain kernel of ops.cu, what
//! `--reference` runs) or `Tuned` (a kernlab family), chosen in [`super::op_choice`]; this
//! module compiles and launches it through the family's own launcher. The ops that may run a
//! tuned family are the rows of [`TUNED_OPS`]: the choice and the compilation both iterate
//! over it, so a new tuned op is a row there plus the tuned arm of its method here. The linear
//! layers have their own backend ([`super::linear::LinearBackend`]); the attention families'
//! contracts and launches are in [`super::attention`].

use super::attention::{self, AttnDims, AttnIo, AttnPath, AttnStep, DecodeKernels, PrefillKernels, StepLayout};
use super::op_fit::{fit_attention, fit_rope};
use super::tuned_op::{kernels, ModelFacts, OneKernel, TunedLauncher, TunedOp};
use crate::gpu::cache::ModuleCache;
use crate::gpu::device::{Arg, DevBuf, Gpu, Kernel};
use crate::gpu::nvrtc::CompileRequest;
use crate::kernels::attention_common::softmax_scale;
use crate::kernels::rmsnorm::{RmsNormIo, RmsNormLaunch};
use crate::kernels::rope::{RopeDims, RopeIo, RopeLaunch};
use crate::kernels::swiglu::SwiGluLaunch;
use crate::kernels::tunables::Tunables;
use anyhow::{bail, Context, Result};
use std::any::Any;
use std::collections::BTreeMap;

pub const OPS_SOURCE: &str = include_str!("../../../kernels/llama/ops.cu");
pub const OPS_NAME: &str = "kernels/llama/ops.cu";

/// Entry points ops.cu must provide.
pub const OPS_ENTRIES: &[&str] = &[
    "embed_gather",
    "rmsnorm",
    "rope_qk",
    "kv_append",
    "kv_append_pack",
    "attention",
    "swiglu",
    "residual_add",
    "argmax_rows",
    "fill_const_bf16",
];

pub use super::op_fit::{OpChoice, OpImpl, OpKind};

/// The tuned ops, in the order the choice notes list them.
pub const TUNED_OPS: &[TunedOp] = &[
    TunedOp {
        name: "rmsnorm",
        kind: OpKind::RmsNorm,
        families: &["rmsnorm"],
        shape: |m| Ok(vec![("rows", 1), ("dim", m.config.dim as i64)]),
        fit: |chosen, _| Ok(chosen),
        entries: |_| &["rmsnorm_rows"],
        launcher: |_, ks, t| Ok(Box::new(OneKernel::new(ks, RmsNormLaunch::new(t)?)?)),
        tuned_note: None,
    },
    TunedOp {
        name: "swiglu",
        kind: OpKind::SwiGlu,
        families: &["swiglu"],
        shape: |m| Ok(vec![("tokens", 1), ("ffn", m.config.ffn_dim as i64)]),
        fit: |chosen, _| Ok(chosen),
        entries: |_| &["swiglu"],
        launcher: |_, ks, t| Ok(Box::new(OneKernel::new(ks, SwiGluLaunch::new(t)?)?)),
        tuned_note: None,
    },
    TunedOp {
        name: "rope",
        kind: OpKind::Rope,
        families: &["rope"],
        shape: |m| {
            let (b, h, kvh, d) = batch_heads(m);
            Ok(vec![("B", b), ("S", 1), ("Hq", h), ("Hkv", kvh), ("D", d)])
        },
        fit: |chosen, m| {
            let (_, h, kvh, d) = batch_heads(m);
            fit_rope(chosen, d, (h + 2 * kvh) * d)
        },
        entries: |_| &["rope_llama3"],
        launcher: |_, ks, t| Ok(Box::new(OneKernel::new(ks, RopeLaunch::new(t)?)?)),
        tuned_note: None,
    },
    TunedOp {
        name: "attention_prefill",
        kind: OpKind::AttentionPrefill,
        families: &["attention_prefill_varlen", "attention_prefill"],
        shape: |m| {
            let (b, h, kvh, d) = attention_heads(m)?;
            let prompt = (m.shape.max_step_tokens / m.shape.batch.max(1)).max(1) as i64;
            Ok(vec![("B", b), ("S", prompt), ("H", h), ("KVH", kvh), ("D", d)])
        },
        fit: |chosen, m| {
            let d = m.config.head_dim as i64;
            fit_attention(chosen, d, m.max_smem, |t| PrefillKernels::smem_bytes(t, d))
        },
        entries: |variant| if variant == "flash_wgmma" { &["attn_prefill_wgmma"] } else { &["attn_prefill"] },
        launcher: |_, ks, t| {
            let [kernel] = kernels(ks)?;
            Ok(Box::new(PrefillKernels::new(kernel, t)?))
        },
        tuned_note: Some(
            "attention_prefill: used for prefills without a cached prefix; other multi-token steps take the reference kernel",
        ),
    },
    TunedOp {
        name: "attention_decode",
        kind: OpKind::Attention,
        families: &["attention_decode_varlen", "attention_decode"],
        shape: |m| {
            let (b, h, kvh, d) = attention_heads(m)?;
            Ok(vec![("B", b), ("L", m.shape.max_seq as i64), ("H", h), ("KVH", kvh), ("D", d)])
        },
        fit: |chosen, m| fit_attention(chosen, m.config.head_dim as i64, m.max_smem, DecodeKernels::smem_bytes),
        entries: |_| &["attn_decode_split", "attn_decode_combine"],
        launcher: |gpu, ks, t| {
            let [split, combine] = kernels(ks)?;
            Ok(Box::new(DecodeKernels::new(gpu, split, combine, t)?))
        },
        tuned_note: None,
    },
];

/// Batch slots, query heads, KV heads and head dim of the model.
fn batch_heads(m: &ModelFacts) -> (i64, i64, i64, i64) {
    let c = m.config;
    (m.shape.batch as i64, c.n_heads as i64, c.n_kv_heads as i64, c.head_dim as i64)
}

/// [`batch_heads`], when the attention families can take the model's heads.
fn attention_heads(m: &ModelFacts) -> Result<(i64, i64, i64, i64)> {
    attention::families_fit(m.config.n_heads, m.config.n_kv_heads, m.config.head_dim)?;
    Ok(batch_heads(m))
}

/// `l` as the concrete launcher type `L`, if it is one.
fn downcast<L: TunedLauncher>(l: &dyn TunedLauncher) -> Option<&L> {
    (l as &dyn Any).downcast_ref::<L>()
}

/// The compiled ops.cu module and the tuned families of its choice.
pub struct OpKernels {
    k: BTreeMap<&'static str, Kernel>,
    /// The launchers of the ops whose choice is `Tuned`, by op.
    tuned: BTreeMap<OpKind, Box<dyn TunedLauncher>>,
    pub choice: OpChoice,
}

/// (T, H, KVH, HD, S): the integers kv_append, kv_append_pack and attention (ops.cu) take
/// after their pointers.
fn step_ints(s: &AttnStep, d: AttnDims) -> [Arg; 5] {
    [s.t as i32, d.n_heads, d.n_kv_heads, d.head_dim, d.max_seq].map(Arg::I32)
}

fn grid_stride(n: usize) -> (u32, u32, u32) {
    (n.div_ceil(256).clamp(1, 65_535 * 4) as u32, 1, 1)
}

/// The request that compiles ops.cu for `arch` (also used by the NVRTC tests).
pub fn compile_request(arch: &str) -> CompileRequest {
    CompileRequest { name: OPS_NAME.into(), source: OPS_SOURCE.into(), defines: BTreeMap::new(), arch: arch.into() }
}

/// Compiles a tuned family choice and loads `entries` from it, with its tunables.
fn load_tuned(
    gpu: &Gpu,
    cache: &ModuleCache,
    imp: &OpImpl,
    entries: &[&str],
) -> Result<Option<(Vec<Kernel>, Tunables)>> {
    let OpImpl::Tuned { family, variant, params } = imp else { return Ok(None) };
    let fam = crate::kernels::family(family)?;
    let sweep = crate::tune::space::Sweep::load(&crate::paths::sweep_file(family), fam.shape_dims())?;
    let c = crate::tune::space::Candidate { variant: variant.clone(), params: params.clone() };
    let req = crate::tune::compile::request(&sweep, &c, crate::kernels::DType::BF16, &gpu.props.arch());
    let m = cache.get_or_compile(&req).with_context(|| format!("compiling the {family} kernel for the model"))?;
    let ks = entries.iter().map(|e| gpu.load(&m.cubin, e)).collect::<Result<Vec<_>>>()?;
    Ok(Some((ks, Tunables::new(variant, params.clone()))))
}

impl OpKernels {
    /// Compiles ops.cu and the tuned family kernels of `choice`.
    pub fn new(gpu: &Gpu, cache: &ModuleCache, choice: OpChoice) -> Result<OpKernels> {
        let m = cache.get_or_compile(&compile_request(&gpu.props.arch()))?;
        let mut k = BTreeMap::new();
        for e in OPS_ENTRIES {
            k.insert(*e, gpu.load(&m.cubin, e)?);
        }
        // Each tuned family's kernels with its launcher, built once from the same tunables
        // they were compiled with.
        let mut tuned = BTreeMap::new();
        for op in TUNED_OPS {
            let imp = choice.get(op.kind);
            let OpImpl::Tuned { variant, .. } = imp else { continue };
            if let Some((ks, t)) = load_tuned(gpu, cache, imp, (op.entries)(variant))? {
                tuned.insert(op.kind, (op.launcher)(gpu, ks, &t)?);
            }
        }
        Ok(OpKernels { k, tuned, choice })
    }

    /// The tuned launcher of `kind`, as the type its [`TUNED_OPS`] row builds; `None` when the
    /// op runs its reference kernel.
    fn tuned<L: TunedLauncher>(&self, kind: OpKind) -> Option<&L> {
        let l = self.tuned.get(&kind)?;
        Some(
            downcast(l.as_ref()).unwrap_or_else(|| {
                panic!("internal: the TUNED_OPS row of {} builds another launcher type", kind.name())
            }),
        )
    }

    fn decode(&self) -> Option<&DecodeKernels> {
        self.tuned(OpKind::Attention)
    }

    fn prefill(&self) -> Option<&PrefillKernels> {
        self.tuned(OpKind::AttentionPrefill)
    }

    /// Whether this instance runs any attention family (the model then allocates the packed
    /// Q/K/V buffers and the split workspace).
    pub fn uses_attention_families(&self) -> bool {
        self.decode().is_some() || self.prefill().is_some()
    }

    /// The attention kernel for a step of this layout.
    pub fn attention_path(&self, layout: &StepLayout) -> AttnPath {
        match layout {
            StepLayout::Decode { .. } if self.decode().is_some() => AttnPath::Decode,
            StepLayout::FreshPrefill { .. } if self.prefill().is_some() => AttnPath::Prefill,
            _ => AttnPath::Plain,
        }
    }

    fn get(&self, e: &str) -> &Kernel {
        &self.k[e]
    }

    /// out[t] = table[ids[t]] for `n` rows of `dim`.
    pub fn gather(&self, gpu: &Gpu, table: u64, ids: u64, out: u64, n: usize, dim: usize) -> Result<()> {
        // SAFETY (all launches in this file): the pointers are device buffers the model
        // allocated for these sizes (see model.rs), arguments match the entry's signature
        // in ops.cu's header, ints are in range (checked when the model is built).
        unsafe {
            gpu.launch(
                self.get("embed_gather"),
                (n as u32, 1, 1),
                (256, 1, 1),
                0,
                &[Arg::Ptr(table), Arg::Ptr(ids), Arg::Ptr(out), Arg::I32(n as i32), Arg::I32(dim as i32)],
            )
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn rmsnorm(&self, gpu: &Gpu, x: u64, w: &DevBuf, out: u64, rows: usize, dim: usize, eps: f32) -> Result<()> {
        match self.tuned::<OneKernel<RmsNormLaunch>>(OpKind::RmsNorm) {
            None => {
                // SAFETY: see the note on `gather`.
                unsafe {
                    gpu.launch(
                        self.get("rmsnorm"),
                        (rows as u32, 1, 1),
                        (256, 1, 1),
                        0,
                        &[
                            Arg::Ptr(x),
                            w.arg(),
                            Arg::Ptr(out),
                            Arg::I32(rows as i32),
                            Arg::I32(dim as i32),
                            Arg::F32(eps),
                        ],
                    )
                }
            }
            Some(OneKernel { kernel: k, launch: l }) => {
                // h = NULL: the plain norm (the model fuses its residual adds into the GEMMs).
                let io = RmsNormIo { x, h: 0, res: 0, y: out, w: w.ptr };
                // SAFETY: see the note on `gather`; `k` was compiled with `l`'s tunables.
                unsafe { l.launch(gpu, k, &io, rows as i64, dim as i64, eps) }
            }
        }
    }

    pub fn rope(&self, gpu: &Gpu, qkv: u64, tok_pos: u64, inv_freq: &DevBuf, t: usize, d: AttnDims) -> Result<()> {
        match self.tuned::<OneKernel<RopeLaunch>>(OpKind::Rope) {
            None => {
                // SAFETY: see the note on `gather`.
                unsafe {
                    gpu.launch(
                        self.get("rope_qk"),
                        (t as u32, 1, 1),
                        (256, 1, 1),
                        0,
                        &[
                            Arg::Ptr(qkv),
                            Arg::Ptr(tok_pos),
                            inv_freq.arg(),
                            Arg::I32(t as i32),
                            Arg::I32(d.n_heads),
                            Arg::I32(d.n_kv_heads),
                            Arg::I32(d.head_dim),
                        ],
                    )
                }
            }
            Some(OneKernel { kernel: kern, launch: l }) => {
                // The family's contract with seq_len = 1: every token is its own "sequence"
                // whose offset is its position, so `offsets` is the model's tok_pos; Q and K
                // are views into the fused rows (stride qkv_dim), rotated in place.
                let qkv_dim = ((d.n_heads + 2 * d.n_kv_heads) * d.head_dim) as i64;
                let k = qkv + (d.n_heads * d.head_dim) as u64 * 2;
                let io = RopeIo { q_in: qkv, k_in: k, q_out: qkv, k_out: k, offsets: tok_pos, inv_freq: inv_freq.ptr };
                let n = RopeDims {
                    tokens: t as i64,
                    seq_len: 1,
                    hq: d.n_heads as i64,
                    hkv: d.n_kv_heads as i64,
                    d: d.head_dim as i64,
                    q_stride: qkv_dim,
                    k_stride: qkv_dim,
                };
                // SAFETY: see the note on `gather`; Q and K of every row lie inside the fused
                // rows of `t` tokens; `kern` was compiled with `l`'s tunables.
                unsafe { l.launch(gpu, kern, &io, &n) }
            }
        }
    }

    /// Appends the step's K and V to the cache; for the attention families also packs Q
    /// (decode) or Q, K and V (prefill) into contiguous buffers.
    pub fn kv_append(&self, gpu: &Gpu, s: &AttnStep, d: AttnDims) -> Result<()> {
        // kv_append_pack takes kv_append's pointers with the packed outputs after the caches.
        let pack = |k_out: u64, v_out: u64| {
            ("kv_append_pack", Arg::ptrs([s.qkv, s.k_cache, s.v_cache, s.q_pack, k_out, v_out, s.tok_seq, s.tok_pos]))
        };
        let (entry, mut args) = match self.attention_path(s.layout) {
            AttnPath::Plain => ("kv_append", Arg::ptrs([s.qkv, s.k_cache, s.v_cache, s.tok_seq, s.tok_pos])),
            // The decode family reads K and V from the cache: null k_out, v_out skip the copies.
            AttnPath::Decode => pack(0, 0),
            AttnPath::Prefill => pack(s.k_pack, s.v_pack),
        };
        args.extend(step_ints(s, d));
        // SAFETY: see the note on `gather`.
        unsafe { gpu.launch(self.get(entry), (s.t as u32, 1, 1), (256, 1, 1), 0, &args) }
    }

    /// Attention of the step's tokens over their sequences' keys (kv_append ran first).
    /// For a decode step, what its launches depend on beyond the token count: the decode
    /// family's split count (0 on the plain kernel, whose grid is fixed). None otherwise.
    pub fn decode_launch_key(&self, layout: &StepLayout, t: usize, d: AttnDims) -> Option<i64> {
        match (self.attention_path(layout), layout, self.decode()) {
            (AttnPath::Decode, StepLayout::Decode { max_len }, Some(l)) => Some(l.splits(d.heads(), t, *max_len)),
            (_, StepLayout::Decode { .. }, _) => Some(0),
            _ => None,
        }
    }

    pub fn attention(&self, gpu: &Gpu, s: &AttnStep, d: AttnDims) -> Result<()> {
        if d.head_dim % 32 != 0 || d.head_dim > 256 {
            bail!("the reference attention kernel needs head_dim a multiple of 32 and at most 256, got {}", d.head_dim);
        }
        let io = |k: u64, v: u64| AttnIo { q: s.q_pack, k, v, out: s.out, ints: s.ints, ws_o: s.ws_o, ws_ml: s.ws_ml };
        match (self.attention_path(s.layout), s.layout, self.decode(), self.prefill()) {
            (AttnPath::Decode, StepLayout::Decode { max_len }, Some(l), _) => {
                l.launch(gpu, &io(s.k_cache, s.v_cache), d.heads(), s.t, *max_len)
            }
            (AttnPath::Prefill, StepLayout::FreshPrefill { seqs, max_len }, _, Some(l)) => {
                l.launch(gpu, &io(s.k_pack, s.v_pack), d.heads(), s.t, *seqs, *max_len)
            }
            _ => {
                let mut args = Arg::ptrs([s.qkv, s.k_cache, s.v_cache, s.out, s.tok_seq, s.tok_pos]);
                args.extend(step_ints(s, d));
                args.push(Arg::F32(softmax_scale(d.head_dim as i64)));
                let grid = (d.n_heads as u32, s.t as u32, 1);
                // SAFETY: see the note on `gather`.
                unsafe { gpu.launch(self.get("attention"), grid, (128, 1, 1), 0, &args) }
            }
        }
    }

    pub fn swiglu(&self, gpu: &Gpu, gate_up: u64, out: u64, t: usize, ffn: usize) -> Result<()> {
        match self.tuned::<OneKernel<SwiGluLaunch>>(OpKind::SwiGlu) {
            None => {
                // SAFETY: see the note on `gather`.
                unsafe {
                    gpu.launch(
                        self.get("swiglu"),
                        grid_stride(t * ffn),
                        (256, 1, 1),
                        0,
                        &[Arg::Ptr(gate_up), Arg::Ptr(out), Arg::I32(t as i32), Arg::I32(ffn as i32)],
                    )
                }
            }
            // SAFETY: see the note on `gather`; `k` was compiled with `l`'s tunables.
            Some(OneKernel { kernel: k, launch: l }) => unsafe { l.launch(gpu, k, gate_up, out, t as i64, ffn as i64) },
        }
    }

    /// x += y over `n` elements (the linears fuse the residual; this is for paths that don't).
    pub fn residual_add(&self, gpu: &Gpu, x: u64, y: u64, n: usize) -> Result<()> {
        // SAFETY: see the note on `gather`.
        unsafe {
            gpu.launch(
                self.get("residual_add"),
                grid_stride(n),
                (256, 1, 1),
                0,
                &[Arg::Ptr(x), Arg::Ptr(y), Arg::U64(n as u64)],
            )
        }
    }

    pub fn argmax(&self, gpu: &Gpu, logits: u64, out: u64, rows: usize, n: usize) -> Result<()> {
        // SAFETY: see the note on `gather`.
        unsafe {
            gpu.launch(
                self.get("argmax_rows"),
                (rows as u32, 1, 1),
                (1024, 1, 1),
                0,
                &[Arg::Ptr(logits), Arg::Ptr(out), Arg::I32(rows as i32), Arg::I32(n as i32)],
            )
        }
    }

    pub fn fill_const(&self, gpu: &Gpu, p: u64, n: usize, v: f32) -> Result<()> {
        // SAFETY: see the note on `gather`.
        unsafe {
            gpu.launch(
                self.get("fill_const_bf16"),
                grid_stride(n),
                (256, 1, 1),
                0,
                &[Arg::Ptr(p), Arg::U64(n as u64), Arg::F32(v)],
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llama::config::LlamaConfig;
    use crate::llama::gpu::shape::ModelShape;

    #[test]
    fn tuned_op_rows_agree_with_their_families() {
        // The choice notes list the ops in this order.
        let names: Vec<&str> = TUNED_OPS.iter().map(|op| op.name).collect();
        assert_eq!(names, ["rmsnorm", "swiglu", "rope", "attention_prefill", "attention_decode"]);
        let mut kinds: Vec<OpKind> = TUNED_OPS.iter().map(|op| op.kind).collect();
        kinds.sort();
        kinds.dedup();
        assert_eq!(kinds.len(), TUNED_OPS.len(), "one row per op kind");
        for op in TUNED_OPS {
            for family in op.families {
                let fam = crate::kernels::family(family).unwrap();
                let sweep =
                    crate::tune::space::Sweep::load(&crate::paths::sweep_file(family), fam.shape_dims()).unwrap();
                for v in &sweep.variants {
                    let module = fam.entries(&v.name).unwrap();
                    for e in (op.entries)(&v.name) {
                        assert!(module.contains(e), "{}: {family} {} has no entry {e}", op.name, v.name);
                    }
                }
            }
        }
    }

    #[test]
    fn launchers_come_back_as_their_own_type() {
        struct A(u32);
        struct B;
        impl TunedLauncher for A {}
        impl TunedLauncher for B {}
        let boxed: BTreeMap<OpKind, Box<dyn TunedLauncher>> =
            [(OpKind::RmsNorm, Box::new(A(7)) as Box<dyn TunedLauncher>), (OpKind::Rope, Box::new(B))].into();
        assert_eq!(downcast::<A>(boxed[&OpKind::RmsNorm].as_ref()).map(|a| a.0), Some(7));
        assert!(downcast::<B>(boxed[&OpKind::RmsNorm].as_ref()).is_none());
        assert!(downcast::<B>(boxed[&OpKind::Rope].as_ref()).is_some());
    }

    #[test]
    fn tuned_op_shapes_are_the_model_shapes() {
        let c = LlamaConfig::preset("llama3-8b").unwrap();
        let shape = ModelShape { batch: 8, max_seq: 4096, max_step_tokens: 8 * 512 };
        let facts = ModelFacts { config: &c, shape: &shape, max_smem: 227 * 1024 };
        let shape_of = |name: &str| (TUNED_OPS.iter().find(|op| op.name == name).unwrap().shape)(&facts);
        assert_eq!(shape_of("rmsnorm").unwrap(), [("rows", 1), ("dim", 4096)]);
        assert_eq!(shape_of("swiglu").unwrap(), [("tokens", 1), ("ffn", 14336)]);
        assert_eq!(shape_of("rope").unwrap(), [("B", 8), ("S", 1), ("Hq", 32), ("Hkv", 8), ("D", 128)]);
        let prefill = [("B", 8), ("S", 512), ("H", 32), ("KVH", 8), ("D", 128)];
        assert_eq!(shape_of("attention_prefill").unwrap(), prefill);
        let decode = [("B", 8), ("L", 4096), ("H", 32), ("KVH", 8), ("D", 128)];
        assert_eq!(shape_of("attention_decode").unwrap(), decode);
        // A head dim the attention families do not take: those ops keep the reference kernel.
        let c80 = LlamaConfig { head_dim: 80, ..c.clone() };
        let facts = ModelFacts { config: &c80, ..facts };
        for op in TUNED_OPS {
            let fits = (op.shape)(&facts).is_ok();
            assert_eq!(fits, !op.name.starts_with("attention"), "{}", op.name);
        }
    }
}
