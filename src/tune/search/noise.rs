//! Declaring a winner under timing noise.
//!
//! A candidate whose median lies within the spread of the best one's (the larger of the two
//! half-widths of the 20–80 % band, as [`Timing::spread_us`] defines a tie) may have lost
//! only to noise. Those contenders and the best are measured again; each one's two
//! measurements are pooled (mean of the medians, spread widened by half their difference,
//! which is the run-to-run variation the band of one run does not see), and the fastest
//! pooled median wins. Any other contender still within the pooled spread makes the result
//! a statistical tie: the fastest is still the pick, and the tie is reported, so repeated
//! sweeps either pick the same winner or say that they tie.

use crate::tune::record::Timing;

/// Whether `a` and `b` cannot be told apart by their bands.
pub fn within_spread(a: &Timing, b: &Timing) -> bool {
    (a.median_us - b.median_us).abs() <= a.spread_us().max(b.spread_us())
}

/// The candidates to measure again: the fastest by median and every one within its spread,
/// fastest first. Empty when the fastest has no contender (or there is nothing).
pub fn contenders(measured: &[Timing]) -> Vec<usize> {
    let Some(best) = (0..measured.len()).min_by(|&a, &b| measured[a].median_us.total_cmp(&measured[b].median_us))
    else {
        return Vec::new();
    };
    let mut out: Vec<usize> =
        (0..measured.len()).filter(|&i| i == best || within_spread(&measured[best], &measured[i])).collect();
    if out.len() < 2 {
        return Vec::new();
    }
    out.sort_by(|&a, &b| measured[a].median_us.total_cmp(&measured[b].median_us).then(a.cmp(&b)));
    out
}

/// The outcome of re-measuring the contenders. Indices are those of the first measurement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `pick` is faster than every other contender beyond the spread.
    Winner(usize),
    /// `pick` had the fastest pooled median, but `tied` are within its spread.
    Tie { pick: usize, tied: Vec<usize> },
}

impl Verdict {
    pub fn pick(&self) -> usize {
        match self {
            Verdict::Winner(i) | Verdict::Tie { pick: i, .. } => *i,
        }
    }
}

/// One candidate's two measurements as one.
pub fn pooled(first: &Timing, second: &Timing) -> Timing {
    let median = (first.median_us + second.median_us) / 2.0;
    let half = first.spread_us().max(second.spread_us()) + (first.median_us - second.median_us).abs() / 2.0;
    Timing {
        median_us: median,
        p20_us: median - half,
        p80_us: median + half,
        min_us: first.min_us.min(second.min_us),
        reps: first.reps + second.reps,
    }
}

/// Decides among `contenders` (indices into `first`, as [`contenders`] gave them) from their
/// `again` measurements, in the same order as `contenders`. With no contenders the fastest
/// of `first` wins outright; `None` only when `first` is empty.
pub fn decide(first: &[Timing], contenders: &[usize], again: &[Timing]) -> Option<Verdict> {
    if contenders.is_empty() || again.len() != contenders.len() {
        let best = (0..first.len()).min_by(|&a, &b| first[a].median_us.total_cmp(&first[b].median_us))?;
        return Some(Verdict::Winner(best));
    }
    let pool: Vec<(usize, Timing)> = contenders.iter().zip(again).map(|(&i, t)| (i, pooled(&first[i], t))).collect();
    let (pick, best) = *pool.iter().min_by(|a, b| a.1.median_us.total_cmp(&b.1.median_us).then(a.0.cmp(&b.0)))?;
    let tied: Vec<usize> =
        pool.iter().filter(|(i, t)| *i != pick && within_spread(&best, t)).map(|(i, _)| *i).collect();
    Some(if tied.is_empty() { Verdict::Winner(pick) } else { Verdict::Tie { pick, tied } })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(median: f64, half: f64) -> Timing {
        Timing { median_us: median, p20_us: median - half, p80_us: median + half, min_us: median - half, reps: 10 }
    }

    #[test]
    fn a_clear_best_needs_no_remeasurement() {
        let m = [t(12.0, 0.1), t(10.0, 0.1), t(11.0, 0.2)];
        assert!(contenders(&m).is_empty());
        assert_eq!(decide(&m, &[], &[]), Some(Verdict::Winner(1)));
        assert_eq!(decide(&[], &[], &[]), None);
    }

    #[test]
    fn contenders_are_those_within_the_larger_spread() {
        // 10.3 is within the best's 0.5; 10.9 is within its own 1.0; 12 is not.
        let m = [t(12.0, 0.1), t(10.0, 0.5), t(10.3, 0.1), t(10.9, 1.0)];
        assert_eq!(contenders(&m), vec![1, 2, 3]);
    }

    #[test]
    fn remeasurement_can_overturn_the_first_result() {
        let m = [t(10.0, 0.3), t(10.2, 0.3)];
        let c = contenders(&m);
        assert_eq!(c, vec![0, 1]);
        // On the second run candidate 1 is clearly faster; pooled, it still wins clearly.
        let again = [t(11.5, 0.1), t(8.5, 0.1)];
        assert_eq!(decide(&m, &c, &again), Some(Verdict::Winner(1)));
    }

    #[test]
    fn overlapping_remeasurements_are_a_tie_with_the_fastest_picked() {
        let m = [t(10.0, 0.3), t(10.1, 0.3)];
        let c = contenders(&m);
        let again = [t(10.3, 0.3), t(9.9, 0.3)];
        let v = decide(&m, &c, &again).unwrap();
        assert_eq!(v, Verdict::Tie { pick: 1, tied: vec![0] });
        assert_eq!(v.pick(), 1);
    }

    #[test]
    fn pooling_widens_the_band_by_the_run_to_run_change() {
        let p = pooled(&t(10.0, 0.1), &t(11.0, 0.2));
        assert!((p.median_us - 10.5).abs() < 1e-12);
        assert!((p.spread_us() - 0.7).abs() < 1e-12);
        assert_eq!(p.reps, 20);
    }
}
