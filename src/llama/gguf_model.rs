//! Loading a Llama model (config, weights, tokenizer) from a GGUF file.
//!
//! ## Q/K row order
//! llama.cpp's converter permutes the rows of `attn_q` and `attn_k` so that its RoPE, which
//! rotates *adjacent* pairs (x[2i], x[2i+1]), computes what Hugging Face's RoPE computes on
//! the *half-split* pairs (x[i], x[i + head_dim/2]). Within each head, HF row
//! `s * head_dim/2 + i` (s in {0, 1}) is stored as GGUF row `2i + s`. We undo that here, so
//! every loader yields HF layout and there is a single RoPE convention (half-split) in the
//! crate. Quantization blocks run along rows, so moving whole rows is exact.

use std::path::Path;

use anyhow::{Context, Result};

use super::config::LlamaConfig;
use super::gguf::GgufFile;
use super::names::{LayerTensor, WeightName};
use super::tokenizer;
use super::weights::{TensorSource, Weights};

pub struct GgufSource<'a> {
    pub file: &'a GgufFile,
    n_heads: usize,
    n_kv_heads: usize,
}

impl<'a> GgufSource<'a> {
    pub fn new(file: &'a GgufFile, cfg: &LlamaConfig) -> Self {
        GgufSource { file, n_heads: cfg.n_heads, n_kv_heads: cfg.n_kv_heads }
    }
}

/// Undo llama.cpp's rope permutation of a `[n_heads * head_dim, cols]` matrix (see module
/// docs). `rows % n_heads == 0` and an even head_dim are checked by the caller's shape check.
pub fn unpermute_rope_rows(data: &[f32], n_heads: usize, cols: usize) -> Vec<f32> {
    move_rope_rows(data, n_heads, cols, |interleaved, halves| (interleaved, halves))
}

/// The inverse of [`unpermute_rope_rows`] (HF → GGUF), for writing test files.
pub fn permute_rope_rows(data: &[f32], n_heads: usize, cols: usize) -> Vec<f32> {
    move_rope_rows(data, n_heads, cols, |interleaved, halves| (halves, interleaved))
}

/// Copies each head's rows between the interleaved order (GGUF: pair i at rows 2i, 2i+1)
/// and the split-halves order (HF: rows i and half + i); `src_dst` picks the direction by
/// mapping (interleaved row, halves row) to (source row, destination row).
fn move_rope_rows(
    data: &[f32],
    n_heads: usize,
    cols: usize,
    src_dst: impl Fn(usize, usize) -> (usize, usize),
) -> Vec<f32> {
    let rows = data.len() / cols;
    let head_dim = rows / n_heads;
    let half = head_dim / 2;
    let mut out = vec![0f32; data.len()];
    for h in 0..n_heads {
        for i in 0..half {
            for s in 0..2 {
                let (src, dst) = src_dst(h * head_dim + 2 * i + s, h * head_dim + s * half + i);
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

impl TensorSource for GgufSource<'_> {
    fn describe(&self) -> String {
        self.file.path().display().to_string()
    }

    fn file_name(&self, name: &WeightName) -> String {
        name.gguf()
    }

    fn shape(&self, name: &WeightName) -> Result<Option<Vec<usize>>> {
        Ok(self.file.tensor(&name.gguf()).map(|t| t.shape()))
    }

    fn load_f32(&self, name: &WeightName) -> Result<Vec<f32>> {
        let view = self.file.tensor_view(&name.gguf())?;
        let data = view.to_f32()?;
        let cols = *view.info.ne.first().unwrap_or(&1) as usize;
        Ok(match name {
            WeightName::Layer(_, LayerTensor::Wq) => unpermute_rope_rows(&data, self.n_heads, cols),
            WeightName::Layer(_, LayerTensor::Wk) => unpermute_rope_rows(&data, self.n_kv_heads, cols),
            _ => data,
        })
    }
}

/// A model loaded from files: the config the files describe, f32 weights and the tokenizer.
pub struct LoadedModel {
    pub config: LlamaConfig,
    pub weights: Weights,
    pub tokenizer: tokenizers::Tokenizer,
    /// How prompts get their BOS token: GGUF says it in `tokenizer.ggml.add_bos_token`,
    /// a Hugging Face tokenizer.json does it in its post-processor.
    pub bos: BosPolicy,
    /// The chat template instruct models ship, if the files carry one.
    pub chat_template: Option<super::chat::ChatTemplate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BosPolicy {
    /// Prepend this id.
    Prepend(u32),
    /// Let the tokenizer's post-processor add special tokens.
    PostProcessor,
    None,
}

impl LoadedModel {
    /// Token ids for a prompt, with BOS as the model expects. Special tokens written in the
    /// text (`<|im_start|>`) become their ids.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        let with_specials = self.bos == BosPolicy::PostProcessor;
        let enc =
            self.tokenizer.encode(text, with_specials).map_err(|e| anyhow::anyhow!("tokenizing {text:?}: {e}"))?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if let BosPolicy::Prepend(b) = self.bos {
            ids.push(b);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }
}

impl LoadedModel {
    /// Load a llama-architecture GGUF file. Its metadata is the config (no preset involved).
    pub fn from_gguf(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = GgufFile::open(path)?;
        let config = LlamaConfig::from_gguf(&file)?;
        let weights = Weights::load(&config, &GgufSource::new(&file, &config))?;
        let tokenizer =
            tokenizer::from_gguf(&file).with_context(|| format!("{}: building the tokenizer", path.display()))?;
        // llama.cpp's default when the key is absent differs by vocabulary; files written by
        // current converters always carry it, so absent means "don't".
        let bos = match (file.meta_bool("tokenizer.ggml.add_bos_token").unwrap_or(false), config.bos_token_id) {
            (true, Some(b)) => BosPolicy::Prepend(b),
            _ => BosPolicy::None,
        };
        let chat_template = super::chat::ChatTemplate::from_gguf(&file)
            .with_context(|| format!("{}: reading the chat template", path.display()))?;
        Ok(LoadedModel { config, weights, tokenizer, bos, chat_template })
    }
}
