//! The sweep's search loop with a fake GPU: the strategies drive the real per-shape loop
//! over the real lazy space of a sweep file, with measurements made up by the test.

mod sweep_support;

use kernlab::tune::record::{CandidateRecord, Status, Timing};
use kernlab::tune::search::{SearchStrategy, Searcher, StopReason};
use kernlab::tune::settle::settle;
use kernlab::tune::shape_search::{Halt, Limits, Measure, ShapeSearch, Stop};
use kernlab::tune::space::{Candidate, ShapeEnv, Sweep};
use kernlab::tune::summary::{search_line, ShapeResult};
use kernlab::tune::sweep_plan::{default_strategy, plan_work, How, SearchRequest, ShapeWork};
use std::cell::Cell;
use std::collections::HashSet;
use std::time::Duration;
use sweep_support::{env_64, row_64, timing, wide_sweep};

/// A sweep over `n` parameters P0.. of values 1..=k, P2 even (so half the points are valid);
/// `extra` is added to the file's top-level lines.
fn wide(dir: &std::path::Path, n: usize, k: usize, extra: &str) -> Sweep {
    wide_sweep(dir, n, k, extra, "constraints = [\"P2 % 2 == 0\"]")
}

/// The small space most tests search: 4 parameters of 8 values, at the 64^3 shape.
fn small_space() -> (tempfile::TempDir, Sweep, [ShapeEnv; 1]) {
    let dir = tempfile::tempdir().unwrap();
    let s = wide(dir.path(), 4, 8, "");
    let envs = [env_64(&s)];
    (dir, s, envs)
}

fn shape() -> (kernlab::kernels::DType, kernlab::kernels::Shape) {
    (kernlab::kernels::DType::BF16, kernlab::kernels::Shape::parse("64x64x64", &["M", "N", "K"]).unwrap())
}

fn plan<'a>(s: &'a Sweep, envs: &'a [ShapeEnv], req: &SearchRequest) -> anyhow::Result<Vec<ShapeWork<'a>>> {
    let fam = kernlab::kernels::family("gemm").unwrap();
    plan_work(fam, s, &[shape()], envs, req, &HashSet::new())
}

fn row(c: &Candidate, t: Option<f64>) -> CandidateRecord {
    row_64(c, t, 0.01)
}

/// Smooth in the parameters: fastest at P0 = 3, P1 = 5. P3 = 1 fails to compile.
fn made_up(c: &Candidate) -> Option<f64> {
    let p = |k: &str| c.params.get(k).copied().unwrap_or(0) as f64;
    (p("P3") != 1.0).then(|| 10.0 + (p("P0") - 3.0).powi(2) + (p("P1") - 5.0).powi(2))
}

/// A GPU made up by the test: every measurement advances `clock` by one second.
struct Fake<'c> {
    clock: &'c Cell<Duration>,
    measured: Vec<Candidate>,
    pct: fn(f64) -> Option<f64>,
}

impl Measure for Fake<'_> {
    fn prepare(&mut self, _: &[Candidate]) {}
    fn measure(&mut self, c: &Candidate, _seq: u64) -> anyhow::Result<Option<CandidateRecord>> {
        self.clock.set(self.clock.get() + Duration::from_secs(1));
        self.measured.push(c.clone());
        let mut r = row(c, made_up(c));
        r.pct_of_bound = r.median_us().and_then(self.pct);
        Ok(Some(r))
    }
}

/// Records what the strategy is told.
struct Spy<'a> {
    inner: Box<dyn Searcher + 'a>,
    told: Vec<(Candidate, Option<f64>)>,
}

impl Searcher for Spy<'_> {
    fn ask(&mut self, n: usize) -> Vec<Candidate> {
        self.inner.ask(n)
    }
    fn tell(&mut self, c: &Candidate, t: Option<f64>) {
        self.told.push((c.clone(), t));
        self.inner.tell(c, t);
    }
}

struct Outcome {
    stop: Stop,
    evaluations: usize,
    measured: Vec<Candidate>,
    told: Vec<(Candidate, Option<f64>)>,
    failed: usize,
}

fn drive(w: &ShapeWork, limits: Limits, resumed: &[CandidateRecord], pct: fn(f64) -> Option<f64>) -> Outcome {
    let clock = Cell::new(Duration::ZERO);
    let elapsed = || clock.get();
    let halt = || None;
    let space_error = || match &w.how {
        How::Adaptive(s) => s.take_error(),
        How::Planned(_) => None,
    };
    let search = ShapeSearch { limits, batch: 3, elapsed: &elapsed, halt: &halt, space_error: &space_error };
    let mut spy = Spy { inner: w.searcher(7), told: Vec::new() };
    let mut fake = Fake { clock: &clock, measured: Vec::new(), pct };
    let s = search.run(&mut spy, resumed, &mut fake, &mut |r| Ok(r)).unwrap();
    Outcome { stop: s.stop, evaluations: s.evaluations, measured: fake.measured, told: spy.told, failed: s.failed }
}

fn no_pct(_: f64) -> Option<f64> {
    None
}

#[test]
fn tpe_and_evolve_search_a_space_of_2_pow_64_points_with_failures_told() {
    let dir = tempfile::tempdir().unwrap();
    let s = wide(dir.path(), 16, 16, "");
    let envs = [env_64(&s)];
    for strategy in [SearchStrategy::Tpe, SearchStrategy::Evolve] {
        let req = SearchRequest { strategy: Some(strategy), budget: 40, ..SearchRequest::default() };
        let work = plan(&s, &envs, &req).unwrap();
        let How::Adaptive(space) = &work[0].how else { panic!("{} should search the lazy space", strategy.name()) };
        assert_eq!((space.points(), space.valid()), (1u128 << 64, None), "a 2^64 space is never examined");
        let o = drive(&work[0], work[0].limits, &[], no_pct);
        assert_eq!((o.evaluations, o.stop), (40, Stop::Search(StopReason::Evaluations)), "{}", strategy.name());
        let distinct: HashSet<&Candidate> = o.measured.iter().collect();
        assert_eq!(distinct.len(), 40, "{} measured a candidate twice", strategy.name());
        assert!(
            o.measured.iter().all(|c| c.params["P2"] % 2 == 0),
            "{} measured an invalid candidate",
            strategy.name()
        );
        // Every measured candidate is told, the failures as failures.
        assert_eq!(o.told.len(), 40);
        let failures: Vec<&Candidate> = o.told.iter().filter(|(_, t)| t.is_none()).map(|(c, _)| c).collect();
        assert!(failures.iter().all(|c| c.params["P3"] == 1));
        assert_eq!(failures.len(), o.failed);
        assert!(o.failed > 0, "the made-up GPU fails on P3 = 1; {} never tried one", strategy.name());
        assert_eq!(o.failed, o.measured.iter().filter(|c| c.params["P3"] == 1).count());
    }
}

#[test]
fn the_time_budget_stops_a_shape_between_candidates() {
    let (_dir, s, envs) = small_space();
    let req = SearchRequest { strategy: Some(SearchStrategy::Tpe), budget: 100, ..SearchRequest::default() };
    let work = plan(&s, &envs, &req).unwrap();
    // One second per candidate on the fake clock: 3.5 s allows four.
    let limits = Limits { max_time: Some(Duration::from_millis(3500)), ..work[0].limits };
    let o = drive(&work[0], limits, &[], no_pct);
    assert_eq!((o.measured.len(), o.stop), (4, Stop::Search(StopReason::Time)));
}

#[test]
fn the_search_stops_once_the_best_is_within_the_share_of_its_bound() {
    let (_dir, s, envs) = small_space();
    let req = SearchRequest { strategy: Some(SearchStrategy::Grid), ..SearchRequest::default() };
    let work = plan(&s, &envs, &req).unwrap();
    // 10 µs is the bound: a candidate at 11 µs is at 91 % of it.
    let pct = |t: f64| Some(100.0 * 10.0 / t);
    let limits = Limits { stop_within_pct: Some(10.0), ..work[0].limits };
    let o = drive(&work[0], limits, &[], pct);
    assert_eq!(o.stop, Stop::Search(StopReason::GoodEnough));
    let times: Vec<f64> = o.told.iter().filter_map(|(_, t)| *t).collect();
    assert!(*times.last().unwrap() <= 10.0 / 0.9, "stopped at {times:?}");
    assert!(times[..times.len() - 1].iter().all(|t| *t > 10.0 / 0.9), "went on past the bound: {times:?}");
    // Without the flag the same grid measures every valid candidate.
    let all = drive(&work[0], work[0].limits, &[], pct);
    assert_eq!(all.stop, Stop::Search(StopReason::Exhausted));
    assert_eq!(all.measured.len(), 8 * 8 * 4 * 8);
}

#[test]
fn resumed_rows_are_told_and_counted_but_not_measured_again() {
    let (_dir, s, envs) = small_space();
    let req = SearchRequest { strategy: Some(SearchStrategy::Tpe), budget: 12, ..SearchRequest::default() };
    let work = plan(&s, &envs, &req).unwrap();
    let first = drive(&work[0], work[0].limits, &[], no_pct);
    let resumed: Vec<CandidateRecord> = first.measured[..5].iter().map(|c| row(c, made_up(c))).collect();
    let o = drive(&work[0], work[0].limits, &resumed, no_pct);
    assert_eq!(o.evaluations, 12);
    assert_eq!(o.measured.len(), 7);
    assert!(o.measured.iter().all(|c| !first.measured[..5].contains(c)));
    assert_eq!(o.told.iter().take(5).map(|(c, _)| c.clone()).collect::<Vec<_>>(), first.measured[..5].to_vec());
}

#[test]
fn a_halt_stops_the_shape_before_the_next_candidate() {
    let (_dir, s, envs) = small_space();
    let work =
        plan(&s, &envs, &SearchRequest { strategy: Some(SearchStrategy::Evolve), ..Default::default() }).unwrap();
    let clock = Cell::new(Duration::ZERO);
    let halt = || (clock.get() >= Duration::from_secs(2)).then_some(Halt::Interrupted);
    let (elapsed, none) = (|| clock.get(), || None);
    let search = ShapeSearch { limits: work[0].limits, batch: 4, elapsed: &elapsed, halt: &halt, space_error: &none };
    let mut fake = Fake { clock: &clock, measured: Vec::new(), pct: no_pct };
    let mut searcher = work[0].searcher(1);
    let r = search.run(searcher.as_mut(), &[], &mut fake, &mut |r| Ok(r)).unwrap();
    assert_eq!((r.measured, r.stop), (2, Stop::Halt(Halt::Interrupted)));
}

#[test]
fn the_default_is_grid_for_a_small_space_measured_in_full_and_warm_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    // 8 * 8 * 4 = 256 valid candidates of 512 points.
    let s = wide(dir.path(), 3, 8, "");
    assert_eq!(s.strategy, None);
    let envs = [env_64(&s)];
    let all = plan(&s, &envs, &SearchRequest::default()).unwrap();
    assert_eq!(all[0].strategy, SearchStrategy::Grid);
    let budgeted = plan(&s, &envs, &SearchRequest { budget: 30, ..Default::default() }).unwrap();
    assert_eq!(budgeted[0].strategy, SearchStrategy::Warm);
    assert_eq!(budgeted[0].limits.max_evals, Some(30));
    let timed = SearchRequest { time_budget: Some(Duration::from_secs(60)), ..Default::default() };
    assert_eq!(default_strategy(Some(256), &timed), SearchStrategy::Warm);
    assert_eq!(default_strategy(Some(301), &SearchRequest::default()), SearchStrategy::Warm);
    assert_eq!(default_strategy(None, &SearchRequest { budget: 50, ..Default::default() }), SearchStrategy::Warm);
    // The sweep file's choice wins over the rule, and names every strategy.
    let t = wide(dir.path(), 3, 8, "strategy = \"tpe\"");
    assert_eq!(t.strategy, Some(SearchStrategy::Tpe));
    // A space too big to count with nothing to stop the search is refused, saying what to pass.
    let huge = wide(dir.path(), 16, 16, "");
    let envs = [env_64(&huge)];
    let err = plan(&huge, &envs, &SearchRequest::default()).err().expect("no budget on 2^64 points");
    let err = format!("{err:#}");
    assert!(err.contains("--budget") && err.contains("18446744073709551616 points"), "{err}");
}

/// Re-measures with times given by the test.
struct Again(Vec<(&'static str, Option<Timing>)>);

impl Measure for Again {
    fn prepare(&mut self, _: &[Candidate]) {}
    fn measure(&mut self, c: &Candidate, _: u64) -> anyhow::Result<Option<CandidateRecord>> {
        let t = self.0.iter().find(|(v, _)| *v == c.variant).expect("only contenders are re-measured").1;
        let status = if t.is_some() { Status::Ok } else { Status::Wrong };
        Ok(Some(CandidateRecord { variant: c.variant.clone(), status: Some(status), timing: t, ..Default::default() }))
    }
}

fn first(v: &str, t: Timing) -> CandidateRecord {
    CandidateRecord { variant: v.into(), status: Some(Status::Ok), timing: Some(t), ..Default::default() }
}

#[test]
fn a_winner_within_the_spread_is_remeasured_then_declared_clear_or_tied() {
    let rows = [first("a", timing(10.0, 0.3)), first("b", timing(10.2, 0.3)), first("c", timing(15.0, 0.1))];
    let refs: Vec<&CandidateRecord> = rows.iter().collect();
    // Overlapping again: a tie; the pick is the smallest key, the tie names the other.
    let mut tie = Again(vec![("a", Some(timing(10.3, 0.3))), ("b", Some(timing(9.9, 0.3)))]);
    let s = settle(&refs, &mut tie).unwrap().unwrap();
    assert_eq!((s.winner.variant.as_str(), s.remeasured), ("a", 2));
    assert_eq!(s.tied.iter().map(|r| r.variant.as_str()).collect::<Vec<_>>(), vec!["b"]);
    // b clearly faster the second time: b wins outright, with its pooled time.
    let mut clear = Again(vec![("a", Some(timing(12.0, 0.1))), ("b", Some(timing(9.0, 0.1)))]);
    let s = settle(&refs, &mut clear).unwrap().unwrap();
    assert_eq!((s.winner.variant.as_str(), s.tied.len()), ("b", 0));
    assert!((s.winner.median_us().unwrap() - 9.6).abs() < 1e-9);
    // A contender that fails its second run cannot win.
    let mut flaky = Again(vec![("a", None), ("b", Some(timing(10.1, 0.3)))]);
    let s = settle(&refs, &mut flaky).unwrap().unwrap();
    assert_eq!((s.winner.variant.as_str(), s.tied.len()), ("b", 0));
    // Nobody within the spread: no re-measurement at all (Again would panic on "c").
    let apart = [first("a", timing(10.0, 0.1)), first("c", timing(15.0, 0.1))];
    let s = settle(&apart.iter().collect::<Vec<_>>(), &mut Again(vec![])).unwrap().unwrap();
    assert_eq!((s.winner.variant.as_str(), s.remeasured, s.tied.len()), ("a", 0, 0));
}

#[test]
fn the_summary_says_evaluations_space_size_stop_and_tie() {
    let mut r = ShapeResult {
        dtype: "bf16".into(),
        shape: "1x4096x4096".into(),
        winner: Some(first("a", timing(10.0, 0.3))),
        measured: 40,
        strategy: "tpe".into(),
        points: 4000,
        valid: Some(261),
        stop: Some("evaluation budget used".into()),
        tied: vec![first("b", timing(10.1, 0.3))],
        remeasured: 2,
        confirmed: true,
        ..Default::default()
    };
    let line = search_line(&r);
    assert!(line.contains("40 evaluations of 261 valid candidates (15.3 %)"), "{line}");
    assert!(
        line.contains("evaluation budget used") && line.contains("statistical tie") && line.contains("with b"),
        "{line}"
    );
    r.tied.clear();
    r.valid = None;
    let line = search_line(&r);
    assert!(line.contains("of a space of 4000 points") && line.contains("clear win after re-measuring 2"), "{line}");
}
