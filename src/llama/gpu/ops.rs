//! The non-linear ops of the model (kernels/llama/ops.cu) and the seam where tuned kernel
//! families plug in.
//!
//! Every op kind has an [`OpImpl`]: `Reference` (the plain kernel of ops.cu, what
//! `--reference` runs) or `Tuned` (a kernlab family: rmsnorm, swiglu, rope, attention_prefill,
//! attention_decode), chosen in [`super::op_choice`]; this module compiles and launches it
//! through the family's own launcher. The linear
//! layers have their own backend ([`super::linear::LinearBackend`]); the attention families'
//! contracts and launches are in [`super::attention`].

use super::attention::{AttnIo, DecodeKernels, Heads, PrefillKernels, StepLayout};
use crate::gpu::cache::ModuleCache;
use crate::gpu::device::{Arg, DevBuf, Gpu, Kernel};
use crate::gpu::nvrtc::CompileRequest;
use crate::kernels::rmsnorm::{RmsNormIo, RmsNormLaunch};
use crate::kernels::rope::{RopeDims, RopeIo, RopeLaunch};
use crate::kernels::swiglu::SwiGluLaunch;
use crate::kernels::tunables::Tunables;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;

pub const OPS_SOURCE: &str = include_str!("../../../kernels/llama/ops.cu");
pub const OPS_NAME: &str = "kernels/llama/ops.cu";

/// Entry points ops.cu must provide.
/// Entry points of attention_decode's module the model launches.
const DECODE_ENTRIES: [&str; 2] = ["attn_decode_split", "attn_decode_combine"];

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

pub use super::op_choice::{OpChoice, OpImpl, OpKind};

/// The compiled ops.cu module.
pub struct OpKernels {
    k: BTreeMap<&'static str, Kernel>,
    /// Family kernels and their launchers when the op's choice is `Tuned`.
    rmsnorm: Option<(Kernel, RmsNormLaunch)>,
    swiglu: Option<(Kernel, SwiGluLaunch)>,
    rope: Option<(Kernel, RopeLaunch)>,
    decode: Option<DecodeKernels>,
    prefill: Option<PrefillKernels>,
    pub choice: OpChoice,
}

fn grid_stride(n: usize) -> (u32, u32, u32) {
    (n.div_ceil(256).clamp(1, 65_535 * 4) as u32, 1, 1)
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
    fn heads(&self) -> Heads {
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
        // Each family kernel with its family's launcher, built once from the same tunables
        // it was compiled with.
        let one = |imp: &OpImpl, entry: &str| -> Result<Option<(Kernel, Tunables)>> {
            Ok(load_tuned(gpu, cache, imp, &[entry])?.map(|(mut ks, t)| (ks.remove(0), t)))
        };
        let rmsnorm = match one(&choice.rmsnorm, "rmsnorm_rows")? {
            Some((k, t)) => Some((k, RmsNormLaunch::new(&t)?)),
            None => None,
        };
        let swiglu = match one(&choice.swiglu, "swiglu")? {
            Some((k, t)) => Some((k, SwiGluLaunch::new(&t)?)),
            None => None,
        };
        let rope = match one(&choice.rope, "rope_llama3")? {
            Some((k, t)) => Some((k, RopeLaunch::new(&t)?)),
            None => None,
        };
        let decode = match load_tuned(gpu, cache, &choice.attention_decode, &DECODE_ENTRIES)? {
            Some((mut ks, t)) => {
                let combine = ks.remove(1);
                Some(DecodeKernels::new(gpu, ks.remove(0), combine, &t)?)
            }
            None => None,
        };
        let prefill_entry = match &choice.attention_prefill {
            OpImpl::Tuned { variant, .. } if variant == "flash_wgmma" => "attn_prefill_wgmma",
            _ => "attn_prefill",
        };
        let prefill = match load_tuned(gpu, cache, &choice.attention_prefill, &[prefill_entry])? {
            Some((mut ks, t)) => Some(PrefillKernels::new(ks.remove(0), &t)?),
            None => None,
        };
        Ok(OpKernels { k, rmsnorm, swiglu, rope, decode, prefill, choice })
    }

    /// Whether this instance runs any attention family (the model then allocates the packed
    /// Q/K/V buffers and the split workspace).
    pub fn uses_attention_families(&self) -> bool {
        self.decode.is_some() || self.prefill.is_some()
    }

    /// The attention kernel for a step of this layout.
    pub fn attention_path(&self, layout: &StepLayout) -> AttnPath {
        match layout {
            StepLayout::Decode { .. } if self.decode.is_some() => AttnPath::Decode,
            StepLayout::FreshPrefill { .. } if self.prefill.is_some() => AttnPath::Prefill,
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
        match &self.rmsnorm {
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
            Some((k, l)) => {
                // h = NULL: the plain norm (the model fuses its residual adds into the GEMMs).
                let io = RmsNormIo { x, h: 0, res: 0, y: out, w: w.ptr };
                // SAFETY: see the note on `gather`; `k` was compiled with `l`'s tunables.
                unsafe { l.launch(gpu, k, &io, rows as i64, dim as i64, eps) }
            }
        }
    }

    pub fn rope(&self, gpu: &Gpu, qkv: u64, tok_pos: u64, inv_freq: &DevBuf, t: usize, d: AttnDims) -> Result<()> {
        match &self.rope {
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
            Some((kern, l)) => {
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
        let dims = [Arg::I32(s.t as i32), Arg::I32(d.n_heads), Arg::I32(d.n_kv_heads), Arg::I32(d.head_dim)];
        let (q_out, kv_out) = match self.attention_path(s.layout) {
            AttnPath::Plain => {
                let mut args = vec![
                    Arg::Ptr(s.qkv),
                    Arg::Ptr(s.k_cache),
                    Arg::Ptr(s.v_cache),
                    Arg::Ptr(s.tok_seq),
                    Arg::Ptr(s.tok_pos),
                ];
                args.extend(dims);
                args.push(Arg::I32(d.max_seq));
                // SAFETY: see the note on `gather`.
                return unsafe { gpu.launch(self.get("kv_append"), (s.t as u32, 1, 1), (256, 1, 1), 0, &args) };
            }
            AttnPath::Decode => (s.q_pack, (0, 0)),
            AttnPath::Prefill => (s.q_pack, (s.k_pack, s.v_pack)),
        };
        let mut args = vec![
            Arg::Ptr(s.qkv),
            Arg::Ptr(s.k_cache),
            Arg::Ptr(s.v_cache),
            Arg::Ptr(q_out),
            Arg::Ptr(kv_out.0),
            Arg::Ptr(kv_out.1),
            Arg::Ptr(s.tok_seq),
            Arg::Ptr(s.tok_pos),
        ];
        args.extend(dims);
        args.push(Arg::I32(d.max_seq));
        // SAFETY: see the note on `gather`.
        unsafe { gpu.launch(self.get("kv_append_pack"), (s.t as u32, 1, 1), (256, 1, 1), 0, &args) }
    }

    /// Attention of the step's tokens over their sequences' keys (kv_append ran first).
    /// For a decode step, what its launches depend on beyond the token count: the decode
    /// family's split count (0 on the plain kernel, whose grid is fixed). None otherwise.
    pub fn decode_launch_key(&self, layout: &StepLayout, t: usize, d: AttnDims) -> Option<i64> {
        match (self.attention_path(layout), layout, &self.decode) {
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
        match (self.attention_path(s.layout), s.layout, &self.decode, &self.prefill) {
            (AttnPath::Decode, StepLayout::Decode { max_len }, Some(l), _) => {
                l.launch(gpu, &io(s.k_cache, s.v_cache), d.heads(), s.t, *max_len)
            }
            (AttnPath::Prefill, StepLayout::FreshPrefill { seqs, max_len }, _, Some(l)) => {
                l.launch(gpu, &io(s.k_pack, s.v_pack), d.heads(), s.t, *seqs, *max_len)
            }
            // SAFETY: see the note on `gather`.
            _ => unsafe {
                gpu.launch(
                    self.get("attention"),
                    (d.n_heads as u32, s.t as u32, 1),
                    (128, 1, 1),
                    0,
                    &[
                        Arg::Ptr(s.qkv),
                        Arg::Ptr(s.k_cache),
                        Arg::Ptr(s.v_cache),
                        Arg::Ptr(s.out),
                        Arg::Ptr(s.tok_seq),
                        Arg::Ptr(s.tok_pos),
                        Arg::I32(s.t as i32),
                        Arg::I32(d.n_heads),
                        Arg::I32(d.n_kv_heads),
                        Arg::I32(d.head_dim),
                        Arg::I32(d.max_seq),
                        Arg::F32(1.0 / (d.head_dim as f32).sqrt()),
                    ],
                )
            },
        }
    }

    pub fn swiglu(&self, gpu: &Gpu, gate_up: u64, out: u64, t: usize, ffn: usize) -> Result<()> {
        match &self.swiglu {
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
            Some((k, l)) => unsafe { l.launch(gpu, k, gate_up, out, t as i64, ffn as i64) },
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
