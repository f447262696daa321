//! The measuring process. CUDA errors are sticky for a context, so candidates run in a
//! child process (`kernlab worker`) that the runner restarts after a fault or a hang.
//!
//! Protocol: one JSON request per line on stdin, one JSON response per line on stdout.
//! The worker owns the GPU; the runner compiles (no GPU needed) and hands over cubin paths.

use crate::gpu::cache::{self, ModuleCache};
use crate::gpu::device::{DeviceProps, Gpu, Kernel};
use crate::gpu::nvml::{Probe, Reading};
use crate::gpu::timer::Timer;
use crate::gpu::util::Util;
use crate::kernels::{DType, Problem, Shape};
use crate::tune::record::{Status, Timing};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// Prepare inputs for one shape; optionally time the peer on it.
    Setup { family: String, shape: String, dtype: String, time_peer: bool },
    /// Verify one compiled candidate on fresh inputs and, if correct, time it.
    Candidate(CandidateRequest),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CandidateRequest {
    pub variant: String,
    pub params: BTreeMap<String, i64>,
    pub cubin: PathBuf,
    pub entries: Vec<String>,
    pub tolerance: f64,
    pub seed: u64,
    /// Verification rounds, each on fresh inputs.
    pub checks: u32,
    pub time: bool,
    /// Time to spend timing the candidate (repetitions = this / its run time, 10..300).
    #[serde(default = "default_timing_ms")]
    pub timing_ms: f64,
}

fn default_timing_ms() -> f64 {
    100.0
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    Hello {
        props: DeviceProps,
        /// The GPU's UUID as nvidia-smi prints it (`GPU-…`); empty when the driver has none.
        #[serde(default)]
        uuid: String,
        /// GPUs the driver sees (after CUDA_VISIBLE_DEVICES).
        #[serde(default)]
        visible: usize,
    },
    Ready {
        peer: Option<Timing>,
    },
    Outcome(Outcome),
    /// The request could not be served (bad shape, out of memory); the worker is still usable.
    Failed {
        message: String,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outcome {
    pub status: Option<Status>,
    pub error: String,
    pub max_rel_err: Option<f64>,
    pub timing: Option<Timing>,
    pub registers: Option<u32>,
    pub local_bytes: Option<u32>,
    /// The CUDA result code of a failed candidate (`CUDA_ERROR_ILLEGAL_ADDRESS`), when the
    /// error came from the driver; `status` already says whether it was sticky (Fault).
    #[serde(default)]
    pub cuda_error: Option<String>,
    /// Wall time of the verification rounds and of the timing, in milliseconds.
    #[serde(default)]
    pub verify_ms: Option<f64>,
    #[serde(default)]
    pub time_ms: Option<f64>,
    /// Clocks, power and temperature while the timed runs were on the GPU (NVML).
    #[serde(default)]
    pub reading: Option<Reading>,
    /// The NVIDIA driver's version, when NVML knows it.
    #[serde(default)]
    pub driver: Option<String>,
}

/// Whether an error poisoned the context, so the process must go: told by the CUDA result
/// code it carries ([`crate::gpu::error::GpuError`]), not by its text.
fn is_sticky(e: &anyhow::Error) -> bool {
    crate::gpu::error::gpu_code(e).is_some_and(crate::gpu::error::is_sticky_code)
}

struct State {
    gpu: Gpu,
    util: Util,
    timer: Timer,
    probe: Option<Probe>,
    problem: Option<Box<dyn Problem>>,
}

fn send(out: &mut impl Write, r: &Response) -> Result<()> {
    let line = serde_json::to_string(r)?;
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// Entry point of `kernlab worker`.
pub fn serve(ordinal: usize) -> Result<()> {
    let gpu = Gpu::open(ordinal)?;
    let cache = ModuleCache::open(&cache::default_dir())?;
    let util = Util::new(&gpu, &cache).context("building the helper kernels")?;
    let timer = Timer::new(&gpu)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let uuid = gpu.ctx.uuid().map(|u| format_uuid(&u.bytes)).unwrap_or_default();
    let visible = cudarc::driver::CudaContext::device_count().map_or(0, |n| n.max(0) as usize);
    send(&mut out, &Response::Hello { props: gpu.props.clone(), uuid, visible })?;
    let probe = Probe::open(&gpu);
    let mut st = State { gpu, util, timer, probe, problem: None };
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let req: Request = serde_json::from_str(&line).context("bad request from the runner")?;
        match req {
            Request::Setup { family, shape, dtype, time_peer } => {
                st.problem = None;
                match setup(&mut st, &family, &shape, &dtype, time_peer) {
                    Ok(peer) => send(&mut out, &Response::Ready { peer })?,
                    Err(e) => {
                        let message = format!("{e:#}");
                        send(&mut out, &Response::Failed { message })?;
                        if is_sticky(&e) {
                            std::process::exit(3);
                        }
                    }
                }
            }
            Request::Candidate(req) => {
                let outcome = candidate(&mut st, &req);
                let sticky = outcome.status == Some(Status::Fault);
                send(&mut out, &Response::Outcome(outcome))?;
                if sticky {
                    // The context is unusable; the runner starts a fresh worker.
                    std::process::exit(3);
                }
            }
        }
    }
    Ok(())
}

/// A CUDA UUID as nvidia-smi and CUDA_VISIBLE_DEVICES write it: `GPU-` and 8-4-4-4-12 hex.
pub fn format_uuid(bytes: &[std::ffi::c_char; 16]) -> String {
    let hex: Vec<String> = bytes.iter().map(|b| format!("{:02x}", *b as u8)).collect();
    let h = hex.concat();
    format!("GPU-{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

fn setup(st: &mut State, family: &str, shape: &str, dtype: &str, time_peer: bool) -> Result<Option<Timing>> {
    let fam = crate::tune::family(family)?;
    let dt = DType::parse(dtype)?;
    let s = Shape::parse(shape, fam.shape_dims())?;
    let mut p = fam.problem(&st.gpu, &s, dt)?;
    p.randomize(&st.gpu, &st.util, 1)?;
    let peer = if time_peer && p.run_peer(&st.gpu)?.is_some() {
        let gpu = &st.gpu;
        let t = st.timer.time(gpu, || p.run_peer(gpu).map(|_| ()))?;
        // The peer may have overwritten the reference; make it whole again.
        p.randomize(&st.gpu, &st.util, 1)?;
        Some(t)
    } else {
        None
    };
    st.problem = Some(p);
    Ok(peer)
}

fn candidate(st: &mut State, req: &CandidateRequest) -> Outcome {
    let CandidateRequest { variant, params, cubin, entries, tolerance, seed, checks, time, timing_ms } = req;
    let (variant, tolerance, seed, checks) = (variant.as_str(), *tolerance, *seed, *checks);
    let mut o = Outcome { driver: st.probe.as_ref().map(|p| p.driver.clone()), ..Outcome::default() };
    let r = (|| -> Result<Outcome> {
        let bytes = std::fs::read(cubin).with_context(|| format!("reading {}", cubin.display()))?;
        let mut ks: BTreeMap<String, Kernel> = BTreeMap::new();
        for e in entries {
            ks.insert(e.clone(), st.gpu.load(&bytes, e)?);
        }
        let main = &ks[&entries[0]];
        o.registers = Some(main.registers());
        o.local_bytes = Some(main.local_bytes());
        let p = st.problem.as_mut().context("no shape was set up")?;
        let mut worst = 0.0f64;
        let verify_start = std::time::Instant::now();
        for i in 0..checks.max(1) {
            p.randomize(&st.gpu, &st.util, seed.wrapping_add(i as u64 * 7919))?;
            p.poison(&st.gpu, &st.util)?;
            p.run(&st.gpu, variant, &ks, params)?;
            st.gpu.synchronize()?;
            let c = p.check(&st.gpu, &st.util)?;
            let err = c.rel_err();
            worst = worst.max(err);
            if !(err <= tolerance) {
                o.max_rel_err = Some(err);
                o.status = Some(Status::Wrong);
                o.error = if c.non_finite > 0 {
                    format!("{} output elements are NaN/inf (unwritten or overflowed)", c.non_finite)
                } else {
                    format!("max |out-ref| / max |ref| = {err:.3e} exceeds tolerance {tolerance:.1e}")
                };
                return Ok(o.clone());
            }
        }
        o.max_rel_err = Some(worst);
        o.verify_ms = Some(verify_start.elapsed().as_secs_f64() * 1e3);
        if *time {
            let (gpu, probe) = (&st.gpu, &st.probe);
            st.timer.target_ms = *timing_ms;
            let time_start = std::time::Instant::now();
            let mut reading = None;
            let t = st.timer.time_observed(
                gpu,
                || p.run(gpu, variant, &ks, params),
                || reading = probe.as_ref().map(Probe::read),
            )?;
            o.timing = Some(t);
            o.reading = reading;
            o.time_ms = Some(time_start.elapsed().as_secs_f64() * 1e3);
        }
        o.status = Some(Status::Ok);
        Ok(o.clone())
    })();
    match r {
        Ok(o) => o,
        Err(e) => {
            let msg = format!("{e:#}");
            o.cuda_error = crate::gpu::error::gpu_code(&e).map(|c| format!("{c:?}"));
            let sticky = is_sticky(&e) || st.gpu.synchronize().is_err();
            o.status = Some(if sticky { Status::Fault } else { Status::LaunchError });
            o.error = msg;
            o
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::error::GpuError;
    use cudarc::driver::sys::CUresult;

    #[test]
    fn uuids_read_as_nvidia_smi_prints_them() {
        let mut b = [0 as std::ffi::c_char; 16];
        for (i, x) in b.iter_mut().enumerate() {
            *x = (i as u8 * 17) as std::ffi::c_char;
        }
        assert_eq!(format_uuid(&b), "GPU-00112233-4455-6677-8899-aabbccddeeff");
    }

    #[test]
    fn sticky_is_decided_by_the_code() {
        let err =
            |code| anyhow::Error::from(GpuError::Driver { what: "synchronizing".into(), code }).context("candidate");
        assert!(is_sticky(&err(CUresult::CUDA_ERROR_ILLEGAL_ADDRESS)));
        assert!(!is_sticky(&err(CUresult::CUDA_ERROR_INVALID_VALUE)));
        // Text alone no longer counts: a message that merely mentions a sticky name.
        assert!(!is_sticky(&anyhow::anyhow!("launch failed: CUDA_ERROR_ILLEGAL_ADDRESS (as text)")));
    }
}
