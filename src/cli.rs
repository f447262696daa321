//! Command-line interface: one subcommand per user verb. `main` calls [`run`].
use crate::devices_cmd::DevicesArgs;
use crate::sweep_cmd::SweepArgs;
use anyhow::{bail, Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

/// What works on a machine without a GPU, for the messages that say one is missing.
pub use crate::gpu::libs::WITHOUT_GPU;

#[derive(Parser, Debug)]
#[command(
    name = "kernlab",
    version,
    about = "Kernel autotuning and roofline lab for NVIDIA GPUs",
    long_about = None,
    after_help = "Examples:
  kernlab devices                         the GPU, driver, NVRTC and cuBLAS
  kernlab sweep gemm                      tune a family on its default shapes
  kernlab sweep gemm --dry-run            no GPU: enumerate and compile the space
  kernlab roofline                        ceilings and every sweep's winners on the roofline
  kernlab report                          one HTML page over reports/
  kernlab sweep gemm --gpus all           every GPU of this host at once
  kernlab merge gemm-*.csv --out all.csv  bring --shard pieces together
  kernlab completions bash > ~/.local/share/bash-completion/completions/kernlab

`kernlab <command> --help` shows each command's flags and examples."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show the GPUs (name, compute capability, memory, clocks, driver), where NVRTC and
    /// cuBLAS were found, and the saved ceilings.
    Devices(DevicesArgs),
    /// Tune a kernel family: enumerate, compile, verify and time every candidate.
    Sweep(SweepArgs),
    /// Check every family at small and awkward sizes against its reference, and the
    /// fault-isolation path (needs a GPU). Exits non-zero on any failure.
    #[command(after_help = "Examples:
  kernlab selftest
  kernlab selftest --family gemm,softmax --gpu 1")]
    Selftest {
        /// GPU ordinal to check (see `kernlab devices`), e.g. --gpu 1.
        #[arg(long, value_name = "N", default_value_t = 0)]
        gpu: usize,
        /// Check only this family, e.g. --family gemm; a comma list or repeated. Default:
        /// every family, plus fault isolation.
        #[arg(long = "family", value_name = "FAMILY", value_delimiter = ',')]
        families: Vec<String>,
    },
    /// Compile one kernel template with NVRTC and print the resource report (no GPU needed).
    #[command(after_help = "Examples:
  kernlab compile kernels/gemm/mma_multistage.cu --arch sm_90a -D BM=128 -D STAGES=4
  kernlab compile kernels/softmax/softmax_online.cu --arch sm_86 --log --cubin softmax.cubin")]
    Compile {
        /// The .cu template, e.g. kernels/gemm/mma_multistage.cu.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Target architecture, e.g. --arch sm_86 (sm_80, sm_86, sm_89, sm_90a, ...).
        #[arg(long, value_name = "ARCH", default_value = "sm_90a")]
        arch: String,
        /// A tunable's value, e.g. -D BM=128; repeated for several (not a comma list: a
        /// macro's value may hold commas).
        #[arg(short = 'D', value_name = "NAME=VALUE")]
        define: Vec<String>,
        /// Print the whole NVRTC log.
        #[arg(long)]
        log: bool,
        /// Also write the cubin here (for `nvdisasm -c` or `cuobjdump -sass`), e.g. --cubin k.cubin.
        #[arg(long, value_name = "FILE")]
        cubin: Option<PathBuf>,
    },
    /// Measure this GPU's ceilings (DRAM, L2, tensor and FMA rates, with cuBLAS beside them)
    /// and chart every sweep's winners on its roofline (reports/roofline-<gpu>.png). With
    /// --ceilings, or without a GPU, draws saved ceilings instead.
    #[command(after_help = "Examples:
  kernlab roofline
  kernlab roofline --remeasure --torch-peers reports/torch_peers.json
  kernlab roofline --ceilings docs/results/ceilings-h200.json   (no GPU needed)")]
    Roofline {
        /// GPU ordinal to measure (see `kernlab devices`), e.g. --gpu 1.
        #[arg(long, value_name = "N", default_value_t = 0)]
        gpu: usize,
        /// Measure again even if reports/ holds this GPU's ceilings.
        #[arg(long)]
        remeasure: bool,
        /// Draw only the winners, not every verified candidate as faint points.
        #[arg(long)]
        no_candidates: bool,
        /// JSON written by scripts/torch_copy_peer.py in the same session: print our
        /// ceilings against PyTorch's copy_ and bf16 matmul, e.g. --torch-peers torch.json.
        #[arg(long, value_name = "FILE")]
        torch_peers: Option<PathBuf>,
        /// Draw these saved ceilings (a ceilings-*.json from `kernlab roofline`) without a
        /// GPU, e.g. --ceilings docs/results/ceilings-h200.json.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["remeasure", "gpu"])]
        ceilings: Option<PathBuf>,
    },
    /// Write one self-contained HTML page over everything in reports/ (ceilings, roofline,
    /// every sweep's table and charts). No GPU needed.
    #[command(after_help = "Examples:
  kernlab report
  kernlab report --out /tmp/kernlab.html")]
    Report {
        /// Output HTML file, e.g. --out /tmp/kernlab.html. Default: reports/index.html.
        #[arg(long, value_name = "FILE")]
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
    /// Quantize a model's linears with RTN, AWQ or GPTQ (CPU) and write a GPTQ checkpoint
    /// directory that `kernlab e2e --model DIR --weights int4` runs on gemm_int4.
    Quantize(crate::quality::quantize_cmd::QuantizeArgs),
    /// List the built-in families (variants, default shapes, space sizes) and the kernels
    /// described in sweep files under sweeps/ and examples/. No GPU needed.
    #[command(after_help = "Examples:
  kernlab list")]
    List,
    /// Write the tuned winners of a family or user kernel as a C/C++ header and as JSON
    /// (tunables, and for user kernels grid, block and shared memory) for your own launcher.
    Export(crate::export_cmd::ExportArgs),
    /// Merge the CSVs of several sweeps (`--shard` pieces, hosts) into one CSV, or tuned
    /// databases into one, picking winners as one sweep would. No GPU needed.
    Merge(crate::tune::merge_cmd::MergeArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    #[command(after_help = "Examples:
  kernlab completions bash > ~/.local/share/bash-completion/completions/kernlab
  kernlab completions zsh > ~/.zfunc/_kernlab        (with fpath+=~/.zfunc in ~/.zshrc)
  kernlab completions fish > ~/.config/fish/completions/kernlab.fish")]
    Completions {
        /// The shell to complete for, e.g. bash.
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Internal: the measuring process the sweep runner starts.
    #[command(hide = true)]
    Worker {
        #[arg(long, default_value_t = 0)]
        gpu: usize,
    },
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
    // The commands that compile or measure may install NVRTC and cuBLAS wheels when missing
    // (a machine with only the driver and Rust); the others only read saved results.
    if matches!(
        cli.command,
        Command::Sweep(_)
            | Command::Selftest { .. }
            | Command::Compile { .. }
            | Command::Roofline { .. }
            | Command::E2e(_)
    ) {
        crate::gpu::wheels::allow_auto_install();
    }
    match cli.command {
        Command::Devices(a) => crate::devices_cmd::run(a),
        Command::Sweep(a) => crate::sweep_cmd::run(a),
        Command::Selftest { gpu, families } => crate::selftest::run(gpu, &families),
        Command::Compile { file, arch, define, log, cubin } => compile(file, arch, define, log, cubin),
        Command::Roofline { gpu, remeasure, no_candidates, torch_peers, ceilings } => {
            crate::roofline_cmd::roofline_command_with(gpu, remeasure, !no_candidates, torch_peers, ceilings)
        }
        Command::Report { out } => crate::roofline_cmd::report_command(out),
        Command::Replay(a) => crate::replay_cmd::run(a),
        Command::E2e(a) => crate::llama::e2e::run(a),
        Command::Quality(a) => crate::quality::run(a),
        Command::Quantize(a) => crate::quality::quantize_cmd::run(a),
        Command::List => crate::list::run(),
        Command::Export(a) => crate::export_cmd::run(a),
        Command::Merge(a) => crate::tune::merge_cmd::run(a),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "kernlab", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker { gpu } => {
            crate::tune::worker::serve(gpu)?;
            Ok(ExitCode::SUCCESS)
        }
    }
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
