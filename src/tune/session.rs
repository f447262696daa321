//! The sweep's GPU side: the worker process, the shape it has set up, and the compile pool,
//! behind [`Measure`].
//!
//! A fault or a timeout kills the worker (its CUDA context is unusable); the next candidate
//! gets a fresh one through [`GpuSession::ready_worker`], the one place a worker is
//! restarted and set up again for the current shape.

use super::compile::{CompileKey, CompilePool};
use super::pool::{Reply, WorkerHandle};
use super::record::{CandidateRecord, Status, Timing};
use super::shape_search::Measure;
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

pub struct GpuSession<'s> {
    cfg: SessionConfig<'s>,
    pool: CompilePool,
    worker: Option<WorkerHandle>,
    /// The shape being measured, and whether the worker has it set up.
    shape: Option<(DType, Shape)>,
    ready: bool,
}

impl<'s> GpuSession<'s> {
    pub fn new(cfg: SessionConfig<'s>, pool: CompilePool, worker: WorkerHandle) -> GpuSession<'s> {
        GpuSession { cfg, pool, worker: Some(worker), shape: None, ready: false }
    }

    /// Makes `shape` the current one; the worker sets it up when a candidate needs it.
    pub fn enter_shape(&mut self, dt: DType, shape: &Shape) {
        self.shape = Some((dt, shape.clone()));
        self.ready = false;
    }

    /// Makes `shape` current and sets it up now, timing the peer if `time_peer`.
    pub fn setup_shape(&mut self, dt: DType, shape: &Shape, time_peer: bool) -> Result<Setup> {
        self.enter_shape(dt, shape);
        if self.worker.is_none() {
            self.worker = Some(WorkerHandle::spawn(self.cfg.gpu)?);
        }
        match self.send_setup(time_peer)? {
            Reply::Response(Response::Ready { peer }) => {
                self.ready = true;
                Ok(Setup::Ready(peer))
            }
            Reply::Response(Response::Failed { message }) => Ok(Setup::Skipped(message)),
            Reply::Response(other) => bail!("worker answered {other:?} to a setup"),
            Reply::Died(e) => {
                self.worker = None;
                Ok(Setup::Skipped(format!("the worker died setting it up: {e}")))
            }
            Reply::TimedOut => {
                self.worker = None;
                Ok(Setup::Skipped(format!("setup took longer than {} s", SETUP_TIMEOUT.as_secs())))
            }
        }
    }

    fn send_setup(&mut self, time_peer: bool) -> Result<Reply> {
        let Some((dt, shape)) = &self.shape else { bail!("internal: no shape to set up") };
        let setup = Request::Setup {
            family: self.cfg.fam.name().into(),
            shape: shape.label(),
            dtype: dt.name().into(),
            time_peer,
        };
        let Some(w) = self.worker.as_mut() else { bail!("internal: no worker to set up") };
        Ok(w.request(&setup, SETUP_TIMEOUT))
    }

    /// A worker with the current shape set up: the one that is running, or a fresh one.
    fn ready_worker(&mut self) -> Result<&mut WorkerHandle> {
        if self.worker.is_none() {
            self.worker = Some(WorkerHandle::spawn(self.cfg.gpu)?);
            self.ready = false;
        }
        if !self.ready {
            if !matches!(self.send_setup(false)?, Reply::Response(Response::Ready { .. })) {
                let label = self.shape.as_ref().map(|s| s.1.label()).unwrap_or_default();
                bail!("the restarted worker could not set up {label} again");
            }
            self.ready = true;
        }
        self.worker.as_mut().ok_or_else(|| anyhow::anyhow!("internal: no worker"))
    }

    /// The worker exits after a fault and is killed after a timeout: start afresh.
    fn drop_worker(&mut self) {
        self.worker = None;
        self.ready = false;
    }

    fn dtype(&self) -> Result<DType> {
        self.shape.as_ref().map(|s| s.0).ok_or_else(|| anyhow::anyhow!("internal: no shape entered"))
    }

    /// Sends one compiled candidate and records what the worker said.
    fn run_candidate(&mut self, rec: &mut CandidateRecord, req: Request) -> Result<Option<()>> {
        let timeout = self.cfg.timeout;
        rec.env.utc = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let reply = self.ready_worker()?.request(&req, timeout);
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
                rec.env.driver = o.driver.unwrap_or_else(|| format!("CUDA {}", self.cfg.driver_api));
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
                if self.cfg.interrupted.load(Ordering::SeqCst) {
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

impl Measure for GpuSession<'_> {
    fn prepare(&mut self, batch: &[Candidate]) {
        let Ok(dt) = self.dtype() else { return };
        let jobs = batch.iter().map(|c| (c.clone(), dt)).collect();
        self.pool.submit(self.cfg.sweep, jobs, &self.cfg.arch, self.cfg.cache);
    }

    fn measure(&mut self, c: &Candidate, seq: u64) -> Result<Option<CandidateRecord>> {
        let (dt, shape) = self.shape.clone().ok_or_else(|| anyhow::anyhow!("internal: no shape entered"))?;
        let (fam, sweep) = (self.cfg.fam, self.cfg.sweep);
        let mut rec = candidate_record(fam, sweep, c, dt, &shape);
        rec.gpu = self.cfg.gpu_name.clone();
        let key: CompileKey = (c.variant.clone(), c.params.clone(), dt);
        let compiled = match self.pool.wait(&key) {
            Err(e) => {
                rec.status = Some(Status::CompileError);
                rec.error = short_error(&e);
                return Ok(Some(rec));
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
        rec.env.nvrtc = self.cfg.cache.nvrtc_version().to_string();
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
            seed: self.cfg.seed.wrapping_mul(1_000_003).wrapping_add(seq + 17),
            checks: self.cfg.checks,
            time: true,
            timing_ms: self.cfg.timing_ms,
        });
        Ok(self.run_candidate(&mut rec, req)?.map(|()| rec))
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
