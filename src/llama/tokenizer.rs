//! Tokenizers: built from GGUF metadata (byte-level BPE, `tokenizer.ggml.model = "gpt2"`)
//! or read from a Hugging Face `tokenizer.json`, both as a `tokenizers::Tokenizer` so the
//! BPE itself is the `tokenizers` crate's, not ours.
//!
//! GGUF stores the vocabulary (already in byte-level "Ġ" form), the merges ("a b") and a
//! pre-tokenizer *name* (`tokenizer.ggml.pre`); the name selects the split rules that the
//! original `tokenizer.json` had, which we rebuild here for the families we support.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use super::gguf::{GgufFile, MetaArray};

/// Llama-3's split regex (from its tokenizer.json): contractions, letters with an optional
/// leading non-letter, numbers in groups of up to 3, punctuation runs, newlines, spaces.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// llama.cpp token types (`tokenizer.ggml.token_type`).
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// Pre-tokenizer and BPE options for a `tokenizer.ggml.pre` name.
fn pre_tokenizer_for(pre: &str) -> Result<(PreTokenizerWrapper, bool)> {
    let byte_level_regex = ByteLevel::new(false, true, true);
    Ok(match pre {
        // GPT-2 style: the ByteLevel pre-tokenizer's own regex does the split.
        "default" | "gpt2" => (byte_level_regex.into(), false),
        // StarCoder-derived vocabularies (SmolLM/SmolLM2): every digit on its own first.
        "smollm" | "starcoder" | "refact" => {
            (Sequence::new(vec![Digits::new(true).into(), byte_level_regex.into()]).into(), false)
        }
        // Llama-3: its own split regex, then byte-level mapping without a second split; its
        // tokenizer.json sets ignore_merges (a word already in the vocab is one token).
        "llama-bpe" | "llama3" => {
            let split = Split::new(SplitPattern::Regex(LLAMA3_SPLIT.into()), SplitDelimiterBehavior::Isolated, false)
                .map_err(|e| anyhow!("building the llama3 split regex: {e}"))?;
            (Sequence::new(vec![split.into(), ByteLevel::new(false, true, false).into()]).into(), true)
        }
        other => bail!(
            "tokenizer.ggml.pre = '{other}' is not supported (supported: default, gpt2, smollm, starcoder, llama-bpe)"
        ),
    })
}

/// Build the tokenizer described by a GGUF file's `tokenizer.ggml.*` metadata.
pub fn from_gguf(g: &GgufFile) -> Result<Tokenizer> {
    let model = g.meta_str("tokenizer.ggml.model")?;
    if model != "gpt2" {
        bail!("tokenizer.ggml.model = '{model}' is not supported (only byte-level BPE, 'gpt2')");
    }
    let tokens = g.meta_strings("tokenizer.ggml.tokens")?;
    let merges_raw = g.meta_strings("tokenizer.ggml.merges")?;
    let types: Option<&[i32]> = match g.meta_array("tokenizer.ggml.token_type") {
        Ok(MetaArray::I32(v)) if v.len() == tokens.len() => Some(v),
        Ok(_) => bail!("tokenizer.ggml.token_type must be an i32 array as long as tokenizer.ggml.tokens"),
        Err(_) => None,
    };
    let pre = g.meta_str("tokenizer.ggml.pre").unwrap_or_else(|_| "default".into());

    let mut vocab = Vocab::default();
    for (i, t) in tokens.iter().enumerate() {
        // Duplicate strings happen in some vocabularies (padding tokens); first id wins,
        // which is also what llama.cpp's text→token map does.
        vocab.entry(t.clone()).or_insert(i as u32);
    }
    let merges = merges_raw
        .iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| anyhow!("tokenizer.ggml.merges[{i}] = {m:?} has no space"))
        })
        .collect::<Result<Vec<_>>>()?;

    let (pre_tok, ignore_merges) = pre_tokenizer_for(&pre)?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(ignore_merges)
        .build()
        .map_err(|e| anyhow!("building the BPE model: {e}"))?;
    let mut tok = Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(pre_tok));
    tok.with_decoder(Some(ByteLevelDecoder::default()));

    // Control tokens (<|im_start|>, <|begin_of_text|>...) must be matched whole in the input
    // text and never split by BPE: register them as special added tokens.
    if let Some(types) = types {
        let special: Vec<AddedToken> = tokens
            .iter()
            .zip(types)
            .filter(|(_, &t)| t == TOKEN_TYPE_CONTROL || t == TOKEN_TYPE_USER_DEFINED)
            .map(|(s, &t)| AddedToken::from(s.clone(), t == TOKEN_TYPE_CONTROL))
            .collect();
        tok.add_special_tokens(&special);
    }
    Ok(tok)
}

/// Read a Hugging Face `tokenizer.json`.
pub fn from_hf_file(path: &Path) -> Result<Tokenizer> {
    Tokenizer::from_file(path).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// Encode without adding special tokens (callers add BOS themselves when the model wants it).
pub fn encode(tok: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    Ok(tok.encode(text, false).map_err(|e| anyhow!("tokenizing {text:?}: {e}"))?.get_ids().to_vec())
}

pub fn decode(tok: &Tokenizer, ids: &[u32]) -> Result<String> {
    tok.decode(ids, false).map_err(|e| anyhow!("decoding {} ids: {e}", ids.len())).context("detokenize")
}
