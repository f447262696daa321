//! Properties every strategy must have, on spaces with and without a list.

use super::space::tests::cand;
use super::space::{Dim, ListSpace, SearchSpace};
use super::{run_search, Budget, SearchStrategy, StopReason};
use crate::tune::space::Candidate;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// A box of two variants with a constraint, known only by its rule (no list).
struct RuleSpace {
    variants: Vec<String>,
    dims: BTreeMap<String, Vec<Dim>>,
}

impl RuleSpace {
    fn new() -> RuleSpace {
        let pow2 = |n: u32| (0..n).map(|i| 1i64 << i).collect::<Vec<_>>();
        let mut dims = BTreeMap::new();
        dims.insert(
            "a".to_string(),
            vec![Dim { name: "X".into(), values: pow2(6) }, Dim { name: "Y".into(), values: pow2(6) }],
        );
        dims.insert("b".to_string(), vec![Dim { name: "Z".into(), values: (1..=7).collect() }]);
        RuleSpace { variants: vec!["a".into(), "b".into()], dims }
    }
}

impl SearchSpace for RuleSpace {
    fn variants(&self) -> &[String] {
        &self.variants
    }
    fn dims(&self, variant: &str) -> &[Dim] {
        self.dims.get(variant).map(|d| d.as_slice()).unwrap_or(&[])
    }
    fn is_valid(&self, c: &Candidate) -> bool {
        match c.variant.as_str() {
            // Constraint coupling the two: X * Y <= 64.
            "a" => c.params["X"] * c.params["Y"] <= 64,
            "b" => c.params["Z"] % 2 == 1,
            _ => false,
        }
    }
}

/// Valid points of [`RuleSpace`], counted by walking it.
fn rule_space_size() -> usize {
    let s = RuleSpace::new();
    let mut n = 0;
    let mut g = SearchStrategy::Grid.searcher(&s, 0);
    while !g.ask(1).is_empty() {
        n += 1;
    }
    n
}

/// Smooth bowl with its minimum at position (4, 3): time = 10 + distance².
pub fn smooth_time(c: &Candidate) -> Option<f64> {
    let pos = |v: i64| (v as f64).log2();
    match c.variant.as_str() {
        "a" => Some(10.0 + (pos(c.params["X"]) - 4.0).powi(2) + (pos(c.params["Y"]) - 3.0).powi(2)),
        "b" => Some(30.0 + c.params["Z"] as f64),
        _ => None,
    }
}

fn exhaust(space: &dyn SearchSpace, s: SearchStrategy, seed: u64, batch: usize) -> Vec<Candidate> {
    let mut searcher = s.searcher(space, seed);
    let trace = run_search(searcher.as_mut(), Budget::default(), batch, |b| b.iter().map(smooth_time).collect());
    assert_eq!(trace.stop, StopReason::Exhausted);
    trace.evaluated.into_iter().map(|(c, _)| c).collect()
}

#[test]
fn every_strategy_proposes_each_valid_candidate_once_then_stops() {
    let rule = RuleSpace::new();
    let n = rule_space_size();
    assert_eq!(n, 26 + 4, "X*Y <= 64 over powers of two 1..32 has 26 points, odd Z of 1..7 four");
    let mut grid = exhaust(&rule, SearchStrategy::Grid, 0, 1);
    grid.sort();
    let list = ListSpace::new(grid.clone());
    for s in SearchStrategy::ALL {
        for (space, batch) in [(&rule as &dyn SearchSpace, 1), (&list, 1), (&list, 4)] {
            let seen = exhaust(space, s, 3, batch);
            let unique: HashSet<&Candidate> = seen.iter().collect();
            assert_eq!(unique.len(), seen.len(), "{} repeated a candidate", s.name());
            assert!(seen.iter().all(|c| space.is_valid(c)), "{} proposed an invalid candidate", s.name());
            assert_eq!(seen.len(), n, "{} did not cover the space", s.name());
        }
    }
}

#[test]
fn budgets_are_respected() {
    let list = ListSpace::new(exhaust(&RuleSpace::new(), SearchStrategy::Grid, 0, 1));
    for s in SearchStrategy::ALL {
        let mut searcher = s.searcher(&list, 1);
        let t = run_search(searcher.as_mut(), Budget::evals(7), 3, |b| b.iter().map(smooth_time).collect());
        assert_eq!((t.evaluated.len(), t.stop), (7, StopReason::Evaluations), "{}", s.name());
        let mut searcher = s.searcher(&list, 1);
        let zero = Budget { max_time: Some(Duration::ZERO), ..Budget::default() };
        let t = run_search(searcher.as_mut(), zero, 1, |b| b.iter().map(smooth_time).collect());
        assert_eq!((t.evaluated.len(), t.stop), (0, StopReason::Time), "{}", s.name());
        // Good enough: a bound of 10 µs and 80 % of it means stop at or below 12.5 µs.
        let mut searcher = s.searcher(&list, 1);
        let b = Budget::default().stop_at_pct_of_bound(10.0, 80.0);
        let t = run_search(searcher.as_mut(), b, 1, |b| b.iter().map(smooth_time).collect());
        assert_eq!(t.stop, StopReason::GoodEnough, "{}", s.name());
        assert!(t.best().unwrap().1 <= 12.5);
        let so_far = t.best_so_far();
        let before_last = &so_far[..so_far.len() - 1];
        assert!(before_last.iter().all(|b| b.is_none_or(|b| b > 12.5)), "{} went on past the bound", s.name());
    }
}

#[test]
fn failures_are_told_and_never_win() {
    let list = ListSpace::new(exhaust(&RuleSpace::new(), SearchStrategy::Grid, 0, 1));
    let mut searcher = SearchStrategy::Tpe.searcher(&list, 5);
    // Every `a` fails; a missing result (the evaluator returned too few) is a failure too.
    let t = run_search(searcher.as_mut(), Budget::default(), 2, |b| {
        b.iter().take(1).map(|c| if c.variant == "a" { None } else { smooth_time(c) }).collect()
    });
    assert_eq!(t.evaluated.len(), 30);
    assert_eq!(t.best().unwrap().0.variant, "b");
}

#[test]
fn strategies_are_deterministic_per_seed() {
    let rule = RuleSpace::new();
    let list = ListSpace::new(exhaust(&rule, SearchStrategy::Grid, 0, 1));
    for s in SearchStrategy::ALL {
        for space in [&rule as &dyn SearchSpace, &list] {
            assert_eq!(exhaust(space, s, 11, 2), exhaust(space, s, 11, 2), "{}", s.name());
        }
        if s != SearchStrategy::Grid {
            assert_ne!(exhaust(&list, s, 11, 1), exhaust(&list, s, 12, 1), "{} ignores its seed", s.name());
        }
    }
}

/// Evaluations until the optimum of a smooth space of `side`² points, median over seeds.
fn median_evals_to_optimum(s: SearchStrategy, side: i64, seeds: u64) -> f64 {
    let pts: Vec<Candidate> =
        (0..side).flat_map(|x| (0..side).map(move |y| cand("v", &[("X", x), ("Y", y)]))).collect();
    let space = ListSpace::new(pts);
    let best = |c: &Candidate| {
        let (x, y) = (c.params["X"] as f64, c.params["Y"] as f64);
        // A bowl with its minimum off-centre plus a ripple, so it is not separable by luck.
        Some(5.0 + 0.02 * ((x - 23.0).powi(2) + (y - 9.0).powi(2)) + 0.05 * (x * 0.7).sin().abs())
    };
    let mut n: Vec<f64> = (0..seeds)
        .map(|seed| {
            let mut searcher = s.searcher(&space, seed);
            let opt = space.list().unwrap().iter().filter_map(best).fold(f64::INFINITY, f64::min);
            let b = Budget { good_enough_us: Some(opt), ..Budget::default() };
            run_search(searcher.as_mut(), b, 1, |b| b.iter().map(best).collect()).evaluated.len() as f64
        })
        .collect();
    n.sort_by(f64::total_cmp);
    n[n.len() / 2]
}

#[test]
fn model_and_local_search_beat_random_on_a_smooth_space() {
    let random = median_evals_to_optimum(SearchStrategy::Random, 32, 21);
    let tpe = median_evals_to_optimum(SearchStrategy::Tpe, 32, 21);
    let evolve = median_evals_to_optimum(SearchStrategy::Evolve, 32, 21);
    // Random needs about half of the 1024 points; a margin of 3× leaves room for seeds.
    assert!(tpe * 3.0 < random, "tpe {tpe} vs random {random}");
    assert!(evolve * 3.0 < random, "evolve {evolve} vs random {random}");
}
