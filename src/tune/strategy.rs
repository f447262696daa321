//! Choosing which candidates of a space to measure.

use super::space::{Candidate, Strategy};
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// Picks the candidates to measure from the valid ones.
///
/// - grid: all of them in enumeration order; with a budget, an evenly spaced subset so the
///   whole space is still covered coarsely rather than its first corner only;
/// - random: a seeded sample without replacement (the same seed gives the same sample).
pub fn select(kept: &[Candidate], strategy: Strategy, budget: usize, seed: u64) -> Vec<Candidate> {
    let n = kept.len();
    if budget == 0 || budget >= n {
        let mut all = kept.to_vec();
        if strategy == Strategy::Random {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            all.shuffle(&mut rng);
        }
        return all;
    }
    match strategy {
        Strategy::Grid => (0..budget).map(|i| kept[i * n / budget].clone()).collect(),
        Strategy::Random => {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut idx: Vec<usize> = (0..n).collect();
            idx.shuffle(&mut rng);
            idx.truncate(budget);
            idx.into_iter().map(|i| kept[i].clone()).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn space(n: i64) -> Vec<Candidate> {
        (0..n)
            .map(|i| Candidate {
                variant: "v".into(),
                params: [("X".to_string(), i)].into_iter().collect::<BTreeMap<_, _>>(),
            })
            .collect()
    }

    #[test]
    fn grid_budget_spreads_over_the_space() {
        let s = space(100);
        let g = select(&s, Strategy::Grid, 4, 0);
        let xs: Vec<i64> = g.iter().map(|c| c.params["X"]).collect();
        assert_eq!(xs, vec![0, 25, 50, 75]);
        assert_eq!(select(&s, Strategy::Grid, 0, 0).len(), 100);
    }

    #[test]
    fn random_is_seeded_distinct_and_within_budget() {
        let s = space(50);
        let a = select(&s, Strategy::Random, 10, 7);
        let b = select(&s, Strategy::Random, 10, 7);
        let c = select(&s, Strategy::Random, 10, 8);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut xs: Vec<i64> = a.iter().map(|c| c.params["X"]).collect();
        xs.sort();
        xs.dedup();
        assert_eq!(xs.len(), 10);
        assert_eq!(select(&s, Strategy::Random, 500, 1).len(), 50);
    }
}
