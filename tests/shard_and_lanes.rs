//! `--shard` and `--gpus` without a GPU: the partition of real sweep spaces, and the
//! per-shape search loop driving several fake GPUs at once.

mod sweep_support;

use kernlab::tune::lanes::{dispatch, Feed, Next};
use kernlab::tune::record::CandidateRecord;
use kernlab::tune::search::{LazySpace, SearchSpace, SearchStrategy};
use kernlab::tune::shape_search::{CandidateFeed, Limits, Measure, ShapeSearch, Stop};
use kernlab::tune::shard::{shard_of, Shard};
use kernlab::tune::space::{Candidate, Strategy, Sweep};
use kernlab::tune::strategy;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;
use sweep_support::{env_64, row_64, sm90a, wide_sweep};

fn builtin(family: &str) -> Sweep {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fam = kernlab::tune::family(family).unwrap();
    Sweep::load(&root.join(format!("sweeps/{family}.toml")), fam.shape_dims()).unwrap()
}

fn kept(s: &Sweep, shape: &[(String, i64)]) -> Vec<Candidate> {
    s.enumerate(shape, 2, &sm90a()).unwrap().kept
}

fn dims(m: i64, n: i64, k: i64) -> Vec<(String, i64)> {
    vec![("M".into(), m), ("N".into(), n), ("K".into(), k)]
}

#[test]
fn shards_cover_every_candidate_exactly_once() {
    let mut sweep = builtin("gemm");
    for shape in [dims(1, 4096, 4096), dims(2048, 4096, 4096)] {
        let all = kept(&sweep, &shape);
        assert!(all.len() > 50, "the gemm space is big enough to say something: {}", all.len());
        for n in [1u64, 2, 3, 4, 7] {
            let mut seen: HashMap<Candidate, u64> = HashMap::new();
            let mut sizes = Vec::new();
            for i in 0..n {
                sweep.shard = Some(Shard { index: i, count: n });
                let e = sweep.enumerate(&shape, 2, &sm90a()).unwrap();
                sizes.push(e.kept.len());
                for c in e.kept {
                    assert!(seen.insert(c.clone(), i).is_none(), "{c:?} is in two shards of {n}");
                }
                // What the shard leaves out is counted, as constraints' drops are.
                let other: usize =
                    e.dropped.iter().filter(|(why, _)| why.contains("another shard")).map(|(_, k)| k).sum();
                assert_eq!(other + sizes[i as usize], all.len(), "shard {i}/{n}");
            }
            sweep.shard = None;
            assert_eq!(seen.len(), all.len(), "{n} shards together are the whole space");
            assert!(all.iter().all(|c| seen.contains_key(c)));
            // Balanced on average (binomially): none empty, and near its share once that is
            // a few dozen.
            let share = all.len() as f64 / n as f64;
            assert!(sizes.iter().all(|&s| s > 0), "{n}: {sizes:?}");
            if share >= 20.0 {
                assert!(sizes.iter().all(|&s| (s as f64) > 0.5 * share && (s as f64) < 1.5 * share), "{sizes:?}");
            }
        }
    }
}

#[test]
fn a_candidate_keeps_its_shard_across_shapes_orders_and_runs() {
    // Pinned values: a change of the hash would split a running job array differently.
    let c = |v: &str, p: &[(&str, i64)]| Candidate {
        variant: v.into(),
        params: p.iter().map(|(k, x)| (k.to_string(), *x)).collect(),
    };
    let pinned = [
        (c("mma_multistage", &[("BM", 128), ("BN", 128), ("BK", 32), ("STAGES", 3)]), 1000),
        (c("gemv_splitk", &[("NUM_WARPS", 4), ("SPLITK", 8)]), 1000),
        (c("w", &[]), 7),
    ];
    let got: Vec<u64> = pinned.iter().map(|(c, n)| shard_of(&c.variant, &c.params, *n)).collect();
    assert_eq!(got, PINNED, "shard_of changed: the partition must be the same on every host and version");
    let sweep = builtin("gemm");
    let (a, b) = (kept(&sweep, &dims(1, 4096, 4096)), kept(&sweep, &dims(16, 4096, 14336)));
    let common: Vec<&Candidate> = a.iter().filter(|c| b.contains(c)).collect();
    assert!(!common.is_empty());
    // The same point has one shard whatever the shape; listing it in another order or
    // building its map another way changes nothing.
    for c in common {
        let mut rev = Candidate { variant: c.variant.clone(), params: Default::default() };
        for (k, v) in c.params.iter().rev() {
            rev.params.insert(k.clone(), *v);
        }
        assert_eq!(shard_of(&c.variant, &c.params, 5), shard_of(&rev.variant, &rev.params, 5));
    }
}

const PINNED: [u64; 3] = [196, 627, 3];

#[test]
fn every_strategy_searches_only_its_shard() {
    let dir = tempfile::tempdir().unwrap();
    let mut sweep = wide_sweep(dir.path(), 3, 6, "", "constraints = [\"P2 % 2 == 0\"]");
    let env = env_64(&sweep);
    let full: BTreeSet<Candidate> =
        LazySpace::new(sweep.space(&env).unwrap()).unwrap().list().unwrap().iter().cloned().collect();
    let shard = Shard { index: 1, count: 3 };
    sweep.shard = Some(shard);
    let piece: BTreeSet<Candidate> = full.iter().filter(|c| shard.contains(&c.variant, &c.params)).cloned().collect();
    // grid and random, any seed and budget: only the piece, grid all of it.
    let grid = strategy::choose(&sweep, &env, Strategy::Grid, 0, 0).unwrap();
    assert_eq!(grid.chosen.iter().cloned().collect::<BTreeSet<_>>(), piece);
    for seed in [0, 1, 99] {
        let r = strategy::choose(&sweep, &env, Strategy::Random, 10, seed).unwrap();
        assert!(r.chosen.iter().all(|c| piece.contains(c)), "random seed {seed}");
    }
    // The learning strategies see the piece as the whole space.
    let space = LazySpace::new(sweep.space(&env).unwrap()).unwrap();
    assert_eq!(space.valid(), Some(piece.len() as u128));
    assert!(full.iter().all(|c| space.is_valid(c) == piece.contains(c)));
    for strategy in [SearchStrategy::Tpe, SearchStrategy::Evolve, SearchStrategy::Random] {
        let mut s = strategy.searcher(&space, 3);
        for _ in 0..5 {
            for c in s.ask(4) {
                assert!(piece.contains(&c), "{strategy:?} proposed {c:?} of another shard");
                s.tell(&c, Some(1.0));
            }
        }
    }
}

/// Made-up GPUs: each lane takes 1–3 ms per candidate and reports which lane ran it.
struct FakeGpus {
    lanes: usize,
    seen: Vec<(Candidate, usize)>,
}

fn row_of(c: &Candidate, lane: usize) -> CandidateRecord {
    let t = 10.0 + c.params.values().sum::<i64>() as f64;
    CandidateRecord { gpu: format!("lane {lane}"), ..row_64(c, Some(t), 0.0) }
}

impl Measure for FakeGpus {
    fn prepare(&mut self, _: &[Candidate]) {}
    fn measure(&mut self, c: &Candidate, _: u64) -> anyhow::Result<Option<CandidateRecord>> {
        Ok(Some(row_of(c, 0)))
    }
    fn lanes(&self) -> usize {
        self.lanes
    }
    fn measure_each(&mut self, feed: &mut dyn CandidateFeed) -> anyhow::Result<()> {
        struct Adapt<'a>(&'a mut dyn CandidateFeed, &'a mut Vec<(Candidate, usize)>);
        impl Feed<(Candidate, u64), (Candidate, usize)> for Adapt<'_> {
            fn next(&mut self, in_flight: usize) -> anyhow::Result<Next<(Candidate, u64)>> {
                self.0.next(in_flight, &mut |_| {})
            }
            fn done(&mut self, lane: usize, (c, ran_on): (Candidate, usize)) -> anyhow::Result<()> {
                assert_eq!(lane, ran_on);
                self.1.push((c.clone(), lane));
                self.0.done(c.clone(), Some(row_of(&c, lane)))
            }
        }
        let mut lanes: Vec<usize> = (0..self.lanes).collect();
        let run = |lane: &mut usize, (c, seq): (Candidate, u64)| {
            std::thread::sleep(Duration::from_millis(1 + seq % 3));
            (c, *lane)
        };
        dispatch(&mut lanes, &run, &mut Adapt(feed, &mut self.seen))
    }
}

fn search(lanes: usize, strategy: SearchStrategy, budget: Option<usize>) -> (Stop, usize, Vec<(Candidate, usize)>) {
    let dir = tempfile::tempdir().unwrap();
    let sweep = wide_sweep(dir.path(), 3, 6, "", "constraints = [\"P2 % 2 == 0\"]");
    let env = env_64(&sweep);
    let space = LazySpace::new(sweep.space(&env).unwrap()).unwrap();
    let mut searcher = strategy.searcher(&space, 0);
    let (elapsed, halt, space_error) = (|| Duration::ZERO, || None, || None);
    let limits = Limits { max_evals: budget, ..Limits::default() };
    let search = ShapeSearch { limits, batch: lanes.max(4), elapsed: &elapsed, halt: &halt, space_error: &space_error };
    let mut gpus = FakeGpus { lanes, seen: vec![] };
    let mut rows = 0;
    let done = search.run(searcher.as_mut(), &[], &mut gpus, &mut |r| {
        rows += 1;
        Ok(r)
    });
    let done = done.unwrap();
    assert_eq!(done.measured, rows);
    (done.stop, done.evaluations, gpus.seen)
}

#[test]
fn several_gpus_measure_each_candidate_once_within_the_budget() {
    // Grid over the whole space (108 valid points) on 4 lanes: all of them, once each.
    let (stop, evals, seen) = search(4, SearchStrategy::Grid, None);
    assert_eq!(stop, Stop::Search(kernlab::tune::search::StopReason::Exhausted));
    let distinct: BTreeSet<&Candidate> = seen.iter().map(|(c, _)| c).collect();
    assert_eq!((evals, seen.len(), distinct.len()), (108, 108, 108));
    assert!(seen.iter().map(|(_, l)| *l).collect::<BTreeSet<_>>().len() > 1, "more than one lane worked");
    // A learning strategy with a budget: candidates in flight count, so never more.
    for lanes in [1, 3, 8] {
        let (stop, evals, seen) = search(lanes, SearchStrategy::Tpe, Some(20));
        assert_eq!((evals, seen.len()), (20, 20), "{lanes} lanes");
        assert_eq!(stop, Stop::Search(kernlab::tune::search::StopReason::Evaluations));
        let distinct: BTreeSet<&Candidate> = seen.iter().map(|(c, _)| c).collect();
        assert_eq!(distinct.len(), 20, "{lanes} lanes: no candidate measured twice");
    }
}
