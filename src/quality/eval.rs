//! Perplexity on held-out text, and KL divergence / top-1 agreement against the reference
//! model's next-token distributions, all on the CPU reference forward.

use anyhow::Result;
use rayon::prelude::*;

use crate::llama::cpu_ref::{forward, KvCache, Logits};
use crate::llama::Weights;

/// log-softmax of each `vocab`-wide row, in place.
fn log_softmax_rows(logits: &mut [f32], vocab: usize) {
    logits.par_chunks_mut(vocab).for_each(|row| {
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let lse = m + row.iter().map(|&v| f64::from(v - m).exp()).sum::<f64>().ln() as f32;
        row.iter_mut().for_each(|v| *v -= lse);
    });
}

/// Log-probabilities of the next token at every position of every window, [positions, vocab].
pub fn log_probs(w: &Weights, windows: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
    let vocab = w.config.vocab_size;
    windows
        .iter()
        .map(|win| {
            let mut cache = KvCache::new(w, win.len());
            let mut lp = forward(w, &mut cache, win, Logits::All)?;
            log_softmax_rows(&mut lp, vocab);
            Ok(lp)
        })
        .collect()
}

/// What a model scores against the reference on the evaluation windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    /// exp(mean negative log-likelihood of each next token).
    pub perplexity: f64,
    /// Mean KL(reference ‖ model) of the next-token distributions, in nats.
    pub kl: f64,
    /// Fraction of positions where the model's most likely token is the reference's.
    pub top1: f64,
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// Scores of the log-probabilities `lp` (from [`log_probs`]) against the reference `ref_lp`
/// on `windows`: the last position of a window has no next token for perplexity, but counts
/// for KL and top-1.
pub fn score(lp: &[Vec<f32>], ref_lp: &[Vec<f32>], windows: &[Vec<u32>], vocab: usize) -> Scores {
    let (mut nll, mut n_nll, mut kl, mut same, mut n) = (0f64, 0usize, 0f64, 0usize, 0usize);
    for ((q, p), win) in lp.iter().zip(ref_lp).zip(windows) {
        for (pos, (qr, pr)) in q.chunks_exact(vocab).zip(p.chunks_exact(vocab)).enumerate() {
            if let Some(&next) = win.get(pos + 1) {
                nll -= f64::from(qr[next as usize]);
                n_nll += 1;
            }
            kl += pr.iter().zip(qr).map(|(&lp_, &lq)| f64::from(lp_).exp() * f64::from(lp_ - lq)).sum::<f64>();
            same += usize::from(argmax(qr) == argmax(pr));
            n += 1;
        }
    }
    Scores {
        perplexity: (nll / n_nll.max(1) as f64).exp(),
        kl: (kl / n.max(1) as f64).max(0.0),
        top1: same as f64 / n.max(1) as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_of_a_distribution_against_itself_and_a_flat_one() {
        let vocab = 4;
        let mut a = vec![2.0, 0.0, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0];
        log_softmax_rows(&mut a, vocab);
        let win = vec![vec![9u32, 1]];
        let same = score(&[a.clone()], &[a.clone()], &win, vocab);
        assert!(same.kl.abs() < 1e-9 && same.top1 == 1.0);
        // Only position 0 has a next token (1): ppl = 1 / p(1 | position 0).
        let p1 = f64::from(a[1]).exp();
        assert!((same.perplexity - 1.0 / p1).abs() < 1e-6);
        let flat = vec![(0.25f32).ln(); 8];
        let s = score(&[flat], &[a], &win, vocab);
        assert!(s.kl > 0.1 && (s.perplexity - 4.0).abs() < 1e-5);
    }
}
