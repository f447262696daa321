//! The non-linear ops of the model (kernels/llama/ops.cu) and the seam where tuned kernel
//! families plug in.
//!
//! Every op kind has an [`OpImpl`]: today `Reference` (the plain kernel of ops.cu) for all of
//! them; when a family (rmsnorm, rope, attention, swiglu, ...) lands, its tuned kernel is
//! looked up in the tuned database the way [`super::linear`] does for GEMMs and stored as
//! `OpImpl::Tuned`, and only the `match` in the op's launch function changes. The linear
//! layers have their own backend ([`super::linear::LinearBackend`]).

use crate::gpu::cache::ModuleCache;
use crate::gpu::device::{Arg, DevBuf, Gpu, Kernel};
use crate::gpu::nvrtc::CompileRequest;
use anyhow::{bail, Result};
use std::collections::BTreeMap;

pub const OPS_SOURCE: &str = include_str!("../../../kernels/llama/ops.cu");
pub const OPS_NAME: &str = "kernels/llama/ops.cu";

/// Entry points ops.cu must provide.
pub const OPS_ENTRIES: &[&str] = &[
    "embed_gather",
    "rmsnorm",
    "rope_qk",
    "kv_append",
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
    Attention,
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
    /// A tuned family kernel (not wired yet for any non-GEMM op: the families are in
    /// progress). Carries what the report prints.
    Tuned { family: String, variant: String, params: BTreeMap<String, i64> },
}

/// The op implementations of one model instance.
#[derive(Debug, Clone)]
pub struct OpChoice {
    pub rmsnorm: OpImpl,
    pub rope: OpImpl,
    pub attention: OpImpl,
    pub swiglu: OpImpl,
}

impl OpChoice {
    pub fn reference() -> OpChoice {
        OpChoice {
            rmsnorm: OpImpl::Reference,
            rope: OpImpl::Reference,
            attention: OpImpl::Reference,
            swiglu: OpImpl::Reference,
        }
    }
    /// What the tuned path uses for the non-GEMM ops: the rmsnorm and swiglu families with
    /// the tuned database's winner nearest the decode shape (template defaults when none is
    /// measured); rope and attention stay on the reference kernels (their family contracts
    /// take contiguous Q/K, the model keeps them inside the fused qkv buffer).
    pub fn tuned(
        gpu: &Gpu,
        cache: &ModuleCache,
        db_path: &std::path::Path,
        dim: usize,
        ffn: usize,
    ) -> (OpChoice, Vec<String>) {
        let mut notes =
            vec!["rope, attention: the model uses its reference kernels (not wired to the families yet)".to_string()];
        let mut choice = OpChoice::reference();
        for (family, shape, slot) in [
            ("rmsnorm", [("rows", 1i64), ("dim", dim as i64)], 0),
            ("swiglu", [("tokens", 1i64), ("ffn", ffn as i64)], 1),
        ] {
            match tuned_family_choice(gpu, cache, db_path, family, &shape) {
                Ok((imp, note)) => {
                    notes.push(note);
                    if slot == 0 {
                        choice.rmsnorm = imp;
                    } else {
                        choice.swiglu = imp;
                    }
                }
                Err(e) => notes.push(format!("{family}: using the reference kernel ({e:#})")),
            }
        }
        (choice, notes)
    }
}

/// The family variant and tunables for one op: the tuned winner nearest `shape`, else the
/// first variant's template defaults.
fn tuned_family_choice(
    gpu: &Gpu,
    cache: &ModuleCache,
    db_path: &std::path::Path,
    family: &str,
    shape: &[(&str, i64)],
) -> Result<(OpImpl, String)> {
    use crate::tune::db::{Query, TunedDb};
    let fam = crate::kernels::family(family)?;
    let sweep = crate::tune::space::Sweep::load(&crate::paths::sweep_file(family), fam.shape_dims())?;
    let variant = sweep.variants.first().ok_or_else(|| anyhow::anyhow!("{family} sweep has no variant"))?;
    let hashes: BTreeMap<String, String> =
        sweep.variants.iter().map(|v| (v.name.clone(), crate::gpu::cache::source_hash(&v.source))).collect();
    let db = TunedDb::load(db_path)?;
    let q_shape: BTreeMap<String, i64> = shape.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let cc = gpu.props.cc();
    let q = Query {
        kernel: family,
        gpu: &gpu.props.name,
        cc: &cc,
        nvrtc: cache.nvrtc_version(),
        dtype: "bf16",
        shape: &q_shape,
        source_hashes: &hashes,
    };
    let (name, source, params, note) = match db.lookup(&q) {
        Some(f) => {
            let v = sweep.variant(&f.entry.variant).unwrap_or(variant);
            (
                v.name.clone(),
                v.source.clone(),
                f.entry.params.clone(),
                format!("{family}: tuned {} ({})", v.name, f.note),
            )
        }
        None => (
            variant.name.clone(),
            variant.source.clone(),
            BTreeMap::new(),
            format!("{family}: {} with its template defaults (not tuned on this GPU)", variant.name),
        ),
    };
    // Fill what the winner does not set with the template's defaults, so launch geometry
    // and compile defines agree.
    let mut all = super::linear::template_defaults(&source);
    // VEC's default depends on the element type (`#if defined(KL_FP32)`), which the simple
    // default reader cannot see: bf16 takes 16-byte vectors.
    all.entry("VEC".to_string()).or_insert(8);
    all.extend(params);
    Ok((OpImpl::Tuned { family: family.to_string(), variant: name, params: all }, note))
}

/// The compiled ops.cu module.
pub struct OpKernels {
    k: BTreeMap<&'static str, Kernel>,
    /// Family kernels of the ops whose choice is `Tuned`, by op name.
    tuned: BTreeMap<&'static str, Kernel>,
    pub choice: OpChoice,
}

fn grid_stride(n: usize) -> (u32, u32, u32) {
    (n.div_ceil(256).clamp(1, 65_535 * 4) as u32, 1, 1)
}

fn tuned_unavailable(op: &str) -> anyhow::Error {
    anyhow::anyhow!("{op}: a tuned family kernel was selected but the {op} family is not wired into the model yet")
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

/// The request that compiles ops.cu for `arch` (also used by the NVRTC tests).
pub fn compile_request(arch: &str) -> CompileRequest {
    CompileRequest { name: OPS_NAME.into(), source: OPS_SOURCE.into(), defines: BTreeMap::new(), arch: arch.into() }
}

impl OpKernels {
    pub fn new(gpu: &Gpu, cache: &ModuleCache, choice: OpChoice) -> Result<OpKernels> {
        let m = cache.get_or_compile(&compile_request(&gpu.props.arch()))?;
        let mut k = BTreeMap::new();
        for e in OPS_ENTRIES {
            k.insert(*e, gpu.load(&m.cubin, e)?);
        }
        let mut tuned = BTreeMap::new();
        for (op, imp, entry) in [("rmsnorm", &choice.rmsnorm, "rmsnorm_rows"), ("swiglu", &choice.swiglu, "swiglu")] {
            if let OpImpl::Tuned { family, variant, params } = imp {
                let fam = crate::kernels::family(family)?;
                let sweep = crate::tune::space::Sweep::load(&crate::paths::sweep_file(family), fam.shape_dims())?;
                let c = crate::tune::space::Candidate { variant: variant.clone(), params: params.clone() };
                let req = crate::tune::compile::request(&sweep, &c, crate::kernels::DType::BF16, &gpu.props.arch());
                let m = cache.get_or_compile(&req)?;
                tuned.insert(op, gpu.load(&m.cubin, entry)?);
            }
        }
        Ok(OpKernels { k, tuned, choice })
    }

    fn get(&self, e: &str) -> &Kernel {
        &self.k[e]
    }

    /// out[t] = table[ids[t]] for `n` rows of `dim`.
    pub fn gather(&self, gpu: &Gpu, table: u64, ids: u64, out: u64, n: usize, dim: usize) -> Result<()> {
        // SAFETY (all launches in this file): the pointers are device buffers the model
        // allocated for these sizes (see model.rs), arguments match the entry's signature
        // in ops.cu's header, ints are in range (checked when the model is built).
        gpu.launch(
            self.get("embed_gather"),
            (n as u32, 1, 1),
            (256, 1, 1),
            0,
            &[Arg::Ptr(table), Arg::Ptr(ids), Arg::Ptr(out), Arg::I32(n as i32), Arg::I32(dim as i32)],
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub fn rmsnorm(&self, gpu: &Gpu, x: u64, w: &DevBuf, out: u64, rows: usize, dim: usize, eps: f32) -> Result<()> {
        match &self.choice.rmsnorm {
            OpImpl::Reference => gpu.launch(
                self.get("rmsnorm"),
                (rows as u32, 1, 1),
                (256, 1, 1),
                0,
                &[Arg::Ptr(x), w.arg(), Arg::Ptr(out), Arg::I32(rows as i32), Arg::I32(dim as i32), Arg::F32(eps)],
            ),
            OpImpl::Tuned { params, .. } => {
                let p = |k: &str| params.get(k).copied().unwrap_or(1);
                let (rpb, tpr) = (p("ROWS_PER_BLOCK"), p("THREADS_PER_ROW"));
                if dim as i64 > tpr * p("VEC") * p("CHUNKS") {
                    bail!(
                        "tuned rmsnorm holds rows of at most {} elements, the model has {dim}",
                        tpr * p("VEC") * p("CHUNKS")
                    );
                }
                // h = NULL: the plain norm (the model fuses its residual adds into the GEMMs).
                gpu.launch(
                    &self.tuned["rmsnorm"],
                    (crate::kernels::ceil_div(rows as i64, rpb) as u32, 1, 1),
                    ((rpb * tpr) as u32, 1, 1),
                    0,
                    &[
                        Arg::Ptr(x),
                        Arg::Ptr(0),
                        Arg::Ptr(0),
                        Arg::Ptr(out),
                        w.arg(),
                        Arg::F32(eps),
                        Arg::I32(rows as i32),
                        Arg::I32(dim as i32),
                    ],
                )
            }
        }
    }

    pub fn rope(&self, gpu: &Gpu, qkv: u64, tok_pos: u64, inv_freq: &DevBuf, t: usize, d: AttnDims) -> Result<()> {
        match &self.choice.rope {
            OpImpl::Reference => gpu.launch(
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
            ),
            OpImpl::Tuned { .. } => Err(tuned_unavailable("rope")),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn kv_append(
        &self,
        gpu: &Gpu,
        qkv: u64,
        k: u64,
        v: u64,
        tok_seq: u64,
        tok_pos: u64,
        t: usize,
        d: AttnDims,
    ) -> Result<()> {
        gpu.launch(
            self.get("kv_append"),
            (t as u32, 1, 1),
            (256, 1, 1),
            0,
            &[
                Arg::Ptr(qkv),
                Arg::Ptr(k),
                Arg::Ptr(v),
                Arg::Ptr(tok_seq),
                Arg::Ptr(tok_pos),
                Arg::I32(t as i32),
                Arg::I32(d.n_heads),
                Arg::I32(d.n_kv_heads),
                Arg::I32(d.head_dim),
                Arg::I32(d.max_seq),
            ],
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &self,
        gpu: &Gpu,
        qkv: u64,
        k: u64,
        v: u64,
        out: u64,
        tok_seq: u64,
        tok_pos: u64,
        t: usize,
        d: AttnDims,
    ) -> Result<()> {
        if d.head_dim % 32 != 0 || d.head_dim > 256 {
            bail!("the reference attention kernel needs head_dim a multiple of 32 and at most 256, got {}", d.head_dim);
        }
        match &self.choice.attention {
            OpImpl::Reference => gpu.launch(
                self.get("attention"),
                (d.n_heads as u32, t as u32, 1),
                (128, 1, 1),
                0,
                &[
                    Arg::Ptr(qkv),
                    Arg::Ptr(k),
                    Arg::Ptr(v),
                    Arg::Ptr(out),
                    Arg::Ptr(tok_seq),
                    Arg::Ptr(tok_pos),
                    Arg::I32(t as i32),
                    Arg::I32(d.n_heads),
                    Arg::I32(d.n_kv_heads),
                    Arg::I32(d.head_dim),
                    Arg::I32(d.max_seq),
                    Arg::F32(1.0 / (d.head_dim as f32).sqrt()),
                ],
            ),
            OpImpl::Tuned { .. } => Err(tuned_unavailable("attention")),
        }
    }

    pub fn swiglu(&self, gpu: &Gpu, gate_up: u64, out: u64, t: usize, ffn: usize) -> Result<()> {
        match &self.choice.swiglu {
            OpImpl::Reference => gpu.launch(
                self.get("swiglu"),
                grid_stride(t * ffn),
                (256, 1, 1),
                0,
                &[Arg::Ptr(gate_up), Arg::Ptr(out), Arg::I32(t as i32), Arg::I32(ffn as i32)],
            ),
            OpImpl::Tuned { params, .. } => {
                let p = |k: &str| params.get(k).copied().unwrap_or(1);
                let per_block = p("THREADS") * p("VEC") * p("ITEMS");
                gpu.launch(
                    &self.tuned["swiglu"],
                    (crate::kernels::ceil_div(ffn as i64, per_block) as u32, t.min(65_535) as u32, 1),
                    (p("THREADS") as u32, 1, 1),
                    0,
                    &[Arg::Ptr(gate_up), Arg::Ptr(out), Arg::I32(t as i32), Arg::I32(ffn as i32)],
                )
            }
        }
    }

    /// x += y over `n` elements (the linears fuse the residual; this is for paths that don't).
    pub fn residual_add(&self, gpu: &Gpu, x: u64, y: u64, n: usize) -> Result<()> {
        gpu.launch(
            self.get("residual_add"),
            grid_stride(n),
            (256, 1, 1),
            0,
            &[Arg::Ptr(x), Arg::Ptr(y), Arg::U64(n as u64)],
        )
    }

    pub fn argmax(&self, gpu: &Gpu, logits: u64, out: u64, rows: usize, n: usize) -> Result<()> {
        gpu.launch(
            self.get("argmax_rows"),
            (rows as u32, 1, 1),
            (1024, 1, 1),
            0,
            &[Arg::Ptr(logits), Arg::Ptr(out), Arg::I32(rows as i32), Arg::I32(n as i32)],
        )
    }

    pub fn fill_const(&self, gpu: &Gpu, p: u64, n: usize, v: f32) -> Result<()> {
        gpu.launch(
            self.get("fill_const_bf16"),
            grid_stride(n),
            (256, 1, 1),
            0,
            &[Arg::Ptr(p), Arg::U64(n as u64), Arg::F32(v)],
        )
    }
}
