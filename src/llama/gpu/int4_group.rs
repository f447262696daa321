//! The int4 group size a model's weights are quantized with (`kernlab e2e --int4-group`).

use crate::kernels::gemm_int4::PER_CHANNEL;
use anyhow::{Context, Result};

/// Group size of the model's int4 weights where it divides every linear's K (the format of
/// AWQ/GPTQ checkpoints, and what the tuned database holds winners for).
pub const MODEL_GROUP: i64 = 128;

/// The group for a model: `asked` if it divides every linear's K (PER_CHANNEL always
/// does), else an error naming the one it does not divide; without `asked`, MODEL_GROUP,
/// else the largest of 64 and 32 that divides them all.
pub fn choose_group(c: &crate::llama::config::LlamaConfig, asked: Option<i64>) -> Result<i64> {
    let ks = [c.dim as i64, c.q_dim() as i64, c.ffn_dim as i64];
    let fits = |g: i64| g == PER_CHANNEL || ks.iter().all(|k| k % g == 0);
    match asked {
        Some(g) if fits(g) => Ok(g),
        Some(g) => anyhow::bail!(
            "--int4-group {g} does not divide every linear's K ({}: dim {}, q {}, ffn {}); try --int4-group auto",
            c.name,
            ks[0],
            ks[1],
            ks[2]
        ),
        None => [MODEL_GROUP, 64, 32].into_iter().find(|g| fits(*g)).with_context(|| {
            format!("{}: no int4 group size (128, 64, 32) divides dim {}, q {} and ffn {}", c.name, ks[0], ks[1], ks[2])
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llama::config::LlamaConfig;

    #[test]
    fn group_is_128_where_it_divides_every_k_else_the_largest_that_does() {
        let l8b = LlamaConfig::preset("llama3-8b").unwrap();
        assert_eq!(choose_group(&l8b, None).unwrap(), 128);
        assert_eq!(choose_group(&l8b, Some(32)).unwrap(), 32);
        // SmolLM2-135M: dim 576 = 4.5 · 128 = 9 · 64.
        let smol = LlamaConfig { dim: 576, n_heads: 9, head_dim: 64, ffn_dim: 1536, ..l8b.clone() };
        assert_eq!(choose_group(&smol, None).unwrap(), 64);
        let e = choose_group(&smol, Some(128)).unwrap_err().to_string();
        assert!(e.contains("576") && e.contains("--int4-group auto"), "{e}");
        let odd = LlamaConfig { dim: 100, n_heads: 1, head_dim: 100, ffn_dim: 300, ..l8b };
        assert!(choose_group(&odd, None).is_err());
        assert_eq!(choose_group(&odd, Some(PER_CHANNEL)).unwrap(), PER_CHANNEL);
    }
}
