//! The non-linear ops of the model (kernels/llama/ops.cu) and the seam where tuned kernel
//! families plug in.
//!
//! Every op kind has an [`OpImpl`]: `Reference` (the plain kernel of ops.cu, what
//! `--reference` runs) or `Tuned` (a kernlab family: rmsnorm, swiglu, rope, attention_prefill,
//! attention_decode), whose config is looked up in the tuned database the way
//! [`super::linear`] does for GEMMs, nearest shape, else the template defaults. The linear
//! layers have their own backend ([`super::linear::LinearBackend`]); the attention families'
//! contracts and launches are in [`super::attention`].

use super::attention::{self, AttnIo, DecodeKernels, Heads, PrefillKernels, StepLayout};
use super::shape::ModelShape;
use crate::gpu::cache::ModuleCache;
use crate::gpu::device::{Arg, DevBuf, Gpu, Kernel};
use crate::gpu::nvrtc::CompileRequest;
use crate::kernels::attention_common::{DECODE_SOURCE, PREFILL_SOURCE};
use crate::kernels::attention_decode::DecodeLaunch;
use crate::kernels::attention_prefill::wgmma::{wgmma_smem_bytes, WgmmaConfig, PREFILL_WGMMA_SOURCE};
use crate::kernels::attention_prefill::MmaPrefillLaunch;
use crate::kernels::rmsnorm::{RmsNormIo, RmsNormLaunch};
use crate::kernels::rope::{RopeDims, RopeIo, RopeLaunch};
use crate::kernels::swiglu::SwiGluLaunch;
use crate::kernels::tunables::{template_defaults, Tunables};
use crate::kernels::DType;
use crate::llama::config::LlamaConfig;
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

/// Op kinds of the model, also the rows of the `--profile` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    Embedding,
    RmsNorm,
    GemmQkv,
    Rope,
    KvAppend,
    /// Attention of decode steps (one token per sequence).
    Attention,
    /// Attention of every other step (prefill).
    AttentionPrefill,
    GemmO,
    GemmGateUp,
    SwiGlu,
    GemmDown,
    GemmLmHead,
    Argmax,
}

impl OpKind {
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Embedding => "embedding",
            OpKind::RmsNorm => "rmsnorm",
            OpKind::GemmQkv => "gemm qkv",
            OpKind::Rope => "rope",
            OpKind::KvAppend => "kv_append",
            OpKind::Attention => "attention",
            OpKind::AttentionPrefill => "attention (prefill)",
            OpKind::GemmO => "gemm o (+residual)",
            OpKind::GemmGateUp => "gemm gate_up",
            OpKind::SwiGlu => "swiglu",
            OpKind::GemmDown => "gemm down (+residual)",
            OpKind::GemmLmHead => "gemm lm_head",
            OpKind::Argmax => "argmax",
        }
    }
}

/// How one non-linear op is computed.
#[derive(Debug, Clone, PartialEq)]
pub enum OpImpl {
    /// The plain kernel of kernels/llama/ops.cu.
    Reference,
    /// A kernlab family kernel: the tuned database's winner nearest the model's shape, or
    /// the variant's template defaults. Carries what the report prints.
    Tuned { family: String, variant: String, params: BTreeMap<String, i64> },
}

/// The op implementations of one model instance.
#[derive(Debug, Clone)]
pub struct OpChoice {
    pub rmsnorm: OpImpl,
    pub rope: OpImpl,
    /// Steps whose sequences all start at position 0 (see [`StepLayout`]).
    pub attention_prefill: OpImpl,
    /// Steps of one token per sequence.
    pub attention_decode: OpImpl,
    pub swiglu: OpImpl,
}

impl OpChoice {
    pub fn reference() -> OpChoice {
        OpChoice {
            rmsnorm: OpImpl::Reference,
            rope: OpImpl::Reference,
            attention_prefill: OpImpl::Reference,
            attention_decode: OpImpl::Reference,
            swiglu: OpImpl::Reference,
        }
    }

    /// What the tuned path uses for the non-GEMM ops: each family's tuned winner nearest the
    /// model's decode shape (prefill attention: its prefill shape), else the template
    /// defaults; an op whose family cannot take the model's shape keeps its reference
    /// kernel. Every decision is one line of the returned notes.
    pub fn tuned(
        gpu: &Gpu,
        cache: &ModuleCache,
        db_path: &std::path::Path,
        c: &LlamaConfig,
        shape: &ModelShape,
    ) -> (OpChoice, Vec<String>) {
        let mut notes = vec![];
        let mut choice = OpChoice::reference();
        let (b, h, kvh, d) = (shape.batch as i64, c.n_heads as i64, c.n_kv_heads as i64, c.head_dim as i64);
        let mut take = |op: &str, r: Result<(OpImpl, String)>| match r {
            Ok((imp, note)) => {
                notes.push(note);
                imp
            }
            Err(e) => {
                notes.push(format!("{op}: using the reference kernel ({e:#})"));
                OpImpl::Reference
            }
        };
        choice.rmsnorm = take(
            "rmsnorm",
            tuned_family_choice(gpu, cache, db_path, &["rmsnorm"], &[("rows", 1), ("dim", c.dim as i64)]),
        );
        choice.swiglu = take(
            "swiglu",
            tuned_family_choice(gpu, cache, db_path, &["swiglu"], &[("tokens", 1), ("ffn", c.ffn_dim as i64)]),
        );
        let qkv_dim = (h + 2 * kvh) * d;
        choice.rope = take(
            "rope",
            tuned_family_choice(
                gpu,
                cache,
                db_path,
                &["rope"],
                &[("B", b), ("S", 1), ("Hq", h), ("Hkv", kvh), ("D", d)],
            )
            .and_then(|chosen| fit_rope(chosen, d, qkv_dim)),
        );
        let max_smem = gpu.props.max_smem_optin as i64;
        let fits = attention::families_fit(c.n_heads, c.n_kv_heads, c.head_dim);
        let prompt = (shape.max_step_tokens / shape.batch.max(1)).max(1) as i64;
        choice.attention_prefill = take(
            "attention_prefill",
            fits.as_ref().map_err(|e| anyhow::anyhow!("{e:#}")).and_then(|_| {
                let chosen = tuned_family_choice(
                    gpu,
                    cache,
                    db_path,
                    &["attention_prefill_varlen", "attention_prefill"],
                    &[("B", b), ("S", prompt), ("H", h), ("KVH", kvh), ("D", d)],
                )?;
                fit_attention(chosen, d, max_smem, |t| {
                    if t.variant() == "flash_wgmma" {
                        let c = WgmmaConfig::new(t)?;
                        Ok(wgmma_smem_bytes(c.block_m(), c.block_n, c.stages, d, 2))
                    } else {
                        Ok(MmaPrefillLaunch::new(t)?.smem_bytes(2))
                    }
                })
            }),
        );
        choice.attention_decode = take(
            "attention_decode",
            fits.as_ref().map_err(|e| anyhow::anyhow!("{e:#}")).and_then(|_| {
                let chosen = tuned_family_choice(
                    gpu,
                    cache,
                    db_path,
                    &["attention_decode_varlen", "attention_decode"],
                    &[("B", b), ("L", shape.max_seq as i64), ("H", h), ("KVH", kvh), ("D", d)],
                )?;
                fit_attention(chosen, d, max_smem, |t| Ok(DecodeLaunch::new(t)?.smem_bytes(2)))
            }),
        );
        if matches!(choice.attention_prefill, OpImpl::Tuned { .. }) {
            notes.push(
                "attention_prefill: used for prefills without a cached prefix; other multi-token steps take the reference kernel"
                    .into(),
            );
        }
        (choice, notes)
    }
}

/// One op's family choice: the implementation and the note saying where it came from.
type Chosen = (OpImpl, String);

/// The family variant and tunables for one op: the tuned winner nearest `shape` in the first
/// of `families` that has one (the varlen and plain attention families share a template),
/// else the first family's first variant with its template defaults.
fn tuned_family_choice(
    gpu: &Gpu,
    cache: &ModuleCache,
    db_path: &std::path::Path,
    families: &[&str],
    shape: &[(&str, i64)],
) -> Result<Chosen> {
    use crate::tune::db::{Query, TunedDb};
    let db = TunedDb::load(db_path)?;
    let q_shape: BTreeMap<String, i64> = shape.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let cc = gpu.props.cc();
    let mut first = None;
    for family in families {
        let fam = crate::kernels::family(family)?;
        let sweep = crate::tune::space::Sweep::load(&crate::paths::sweep_file(family), fam.shape_dims())?;
        let hashes: BTreeMap<String, String> =
            sweep.variants.iter().map(|v| (v.name.clone(), crate::gpu::cache::source_hash(&v.source))).collect();
        let q = Query {
            kernel: family,
            gpu: &gpu.props.name,
            cc: &cc,
            nvrtc: cache.nvrtc_version(),
            dtype: "bf16",
            shape: &q_shape,
            source_hashes: &hashes,
        };
        if let Some(f) = db.lookup(&q) {
            if let Some(v) = sweep.variant(&f.entry.variant) {
                let note = format!("{family}: tuned {} ({})", v.name, f.note);
                return Ok((with_defaults(family, &v.name, &v.source, f.entry.params.clone()), note));
            }
        }
        if first.is_none() {
            first = Some(sweep);
        }
    }
    let sweep = first.ok_or_else(|| anyhow::anyhow!("no family given"))?;
    let family = families[0];
    let v = sweep.variants.first().ok_or_else(|| anyhow::anyhow!("{family} sweep has no variant"))?;
    let note = format!("{family}: {} with its template defaults (not tuned on this GPU)", v.name);
    Ok((with_defaults(family, &v.name, &v.source, BTreeMap::new()), note))
}

/// `params` over the template's defaults (bf16, as the model runs), so launch geometry and
/// compile defines agree.
fn with_defaults(family: &str, variant: &str, source: &str, params: BTreeMap<String, i64>) -> OpImpl {
    let all = Tunables::from_template(variant, source, DType::BF16, &params).into_values();
    OpImpl::Tuned { family: family.to_string(), variant: variant.to_string(), params: all }
}

/// The rope config must split the model's half head into whole vectors and address Q and K
/// inside the fused qkv rows (row stride a multiple of VEC); a winner that does not is
/// replaced by the widest vector that does.
fn fit_rope((imp, note): Chosen, d: i64, qkv_dim: i64) -> Result<Chosen> {
    let OpImpl::Tuned { family, variant, mut params } = imp else { return Ok((imp, note)) };
    let half = d / 2;
    let tunables = |p: &BTreeMap<String, i64>| Tunables::new(&variant, p.clone());
    let ok = |p: &BTreeMap<String, i64>| -> Result<bool> {
        let t = tunables(p);
        let (vec, threads) = (t.get("VEC")?, t.get("THREADS")?);
        Ok(vec > 0 && half % vec == 0 && qkv_dim % vec == 0 && threads >= half / vec)
    };
    if ok(&params)? {
        return Ok((OpImpl::Tuned { family, variant, params }, note));
    }
    // One of 1, 2, 4, 8 always fits (1 divides everything).
    let vec = [8, 4, 2, 1].into_iter().find(|v| half % v == 0 && qkv_dim % v == 0).unwrap_or(1);
    let threads = tunables(&params).get("THREADS")?.max(crate::kernels::ceil_div(half / vec, 32) * 32);
    params.insert("VEC".into(), vec);
    params.insert("THREADS".into(), threads);
    if !ok(&params)? {
        bail!("no rope_llama3 configuration fits head dim {d}");
    }
    Ok((
        OpImpl::Tuned { family, variant, params },
        format!("{note}; VEC = {vec}, THREADS = {threads} to fit head dim {d}"),
    ))
}

/// An attention config must be compiled for the model's head dim; a winner measured at
/// another head dim is replaced by the template defaults at the model's.
fn fit_attention(
    (imp, note): Chosen,
    d: i64,
    max_smem: i64,
    smem: impl Fn(&Tunables) -> Result<i64>,
) -> Result<Chosen> {
    let OpImpl::Tuned { family, variant, mut params } = imp else { return Ok((imp, note)) };
    let mut note = note;
    if params.get("HEAD_DIM") != Some(&d) {
        let defaults = default_attention_params(&family, &variant);
        if params != defaults {
            note = format!("{family}: {variant} with its template defaults (the tuned winner is for another head dim)");
        }
        params = defaults;
        params.insert("HEAD_DIM".into(), d);
    }
    let bytes = smem(&Tunables::new(&variant, params.clone()))?;
    if bytes > max_smem {
        bail!("{family} needs {bytes} B of shared memory per block, the GPU allows {max_smem}");
    }
    Ok((OpImpl::Tuned { family, variant, params }, note))
}

/// The attention templates' defaults, read from the templates.
fn default_attention_params(family: &str, variant: &str) -> BTreeMap<String, i64> {
    let source = if family.starts_with("attention_decode") {
        DECODE_SOURCE
    } else if variant == "flash_wgmma" {
        PREFILL_WGMMA_SOURCE
    } else {
        PREFILL_SOURCE
    };
    template_defaults(source, DType::BF16)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn tuned(family: &str, params: &[(&str, i64)]) -> Chosen {
        let params = params.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        (OpImpl::Tuned { family: family.into(), variant: "v".into(), params }, format!("{family}: tuned v (...)"))
    }

    fn params(c: &Chosen) -> &BTreeMap<String, i64> {
        match &c.0 {
            OpImpl::Tuned { params, .. } => params,
            OpImpl::Reference => panic!("expected a tuned choice"),
        }
    }

    #[test]
    fn rope_config_fits_the_head_dim() {
        // Llama-3-8B: kept as it is.
        let c = fit_rope(tuned("rope", &[("VEC", 8), ("THREADS", 64), ("TOKENS_PER_BLOCK", 1)]), 128, 6144).unwrap();
        assert_eq!((params(&c)["VEC"], params(&c)["THREADS"]), (8, 64));
        // Half head of 17 pairs: only scalar access; one head needs 17 threads.
        let c = fit_rope(tuned("rope", &[("VEC", 8), ("THREADS", 64)]), 34, 34 * 5).unwrap();
        assert_eq!((params(&c)["VEC"], params(&c)["THREADS"]), (1, 64));
        assert!(c.1.contains("VEC = 1"), "{}", c.1);
        // 20 pairs: the widest vector that splits them is 4.
        let c = fit_rope(tuned("rope", &[("VEC", 8), ("THREADS", 32)]), 40, 40 * 6).unwrap();
        assert_eq!((params(&c)["VEC"], params(&c)["THREADS"]), (4, 32));
        // Too few threads for one head: the vector is widened back to 8.
        let c = fit_rope(tuned("rope", &[("VEC", 2), ("THREADS", 32)]), 256, 256 * 6).unwrap();
        assert_eq!((params(&c)["VEC"], params(&c)["THREADS"]), (8, 32));
        // 65 pairs, scalar: raised to three whole warps.
        let c = fit_rope(tuned("rope", &[("VEC", 8), ("THREADS", 64)]), 130, 130 * 6).unwrap();
        assert_eq!((params(&c)["VEC"], params(&c)["THREADS"]), (1, 96));
        assert_eq!(fit_rope((OpImpl::Reference, "n".into()), 128, 6144).unwrap().0, OpImpl::Reference);
    }

    #[test]
    fn attention_config_takes_the_model_head_dim() {
        let smem = |t: &Tunables| {
            let p = t.values();
            Ok(crate::kernels::attention_decode::decode_smem_bytes(
                p["BLOCK_N"],
                p["NUM_WARPS"],
                p["STAGES"],
                p["HEAD_DIM"],
                2,
            ))
        };
        let winner = [("HEAD_DIM", 128), ("BLOCK_N", 128), ("NUM_WARPS", 8), ("STAGES", 2), ("SPLITS", 16)];
        // Winner at the model's head dim: used as is.
        let c = fit_attention(tuned("attention_decode", &winner), 128, 227 * 1024, smem).unwrap();
        assert_eq!(params(&c)["SPLITS"], 16);
        assert!(c.1.contains("tuned"));
        // Winner at another head dim: the template defaults at the model's.
        let c = fit_attention(tuned("attention_decode", &winner), 64, 227 * 1024, smem).unwrap();
        let mut want = default_attention_params("attention_decode", "splitkv");
        want.insert("HEAD_DIM".into(), 64);
        assert_eq!(params(&c), &want);
        assert!(c.1.contains("template defaults"), "{}", c.1);
        // Too much shared memory for the device: an error (the op keeps its reference kernel).
        assert!(fit_attention(tuned("attention_decode", &winner), 128, 100 * 1024, smem).is_err());
        assert_eq!(default_attention_params("attention_prefill_varlen", "flash_mma")["BLOCK_M"], 128);
        // flash_wgmma keeps its own defaults (CWG, not BLOCK_M, sets its query rows).
        let w = default_attention_params("attention_prefill", "flash_wgmma");
        assert_eq!((w["CWG"], w["BLOCK_N"], w.get("BLOCK_M")), (2, 128, None));
    }
}
