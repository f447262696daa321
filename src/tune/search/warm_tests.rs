//! The warm start: priors first (valid, unseen, each once), then the inner strategy, which
//! is told everything; without priors it is the inner strategy.

use super::evolve::{EvolveConfig, EvolveSearch};
use super::space::tests::cand;
use super::space::{ListSpace, SearchSpace};
use super::tests::smooth_time;
use super::warm::{fit_to_space, order_priors, shape_distance, ShapeDims, ShapePriors, WarmConfig, WarmStart};
use super::{run_search, Budget, SearchStrategy, Searcher, StopReason};
use crate::tune::space::Candidate;
use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;

/// 6 × 5 points of variant `a` (X, Y in 1..=32 / 1..=16 by powers of two).
fn grid_space() -> ListSpace {
    let mut pts = Vec::new();
    for x in 0..6 {
        for y in 0..5 {
            pts.push(cand("a", &[("X", 1 << x), ("Y", 1 << y)]));
        }
    }
    ListSpace::new(pts)
}

fn dims(m: i64, n: i64, k: i64) -> ShapeDims {
    [("M", m), ("N", n), ("K", k)].into_iter().map(|(a, b)| (a.to_string(), b)).collect()
}

/// Plenty of room for priors: the caps are tested on their own.
const ROOMY: WarmConfig = WarmConfig { per_shape: 1, max_priors: 100, max_share: 1.0, transfer_points: 0 };

/// An inner strategy that proposes the list in order (skipping what it was told) and
/// records every tell, so a test can see what the wrapper forwarded.
struct Recorder {
    list: Vec<Candidate>,
    seen: HashSet<Candidate>,
    told: Rc<RefCell<Vec<(Candidate, Option<f64>)>>>,
}

impl Searcher for Recorder {
    fn ask(&mut self, n: usize) -> Vec<Candidate> {
        let out: Vec<Candidate> = self.list.iter().filter(|c| !self.seen.contains(*c)).take(n).cloned().collect();
        self.seen.extend(out.iter().cloned());
        out
    }
    fn tell(&mut self, c: &Candidate, t: Option<f64>) {
        self.seen.insert(c.clone());
        self.told.borrow_mut().push((c.clone(), t));
    }
}

fn recorder(space: &ListSpace) -> (Box<Recorder>, Rc<RefCell<Vec<(Candidate, Option<f64>)>>>) {
    let told = Rc::new(RefCell::new(Vec::new()));
    let r = Recorder { list: space.list().unwrap().to_vec(), seen: HashSet::new(), told: told.clone() };
    (Box::new(r), told)
}

#[test]
fn valid_unseen_priors_come_first_then_the_inner_strategy() {
    let space = grid_space();
    let (p1, p2, p3) =
        (cand("a", &[("X", 8), ("Y", 4)]), cand("a", &[("X", 2), ("Y", 2)]), cand("a", &[("X", 32), ("Y", 1)]));
    let invalid = [cand("a", &[("X", 64), ("Y", 4)]), cand("b", &[("Z", 1)]), cand("a", &[("X", 8)])];
    let priors = vec![
        invalid[0].clone(),
        p1.clone(),
        p2.clone(),
        invalid[1].clone(),
        p1.clone(),
        invalid[2].clone(),
        p3.clone(),
    ];
    let (inner, told) = recorder(&space);
    let mut w = WarmStart::new(&space, &priors, ROOMY, inner);
    assert_eq!(w.pending(), 3, "three distinct valid priors");
    // p2 was measured before (a resumed sweep tells its rows first): not proposed again.
    w.tell(&p2, Some(1.0));
    let first = w.ask(3);
    assert_eq!(first[..2], [p1.clone(), p3.clone()]);
    assert_eq!(first[2], space.list().unwrap()[0], "the rest of the batch comes from the inner strategy");
    for c in &first {
        w.tell(c, smooth_time(c));
    }
    let told: Vec<Candidate> = told.borrow().iter().map(|(c, _)| c.clone()).collect();
    assert_eq!(told, vec![p2, p1, p3, first[2].clone()], "every result reaches the inner strategy");
}

#[test]
fn warm_start_proposes_each_candidate_once_and_covers_the_space() {
    let space = grid_space();
    // The priors overlap what the inner strategy proposes first, within one batch.
    let priors: Vec<Candidate> = space.list().unwrap().iter().rev().step_by(7).cloned().collect();
    for batch in [1, 4] {
        let (inner, _) = recorder(&space);
        let mut w = WarmStart::new(&space, &priors, ROOMY, inner);
        let t = run_search(&mut w, Budget::default(), batch, |b| b.iter().map(smooth_time).collect());
        assert_eq!(t.stop, StopReason::Exhausted);
        let seen: Vec<&Candidate> = t.evaluated.iter().map(|(c, _)| c).collect();
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), seen.len(), "batch {batch}: a candidate twice");
        assert_eq!(seen.len(), 30, "batch {batch}: the inner strategy must finish the space");
        let head: Vec<Candidate> = seen[..priors.len()].iter().map(|c| (*c).clone()).collect();
        assert_eq!(head, priors, "batch {batch}: the priors first, in their order");
    }
}

#[test]
fn without_priors_warm_is_tpe_proposal_for_proposal() {
    let space = grid_space();
    for seed in [0, 7] {
        let run = |s: SearchStrategy| {
            let mut searcher = s.searcher(&space, seed);
            let t = run_search(searcher.as_mut(), Budget::default(), 2, |b| b.iter().map(smooth_time).collect());
            t.evaluated
        };
        assert_eq!(run(SearchStrategy::Warm), run(SearchStrategy::Tpe));
    }
    // With priors it is not: they come first.
    let prior = cand("a", &[("X", 4), ("Y", 2)]);
    let mut warm = SearchStrategy::Warm.searcher_with_priors(&space, 0, std::slice::from_ref(&prior));
    assert_eq!(warm.ask(1), vec![prior]);
}

#[test]
fn the_priors_are_capped_by_count_and_by_share_of_the_space() {
    let space = grid_space();
    let priors: Vec<Candidate> = space.list().unwrap().to_vec();
    let pending = |cfg: WarmConfig| WarmStart::new(&space, &priors, cfg, recorder(&space).0).pending();
    assert_eq!(pending(WarmConfig { per_shape: 1, max_priors: 5, max_share: 1.0, transfer_points: 0 }), 5);
    assert_eq!(
        pending(WarmConfig { per_shape: 1, max_priors: 100, max_share: 0.1, transfer_points: 0 }),
        3,
        "10 % of 30"
    );
    assert_eq!(
        pending(WarmConfig { per_shape: 1, max_priors: 100, max_share: 0.0, transfer_points: 0 }),
        1,
        "at least one"
    );
}

#[test]
fn a_parameter_pinned_to_one_value_is_filled_in() {
    let space = ListSpace::new(vec![cand("a", &[("X", 1), ("D", 0)]), cand("a", &[("X", 2), ("D", 0)])]);
    assert_eq!(fit_to_space(&space, &cand("a", &[("X", 2)])), Some(cand("a", &[("X", 2), ("D", 0)])));
    assert_eq!(fit_to_space(&space, &cand("a", &[("X", 4)])), None);
    let two = ListSpace::new(vec![cand("a", &[("X", 1), ("D", 0)]), cand("a", &[("X", 1), ("D", 1)])]);
    assert_eq!(fit_to_space(&two, &cand("a", &[("X", 1)])), None, "a real choice is never guessed");
}

#[test]
fn priors_are_ordered_by_rank_then_by_shape_distance() {
    let c = |x: i64| cand("a", &[("X", x)]);
    let sources = vec![
        ShapePriors { shape: dims(2048, 4096, 4096), ranked: vec![c(1), c(2)] },
        ShapePriors { shape: dims(16, 4096, 4096), ranked: vec![c(3), c(1)] },
        ShapePriors { shape: dims(1, 4096, 4096), ranked: vec![c(4), c(5)] },
    ];
    let target = dims(8, 4096, 4096);
    assert!(shape_distance(&target, &dims(16, 4096, 4096)) < shape_distance(&target, &dims(1, 4096, 4096)));
    // Winners nearest first (16, then 1, then 2048), then runners-up; c(1) only once.
    assert_eq!(order_priors(&target, &sources, 2), vec![c(3), c(4), c(1), c(5), c(2)]);
    assert_eq!(order_priors(&target, &sources, 1), vec![c(3), c(4), c(1)]);
}

#[test]
fn evolve_never_proposes_what_it_was_told() {
    let space = grid_space();
    let mut e = EvolveSearch::new(&space, 3, EvolveConfig::default());
    let told: Vec<Candidate> = space.list().unwrap().iter().step_by(2).cloned().collect();
    for c in &told {
        e.tell(c, smooth_time(c));
    }
    let asked = e.ask(100);
    assert_eq!(asked.len(), 15);
    assert!(asked.iter().all(|c| !told.contains(c)));
}

/// Variant `a`: X in 1..=16, variant `b`: Y in powers of two 1..=128.
fn two_variant_space() -> ListSpace {
    let mut pts: Vec<Candidate> = (1..=16).map(|x| cand("a", &[("X", x)])).collect();
    pts.extend((0..8).map(|i| cand("b", &[("Y", 1 << i)])));
    ListSpace::new(pts)
}

#[test]
fn a_transfer_point_invalid_here_still_steers_tpe_to_its_variant_and_region() {
    use super::tpe::{TpeConfig, TpeSearch};
    let space = two_variant_space();
    // Only `a` was measured, its best at X = 8: tpe alone goes on in `a`, near X = 8.
    let measured: Vec<(Candidate, f64)> =
        [(2, 14.0), (8, 10.0), (13, 12.0), (16, 15.0)].into_iter().map(|(x, t)| (cand("a", &[("X", x)]), t)).collect();
    // A winner of another shape, of variant `b` with a Y this space lacks (nearest: 128),
    // and one of a variant this space lacks (ignored).
    let transfer = [cand("b", &[("Y", 200)]), cand("c", &[("Z", 1)])];
    for seed in [0, 3, 11] {
        let next = |points: &[Candidate]| {
            let mut t = TpeSearch::new(&space, seed, TpeConfig::default()).with_transfer(points);
            for (c, time) in &measured {
                t.tell(c, Some(*time));
            }
            t.ask(1).pop().expect("a proposal")
        };
        let alone = next(&[]);
        assert_eq!(alone.variant, "a", "seed {seed}: without transfer, {alone:?}");
        assert!((7..=9).contains(&alone.params["X"]), "seed {seed}: next to the best, {alone:?}");
        assert_eq!(next(&transfer), cand("b", &[("Y", 128)]), "seed {seed}: with transfer");
        let no_weight = TpeConfig { transfer_weight: 0.0, ..TpeConfig::default() };
        let mut t = TpeSearch::new(&space, seed, no_weight).with_transfer(&transfer);
        for (c, time) in &measured {
            t.tell(c, Some(*time));
        }
        assert_eq!(t.ask(1)[0].variant, "a", "seed {seed}: weight 0 is no transfer");
    }
}
