//! One shape's search in the real sweep: ask the strategy for a batch, measure it, tell the
//! strategy each result (failures included), until a budget, the strategy or the sweep stops.
//!
//! The loop knows nothing of the GPU: it measures through [`Measure`], which the runner
//! implements with the worker process and the compile pool, and a test with a fake. Rows
//! already in a resumed CSV are told to the strategy first and count as evaluations, so a
//! resumed search continues where it stopped instead of starting over.

use super::lanes::Next;
use super::record::{CandidateRecord, Status};
use super::search::{Searcher, StopReason};
use super::space::Candidate;
use anyhow::Result;
use std::collections::{HashSet, VecDeque};
use std::time::Duration;

/// Measures candidates of the shape the sweep is on.
pub trait Measure {
    /// Candidates that will be measured next (compiling can start in the background).
    fn prepare(&mut self, batch: &[Candidate]);
    /// Verifies and times one candidate: its record with a status (and a timing when ok).
    /// `seq` numbers the candidates of the shape (it seeds the random inputs). `None` when
    /// the sweep was interrupted while the candidate ran.
    fn measure(&mut self, c: &Candidate, seq: u64) -> Result<Option<CandidateRecord>>;
    /// How many candidates it measures at once (one per GPU of `--gpus`).
    fn lanes(&self) -> usize {
        1
    }
    /// Measures the feed's candidates until it ends. The default measures one at a time;
    /// the GPU session with several GPUs hands one to each GPU as it becomes free.
    fn measure_each(&mut self, feed: &mut dyn CandidateFeed) -> Result<()> {
        one_at_a_time(self, feed)
    }
}

/// Where a search's candidates come from and its results go (see [`Measure::measure_each`]).
pub trait CandidateFeed {
    /// The next candidate and its sequence number, with `in_flight` others being measured;
    /// candidates the strategy just proposed are passed to `prepare` first (to compile).
    fn next(&mut self, in_flight: usize, prepare: &mut dyn FnMut(&[Candidate])) -> Result<Next<(Candidate, u64)>>;
    /// A measured candidate (`None`: interrupted while it ran).
    fn done(&mut self, c: Candidate, rec: Option<CandidateRecord>) -> Result<()>;
}

/// [`Measure::measure_each`] one candidate at a time, on the calling thread.
pub fn one_at_a_time<M: Measure + ?Sized>(m: &mut M, feed: &mut dyn CandidateFeed) -> Result<()> {
    loop {
        let next = feed.next(0, &mut |batch| m.prepare(batch))?;
        let Next::Job((c, seq)) = next else { return Ok(()) };
        let rec = m.measure(&c, seq)?;
        feed.done(c, rec)?;
    }
}

/// When one shape's search stops. Every limit is optional.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// Evaluations at most, resumed rows and failures included (a failure costs a compile).
    pub max_evals: Option<usize>,
    /// Time at most for this shape's search, checked before each candidate.
    pub max_time: Option<Duration>,
    /// Stop once the best candidate is within this many percent of its roofline bound
    /// (its `pct_of_bound` is at least 100 minus this).
    pub stop_within_pct: Option<f64>,
}

/// Why the whole sweep stops, not just this shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Halt {
    /// Ctrl-C.
    Interrupted,
    /// The sweep's --time-limit.
    TimeLimit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Search(StopReason),
    Halt(Halt),
}

impl Stop {
    pub fn describe(self) -> &'static str {
        match self {
            Stop::Search(StopReason::Exhausted) => "every candidate evaluated",
            Stop::Search(StopReason::Evaluations) => "evaluation budget used",
            Stop::Search(StopReason::Time) => "time budget used",
            Stop::Search(StopReason::GoodEnough) => "best within the requested share of its roofline bound",
            Stop::Halt(Halt::Interrupted) => "interrupted",
            Stop::Halt(Halt::TimeLimit) => "sweep time limit reached",
        }
    }
}

/// What one shape's search did.
#[derive(Debug, Clone, PartialEq)]
pub struct Searched {
    /// Evaluations, resumed rows included.
    pub evaluations: usize,
    /// Candidates measured in this run.
    pub measured: usize,
    /// Of those, how many failed (compile error, wrong, launch error, fault, timeout).
    pub failed: usize,
    pub stop: Stop,
}

/// The loop's settings and its view of the world outside the shape.
pub struct ShapeSearch<'x> {
    pub limits: Limits,
    /// Candidates asked at once (compiled in parallel while the GPU measures).
    pub batch: usize,
    /// Time since this shape's search began.
    pub elapsed: &'x dyn Fn() -> Duration,
    /// Whether the whole sweep must stop before the next candidate.
    pub halt: &'x dyn Fn() -> Option<Halt>,
    /// An error the space hit while the strategy looked at it (a constraint that
    /// overflows): the search stops with it.
    pub space_error: &'x dyn Fn() -> Option<anyhow::Error>,
}

/// The time a strategy is told: the median of a verified candidate, `None` for a failure.
pub fn told_time(r: &CandidateRecord) -> Option<f64> {
    if r.status != Some(Status::Ok) {
        return None;
    }
    r.median_us().filter(|t| t.is_finite())
}

pub fn candidate_of(r: &CandidateRecord) -> Candidate {
    Candidate { variant: r.variant.clone(), params: r.params.clone() }
}

#[derive(Default)]
struct Progress {
    evaluations: usize,
    measured: usize,
    failed: usize,
    /// Best time so far and its share of the roofline bound.
    best: Option<(f64, Option<f64>)>,
}

impl Progress {
    fn note(&mut self, r: &CandidateRecord) {
        self.evaluations += 1;
        if let Some(t) = told_time(r) {
            if self.best.is_none_or(|(b, _)| t < b) {
                self.best = Some((t, r.pct_of_bound));
            }
        }
    }

    fn end(&self, stop: Stop) -> Searched {
        Searched { evaluations: self.evaluations, measured: self.measured, failed: self.failed, stop }
    }
}

impl ShapeSearch<'_> {
    /// Runs `searcher` on the shape. `resumed` are the shape's rows already in the CSV;
    /// `record` fills in and writes each new row, returning it as written.
    pub fn run(
        &self,
        searcher: &mut dyn Searcher,
        resumed: &[CandidateRecord],
        measure: &mut dyn Measure,
        record: &mut dyn FnMut(CandidateRecord) -> Result<CandidateRecord>,
    ) -> Result<Searched> {
        let mut feed = SearchFeed {
            search: self,
            searcher,
            record,
            p: Progress::default(),
            known: HashSet::new(),
            in_flight: HashSet::new(),
            queue: VecDeque::new(),
            dispatched: 0,
            stop: None,
            error: None,
        };
        for r in resumed {
            let c = candidate_of(r);
            if feed.known.insert(c.clone()) {
                feed.searcher.tell(&c, told_time(r));
                feed.p.note(r);
            }
        }
        measure.measure_each(&mut feed)?;
        if let Some(e) = feed.error {
            return Err(e);
        }
        Ok(feed.p.end(feed.stop.unwrap_or(Stop::Search(StopReason::Exhausted))))
    }

    fn stop_now(&self, p: &Progress) -> Option<Stop> {
        if let Some(h) = (self.halt)() {
            return Some(Stop::Halt(h));
        }
        if let (Some(w), Some((_, Some(pct)))) = (self.limits.stop_within_pct, p.best) {
            if pct >= 100.0 - w {
                return Some(Stop::Search(StopReason::GoodEnough));
            }
        }
        if self.limits.max_time.is_some_and(|t| (self.elapsed)() >= t) {
            return Some(Stop::Search(StopReason::Time));
        }
        if self.limits.max_evals.is_some_and(|m| p.evaluations >= m) {
            return Some(Stop::Search(StopReason::Evaluations));
        }
        None
    }
}

/// One shape's search as a [`CandidateFeed`]: asks the strategy for a batch when the
/// queue is empty, hands candidates out one by one and tells the strategy each result.
/// With one lane this is the plain loop: stop checks before every candidate, a batch asked
/// only when the last one is measured; with several, candidates in flight count against
/// the budget and are not proposed twice.
struct SearchFeed<'s, 'x> {
    search: &'s ShapeSearch<'x>,
    searcher: &'s mut dyn Searcher,
    record: &'s mut dyn FnMut(CandidateRecord) -> Result<CandidateRecord>,
    p: Progress,
    known: HashSet<Candidate>,
    in_flight: HashSet<Candidate>,
    queue: VecDeque<Candidate>,
    dispatched: u64,
    stop: Option<Stop>,
    error: Option<anyhow::Error>,
}

/// What asking the strategy for more gave.
enum Refill {
    /// New candidates are queued.
    Queued,
    /// All it proposed were measured or in flight already: check and ask again.
    Again,
    Wait,
    End,
}

impl SearchFeed<'_, '_> {
    fn refill(&mut self, in_flight: usize, prepare: &mut dyn FnMut(&[Candidate])) -> Refill {
        let batch = self.search.batch.max(1);
        let used = self.p.evaluations + in_flight;
        let want = self.search.limits.max_evals.map_or(batch, |m| m.saturating_sub(used).min(batch));
        if want == 0 {
            return if in_flight > 0 { Refill::Wait } else { Refill::End };
        }
        let asked = self.searcher.ask(want);
        if let Some(e) = (self.search.space_error)() {
            self.error = Some(e);
            return Refill::End;
        }
        if asked.is_empty() {
            if in_flight > 0 {
                return Refill::Wait;
            }
            self.stop = Some(Stop::Search(StopReason::Exhausted));
            return Refill::End;
        }
        // A strategy that ignores what it is told may propose a resumed row again.
        let fresh: Vec<Candidate> =
            asked.into_iter().filter(|c| !self.known.contains(c) && !self.in_flight.contains(c)).collect();
        prepare(&fresh);
        if fresh.is_empty() {
            return Refill::Again;
        }
        self.queue.extend(fresh);
        Refill::Queued
    }
}

impl CandidateFeed for SearchFeed<'_, '_> {
    fn next(&mut self, in_flight: usize, prepare: &mut dyn FnMut(&[Candidate])) -> Result<Next<(Candidate, u64)>> {
        let mut check = true;
        loop {
            if self.stop.is_some() || self.error.is_some() {
                return Ok(Next::End);
            }
            if check {
                if let Some(stop) = self.search.stop_now(&self.p) {
                    self.stop = Some(stop);
                    return Ok(Next::End);
                }
            }
            if let Some(c) = self.queue.pop_front() {
                self.in_flight.insert(c.clone());
                self.dispatched += 1;
                return Ok(Next::Job((c, self.dispatched - 1)));
            }
            // The first candidate of a batch just asked goes out without another check.
            check = match self.refill(in_flight, prepare) {
                Refill::Queued => false,
                Refill::Again => true,
                Refill::Wait => return Ok(Next::Wait),
                Refill::End => return Ok(Next::End),
            };
        }
    }

    fn done(&mut self, c: Candidate, rec: Option<CandidateRecord>) -> Result<()> {
        self.in_flight.remove(&c);
        let Some(rec) = rec else {
            self.stop.get_or_insert(Stop::Halt(Halt::Interrupted));
            return Ok(());
        };
        let rec = (self.record)(rec)?;
        self.searcher.tell(&c, told_time(&rec));
        self.known.insert(c);
        self.p.measured += 1;
        self.p.failed += usize::from(rec.status != Some(Status::Ok));
        self.p.note(&rec);
        Ok(())
    }
}

/// The candidates grid and random chose up front, proposed in that order.
pub struct PlannedSearch {
    todo: std::vec::IntoIter<Candidate>,
}

impl PlannedSearch {
    pub fn new(todo: Vec<Candidate>) -> PlannedSearch {
        PlannedSearch { todo: todo.into_iter() }
    }
}

impl Searcher for PlannedSearch {
    fn ask(&mut self, n: usize) -> Vec<Candidate> {
        self.todo.by_ref().take(n).collect()
    }
    fn tell(&mut self, _: &Candidate, _: Option<f64>) {}
}
