//! The sweep's GPU side: the worker process, the shape it has set up, and the compile pool,
//! behind [`Measure`].
//!
//! A fault or a timeout kills the worker (its CUDA context is unusable); the next candidate
//! gets a fresh one through [`Lane::ready_worker`], the one place a worker is restarted and
//! set up again for the current shape.
//!
//! With `--gpus` the session has one lane (worker process) per GPU: a search's candidates
//! go to whichever GPU is free ([`super::lanes::dispatch`]); compiling, the CSV and the
//! strategy stay on the calling thread. Setting a shape up with the peer's timing, and the
//! winner's re-measurement ([`super::settle`]), run on the first GPU alone.

use super::compile::{CompileKey, CompilePool};
use super::lanes::{dispatch, Feed, Next};
use super::pool::{Reply, WorkerHandle};
use super::record::{CandidateRecord, Status, Timing};
use super::shape_search::{one_at_a_time, CandidateFeed, Measure};
use super::space::{Candidate, Sweep};
use super::sweep_plan::candidate_record;
use super::worker::{CandidateRequest, Request, Response};
use crate::gpu::cache::ModuleCache;
use crate::kernels::{DType, Family, Shape};
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a worker may take to set up a shape (inputs, references, the peer's timing).
const SETUP_TIMEOUT: Duration = Duration::from_secs(600);

/// What the sweep needs to measure candidates, fixed for the whole sweep.
pub struct SessionConfig<'s> {
    pub fam: &'static dyn Family,
    pub sweep: &'s Sweep,
    pub arch: String,
    pub cache: &'s ModuleCache,
    pub gpu: usize,
    pub gpu_name: String,
    /// Watchdog per candidate.
    pub timeout: Duration,
    pub checks: u32,
    /// Time spent timing one candidate (the repetitions adapt to its run time).
    pub timing_ms: f64,
    pub seed: u64,
    pub interrupted: Arc<AtomicBool>,
    /// The CUDA driver API version, for rows when NVML cannot name the driver.
    pub driver_api: String,
}

/// The outcome of setting a shape up.
pub enum Setup {
    /// Ready; the peer's timing when it was asked for.
    Ready(Option<Timing>),
    /// The shape cannot be measured (the text says why); the sweep goes on to the next.
    Skipped(String),
}

/// One GPU of the sweep: its worker process (restarted after a fault) and whether it has
/// the current shape set up.
pub struct Lane {
    pub ordinal: usize,
    pub uuid: String,
    worker: Option<WorkerHandle>,
    ready: bool,
}

/// What every lane needs to run a candidate, the same for all of them (shared by threads).
struct LaneCtx {
    timeout: Duration,
    interrupted: Arc<AtomicBool>,
    driver_api: String,
    /// Sets the current shape up again on a fresh worker (no peer timing).
    setup: Request,
}

/// A candidate ready for a GPU: its record so far, and the request (None: it failed to
/// compile, so its record is final and no GPU is needed).
struct Job {
    candidate: Candidate,
    rec: CandidateRecord,
    req: Option<Request>,
}

pub struct GpuSession<'s> {
    cfg: SessionConfig<'s>,
    pool: CompilePool,
    /// One per GPU; lane 0 sets shapes up, times the peer and re-measures the contenders.
    lanes: Vec<Lane>,
    /// The shape being measured.
    shape: Option<(DType, Shape)>,
}

impl<'s> GpuSession<'s> {
    /// A session on the GPUs of `workers` (one lane each, the first one first).
    pub fn new(cfg: SessionConfig<'s>, pool: CompilePool, workers: Vec<WorkerHandle>) -> GpuSession<'s> {
        let lanes = workers
            .into_iter()
            .map(|w| Lane { ordinal: w.ordinal, uuid: w.uuid.clone(), worker: Some(w), ready: false })
            .collect();
        GpuSession { cfg, pool, lanes, shape: None }
    }

    /// Makes `shape` the current one; each worker sets it up when a candidate needs it.
    pub fn enter_shape(&mut self, dt: DType, shape: &Shape) {
        self.shape = Some((dt, shape.clone()));
        self.lanes.iter_mut().for_each(|l| l.ready = false);
    }

    /// Makes `shape` current and sets it up now on the first GPU, timing the peer if
    /// `time_peer` (the others set it up when they get their first candidate).
    pub fn setup_shape(&mut self, dt: DType, shape: &Shape, time_peer: bool) -> Result<Setup> {
        self.enter_shape(dt, shape);
        let setup = self.setup_request(time_peer)?;
        let lane = self.lanes.first_mut().ok_or_else(|| anyhow::anyhow!("internal: a session without a GPU"))?;
        if lane.worker.is_none() {
            lane.worker = Some(WorkerHandle::spawn(lane.ordinal)?);
        }
        let Some(w) = lane.worker.as_mut() else { bail!("internal: no worker to set up") };
        match w.request(&setup, SETUP_TIMEOUT) {
            Reply::Response(Response::Ready { peer }) => {
                lane.ready = true;
                Ok(Setup::Ready(peer))
            }
            Reply::Response(Response::Failed { message }) => Ok(Setup::Skipped(message)),
            Reply::Response(other) => bail!("worker answered {other:?} to a setup"),
            Reply::Died(e) => {
                lane.drop_worker();
                Ok(Setup::Skipped(format!("the worker died setting it up: {e}")))
            }
            Reply::TimedOut => {
                lane.drop_worker();
                Ok(Setup::Skipped(format!("setup took longer than {} s", SETUP_TIMEOUT.as_secs())))
            }
        }
    }

    fn setup_request(&self, time_peer: bool) -> Result<Request> {
        let Some((dt, shape)) = &self.shape else { bail!("internal: no shape to set up") };
        Ok(Request::Setup {
            family: self.cfg.fam.name().into(),
            shape: shape.label(),
            dtype: dt.name().into(),
            time_peer,
        })
    }

    fn lane_ctx(&self) -> Result<LaneCtx> {
        Ok(LaneCtx {
            timeout: self.cfg.timeout,
            interrupted: self.cfg.interrupted.clone(),
            driver_api: self.cfg.driver_api.clone(),
            setup: self.setup_request(false)?,
        })
    }
}

impl Lane {
    /// A worker with the current shape set up: the one that is running, or a fresh one.
    fn ready_worker(&mut self, setup: &Request) -> Result<&mut WorkerHandle> {
        if self.worker.is_none() {
            self.worker = Some(WorkerHandle::spawn(self.ordinal)?);
            self.ready = false;
        }
        let Some(w) = self.worker.as_mut() else { bail!("internal: no worker") };
        if !self.ready {
            if !matches!(w.request(setup, SETUP_TIMEOUT), Reply::Response(Response::Ready { .. })) {
                let label = match setup {
                    Request::Setup { shape, .. } => shape.clone(),
                    _ => String::new(),
                };
                bail!("the worker on GPU {} could not set up {label}", self.ordinal);
            }
            self.ready = true;
        }
        Ok(w)
    }

    /// The worker exits after a fault and is killed after a timeout: start afresh.
    fn drop_worker(&mut self) {
        self.worker = None;
        self.ready = false;
    }

    /// Runs a prepared candidate on this GPU: its finished record, `None` when Ctrl-C
    /// stopped it.
    fn run(&mut self, ctx: &LaneCtx, job: Job) -> Result<Option<CandidateRecord>> {
        let Job { mut rec, req, .. } = job;
        let Some(req) = req else { return Ok(Some(rec)) };
        (rec.env.gpu_ordinal, rec.env.gpu_uuid) = (u32::try_from(self.ordinal).ok(), self.uuid.clone());
        Ok(self.run_candidate(ctx, &mut rec, req)?.map(|()| rec))
    }

    /// Sends one compiled candidate and records what the worker said.
    fn run_candidate(&mut self, ctx: &LaneCtx, rec: &mut CandidateRecord, req: Request) -> Result<Option<()>> {
        let timeout = ctx.timeout;
        rec.env.utc = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let reply = self.ready_worker(&ctx.setup)?.request(&req, timeout);
        match reply {
            Reply::Response(Response::Outcome(o)) => {
                rec.status = o.status;
                rec.error = o.error;
                rec.max_rel_err = o.max_rel_err;
                rec.timing = o.timing;
                rec.verify_ms = o.verify_ms;
                rec.time_ms = o.time_ms;
                let r = o.reading.unwrap_or_default();
                (rec.env.sm_mhz, rec.env.mem_mhz, rec.env.power_w, rec.env.temp_c) =
                    (r.sm_mhz, r.mem_mhz, r.power_w, r.temp_c);
                rec.env.driver = o.driver.unwrap_or_else(|| format!("CUDA {}", ctx.driver_api));
                if o.registers.is_some() {
                    rec.registers = o.registers;
                }
                if o.status == Some(Status::Fault) {
                    self.drop_worker();
                }
            }
            Reply::Response(Response::Failed { message }) => {
                rec.status = Some(Status::LaunchError);
                rec.error = message;
            }
            Reply::Response(other) => bail!("worker answered {other:?} to a candidate"),
            Reply::Died(e) => {
                if ctx.interrupted.load(Ordering::SeqCst) {
                    return Ok(None);
                }
                rec.status = Some(Status::Fault);
                let e = if e.is_empty() { "no message".into() } else { e };
                rec.error = format!("the worker process died: {e}");
                self.drop_worker();
            }
            Reply::TimedOut => {
                rec.status = Some(Status::Timeout);
                rec.error = format!("no answer within {:.0} s; the worker was killed", timeout.as_secs_f64());
                self.drop_worker();
            }
        }
        Ok(Some(()))
    }
}

/// Compiles (waits for the pool) and fills in what is known of a candidate before a GPU
/// runs it.
fn prepare_job(
    cfg: &SessionConfig,
    pool: &CompilePool,
    (dt, shape): (DType, &Shape),
    c: Candidate,
    seq: u64,
) -> Result<Job> {
    let (fam, sweep) = (cfg.fam, cfg.sweep);
    let mut rec = candidate_record(fam, sweep, &c, dt, shape);
    rec.gpu = cfg.gpu_name.clone();
    let key: CompileKey = (c.variant.clone(), c.params.clone(), dt);
    let compiled = match pool.wait(&key) {
        Err(e) => {
            rec.status = Some(Status::CompileError);
            rec.error = short_error(&e);
            return Ok(Job { candidate: c, rec, req: None });
        }
        Ok(compiled) => compiled,
    };
    let entries = fam.entries(&c.variant)?;
    if let Some(r) = compiled.resources.get(entries[0]) {
        rec.registers = Some(r.registers);
        rec.local_bytes = Some(r.stack_bytes);
    }
    if fam.name() == "gemm" && c.variant != "wgmma_tma" {
        rec.smem_bytes = Some(dynamic_smem_hint(&c.params, dt.bytes() as i64));
    }
    rec.compile_ms = Some(if compiled.cached { 0.0 } else { compiled.compile_ms });
    rec.env.nvrtc = cfg.cache.nvrtc_version().to_string();
    rec.env.kernlab = env!("CARGO_PKG_VERSION").to_string();
    if let Some(v) = sweep.variant(&c.variant) {
        rec.env.source_hash = crate::gpu::cache::source_hash(&v.source);
    }
    let req = Request::Candidate(CandidateRequest {
        variant: c.variant.clone(),
        params: c.params.clone(),
        cubin: compiled.cubin_path.clone(),
        entries: entries.iter().map(|s| s.to_string()).collect(),
        tolerance: sweep.tolerance.get(dt.name()).copied().unwrap_or(dt.default_tolerance()),
        seed: cfg.seed.wrapping_mul(1_000_003).wrapping_add(seq + 17),
        checks: cfg.checks,
        time: true,
        timing_ms: cfg.timing_ms,
    });
    Ok(Job { candidate: c, rec, req: Some(req) })
}

impl Measure for GpuSession<'_> {
    fn prepare(&mut self, batch: &[Candidate]) {
        let Some((dt, _)) = &self.shape else { return };
        let jobs = batch.iter().map(|c| (c.clone(), *dt)).collect();
        self.pool.submit(self.cfg.sweep, jobs, &self.cfg.arch, self.cfg.cache);
    }

    fn measure(&mut self, c: &Candidate, seq: u64) -> Result<Option<CandidateRecord>> {
        let (dt, shape) = self.shape.clone().ok_or_else(|| anyhow::anyhow!("internal: no shape entered"))?;
        let job = prepare_job(&self.cfg, &self.pool, (dt, &shape), c.clone(), seq)?;
        let ctx = self.lane_ctx()?;
        let lane = self.lanes.first_mut().ok_or_else(|| anyhow::anyhow!("internal: a session without a GPU"))?;
        lane.run(&ctx, job)
    }

    fn lanes(&self) -> usize {
        self.lanes.len()
    }

    fn measure_each(&mut self, feed: &mut dyn CandidateFeed) -> Result<()> {
        if self.lanes.len() <= 1 {
            return one_at_a_time(self, feed);
        }
        let (dt, shape) = self.shape.clone().ok_or_else(|| anyhow::anyhow!("internal: no shape entered"))?;
        let ctx = self.lane_ctx()?;
        let GpuSession { cfg, pool, lanes, .. } = self;
        let mut to_lanes = ToLanes { cfg, pool, at: (dt, &shape), inner: feed };
        let run = |lane: &mut Lane, job: Job| {
            let c = job.candidate.clone();
            (c, lane.run(&ctx, job))
        };
        dispatch(lanes, &run, &mut to_lanes)
    }
}

/// A search's feed seen from the lanes: candidates compiled and filled in on the calling
/// thread, results handed back to the search as they come.
struct ToLanes<'a, 's> {
    cfg: &'a SessionConfig<'s>,
    pool: &'a CompilePool,
    at: (DType, &'a Shape),
    inner: &'a mut dyn CandidateFeed,
}

type LaneResult = (Candidate, Result<Option<CandidateRecord>>);

impl Feed<Job, LaneResult> for ToLanes<'_, '_> {
    fn next(&mut self, in_flight: usize) -> Result<Next<Job>> {
        let (cfg, pool, dt) = (self.cfg, self.pool, self.at.0);
        let mut prepare = |batch: &[Candidate]| {
            let jobs = batch.iter().map(|c| (c.clone(), dt)).collect();
            pool.submit(cfg.sweep, jobs, &cfg.arch, cfg.cache);
        };
        Ok(match self.inner.next(in_flight, &mut prepare)? {
            Next::Job((c, seq)) => Next::Job(prepare_job(cfg, pool, self.at, c, seq)?),
            Next::Wait => Next::Wait,
            Next::End => Next::End,
        })
    }

    fn done(&mut self, _lane: usize, (c, rec): LaneResult) -> Result<()> {
        self.inner.done(c, rec?)
    }
}

/// The first error lines of a compile log (NVRTC logs can be long; the CSV keeps these).
pub(crate) fn short_error(s: &str) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).take(6).collect();
    lines.join("\n")
}

/// Dynamic shared memory of tile-based variants (STAGES·(BM+BN)·BK·bytes), 0 otherwise.
fn dynamic_smem_hint(p: &BTreeMap<String, i64>, e: i64) -> u32 {
    match (p.get("STAGES"), p.get("BM"), p.get("BN"), p.get("BK")) {
        (Some(s), Some(m), Some(n), Some(k)) => (s * (m + n) * k * e) as u32,
        _ => 0,
    }
}
