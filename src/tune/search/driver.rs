//! The search loop: ask a batch, evaluate it, tell the results, until a budget runs out.

use super::Searcher;
use crate::tune::space::Candidate;
use std::time::{Duration, Instant};

/// When to stop. Every limit is optional; with none, the search runs until the strategy
/// has nothing left to propose (the whole space, for every strategy here).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Budget {
    /// Candidates evaluated at most (failures count: they cost a compile).
    pub max_evals: Option<usize>,
    /// Wall time at most, checked before each batch.
    pub max_time: Option<Duration>,
    /// Stop as soon as a candidate is this fast or faster, µs.
    pub good_enough_us: Option<f64>,
}

impl Budget {
    pub fn evals(n: usize) -> Budget {
        Budget { max_evals: Some(n), ..Budget::default() }
    }

    /// Stop once the best candidate reaches `pct` % of its roofline bound, the bound being
    /// the shortest time the roofline allows (`bound_us`): reaching it means a time of at
    /// most `bound_us × 100 / pct`.
    pub fn stop_at_pct_of_bound(mut self, bound_us: f64, pct: f64) -> Budget {
        if bound_us > 0.0 && pct > 0.0 {
            self.good_enough_us = Some(bound_us * 100.0 / pct);
        }
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The strategy proposed nothing more.
    Exhausted,
    Evaluations,
    Time,
    /// The best candidate was within the requested share of its bound.
    GoodEnough,
}

/// Everything a search evaluated, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchTrace {
    pub evaluated: Vec<(Candidate, Option<f64>)>,
    pub stop: StopReason,
}

impl SearchTrace {
    /// The fastest successful candidate and its time.
    pub fn best(&self) -> Option<(&Candidate, f64)> {
        self.evaluated.iter().filter_map(|(c, t)| t.map(|t| (c, t))).min_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// Best time after each evaluation (`None` until the first success).
    pub fn best_so_far(&self) -> Vec<Option<f64>> {
        let mut best: Option<f64> = None;
        self.evaluated
            .iter()
            .map(|(_, t)| {
                if let Some(t) = t {
                    best = Some(best.map_or(*t, |b| b.min(*t)));
                }
                best
            })
            .collect()
    }
}

/// Runs `searcher` under `budget`, `batch` candidates at a time (the runner compiles a
/// batch in parallel). `evaluate` returns one result per candidate it is given: a median
/// time in µs, or `None` for a failure.
pub fn run_search(
    searcher: &mut dyn Searcher,
    budget: Budget,
    batch: usize,
    mut evaluate: impl FnMut(&[Candidate]) -> Vec<Option<f64>>,
) -> SearchTrace {
    let start = Instant::now();
    let batch = batch.max(1);
    let mut evaluated: Vec<(Candidate, Option<f64>)> = Vec::new();
    let mut best = f64::INFINITY;
    let stop = loop {
        if budget.good_enough_us.is_some_and(|g| best <= g) {
            break StopReason::GoodEnough;
        }
        if budget.max_time.is_some_and(|t| start.elapsed() >= t) {
            break StopReason::Time;
        }
        let left = budget.max_evals.map_or(batch, |m| m.saturating_sub(evaluated.len()).min(batch));
        if left == 0 {
            break StopReason::Evaluations;
        }
        let asked = searcher.ask(left);
        if asked.is_empty() {
            break StopReason::Exhausted;
        }
        let results = evaluate(&asked);
        for (i, c) in asked.into_iter().enumerate() {
            // A missing result is a failure, never a silent success.
            let t = results.get(i).copied().flatten().filter(|t| t.is_finite());
            searcher.tell(&c, t);
            if let Some(t) = t {
                best = best.min(t);
            }
            evaluated.push((c, t));
        }
    };
    SearchTrace { evaluated, stop }
}
