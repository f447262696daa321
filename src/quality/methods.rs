//! The quantization methods `kernlab quality` compares, applied to a whole model.
//!
//! Every method quantizes the seven linears of every layer (embeddings, the tied lm_head and
//! the norms stay as they are) into a format the GPU kernels run (`Int4Weight`, int8, bf16),
//! then dequantizes it again: the CPU model evaluates exactly the values a kernel would use.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use half::bf16;
use rayon::prelude::*;

use super::awq_model::{awq_rescale, AwqOptions};
use super::calib::Calibration;
use crate::llama::cpu_ref::LinearInput;
use crate::llama::weights::LayerWeights;
use crate::llama::{Mat, Weights};
use crate::quant::{
    quantize_gptq_prepared, quantize_int8_per_channel, quantize_rtn, quantize_rtn_per_tensor, GptqConfig, GroupSize,
    HalfDtype, Int4Weight, PreparedHessian, RtnConfig,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The model as loaded (for SmolLM2: its Q4_1 linears dequantized to f32).
    Reference,
    /// Linears rounded to bf16.
    Bf16,
    /// int8 weight-only, one scale per output channel.
    Int8,
    RtnTensor {
        symmetric: bool,
    },
    Rtn {
        group: GroupSize,
        symmetric: bool,
    },
    Awq {
        group: usize,
    },
    Gptq {
        group: usize,
        act_order: bool,
    },
    /// The `keep` most sensitive linears in bf16, the rest [`MIXED_BASE`].
    Mixed {
        keep: usize,
    },
}

/// What mixed precision starts from: per-channel RTN, the cheapest int4 format, whose
/// errors are large enough that keeping a few linears in bf16 shows.
pub const MIXED_BASE: Method = Method::Rtn { group: GroupSize::PerChannel, symmetric: false };

pub const BF16: HalfDtype = HalfDtype::Bf16;

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sym = |s: bool| if s { "sym" } else { "asym" };
        let grp = |g: GroupSize| match g {
            GroupSize::PerChannel => "channel".to_string(),
            GroupSize::Group(g) => format!("g{g}"),
        };
        match self {
            Method::Reference => write!(f, "reference"),
            Method::Bf16 => write!(f, "bf16"),
            Method::Int8 => write!(f, "int8-channel"),
            Method::RtnTensor { symmetric } => write!(f, "rtn-tensor-{}", sym(*symmetric)),
            Method::Rtn { group, symmetric } => write!(f, "rtn-{}-{}", grp(*group), sym(*symmetric)),
            Method::Awq { group } => write!(f, "awq-g{group}"),
            Method::Gptq { group, act_order } => write!(f, "gptq-g{group}{}", if *act_order { "-act" } else { "" }),
            Method::Mixed { keep } => write!(f, "mixed-k{keep}"),
        }
    }
}

impl FromStr for Method {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            anyhow::anyhow!(
                "unknown method '{s}': expected reference, bf16, int8-channel, rtn-tensor-{{sym,asym}}, \
                 rtn-{{channel,g32,g64,g128}}-{{sym,asym}}, awq-g<G>, gptq-g<G>[-act], mixed-k<K>"
            )
        };
        let group = |g: &str| -> Result<GroupSize> {
            if g == "channel" {
                return Ok(GroupSize::PerChannel);
            }
            let n: usize = g.strip_prefix('g').and_then(|v| v.parse().ok()).ok_or_else(bad)?;
            if n == 0 || n % 8 != 0 {
                bail!("method '{s}': group size {n} is not a positive multiple of 8");
            }
            Ok(GroupSize::Group(n))
        };
        let parts: Vec<&str> = s.split('-').collect();
        Ok(match parts.as_slice() {
            ["reference"] => Method::Reference,
            ["bf16"] => Method::Bf16,
            ["int8"] | ["int8", "channel"] => Method::Int8,
            ["rtn", "tensor", sy] => Method::RtnTensor { symmetric: parse_sym(sy).ok_or_else(bad)? },
            ["rtn", g, sy] => Method::Rtn { group: group(g)?, symmetric: parse_sym(sy).ok_or_else(bad)? },
            ["awq", g] => match group(g)? {
                GroupSize::Group(g) => Method::Awq { group: g },
                GroupSize::PerChannel => bail!("method '{s}': AWQ here takes a group size (awq-g128)"),
            },
            ["gptq", g] | ["gptq", g, "act"] => match group(g)? {
                GroupSize::Group(g) => Method::Gptq { group: g, act_order: parts.len() == 3 },
                GroupSize::PerChannel => bail!("method '{s}': GPTQ here takes a group size (gptq-g128)"),
            },
            ["mixed", k] => Method::Mixed { keep: k.strip_prefix('k').and_then(|v| v.parse().ok()).ok_or_else(bad)? },
            _ => return Err(bad()),
        })
    }
}

fn parse_sym(s: &str) -> Option<bool> {
    match s {
        "sym" => Some(true),
        "asym" => Some(false),
        _ => None,
    }
}

impl Method {
    /// AWQ, GPTQ and mixed precision read calibration activations.
    pub fn needs_calibration(&self) -> bool {
        matches!(self, Method::Awq { .. } | Method::Gptq { .. } | Method::Mixed { .. })
    }
}

/// The seven linears of a layer with the input each reads.
pub fn layer_linears(lw: &LayerWeights) -> [(&'static str, LinearInput, &Mat); 7] {
    [
        ("q", LinearInput::Qkv, &lw.wq),
        ("k", LinearInput::Qkv, &lw.wk),
        ("v", LinearInput::Qkv, &lw.wv),
        ("o", LinearInput::AttnOut, &lw.wo),
        ("gate", LinearInput::GateUp, &lw.w_gate),
        ("up", LinearInput::GateUp, &lw.w_up),
        ("down", LinearInput::Down, &lw.w_down),
    ]
}

const LINEAR_NAMES: [&str; 7] = ["q", "k", "v", "o", "gate", "up", "down"];

fn layer_linears_mut(lw: &mut LayerWeights) -> [&mut Mat; 7] {
    [&mut lw.wq, &mut lw.wk, &mut lw.wv, &mut lw.wo, &mut lw.w_gate, &mut lw.w_up, &mut lw.w_down]
}

/// A model whose linears hold the dequantized values of a method, and their stored size.
pub struct Quantized {
    pub weights: Weights,
    pub linear_bytes: usize,
}

/// Settings of the calibrated methods.
#[derive(Debug, Clone, Copy)]
pub struct MethodOptions {
    pub awq: AwqOptions,
    pub gptq_damp: f64,
    /// Calibration rows the mixed-precision sensitivity is measured on.
    pub sensitivity_rows: usize,
}

/// One linear quantized by a data-free method: dequantized values and stored bytes.
fn quantize_plain(m: &Mat, method: Method) -> Result<(Vec<f32>, usize)> {
    let (n, k) = (m.rows, m.cols);
    Ok(match method {
        Method::Reference => (m.data.clone(), 4 * n * k),
        Method::Bf16 => (m.data.iter().map(|&v| bf16::from_f32(v).to_f32()).collect(), 2 * n * k),
        Method::Int8 => {
            let q = quantize_int8_per_channel(&m.data, n, k, BF16)?;
            (q.dequantize(), q.total_bytes())
        }
        Method::RtnTensor { symmetric } => {
            let q = quantize_rtn_per_tensor(&m.data, n, k, symmetric, BF16)?;
            // One scale (and zero) in all: the per-channel copies are a format detail.
            (q.dequantize(), q.packed_bytes() + 4)
        }
        Method::Rtn { group, symmetric } => {
            let q = quantize_rtn(&m.data, n, k, &RtnConfig { group, symmetric, scale_dtype: BF16 })?;
            (q.dequantize(), q.total_bytes())
        }
        other => bail!("{other} needs calibration data"),
    })
}

/// Applies a data-free method to every linear of `w`.
fn apply_plain(w: &Weights, method: Method) -> Result<Quantized> {
    let mut out = w.clone();
    let bytes: Vec<usize> = out
        .layers
        .par_iter_mut()
        .map(|lw| -> Result<usize> {
            let mut total = 0;
            for (i, m) in layer_linears_mut(lw).into_iter().enumerate() {
                let (data, b) = quantize_plain(m, method)
                    .with_context(|| format!("linear {} [{}, {}]", LINEAR_NAMES[i], m.rows, m.cols))?;
                m.data = data;
                total += b;
            }
            Ok(total)
        })
        .collect::<Result<_>>()?;
    Ok(Quantized { weights: out, linear_bytes: bytes.iter().sum() })
}

/// Every layer's seven linears quantized by GPTQ, in [`layer_linears`] order.
fn gptq_linears(w: &Weights, calib: &Calibration, cfg: &GptqConfig) -> Result<Vec<Vec<Int4Weight>>> {
    let mut out = vec![];
    for (l, lw) in w.layers.iter().enumerate() {
        // q/k/v (and gate/up) read one input: one prepared Hessian for them.
        let mut prepared = std::collections::HashMap::new();
        let mut layer = vec![];
        for (i, (_, site, m)) in layer_linears(lw).into_iter().enumerate() {
            let (rows, cols) = (m.rows, m.cols);
            let ctx = || format!("layer {l} linear {} [{rows}, {cols}]", LINEAR_NAMES[i]);
            if !prepared.contains_key(&site) {
                let p =
                    PreparedHessian::new(&calib.hessian(l, site), m.cols, cfg.act_order, cfg.damp).with_context(ctx)?;
                prepared.insert(site, p);
            }
            layer.push(quantize_gptq_prepared(&m.data, m.rows, &prepared[&site], cfg).with_context(ctx)?);
        }
        out.push(layer);
    }
    Ok(out)
}

/// `w` with its linears replaced by the dequantized values of `linears`, and their bytes.
fn with_dequantized(w: &Weights, linears: &[Vec<Int4Weight>]) -> Quantized {
    let mut out = w.clone();
    let mut bytes = 0;
    for (lw, qs) in out.layers.iter_mut().zip(linears) {
        for (m, q) in layer_linears_mut(lw).into_iter().zip(qs) {
            m.data = q.dequantize();
            bytes += q.total_bytes();
        }
    }
    Quantized { weights: out, linear_bytes: bytes }
}

fn apply_gptq(w: &Weights, calib: &Calibration, group: usize, act_order: bool, damp: f64) -> Result<Quantized> {
    let cfg = GptqConfig { group: GroupSize::Group(group), symmetric: false, act_order, damp, ..GptqConfig::default() };
    Ok(with_dequantized(w, &gptq_linears(w, calib, &cfg)?))
}

/// The int4 weights a checkpoint stores for `method` (group RTN, AWQ or GPTQ), with
/// `scale_dtype` scales: every layer's seven linears in [`layer_linears`] order, and the
/// model they belong to (AWQ folds its scales into the norms and the up projection, so its
/// other tensors differ from `w`'s).
pub fn int4_linears(
    w: &Weights,
    method: Method,
    calib: Option<&Calibration>,
    opt: &MethodOptions,
    scale_dtype: HalfDtype,
) -> Result<(Weights, Vec<Vec<Int4Weight>>)> {
    let need = || calib.ok_or_else(|| anyhow::anyhow!("{method} needs calibration activations"));
    let rtn_all = |w: &Weights, rtn: &RtnConfig| -> Result<Vec<Vec<Int4Weight>>> {
        w.layers
            .par_iter()
            .map(|lw| {
                layer_linears(lw).into_iter().map(|(_, _, m)| Ok(quantize_rtn(&m.data, m.rows, m.cols, rtn)?)).collect()
            })
            .collect()
    };
    Ok(match method {
        Method::Rtn { group: group @ GroupSize::Group(_), symmetric } => {
            (w.clone(), rtn_all(w, &RtnConfig { group, symmetric, scale_dtype })?)
        }
        Method::Awq { group } => {
            let rtn = RtnConfig { group: GroupSize::Group(group), symmetric: false, scale_dtype };
            let (scaled, _alpha) = awq_rescale(w, need()?, &rtn, &opt.awq)?;
            let q = rtn_all(&scaled, &rtn)?;
            (scaled, q)
        }
        Method::Gptq { group, act_order } => {
            let cfg = GptqConfig {
                group: GroupSize::Group(group),
                symmetric: false,
                act_order,
                damp: opt.gptq_damp,
                scale_dtype,
                ..GptqConfig::default()
            };
            (w.clone(), gptq_linears(w, need()?, &cfg)?)
        }
        other => bail!("{other} does not make one int4 weight per linear with groups: use rtn-g<G>-{{sym,asym}}, awq-g<G> or gptq-g<G>[-act]"),
    })
}

/// Per linear (layer, index in [`layer_linears`]): the output error energy per calibration
/// token of quantizing it alone with [`MIXED_BASE`], ‖X(W − Ŵ)ᵀ‖² / m. A proxy for its
/// effect on the logits: the residual stream adds every linear's output error.
pub fn sensitivities(w: &Weights, calib: &Calibration, rows: usize) -> Result<Vec<((usize, usize), f64)>> {
    let mut out = vec![];
    for (l, lw) in w.layers.iter().enumerate() {
        for (i, (_, site, m)) in layer_linears(lw).into_iter().enumerate() {
            let (x, mrows) = calib.sample(l, site, rows);
            let (w_hat, _) = quantize_plain(m, MIXED_BASE)?;
            let e = crate::quant::dense::output_error(&x, mrows, &m.data, &w_hat, m.rows, m.cols);
            out.push(((l, i), e / mrows.max(1) as f64));
        }
    }
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(out)
}

fn apply_mixed(w: &Weights, calib: &Calibration, keep: usize, rows: usize) -> Result<Quantized> {
    let ranked = sensitivities(w, calib, rows)?;
    let kept: std::collections::HashSet<(usize, usize)> = ranked.iter().take(keep).map(|(id, _)| *id).collect();
    let mut out = w.clone();
    let mut bytes = 0;
    for (l, lw) in out.layers.iter_mut().enumerate() {
        for (i, m) in layer_linears_mut(lw).into_iter().enumerate() {
            let how = if kept.contains(&(l, i)) { Method::Bf16 } else { MIXED_BASE };
            let (data, b) = quantize_plain(m, how)?;
            m.data = data;
            bytes += b;
        }
    }
    Ok(Quantized { weights: out, linear_bytes: bytes })
}

/// Quantizes every linear of `w` with `method`; `calib` is needed by AWQ, GPTQ and mixed.
pub fn apply(w: &Weights, method: Method, calib: Option<&Calibration>, opt: &MethodOptions) -> Result<Quantized> {
    let need = || calib.ok_or_else(|| anyhow::anyhow!("{method} needs calibration activations"));
    match method {
        Method::Awq { group } => {
            let rtn = RtnConfig { group: GroupSize::Group(group), symmetric: false, scale_dtype: BF16 };
            let (scaled, _alpha) = awq_rescale(w, need()?, &rtn, &opt.awq)?;
            apply_plain(&scaled, Method::Rtn { group: rtn.group, symmetric: false })
        }
        Method::Gptq { group, act_order } => apply_gptq(w, need()?, group, act_order, opt.gptq_damp),
        Method::Mixed { keep } => apply_mixed(w, need()?, keep, opt.sensitivity_rows),
        plain => apply_plain(w, plain),
    }
}

/// Bytes of everything that is not a layer linear (embeddings, lm_head if untied, norms),
/// counted at 2 bytes per value as a bf16 deployment stores them.
pub fn other_bytes(w: &Weights) -> usize {
    let norms: usize = w.layers.iter().map(|l| l.attn_norm.len() + l.ffn_norm.len()).sum::<usize>() + w.norm.len();
    2 * (w.tok_embeddings.data.len() + w.lm_head.as_ref().map_or(0, |m| m.data.len()) + norms)
}
