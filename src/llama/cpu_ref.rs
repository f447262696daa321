//! The CPU reference forward pass: f32 everywhere, written to be checked by reading.
//!
//! Per layer: x += Wo · attn(rope(Wq·n(x)), rope(Wk·n(x)), Wv·n(x)) then
//! x += Wdown · (silu(Wgate·n(x)) * Wup·n(x)), with n = RMSNorm. RoPE uses the half-split
//! pairing (i, i + head_dim/2) of Hugging Face (the GGUF loader converts to it). Attention is
//! causal over a KV cache, heads grouped (GQA): query head h reads KV head h / group.
//! Only the matmuls are parallel (rayon over output rows); everything else is a plain loop.

use anyhow::{bail, Result};
use rayon::prelude::*;

use super::weights::{Mat, Weights};

/// Keys and values of every layer for positions `0..len`, preallocated for `max_seq`.
pub struct KvCache {
    pub max_seq: usize,
    pub len: usize,
    kv_dim: usize,
    /// Per layer, `[max_seq, kv_dim]` row-major.
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl KvCache {
    pub fn new(w: &Weights, max_seq: usize) -> Self {
        let c = &w.config;
        let kv_dim = c.kv_dim();
        KvCache {
            max_seq,
            len: 0,
            kv_dim,
            k: vec![vec![0.0; max_seq * kv_dim]; c.n_layers],
            v: vec![vec![0.0; max_seq * kv_dim]; c.n_layers],
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    // Eight independent accumulators let the compiler vectorize; the result is still a
    // plain f32 sum, only associated differently.
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `y[t, o] = Σ_i x[t, i] · w[o, i]` for `t` rows of `x` (a linear layer, weight `[out, in]`):
/// a blocked sgemm (`matrixmultiply`) split over output rows with rayon.
pub fn matmul(x: &[f32], t: usize, w: &Mat) -> Vec<f32> {
    assert_eq!(x.len(), t * w.cols, "matmul: input is not [{t}, {}]", w.cols);
    crate::quant::dense::xwt(x, t, &w.data, w.rows, w.cols)
}

/// RMSNorm of each `weight.len()`-wide row: x / sqrt(mean(x²) + eps) * weight.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    let d = weight.len();
    let mut out = vec![0f32; x.len()];
    for (o, row) in out.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
        let ms = row.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for ((o, v), w) in o.iter_mut().zip(row).zip(weight) {
            *o = v * inv * w;
        }
    }
    out
}

/// Rotate each head of `x` (`[t, n_heads * head_dim]`) by its position, half-split pairs.
pub fn rope(x: &mut [f32], positions: &[usize], head_dim: usize, inv_freqs: &[f32]) {
    let half = head_dim / 2;
    let width = x.len() / positions.len();
    for (row, &pos) in x.chunks_exact_mut(width).zip(positions) {
        for head in row.chunks_exact_mut(head_dim) {
            for (i, &f) in inv_freqs.iter().enumerate() {
                let angle = pos as f32 * f;
                let (sin, cos) = angle.sin_cos();
                let (a, b) = (head[i], head[i + half]);
                head[i] = a * cos - b * sin;
                head[i + half] = b * cos + a * sin;
            }
        }
    }
}

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

fn softmax_in_place(x: &mut [f32]) {
    let m = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let mut s = 0.0;
    for v in x.iter_mut() {
        *v = (*v - m).exp();
        s += *v;
    }
    for v in x.iter_mut() {
        *v /= s;
    }
}

/// Which positions get logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    Last,
    All,
}

/// The input of a group of linears in one layer, as `forward_observed` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinearInput {
    /// attn_norm(x): the input of wq, wk, wv.
    Qkv,
    /// The attention output: the input of wo.
    AttnOut,
    /// ffn_norm(x): the input of w_gate, w_up.
    GateUp,
    /// silu(gate) * up: the input of w_down.
    Down,
}

impl LinearInput {
    pub const ALL: [LinearInput; 4] = [LinearInput::Qkv, LinearInput::AttnOut, LinearInput::GateUp, LinearInput::Down];
}

/// Run `tokens` at positions `cache.len..` (a prefill when many, a decode step when one),
/// append their keys/values to the cache, and return logits `[n, vocab]` for the requested
/// positions (n = 1 for `Logits::Last`).
pub fn forward(w: &Weights, cache: &mut KvCache, tokens: &[u32], which: Logits) -> Result<Vec<f32>> {
    forward_observed(w, cache, tokens, which, &mut |_, _, _| {})
}

/// [`forward`], calling `observe(layer, site, x)` with each linear input x `[t, in]`: what
/// calibration (AWQ, GPTQ) collects.
pub fn forward_observed(
    w: &Weights,
    cache: &mut KvCache,
    tokens: &[u32],
    which: Logits,
    observe: &mut dyn FnMut(usize, LinearInput, &[f32]),
) -> Result<Vec<f32>> {
    let c = &w.config;
    let t = tokens.len();
    if t == 0 {
        bail!("forward: no tokens");
    }
    let p0 = cache.len;
    if p0 + t > cache.max_seq {
        bail!("forward: {} positions exceed the KV cache size {}", p0 + t, cache.max_seq);
    }
    if let Some(&bad) = tokens.iter().find(|&&id| id as usize >= c.vocab_size) {
        bail!("forward: token id {bad} is outside the vocabulary ({})", c.vocab_size);
    }
    let (d, hd, kvd) = (c.dim, c.head_dim, cache.kv_dim);
    let group = c.n_heads / c.n_kv_heads;
    let positions: Vec<usize> = (p0..p0 + t).collect();
    let scale = 1.0 / (hd as f32).sqrt();

    let mut x: Vec<f32> = tokens.iter().flat_map(|&id| w.tok_embeddings.row(id as usize).iter().copied()).collect();
    for (l, lw) in w.layers.iter().enumerate() {
        let h = rms_norm(&x, &lw.attn_norm, c.norm_eps);
        observe(l, LinearInput::Qkv, &h);
        let mut q = matmul(&h, t, &lw.wq);
        let mut k = matmul(&h, t, &lw.wk);
        let v = matmul(&h, t, &lw.wv);
        rope(&mut q, &positions, hd, &w.rope_inv_freqs);
        rope(&mut k, &positions, hd, &w.rope_inv_freqs);
        cache.k[l][p0 * kvd..(p0 + t) * kvd].copy_from_slice(&k);
        cache.v[l][p0 * kvd..(p0 + t) * kvd].copy_from_slice(&v);
        let (kc, vc) = (&cache.k[l], &cache.v[l]);

        // One task per (token, query head): scores over positions 0..=pos, softmax, mix V.
        let attn: Vec<f32> = (0..t * c.n_heads)
            .into_par_iter()
            .flat_map_iter(|task| {
                let (ti, head) = (task / c.n_heads, task % c.n_heads);
                let pos = p0 + ti;
                let qh = &q[ti * c.q_dim() + head * hd..][..hd];
                let kv_off = (head / group) * hd;
                let mut scores: Vec<f32> = (0..=pos).map(|j| dot(qh, &kc[j * kvd + kv_off..][..hd]) * scale).collect();
                softmax_in_place(&mut scores);
                let mut out = vec![0f32; hd];
                for (j, p) in scores.iter().enumerate() {
                    for (o, vv) in out.iter_mut().zip(&vc[j * kvd + kv_off..][..hd]) {
                        *o += p * vv;
                    }
                }
                out
            })
            .collect();
        observe(l, LinearInput::AttnOut, &attn);
        let o = matmul(&attn, t, &lw.wo);
        x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);

        let h = rms_norm(&x, &lw.ffn_norm, c.norm_eps);
        observe(l, LinearInput::GateUp, &h);
        let g = matmul(&h, t, &lw.w_gate);
        let u = matmul(&h, t, &lw.w_up);
        let a: Vec<f32> = g.iter().zip(&u).map(|(g, u)| silu(*g) * u).collect();
        observe(l, LinearInput::Down, &a);
        let down = matmul(&a, t, &lw.w_down);
        x.iter_mut().zip(&down).for_each(|(a, b)| *a += b);
    }
    cache.len = p0 + t;

    let rows = match which {
        Logits::Last => &x[(t - 1) * d..],
        Logits::All => &x[..],
    };
    let xn = rms_norm(rows, &w.norm, c.norm_eps);
    Ok(matmul(&xn, rows.len() / d, w.lm_head()))
}

/// The two largest logits of one position, (token, logit), best first; ties go to the
/// lower id (what torch.argmax and llama.cpp's greedy sampler do).
pub fn top2(logits: &[f32]) -> [(u32, f32); 2] {
    let mut best = [(0u32, f32::NEG_INFINITY), (0u32, f32::NEG_INFINITY)];
    for (i, &v) in logits.iter().enumerate() {
        if v > best[0].1 {
            best[1] = best[0];
            best[0] = (i as u32, v);
        } else if v > best[1].1 {
            best[1] = (i as u32, v);
        }
    }
    best
}

/// Greedy generation result: new tokens and, per step, the top-2 logits behind the choice.
#[derive(Debug, Clone)]
pub struct Generation {
    pub tokens: Vec<u32>,
    pub top2: Vec<[(u32, f32); 2]>,
}

/// Prefill `prompt` in one batch, then decode greedily up to `max_new` tokens, stopping
/// after a token in `stop` (which is included in the output).
pub fn generate_greedy(w: &Weights, prompt: &[u32], max_new: usize, stop: &[u32]) -> Result<Generation> {
    let mut cache = KvCache::new(w, prompt.len() + max_new);
    let mut logits = forward(w, &mut cache, prompt, Logits::Last)?;
    let mut gen = Generation { tokens: Vec::with_capacity(max_new), top2: Vec::with_capacity(max_new) };
    for step in 0..max_new {
        let t2 = top2(&logits);
        let next = t2[0].0;
        gen.tokens.push(next);
        gen.top2.push(t2);
        if stop.contains(&next) || step + 1 == max_new {
            break;
        }
        logits = forward(w, &mut cache, &[next], Logits::Last)?;
    }
    Ok(gen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llama::config::LlamaConfig;

    #[test]
    fn matmul_matches_naive() {
        let w = Mat::new(70, 19, (0..70 * 19).map(|i| (i % 13) as f32 - 6.0).collect());
        let x: Vec<f32> = (0..3 * 19).map(|i| (i % 7) as f32 * 0.5).collect();
        let y = matmul(&x, 3, &w);
        for t in 0..3 {
            for o in 0..70 {
                let e: f32 = (0..19).map(|i| x[t * 19 + i] * w.data[o * 19 + i]).sum();
                assert!((y[t * 70 + o] - e).abs() < 1e-3);
            }
        }
    }

    #[test]
    fn rope_preserves_norm_and_is_relative() {
        let inv = vec![1.0, 0.1];
        let mut a = vec![1.0, 2.0, 3.0, 4.0];
        rope(&mut a, &[5], 4, &inv);
        let n: f32 = a.iter().map(|v| v * v).sum();
        assert!((n - 30.0).abs() < 1e-4);
        // <rope(q, m), rope(k, n)> depends only on m - n.
        let (q, k) = (vec![0.3, -1.0, 0.7, 0.2], vec![1.1, 0.4, -0.5, 0.9]);
        let score = |m: usize, n: usize| {
            let (mut q, mut k) = (q.clone(), k.clone());
            rope(&mut q, &[m], 4, &inv);
            rope(&mut k, &[n], 4, &inv);
            dot(&q, &k)
        };
        assert!((score(7, 3) - score(14, 10)).abs() < 1e-4);
    }

    /// Batched prefill and one-token-at-a-time decoding must give the same logits.
    #[test]
    fn prefill_equals_incremental() {
        let cfg = LlamaConfig::preset("tiny").unwrap();
        let w = Weights::random(&cfg, 7).unwrap();
        let toks = [5u32, 99, 3, 1000, 42, 7, 7, 512];
        let mut c1 = KvCache::new(&w, 16);
        let all = forward(&w, &mut c1, &toks, Logits::All).unwrap();
        let mut c2 = KvCache::new(&w, 16);
        for (i, &tk) in toks.iter().enumerate() {
            let l = forward(&w, &mut c2, &[tk], Logits::Last).unwrap();
            let r = &all[i * cfg.vocab_size..(i + 1) * cfg.vocab_size];
            let err = l.iter().zip(r).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(err < 1e-4, "position {i}: max abs diff {err}");
        }
        assert!(forward(&w, &mut c2, &[1; 9], Logits::Last).unwrap_err().to_string().contains("KV cache"));
    }
}
