//! Llama-family model configuration: named presets, Hugging Face `config.json`, GGUF metadata.
//!
//! A config read from the model itself (config.json or GGUF metadata) always wins over a
//! preset; presets exist so benchmarks and tests can build a model of a known shape with no
//! files at all.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

use super::gguf::GgufFile;

/// Llama-3 style RoPE frequency scaling ("rope_type": "llama3" in config.json).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    pub factor: f32,
    pub low_freq_factor: f32,
    pub high_freq_factor: f32,
    pub original_max_position_embeddings: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// Preset or model name, for reports only.
    pub name: String,
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn_dim: usize,
    pub vocab_size: usize,
    pub norm_eps: f32,
    pub rope_theta: f32,
    pub rope_scaling: Option<RopeScaling>,
    pub max_seq_len: usize,
    /// lm_head shares the token embedding matrix.
    pub tie_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

/// Names accepted by [`LlamaConfig::preset`].
pub const PRESET_NAMES: &[&str] = &["llama3-8b", "llama3.1-8b", "llama3.2-1b", "smollm2-135m", "tiny"];

const LLAMA31_SCALING: RopeScaling =
    RopeScaling { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192 };

impl LlamaConfig {
    /// A named preset (gpt-fast style table). Unknown names list the known ones.
    pub fn preset(name: &str) -> Result<Self> {
        let base = |dim, n_layers, n_heads, n_kv_heads, ffn_dim, vocab_size| LlamaConfig {
            name: name.to_string(),
            dim,
            n_layers,
            n_heads,
            n_kv_heads,
            head_dim: dim / n_heads,
            ffn_dim,
            vocab_size,
            norm_eps: 1e-5,
            rope_theta: 500_000.0,
            rope_scaling: None,
            max_seq_len: 8192,
            tie_embeddings: false,
            bos_token_id: Some(128_000),
            eos_token_ids: vec![128_001, 128_009],
        };
        let cfg = match name {
            // Meta-Llama-3-8B: no RoPE scaling, 8k context.
            "llama3-8b" => base(4096, 32, 32, 8, 14336, 128_256),
            "llama3.1-8b" => LlamaConfig {
                rope_scaling: Some(LLAMA31_SCALING),
                max_seq_len: 131_072,
                ..base(4096, 32, 32, 8, 14336, 128_256)
            },
            "llama3.2-1b" => LlamaConfig {
                rope_scaling: Some(RopeScaling { factor: 32.0, ..LLAMA31_SCALING }),
                max_seq_len: 131_072,
                tie_embeddings: true,
                ..base(2048, 16, 32, 8, 8192, 128_256)
            },
            "smollm2-135m" => LlamaConfig {
                rope_theta: 100_000.0,
                tie_embeddings: true,
                bos_token_id: Some(1),
                eos_token_ids: vec![2],
                ..base(576, 30, 9, 3, 1536, 49_152)
            },
            // A few MB of f32: big enough to exercise GQA, RoPE scaling and several layers,
            // small enough for unit tests and fuzz-free random weights.
            "tiny" => LlamaConfig {
                rope_scaling: Some(RopeScaling {
                    factor: 8.0,
                    low_freq_factor: 1.0,
                    high_freq_factor: 4.0,
                    original_max_position_embeddings: 64,
                }),
                max_seq_len: 256,
                bos_token_id: Some(1),
                eos_token_ids: vec![2],
                ..base(128, 4, 4, 2, 384, 1024)
            },
            other => bail!("unknown model preset '{other}' (known: {})", PRESET_NAMES.join(", ")),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Internal consistency (not against weights; see [`LlamaConfig::check_shape`]).
    pub fn validate(&self) -> Result<()> {
        let n = &self.name;
        if self.dim == 0 || self.n_layers == 0 || self.n_heads == 0 || self.n_kv_heads == 0 {
            bail!("config '{n}': dim, n_layers, n_heads and n_kv_heads must be > 0");
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            bail!("config '{n}': head_dim {} must be even and > 0 (RoPE rotates pairs)", self.head_dim);
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            bail!(
                "config '{n}': n_heads {} is not a multiple of n_kv_heads {} (grouped-query attention)",
                self.n_heads,
                self.n_kv_heads
            );
        }
        if self.ffn_dim == 0 || self.vocab_size == 0 || self.max_seq_len == 0 {
            bail!("config '{n}': ffn_dim, vocab_size and max_seq_len must be > 0");
        }
        // Far above any real model (Llama-3 405B: dim 16384, ffn 53248, 126 layers), low
        // enough that size arithmetic on a corrupt config cannot overflow.
        const MAX_WIDTH: usize = 1 << 22;
        for (what, v, max) in [
            ("dim", self.dim, MAX_WIDTH),
            ("ffn_dim", self.ffn_dim, MAX_WIDTH),
            ("vocab_size", self.vocab_size, MAX_WIDTH),
            ("head_dim", self.head_dim, 1 << 16),
            ("n_heads", self.n_heads, 1 << 14),
            ("n_layers", self.n_layers, 1 << 12),
            ("max_seq_len", self.max_seq_len, 1 << 24),
        ] {
            if v > max {
                bail!("config '{n}': {what} = {v} is beyond any supported model (limit {max})");
            }
        }
        if !positive(self.norm_eps) || !positive(self.rope_theta) {
            bail!("config '{n}': norm_eps and rope_theta must be positive");
        }
        if let Some(s) = &self.rope_scaling {
            if !positive(s.factor)
                || !positive(s.high_freq_factor - s.low_freq_factor)
                || s.original_max_position_embeddings == 0
            {
                bail!("config '{n}': invalid llama3 rope_scaling {s:?} (need factor > 0, high_freq_factor > low_freq_factor)");
            }
        }
        Ok(())
    }

    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Parameter count (embeddings counted once when tied).
    pub fn n_params(&self) -> usize {
        let attn = self.dim * (self.q_dim() + 2 * self.kv_dim()) + self.q_dim() * self.dim;
        let mlp = 3 * self.dim * self.ffn_dim;
        let per_layer = attn + mlp + 2 * self.dim;
        let emb = self.vocab_size * self.dim * if self.tie_embeddings { 1 } else { 2 };
        self.n_layers * per_layer + emb + self.dim
    }

    /// RoPE inverse frequencies for one head (head_dim / 2 values), with Llama-3 scaling
    /// applied when configured. `i`-th value rotates the pair (i, i + head_dim/2).
    pub fn rope_inv_freqs(&self) -> Vec<f32> {
        let half = self.head_dim / 2;
        (0..half)
            .map(|i| {
                let freq = 1.0 / (self.rope_theta as f64).powf(2.0 * i as f64 / self.head_dim as f64);
                match &self.rope_scaling {
                    None => freq as f32,
                    Some(s) => llama3_scale_freq(freq, s) as f32,
                }
            })
            .collect()
    }

    /// Read a Hugging Face `config.json`.
    pub fn from_hf_json(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_hf_json_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn from_hf_json_str(text: &str) -> Result<Self> {
        let c: HfConfig = serde_json::from_str(text)?;
        if let Some(arch) = &c.model_type {
            if arch != "llama" {
                bail!("model_type is '{arch}', only 'llama' is supported");
            }
        }
        let rope_scaling = match c.rope_scaling {
            None => None,
            Some(s) => {
                let kind = s.rope_type.or(s.type_).unwrap_or_default();
                if kind != "llama3" {
                    bail!("rope_scaling type '{kind}' is not supported (only 'llama3')");
                }
                Some(RopeScaling {
                    factor: s.factor,
                    low_freq_factor: s.low_freq_factor.context("rope_scaling.low_freq_factor missing")?,
                    high_freq_factor: s.high_freq_factor.context("rope_scaling.high_freq_factor missing")?,
                    original_max_position_embeddings: s
                        .original_max_position_embeddings
                        .context("rope_scaling.original_max_position_embeddings missing")?,
                })
            }
        };
        let n_kv_heads = c.num_key_value_heads.unwrap_or(c.num_attention_heads);
        let cfg = LlamaConfig {
            name: c.name_or_path.unwrap_or_else(|| "hf".into()),
            dim: c.hidden_size,
            n_layers: c.num_hidden_layers,
            n_heads: c.num_attention_heads,
            n_kv_heads,
            head_dim: c.head_dim.unwrap_or(c.hidden_size / c.num_attention_heads.max(1)),
            ffn_dim: c.intermediate_size,
            vocab_size: c.vocab_size,
            norm_eps: c.rms_norm_eps.unwrap_or(1e-5),
            rope_theta: c.rope_theta.unwrap_or(10_000.0),
            rope_scaling,
            max_seq_len: c.max_position_embeddings.unwrap_or(2048),
            tie_embeddings: c.tie_word_embeddings.unwrap_or(false),
            bos_token_id: c.bos_token_id,
            eos_token_ids: match c.eos_token_id {
                None => vec![],
                Some(OneOrMany::One(x)) => vec![x],
                Some(OneOrMany::Many(v)) => v,
            },
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Read the `llama.*` metadata of a GGUF file. Tied embeddings are inferred from the
    /// absence of `output.weight`, which is how llama.cpp's converter writes them.
    pub fn from_gguf(g: &GgufFile) -> Result<Self> {
        let ctx = || format!("{}: reading llama config from metadata", g.path().display());
        let arch = g.meta_str("general.architecture").with_context(ctx)?;
        if arch != "llama" {
            bail!("{}: general.architecture is '{arch}', only 'llama' is supported", g.path().display());
        }
        let u = |k: &str| -> Result<usize> { g.meta_usize(&format!("llama.{k}")).with_context(ctx) };
        let dim = u("embedding_length")?;
        let n_heads = u("attention.head_count")?;
        let n_kv_heads = g.meta_usize("llama.attention.head_count_kv").unwrap_or(n_heads);
        let head_dim = match g.meta_usize("llama.attention.key_length") {
            Ok(h) => h,
            Err(_) => g.meta_usize("llama.rope.dimension_count").unwrap_or(dim / n_heads.max(1)),
        };
        let vocab_size = match g.meta_usize("llama.vocab_size") {
            Ok(v) => v,
            Err(_) => g.meta_array_len("tokenizer.ggml.tokens").with_context(ctx)?,
        };
        // GGUF keeps Llama-3 scaling as a `rope_freqs.weight` tensor of per-frequency
        // divisors; the scalar keys below are only present in some converters' output.
        let rope_scaling = match g.meta_str("llama.rope.scaling.type") {
            Ok(t) if t == "llama3" => Some(RopeScaling {
                factor: g.meta_f32("llama.rope.scaling.factor").with_context(ctx)?,
                low_freq_factor: g.meta_f32("llama.rope.scaling.low_freq_factor").unwrap_or(1.0),
                high_freq_factor: g.meta_f32("llama.rope.scaling.high_freq_factor").unwrap_or(4.0),
                original_max_position_embeddings: g
                    .meta_usize("llama.rope.scaling.original_context_length")
                    .unwrap_or(8192),
            }),
            _ => None,
        };
        let cfg = LlamaConfig {
            name: g.meta_str("general.name").unwrap_or_else(|_| "gguf".into()),
            dim,
            n_layers: u("block_count")?,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_dim: u("feed_forward_length")?,
            vocab_size,
            norm_eps: g.meta_f32("llama.attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
            rope_theta: g.meta_f32("llama.rope.freq_base").unwrap_or(10_000.0),
            rope_scaling,
            max_seq_len: g.meta_usize("llama.context_length").unwrap_or(2048),
            tie_embeddings: g.tensor("output.weight").is_none(),
            bos_token_id: g.meta_usize("tokenizer.ggml.bos_token_id").ok().map(|x| x as u32),
            eos_token_ids: g.meta_usize("tokenizer.ggml.eos_token_id").ok().map(|x| vec![x as u32]).unwrap_or_default(),
        };
        cfg.validate().with_context(ctx)?;
        Ok(cfg)
    }

    /// Check that a weight's shape is what this config implies; the error names the tensor,
    /// the file and both shapes so a mismatched config/weights pair is obvious.
    pub fn check_shape(&self, file: &str, tensor: &str, expected: &[usize], found: &[usize]) -> Result<()> {
        if expected != found {
            bail!(
                "{file}: tensor '{tensor}' has shape {found:?} but config '{}' implies {expected:?} \
                 (dim={}, n_heads={}, n_kv_heads={}, head_dim={}, ffn_dim={}, vocab={})",
                self.name,
                self.dim,
                self.n_heads,
                self.n_kv_heads,
                self.head_dim,
                self.ffn_dim,
                self.vocab_size
            );
        }
        Ok(())
    }
}

/// True for a positive number, false for zero, negatives and NaN.
fn positive(x: f32) -> bool {
    x > 0.0
}

/// Llama-3.1 frequency scaling: long wavelengths (low frequencies) are slowed by `factor`,
/// short ones kept, and the band between interpolated smoothly.
pub fn llama3_scale_freq(freq: f64, s: &RopeScaling) -> f64 {
    let old = s.original_max_position_embeddings as f64;
    let low_freq_wavelen = old / s.low_freq_factor as f64;
    let high_freq_wavelen = old / s.high_freq_factor as f64;
    let wavelen = 2.0 * std::f64::consts::PI / freq;
    if wavelen < high_freq_wavelen {
        freq
    } else if wavelen > low_freq_wavelen {
        freq / s.factor as f64
    } else {
        let smooth =
            (old / wavelen - s.low_freq_factor as f64) / (s.high_freq_factor as f64 - s.low_freq_factor as f64);
        (1.0 - smooth) * freq / s.factor as f64 + smooth * freq
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

#[derive(Deserialize)]
struct HfRopeScaling {
    #[serde(default)]
    factor: f32,
    low_freq_factor: Option<f32>,
    high_freq_factor: Option<f32>,
    original_max_position_embeddings: Option<usize>,
    rope_type: Option<String>,
    #[serde(rename = "type")]
    type_: Option<String>,
}

#[derive(Deserialize)]
struct HfConfig {
    #[serde(rename = "_name_or_path")]
    name_or_path: Option<String>,
    model_type: Option<String>,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    intermediate_size: usize,
    vocab_size: usize,
    rms_norm_eps: Option<f32>,
    rope_theta: Option<f32>,
    rope_scaling: Option<HfRopeScaling>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<OneOrMany>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_sized() {
        for n in PRESET_NAMES {
            LlamaConfig::preset(n).unwrap();
        }
        let c = LlamaConfig::preset("llama3-8b").unwrap();
        // 8.03B parameters for Llama-3-8B.
        assert!((c.n_params() as f64 / 1e9 - 8.03).abs() < 0.01, "{}", c.n_params());
        let s = LlamaConfig::preset("smollm2-135m").unwrap();
        assert!((s.n_params() as f64 / 1e6 - 134.5).abs() < 1.0, "{}", s.n_params());
        assert!(LlamaConfig::preset("nope").unwrap_err().to_string().contains("smollm2-135m"));
    }

    #[test]
    fn llama3_scaling_bands() {
        let s = LLAMA31_SCALING;
        // wavelength 2*pi/1 << 2048: kept
        assert_eq!(llama3_scale_freq(1.0, &s), 1.0);
        // very long wavelength: divided by factor
        let f = 2.0 * std::f64::consts::PI / 100_000.0;
        assert!((llama3_scale_freq(f, &s) - f / 8.0).abs() < 1e-15);
    }

    #[test]
    fn hf_json_llama32() {
        let j = r#"{"model_type":"llama","hidden_size":2048,"num_hidden_layers":16,
            "num_attention_heads":32,"num_key_value_heads":8,"intermediate_size":8192,
            "vocab_size":128256,"rms_norm_eps":1e-5,"rope_theta":500000.0,
            "rope_scaling":{"factor":32.0,"high_freq_factor":4.0,"low_freq_factor":1.0,
            "original_max_position_embeddings":8192,"rope_type":"llama3"},
            "max_position_embeddings":131072,"tie_word_embeddings":true,
            "bos_token_id":128000,"eos_token_id":[128001,128008,128009]}"#;
        let c = LlamaConfig::from_hf_json_str(j).unwrap();
        let p = LlamaConfig::preset("llama3.2-1b").unwrap();
        assert_eq!(c.rope_scaling, p.rope_scaling);
        assert_eq!((c.dim, c.n_layers, c.head_dim, c.tie_embeddings), (2048, 16, 64, true));
        assert_eq!(c.eos_token_ids, vec![128001, 128008, 128009]);
    }
}
