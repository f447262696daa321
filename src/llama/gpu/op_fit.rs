//! What the model's tuned ops are chosen as, and fitting a chosen configuration to the
//! model's shapes (head dim, shared memory): the bottom of the model's op modules, used by
//! the choice ([`super::op_choice`]), the tuned-op table ([`super::ops`]) and its row type
//! ([`super::tuned_op`]) alike, so none of them imports another upward.

use crate::kernels::attention_common::{DECODE_SOURCE, PREFILL_SOURCE};
use crate::kernels::attention_prefill::wgmma::PREFILL_WGMMA_SOURCE;
use crate::kernels::tunables::{template_defaults, Tunables};
use crate::kernels::DType;
use crate::kernels::Params;
use anyhow::{bail, Result};
use std::collections::BTreeMap;

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
    /// The gate+up projection with SwiGLU in its epilogue (one launch for both).
    GemmGateUpSwiGlu,
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
            OpKind::GemmGateUpSwiGlu => "gemm gate_up+swiglu",
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

/// One op's family choice: the implementation and the note saying where it came from.
pub type Chosen = (OpImpl, String);

/// The rope config must split the model's half head into whole vectors and address Q and K
/// inside the fused qkv rows (row stride a multiple of VEC); a winner that does not is
/// replaced by the widest vector that does.
pub fn fit_rope((imp, note): Chosen, d: i64, qkv_dim: i64) -> Result<Chosen> {
    let OpImpl::Tuned { family, variant, mut params } = imp else { return Ok((imp, note)) };
    let half = d / 2;
    let tunables = |p: &Params| Tunables::new(&variant, p.clone());
    let ok = |p: &Params| -> Result<bool> {
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
pub fn fit_attention(
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
pub(super) fn default_attention_params(family: &str, variant: &str) -> BTreeMap<String, i64> {
    let source = if family.starts_with("attention_decode") {
        DECODE_SOURCE
    } else if variant == "flash_wgmma" {
        PREFILL_WGMMA_SOURCE
    } else {
        PREFILL_SOURCE
    };
    template_defaults(source, DType::BF16)
}

/// The op implementations of one model instance: one per row of the tuned-op table
/// ([`super::ops::TUNED_OPS`], chosen by `OpChoice::tuned` in [`super::op_choice`]), keyed by the
/// row's op kind; an op without an entry runs its reference kernel.
#[derive(Debug, Clone, Default)]
pub struct OpChoice {
    by_op: BTreeMap<OpKind, OpImpl>,
}

static REFERENCE: OpImpl = OpImpl::Reference;

impl OpChoice {
    pub fn reference() -> OpChoice {
        OpChoice::default()
    }

    /// How `kind` is computed (`Reference` unless a tuned family was chosen for it).
    pub fn get(&self, kind: OpKind) -> &OpImpl {
        self.by_op.get(&kind).unwrap_or(&REFERENCE)
    }

    /// Makes `kind` run `imp`.
    pub fn set(&mut self, kind: OpKind, imp: OpImpl) {
        self.by_op.insert(kind, imp);
    }
}
