//! Adaptive search over a space of candidates: an ask/tell interface, the strategies behind
//! it, budgets, and the re-measurement rule that declares a winner or a tie.
//!
//! A strategy sees the space only through [`SearchSpace`] (its variants, each variant's
//! parameter value lists, and a validity check per point), so it works the same on a sweep
//! file's space, on a space too big to list, and on a recorded CSV replayed without a GPU.
//!
//! - [`grid`]: every valid candidate in a fixed order (and the seeded random sample);
//! - [`tpe`]: model-based, a tree-structured Parzen estimator with a density-ratio
//!   acquisition (the expected-improvement equivalent of Bergstra et al. 2011);
//! - [`evolve`]: local search, mutating the best few along one parameter at a time, with
//!   random restarts when their neighbourhoods are used up;
//! - [`warm`]: transfer from other shapes: their winners first, then tpe, which learns
//!   from them;
//! - [`lazy`]: the sweep's lazy space as a [`SearchSpace`], for the real sweep;
//! - [`driver`]: the loop that asks, evaluates and tells under a [`driver::Budget`];
//! - [`noise`]: re-measure the contenders within the best's spread, then winner or tie.

pub mod driver;
pub mod evolve;
pub mod grid;
pub mod lazy;
pub mod noise;
pub mod space;
pub mod tpe;
pub mod warm;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod warm_tests;

pub use driver::{run_search, Budget, SearchTrace, StopReason};
pub use lazy::LazySpace;
pub use space::{Dim, ListSpace, SearchSpace};

use crate::tune::space::Candidate;

/// Proposes candidates to measure and learns from their results.
pub trait Searcher {
    /// Up to `n` candidates never proposed before, each valid in the space. Fewer (or none)
    /// means the strategy has nothing left to propose.
    fn ask(&mut self, n: usize) -> Vec<Candidate>;
    /// The result of a proposed candidate: its median time, or `None` when it failed
    /// (compile or launch error, wrong output, fault, timeout).
    fn tell(&mut self, candidate: &Candidate, time_us: Option<f64>);
}

pub use crate::tune::space::SearchStrategy;

// The enum lives with the sweep file that names it (`space::strategy_name`, a leaf), so the
// space does not depend on the strategies; building a searcher needs them, so that part of
// its impl is here.
impl SearchStrategy {
    /// A fresh searcher of this strategy over `space`, seeded.
    pub fn searcher<'a>(self, space: &'a dyn SearchSpace, seed: u64) -> Box<dyn Searcher + 'a> {
        self.searcher_with_priors(space, seed, &[])
    }

    /// As [`SearchStrategy::searcher`], with the candidates to try first when the strategy
    /// uses priors ([`warm::order_priors`] orders them); the others ignore them.
    pub fn searcher_with_priors<'a>(
        self,
        space: &'a dyn SearchSpace,
        seed: u64,
        priors: &[Candidate],
    ) -> Box<dyn Searcher + 'a> {
        match self {
            SearchStrategy::Grid => Box::new(grid::GridSearch::new(space)),
            SearchStrategy::Random => Box::new(grid::RandomSearch::new(space, seed)),
            SearchStrategy::Tpe => Box::new(tpe::TpeSearch::new(space, seed, tpe::TpeConfig::default())),
            SearchStrategy::Warm => {
                let cfg = warm::WarmConfig::default();
                // The nearest shapes' winners also shape tpe's good density, valid here or not.
                let transfer = &priors[..priors.len().min(cfg.transfer_points)];
                let inner = tpe::TpeSearch::new(space, seed, tpe::TpeConfig::default()).with_transfer(transfer);
                Box::new(warm::WarmStart::new(space, priors, cfg, Box::new(inner)))
            }
            SearchStrategy::Evolve => Box::new(evolve::EvolveSearch::new(space, seed, evolve::EvolveConfig::default())),
        }
    }
}
