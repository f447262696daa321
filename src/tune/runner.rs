//! The tuning loop: plan each shape (strategy, space, limits) → compile (thread pool) →
//! verify → time, with the peer measured on every shape in the same run, rows written as
//! they come, the winner re-measured against its close contenders, and the winners stored
//! in the tuned database.
//!
//! [`run_sweep`] opens the results and the GPU and plans; [`super::sweep_run`] runs each
//! shape's search; [`super::summary`] prints the table.

use super::compile::{self, CompileKey, CompilePool};
use super::db::{TunedDb, TunedEntry};
use super::gpus::{start_workers, Scale};
use super::pool::WorkerHandle;
use super::record::{CandidateRecord, RecordWriter, Status};
use super::session::{short_error, GpuSession, SessionConfig};
use super::space::{Candidate, ShapeEnv, Sweep};
use super::sweep_plan::{plan_work, warm_priors, How, PriorSource, SearchRequest, ShapeWork};
use super::sweep_run::{Outcome, Run, RunSetup};
use super::torch_peers::TorchPeers;
use super::winner;
use crate::gpu::cache::{self, ModuleCache};
use crate::kernels::Family;
use anyhow::{Context, Result};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub use super::summary::{format_table, Cost, ShapeResult, SweepSummary};
pub use super::sweep_plan::{candidate_record, plan_candidates, ShapePlan};
pub(crate) use super::sweep_setup::{family_of_sweep, is_candidate_of};
pub use super::sweep_setup::{fill_metrics, plan_shapes, SweepOptions};

pub fn run_sweep(opts: &SweepOptions, interrupted: Arc<AtomicBool>) -> Result<SweepSummary> {
    run_sweep_scaled(opts, &Scale::single(), interrupted)
}

/// [`run_sweep`] on several GPUs of this host and/or on one shard of the space.
pub fn run_sweep_scaled(opts: &SweepOptions, scale: &Scale, interrupted: Arc<AtomicBool>) -> Result<SweepSummary> {
    let fam = family_of_sweep(&opts.sweep_path)?;
    let mut sweep = Sweep::load(&opts.sweep_path, fam.shape_dims())?;
    sweep.shard = scale.shard;
    let shapes = plan_shapes(fam, &sweep, &opts.shapes, &opts.dtypes)?;
    // Never lose what was measured: an existing file is only ever appended to (with
    // --resume), by one sweep at a time: the writer holds the file's lock until we return,
    // and its trusted rows (whole, check passed) are what was measured before. Its columns
    // are the whole file's, so a partial sweep's CSV resumes as a whole one and back.
    let mut writer = RecordWriter::open(&opts.out_csv, &dim_names(fam), &sweep.param_names(), opts.resume)?;
    // Every variant's current hash, taken before --variant narrows the sweep: a partial
    // sweep weighs its winner against the database entry of any variant still fresh.
    let fresh_hashes = (!opts.variants.is_empty()).then(|| source_hashes(&sweep));
    sweep.keep_variants(&opts.variants)?;
    let previous = writer.take_previous();
    if let Some(shard) = sweep.shard {
        let candidates = previous.iter().filter(|r| r.status != Some(Status::Peer));
        super::shard::check_resumed_rows(shard, &opts.out_csv, candidates.map(|r| (r.variant.as_str(), &r.params)))?;
    }

    let workers = start_workers(scale.gpus.as_ref(), opts.gpu)?;
    let props = workers[0].props.clone();
    let arch = props.arch();
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
    print_scale(&workers, scale);
    let ceilings = super::bound::load_ceilings_for(&props);
    if ceilings.is_none() {
        eprintln!("  (no measured ceilings for this GPU: run `kernlab roofline` once to get % of the roofline bound in the results)");
        if opts.stop_within_pct.is_some() {
            eprintln!("  --stop-within has no effect without them: the bound is unknown");
        }
    }
    let torch = torch_peers(fam);

    let limits = props.limits();
    let envs: Vec<ShapeEnv> =
        shapes.iter().map(|(dt, s)| sweep.env(&s.dims, dt.bytes() as i64, &limits)).collect::<Result<_>>()?;
    let done: HashSet<String> = previous.iter().map(|r| r.key()).collect();
    let req = SearchRequest {
        strategy: opts.strategy.or(sweep.strategy),
        budget: opts.budget.unwrap_or(sweep.budget),
        time_budget: opts.time_budget,
        stop_within_pct: opts.stop_within_pct,
        seed: opts.seed,
    };
    let mut work = plan_work(fam, &sweep, &shapes, &envs, &req, &done)?;
    add_warm_priors(&mut work, &opts.db_path, fam, &sweep, &props, &cache)?;
    let mut jobs = Vec::new();
    for w in &work {
        print_plan(w);
        if let How::Planned(p) = &w.how {
            jobs.extend(p.todo.iter().map(|c| (c.clone(), p.dtype)));
        }
    }
    let resumed = |w: &ShapeWork| previous.iter().filter(|r| is_candidate_of(r, fam, w.dtype, &w.shape)).count();
    let total: usize = work.iter().map(|w| w.expected(resumed(w))).sum();
    if opts.resume && !previous.is_empty() {
        eprintln!(
            "  resuming {}: {} rows already measured, about {} candidates left",
            opts.out_csv.display(),
            previous.len(),
            total
        );
    }
    let pool = CompilePool::start(&sweep, jobs, &arch, &cache);
    let cfg = SessionConfig {
        fam,
        sweep: &sweep,
        arch: arch.clone(),
        cache: &cache,
        gpu: opts.gpu,
        gpu_name: props.name.clone(),
        timeout: opts.timeout,
        checks: opts.checks,
        timing_ms: opts.timing.as_secs_f64() * 1e3,
        seed: opts.seed,
        interrupted: interrupted.clone(),
        driver_api: props.driver_version.clone(),
    };
    let first_gpu = (u32::try_from(workers[0].ordinal).ok(), workers[0].uuid.clone());
    let mut session = GpuSession::new(cfg, pool, workers);
    let beside = torch.clone();
    let setup = RunSetup { fam, opts, gpu_name: props.name.clone(), first_gpu, ceilings, torch };
    let mut run = Run::new(setup, writer, previous, interrupted, total);
    let mut outcomes: Vec<Outcome> = Vec::new();
    for w in &work {
        let (outcome, halted) = run.shape(w, &mut session)?;
        outcomes.push(outcome);
        if halted {
            break;
        }
    }
    let (records, was_interrupted) = run.finish();
    drop(session);

    let merge = DbMerge { path: &opts.db_path, keep_faster_of: fresh_hashes.as_ref(), beside: beside.as_ref() };
    let rows = summarize(fam, &sweep, &props, &cache, &work, &outcomes, &records, &merge)?;
    Ok(SweepSummary { gpu: props, rows, csv: opts.out_csv.clone(), interrupted: was_interrupted })
}

/// Says which GPUs measure and which shard is swept, when it is more than one GPU or a shard.
fn print_scale(workers: &[WorkerHandle], scale: &Scale) {
    if workers.len() > 1 {
        let list: Vec<String> = workers.iter().map(|w| format!("{} ({})", w.ordinal, w.uuid)).collect();
        eprintln!(
            "  measuring on {} GPUs: {}; each takes the next candidate when free",
            workers.len(),
            list.join(", ")
        );
    }
    if let Some(s) = scale.shard {
        eprintln!(
            "  shard {s}: only the candidates whose key hashes to {} of {} (see docs/multi-gpu.md)",
            s.index, s.count
        );
    }
}

/// The family's names for a shape's dimensions (the CSV's `dim_*` columns).
fn dim_names(fam: &dyn Family) -> Vec<String> {
    fam.shape_dims().iter().map(|d| d.to_string()).collect()
}

/// PyTorch's figures for families whose peer runs outside kernlab (scripts/torch_peers.py).
fn torch_peers(fam: &dyn Family) -> Option<TorchPeers> {
    let torch_csv = crate::paths::reports_dir().join("torch_peers.csv");
    let wanted = fam.peer() == "torch" || super::torch_peers::op_beside_family(fam.name()).is_some();
    if !wanted {
        return None;
    }
    if !torch_csv.is_file() {
        eprintln!("  no {}: run scripts/torch_peers.py there to put PyTorch beside the results", torch_csv.display());
        return None;
    }
    match TorchPeers::load(&torch_csv) {
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
}

fn print_plan(w: &ShapeWork) {
    let label = format!("{} {}", w.dtype.name(), w.shape.label());
    let budget = match w.limits.max_evals {
        Some(n) => format!("up to {n} evaluations"),
        None => "until every candidate is evaluated".into(),
    };
    let dropped: &[(String, u128)] = match &w.how {
        How::Planned(p) => {
            eprintln!(
                "  {label}: {} candidates, {} dropped by constraints, {} to measure ({})",
                p.total,
                p.dropped.iter().map(|(_, n)| n).sum::<u128>(),
                p.chosen,
                w.strategy.name()
            );
            if let Some(note) = &p.note {
                eprintln!("      {note}");
            }
            &p.dropped
        }
        How::Adaptive(space) => {
            let total = space.sweep_space().total();
            match space.valid() {
                Some(v) => eprintln!("  {label}: {total} candidates, {v} valid, {}: {budget}", w.strategy.name()),
                None => eprintln!(
                    "  {label}: {total} candidates (too many to examine one by one), {}: {budget}",
                    w.strategy.name()
                ),
            }
            space.dropped()
        }
    };
    for (why, n) in dropped {
        eprintln!("      dropped {n:>5}: {why}");
    }
}

/// Fills in the warm-start priors of the shapes whose strategy uses them, from the tuned
/// database's fresh winners of this kernel on this GPU (see [`warm_priors`]).
fn add_warm_priors(
    work: &mut [ShapeWork],
    db_path: &std::path::Path,
    fam: &dyn Family,
    sweep: &Sweep,
    props: &crate::gpu::device::DeviceProps,
    cache: &ModuleCache,
) -> Result<()> {
    if !work.iter().any(|w| w.strategy.uses_priors()) {
        return Ok(());
    }
    let db = TunedDb::load(db_path)?;
    let (hashes, cc) = (source_hashes(sweep), props.cc());
    let src = PriorSource {
        kernel: fam.name(),
        gpu: &props.name,
        cc: &cc,
        nvrtc: cache.nvrtc_version(),
        source_hashes: &hashes,
    };
    for w in work.iter_mut() {
        w.priors = warm_priors(&db, &src, w);
        if w.strategy.uses_priors() {
            let n = w.priors.len();
            eprintln!(
                "  {} {}: warm start: {n} winners of other shapes in the tuned database, those valid here first",
                w.dtype.name(),
                w.shape.label()
            );
        }
    }
    Ok(())
}

/// The variants' template hashes, the freshness key of tuned database entries.
fn source_hashes(sweep: &Sweep) -> BTreeMap<String, String> {
    sweep.variants.iter().map(|v| (v.name.clone(), cache::source_hash(&v.source))).collect()
}

/// How a sweep's winners enter the tuned database.
struct DbMerge<'a> {
    path: &'a std::path::Path,
    /// A partial sweep (--variant): the current hashes of every variant of the file. An
    /// entry fresh under them stays unless the new winner is faster; None replaces always
    /// (a whole sweep measured every variant, so its winner is the slot's).
    keep_faster_of: Option<&'a BTreeMap<String, String>>,
    /// PyTorch's figures, for the one shown beside the family's peer.
    beside: Option<&'a TorchPeers>,
}

/// The final rows, one per planned shape, from everything in the file (resumed rows
/// included), and the winners merged into the tuned database.
#[allow(clippy::too_many_arguments)]
fn summarize(
    fam: &dyn Family,
    sweep: &Sweep,
    props: &crate::gpu::device::DeviceProps,
    cache: &ModuleCache,
    work: &[ShapeWork],
    outcomes: &[Outcome],
    records: &[CandidateRecord],
    merge: &DbMerge,
) -> Result<Vec<ShapeResult>> {
    let mut winners: Vec<TunedEntry> = Vec::new();
    let mut rows = Vec::new();
    let hashes = source_hashes(sweep);
    for (i, w) in work.iter().enumerate() {
        let (dt, shape) = (w.dtype, &w.shape);
        let label = shape.label();
        let recs = records.iter().filter(|r| r.family == fam.name() && r.dtype == dt.name() && r.shape == label);
        let peer = recs.clone().find(|r| r.status == Some(Status::Peer)).and_then(|r| r.median_us());
        let cands: Vec<&CandidateRecord> = recs.filter(|r| r.status != Some(Status::Peer)).collect();
        let outcome = outcomes.get(i);
        let settled = outcome.and_then(|o| o.settled.as_ref());
        let winner = match settled {
            Some(s) => Some(s.winner.clone()),
            None => winner::pick(cands.iter().copied()).cloned(),
        };
        if let (Some(w), Some(h)) = (&winner, winner.as_ref().and_then(|w| hashes.get(&w.variant))) {
            winners.push(TunedEntry {
                kernel: fam.name().into(),
                variant: w.variant.clone(),
                source_hash: h.clone(),
                gpu: props.name.clone(),
                cc: props.cc(),
                nvrtc: cache.nvrtc_version().into(),
                dtype: dt.name().into(),
                format: fam.weight_format(&w.params, dt),
                shape: shape.dims.iter().cloned().collect(),
                params: w.params.clone(),
                time_us: w.median_us().unwrap_or(f64::NAN),
                peer_us: peer,
                measured_at: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            });
        }
        let (points, valid) = match &w.how {
            How::Planned(p) => {
                let dropped: u128 = p.dropped.iter().map(|(_, n)| n).sum();
                (p.total, p.note.is_none().then(|| p.total.saturating_sub(dropped)))
            }
            How::Adaptive(space) => (space.sweep_space().total(), space.valid()),
        };
        let beside = merge.beside.and_then(|t| {
            let (_, name) = super::torch_peers::op_beside_family(fam.name())?;
            t.beside(fam.name(), &label, dt.name()).map(|b| (name.to_string(), b.0))
        });
        rows.push(ShapeResult {
            dtype: dt.name().into(),
            beside,
            shape: label,
            winner,
            peer_us: peer,
            measured: cands.len(),
            failed: cands.iter().filter(|r| r.status != Some(Status::Ok)).count(),
            strategy: w.strategy.name().into(),
            points,
            valid,
            stop: outcome.and_then(|o| o.stop.clone()),
            tied: settled.map(|s| s.tied.clone()).unwrap_or_default(),
            remeasured: settled.map_or(0, |s| s.remeasured),
            confirmed: settled.is_none_or(|s| s.confirmed),
            cost: Cost::of(&cands),
        });
    }
    // Merged under the database's lock into what is on disk now, so a sweep finishing beside
    // this one (another GPU) keeps its entries.
    TunedDb::update(merge.path, |db| {
        winners.into_iter().for_each(|e| match merge.keep_faster_of {
            Some(fresh) => db.upsert_if_faster(e, fresh),
            None => db.upsert(e),
        })
    })?;
    Ok(rows)
}

/// `--dry-run`: enumerate and compile for an architecture, without a GPU.
pub fn dry_run(
    sweep_path: &std::path::Path,
    shapes: &[String],
    dtypes: &[String],
    variants: &[String],
    arch: &str,
    compile_all: bool,
    shard: Option<super::shard::Shard>,
) -> Result<bool> {
    crate::gpu::nvrtc::validate_arch(arch)?;
    let fam = family_of_sweep(sweep_path)?;
    let mut sweep = Sweep::load(sweep_path, fam.shape_dims())?;
    sweep.shard = shard;
    sweep.keep_variants(variants)?;
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
    use crate::tune::space::{DeviceLimits, Strategy};
    use std::collections::HashSet;

    #[test]
    fn resume_skips_exactly_what_the_csv_holds() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let fam = crate::tune::family("gemm").unwrap();
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
        let fam = crate::tune::family("gemm").unwrap();
        let sweep = Sweep::load(&root.join("sweeps/gemm.toml"), fam.shape_dims()).unwrap();
        assert!(plan_shapes(fam, &sweep, &["1x4096x4095".into()], &[]).is_err());
        assert!(plan_shapes(fam, &sweep, &["1x4096".into()], &[]).is_err());
        assert!(plan_shapes(fam, &sweep, &[], &["int3".into()]).is_err());
        assert_eq!(plan_shapes(fam, &sweep, &[], &[]).unwrap().len(), 20);
    }
}
