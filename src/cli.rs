//! Command-line interface: one subcommand per user verb. `main` calls [`run`].
use crate::tune::runner::{self, SweepOptions};
use crate::tune::search::SearchStrategy;
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "kernlab", version, about = "Kernel autotuning and roofline lab for NVIDIA GPUs", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show the GPU, its limits, the driver and where NVRTC and cuBLAS were found.
    Devices {
        #[arg(long, default_value_t = 0)]
        gpu: usize,
    },
    /// Tune a kernel family: enumerate, compile, verify and time every candidate.
    Sweep(SweepArgs),
    /// Check every family at small and awkward sizes against its reference, and the
    /// fault-isolation path (needs a GPU). Exits non-zero on any failure.
    Selftest {
        #[arg(long, default_value_t = 0)]
        gpu: usize,
        /// Check only these families (repeatable); default: all, plus fault isolation.
        #[arg(long = "family")]
        families: Vec<String>,
    },
    /// Compile one kernel template with NVRTC and print the resource report (no GPU needed).
    Compile {
        /// The .cu template.
        file: PathBuf,
        /// Target architecture, e.g. sm_90a, sm_86.
        #[arg(long, default_value = "sm_90a")]
        arch: String,
        /// Tunable values, NAME=VALUE (repeatable).
        #[arg(short = 'D', value_name = "NAME=VALUE")]
        define: Vec<String>,
        /// Print the whole NVRTC log.
        #[arg(long)]
        log: bool,
        /// Also write the cubin here (for `nvdisasm -c` or `cuobjdump -sass`).
        #[arg(long, value_name = "PATH")]
        cubin: Option<PathBuf>,
    },
    /// Measure this GPU's ceilings (DRAM, L2, tensor and FMA rates, with cuBLAS beside them)
    /// and chart every sweep's winners on its roofline (reports/roofline-<gpu>.png).
    Roofline {
        #[arg(long, default_value_t = 0)]
        gpu: usize,
        /// Measure again even if reports/ holds this GPU's ceilings.
        #[arg(long)]
        remeasure: bool,
        /// Draw only the winners, not every verified candidate as faint points.
        #[arg(long)]
        no_candidates: bool,
        /// JSON written by scripts/torch_copy_peer.py in the same session: print our
        /// ceilings against PyTorch's copy_ and bf16 matmul.
        #[arg(long, value_name = "FILE")]
        torch_peers: Option<PathBuf>,
    },
    /// Write one self-contained HTML page over everything in reports/ (ceilings, roofline,
    /// every sweep's table and charts).
    Report {
        /// Output HTML file. Default: reports/index.html.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Replay search strategies against recorded full-grid sweep CSVs, many seeds each, no
    /// GPU: evaluations needed to come near the optimum, a table, a CSV and a chart.
    Replay(crate::replay_cmd::ReplayArgs),
    /// Llama-3 end to end on the GPU: benchmark table, tuned vs reference, CPU and HF checks.
    E2e(crate::llama::e2e::E2eArgs),
    /// Quantization quality on the CPU: perplexity, KL and top-1 agreement of each method
    /// (RTN, AWQ, GPTQ, int8, mixed precision) against the unquantized model.
    Quality(crate::quality::QualityArgs),
    /// List the built-in families (variants, default shapes, space sizes) and the kernels
    /// described in sweep files under sweeps/ and examples/.
    List,
    /// Write the tuned winners of a family or user kernel as a C/C++ header and as JSON
    /// (tunables, and for user kernels grid, block and shared memory) for your own launcher.
    Export(crate::export_cmd::ExportArgs),
    /// Internal: the measuring process the sweep runner starts.
    #[command(hide = true)]
    Worker {
        #[arg(long, default_value_t = 0)]
        gpu: usize,
    },
}

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// Kernel family (gemm, ...); its space is sweeps/<family>.toml.
    pub family: String,
    /// Use this sweep file instead of sweeps/<family>.toml.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Problem shape in the family's notation (GEMM: MxNxK); repeatable. Default: the sweep's.
    #[arg(long = "shape", value_name = "SHAPE")]
    pub shapes: Vec<String>,
    /// bf16 or fp16; repeatable. Default: the sweep's.
    #[arg(long = "dtype")]
    pub dtypes: Vec<String>,
    /// grid (every candidate in order), random (a seeded sample), tpe (model-based: a
    /// tree-structured Parzen estimator) or evolve (local search; also "local"). Default:
    /// the sweep file's; if it names none, per shape: grid when the whole space will be
    /// measured anyway (at most 300 valid candidates, no --budget below that, no
    /// --time-budget, no --stop-within), tpe otherwise (fewest evaluations in the replay of
    /// the recorded full grids, docs/results/search-replay.md).
    #[arg(long, value_parser = SearchStrategy::parse)]
    pub strategy: Option<SearchStrategy>,
    /// Evaluations per shape, failures included (0 = all). Default: the sweep's.
    #[arg(long)]
    pub budget: Option<usize>,
    /// Search each shape for at most this long (e.g. 90s, 10m), then go on to the next.
    #[arg(long, value_parser = positive_duration)]
    pub time_budget: Option<Duration>,
    /// Stop a shape's search once its best candidate is within PCT % of its roofline
    /// bound (e.g. 10: at 90 % of the bound or better). Needs `kernlab roofline` run once.
    #[arg(long, value_name = "PCT", value_parser = within_pct)]
    pub stop_within: Option<f64>,
    /// Stop starting new candidates after this long (e.g. 90s, 10m); resume later.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub time_limit: Option<Duration>,
    /// Seed for random sampling and inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Results CSV. Default: a new reports/<family>-<time>.csv (with --resume: the newest one).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue an interrupted sweep: candidates already in the CSV are not measured again.
    #[arg(long)]
    pub resume: bool,
    /// Tuned-config database to update. Default: reports/tuned.json.
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Watchdog: a candidate that takes longer (verify + time) is killed and recorded.
    #[arg(long, value_parser = positive_duration, default_value = "60s")]
    pub timeout: Duration,
    /// Verification rounds per candidate, each on fresh random inputs.
    #[arg(long, default_value_t = 2)]
    pub checks: u32,
    /// Time spent timing one candidate (e.g. 25ms for a very large space): it runs
    /// this long / its run time repetitions, at least 10 and at most 300.
    #[arg(long, value_parser = positive_duration, default_value = "100ms", value_name = "DURATION")]
    pub time_per_candidate: Duration,
    #[arg(long, default_value_t = 0)]
    pub gpu: usize,
    /// List the space after the constraints and compile it for --arch, without a GPU.
    #[arg(long)]
    pub dry_run: bool,
    /// Architecture for --dry-run (sm_80, sm_86, sm_90a, ...).
    #[arg(long, default_value = "sm_90a")]
    pub arch: String,
    /// With --dry-run: only enumerate, do not compile.
    #[arg(long)]
    pub no_compile: bool,
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

pub fn parse_defines(defs: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for d in defs {
        let (k, v) = d.split_once('=').unwrap_or((d.as_str(), "1"));
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("bad define {d:?}: expected NAME=VALUE with NAME made of letters, digits and _");
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

pub fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Devices { gpu } => devices(gpu),
        Command::Sweep(a) => sweep(a),
        Command::Selftest { gpu, families } => crate::selftest::run(gpu, &families),
        Command::Compile { file, arch, define, log, cubin } => compile(file, arch, define, log, cubin),
        Command::Roofline { gpu, remeasure, no_candidates, torch_peers } => {
            crate::roofline_cmd::roofline_command_with(gpu, remeasure, !no_candidates, torch_peers)
        }
        Command::Report { out } => crate::roofline_cmd::report_command(out),
        Command::Replay(a) => crate::replay_cmd::run(a),
        Command::E2e(a) => crate::llama::e2e::run(a),
        Command::Quality(a) => crate::quality::run(a),
        Command::List => crate::list::run(),
        Command::Export(a) => crate::export_cmd::run(a),
        Command::Worker { gpu } => {
            crate::tune::worker::serve(gpu)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn devices(ordinal: usize) -> Result<ExitCode> {
    use crate::gpu::{device::Gpu, libs, nvrtc};
    let gpu = Gpu::open(ordinal)?;
    let p = &gpu.props;
    println!("GPU {ordinal}: {}", p.name);
    println!("  compute capability  {} (kernels built for {})", p.cc(), p.arch());
    println!("  SMs                 {}", p.sm_count);
    println!("  memory              {:.1} GiB", p.total_mem_bytes as f64 / (1u64 << 30) as f64);
    println!("  L2 cache            {:.1} MiB", p.l2_bytes as f64 / (1u64 << 20) as f64);
    println!("  shared mem / block  {} KiB (opt-in)", p.max_smem_optin / 1024);
    println!("  registers / block   {}", p.regs_per_block);
    println!(
        "  clocks              SM {} MHz, memory {} MHz, bus {} bits",
        p.sm_clock_mhz, p.mem_clock_mhz, p.bus_width_bits
    );
    println!("  driver              CUDA {}", p.driver_version);
    match libs::nvrtc() {
        Ok(i) => println!(
            "  NVRTC               {} at {} (found via {}), headers in {}",
            nvrtc::version().unwrap_or_default(),
            i.lib.display(),
            i.how,
            i.include_dir.display()
        ),
        Err(e) => println!("  NVRTC               not found: {e:#}"),
    }
    match libs::cublas() {
        Ok(f) => println!("  cuBLAS              {} (found via {})", f.lib.display(), f.how),
        Err(e) => println!("  cuBLAS              not found: {e:#}"),
    }
    match crate::tune::bound::load_ceilings_for(p) {
        Some(c) => print!("{}", crate::roofline_cmd::format_ceilings(&c)),
        None => println!("  ceilings            not measured yet: run `kernlab roofline`"),
    }
    Ok(ExitCode::SUCCESS)
}

fn compile(file: PathBuf, arch: String, define: Vec<String>, log: bool, cubin: Option<PathBuf>) -> Result<ExitCode> {
    let source = crate::gpu::nvrtc::load_source(&file)?;
    let req = crate::gpu::nvrtc::CompileRequest {
        name: file.display().to_string(),
        source,
        defines: parse_defines(&define)?,
        arch,
    };
    let m = crate::gpu::nvrtc::compile(&req)?;
    if log {
        println!("{}", m.log.trim());
    }
    println!(
        "compiled {} for {} with NVRTC {} in {:.0} ms ({} bytes of cubin); source hash {} (the tuned database's key)",
        req.name,
        m.arch,
        m.nvrtc_version,
        m.compile_ms,
        m.cubin.len(),
        crate::gpu::cache::source_hash(&req.source)
    );
    for (name, r) in &m.resources {
        println!(
            "  {name}: {} registers, {} B static smem, {} B stack, {} B spill stores, {} B spill loads",
            r.registers, r.static_smem_bytes, r.stack_bytes, r.spill_store_bytes, r.spill_load_bytes
        );
    }
    if let Some(path) = cubin {
        std::fs::write(&path, &m.cubin).with_context(|| format!("writing the cubin to {}", path.display()))?;
        println!("  cubin written to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn sweep(mut a: SweepArgs) -> Result<ExitCode> {
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
        let ok = runner::dry_run(&sweep_path, &a.shapes, &a.dtypes, &a.arch, !a.no_compile)?;
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
    let summary = runner::run_sweep(&opts, interrupted)?;
    println!("\n{} — {} (cc {})", a.family, summary.gpu.name, summary.gpu.cc());
    print!("{}", runner::format_table(&summary, family.peer()));
    println!("results: {}  ·  tuned database: {}", summary.csv.display(), opts.db_path.display());
    if summary.interrupted {
        println!("interrupted: continue with `kernlab sweep {} --resume --out {}`", a.family, summary.csv.display());
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
}
