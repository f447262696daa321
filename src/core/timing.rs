//! A candidate's timing summary: median and the 20–80 spread that decides ties.

use serde::{Deserialize, Serialize};

/// Timing summary of one candidate over many repetitions, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Timing {
    pub median_us: f64,
    /// 20th and 80th percentiles: the spread that decides ties.
    pub p20_us: f64,
    pub p80_us: f64,
    pub min_us: f64,
    pub reps: u32,
}

impl Timing {
    /// Summarise raw samples (microseconds). Returns `None` for no samples.
    pub fn from_samples(samples: &[f64]) -> Option<Timing> {
        if samples.is_empty() {
            return None;
        }
        let mut s: Vec<f64> = samples.to_vec();
        s.sort_by(|a, b| a.total_cmp(b));
        let q = |p: f64| -> f64 {
            let idx = p * (s.len() - 1) as f64;
            let lo = idx.floor() as usize;
            let hi = idx.ceil() as usize;
            s[lo] + (s[hi] - s[lo]) * (idx - lo as f64)
        };
        Some(Timing { median_us: q(0.5), p20_us: q(0.2), p80_us: q(0.8), min_us: s[0], reps: s.len() as u32 })
    }
    /// Half-width of the 20–80 band: two timings closer than the larger spread are a tie.
    pub fn spread_us(&self) -> f64 {
        (self.p80_us - self.p20_us) / 2.0
    }
}
