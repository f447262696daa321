//! Running the sweep shape by shape: the peer (from the resumed CSV, PyTorch's figures or
//! the worker), the search, the winner's re-measurement, and every row written as it comes.

use super::record::{CandidateRecord, RecordWriter, Status, Timing};
use super::session::{GpuSession, Setup};
use super::settle::{settle, Settled};
use super::shape_search::{Halt, Searched, ShapeSearch, Stop};
use super::sweep_plan::{How, ShapeWork};
use super::sweep_setup::{fill_metrics, is_candidate_of, peer_key, SweepOptions};
use super::torch_peers::TorchPeers;
use crate::kernels::{DType, Family, Shape};
use crate::roofline::Ceilings;
use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Candidates asked of a strategy that learns at once: compiled in parallel, but each
/// batch is proposed without the results of its own members.
const ADAPTIVE_BATCH: usize = 4;

/// What happened on one shape.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Why its search stopped; `None` when the shape was skipped.
    pub stop: Option<String>,
    pub settled: Option<Settled>,
}

/// What stays the same for the whole sweep: the family, the options, the GPU and the
/// figures its rows are compared with.
pub struct RunSetup<'r> {
    pub fam: &'static dyn Family,
    pub opts: &'r SweepOptions,
    pub gpu_name: String,
    /// Ordinal and UUID of the GPU that times the peer (the first of `--gpus`).
    pub first_gpu: (Option<u32>, String),
    pub ceilings: Option<Ceilings>,
    pub torch: Option<TorchPeers>,
}

/// The state a sweep carries from shape to shape.
pub struct Run<'r> {
    setup: RunSetup<'r>,
    writer: RecordWriter,
    /// The resumed rows, then every row written in this run.
    records: Vec<CandidateRecord>,
    /// The resumed rows by key.
    done: HashMap<String, CandidateRecord>,
    resumed_rows: usize,
    pb: ProgressBar,
    started: Instant,
    interrupted: Arc<AtomicBool>,
    was_interrupted: bool,
    failures: usize,
}

impl<'r> Run<'r> {
    pub fn new(
        setup: RunSetup<'r>,
        writer: RecordWriter,
        previous: Vec<CandidateRecord>,
        interrupted: Arc<AtomicBool>,
        total: usize,
    ) -> Run<'r> {
        let pb = if setup.opts.progress { ProgressBar::new(total as u64) } else { ProgressBar::hidden() };
        pb.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} eta {eta} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let done = previous.iter().map(|r| (r.key(), r.clone())).collect();
        Run {
            setup,
            writer,
            resumed_rows: previous.len(),
            records: previous,
            done,
            pb,
            started: Instant::now(),
            interrupted,
            was_interrupted: false,
            failures: 0,
        }
    }

    /// Every row (resumed and new) and whether Ctrl-C stopped the sweep.
    pub fn finish(self) -> (Vec<CandidateRecord>, bool) {
        self.pb.finish_and_clear();
        (self.records, self.was_interrupted)
    }

    /// Runs one shape; `true` when the whole sweep must stop after it.
    pub fn shape(&mut self, w: &ShapeWork, session: &mut GpuSession) -> Result<(Outcome, bool)> {
        let (dt, shape) = (w.dtype, &w.shape);
        let mut peer_us = self.known_peer(dt, shape)?;
        let resumed: Vec<CandidateRecord> = self.records[..self.resumed_rows]
            .iter()
            .filter(|r| is_candidate_of(r, self.setup.fam, dt, shape))
            .cloned()
            .collect();
        let expected = w.expected(resumed.len());
        let has_work = match &w.how {
            How::Planned(p) => !p.todo.is_empty(),
            // A resumed search that already used its budget needs no setup (its winner's
            // re-measurement sets the worker up if it must).
            How::Adaptive(_) => expected > 0,
        };
        if has_work || peer_us.is_none() {
            match session.setup_shape(dt, shape, peer_us.is_none())? {
                Setup::Ready(Some(t)) => {
                    self.write_peer(dt, shape, t, String::new())?;
                    peer_us = Some(t.median_us);
                }
                Setup::Ready(None) => {}
                Setup::Skipped(why) => {
                    self.pb.suspend(|| eprintln!("  {} {}: skipped: {why}", dt.name(), shape.label()));
                    self.pb.inc(expected as u64);
                    return Ok((Outcome::default(), false));
                }
            }
        } else {
            session.enter_shape(dt, shape);
        }
        let searched = self.search(w, session, &resumed, peer_us)?;
        self.pb.inc(expected.saturating_sub(searched.measured) as u64);
        let mut outcome = Outcome { stop: Some(searched.stop.describe().into()), settled: None };
        match searched.stop {
            Stop::Halt(Halt::Interrupted) => {
                self.was_interrupted = true;
                return Ok((outcome, true));
            }
            Stop::Halt(Halt::TimeLimit) => {
                self.pb.suspend(|| eprintln!("  time limit reached; the rest can be measured later with --resume"));
                return Ok((outcome, true));
            }
            Stop::Search(_) => {}
        }
        let rows: Vec<&CandidateRecord> =
            self.records.iter().filter(|r| is_candidate_of(r, self.setup.fam, dt, shape)).collect();
        outcome.settled = self.pb.suspend(|| settle(&rows, session))?;
        if self.interrupted.load(Ordering::SeqCst) {
            self.was_interrupted = true;
            return Ok((outcome, true));
        }
        Ok((outcome, false))
    }

    /// The peer's time on a shape from the resumed CSV or PyTorch's figures (then written
    /// as a row); `None` when the worker must time it.
    fn known_peer(&mut self, dt: DType, shape: &Shape) -> Result<Option<f64>> {
        let pk = peer_key(self.setup.fam, dt, shape);
        if let Some(t) = self.done.get(&pk).and_then(|r| r.median_us()) {
            return Ok(Some(t));
        }
        let found = self
            .setup
            .torch
            .as_ref()
            .and_then(|tp| tp.lookup(self.setup.fam.name(), &shape.label(), dt.name()))
            .cloned();
        let Some((t, p20, p80, backend)) = found else { return Ok(None) };
        let timing = Timing { median_us: t, p20_us: p20, p80_us: p80, min_us: p20, reps: 0 };
        self.write_peer(dt, shape, timing, format!("PyTorch {backend}, from torch_peers.csv"))?;
        Ok(Some(t))
    }

    fn write_peer(&mut self, dt: DType, shape: &Shape, timing: Timing, note: String) -> Result<()> {
        let mut rec = CandidateRecord {
            env: super::record::RowEnv {
                gpu_ordinal: self.setup.first_gpu.0,
                gpu_uuid: self.setup.first_gpu.1.clone(),
                ..Default::default()
            },
            family: self.setup.fam.name().into(),
            variant: self.setup.fam.peer().into(),
            dtype: dt.name().into(),
            shape: shape.label(),
            status: Some(Status::Peer),
            error: note,
            timing: Some(timing),
            gpu: self.setup.gpu_name.clone(),
            ..Default::default()
        };
        fill_metrics(&mut rec, self.setup.fam, shape, dt, None, self.setup.ceilings.as_ref());
        self.writer.append(&rec)?;
        self.records.push(rec);
        Ok(())
    }

    /// The shape's search, each measured row written as it comes.
    fn search(
        &mut self,
        w: &ShapeWork,
        session: &mut GpuSession,
        resumed: &[CandidateRecord],
        peer_us: Option<f64>,
    ) -> Result<Searched> {
        let (interrupted, started, limit) = (self.interrupted.clone(), self.started, self.setup.opts.time_limit);
        let halt = move || {
            if interrupted.load(Ordering::SeqCst) {
                Some(Halt::Interrupted)
            } else if limit.is_some_and(|l| started.elapsed() > l) {
                Some(Halt::TimeLimit)
            } else {
                None
            }
        };
        let shape_start = Instant::now();
        let elapsed = move || shape_start.elapsed();
        let space_error = || match &w.how {
            How::Adaptive(space) => space.take_error(),
            How::Planned(_) => None,
        };
        // One candidate per free GPU at least; a strategy that learns asks a few at once
        // anyway, so they compile while the GPUs measure.
        let lanes = super::shape_search::Measure::lanes(session);
        let batch = if matches!(w.how, How::Adaptive(_)) { ADAPTIVE_BATCH.max(lanes) } else { lanes };
        let search = ShapeSearch { limits: w.limits, batch, elapsed: &elapsed, halt: &halt, space_error: &space_error };
        let mut searcher = w.searcher(self.setup.opts.seed);
        let mut best: Option<f64> = None;
        search.run(searcher.as_mut(), resumed, session, &mut |rec| self.record(rec, w, peer_us, &mut best))
    }

    /// Fills in a measured row's metrics, writes it and shows progress.
    fn record(
        &mut self,
        mut rec: CandidateRecord,
        w: &ShapeWork,
        peer_us: Option<f64>,
        best: &mut Option<f64>,
    ) -> Result<CandidateRecord> {
        fill_metrics(&mut rec, self.setup.fam, &w.shape, w.dtype, peer_us, self.setup.ceilings.as_ref());
        if rec.status != Some(Status::Ok) {
            self.failures += 1;
        } else if let Some(t) = rec.median_us() {
            *best = Some(best.map_or(t, |b: f64| b.min(t)));
        }
        self.writer.append(&rec)?;
        self.records.push(rec.clone());
        self.pb.inc(1);
        let ratio = match (*best, peer_us) {
            (Some(b), Some(p)) => format!(" ({:.2}x {})", p / b, self.setup.fam.peer()),
            _ => String::new(),
        };
        self.pb.set_message(format!(
            "{} {} best {}{} · failed {}",
            w.dtype.name(),
            w.shape.label(),
            best.map(|b| format!("{b:.1} us")).unwrap_or_else(|| "-".into()),
            ratio,
            self.failures
        ));
        Ok(rec)
    }
}
