//! Choosing which candidates of a space to measure.
//!
//! [`choose`] works on the lazy space of one shape ([`SweepSpace`]): spaces of at most
//! [`GRID_LIMIT`] points are examined point by point (exact drop counts, and the same choice
//! [`select`] makes on the list of valid candidates); larger ones are sampled without being
//! built: grid takes the first valid point of each of `budget` equal strides, random draws
//! indices without replacement and rejects invalid ones, both with a limit on the points
//! examined so a space where almost nothing is valid does not spin forever.

use super::space::enumerate::Tally;
use super::space::{Candidate, ShapeEnv, Strategy, Sweep, SweepSpace, GRID_LIMIT};
use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;

/// The most candidates one shape may measure.
pub const MEASURE_LIMIT: usize = 100_000;
/// The most points a sampling strategy examines for one shape.
pub const EXAMINE_LIMIT: u128 = 2_000_000;

/// What a strategy chose for one shape, and what it saw.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub chosen: Vec<Candidate>,
    /// Points of all variants.
    pub total: u128,
    /// Dropped points by rule: exact when `sampled` is false, else among the examined ones
    /// (plus whole variants that do not apply to the shape, which are always exact).
    pub dropped: Vec<(String, u128)>,
    /// Points checked one by one.
    pub examined: u128,
    pub sampled: bool,
    /// A line for the user when the result is a sample or fell short of the budget.
    pub note: Option<String>,
}

/// Picks the candidates to measure from the valid ones.
///
/// - grid: all of them in enumeration order; with a budget, an evenly spaced subset so the
///   whole space is still covered coarsely rather than its first corner only;
/// - random: a seeded sample without replacement (the same seed gives the same sample).
pub fn select(kept: &[Candidate], strategy: Strategy, budget: usize, seed: u64) -> Vec<Candidate> {
    pick(kept.len(), strategy, budget, seed).into_iter().map(|i| kept[i].clone()).collect()
}

/// The positions [`select`] takes from a list of `n`.
fn pick(n: usize, strategy: Strategy, budget: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    if budget == 0 || budget >= n {
        if strategy == Strategy::Random {
            idx.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        }
        return idx;
    }
    match strategy {
        Strategy::Grid => (0..budget).map(|i| i * n / budget).collect(),
        Strategy::Random => {
            idx.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
            idx.truncate(budget);
            idx
        }
    }
}

/// Chooses up to `budget` (0 = all) candidates of `sweep` for one shape without building
/// its space.
pub fn choose(sweep: &Sweep, env: &ShapeEnv, strategy: Strategy, budget: usize, seed: u64) -> Result<Selection> {
    let space = sweep.space(env)?;
    if budget > MEASURE_LIMIT {
        bail!("a budget of {budget} candidates per shape is more than the {MEASURE_LIMIT} kernlab measures; lower --budget");
    }
    if space.live() <= GRID_LIMIT {
        return exhaustive(&space, strategy, budget, seed);
    }
    if budget == 0 {
        return Err(space.too_large(&format!("{strategy:?} with budget 0 (every candidate)").to_lowercase()));
    }
    let mut tally = Tally::default();
    let chosen = match strategy {
        Strategy::Grid => strided(&space, budget, &mut tally)?,
        Strategy::Random => sampled(&space, budget, seed, &mut tally)?,
    };
    let mut note = format!(
        "sampled: examined {} of {} points ({} rejected by constraints), drop counts are for those",
        tally.examined,
        space.live(),
        tally.examined - chosen.len() as u128
    );
    if chosen.len() < budget {
        note.push_str(&format!(
            "; found only {} valid candidates of the {budget} asked: the constraints keep few points, \
             narrow the parameter lists to the valid region",
            chosen.len()
        ));
    }
    let examined = tally.examined;
    let (dropped, total) = space.counts(tally);
    Ok(Selection { chosen, total, dropped, examined, sampled: true, note: Some(note) })
}

/// Every point checked; the valid ones' global indices (16 bytes each) are kept, then picked.
fn exhaustive(space: &SweepSpace, strategy: Strategy, budget: usize, seed: u64) -> Result<Selection> {
    let mut tally = Tally::default();
    let mut valid: Vec<u128> = Vec::new();
    for g in 0..space.live() {
        if space.examine(g, &mut tally)?.is_some() {
            valid.push(g);
        }
    }
    let picked = pick(valid.len(), strategy, budget, seed);
    if picked.len() > MEASURE_LIMIT {
        bail!(
            "{} valid candidates would be measured, more than the {MEASURE_LIMIT} kernlab measures per shape; \
             pass --budget N (e.g. --strategy random --budget 200)",
            picked.len()
        );
    }
    let mut chosen = Vec::with_capacity(picked.len());
    for i in picked {
        if let Some((v, local)) = space.locate(valid[i]) {
            chosen.push(v.candidate(&v.point(local).unwrap_or_default()));
        }
    }
    let examined = tally.examined;
    let (dropped, total) = space.counts(tally);
    Ok(Selection { chosen, total, dropped, examined, sampled: false, note: None })
}

/// Grid over a large space: one valid point from each of `budget` equal strides: the
/// stride's first point, else seeded random points of the stride (consecutive points differ
/// only in the last parameters, so a scan could stay in an invalid region), looking at most
/// at `EXAMINE_LIMIT / budget` points of each.
fn strided(space: &SweepSpace, budget: usize, tally: &mut Tally) -> Result<Vec<Candidate>> {
    let (n, b) = (space.live(), budget as u128);
    let per_stride = (EXAMINE_LIMIT / b).max(1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut out = Vec::new();
    for k in 0..b {
        // k * n / b without overflowing: n = q * b + r.
        let (q, r) = (n / b, n % b);
        let (start, end) = (k * q + k * r / b, (k + 1) * q + (k + 1) * r / b);
        let width = end - start;
        for attempt in 0..per_stride.min(width) {
            let g = if attempt == 0 { start } else { start + rng.random_range(0..width) };
            if let Some(c) = space.examine(g, tally)? {
                out.push(c);
                break;
            }
        }
    }
    Ok(out)
}

/// Random over a large space: seeded uniform draws of indices, each at most once, until
/// `budget` are valid or `max(1000 * budget, 100000)` (at most `EXAMINE_LIMIT`) were drawn.
fn sampled(space: &SweepSpace, budget: usize, seed: u64, tally: &mut Tally) -> Result<Vec<Candidate>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // At most half the space, so the draws never wait long for an index not yet seen.
    let attempts = (1000 * budget as u128).max(100_000).min(EXAMINE_LIMIT).min(space.live() / 2);
    let mut seen: HashSet<u128> = HashSet::new();
    let mut out = Vec::new();
    while out.len() < budget && (seen.len() as u128) < attempts {
        let g = rng.random_range(0..space.live());
        if !seen.insert(g) {
            continue;
        }
        if let Some(c) = space.examine(g, tally)? {
            out.push(c);
        }
    }
    Ok(out)
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
