//! Warm start: transfer from shapes of the same kernel that are already tuned.
//!
//! A user sweeping a new shape usually has winners for other shapes of the same kernel (the
//! tuned database; in a replay, the other recorded spaces). The fastest configurations of a
//! nearby shape are very often fast here too (the same tile fits the same tensor cores, the
//! same split suits the same K), so they are measured first, nearest shapes first, and then
//! an inner strategy (tpe by default) takes over. Every result, the priors' included, is told
//! to the inner strategy, so its model starts from a few good, informative points instead of
//! a random warm-up: this is the transfer of TVM's tuner and Kernel Tuner's cached results,
//! without a model across shapes (the recorded winners are the model).
//!
//! The nearest shapes' winners also enter tpe's model directly, as transfer points: weighted
//! pseudo-observations in its good density, whether or not they are valid in this space (a
//! value the space lacks counts at its nearest position). A prior invalid here cannot be
//! measured, but it still says which variant and which region won nearby; without it, a
//! space whose nearby winners of one variant are all invalid is searched as if only the
//! measured priors' variant mattered. This is the prior over the optimum's location of
//! BOPrO (Souza et al. 2021), in a TPE's good density, fading as measurements accumulate.
//!
//! This module sees priors only as plain candidates with the shape they won on: it does not
//! know where they come from (database, CSV), so the layers point one way.

use super::space::SearchSpace;
use super::Searcher;
use crate::tune::space::Candidate;
use std::collections::{BTreeMap, HashSet, VecDeque};

/// A shape by its named dimensions (`M`, `N`, `K`, or positions `0`, `1`, ... of a label).
pub type ShapeDims = BTreeMap<String, i64>;

/// The best candidates of one other shape, fastest first.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapePriors {
    pub shape: ShapeDims,
    pub ranked: Vec<Candidate>,
}

/// How many priors to try. The defaults were chosen by replaying the recorded H200 grids
/// (docs/results/search-replay.md): see [`WarmConfig::default`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarmConfig {
    /// The best this many of each other shape are candidates for the warm start.
    pub per_shape: usize,
    /// At most this many priors are measured...
    pub max_priors: usize,
    /// ... and at most this share of the space (at least one), so that on a small space
    /// the priors never cost more than an inner strategy would spend finding the optimum.
    pub max_share: f64,
    /// The first this many priors (the nearest shapes' winners) are also transfer points of
    /// the inner tpe ([`super::tpe::TpeSearch::with_transfer`]), valid in the space or not.
    pub transfer_points: usize,
}

impl Default for WarmConfig {
    fn default() -> Self {
        // Replayed on the H200 grids, leave-one-out (docs/results/search-replay.md):
        // - per_shape 1: the tuned database keeps one winner per shape, so that is what a
        //   sweep has; the best 2 or 3 of each shape moved no CSV's median and the worst
        //   space of one CSV by 3 points, not worth a replay that a sweep cannot match;
        // - max_share 0.1 (the 10 % target, so the priors alone never spend it) against
        //   0.05: equal everywhere but one space, where 0.1 was better; the cap rarely
        //   binds, because few winners of other shapes are valid in a given space;
        // - max_priors 8 against 4 and 16: equal on every CSV; 8 keeps a database of
        //   dozens of shapes from spending a big space's first evaluations on far shapes.
        // - transfer_points 3 (with tpe's transfer weight 3): 2 and 4 met the targets too,
        //   but the worst spaces were worse (gemm_int4-decode 14.3 % with 2, gemm-m128
        //   22.7 % with 4, against 11.9 and 20.0 % with 3); 5 and 6 took gemm-m128's worst
        //   space to 25.3 %.
        WarmConfig { per_shape: 1, max_priors: 8, max_share: 0.1, transfer_points: 3 }
    }
}

/// Distance between two shapes: the sum over their dimensions of |ln a − ln b| (a missing
/// dimension counts as 1). Log ratios, because kernels scale with the order of magnitude
/// of a dimension, not its difference: M = 1 and M = 16 are as far apart as 128 and 2048.
pub fn shape_distance(a: &ShapeDims, b: &ShapeDims) -> f64 {
    let keys: HashSet<&String> = a.keys().chain(b.keys()).collect();
    let ln = |s: &ShapeDims, k: &String| (*s.get(k).unwrap_or(&1)).max(1) as f64;
    keys.into_iter().map(|k| (ln(a, k).ln() - ln(b, k).ln()).abs()).sum()
}

/// A shape label (`16x4096x14336`) as dimensions named by position (`0`, `1`, ...): the
/// replay knows shapes only by label. `None` when a part is not a number.
pub fn label_dims(label: &str) -> Option<ShapeDims> {
    label.split('x').enumerate().map(|(i, p)| p.trim().parse::<i64>().ok().map(|v| (i.to_string(), v))).collect()
}

/// The prior candidates for `target`, in the order to try them: rank by rank (every other
/// shape's winner, then every runner-up, ...), nearest shape first within a rank, each
/// candidate once. Rank before shape, because a winner of a shape a little further away is
/// a better bet than the fourth best of the nearest; shape order breaks ties at equal
/// distance by the sources' order, so the same input gives the same list.
pub fn order_priors(target: &ShapeDims, sources: &[ShapePriors], per_shape: usize) -> Vec<Candidate> {
    let mut by_distance: Vec<(f64, usize)> =
        sources.iter().enumerate().map(|(i, s)| (shape_distance(target, &s.shape), i)).collect();
    by_distance.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut seen = HashSet::new();
    let mut out: Vec<Candidate> = Vec::new();
    for rank in 0..per_shape {
        for &(_, i) in &by_distance {
            if let Some(c) = sources[i].ranked.get(rank) {
                if seen.insert(c.clone()) {
                    out.push(c.clone());
                }
            }
        }
    }
    out
}

/// `c` made to fit `space`: a parameter the space's variant has but `c` lacks is filled in
/// when the space allows it one value only (it then carries no choice; a space that added
/// a tunable pinned to one value must still accept the winners of an older one). `None`
/// when the result is not valid in the space.
pub fn fit_to_space(space: &dyn SearchSpace, c: &Candidate) -> Option<Candidate> {
    let mut c = c.clone();
    for d in space.dims(&c.variant) {
        if !c.params.contains_key(&d.name) && d.values.len() == 1 {
            c.params.insert(d.name.clone(), d.values[0]);
        }
    }
    space.is_valid(&c).then_some(c)
}

/// Measures the priors first, then the inner strategy; tells the inner one everything.
pub struct WarmStart<'a> {
    priors: VecDeque<Candidate>,
    /// Priors already proposed: the inner strategy does not know them until they are told,
    /// so its proposals are checked against them.
    proposed: HashSet<Candidate>,
    /// Candidates told (a resumed sweep tells its rows before asking): a prior among them
    /// is not proposed again.
    told: HashSet<Candidate>,
    inner: Box<dyn Searcher + 'a>,
}

impl<'a> WarmStart<'a> {
    /// `priors` in the order to try them (see [`order_priors`]); those invalid in `space`
    /// are dropped, and at most `cfg`'s cap of the valid ones is kept.
    pub fn new(
        space: &dyn SearchSpace,
        priors: &[Candidate],
        cfg: WarmConfig,
        inner: Box<dyn Searcher + 'a>,
    ) -> WarmStart<'a> {
        let cap = prior_cap(space.size(), cfg);
        let mut kept: Vec<Candidate> = Vec::new();
        for c in priors.iter().filter_map(|c| fit_to_space(space, c)) {
            if kept.len() == cap {
                break;
            }
            if !kept.contains(&c) {
                kept.push(c);
            }
        }
        WarmStart { priors: kept.into(), proposed: HashSet::new(), told: HashSet::new(), inner }
    }

    /// The priors still to propose.
    pub fn pending(&self) -> usize {
        self.priors.len()
    }
}

/// At most `max_priors`, and at most `max_share` of a space of known size (at least one).
fn prior_cap(size: Option<usize>, cfg: WarmConfig) -> usize {
    match size {
        Some(n) => cfg.max_priors.min(((n as f64 * cfg.max_share).floor() as usize).max(1)),
        None => cfg.max_priors,
    }
}

impl Searcher for WarmStart<'_> {
    fn ask(&mut self, n: usize) -> Vec<Candidate> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let Some(c) = self.priors.pop_front() else { break };
            if !self.told.contains(&c) && self.proposed.insert(c.clone()) {
                out.push(c);
            }
        }
        // The inner strategy may propose a prior still in flight (asked, not yet told):
        // skip it and ask again; it marked that one seen, so each retry makes progress.
        while out.len() < n {
            let more = self.inner.ask(n - out.len());
            if more.is_empty() {
                break;
            }
            out.extend(more.into_iter().filter(|c| !self.proposed.contains(c)));
        }
        out
    }

    fn tell(&mut self, c: &Candidate, time_us: Option<f64>) {
        self.told.insert(c.clone());
        self.inner.tell(c, time_us);
    }
}
