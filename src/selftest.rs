//! `kernlab selftest`: on a GPU, every family's device reference against an f64 CPU
//! computation, every variant (at a sample of its sweep space) against that reference at
//! small and awkward sizes, the fused residual epilogue, and the fault-isolation path with a
//! deliberately broken kernel. Exits non-zero on any failure.

use crate::gpu::cache::{self, ModuleCache};
use crate::gpu::device::{Gpu, Kernel};
use crate::gpu::util::Util;
use crate::kernels::{self, DType, Family, Shape};
use crate::selftest_linear::{Check, CheckEnv};
use crate::tune::compile;
use crate::tune::record::Status;
use crate::tune::runner::{self, SweepOptions};
use crate::tune::space::{Candidate, Strategy, Sweep};
use crate::tune::strategy;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// Configurations per (variant, shape) checked beside each variant's first one.
const SAMPLE: usize = 4;

struct Tally {
    passed: usize,
    failed: usize,
    failures: Vec<String>,
}

impl Tally {
    fn record(&mut self, ok: bool, line: String) {
        println!("{} {line}", if ok { "  ok  " } else { "  FAIL" });
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
            self.failures.push(line);
        }
    }
}

/// The checks of the pieces the Llama path adds to the quantized families, by family: what
/// a failure to run one is called.
const QUANTIZED_CHECKS: [(&str, &str, Check); 6] = [
    ("gemm_int4", "int4 device quantizer", crate::selftest_int4::check_quantizer),
    ("gemm_int4", "int4 act-order gather", crate::selftest_int4::check_act_order),
    ("gemm_int4", "int4 model linear", crate::selftest_int4::check_model_linear),
    ("gemm_int4", "int4 gate+up SwiGLU epilogue", crate::selftest_int4::check_gate_up_swiglu),
    ("gemm_int8", "int8 device quantizer", crate::selftest_int8::check_quantizer),
    ("gemm_int8", "int8 model linear", crate::selftest_int8::check_model_linear),
];

pub fn run(ordinal: usize, only: &[String]) -> Result<ExitCode> {
    for f in only {
        crate::tune::family(f)?;
    }
    let gpu = Gpu::open(ordinal)?;
    let cache = ModuleCache::open(&cache::default_dir())?;
    let util = Util::new(&gpu, &cache)?;
    println!("selftest on {} (cc {}, {})", gpu.props.name, gpu.props.cc(), gpu.props.arch());
    let mut t = Tally { passed: 0, failed: 0, failures: vec![] };
    for fam in kernels::families() {
        if !only.is_empty() && !only.iter().any(|f| f == fam.name()) {
            continue;
        }
        if let Err(e) = check_family(&gpu, &util, &cache, fam, &mut t) {
            t.record(false, format!("{}: {e:#}", fam.name()));
        }
    }
    // The user kernels of examples/ and sweeps/, against their own references.
    for (path, name) in crate::tune::user::discover() {
        if !only.is_empty() && !only.iter().any(|f| *f == name) {
            continue;
        }
        let r = crate::tune::user::register(&path).and_then(|fam| check_family(&gpu, &util, &cache, fam, &mut t));
        if let Err(e) = r {
            t.record(false, format!("{name} ({}): {e:#}", path.display()));
        }
    }
    let all = only.is_empty();
    let env = CheckEnv { gpu: &gpu, util: &util, cache: &cache };
    let mut rec = |ok: bool, what: String| t.record(ok, what);
    for (family, what, check) in QUANTIZED_CHECKS {
        if all || only.iter().any(|f| f == family) {
            if let Err(e) = check(&env, &mut rec) {
                rec(false, format!("{what}: {e:#}"));
            }
        }
    }
    if all || only.iter().any(|f| f == "gemm") {
        if let Err(e) = check_residual(&gpu, &util, &cache, &mut t) {
            t.record(false, format!("gemm residual epilogue: {e:#}"));
        }
    }
    if all {
        if let Err(e) = check_fault_isolation(ordinal, &mut t) {
            t.record(false, format!("fault isolation: {e:#}"));
        }
    }
    println!("\nselftest: {} passed, {} failed", t.passed, t.failed);
    for f in &t.failures {
        println!("  failed: {f}");
    }
    Ok(if t.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Extra tunable overlays a family's selftest must cover (the int4 weight formats).
fn overlays(family: &str) -> Vec<(String, &'static [(&'static str, i64)])> {
    if family == "gemm_int4" {
        crate::kernels::gemm_int4::SELFTEST_FORMATS.iter().map(|(name, o)| (format!(" [{name}]"), *o)).collect()
    } else {
        vec![(String::new(), &[])]
    }
}

/// The candidates checked for one (dtype, shape): per variant (and weight format), the
/// first candidate plus an evenly spread sample of the rest.
fn samples(
    fam: &dyn Family,
    sweep: &Sweep,
    limits: &crate::tune::space::DeviceLimits,
    dt: DType,
    shape: &Shape,
) -> Result<Vec<(String, String, Vec<Candidate>)>> {
    let e = sweep.enumerate(&shape.dims, dt.bytes() as i64, limits)?;
    let mut by_variant: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
    for c in e.kept {
        by_variant.entry(c.variant.clone()).or_default().push(c);
    }
    let mut out = Vec::new();
    for (variant, cands) in by_variant {
        for (fmt, overlay) in overlays(fam.name()) {
            if !crate::kernels::gemm_int4::variant_takes_format(&variant, overlay) {
                continue;
            }
            let mut chosen = strategy::select(&cands, Strategy::Grid, SAMPLE, 0);
            if !chosen.contains(&cands[0]) {
                chosen.insert(0, cands[0].clone());
            }
            // Every value of every tunable at least once: a spread sample can miss a switch
            // that only a few candidates of this shape have (a kernel mode, say).
            let mut seen: std::collections::BTreeSet<(String, i64)> =
                chosen.iter().flat_map(|c| c.params.iter().map(|(k, v)| (k.clone(), *v))).collect();
            for c in &cands {
                if c.params.iter().any(|(k, v)| !seen.contains(&(k.clone(), *v))) {
                    seen.extend(c.params.iter().map(|(k, v)| (k.clone(), *v)));
                    chosen.push(c.clone());
                }
            }
            // Weight formats are tunables of the int4 kernels: lay each over the sample.
            for c in chosen.iter_mut() {
                for (k, v) in overlay {
                    c.params.insert(k.to_string(), *v);
                }
            }
            out.push((variant.clone(), fmt, chosen));
        }
    }
    Ok(out)
}

/// Compiles everything the family's checks will load, on all cores, before any GPU work
/// (the cache then serves each module instantly). Failures are reported by the checks.
fn precompile(
    fam: &dyn Family,
    sweep: &Sweep,
    limits: &crate::tune::space::DeviceLimits,
    dtypes: &[DType],
    cache: &ModuleCache,
    arch: &str,
) {
    use rayon::prelude::*;
    let mut reqs = std::collections::BTreeMap::new();
    for dt in dtypes {
        for shape_text in fam.selftest_shapes() {
            let Ok(shape) = Shape::parse(shape_text, fam.shape_dims()) else { continue };
            if fam.validate(&shape, *dt).is_err() {
                continue;
            }
            for (_, _, chosen) in samples(fam, sweep, limits, *dt, &shape).unwrap_or_default() {
                for c in chosen {
                    let r = compile::request(sweep, &c, *dt, arch);
                    reqs.insert(crate::gpu::cache::cache_key(&r, cache.nvrtc_version()), r);
                }
            }
        }
    }
    reqs.into_values().collect::<Vec<_>>().par_iter().for_each(|r| {
        let _ = cache.get_or_compile(r);
    });
}

fn load_variant(
    gpu: &Gpu,
    fam: &dyn Family,
    cache: &ModuleCache,
    sweep: &Sweep,
    c: &Candidate,
    dt: DType,
) -> Result<BTreeMap<String, Kernel>> {
    let req = compile::request(sweep, c, dt, &gpu.props.arch());
    let m = cache.get_or_compile(&req)?;
    let mut ks = BTreeMap::new();
    for e in fam.entries(&c.variant)? {
        ks.insert(e.to_string(), gpu.load(&m.cubin, e)?);
    }
    Ok(ks)
}

fn cfg(c: &Candidate) -> String {
    c.params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

fn check_family(gpu: &Gpu, util: &Util, cache: &ModuleCache, fam: &dyn Family, t: &mut Tally) -> Result<()> {
    // A kernel described in a sweep file (examples/) is checked from that file, in its own dtypes.
    let user = crate::tune::user::lookup(fam.name())?;
    let path = user.map(|u| u.desc.path.clone()).unwrap_or_else(|| crate::paths::sweep_file(fam.name()));
    let sweep = Sweep::load(&path, fam.shape_dims()).with_context(|| format!("loading {}", path.display()))?;
    let limits = gpu.props.limits();
    let mut dtypes: Vec<DType> = sweep.dtypes.iter().filter_map(|d| DType::parse(d).ok()).collect();
    for extra in [DType::BF16, DType::F16] {
        if user.is_none() && !dtypes.contains(&extra) {
            dtypes.push(extra);
        }
    }
    precompile(fam, &sweep, &limits, &dtypes, cache, &gpu.props.arch());
    for dt in dtypes {
        for shape_text in fam.selftest_shapes() {
            let shape = Shape::parse(shape_text, fam.shape_dims())?;
            if fam.validate(&shape, dt).is_err() {
                continue;
            }
            let tol = sweep.tolerance.get(dt.name()).copied().unwrap_or(dt.default_tolerance());
            let mut p = fam.problem(gpu, &shape, dt)?;
            p.randomize(gpu, util, 11)?;
            if let Some(err) = p.reference_vs_cpu(gpu)? {
                t.record(
                    err <= tol,
                    format!(
                        "{} reference {} {}: vs f64 CPU rel err {err:.2e} (tol {tol:.0e})",
                        fam.name(),
                        dt.name(),
                        shape.label()
                    ),
                );
            }
            for (variant, fmt, chosen) in samples(fam, &sweep, &limits, dt, &shape)? {
                let mut worst = 0.0f64;
                let mut bad: Option<String> = None;
                for (i, c) in chosen.iter().enumerate() {
                    let r = (|| -> Result<f64> {
                        let ks = load_variant(gpu, fam, cache, &sweep, c, dt)?;
                        p.randomize(gpu, util, 100 + i as u64)?;
                        p.poison(gpu, util)?;
                        p.run(gpu, &variant, &ks, &c.params)?;
                        gpu.synchronize()?;
                        Ok(p.check(gpu, util)?.rel_err())
                    })();
                    match r {
                        Ok(err) if err <= tol => worst = worst.max(err),
                        Ok(err) => {
                            bad = Some(format!("{} rel err {err:.2e} > {tol:.0e}", cfg(c)));
                            break;
                        }
                        Err(e) => {
                            bad = Some(format!("{}: {e:#}", cfg(c)));
                            break;
                        }
                    }
                }
                let head = format!("{} {variant}{fmt} {} {}", fam.name(), dt.name(), shape.label());
                match bad {
                    None => t.record(true, format!("{head}: {} configs, max rel err {worst:.2e}", chosen.len())),
                    Some(why) => t.record(false, format!("{head}: {why}")),
                }
            }
        }
    }
    Ok(())
}

/// The fused residual epilogue (Y = X·Wᵀ + R) of every GEMM variant, on an awkward shape.
fn check_residual(gpu: &Gpu, util: &Util, cache: &ModuleCache, t: &mut Tally) -> Result<()> {
    use crate::kernels::gemm::{Gemm, GemmProblem};
    use crate::kernels::Problem;
    let fam = &Gemm;
    let sweep = Sweep::load(&crate::paths::sweep_file("gemm"), fam.shape_dims())?;
    for shape_text in ["5x70x264", "33x200x136"] {
        let shape = Shape::parse(shape_text, fam.shape_dims())?;
        let mut p = GemmProblem::new(gpu, &shape, DType::BF16, true)?;
        p.randomize(gpu, util, 5)?;
        let ref_err = p.reference_vs_cpu(gpu)?.unwrap_or(f64::INFINITY);
        t.record(ref_err <= 1.5e-2, format!("gemm residual reference {shape_text}: vs CPU {ref_err:.2e}"));
        let e = sweep.enumerate(&shape.dims, 2, &gpu.props.limits())?;
        let mut seen = std::collections::BTreeSet::new();
        for c in e.kept {
            if !seen.insert(c.variant.clone()) {
                continue;
            }
            let ks = load_variant(gpu, fam, cache, &sweep, &c, DType::BF16)?;
            p.poison(gpu, util)?;
            p.run(gpu, &c.variant, &ks, &c.params)?;
            gpu.synchronize()?;
            let err = p.check(gpu, util)?.rel_err();
            t.record(
                err <= 1.5e-2,
                format!("gemm {} +residual {shape_text} {}: rel err {err:.2e}", c.variant, cfg(&c)),
            );
        }
    }
    Ok(())
}

/// A sweep over tests/fixtures/faulty_gemm.toml must finish and record each defect.
fn check_fault_isolation(ordinal: usize, t: &mut Tally) -> Result<()> {
    let root = crate::paths::project_root();
    let dir = std::env::temp_dir().join(format!("kernlab-selftest-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let opts = SweepOptions {
        sweep_path: root.join("tests/fixtures/faulty_gemm.toml"),
        shapes: vec![],
        dtypes: vec![],
        variants: vec![],
        strategy: None,
        budget: None,
        time_budget: None,
        stop_within_pct: None,
        time_limit: None,
        seed: 0,
        out_csv: dir.join("faulty.csv"),
        resume: false,
        db_path: dir.join("tuned.json"),
        timeout: Duration::from_secs(15),
        gpu: ordinal,
        checks: 1,
        timing: Duration::from_millis(20),
        progress: false,
    };
    let summary = runner::run_sweep(&opts, Arc::new(AtomicBool::new(false)))?;
    let recs = crate::tune::record::read_records(&opts.out_csv)?;
    let status_of = |mode: i64| recs.iter().find(|r| r.params.get("MODE") == Some(&mode)).and_then(|r| r.status);
    let expect = [
        (0, vec![Status::Ok]),
        (1, vec![Status::Wrong]),
        (2, vec![Status::Wrong]),
        (3, vec![Status::Fault]),
        (4, vec![Status::Fault]),
        (5, vec![Status::Timeout]),
        (6, vec![Status::Ok]),
    ];
    for (mode, want) in expect {
        let got = status_of(mode);
        t.record(
            got.map(|g| want.contains(&g)).unwrap_or(false),
            format!("fault isolation MODE={mode}: recorded {:?}, expected {:?}", got, want),
        );
    }
    let winner = summary.rows.first().and_then(|r| r.winner.as_ref()).map(|w| w.params.get("MODE").copied());
    t.record(
        matches!(winner, Some(Some(0)) | Some(Some(6))),
        format!("fault isolation: the winner is a correct candidate ({winner:?})"),
    );
    // Resume measures nothing again.
    let before = recs.len();
    let again = SweepOptions { resume: true, ..opts.clone() };
    runner::run_sweep(&again, Arc::new(AtomicBool::new(false)))?;
    let after = crate::tune::record::read_records(&opts.out_csv)?.len();
    t.record(after == before, format!("--resume re-measured nothing ({before} rows before, {after} after)"));
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
