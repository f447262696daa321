//! One naming for Llama weights, mapped to and from the GGUF and Hugging Face names, with
//! the shape each weight must have under a config.

use std::fmt;

use super::config::LlamaConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerTensor {
    AttnNorm,
    Wq,
    Wk,
    Wv,
    Wo,
    FfnNorm,
    WGate,
    WUp,
    WDown,
}

impl LayerTensor {
    pub const ALL: [LayerTensor; 9] = [
        LayerTensor::AttnNorm,
        LayerTensor::Wq,
        LayerTensor::Wk,
        LayerTensor::Wv,
        LayerTensor::Wo,
        LayerTensor::FfnNorm,
        LayerTensor::WGate,
        LayerTensor::WUp,
        LayerTensor::WDown,
    ];

    fn gguf(self) -> &'static str {
        use LayerTensor::*;
        match self {
            AttnNorm => "attn_norm",
            Wq => "attn_q",
            Wk => "attn_k",
            Wv => "attn_v",
            Wo => "attn_output",
            FfnNorm => "ffn_norm",
            WGate => "ffn_gate",
            WUp => "ffn_up",
            WDown => "ffn_down",
        }
    }

    fn hf(self) -> &'static str {
        use LayerTensor::*;
        match self {
            AttnNorm => "input_layernorm",
            Wq => "self_attn.q_proj",
            Wk => "self_attn.k_proj",
            Wv => "self_attn.v_proj",
            Wo => "self_attn.o_proj",
            FfnNorm => "post_attention_layernorm",
            WGate => "mlp.gate_proj",
            WUp => "mlp.up_proj",
            WDown => "mlp.down_proj",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightName {
    TokEmbd,
    Layer(usize, LayerTensor),
    /// Final RMSNorm before the lm_head.
    Norm,
    LmHead,
    /// Llama-3 RoPE per-frequency divisors (GGUF only; HF computes them from config.json).
    RopeFreqs,
}

impl WeightName {
    pub fn gguf(&self) -> String {
        match self {
            WeightName::TokEmbd => "token_embd.weight".into(),
            WeightName::Layer(i, t) => format!("blk.{i}.{}.weight", t.gguf()),
            WeightName::Norm => "output_norm.weight".into(),
            WeightName::LmHead => "output.weight".into(),
            WeightName::RopeFreqs => "rope_freqs.weight".into(),
        }
    }

    pub fn hf(&self) -> String {
        match self {
            WeightName::TokEmbd => "model.embed_tokens.weight".into(),
            WeightName::Layer(i, t) => format!("model.layers.{i}.{}.weight", t.hf()),
            WeightName::Norm => "model.norm.weight".into(),
            WeightName::LmHead => "lm_head.weight".into(),
            WeightName::RopeFreqs => "rope_freqs.weight".into(),
        }
    }

    pub fn from_gguf(s: &str) -> Option<Self> {
        Self::parse(
            s,
            "blk.",
            |t| t.gguf(),
            |n| match n {
                "token_embd.weight" => Some(WeightName::TokEmbd),
                "output_norm.weight" => Some(WeightName::Norm),
                "output.weight" => Some(WeightName::LmHead),
                "rope_freqs.weight" => Some(WeightName::RopeFreqs),
                _ => None,
            },
        )
    }

    pub fn from_hf(s: &str) -> Option<Self> {
        Self::parse(
            s,
            "model.layers.",
            |t| t.hf(),
            |n| match n {
                "model.embed_tokens.weight" => Some(WeightName::TokEmbd),
                "model.norm.weight" => Some(WeightName::Norm),
                "lm_head.weight" => Some(WeightName::LmHead),
                _ => None,
            },
        )
    }

    fn parse(
        s: &str,
        layer_prefix: &str,
        suffix: fn(LayerTensor) -> &'static str,
        global: fn(&str) -> Option<WeightName>,
    ) -> Option<Self> {
        if let Some(rest) = s.strip_prefix(layer_prefix) {
            let (idx, name) = rest.split_once('.')?;
            let i: usize = idx.parse().ok()?;
            let name = name.strip_suffix(".weight")?;
            let t = LayerTensor::ALL.into_iter().find(|t| suffix(*t) == name)?;
            return Some(WeightName::Layer(i, t));
        }
        global(s)
    }

    /// Row-major shape under `cfg` (PyTorch's `[out_features, in_features]` for linears).
    pub fn expected_shape(&self, cfg: &LlamaConfig) -> Vec<usize> {
        use LayerTensor::*;
        match self {
            WeightName::TokEmbd | WeightName::LmHead => vec![cfg.vocab_size, cfg.dim],
            WeightName::Norm => vec![cfg.dim],
            WeightName::RopeFreqs => vec![cfg.head_dim / 2],
            WeightName::Layer(_, t) => match t {
                AttnNorm | FfnNorm => vec![cfg.dim],
                Wq => vec![cfg.q_dim(), cfg.dim],
                Wk | Wv => vec![cfg.kv_dim(), cfg.dim],
                Wo => vec![cfg.dim, cfg.q_dim()],
                WGate | WUp => vec![cfg.ffn_dim, cfg.dim],
                WDown => vec![cfg.dim, cfg.ffn_dim],
            },
        }
    }
}

impl fmt::Display for WeightName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip() {
        let mut all = vec![WeightName::TokEmbd, WeightName::Norm, WeightName::LmHead];
        for t in LayerTensor::ALL {
            all.push(WeightName::Layer(17, t));
        }
        for n in all {
            assert_eq!(WeightName::from_gguf(&n.gguf()), Some(n));
            assert_eq!(WeightName::from_hf(&n.hf()), Some(n));
        }
        assert_eq!(WeightName::from_gguf("blk.x.attn_q.weight"), None);
        assert_eq!(WeightName::from_gguf("blk.1.attn_q.bias"), None);
    }
}
