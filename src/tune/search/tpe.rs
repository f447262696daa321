//! Model-based search: a tree-structured Parzen estimator (TPE, Bergstra et al. 2011).
//!
//! The measured candidates are split into the fastest share `gamma` ("good") and the rest
//! plus every failure ("bad"). Each side gets a density over the space's tree: a
//! categorical density over the variant and, per parameter of that variant, a Gaussian
//! kernel over the parameter's position in its value list (positions, not values, so
//! powers of two are equally spaced, as log2 would make them), mixed with a uniform prior.
//! The next candidate is the unseen valid one with the largest ratio good/bad, which is
//! what maximises expected improvement under this model. Candidates scored: every unseen
//! one when the space lists few enough, else a random sample plus the neighbours of the
//! best few.
//!
//! Transfer points ([`TpeSearch::with_transfer`], the winners of other shapes from a warm
//! start) are added to the good set with a fixed weight each, so they steer the first
//! proposals and fade as the good set grows (it is a share of the measured candidates).
//!
//! Why hand-written: a TPE over a conditional (per-variant) space is a few counting loops;
//! the Rust TPE crates model a flat box and sample it freely, which would propose the
//! invalid points this tuner must never compile.

use super::space::{neighbours, pair_neighbours, SearchSpace};
use super::Searcher;
use crate::tune::space::Candidate;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TpeConfig {
    /// Random candidates before the model is used: this share of the space's size when
    /// known, clamped to `warmup_min..=warmup_max`.
    pub warmup_share: f64,
    pub warmup_min: usize,
    pub warmup_max: usize,
    /// Share of the successful candidates that count as good.
    pub gamma: f64,
    /// Kernel width in value-list positions.
    pub bandwidth: f64,
    /// Weight of the uniform prior in each density, in candidates.
    pub prior_weight: f64,
    /// Score every unseen candidate when the space lists at most this many.
    pub exhaustive_pool: usize,
    /// Otherwise: this many random draws, plus the neighbours of the best `elite` ones.
    pub pool: usize,
    pub elite: usize,
    /// Joint (multivariate) kernels: a candidate's density is a sum over the set's members
    /// of the product of its per-parameter kernels, so interactions between parameters
    /// (a tile size good only with a warp count) are modelled; otherwise a product of
    /// per-parameter marginals, as the original TPE.
    pub joint: bool,
    /// Weight, in candidates, of each transfer point (see [`TpeSearch::with_transfer`]) in
    /// the good density (marginal model only); without transfer points it does nothing.
    pub transfer_weight: f64,
}

impl Default for TpeConfig {
    fn default() -> Self {
        TpeConfig {
            warmup_share: 0.02,
            warmup_min: 3,
            warmup_max: 10,
            gamma: 0.2,
            bandwidth: 1.2,
            prior_weight: 1.0,
            exhaustive_pool: 50_000,
            pool: 256,
            elite: 3,
            joint: false,
            // Replayed on the H200 grids with 3 transfer points (docs/results/search-replay.md):
            // 1.5 left gemm_int4-grid's worst space at 22.4 % (26.5 % over 200 seeds), 2 at
            // 21.4 (24.5), 3 and 4 at 18.4 (17.4 and 18.4), 5 took it back to 22.4.
            transfer_weight: 3.0,
        }
    }
}

pub struct TpeSearch<'a> {
    space: &'a dyn SearchSpace,
    cfg: TpeConfig,
    rng: StdRng,
    warmup: usize,
    seen: HashSet<Candidate>,
    told: Vec<(Candidate, Option<f64>)>,
    /// Winners of other shapes, counted in the good density with `transfer_weight` each.
    transfer: Vec<Candidate>,
}

impl<'a> TpeSearch<'a> {
    pub fn new(space: &'a dyn SearchSpace, seed: u64, cfg: TpeConfig) -> TpeSearch<'a> {
        let warmup = match space.size() {
            Some(n) => ((n as f64 * cfg.warmup_share).ceil() as usize).clamp(cfg.warmup_min, cfg.warmup_max),
            None => cfg.warmup_max,
        };
        TpeSearch {
            space,
            cfg,
            rng: StdRng::seed_from_u64(seed),
            warmup,
            seen: HashSet::new(),
            told: Vec::new(),
            transfer: Vec::new(),
        }
    }

    /// Candidates that won other shapes (valid here or not: a value the space lacks counts
    /// at its nearest position), to count as good points of weight `transfer_weight` each.
    /// Those of a variant the space lacks are dropped.
    pub fn with_transfer(mut self, points: &[Candidate]) -> TpeSearch<'a> {
        let variants = self.space.variants();
        self.transfer = points.iter().filter(|c| variants.contains(&c.variant)).cloned().collect();
        self
    }

    fn random_unseen(&mut self) -> Option<Candidate> {
        super::grid::random_unseen(self.space, &self.seen, &mut self.rng)
    }

    /// The unseen candidates the model chooses among.
    fn pool(&mut self, good: &[&Candidate]) -> Vec<Candidate> {
        if let Some(list) = self.space.list().filter(|l| l.len() <= self.cfg.exhaustive_pool) {
            return list.iter().filter(|c| !self.seen.contains(*c)).cloned().collect();
        }
        let mut pool: HashSet<Candidate> = HashSet::new();
        for g in good.iter().take(self.cfg.elite) {
            pool.extend(neighbours(self.space, g, 2));
            pool.extend(pair_neighbours(self.space, g));
        }
        for _ in 0..self.cfg.pool {
            if let Some(c) = self.space.sample(&mut self.rng, super::grid::REJECTION_TRIES) {
                pool.insert(c);
            }
        }
        let mut pool: Vec<Candidate> = pool.into_iter().filter(|c| !self.seen.contains(c)).collect();
        // HashSet order is not seeded: sort so the same seed proposes the same candidates.
        pool.sort();
        pool
    }

    fn propose(&mut self) -> Option<Candidate> {
        let any_ok = self.told.iter().any(|(_, t)| t.is_some());
        if self.told.len() < self.warmup || !any_ok {
            return self.random_unseen();
        }
        let mut ok: Vec<(&Candidate, f64)> = self.told.iter().filter_map(|(c, t)| t.map(|t| (c, t))).collect();
        ok.sort_by(|a, b| a.1.total_cmp(&b.1));
        let n_good = ((ok.len() as f64 * self.cfg.gamma).ceil() as usize).clamp(1, ok.len());
        let good: Vec<&Candidate> = ok[..n_good].iter().map(|(c, _)| *c).collect();
        let good_set: HashSet<&Candidate> = good.iter().copied().collect();
        let bad: Vec<&Candidate> = self.told.iter().map(|(c, _)| c).filter(|c| !good_set.contains(c)).collect();
        let (l, g) = if self.cfg.joint {
            (
                Model::Joint(JointDensity::fit(self.space, &good, &self.cfg)),
                Model::Joint(JointDensity::fit(self.space, &bad, &self.cfg)),
            )
        } else {
            (
                Model::Marginal(Density::fit_weighted(self.space, &good, &self.transfer, &self.cfg)),
                Model::Marginal(Density::fit(self.space, &bad, &self.cfg)),
            )
        };
        let good_owned: Vec<Candidate> = good.into_iter().cloned().collect();
        let good_refs: Vec<&Candidate> = good_owned.iter().collect();
        let pool = self.pool(&good_refs);
        let mut best: Option<(f64, usize)> = None;
        for (i, c) in pool.iter().enumerate() {
            let s = l.log_density(c) - g.log_density(c);
            // Ties are broken at random so that flat regions are explored evenly.
            let s = s + self.rng.random::<f64>() * 1e-9;
            if best.is_none_or(|(b, _)| s > b) {
                best = Some((s, i));
            }
        }
        match best {
            Some((_, i)) => pool.into_iter().nth(i),
            None => self.random_unseen(),
        }
    }
}

impl Searcher for TpeSearch<'_> {
    fn ask(&mut self, n: usize) -> Vec<Candidate> {
        // Within a batch the model has not learnt from the earlier proposals yet; a
        // pending entry keeps them out of the pool without counting as a result.
        let next = || self.propose().inspect(|c| _ = self.seen.insert(c.clone()));
        std::iter::from_fn(next).take(n).collect()
    }
    fn tell(&mut self, c: &Candidate, time_us: Option<f64>) {
        self.seen.insert(c.clone());
        self.told.push((c.clone(), time_us));
    }
}

/// A Parzen density over the space's tree, fitted to a set of candidates.
struct Density {
    /// Per variant: log P(variant) and, per parameter, its value list and
    /// log P(value position | variant).
    variants: BTreeMap<String, (f64, BTreeMap<String, (Vec<i64>, Vec<f64>)>)>,
    /// log P of a variant the space does not name.
    unknown_variant: f64,
}

impl Density {
    fn fit(space: &dyn SearchSpace, set: &[&Candidate], cfg: &TpeConfig) -> Density {
        Density::fit_weighted(space, set, &[], cfg)
    }

    /// As `fit`, with `extra` points of weight `cfg.transfer_weight` each, whose values
    /// count at their nearest position in the space's value lists.
    fn fit_weighted(space: &dyn SearchSpace, set: &[&Candidate], extra: &[Candidate], cfg: &TpeConfig) -> Density {
        let variants = space.variants();
        let nv = variants.len().max(1) as f64;
        let xw = if extra.is_empty() { 0.0 } else { cfg.transfer_weight };
        let weighted: Vec<(&Candidate, f64)> =
            set.iter().map(|c| (*c, 1.0)).chain(extra.iter().map(|c| (c, xw))).filter(|(_, w)| *w > 0.0).collect();
        let total = weighted.iter().map(|(_, w)| w).sum::<f64>() + cfg.prior_weight;
        let mut out = BTreeMap::new();
        for v in variants {
            let members: Vec<(&Candidate, f64)> = weighted.iter().filter(|(c, _)| &c.variant == v).copied().collect();
            let p = (members.iter().map(|(_, w)| w).sum::<f64>() + cfg.prior_weight / nv) / total;
            let mut params = BTreeMap::new();
            for d in space.dims(v) {
                let len = d.values.len();
                if len == 0 {
                    continue;
                }
                let mut w = vec![cfg.prior_weight / len as f64; len];
                for (c, cw) in &members {
                    let Some(j) = c.params.get(&d.name).and_then(|x| nearest_index(d, *x)) else { continue };
                    let k: Vec<f64> = (0..len)
                        .map(|i| {
                            let z = (i as f64 - j as f64) / cfg.bandwidth;
                            (-0.5 * z * z).exp()
                        })
                        .collect();
                    let sum: f64 = k.iter().sum();
                    for (wi, ki) in w.iter_mut().zip(k) {
                        *wi += cw * ki / sum;
                    }
                }
                let sum: f64 = w.iter().sum();
                params.insert(d.name.clone(), (d.values.clone(), w.into_iter().map(|x| (x / sum).ln()).collect()));
            }
            out.insert(v.clone(), (p.ln(), params));
        }
        Density { variants: out, unknown_variant: (cfg.prior_weight / nv / total).ln() }
    }

    fn log_density(&self, c: &Candidate) -> f64 {
        let Some((pv, params)) = self.variants.get(&c.variant) else { return self.unknown_variant };
        let mut s = *pv;
        for (name, v) in &c.params {
            if let Some((values, logp)) = params.get(name) {
                // A value outside the box cannot be valid; it adds nothing rather than panic.
                if let Ok(i) = values.binary_search(v) {
                    s += logp[i];
                }
            }
        }
        s
    }
}

enum Model<'s> {
    Marginal(Density),
    Joint(JointDensity<'s>),
}

impl Model<'_> {
    fn log_density(&self, c: &Candidate) -> f64 {
        match self {
            Model::Marginal(d) => d.log_density(c),
            Model::Joint(d) => d.log_density(c),
        }
    }
}

/// A multivariate Parzen density: uniform prior plus one product kernel per member.
struct JointDensity<'s> {
    space: &'s dyn SearchSpace,
    /// Per member: its variant and its value positions in the variant's dims order.
    members: Vec<(String, Vec<Option<usize>>)>,
    bandwidth: f64,
    prior_weight: f64,
}

impl<'s> JointDensity<'s> {
    fn fit(space: &'s dyn SearchSpace, set: &[&Candidate], cfg: &TpeConfig) -> JointDensity<'s> {
        let members = set.iter().map(|c| (c.variant.clone(), positions(space, c))).collect();
        JointDensity { space, members, bandwidth: cfg.bandwidth, prior_weight: cfg.prior_weight }
    }

    fn log_density(&self, c: &Candidate) -> f64 {
        let dims = self.space.dims(&c.variant);
        let nv = self.space.variants().len().max(1) as f64;
        let x = positions(self.space, c);
        let uniform: f64 = dims.iter().map(|d| 1.0 / d.values.len().max(1) as f64).product::<f64>() / nv;
        let mut sum = self.prior_weight * uniform;
        for (v, m) in &self.members {
            if *v != c.variant {
                continue;
            }
            let mut k = 1.0;
            for ((d, xi), mi) in dims.iter().zip(&x).zip(m) {
                if let (Some(i), Some(j)) = (xi, mi) {
                    k *= kernel(*i, *j, d.values.len(), self.bandwidth);
                }
            }
            sum += k;
        }
        (sum / (self.prior_weight + self.members.len() as f64)).ln()
    }
}

/// Position of `v` in the dim's value list, else of the nearest value (in log ratio for
/// positive values, else in difference; the lower one on a tie).
fn nearest_index(d: &super::space::Dim, v: i64) -> Option<usize> {
    if let Some(i) = d.index_of(v) {
        return Some(i);
    }
    let dist = |x: i64| {
        if x > 0 && v > 0 {
            ((x as f64).ln() - (v as f64).ln()).abs()
        } else {
            (x - v).abs() as f64
        }
    };
    let mut best: Option<(f64, usize)> = None;
    for (i, &x) in d.values.iter().enumerate() {
        let e = dist(x);
        if best.is_none_or(|(b, _)| e < b) {
            best = Some((e, i));
        }
    }
    best.map(|(_, i)| i)
}

/// Each dim's value position in `c` (None where `c` lacks the parameter).
fn positions(space: &dyn SearchSpace, c: &Candidate) -> Vec<Option<usize>> {
    space.dims(&c.variant).iter().map(|d| c.params.get(&d.name).and_then(|v| d.index_of(*v))).collect()
}

/// Discrete Gaussian kernel centred on position `j` of `len`, normalised over the positions.
fn kernel(i: usize, j: usize, len: usize, bw: f64) -> f64 {
    let k = |a: usize| {
        let z = (a as f64 - j as f64) / bw;
        (-0.5 * z * z).exp()
    };
    let norm: f64 = (0..len).map(k).sum();
    k(i) / norm
}
