//! Writing a Hugging Face directory of a 4-bit checkpoint, GPTQ ([`write_gptq_dir`],
//! AutoGPTQ's tensor layout) or AWQ ([`write_awq_dir`], AutoAWQ's GEMM layout): config.json
//! (with its `quantization_config`), model.safetensors, and the tokenizer (tokenizer.json,
//! tokenizer_config.json with the chat template) when there is one.
//!
//! Readers: [`super::quantized`] here; AutoGPTQ, GPTQModel, AutoAWQ, transformers and vLLM
//! elsewhere. The non-quantized tensors (embeddings, norms, an untied lm_head) are stored
//! as f16, the dtype both formats use. Both writers share [`write_quantized_dir`], which
//! takes the per-linear tensor writer. The directory is written under a temporary name and
//! renamed into place last, so an interrupted write never leaves a directory that looks
//! complete.

use std::path::Path;

use anyhow::{bail, Context, Result};
use half::f16;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use serde_json::json;

use super::config::LlamaConfig;
use super::gguf_model::BosPolicy;
use super::names::{LayerTensor, WeightName};
use super::weights::Weights;
use crate::quant::{int4_to_awq, int4_to_gptq, zeros_convention, AwqPacked, GptqZeros, HalfDtype, Int4Weight};

/// The layer linears in [`super::weights::LayerWeights`] order: q, k, v, o, gate, up, down.
pub const LAYER_LINEARS: [LayerTensor; 7] = [
    LayerTensor::Wq,
    LayerTensor::Wk,
    LayerTensor::Wv,
    LayerTensor::Wo,
    LayerTensor::WGate,
    LayerTensor::WUp,
    LayerTensor::WDown,
];

/// What a checkpoint holds besides its tensors.
pub struct CheckpointMeta<'a> {
    /// Every layer's seven linears, quantized, in [`LAYER_LINEARS`] order.
    pub linears: &'a [Vec<Int4Weight>],
    /// Whether the quantizer was symmetric (the config's `sym`).
    pub symmetric: bool,
    pub tokenizer: Option<&'a tokenizers::Tokenizer>,
    pub bos: &'a BosPolicy,
    pub chat_template: Option<&'a str>,
    /// Recorded in config.json, e.g. "kernlab quantize gptq-g128 (calibration: Macbeth)".
    pub made_by: String,
}

fn f16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|&x| f16::from_f32(x).to_le_bytes()).collect()
}

fn i32_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn u16_bytes(v: &[u16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// config.json for `c`, with the quantization settings `quant`.
fn config_json(c: &LlamaConfig, quant: serde_json::Value) -> serde_json::Value {
    let mut v = json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "_name_or_path": c.name,
        "hidden_size": c.dim,
        "intermediate_size": c.ffn_dim,
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_kv_heads,
        "head_dim": c.head_dim,
        "vocab_size": c.vocab_size,
        "rms_norm_eps": c.norm_eps,
        "rope_theta": c.rope_theta,
        "max_position_embeddings": c.max_seq_len,
        "tie_word_embeddings": c.tie_embeddings,
        "hidden_act": "silu",
        "torch_dtype": "float16",
        "quantization_config": quant,
    });
    if let Some(b) = c.bos_token_id {
        v["bos_token_id"] = json!(b);
    }
    match c.eos_token_ids.as_slice() {
        [] => {}
        [e] => v["eos_token_id"] = json!(e),
        many => v["eos_token_id"] = json!(many),
    }
    if let Some(r) = &c.rope_scaling {
        v["rope_scaling"] = json!({
            "rope_type": "llama3",
            "factor": r.factor,
            "low_freq_factor": r.low_freq_factor,
            "high_freq_factor": r.high_freq_factor,
            "original_max_position_embeddings": r.original_max_position_embeddings,
        });
    }
    v
}

/// The tokenizer with BOS handling a Hugging Face directory expresses in its post-processor
/// (a GGUF file says "prepend BOS" in its metadata instead).
fn hf_tokenizer(t: &tokenizers::Tokenizer, bos: &BosPolicy) -> Result<tokenizers::Tokenizer> {
    let mut t = t.clone();
    if let BosPolicy::Prepend(id) = bos {
        let tok = t.id_to_token(*id).with_context(|| format!("BOS id {id} is not in the vocabulary"))?;
        let post = tokenizers::processors::template::TemplateProcessing::builder()
            .try_single(format!("{tok} $A"))
            .and_then(|b| b.try_pair(format!("{tok} $A {tok} $B")))
            .map_err(|e| anyhow::anyhow!("BOS template: {e}"))?
            .special_tokens(vec![(tok.clone(), *id)])
            .build()
            .map_err(|e| anyhow::anyhow!("BOS template: {e}"))?;
        t.with_post_processor(Some(post));
    }
    Ok(t)
}

/// One safetensors entry: name, dtype, shape, little-endian bytes.
pub type Tensor = (String, Dtype, Vec<usize>, Vec<u8>);

/// The group size every linear of `meta` shares, after the checks both formats need:
/// `dir` is new, there are seven linears per layer, one group size and f16 scales.
fn checked_group(dir: &Path, w: &Weights, meta: &CheckpointMeta, format: &str) -> Result<usize> {
    let c = &w.config;
    if dir.exists() {
        bail!("{} already exists: give a new directory (nothing was written)", dir.display());
    }
    if meta.linears.len() != c.n_layers || meta.linears.iter().any(|l| l.len() != LAYER_LINEARS.len()) {
        bail!("internal: {} layers of linears for a {}-layer model", meta.linears.len(), c.n_layers);
    }
    let all: Vec<&Int4Weight> = meta.linears.iter().flatten().collect();
    let group = all[0].group_size;
    if let Some(odd) = all.iter().find(|q| q.group_size != group || q.scale_dtype != HalfDtype::F16) {
        bail!(
            "a {format} checkpoint keeps one group size and f16 scales: got g{} {} beside g{group} f16",
            odd.group_size,
            odd.scale_dtype
        );
    }
    Ok(group)
}

/// Writes `w` with its layer linears replaced by `meta.linears` as a GPTQ directory `dir`
/// (which must not exist yet). Zero points use v1 unless some is 0 ([`zeros_convention`]).
pub fn write_gptq_dir(dir: &Path, w: &Weights, meta: &CheckpointMeta) -> Result<()> {
    let group = checked_group(dir, w, meta, "GPTQ")?;
    let conv = zeros_convention(meta.linears.iter().flatten())?;
    let quant = json!({
        "quant_method": "gptq",
        "bits": 4,
        "group_size": group,
        "desc_act": false,
        "sym": meta.symmetric,
        "true_sequential": true,
        "checkpoint_format": match conv { GptqZeros::V1PlusOne => "gptq", GptqZeros::V2 => "gptq_v2" },
        "quantizer": meta.made_by,
    });
    write_quantized_dir(dir, w, meta, quant, |prefix, q| {
        let p = int4_to_gptq(q, conv)?;
        let (n, k, g) = (q.n, q.k, q.num_groups());
        Ok(vec![
            (format!("{prefix}.qweight"), Dtype::I32, vec![k / 8, n], i32_bytes(&p.qweight)),
            (format!("{prefix}.qzeros"), Dtype::I32, vec![g, n / 8], i32_bytes(&p.qzeros)),
            (format!("{prefix}.scales"), Dtype::F16, vec![g, n], u16_bytes(&p.scales)),
            (format!("{prefix}.g_idx"), Dtype::I32, vec![k], i32_bytes(&p.g_idx)),
        ])
    })
}

/// Writes `w` with its layer linears replaced by `meta.linears` as an AWQ directory `dir`
/// (AutoAWQ's GEMM layout, `zero_point: true`; `dir` must not exist yet). Symmetric linears
/// are stored with zero points of 8; zero points above 15 and float minimums are refused.
pub fn write_awq_dir(dir: &Path, w: &Weights, meta: &CheckpointMeta) -> Result<()> {
    let group = checked_group(dir, w, meta, "AWQ")?;
    let quant = json!({
        "quant_method": "awq",
        "bits": 4,
        "group_size": group,
        "zero_point": true,
        "version": "gemm",
        "modules_to_not_convert": null,
        "quantizer": meta.made_by,
    });
    write_quantized_dir(dir, w, meta, quant, |prefix, q| {
        let p = int4_to_awq(q)?;
        let [qs, zs, ss] = AwqPacked::shapes(q.n, q.k, q.num_groups());
        Ok(vec![
            (format!("{prefix}.qweight"), Dtype::I32, qs, i32_bytes(&p.qweight)),
            (format!("{prefix}.qzeros"), Dtype::I32, zs, i32_bytes(&p.qzeros)),
            (format!("{prefix}.scales"), Dtype::F16, ss, u16_bytes(&p.scales)),
        ])
    })
}

/// The directory both formats share: the non-linear tensors as f16, each linear as the
/// tensors `linear(prefix, weight)` returns (`prefix` is its name without `.weight`),
/// config.json with `quant` as its `quantization_config`, and the tokenizer files. Written
/// to a temporary directory renamed to `dir` last. Callers check `meta` first
/// ([`checked_group`]).
fn write_quantized_dir(
    dir: &Path,
    w: &Weights,
    meta: &CheckpointMeta,
    quant: serde_json::Value,
    linear: impl Fn(&str, &Int4Weight) -> crate::quant::Result<Vec<Tensor>>,
) -> Result<()> {
    let c = &w.config;
    let mut tensors: Vec<Tensor> = vec![];
    let dense = |name: WeightName, shape: Vec<usize>, data: &[f32]| (name.hf(), Dtype::F16, shape, f16_bytes(data));
    tensors.push(dense(WeightName::TokEmbd, vec![c.vocab_size, c.dim], &w.tok_embeddings.data));
    tensors.push(dense(WeightName::Norm, vec![c.dim], &w.norm));
    if let Some(h) = &w.lm_head {
        tensors.push(dense(WeightName::LmHead, vec![c.vocab_size, c.dim], &h.data));
    }
    for (l, lw) in w.layers.iter().enumerate() {
        tensors.push(dense(WeightName::Layer(l, LayerTensor::AttnNorm), vec![c.dim], &lw.attn_norm));
        tensors.push(dense(WeightName::Layer(l, LayerTensor::FfnNorm), vec![c.dim], &lw.ffn_norm));
        for (t, q) in LAYER_LINEARS.iter().zip(&meta.linears[l]) {
            let name = WeightName::Layer(l, *t).hf();
            let prefix = name.strip_suffix(".weight").expect("linear names end in .weight");
            tensors.extend(linear(prefix, q).with_context(|| format!("packing {prefix}"))?);
        }
    }

    let tmp = dir.with_file_name(format!(
        ".{}.partial-{}",
        dir.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_default(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let views = tensors
        .iter()
        .map(|(n, dt, shape, b)| Ok((n.clone(), TensorView::new(*dt, shape.clone(), b)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    let info = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(info), &tmp.join("model.safetensors"))
        .with_context(|| format!("writing {}", tmp.join("model.safetensors").display()))?;
    let cfg = config_json(c, quant);
    std::fs::write(tmp.join("config.json"), serde_json::to_string_pretty(&cfg)?)?;
    if let Some(t) = meta.tokenizer {
        hf_tokenizer(t, meta.bos)?
            .save(tmp.join("tokenizer.json"), false)
            .map_err(|e| anyhow::anyhow!("writing tokenizer.json: {e}"))?;
        let mut tc = json!({ "tokenizer_class": "PreTrainedTokenizerFast" });
        let name = |id: Option<u32>| id.and_then(|i| t.id_to_token(i));
        if let Some(b) = name(c.bos_token_id) {
            tc["bos_token"] = json!(b);
        }
        if let Some(e) = name(c.eos_token_ids.first().copied()) {
            tc["eos_token"] = json!(e);
        }
        if let Some(ct) = meta.chat_template {
            tc["chat_template"] = json!(ct);
        }
        std::fs::write(tmp.join("tokenizer_config.json"), serde_json::to_string_pretty(&tc)?)?;
    }
    std::fs::rename(&tmp, dir).with_context(|| format!("moving {} to {}", tmp.display(), dir.display()))?;
    Ok(())
}
