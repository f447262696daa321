//! `kernlab sweep`: its arguments, the checks before anything runs, the dry run, and the
//! summary as a table or (`--json`) as one JSON document on stdout.

use crate::tune::record::CandidateRecord;
use crate::tune::runner::{self, SweepOptions};
use crate::tune::search::SearchStrategy;
use crate::tune::summary::{ShapeResult, SweepSummary};
use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Flags that steer a measured search; a dry run lists and compiles the whole space, so
/// they would be ignored there and are refused instead.
const SEARCH_FLAGS: [&str; 11] = [
    "strategy",
    "budget",
    "time_budget",
    "stop_within",
    "time_limit",
    "resume",
    "out",
    "db",
    "timeout",
    "checks",
    "time_per_candidate",
];

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  kernlab sweep gemm
  kernlab sweep gemm --shape 1x4096x4096,16x4096x14336 --strategy tpe --budget 200
  kernlab sweep softmax --dtype bf16,fp16 --time-budget 5m --json > softmax.json
  kernlab sweep gemm --resume
  kernlab sweep gemm --gpus all                         (every GPU of this host at once)
  kernlab sweep gemm --shard 2/8 --out gemm-2.csv       (piece 2 of 8, for a job array)
  kernlab sweep gemm --dry-run --arch sm_86            (no GPU: enumerate and compile)
  kernlab sweep examples/bias_gelu/bias_gelu.toml --dry-run --no-compile")]
pub struct SweepArgs {
    /// Kernel family (gemm, softmax, ... see `kernlab list`), a user kernel's name, or its
    /// sweep file; the space is sweeps/<family>.toml.
    #[arg(value_name = "FAMILY")]
    pub family: String,
    /// Use this sweep file instead of sweeps/<family>.toml, e.g. --file my-gemm.toml.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Problem shape in the family's notation (GEMM: MxNxK), e.g. --shape 16x4096x14336;
    /// a comma list or repeated. Default: the sweep file's shapes.
    #[arg(long = "shape", value_name = "SHAPE", value_delimiter = ',')]
    pub shapes: Vec<String>,
    /// Element type, bf16 or fp16, e.g. --dtype fp16; a comma list or repeated. Default:
    /// the sweep file's.
    #[arg(long = "dtype", value_name = "DTYPE", value_delimiter = ',')]
    pub dtypes: Vec<String>,
    /// Only these variants of the sweep file, e.g. --variant int4_gemv_bulk; a comma list or
    /// repeated. The tuned database then keeps an entry unless this sweep's winner is faster.
    #[arg(long = "variant", value_name = "NAME", value_delimiter = ',')]
    pub variants: Vec<String>,
    /// grid (every candidate in order), random (a seeded sample), tpe (model-based: a
    /// tree-structured Parzen estimator), warm (tpe that first measures the tuned
    /// database's winners at other shapes; also "tpe+warm") or evolve (local search; also
    /// "local"), e.g. --strategy warm. Default: the sweep file's; if it names none, per shape: grid when the
    /// whole space will be measured anyway (at most 300 valid candidates, no --budget below
    /// that, no --time-budget, no --stop-within), warm otherwise (fewest evaluations in the
    /// replay of the recorded full grids, docs/results/search-replay.md; tpe when the
    /// database has no winners of other shapes).
    #[arg(long, value_name = "STRATEGY", value_parser = SearchStrategy::parse)]
    pub strategy: Option<SearchStrategy>,
    /// Evaluations per shape, failures included (0 = all), e.g. --budget 200. Default: the
    /// sweep file's.
    #[arg(long, value_name = "N")]
    pub budget: Option<usize>,
    /// Search each shape for at most this long, then go on to the next, e.g. --time-budget 90s.
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    pub time_budget: Option<Duration>,
    /// Stop a shape's search once its best candidate is within PCT % of its roofline
    /// bound, e.g. --stop-within 10 (at 90 % of the bound or better). Needs `kernlab
    /// roofline` run once.
    #[arg(long, value_name = "PCT", value_parser = within_pct)]
    pub stop_within: Option<f64>,
    /// Stop starting new candidates after this long (the whole sweep), e.g. --time-limit
    /// 10m; continue later with --resume.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub time_limit: Option<Duration>,
    /// Seed for random sampling and inputs, e.g. --seed 7.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// Results CSV, e.g. --out gemm.csv. Default: a new reports/<family>-<time>.csv (with
    /// --resume: the newest one).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Continue an interrupted sweep: candidates already in the CSV are not measured again.
    #[arg(long)]
    pub resume: bool,
    /// Tuned-config database to update, e.g. --db tuned.json. Default: reports/tuned.json.
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// Watchdog: a candidate that takes longer (verify + time) is killed and recorded,
    /// e.g. --timeout 30s.
    #[arg(long, value_name = "DURATION", value_parser = positive_duration, default_value = "60s")]
    pub timeout: Duration,
    /// Verification rounds per candidate, each on fresh random inputs, e.g. --checks 3.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub checks: u32,
    /// Time spent timing one candidate, e.g. --time-per-candidate 25ms for a very large
    /// space: it runs this long / its run time repetitions, at least 10 and at most 300.
    #[arg(long, value_parser = positive_duration, default_value = "100ms", value_name = "DURATION")]
    pub time_per_candidate: Duration,
    /// GPU ordinal to measure on (see `kernlab devices`), e.g. --gpu 1.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub gpu: usize,
    /// Measure on several GPUs of this host at once, one worker process each, every GPU
    /// taking the next candidate when it is free: `all` or ordinals, e.g. --gpus 0,1. Rows
    /// go to one CSV with each GPU's ordinal and UUID. The GPUs must be one model.
    #[arg(long, value_name = "all|N,N,...", value_parser = crate::tune::gpus::parse_arg, conflicts_with = "gpu")]
    pub gpus: Option<crate::tune::gpus::GpuChoice>,
    /// Sweep only piece I of N of the space (0 <= I < N), the same piece on every host, for
    /// a cluster's job array; bring the pieces together with `kernlab merge`. E.g. --shard
    /// 0/4. See docs/multi-gpu.md.
    #[arg(long, value_name = "I/N", value_parser = crate::tune::shard::parse_arg)]
    pub shard: Option<crate::tune::shard::Shard>,
    /// List the space after the constraints and compile it for --arch, without a GPU. The
    /// whole space is listed, so the search flags (--strategy, --budget, ...) are refused.
    #[arg(long, conflicts_with_all = SEARCH_FLAGS, conflicts_with = "json")]
    pub dry_run: bool,
    /// Architecture for --dry-run, e.g. --arch sm_86 (sm_80, sm_86, sm_89, sm_90a, ...).
    #[arg(long, value_name = "ARCH", default_value = "sm_90a", requires = "dry_run")]
    pub arch: String,
    /// With --dry-run: only enumerate, do not compile.
    #[arg(long, requires = "dry_run")]
    pub no_compile: bool,
    /// Print the summary as one JSON document on stdout (progress stays on stderr).
    #[arg(long)]
    pub json: bool,
}

/// A duration above zero: a zero watchdog would kill every candidate before it starts.
fn positive_duration(s: &str) -> std::result::Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be more than zero, e.g. 60s".into());
    }
    Ok(d)
}

/// A share of the roofline bound in percent: more than 0, less than 100.
fn within_pct(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s.trim_end_matches('%').parse().map_err(|_| format!("{s:?} is not a number; e.g. 10"))?;
    if !(v > 0.0 && v < 100.0) {
        return Err(format!("{v} is not between 0 and 100 (percent of the roofline bound); e.g. 10"));
    }
    Ok(v)
}

/// Entry point of `kernlab sweep`.
pub fn run(mut a: SweepArgs) -> Result<ExitCode> {
    // A user kernel (a sweep file with a [kernel] table) may be named or given as a path.
    use crate::tune::user::sweep_cli;
    let (family, found) = sweep_cli::resolve(&a.family, a.file.as_deref())?;
    a.family = family;
    let sweep_path = found.unwrap_or_else(|| crate::paths::sweep_file(&a.family));
    if !sweep_path.is_file() {
        let known: Vec<String> = std::fs::read_dir(crate::paths::project_root().join("sweeps"))
            .map(|rd| {
                rd.flatten().filter_map(|e| e.path().file_stem().map(|s| s.to_string_lossy().to_string())).collect()
            })
            .unwrap_or_default();
        bail!(
            "no sweep file {} for family {:?}; sweep files present: {}. Pass --file path.toml for your own",
            sweep_path.display(),
            a.family,
            if known.is_empty() { "none".to_string() } else { known.join(", ") }
        );
    }
    // Family, variants, shapes and dtypes, with errors naming the flag or the file line,
    // before anything is compiled or a GPU is opened.
    let (_, checked) = crate::tune::preflight::check_sweep_inputs(&a.family, &sweep_path, &a.shapes, &a.dtypes)?;
    if let Some(user) = sweep_cli::registered(&a.family) {
        let limits =
            if a.dry_run { crate::tune::space::DeviceLimits::for_arch(&a.arch)? } else { sweep_cli::generous_limits() };
        let arch = (a.dry_run && !a.no_compile).then_some(a.arch.as_str());
        sweep_cli::preflight(user, &checked, &a.shapes, &a.dtypes, &limits, arch)?;
    }
    if a.dry_run {
        let ok = runner::dry_run(&sweep_path, &a.shapes, &a.dtypes, &a.variants, &a.arch, !a.no_compile, a.shard)?;
        return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    let out_csv = match (&a.out, a.resume) {
        (Some(p), _) => p.clone(),
        (None, true) => crate::paths::latest_sweep_csv(&a.family).with_context(|| {
            format!("--resume: no earlier reports/{}-*.csv to continue; pass --out <file>", a.family)
        })?,
        (None, false) => crate::paths::new_sweep_csv(&a.family),
    };
    let opts = SweepOptions {
        sweep_path,
        shapes: a.shapes,
        dtypes: a.dtypes,
        variants: a.variants,
        strategy: a.strategy,
        budget: a.budget,
        time_budget: a.time_budget,
        stop_within_pct: a.stop_within,
        time_limit: a.time_limit,
        seed: a.seed,
        out_csv,
        resume: a.resume,
        db_path: a.db.unwrap_or_else(crate::paths::default_db),
        timeout: a.timeout,
        gpu: a.gpu,
        checks: a.checks,
        timing: a.time_per_candidate,
        progress: true,
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            // Second Ctrl-C: stop now. Rows already written are safe on disk.
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: finishing the current candidate (Ctrl-C again to stop at once)");
    })
    .ok();
    let family = crate::tune::family(&a.family)?;
    let scale = crate::tune::gpus::Scale { gpus: a.gpus.clone(), shard: a.shard };
    let summary = runner::run_sweep_scaled(&opts, &scale, interrupted)?;
    let resume_hint = format!("kernlab sweep {} --resume --out {}", a.family, summary.csv.display());
    if a.json {
        let doc = SummaryJson::new(&a.family, family.peer(), &summary, &opts.db_path, &resume_hint);
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("\n{} — {} (cc {})", a.family, summary.gpu.name, summary.gpu.cc());
        print!("{}", runner::format_table(&summary, family.peer()));
        println!("results: {}  ·  tuned database: {}", summary.csv.display(), opts.db_path.display());
        if summary.interrupted {
            println!("interrupted: continue with `{resume_hint}`");
        }
    }
    Ok(if summary.interrupted { ExitCode::from(130) } else { ExitCode::SUCCESS })
}

/// `kernlab sweep --json`: the summary table's content, one object per shape.
#[derive(Debug, Serialize)]
pub struct SummaryJson<'a> {
    pub family: &'a str,
    pub peer: &'a str,
    pub gpu: &'a crate::gpu::device::DeviceProps,
    pub csv: &'a std::path::Path,
    pub db: &'a std::path::Path,
    pub interrupted: bool,
    /// The command that continues an interrupted sweep (present only then).
    pub resume_with: Option<&'a str>,
    pub shapes: Vec<ShapeJson<'a>>,
}

/// One shape of the summary.
#[derive(Debug, Serialize)]
pub struct ShapeJson<'a> {
    pub dtype: &'a str,
    pub shape: &'a str,
    /// The winning candidate's CSV row; absent when no candidate passed verification.
    pub winner: Option<&'a CandidateRecord>,
    pub peer_us: Option<f64>,
    pub speedup_vs_peer: Option<f64>,
    /// A second peer timed outside kernlab in the same session (PyTorch's tinygemm beside
    /// cuBLAS for gemm_int4), and the winner's speedup over it.
    pub beside: Option<&'a str>,
    pub beside_us: Option<f64>,
    pub speedup_vs_beside: Option<f64>,
    /// Percentage of the roofline bound (DRAM ceiling or compute roof of its dtype,
    /// whichever limits), when the ceilings were measured.
    pub pct_of_bound: Option<f64>,
    pub evaluations: usize,
    pub failed: usize,
    pub strategy: &'a str,
    pub space_points: u128,
    pub space_valid: Option<u128>,
    pub stop: Option<&'a str>,
    /// The candidates the winner ties with after re-measurement (a statistical tie).
    pub tied_with: Vec<&'a CandidateRecord>,
    pub remeasured: usize,
    pub confirmed: bool,
}

impl<'a> SummaryJson<'a> {
    pub fn new(
        family: &'a str,
        peer: &'a str,
        s: &'a SweepSummary,
        db: &'a std::path::Path,
        resume_with: &'a str,
    ) -> SummaryJson<'a> {
        SummaryJson {
            family,
            peer,
            gpu: &s.gpu,
            csv: &s.csv,
            db,
            interrupted: s.interrupted,
            resume_with: s.interrupted.then_some(resume_with),
            shapes: s.rows.iter().map(ShapeJson::new).collect(),
        }
    }
}

impl<'a> ShapeJson<'a> {
    fn new(r: &'a ShapeResult) -> ShapeJson<'a> {
        let w = r.winner.as_ref();
        ShapeJson {
            dtype: &r.dtype,
            shape: &r.shape,
            winner: w,
            peer_us: r.peer_us,
            speedup_vs_peer: match (w.and_then(CandidateRecord::median_us), r.peer_us) {
                (Some(ours), Some(peer)) if ours > 0.0 => Some(peer / ours),
                _ => None,
            },
            beside: r.beside.as_ref().map(|b| b.0.as_str()),
            beside_us: r.beside.as_ref().map(|b| b.1),
            speedup_vs_beside: match (w.and_then(CandidateRecord::median_us), &r.beside) {
                (Some(ours), Some((_, b))) if ours > 0.0 => Some(b / ours),
                _ => None,
            },
            pct_of_bound: w.and_then(|w| w.pct_of_bound),
            evaluations: r.measured,
            failed: r.failed,
            strategy: &r.strategy,
            space_points: r.points,
            space_valid: r.valid,
            stop: r.stop.as_deref(),
            tied_with: r.tied.iter().collect(),
            remeasured: r.remeasured,
            confirmed: r.confirmed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::device::DeviceProps;

    #[test]
    fn summary_json_has_winner_speedup_and_resume_hint() {
        let winner = CandidateRecord {
            family: "gemm".into(),
            variant: "mma".into(),
            timing: Some(crate::tune::record::Timing { median_us: 10.0, ..Default::default() }),
            pct_of_bound: Some(80.0),
            ..Default::default()
        };
        let s = SweepSummary {
            gpu: DeviceProps {
                name: "H200".into(),
                cc_major: 9,
                cc_minor: 0,
                sm_count: 132,
                total_mem_bytes: 1,
                l2_bytes: 1,
                max_smem_optin: 1,
                max_threads_per_block: 1024,
                regs_per_block: 1,
                sm_clock_mhz: 1,
                mem_clock_mhz: 1,
                bus_width_bits: 1,
                driver_version: "13.0".into(),
            },
            rows: vec![ShapeResult {
                dtype: "bf16".into(),
                shape: "1x4096x4096".into(),
                winner: Some(winner),
                peer_us: Some(20.0),
                beside: Some(("tinygemm".into(), 15.0)),
                measured: 7,
                ..Default::default()
            }],
            csv: "reports/gemm.csv".into(),
            interrupted: true,
        };
        let doc =
            SummaryJson::new("gemm", "cublas", &s, std::path::Path::new("tuned.json"), "kernlab sweep gemm --resume");
        let v: serde_json::Value = serde_json::from_str(&serde_json::to_string(&doc).unwrap()).unwrap();
        let shape = &v["shapes"][0];
        assert_eq!(shape["speedup_vs_peer"], 2.0);
        assert_eq!((shape["beside"].as_str(), shape["speedup_vs_beside"].as_f64()), (Some("tinygemm"), Some(1.5)));
        let table = crate::tune::runner::format_table(&s, "cublas");
        assert!(table.contains("tinygemm us") && table.contains("1.50x"), "{table}");
        assert_eq!(shape["pct_of_bound"], 80.0);
        assert_eq!(shape["evaluations"], 7);
        assert_eq!(shape["winner"]["variant"], "mma");
        assert_eq!(v["resume_with"], "kernlab sweep gemm --resume");
        assert_eq!(v["gpu"]["name"], "H200");
    }
}
