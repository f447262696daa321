//! Comparison with Hugging Face transformers: the JSON that scripts/hf_reference.py writes
//! (reference logits, greedy tokens and HF's own generation timings on the same weights).
//!
//! Two checks on the kernlab model loaded from the same directory:
//! 1. teacher-forced: each step is fed HF's greedy token, so every step's logits compare
//!    like for like (the first `logits` steps in full; every step by argmax vs HF's choice);
//! 2. free-running greedy: tokens must agree for at least `min_agree` steps per prompt, or
//!    the first divergence must be at a near-tie of HF's top-2 logits (a gap smaller than
//!    twice the logit error measured in check 1: either order is then a rounding outcome).

use super::generate::{generate, Sampling};
use super::model::{GpuModel, Step};
use crate::gpu::device::Gpu;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One timing HF measured of its own generation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HfTiming {
    /// "eager" or "compiled" (static cache + torch.compile).
    pub mode: String,
    pub batch: usize,
    pub prompt_len: usize,
    pub new_tokens: usize,
    pub seconds: f64,
    pub tokens_per_s: f64,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HfReference {
    pub format: String,
    #[serde(default)]
    pub device: String,
    #[serde(default)]
    pub torch: String,
    #[serde(default)]
    pub transformers: String,
    pub prompts: Vec<Vec<u32>>,
    /// HF greedy continuation of each prompt (no early stop).
    pub greedy: Vec<Vec<u32>>,
    /// Per prompt, per step: [top1 id, top1 logit, top2 id, top2 logit].
    pub top2: Vec<Vec<[f64; 4]>>,
    /// Per prompt, the full last-position logits of the first steps.
    pub logits: Vec<Vec<Vec<f32>>>,
    #[serde(default)]
    pub timings: Vec<HfTiming>,
}

pub const FORMAT: &str = "kernlab-hf-reference-v1";

impl HfReference {
    pub fn load(path: &Path) -> Result<HfReference> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading the HF reference {}", path.display()))?;
        let r: HfReference = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a reference written by scripts/hf_reference.py", path.display()))?;
        if r.format != FORMAT {
            bail!("{}: format {:?}, expected {FORMAT:?}", path.display(), r.format);
        }
        let n = r.prompts.len();
        if n == 0 || r.greedy.len() != n || r.top2.len() != n || r.logits.len() != n {
            bail!("{}: prompts, greedy, top2 and logits must have one entry per prompt", path.display());
        }
        if r.greedy.iter().zip(&r.top2).any(|(g, t)| g.len() != t.len() || g.is_empty()) {
            bail!("{}: each prompt needs as many top2 rows as greedy tokens (at least one)", path.display());
        }
        Ok(r)
    }
}

/// Per-prompt outcome of the free-running comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromptAgreement {
    pub prompt: usize,
    pub compared: usize,
    /// Steps that agree before the first divergence.
    pub agree_prefix: usize,
    /// (step, HF token, kernlab token, HF top-2 gap, near-tie?)
    pub divergence: Option<(usize, u32, u32, f64, bool)>,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct HfComparison {
    pub max_rel_logit_err: f64,
    pub max_abs_logit_err: f64,
    pub logit_tolerance: f64,
    pub teacher_forced_compared: usize,
    pub teacher_forced_agreed: usize,
    pub prompts: Vec<PromptAgreement>,
    pub min_agree: usize,
    pub pass: bool,
}

/// max|a − b| and max|b|.
fn diff(a: &[f32], b: &[f32]) -> (f64, f64) {
    a.iter()
        .zip(b)
        .fold((0.0f64, 0.0f64), |(d, m), (x, y)| (d.max((*x as f64 - *y as f64).abs()), m.max((*y as f64).abs())))
}

/// Judges free-running tokens against HF's (pure; tested on synthetic data).
pub fn judge_prompt(
    prompt: usize,
    hf: &[u32],
    top2: &[[f64; 4]],
    ours: &[u32],
    tie_tol: f64,
    min_agree: usize,
) -> PromptAgreement {
    let n = hf.len().min(ours.len());
    let first = (0..n).find(|&i| hf[i] != ours[i]);
    let agree_prefix = first.unwrap_or(n);
    let divergence = first.map(|i| {
        let gap = (top2[i][1] - top2[i][3]).abs();
        (i, hf[i], ours[i], gap, gap <= tie_tol)
    });
    let ok = agree_prefix >= min_agree.min(n) || divergence.map(|d| d.4).unwrap_or(false);
    PromptAgreement { prompt, compared: n, agree_prefix, divergence, ok }
}

/// Runs both checks. The model must have room for all prompts and their continuations.
#[allow(clippy::needless_range_loop)] // b indexes several per-prompt arrays at once
pub fn compare(
    gpu: &Gpu,
    model: &mut GpuModel,
    r: &HfReference,
    logit_tolerance: f64,
    min_agree: usize,
) -> Result<HfComparison> {
    let n = r.prompts.len();
    let steps = r.greedy.iter().map(Vec::len).min().unwrap_or(0);
    let (mut max_rel, mut max_abs) = (0.0f64, 0.0f64);
    let (mut compared, mut agreed) = (0, 0);
    let mut step = Step::prefill(&r.prompts);
    for i in 0..steps {
        model.forward(gpu, &step)?;
        let ours = model.argmax(gpu)?;
        if r.logits.iter().any(|l| l.len() > i) {
            let logits = model.logits(gpu)?;
            for b in 0..n {
                if let Some(hf) = r.logits[b].get(i) {
                    if hf.len() != logits[b].len() {
                        bail!("HF logits have {} entries, the model's vocabulary is {}", hf.len(), logits[b].len());
                    }
                    let (d, m) = diff(&logits[b], hf);
                    max_abs = max_abs.max(d);
                    max_rel = max_rel.max(d / m.max(1e-30));
                }
            }
        }
        for b in 0..n {
            compared += 1;
            agreed += (ours[b] == r.greedy[b][i]) as usize;
        }
        let next: Vec<u32> = (0..n).map(|b| r.greedy[b][i]).collect();
        let pos: Vec<usize> = r.prompts.iter().map(|p| p.len() + i).collect();
        step = Step::decode(&next, &pos);
    }
    // Free-running greedy, no EOS stop (HF's reference does not stop either).
    let gen = generate(gpu, model, &r.prompts, steps, Sampling::Greedy, &[], |_| {})?;
    // A near-tie is a top-2 gap within twice the measured logit error, and never less than
    // one bf16 step at the logit's magnitude.
    let prompts: Vec<PromptAgreement> = (0..n)
        .map(|b| {
            let scale = r.top2[b].iter().map(|t| t[1].abs()).fold(0.0, f64::max);
            let tie_tol = (2.0 * max_abs).max(scale / 128.0);
            judge_prompt(b, &r.greedy[b], &r.top2[b], &gen.tokens[b], tie_tol, min_agree)
        })
        .collect();
    let pass = max_rel <= logit_tolerance && prompts.iter().all(|p| p.ok);
    Ok(HfComparison {
        max_rel_logit_err: max_rel,
        max_abs_logit_err: max_abs,
        logit_tolerance,
        teacher_forced_compared: compared,
        teacher_forced_agreed: agreed,
        prompts,
        min_agree,
        pass,
    })
}

impl HfComparison {
    pub fn report(&self) -> String {
        let mut s = format!(
            "HF transformers comparison: {}\n  logits (teacher-forced): max rel err {:.2e} (tolerance {:.1e}), max abs err {:.3}\n  greedy argmax vs HF (teacher-forced): {}/{} agree\n",
            if self.pass { "PASS" } else { "FAIL" },
            self.max_rel_logit_err,
            self.logit_tolerance,
            self.max_abs_logit_err,
            self.teacher_forced_agreed,
            self.teacher_forced_compared
        );
        for p in &self.prompts {
            s += &match p.divergence {
                None => format!("  prompt {}: {} of {} greedy tokens agree\n", p.prompt, p.agree_prefix, p.compared),
                Some((i, hf, ours, gap, tie)) => format!(
                    "  prompt {}: first {} tokens agree; step {i}: HF {hf}, kernlab {ours}, HF top-2 gap {gap:.4} ({}){}\n",
                    p.prompt,
                    p.agree_prefix,
                    if tie { "near-tie: explained" } else { "not a near-tie" },
                    if p.ok { "" } else { " FAIL" }
                ),
            };
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judging_divergence() {
        let hf = [1, 2, 3, 4];
        let top2 = [[1.0, 10.0, 9.0, 8.0], [2.0, 10.0, 9.0, 9.99], [3.0, 5.0, 7.0, 4.0], [4.0, 5.0, 0.0, 1.0]];
        let p = judge_prompt(0, &hf, &top2, &[1, 2, 3, 4], 0.05, 32);
        assert!(p.ok && p.divergence.is_none() && p.agree_prefix == 4);
        // Divergence at a near-tie (gap 0.01) is explained.
        let p = judge_prompt(0, &hf, &top2, &[1, 9, 3, 4], 0.05, 32);
        assert_eq!(p.divergence.unwrap().0, 1);
        assert!(p.divergence.unwrap().4 && p.ok);
        // Not at a near-tie (gap 1.0) and too early: a failure.
        let p = judge_prompt(0, &hf, &top2, &[1, 2, 7, 4], 0.05, 32);
        assert!(!p.ok);
        // Late enough: fine even without a tie.
        let p = judge_prompt(0, &hf, &top2, &[1, 2, 7, 4], 0.05, 2);
        assert!(p.ok);
    }

    #[test]
    fn bad_reference_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        std::fs::write(&p, "{}").unwrap();
        assert!(format!("{:#}", HfReference::load(&p).unwrap_err()).contains("hf_reference.py"));
        std::fs::write(&p, r#"{"format":"kernlab-hf-reference-v1","prompts":[[1]],"greedy":[],"top2":[],"logits":[]}"#)
            .unwrap();
        assert!(format!("{:#}", HfReference::load(&p).unwrap_err()).contains("one entry per prompt"));
        assert!(HfReference::load(&dir.path().join("missing.json")).is_err());
    }
}
