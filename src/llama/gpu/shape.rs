//! The sizes a model instance is built for and the KV-cache bytes they imply: plain
//! arithmetic that the op kernels, the model and the e2e bound all read.

use crate::llama::config::LlamaConfig;

/// Sizes a model instance is built for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelShape {
    /// Sequences (batch slots).
    pub batch: usize,
    /// Positions per sequence in the KV cache.
    pub max_seq: usize,
    /// Most tokens one step may carry (the total of a batched prefill).
    pub max_step_tokens: usize,
}

/// Bytes of the KV cache: K and V, per layer, [batch][max_seq][kv_heads][head_dim] in bf16.
pub fn kv_cache_bytes(c: &LlamaConfig, batch: usize, max_seq: usize) -> usize {
    2 * c.n_layers * batch * max_seq * c.kv_dim() * 2
}

/// KV bytes one decode step reads when the sequences hold `ctx_lens` positions each.
pub fn kv_bytes_read(c: &LlamaConfig, ctx_lens: &[usize]) -> usize {
    2 * c.n_layers * ctx_lens.iter().sum::<usize>() * c.kv_dim() * 2
}
