//! Hugging Face directories of 4-bit checkpoints: GPTQ (AutoGPTQ, GPTQModel; what
//! `kernlab quantize` writes) and AWQ (AutoAWQ's GEMM layout).
//!
//! The quantization settings come from `quantization_config` in config.json (or AutoGPTQ's
//! older quantize_config.json). Each linear `<prefix>.weight` is stored as
//! `<prefix>.{qweight,qzeros,scales[,g_idx]}`; the converters in `crate::quant` turn those
//! into kernlab's int4 format loss-free.
//!
//! [`QuantizedSource`] serves the model two ways: as a [`TensorSource`] whose linears are the
//! dequantized values (the bf16 path, the CPU reference and the cuBLAS reference read those),
//! and through [`QuantizedSource::model_linears`], the int4 weights themselves, stacked as the
//! GPU model runs them (qkv, o, gate_up, down), for gemm_int4.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use safetensors::Dtype;
use serde::Deserialize;

use super::config::LlamaConfig;
use super::hf::SafetensorsSource;
use super::names::{LayerTensor, WeightName};
use super::weights::TensorSource;
use crate::quant::{
    awq_to_int4, gptq_to_int4, stack_rows, AwqTensors, GptqTensors, GptqZeros, HalfDtype, Int4Weight, TensorView,
};

/// How a checkpoint's linears are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantMethod {
    Gptq(GptqZeros),
    /// AutoAWQ, `version: "gemm"`.
    Awq,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QuantConfig {
    pub method: QuantMethod,
    /// K columns per scale; `None` for per-channel (`group_size: -1`).
    pub group_size: Option<usize>,
    /// GPTQ act-order: groups are scattered along K (g_idx says where).
    pub desc_act: bool,
}

#[derive(Deserialize)]
struct RawQuantConfig {
    quant_method: Option<String>,
    bits: Option<u32>,
    #[serde(alias = "q_group_size")]
    group_size: Option<i64>,
    #[serde(default)]
    desc_act: bool,
    checkpoint_format: Option<String>,
    version: Option<String>,
}

impl QuantConfig {
    /// The settings of the checkpoint in `dir`, or None for an unquantized model.
    pub fn from_hf_dir(dir: &Path) -> Result<Option<QuantConfig>> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let (raw, from) = match v.get("quantization_config") {
            Some(q) => (q.clone(), path),
            None => {
                let old = dir.join("quantize_config.json");
                if !old.is_file() {
                    return Ok(None);
                }
                let t = std::fs::read_to_string(&old).with_context(|| format!("reading {}", old.display()))?;
                (serde_json::from_str(&t).with_context(|| format!("parsing {}", old.display()))?, old)
            }
        };
        let raw: RawQuantConfig = serde_json::from_value(raw)
            .with_context(|| format!("{}: reading the quantization settings", from.display()))?;
        Self::from_raw(raw).with_context(|| format!("{}: quantization settings", from.display())).map(Some)
    }

    fn from_raw(r: RawQuantConfig) -> Result<QuantConfig> {
        if r.bits.unwrap_or(4) != 4 {
            bail!("bits = {}: only 4-bit checkpoints load (gemm_int4 runs 4-bit codes)", r.bits.unwrap_or(0));
        }
        let method = match r.quant_method.as_deref().unwrap_or("gptq") {
            "gptq" => QuantMethod::Gptq(match r.checkpoint_format.as_deref().unwrap_or("gptq") {
                "gptq" => GptqZeros::V1PlusOne,
                "gptq_v2" => GptqZeros::V2,
                other => bail!("checkpoint_format {other:?}: expected \"gptq\" or \"gptq_v2\""),
            }),
            "awq" => match r.version.as_deref().unwrap_or("gemm").to_ascii_lowercase().as_str() {
                "gemm" => QuantMethod::Awq,
                other => bail!("AWQ version {other:?}: only the GEMM layout loads (re-save it with version \"gemm\")"),
            },
            other => bail!("quant_method {other:?}: kernlab loads \"gptq\" and \"awq\" checkpoints"),
        };
        let group_size = match r.group_size.unwrap_or(128) {
            -1 => None,
            g if g > 0 => Some(g as usize),
            g => bail!("group_size = {g}: expected a positive group or -1 (per channel)"),
        };
        Ok(QuantConfig { method, group_size, desc_act: r.desc_act })
    }

    /// For messages and reports: "GPTQ g128", "AWQ g128 ", "GPTQ per-channel act-order".
    pub fn describe(&self) -> String {
        let m = match self.method {
            QuantMethod::Gptq(GptqZeros::V1PlusOne) => "GPTQ",
            QuantMethod::Gptq(GptqZeros::V2) => "GPTQ (v2 zeros)",
            QuantMethod::Awq => "AWQ",
        };
        let g = self.group_size.map_or("per-channel".to_string(), |g| format!("g{g}"));
        format!("{m} {g}{}", if self.desc_act { " act-order" } else { "" })
    }
}

/// A quantized checkpoint directory, read linear by linear.
pub struct QuantizedSource {
    st: SafetensorsSource,
    pub quant: QuantConfig,
    cfg: LlamaConfig,
}

fn i32s(bytes: &[u8]) -> Vec<i32> {
    bytes.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn u16s(bytes: &[u8]) -> Vec<u16> {
    bytes.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect()
}

impl QuantizedSource {
    pub fn open(dir: &Path, cfg: &LlamaConfig, quant: QuantConfig) -> Result<QuantizedSource> {
        Ok(QuantizedSource { st: SafetensorsSource::open(dir)?, quant, cfg: cfg.clone() })
    }

    fn array(&self, name: &str, dtype: Dtype) -> Result<(Vec<usize>, Vec<u8>)> {
        let t = self.st.raw(name)?.ok_or_else(|| anyhow!("{}: tensor '{name}' is missing", self.st.describe()))?;
        if t.dtype != dtype {
            bail!("{}: tensor '{name}' is {:?}, expected {dtype:?}", self.st.describe(), t.dtype);
        }
        Ok((t.shape.to_vec(), t.bytes.to_vec()))
    }

    /// One linear as stored, converted to kernlab's format, with the act-order permutation
    /// of its input columns when it has one.
    fn linear(&self, name: &WeightName) -> Result<(Int4Weight, Option<Vec<u32>>)> {
        let shape = name.expected_shape(&self.cfg);
        let (n, k) = (shape[0], shape[1]);
        let prefix = name.hf();
        let prefix = prefix.strip_suffix(".weight").unwrap_or(&prefix);
        let ctx = || format!("{}: linear {prefix} [{n}, {k}]", self.st.describe());
        let scales_raw = self.st.raw(&format!("{prefix}.scales"))?.with_context(|| format!("{}: no scales", ctx()))?;
        let scale_dtype = match scales_raw.dtype {
            Dtype::F16 => HalfDtype::F16,
            Dtype::BF16 => HalfDtype::Bf16,
            other => bail!("{}: scales are {other:?}, expected F16 or BF16", ctx()),
        };
        let (sshape, scales) = (scales_raw.shape.to_vec(), u16s(scales_raw.bytes));
        let group = self.quant.group_size.unwrap_or(k);
        let (qs, qw) = self.array(&format!("{prefix}.qweight"), Dtype::I32).with_context(ctx)?;
        let (zs, qz) = self.array(&format!("{prefix}.qzeros"), Dtype::I32).with_context(ctx)?;
        let (qw, qz) = (i32s(&qw), i32s(&qz));
        Ok(match self.quant.method {
            QuantMethod::Gptq(conv) => {
                let g_idx = match self.st.raw(&format!("{prefix}.g_idx"))? {
                    Some(t) if t.dtype == Dtype::I32 => Some((t.shape.to_vec(), i32s(t.bytes))),
                    Some(t) => bail!("{}: g_idx is {:?}, expected I32", ctx(), t.dtype),
                    None => None,
                };
                let t = GptqTensors {
                    qweight: TensorView::new(&qs, &qw),
                    qzeros: TensorView::new(&zs, &qz),
                    scales: TensorView::new(&sshape, &scales),
                    g_idx: g_idx.as_ref().map(|(s, d)| TensorView::new(s, d)),
                };
                let c = gptq_to_int4(&t, n, k, group, scale_dtype, conv).with_context(ctx)?;
                (c.weight, c.k_perm)
            }
            QuantMethod::Awq => {
                let t = AwqTensors {
                    qweight: TensorView::new(&qs, &qw),
                    qzeros: TensorView::new(&zs, &qz),
                    scales: TensorView::new(&sshape, &scales),
                };
                (awq_to_int4(&t, n, k, group, scale_dtype).with_context(ctx)?, None)
            }
        })
    }

    /// Every layer's linears as the GPU model runs them, in its order (per layer: qkv, o,
    /// gate_up, down), for gemm_int4, each with its act-order permutation if it has one: the
    /// weight's columns are then stored permuted so that its groups are contiguous, and the
    /// model gathers its input with the permutation (Y = X[:, perm]·W'ᵀ). Stacked
    /// projections (q, k, v; gate, up) read the same input, so they must share one
    /// permutation, as GPTQ gives them (one Hessian); otherwise the stack is refused.
    pub fn model_linears_with_perms(&self) -> Result<Vec<(Int4Weight, Option<Vec<u32>>)>> {
        let mut out = Vec::with_capacity(4 * self.cfg.n_layers);
        for l in 0..self.cfg.n_layers {
            use LayerTensor::*;
            let stack = |ts: &[LayerTensor]| -> Result<(Int4Weight, Option<Vec<u32>>)> {
                let parts = ts.iter().map(|t| self.linear(&WeightName::Layer(l, *t))).collect::<Result<Vec<_>>>()?;
                let perm = parts[0].1.clone();
                if parts.iter().any(|(_, p)| *p != perm) {
                    bail!(
                        "{}: layer {l}'s {ts:?} share an input but not an act-order permutation, so they cannot be \
                         stacked for gemm_int4: run it with --weights bf16 (dequantized)",
                        self.st.describe()
                    );
                }
                let refs: Vec<&Int4Weight> = parts.iter().map(|(w, _)| w).collect();
                let w = stack_rows(&refs)
                    .with_context(|| format!("{}: stacking layer {l}'s {ts:?}", self.st.describe()))?;
                Ok((w, perm))
            };
            out.push(stack(&[Wq, Wk, Wv])?);
            out.push(stack(&[Wo])?);
            out.push(stack(&[WGate, WUp])?);
            out.push(stack(&[WDown])?);
        }
        Ok(out)
    }

    /// [`Self::model_linears_with_perms`] for a checkpoint without act-order: the weights
    /// in their columns' order (refused for act-order ones, whose stored order is permuted).
    pub fn model_linears(&self) -> Result<Vec<Int4Weight>> {
        self.model_linears_with_perms()?
            .into_iter()
            .map(|(w, perm)| match perm {
                None => Ok(w),
                Some(_) => bail!(
                    "{}: an act-order (desc_act) linear's columns are stored permuted; read it with its permutation",
                    self.st.describe()
                ),
            })
            .collect()
    }
}

fn is_linear(name: &WeightName) -> bool {
    use LayerTensor::*;
    matches!(name, WeightName::Layer(_, Wq | Wk | Wv | Wo | WGate | WUp | WDown))
}

impl TensorSource for QuantizedSource {
    fn describe(&self) -> String {
        format!("{} ({})", self.st.describe(), self.quant.describe())
    }

    fn file_name(&self, name: &WeightName) -> String {
        if is_linear(name) {
            name.hf().replace(".weight", ".qweight")
        } else {
            self.st.file_name(name)
        }
    }

    fn shape(&self, name: &WeightName) -> Result<Option<Vec<usize>>> {
        if !is_linear(name) {
            return self.st.shape(name);
        }
        let prefix = name.hf();
        let q = format!("{}.qweight", prefix.strip_suffix(".weight").unwrap_or(&prefix));
        // The packed shape is checked by the converter; the logical one is what the model asks.
        Ok(self.st.raw(&q)?.map(|_| name.expected_shape(&self.cfg)))
    }

    /// A linear's dequantized values in the original column order (act-order undone).
    fn load_f32(&self, name: &WeightName) -> Result<Vec<f32>> {
        if !is_linear(name) {
            return self.st.load_f32(name);
        }
        let (w, perm) = self.linear(name)?;
        let deq = w.dequantize();
        Ok(match perm {
            None => deq,
            Some(p) => {
                // Column j of the converted weight is original column p[j].
                let mut out = vec![0f32; deq.len()];
                for (src, dst) in deq.chunks_exact(w.k).zip(out.chunks_exact_mut(w.k)) {
                    for (j, &orig) in p.iter().enumerate() {
                        dst[orig as usize] = src[j];
                    }
                }
                out
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<QuantConfig> {
        QuantConfig::from_raw(serde_json::from_str(json).unwrap())
    }

    #[test]
    fn settings_of_the_checkpoints_users_hold() {
        let g = parse(r#"{"quant_method":"gptq","bits":4,"group_size":128,"desc_act":false,"sym":true}"#).unwrap();
        assert_eq!(
            g,
            QuantConfig { method: QuantMethod::Gptq(GptqZeros::V1PlusOne), group_size: Some(128), desc_act: false }
        );
        let v2 =
            parse(r#"{"quant_method":"gptq","group_size":-1,"checkpoint_format":"gptq_v2","desc_act":true}"#).unwrap();
        assert_eq!(v2.method, QuantMethod::Gptq(GptqZeros::V2));
        assert_eq!((v2.group_size, v2.desc_act), (None, true));
        assert_eq!(v2.describe(), "GPTQ (v2 zeros) per-channel act-order");
        let a = parse(r#"{"quant_method":"awq","bits":4,"group_size":64,"zero_point":true,"version":"GEMM"}"#).unwrap();
        assert_eq!((a.method, a.group_size), (QuantMethod::Awq, Some(64)));
        for (bad, says) in [
            (r#"{"quant_method":"gptq","bits":8}"#, "4-bit"),
            (r#"{"quant_method":"awq","version":"gemv"}"#, "GEMM"),
            (r#"{"quant_method":"bitsandbytes"}"#, "gptq"),
            (r#"{"quant_method":"gptq","group_size":0}"#, "positive"),
        ] {
            let e = format!("{:#}", parse(bad).unwrap_err());
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
