//! Generation on the GPU model: batched prefill, then one decode step per new token for all
//! sequences at once; greedy (argmax on the device) or sampled (temperature, top-k and top-p
//! on the host, seeded); a sequence stops after an EOS token, the batch when all have stopped.
//! Also the lockstep comparison of two model instances (tuned vs reference).

use super::model::{GpuModel, Step};
use crate::gpu::device::Gpu;
use crate::gpu::util::Util;
use crate::kernels::DType;
use anyhow::Result;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    Greedy,
    /// Softmax of logits / temperature over the `top_k` most likely tokens (0: all), then
    /// restricted to the smallest set of top tokens whose probability reaches `top_p`
    /// (nucleus sampling).
    Sample {
        temperature: f32,
        top_k: usize,
        top_p: f32,
        seed: u64,
    },
}

/// What one generation produced and how long it took (host wall clock, synchronized).
#[derive(Debug, Clone, Default)]
pub struct GenResult {
    /// New tokens per sequence (an EOS that ended a sequence is included).
    pub tokens: Vec<Vec<u32>>,
    /// From the start of the prefill until the first tokens are on the host.
    pub ttft_s: f64,
    pub total_s: f64,
    pub decode_steps: usize,
    /// Σ over decode steps of Σ over sequences of the positions attended (KV traffic).
    pub kv_positions_read: usize,
}

impl GenResult {
    pub fn generated(&self) -> usize {
        self.tokens.iter().map(Vec::len).sum()
    }
    /// Mean time of one decode step, in ms.
    pub fn ms_per_step(&self) -> f64 {
        if self.decode_steps == 0 {
            0.0
        } else {
            (self.total_s - self.ttft_s) * 1e3 / self.decode_steps as f64
        }
    }
}

/// Samples one token from `logits`: temperature, then the `top_k` most likely tokens (0 or
/// ≥ vocabulary: no limit), then nucleus `top_p` among those.
pub fn sample(logits: &[f32], temperature: f32, top_k: usize, top_p: f32, rng: &mut StdRng) -> u32 {
    if temperature <= 0.0 || top_k == 1 {
        return crate::llama::cpu_ref::top2(logits)[0].0;
    }
    let m = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let p: Vec<f64> = logits.iter().map(|&l| (((l - m) / temperature) as f64).exp()).collect();
    let z: f64 = p.iter().sum();
    let by_prob = |a: &u32, b: &u32| p[*b as usize].total_cmp(&p[*a as usize]).then(a.cmp(b));
    let limit_k = top_k > 0 && top_k < p.len();
    let mut cand: Vec<u32> = if limit_k {
        // Only the k largest need ordering: select them in O(V), then sort k.
        let mut all: Vec<u32> = (0..p.len() as u32).collect();
        all.select_nth_unstable_by(top_k - 1, by_prob);
        all.truncate(top_k);
        all.sort_by(by_prob);
        all
    } else if top_p < 1.0 {
        // Tokens below θ = (1 - top_p)/V hold at most 1 - top_p of the mass together, so the
        // nucleus lies inside the rest: only those need sorting.
        let theta = z * (1.0 - top_p as f64) / p.len() as f64;
        let mut c: Vec<u32> = (0..p.len() as u32).filter(|&i| p[i as usize] >= theta).collect();
        c.sort_by(by_prob);
        c
    } else {
        (0..p.len() as u32).collect()
    };
    if top_p < 1.0 {
        // The nucleus is taken of the distribution left after top-k (renormalized).
        let kept: f64 = if limit_k { cand.iter().map(|&t| p[t as usize]).sum() } else { z };
        let mut cum = 0.0;
        let mut keep = cand.len();
        for (i, &t) in cand.iter().enumerate() {
            cum += p[t as usize];
            if cum >= top_p as f64 * kept {
                keep = i + 1;
                break;
            }
        }
        cand.truncate(keep.max(1));
    }
    let mass: f64 = cand.iter().map(|&t| p[t as usize]).sum();
    let mut u = rng.random::<f64>() * mass;
    for &t in &cand {
        u -= p[t as usize];
        if u <= 0.0 {
            return t;
        }
    }
    cand.pop().unwrap_or(0)
}

fn choose(gpu: &Gpu, model: &mut GpuModel, sampling: Sampling, rng: &mut StdRng) -> Result<Vec<u32>> {
    match sampling {
        Sampling::Greedy => model.argmax(gpu),
        Sampling::Sample { temperature, top_k, top_p, .. } => {
            Ok(model.logits(gpu)?.iter().map(|row| sample(row, temperature, top_k, top_p, rng)).collect())
        }
    }
}

/// Generates up to `gen_len` tokens for every prompt (sequence b in batch slot b).
/// `on_step` sees the tokens so far after each step (to stream text or move a progress bar).
pub fn generate(
    gpu: &Gpu,
    model: &mut GpuModel,
    prompts: &[Vec<u32>],
    gen_len: usize,
    sampling: Sampling,
    eos: &[u32],
    mut on_step: impl FnMut(&[Vec<u32>]),
) -> Result<GenResult> {
    let seed = match sampling {
        Sampling::Sample { seed, .. } => seed,
        Sampling::Greedy => 0,
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let n = prompts.len();
    let mut res = GenResult { tokens: vec![Vec::with_capacity(gen_len); n], ..Default::default() };
    if gen_len == 0 {
        return Ok(res);
    }
    gpu.synchronize()?;
    let t0 = Instant::now();
    // NVTX phase ranges (free unless Nsight Systems is attached).
    nvtx::range_push!("prefill");
    let prefill = model.forward(gpu, &Step::prefill(prompts));
    nvtx::range_pop!();
    prefill?;
    let mut next = choose(gpu, model, sampling, &mut rng)?;
    res.ttft_s = t0.elapsed().as_secs_f64();
    let mut done = vec![false; n];
    for b in 0..n {
        res.tokens[b].push(next[b]);
        done[b] = eos.contains(&next[b]);
    }
    on_step(&res.tokens);
    for i in 1..gen_len {
        if done.iter().all(|d| *d) {
            break;
        }
        // The token fed now is generated token i-1, at position prompt_len + i - 1.
        let pos: Vec<usize> = prompts.iter().map(|p| p.len() + i - 1).collect();
        res.kv_positions_read += pos.iter().map(|p| p + 1).sum::<usize>();
        nvtx::range_push!("decode step");
        let step = model.forward(gpu, &Step::decode(&next, &pos));
        nvtx::range_pop!();
        step?;
        next = choose(gpu, model, sampling, &mut rng)?;
        res.decode_steps += 1;
        for b in 0..n {
            if !done[b] {
                res.tokens[b].push(next[b]);
                done[b] = eos.contains(&next[b]);
            }
        }
        on_step(&res.tokens);
    }
    res.total_s = t0.elapsed().as_secs_f64();
    Ok(res)
}

/// Tuned path against reference path on the same weights.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PathComparison {
    /// max over steps of max|tuned − ref| / max|ref| over the step's logits.
    pub max_rel_logit_err: f64,
    pub max_abs_logit_err: f64,
    /// Greedy choices compared (sequences × steps) and how many agreed.
    pub compared: usize,
    pub agreed: usize,
    /// (sequence, step, reference token, tuned token, reference top-2 gap) of disagreements.
    pub disagreements: Vec<(usize, usize, u32, u32, f32)>,
}

impl PathComparison {
    /// A top-2 gap of the reference within which either token is a fair greedy choice: twice
    /// the largest logit difference measured between the paths (bf16 rounding of different,
    /// equally right summation orders moves a logit that much).
    pub fn tie_tolerance(&self) -> f64 {
        2.0 * self.max_abs_logit_err
    }

    /// Disagreements the logit error does not explain (reference top-2 gap above the tie
    /// tolerance): each is a real difference between the paths.
    pub fn unexplained(&self) -> usize {
        let tol = self.tie_tolerance();
        self.disagreements.iter().filter(|d| f64::from(d.4) > tol).count()
    }

    /// The paths agree: logits within bf16 tolerance, every greedy disagreement at a near-tie,
    /// and at least 90% of the greedy choices equal (a floor against systematic drift; a
    /// single near-tie is allowed whatever the count, so 7 of 8 short steps still pass).
    pub fn passes(&self, max_rel_logit_err: f64) -> bool {
        let drift_ok = self.agreed * 10 >= self.compared * 9 || self.disagreements.len() <= 1;
        self.max_rel_logit_err <= max_rel_logit_err && self.unexplained() == 0 && drift_ok
    }
}

/// Runs both models in lockstep, teacher-forced with the reference's greedy tokens so every
/// step compares logits for the same inputs; the comparison of logits runs on the device.
pub fn compare_paths(
    gpu: &Gpu,
    util: &Util,
    reference: &mut GpuModel,
    tuned: &mut GpuModel,
    prompts: &[Vec<u32>],
    gen_len: usize,
) -> Result<PathComparison> {
    let mut out = PathComparison::default();
    let vocab = reference.config().vocab_size;
    let n = prompts.len();
    let mut step = Step::prefill(prompts);
    for i in 0..gen_len {
        reference.forward(gpu, &step)?;
        tuned.forward(gpu, &step)?;
        let cmp = util.compare(gpu, tuned.logits_buf(), reference.logits_buf(), DType::BF16, n * vocab)?;
        out.max_rel_logit_err = out.max_rel_logit_err.max(cmp.rel_err());
        out.max_abs_logit_err =
            out.max_abs_logit_err.max(if cmp.non_finite > 0 { f64::INFINITY } else { cmp.max_abs_diff as f64 });
        let r = reference.argmax(gpu)?;
        let t = tuned.argmax(gpu)?;
        for b in 0..n {
            out.compared += 1;
            if r[b] == t[b] {
                out.agreed += 1;
            } else {
                let logits = reference.logits(gpu)?;
                let t2 = crate::llama::cpu_ref::top2(&logits[b]);
                out.disagreements.push((b, i, r[b], t[b], t2[0].1 - t2[1].1));
            }
        }
        let pos: Vec<usize> = prompts.iter().map(|p| p.len() + i).collect();
        step = Step::decode(&r, &pos);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disagreements_pass_only_at_near_ties() {
        let mut c = PathComparison {
            max_rel_logit_err: 2e-2,
            max_abs_logit_err: 0.05,
            compared: 100,
            agreed: 98,
            disagreements: vec![(0, 3, 1, 2, 0.0), (1, 7, 4, 5, 0.09)],
        };
        assert_eq!(c.unexplained(), 0);
        assert!(c.passes(3e-2));
        c.disagreements[1].4 = 0.5; // a clear winner changed: a real difference
        assert_eq!(c.unexplained(), 1);
        assert!(!c.passes(3e-2));
        c.disagreements[1].4 = 0.0;
        c.agreed = 80; // too many flips, even at ties
        assert!(!c.passes(3e-2));
        c.agreed = 98;
        c.max_rel_logit_err = 0.1;
        assert!(!c.passes(3e-2));
        // A short run: one near-tie of 8 steps is not drift.
        let short = PathComparison { compared: 8, agreed: 7, disagreements: vec![(0, 4, 378, 669, 0.06)], ..c.clone() };
        assert!(short.passes(0.2));
        let two =
            PathComparison { compared: 8, agreed: 6, disagreements: vec![(0, 4, 1, 2, 0.0), (0, 5, 1, 2, 0.0)], ..c };
        assert!(!two.passes(0.2));
    }

    #[test]
    fn top_k_limits_the_candidates_before_top_p() {
        let logits = vec![1.0, 5.0, 4.0, 4.5, -3.0, 0.0];
        let mut rng = StdRng::seed_from_u64(3);
        let mut seen = [0usize; 6];
        for _ in 0..3000 {
            seen[sample(&logits, 2.0, 2, 1.0, &mut rng) as usize] += 1;
        }
        // Only the two most likely tokens (ids 1 and 3) are ever drawn, both often.
        assert_eq!((seen[0], seen[2], seen[4], seen[5]), (0, 0, 0, 0), "{seen:?}");
        assert!(seen[1] > 1000 && seen[3] > 1000, "{seen:?}");
        // top_k = 1 is greedy whatever the temperature; top_k ≥ V is no limit.
        assert!((0..50).all(|_| sample(&logits, 5.0, 1, 1.0, &mut rng) == 1));
        assert!((0..2000).any(|_| sample(&logits, 5.0, 100, 1.0, &mut rng) == 4));
        // top-p applies to what top-k left: of {1, 3, 2} (p ≈ .51, .31, .19 at T = 1) a
        // nucleus of 0.6 keeps 1 and 3.
        for _ in 0..500 {
            let t = sample(&logits, 1.0, 3, 0.6, &mut rng);
            assert!(t == 1 || t == 3, "{t}");
        }
    }

    #[test]
    fn sampling_respects_temperature_and_top_p() {
        let logits = vec![5.0, 4.0, 1.0, -3.0];
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(sample(&logits, 0.0, 0, 0.9, &mut rng), 0);
        // top_p small enough keeps only the best token.
        for _ in 0..50 {
            assert_eq!(sample(&logits, 1.0, 0, 0.5, &mut rng), 0);
        }
        // With top_p = 1 every token can come, in roughly softmax proportions.
        let mut counts = [0usize; 4];
        for _ in 0..4000 {
            counts[sample(&logits, 1.0, 0, 1.0, &mut rng) as usize] += 1;
        }
        assert!(counts[1] > 800 && counts[1] < 1300, "{counts:?}");
        // top_p = 0.9: the two best tokens (0.705 + 0.259 ≥ 0.9) only.
        for _ in 0..500 {
            assert!(sample(&logits, 1.0, 0, 0.9, &mut rng) < 2);
        }
        // Same seed, same draws.
        let a: Vec<u32> = {
            let mut r = StdRng::seed_from_u64(7);
            (0..20).map(|_| sample(&logits, 1.5, 0, 0.95, &mut r)).collect()
        };
        let b: Vec<u32> = {
            let mut r = StdRng::seed_from_u64(7);
            (0..20).map(|_| sample(&logits, 1.5, 0, 0.95, &mut r)).collect()
        };
        assert_eq!(a, b);
    }

    #[test]
    fn step_timing_math() {
        let r = GenResult {
            tokens: vec![vec![1; 10], vec![2; 4]],
            ttft_s: 0.1,
            total_s: 1.0,
            decode_steps: 9,
            kv_positions_read: 0,
        };
        assert_eq!(r.generated(), 14);
        assert!((r.ms_per_step() - 100.0).abs() < 1e-9);
    }
}
