//! Local search: mutate the best few candidates along one parameter at a time.
//!
//! After a random warm-up, each proposal is an unseen valid neighbour of the best
//! candidate measured so far (one parameter one step along its value list; failing that
//! two parameters one step each, then one parameter two steps). When the best one's
//! neighbourhood is used up the next best is mutated, and when the `elite` best are all
//! used up (a local optimum, explored) the search restarts from a random candidate. A
//! small share of proposals is random throughout, so a far-away basin is found.

use super::space::{neighbours, pair_neighbours, SearchSpace};
use super::Searcher;
use crate::tune::space::Candidate;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvolveConfig {
    /// Random candidates first: this share of the space's size when known, clamped.
    pub warmup_share: f64,
    pub warmup_min: usize,
    pub warmup_max: usize,
    /// How many of the best are mutated before a restart.
    pub elite: usize,
    /// Share of proposals drawn at random.
    pub explore: f64,
}

impl Default for EvolveConfig {
    fn default() -> Self {
        EvolveConfig { warmup_share: 0.02, warmup_min: 3, warmup_max: 10, elite: 3, explore: 0.1 }
    }
}

pub struct EvolveSearch<'a> {
    space: &'a dyn SearchSpace,
    cfg: EvolveConfig,
    rng: StdRng,
    warmup: usize,
    seen: HashSet<Candidate>,
    /// Successful candidates, fastest first.
    ranked: Vec<(Candidate, f64)>,
    told: usize,
}

impl<'a> EvolveSearch<'a> {
    pub fn new(space: &'a dyn SearchSpace, seed: u64, cfg: EvolveConfig) -> EvolveSearch<'a> {
        let warmup = match space.size() {
            Some(n) => ((n as f64 * cfg.warmup_share).ceil() as usize).clamp(cfg.warmup_min, cfg.warmup_max),
            None => cfg.warmup_max,
        };
        EvolveSearch {
            space,
            cfg,
            rng: StdRng::seed_from_u64(seed),
            warmup,
            seen: HashSet::new(),
            ranked: Vec::new(),
            told: 0,
        }
    }

    fn random_unseen(&mut self) -> Option<Candidate> {
        super::grid::random_unseen(self.space, &self.seen, &mut self.rng)
    }

    /// An unseen neighbour of one of the best, nearest moves first.
    fn mutate(&mut self) -> Option<Candidate> {
        let elite: Vec<Candidate> = self.ranked.iter().take(self.cfg.elite).map(|(c, _)| c.clone()).collect();
        for parent in &elite {
            let moves: [Box<dyn Fn() -> Vec<Candidate>>; 3] = [
                Box::new(|| neighbours(self.space, parent, 1)),
                Box::new(|| pair_neighbours(self.space, parent)),
                Box::new(|| neighbours(self.space, parent, 2)),
            ];
            for m in &moves {
                let unseen: Vec<Candidate> = m().into_iter().filter(|c| !self.seen.contains(c)).collect();
                if let Some(c) = unseen.choose(&mut self.rng) {
                    return Some(c.clone());
                }
            }
        }
        None
    }

    fn propose(&mut self) -> Option<Candidate> {
        if self.told < self.warmup || self.ranked.is_empty() || self.rng.random::<f64>() < self.cfg.explore {
            return self.random_unseen();
        }
        self.mutate().or_else(|| self.random_unseen())
    }
}

impl Searcher for EvolveSearch<'_> {
    fn ask(&mut self, n: usize) -> Vec<Candidate> {
        let next = || self.propose().inspect(|c| _ = self.seen.insert(c.clone()));
        std::iter::from_fn(next).take(n).collect()
    }
    fn tell(&mut self, c: &Candidate, time_us: Option<f64>) {
        self.seen.insert(c.clone());
        self.told += 1;
        if let Some(t) = time_us {
            let at = self.ranked.partition_point(|(_, r)| *r <= t);
            self.ranked.insert(at, (c.clone(), t));
        }
    }
}
