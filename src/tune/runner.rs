//! The tuning loop: enumerate → drop invalid → compile (thread pool) → verify → time, with
//! the peer measured on every shape in the same run, rows written as they come, and the
//! winners stored in the tuned database.

use super::compile::{self, CompileKey, CompilePool};
use super::db::{TunedDb, TunedEntry};
use super::pool::{Reply, WorkerHandle};
use super::record::{CandidateRecord, RecordWriter, Status, Timing};
use super::space::{Candidate, Strategy, Sweep};
use super::strategy;
use super::winner;
use super::worker::{Request, Response};
use crate::gpu::cache::{self, ModuleCache};
use crate::gpu::device::DeviceProps;
use crate::kernels::{self, DType, Family, Shape};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct SweepOptions {
    pub sweep_path: PathBuf,
    /// Shapes to tune; empty = the sweep file's defaults.
    pub shapes: Vec<String>,
    /// Dtypes; empty = the sweep file's.
    pub dtypes: Vec<String>,
    pub strategy: Option<Strategy>,
    /// Candidates per shape; None = the sweep file's (0 = all).
    pub budget: Option<usize>,
    pub time_limit: Option<Duration>,
    pub seed: u64,
    pub out_csv: PathBuf,
    pub resume: bool,
    pub db_path: PathBuf,
    /// Watchdog per candidate.
    pub timeout: Duration,
    pub gpu: usize,
    /// Verification rounds per candidate, each on fresh random inputs.
    pub checks: u32,
    pub progress: bool,
}

/// One row of the final table.
#[derive(Debug, Clone)]
pub struct ShapeResult {
    pub dtype: String,
    pub shape: String,
    pub winner: Option<CandidateRecord>,
    pub peer_us: Option<f64>,
    pub measured: usize,
    pub failed: usize,
}

pub struct SweepSummary {
    pub gpu: DeviceProps,
    pub rows: Vec<ShapeResult>,
    pub csv: PathBuf,
    pub interrupted: bool,
}

/// Shapes and dtypes of a sweep after command-line overrides, validated before any GPU work.
pub fn plan_shapes(
    fam: &dyn Family,
    sweep: &Sweep,
    shapes: &[String],
    dtypes: &[String],
) -> Result<Vec<(DType, Shape)>> {
    let shape_texts = if shapes.is_empty() { sweep.shapes.clone() } else { shapes.to_vec() };
    if shape_texts.is_empty() {
        bail!("{} lists no default shapes; give one with --shape {}", sweep.path.display(), fam.shape_dims().join("x"));
    }
    let dtype_texts = if dtypes.is_empty() { sweep.dtypes.clone() } else { dtypes.to_vec() };
    let mut out = Vec::new();
    for dt in &dtype_texts {
        let dt = DType::parse(dt)?;
        for s in &shape_texts {
            let shape = Shape::parse(s, fam.shape_dims())?;
            fam.validate(&shape, dt)?;
            out.push((dt, shape));
        }
    }
    Ok(out)
}

fn peer_key(fam: &dyn Family, dt: DType, shape: &Shape) -> String {
    CandidateRecord {
        family: fam.name().into(),
        variant: fam.peer().into(),
        dtype: dt.name().into(),
        shape: shape.label(),
        ..Default::default()
    }
    .key()
}

/// Fills the derived columns of a measured row.
pub fn fill_metrics(
    rec: &mut CandidateRecord,
    fam: &dyn Family,
    shape: &Shape,
    dt: DType,
    peer_us: Option<f64>,
    ceilings: Option<&crate::roofline::Ceilings>,
) {
    let Some(t) = rec.timing else { return };
    let secs = t.median_us * 1e-6;
    let flops = fam.flops(shape);
    let bytes = fam.min_bytes(shape, dt);
    rec.tflops = Some(flops / secs / 1e12);
    rec.gbps = Some(bytes / secs / 1e9);
    rec.intensity = Some(flops / bytes);
    rec.peer_us = peer_us;
    rec.speedup_vs_peer = peer_us.map(|p| p / t.median_us);
    if let Some(c) = ceilings {
        crate::roofline_cmd::fill_pct_of_bound(rec, c);
    }
}

fn short_error(s: &str) -> String {
    // NVRTC logs can be long; the CSV keeps the first error lines.
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).take(6).collect();
    lines.join("\n")
}

pub fn run_sweep(opts: &SweepOptions, interrupted: Arc<AtomicBool>) -> Result<SweepSummary> {
    let fam = family_of_sweep(&opts.sweep_path)?;
    let sweep = Sweep::load(&opts.sweep_path, fam.shape_dims())?;
    let plan_list = plan_shapes(fam, &sweep, &opts.shapes, &opts.dtypes)?;

    // Never lose what was measured: an existing file is only ever appended to (with
    // --resume), by one sweep at a time: the writer holds the file's lock until we return.
    let mut writer = RecordWriter::open(&opts.out_csv, &sweep.param_names(), opts.resume)?;
    let previous: Vec<CandidateRecord> = writer.take_previous();
    let done: HashMap<String, CandidateRecord> = previous.iter().map(|r| (r.key(), r.clone())).collect();

    let mut worker = WorkerHandle::spawn(opts.gpu)?;
    let props = worker.props.clone();
    let arch = props.arch();
    let limits = props.limits();
    let cache = ModuleCache::open(&cache::default_dir())?;
    eprintln!(
        "kernlab: {} (cc {}, {} SMs) · NVRTC {} · arch {} · sweep {}",
        props.name,
        props.cc(),
        props.sm_count,
        cache.nvrtc_version(),
        arch,
        sweep.path.display()
    );

    let ceilings = crate::roofline_cmd::load_ceilings_for(&props);
    if ceilings.is_none() {
        eprintln!("  (no measured ceilings for this GPU: run `kernlab roofline` once to get % of the roofline bound in the results)");
    }
    // PyTorch's figures for families whose peer runs outside kernlab (scripts/torch_peers.py).
    let torch_csv = crate::paths::reports_dir().join("torch_peers.csv");
    let torch = if fam.peer() == "torch" && torch_csv.is_file() {
        match super::torch_peers::TorchPeers::load(&torch_csv) {
            Ok(t) => {
                eprintln!(
                    "  PyTorch figures from {} (run scripts/torch_peers.py in the same session)",
                    torch_csv.display()
                );
                Some(t)
            }
            Err(e) => {
                eprintln!("  ignoring {}: {e:#}", torch_csv.display());
                None
            }
        }
    } else {
        if fam.peer() == "torch" {
            eprintln!(
                "  no {}: run scripts/torch_peers.py there to put PyTorch beside the results",
                torch_csv.display()
            );
        }
        None
    };
    let strategy_kind = opts.strategy.unwrap_or(sweep.strategy);
    let budget = opts.budget.unwrap_or(sweep.budget);
    let done_keys: std::collections::HashSet<String> = done.keys().cloned().collect();
    let planned = plan_candidates(fam, &sweep, &plan_list, &limits, strategy_kind, budget, opts.seed, &done_keys)?;
    let mut plan: Vec<(DType, Shape, Vec<Candidate>)> = Vec::new();
    let mut jobs = Vec::new();
    for p in planned {
        eprintln!(
            "  {} {}: {} candidates, {} dropped by constraints, {} to measure",
            p.dtype.name(),
            p.shape.label(),
            p.total,
            p.dropped.iter().map(|(_, n)| n).sum::<u128>(),
            p.chosen
        );
        if let Some(note) = &p.note {
            eprintln!("      {note}");
        }
        for (why, n) in &p.dropped {
            eprintln!("      dropped {n:>5}: {why}");
        }
        for c in &p.todo {
            jobs.push((c.clone(), p.dtype));
        }
        plan.push((p.dtype, p.shape, p.todo));
    }
    let total: usize = plan.iter().map(|p| p.2.len()).sum();
    if opts.resume && !previous.is_empty() {
        eprintln!(
            "  resuming {}: {} rows already measured, {} candidates left",
            opts.out_csv.display(),
            previous.len(),
            total
        );
    }
    let pool = CompilePool::start(&sweep, jobs, &arch, &cache);

    let pb = if opts.progress { ProgressBar::new(total as u64) } else { ProgressBar::hidden() };
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let mut failures = 0usize;
    let mut rows = Vec::new();
    let mut all_records: Vec<CandidateRecord> = previous.clone();
    let mut was_interrupted = false;
    let mut worker_opt = Some(worker);

    'shapes: for (dt, shape, todo) in &plan {
        let pk = peer_key(fam, *dt, shape);
        let mut peer_us = done.get(&pk).and_then(|r| r.median_us());
        if peer_us.is_none() {
            if let Some((t, p20, p80, backend)) =
                torch.as_ref().and_then(|tp| tp.lookup(fam.name(), &shape.label(), dt.name()))
            {
                let mut rec = CandidateRecord {
                    family: fam.name().into(),
                    variant: fam.peer().into(),
                    dtype: dt.name().into(),
                    shape: shape.label(),
                    status: Some(Status::Peer),
                    error: format!("PyTorch {backend}, from torch_peers.csv"),
                    timing: Some(Timing { median_us: *t, p20_us: *p20, p80_us: *p80, min_us: *p20, reps: 0 }),
                    gpu: props.name.clone(),
                    ..Default::default()
                };
                fill_metrics(&mut rec, fam, shape, *dt, None, ceilings.as_ref());
                writer.append(&rec)?;
                all_records.push(rec);
                peer_us = Some(*t);
            }
        }
        let need_setup = !todo.is_empty() || peer_us.is_none();
        if need_setup {
            if worker_opt.is_none() {
                worker_opt = Some(WorkerHandle::spawn(opts.gpu)?);
            }
            worker = worker_opt.take().unwrap();
            let setup = Request::Setup {
                family: fam.name().into(),
                shape: shape.label(),
                dtype: dt.name().into(),
                time_peer: peer_us.is_none(),
            };
            match worker.request(&setup, Duration::from_secs(600)) {
                Reply::Response(Response::Ready { peer }) => {
                    if let Some(t) = peer {
                        let mut rec = CandidateRecord {
                            family: fam.name().into(),
                            variant: fam.peer().into(),
                            dtype: dt.name().into(),
                            shape: shape.label(),
                            status: Some(Status::Peer),
                            timing: Some(t),
                            gpu: props.name.clone(),
                            ..Default::default()
                        };
                        fill_metrics(&mut rec, fam, shape, *dt, None, ceilings.as_ref());
                        writer.append(&rec)?;
                        all_records.push(rec);
                        peer_us = Some(t.median_us);
                    }
                    worker_opt = Some(worker);
                }
                Reply::Response(Response::Failed { message }) => {
                    pb.suspend(|| eprintln!("  {} {}: skipped: {message}", dt.name(), shape.label()));
                    worker_opt = Some(worker);
                    pb.inc(todo.len() as u64);
                    continue 'shapes;
                }
                Reply::Response(other) => bail!("worker answered {other:?} to a setup"),
                Reply::Died(e) => {
                    pb.suspend(|| {
                        eprintln!("  {} {}: skipped: the worker died setting it up: {e}", dt.name(), shape.label())
                    });
                    pb.inc(todo.len() as u64);
                    continue 'shapes;
                }
                Reply::TimedOut => {
                    pb.suspend(|| {
                        eprintln!("  {} {}: skipped: setup took longer than 600 s", dt.name(), shape.label())
                    });
                    pb.inc(todo.len() as u64);
                    continue 'shapes;
                }
            }
        }
        let mut best: Option<f64> = None;
        for (i, c) in todo.iter().enumerate() {
            if interrupted.load(Ordering::SeqCst) {
                was_interrupted = true;
                break 'shapes;
            }
            if let Some(limit) = opts.time_limit {
                if started.elapsed() > limit {
                    pb.suspend(|| eprintln!("  time limit reached; the rest can be measured later with --resume"));
                    break 'shapes;
                }
            }
            let mut rec = candidate_record(fam, &sweep, c, *dt, shape);
            rec.gpu = props.name.clone();
            let key: CompileKey = (c.variant.clone(), c.params.clone(), *dt);
            match pool.wait(&key) {
                Err(e) => {
                    rec.status = Some(Status::CompileError);
                    rec.error = short_error(&e);
                }
                Ok(compiled) => {
                    let entries = fam.entries(&c.variant)?;
                    if let Some(r) = compiled.resources.get(entries[0]) {
                        rec.registers = Some(r.registers);
                        rec.local_bytes = Some(r.stack_bytes);
                    }
                    if fam.name() == "gemm" && c.variant != "wgmma_tma" {
                        rec.smem_bytes = Some(dynamic_smem_hint(&c.params, dt.bytes() as i64));
                    }
                    rec.compile_ms = Some(if compiled.cached { 0.0 } else { compiled.compile_ms });
                    if worker_opt.is_none() {
                        let w = WorkerHandle::spawn(opts.gpu)?;
                        worker_opt = Some(w);
                        let w = worker_opt.as_mut().unwrap();
                        let setup = Request::Setup {
                            family: fam.name().into(),
                            shape: shape.label(),
                            dtype: dt.name().into(),
                            time_peer: false,
                        };
                        if !matches!(
                            w.request(&setup, Duration::from_secs(600)),
                            Reply::Response(Response::Ready { .. })
                        ) {
                            bail!("the restarted worker could not set up {} again", shape.label());
                        }
                    }
                    let w = worker_opt.as_mut().unwrap();
                    let tol = sweep.tolerance.get(dt.name()).copied().unwrap_or(dt.default_tolerance());
                    let req = Request::Candidate {
                        variant: c.variant.clone(),
                        params: c.params.clone(),
                        cubin: compiled.cubin_path.clone(),
                        entries: entries.iter().map(|s| s.to_string()).collect(),
                        tolerance: tol,
                        seed: opts.seed.wrapping_mul(1_000_003).wrapping_add(i as u64 + 17),
                        checks: opts.checks,
                        time: true,
                    };
                    match w.request(&req, opts.timeout) {
                        Reply::Response(Response::Outcome(o)) => {
                            rec.status = o.status;
                            rec.error = o.error;
                            rec.max_rel_err = o.max_rel_err;
                            rec.timing = o.timing;
                            if o.registers.is_some() {
                                rec.registers = o.registers;
                            }
                            if o.status == Some(Status::Fault) {
                                worker_opt = None; // it exits; a fresh one starts for the next candidate
                            }
                        }
                        Reply::Response(Response::Failed { message }) => {
                            rec.status = Some(Status::LaunchError);
                            rec.error = message;
                        }
                        Reply::Response(other) => bail!("worker answered {other:?} to a candidate"),
                        Reply::Died(e) => {
                            if interrupted.load(Ordering::SeqCst) {
                                was_interrupted = true;
                                break 'shapes;
                            }
                            rec.status = Some(Status::Fault);
                            rec.error = format!(
                                "the worker process died: {}",
                                if e.is_empty() { "no message".into() } else { e }
                            );
                            worker_opt = None;
                        }
                        Reply::TimedOut => {
                            rec.status = Some(Status::Timeout);
                            rec.error =
                                format!("no answer within {:.0} s; the worker was killed", opts.timeout.as_secs_f64());
                            worker_opt = None;
                        }
                    }
                }
            }
            fill_metrics(&mut rec, fam, shape, *dt, peer_us, ceilings.as_ref());
            if rec.status != Some(Status::Ok) {
                failures += 1;
            } else if let Some(t) = rec.median_us() {
                best = Some(best.map_or(t, |b: f64| b.min(t)));
            }
            writer.append(&rec)?;
            all_records.push(rec);
            pb.inc(1);
            let ratio = match (best, peer_us) {
                (Some(b), Some(p)) => format!(" ({:.2}x {})", p / b, fam.peer()),
                _ => String::new(),
            };
            pb.set_message(format!(
                "{} {} best {}{} · failed {failures}",
                dt.name(),
                shape.label(),
                best.map(|b| format!("{b:.1} us")).unwrap_or_else(|| "-".into()),
                ratio
            ));
        }
    }
    pb.finish_and_clear();
    drop(worker_opt);

    // Summarise every planned shape from everything in the file (resumed rows included).
    let mut winners: Vec<TunedEntry> = Vec::new();
    let hashes: BTreeMap<String, String> =
        sweep.variants.iter().map(|v| (v.name.clone(), cache::source_hash(&v.source))).collect();
    for (dt, shape, _) in &plan {
        let recs: Vec<&CandidateRecord> = all_records
            .iter()
            .filter(|r| r.family == fam.name() && r.dtype == dt.name() && r.shape == shape.label())
            .collect();
        let peer = recs.iter().find(|r| r.status == Some(Status::Peer)).and_then(|r| r.median_us());
        let cands: Vec<&CandidateRecord> = recs.iter().copied().filter(|r| r.status != Some(Status::Peer)).collect();
        let w = winner::pick(cands.iter().copied()).cloned();
        if let Some(w) = &w {
            if let Some(h) = hashes.get(&w.variant) {
                winners.push(TunedEntry {
                    kernel: fam.name().into(),
                    variant: w.variant.clone(),
                    source_hash: h.clone(),
                    gpu: props.name.clone(),
                    cc: props.cc(),
                    nvrtc: cache.nvrtc_version().into(),
                    dtype: dt.name().into(),
                    shape: shape.dims.iter().cloned().collect(),
                    params: w.params.clone(),
                    time_us: w.median_us().unwrap_or(f64::NAN),
                    peer_us: peer,
                    measured_at: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                });
            }
        }
        rows.push(ShapeResult {
            dtype: dt.name().into(),
            shape: shape.label(),
            winner: w,
            peer_us: peer,
            measured: cands.len(),
            failed: cands.iter().filter(|r| r.status != Some(Status::Ok)).count(),
        });
    }
    // Merged under the database's lock into what is on disk now, so a sweep finishing beside
    // this one (another GPU) keeps its entries.
    TunedDb::update(&opts.db_path, |db| winners.into_iter().for_each(|e| db.upsert(e)))?;
    Ok(SweepSummary { gpu: props, rows, csv: opts.out_csv.clone(), interrupted: was_interrupted })
}

/// What will be measured for one (dtype, shape).
#[derive(Debug, Clone)]
pub struct ShapePlan {
    pub dtype: DType,
    pub shape: Shape,
    /// Points of the space (all variants).
    pub total: u128,
    /// Dropped points by rule (among the examined ones when `note` says it was a sample).
    pub dropped: Vec<(String, u128)>,
    /// Chosen by the strategy (before skipping what is already measured).
    pub chosen: usize,
    /// Set when the space was sampled or the strategy found fewer than the budget.
    pub note: Option<String>,
    /// Still to measure.
    pub todo: Vec<Candidate>,
}

/// Enumerates, filters, applies the strategy and skips candidates whose key is in `done`
/// (the rows of the CSV being resumed). Pure: no GPU, no files.
#[allow(clippy::too_many_arguments)]
pub fn plan_candidates(
    fam: &dyn Family,
    sweep: &Sweep,
    shapes: &[(DType, Shape)],
    limits: &super::space::DeviceLimits,
    strategy_kind: Strategy,
    budget: usize,
    seed: u64,
    done: &std::collections::HashSet<String>,
) -> Result<Vec<ShapePlan>> {
    let mut out = Vec::new();
    for (dt, shape) in shapes {
        let env = sweep.env(&shape.dims, dt.bytes() as i64, limits)?;
        let sel = strategy::choose(sweep, &env, strategy_kind, budget, seed)
            .with_context(|| format!("{} {}", dt.name(), shape.label()))?;
        let n = sel.chosen.len();
        let todo = sel
            .chosen
            .into_iter()
            .filter(|c| !done.contains(&candidate_record(fam, sweep, c, *dt, shape).key()))
            .collect();
        out.push(ShapePlan {
            dtype: *dt,
            shape: shape.clone(),
            total: sel.total,
            dropped: sel.dropped,
            chosen: n,
            note: sel.note,
            todo,
        });
    }
    Ok(out)
}

/// A record carrying a candidate's identity (no measurements yet).
pub fn candidate_record(fam: &dyn Family, _sweep: &Sweep, c: &Candidate, dt: DType, shape: &Shape) -> CandidateRecord {
    CandidateRecord {
        family: fam.name().into(),
        variant: c.variant.clone(),
        dtype: dt.name().into(),
        shape: shape.label(),
        params: c.params.clone(),
        ..Default::default()
    }
}

/// Dynamic shared memory of tile-based variants (STAGES·(BM+BN)·BK·bytes), 0 otherwise.
fn dynamic_smem_hint(p: &BTreeMap<String, i64>, e: i64) -> u32 {
    match (p.get("STAGES"), p.get("BM"), p.get("BN"), p.get("BK")) {
        (Some(s), Some(m), Some(n), Some(k)) => (s * (m + n) * k * e) as u32,
        _ => 0,
    }
}

/// The final table, one line per shape.
pub fn format_table(s: &SweepSummary, peer: &str) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<5} {:<16} {:<15} {:<44} {:>16} {:>8} {:>8} {:>7} {:>10} {:>7}\n",
        "dtype",
        "shape",
        "variant",
        "config",
        "time us (±)",
        "TFLOP/s",
        "GB/s",
        "%bound",
        &format!("{peer} us"),
        "ratio"
    ));
    for r in &s.rows {
        match &r.winner {
            Some(w) => {
                let t: Timing = w.timing.unwrap();
                let cfg: Vec<String> = w.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&format!(
                    "{:<5} {:<16} {:<15} {:<44} {:>9.2} ±{:<6.2} {:>8.1} {:>8.0} {:>7} {:>10} {:>7}\n",
                    r.dtype,
                    r.shape,
                    w.variant,
                    cfg.join(","),
                    t.median_us,
                    t.spread_us(),
                    w.tflops.unwrap_or(0.0),
                    w.gbps.unwrap_or(0.0),
                    w.pct_of_bound.map(|p| format!("{p:.0}%")).unwrap_or_else(|| "-".into()),
                    r.peer_us.map(|p| format!("{p:.2}")).unwrap_or_else(|| "-".into()),
                    r.peer_us.map(|p| format!("{:.2}x", p / t.median_us)).unwrap_or_else(|| "-".into()),
                ));
            }
            None => out.push_str(&format!(
                "{:<5} {:<16} no verified candidate ({} measured, {} failed)\n",
                r.dtype, r.shape, r.measured, r.failed
            )),
        }
    }
    out
}

/// The family a sweep file names. Read before the full parse, which needs the family's
/// shape dimensions.
pub(crate) fn family_of_sweep(path: &std::path::Path) -> Result<&'static dyn Family> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: toml::Value = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let name = v.get("family").and_then(|f| f.as_str()).with_context(|| format!("{}: no `family`", path.display()))?;
    kernels::family(name)
}

/// `--dry-run`: enumerate and compile for an architecture, without a GPU.
pub fn dry_run(
    sweep_path: &std::path::Path,
    shapes: &[String],
    dtypes: &[String],
    arch: &str,
    compile_all: bool,
) -> Result<bool> {
    crate::gpu::nvrtc::validate_arch(arch)?;
    let fam = family_of_sweep(sweep_path)?;
    let sweep = Sweep::load(sweep_path, fam.shape_dims())?;
    // An unknown variant would otherwise pass a dry run without --compile.
    let text = std::fs::read_to_string(sweep_path).with_context(|| format!("reading {}", sweep_path.display()))?;
    super::preflight::check_variants(fam, &sweep, &text)?;
    let limits = super::space::DeviceLimits::for_arch(arch)?;
    let plan = plan_shapes(fam, &sweep, shapes, dtypes)?;
    let mut unique: BTreeMap<CompileKey, Candidate> = BTreeMap::new();
    for (dt, shape) in &plan {
        let e = sweep.enumerate(&shape.dims, dt.bytes() as i64, &limits)?;
        let dropped: usize = e.dropped.iter().map(|(_, n)| n).sum();
        println!("{} {}: {} candidates, {} dropped, {} kept", dt.name(), shape.label(), e.total, dropped, e.kept.len());
        for (why, n) in &e.dropped {
            println!("    dropped {n:>5}: {why}");
        }
        for c in e.kept {
            unique.insert((c.variant.clone(), c.params.clone(), *dt), c);
        }
    }
    println!("{} distinct kernels to compile for {arch}", unique.len());
    if !compile_all {
        return Ok(true);
    }
    let cache = ModuleCache::open(&cache::default_dir())?;
    use rayon::prelude::*;
    let results: Vec<(CompileKey, Result<crate::gpu::nvrtc::CompiledModule, String>)> = unique
        .par_iter()
        .map(|(k, c)| {
            let req = compile::request(&sweep, c, k.2, arch);
            (k.clone(), cache.get_or_compile(&req).map_err(|e| format!("{e:#}")))
        })
        .collect();
    let mut ok = true;
    for (k, r) in &results {
        let cfg: Vec<String> = k.1.iter().map(|(a, b)| format!("{a}={b}")).collect();
        match r {
            Ok(m) => {
                let entry = fam.entries(&k.0)?[0];
                let res = m.resources.get(entry).cloned().unwrap_or_default();
                let spill = if res.spill_store_bytes + res.spill_load_bytes > 0 { "  SPILLS" } else { "" };
                println!(
                    "  ok    {:<15} {:<5} {:<52} {:>3} regs {:>5} B stack{}",
                    k.0,
                    k.2.name(),
                    cfg.join(","),
                    res.registers,
                    res.stack_bytes,
                    spill
                );
            }
            Err(e) => {
                ok = false;
                println!("  FAIL  {:<15} {:<5} {}\n{}", k.0, k.2.name(), cfg.join(","), short_error(e));
            }
        }
    }
    let failed = results.iter().filter(|r| r.1.is_err()).count();
    println!("compiled {} kernels for {arch}: {} ok, {failed} failed", results.len(), results.len() - failed);
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tune::space::DeviceLimits;
    use std::collections::HashSet;

    #[test]
    fn resume_skips_exactly_what_the_csv_holds() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let fam = kernels::family("gemm").unwrap();
        let sweep = Sweep::load(&root.join("sweeps/gemm.toml"), fam.shape_dims()).unwrap();
        let shapes = plan_shapes(fam, &sweep, &["1x4096x4096".into(), "2048x4096x4096".into()], &[]).unwrap();
        let limits = DeviceLimits::for_arch("sm_90a").unwrap();
        let none = HashSet::new();
        let full = plan_candidates(fam, &sweep, &shapes, &limits, Strategy::Random, 10, 3, &none).unwrap();
        assert_eq!(full.len(), 2);
        assert!(full.iter().all(|p| p.todo.len() == 10 && p.chosen == 10));
        // Pretend the first 4 candidates of the first shape were measured.
        let done: HashSet<String> = full[0].todo[..4]
            .iter()
            .map(|c| candidate_record(fam, &sweep, c, full[0].dtype, &full[0].shape).key())
            .collect();
        let resumed = plan_candidates(fam, &sweep, &shapes, &limits, Strategy::Random, 10, 3, &done).unwrap();
        assert_eq!(resumed[0].todo, full[0].todo[4..].to_vec());
        assert_eq!(resumed[1].todo, full[1].todo);
        // Everything measured: nothing to do.
        let all: HashSet<String> = full
            .iter()
            .flat_map(|p| {
                p.todo.iter().map(|c| candidate_record(fam, &sweep, c, p.dtype, &p.shape).key()).collect::<Vec<_>>()
            })
            .collect();
        let none_left = plan_candidates(fam, &sweep, &shapes, &limits, Strategy::Random, 10, 3, &all).unwrap();
        assert!(none_left.iter().all(|p| p.todo.is_empty()));
    }

    #[test]
    fn plan_rejects_bad_shapes_before_any_gpu_work() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let fam = kernels::family("gemm").unwrap();
        let sweep = Sweep::load(&root.join("sweeps/gemm.toml"), fam.shape_dims()).unwrap();
        assert!(plan_shapes(fam, &sweep, &["1x4096x4095".into()], &[]).is_err());
        assert!(plan_shapes(fam, &sweep, &["1x4096".into()], &[]).is_err());
        assert!(plan_shapes(fam, &sweep, &[], &["int3".into()]).is_err());
        assert_eq!(plan_shapes(fam, &sweep, &[], &[]).unwrap().len(), 20);
    }
}
