//! Command-line interface: one subcommand per user verb.
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "kernlab", version, about = "Kernel autotuning and roofline lab for NVIDIA GPUs")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Compile one kernel template with NVRTC and print the resource report (no GPU needed).
    Compile {
        /// The .cu template.
        file: PathBuf,
        /// Target architecture, e.g. sm_90a, sm_86.
        #[arg(long, default_value = "sm_90")]
        arch: String,
        /// Tunable values, NAME=VALUE (repeatable).
        #[arg(short = 'D', value_name = "NAME=VALUE")]
        define: Vec<String>,
        /// Print the whole NVRTC log.
        #[arg(long)]
        log: bool,
    },
}

pub fn parse_defines(defs: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for d in defs {
        let (k, v) = d.split_once('=').unwrap_or((d.as_str(), "1"));
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            anyhow::bail!("bad define {d:?}: expected NAME=VALUE with NAME made of letters, digits and _");
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

pub fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Compile { file, arch, define, log } => {
            let source = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
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
            println!("compiled {} for {} with NVRTC {} in {:.0} ms ({} bytes of cubin)", req.name, m.arch, m.nvrtc_version, m.compile_ms, m.cubin.len());
            for (name, r) in &m.resources {
                println!(
                    "  {name}: {} registers, {} B static smem, {} B stack, {} B spill stores, {} B spill loads",
                    r.registers, r.static_smem_bytes, r.stack_bytes, r.spill_store_bytes, r.spill_load_bytes
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
