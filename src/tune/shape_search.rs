//! One shape's search in the real sweep: ask the strategy for a batch, measure it, tell the
//! strategy each result (failures included), until a budget, the strategy or the sweep stops.
//!
//! The loop knows nothing of the GPU: it measures through [`Measure`], which the runner
//! implements with the worker process and the compile pool, and a test with a fake. Rows
//! already in a resumed CSV are told to the strategy first and count as evaluations, so a
//! resumed search continues where it stopped instead of starting over.

use super::record::{CandidateRecord, Status};
use super::search::{Searcher, StopReason};
use super::space::Candidate;
use anyhow::Result;
use std::collections::HashSet;
use std::time::Duration;

/// Measures candidates of the shape the sweep is on.
pub trait Measure {
    /// Candidates that will be measured next (compiling can start in the background).
    fn prepare(&mut self, batch: &[Candidate]);
    /// Verifies and times one candidate: its record with a status (and a timing when ok).
    /// `seq` numbers the candidates of the shape (it seeds the random inputs). `None` when
    /// the sweep was interrupted while the candidate ran.
    fn measure(&mut self, c: &Candidate, seq: u64) -> Result<Option<CandidateRecord>>;
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
        let mut p = Progress::default();
        let mut known: HashSet<Candidate> = HashSet::new();
        for r in resumed {
            let c = candidate_of(r);
            if known.insert(c.clone()) {
                searcher.tell(&c, told_time(r));
                p.note(r);
            }
        }
        let batch = self.batch.max(1);
        loop {
            if let Some(stop) = self.stop_now(&p) {
                return Ok(p.end(stop));
            }
            let want = self.limits.max_evals.map_or(batch, |m| m.saturating_sub(p.evaluations).min(batch));
            let asked = searcher.ask(want);
            if let Some(e) = (self.space_error)() {
                return Err(e);
            }
            if asked.is_empty() {
                return Ok(p.end(Stop::Search(StopReason::Exhausted)));
            }
            // A strategy that ignores what it is told may propose a resumed row again.
            let fresh: Vec<Candidate> = asked.into_iter().filter(|c| !known.contains(c)).collect();
            measure.prepare(&fresh);
            for (k, c) in fresh.into_iter().enumerate() {
                if k > 0 {
                    if let Some(stop) = self.stop_now(&p) {
                        return Ok(p.end(stop));
                    }
                }
                let Some(rec) = measure.measure(&c, p.measured as u64)? else {
                    return Ok(p.end(Stop::Halt(Halt::Interrupted)));
                };
                let rec = record(rec)?;
                searcher.tell(&c, told_time(&rec));
                known.insert(c);
                p.measured += 1;
                p.failed += usize::from(rec.status != Some(Status::Ok));
                p.note(&rec);
            }
        }
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
