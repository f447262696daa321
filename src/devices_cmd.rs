//! `kernlab devices`: the GPUs (name, compute capability, memory, clocks, driver), where
//! NVRTC and cuBLAS were found, and the saved ceilings; as text or (`--json`) as JSON.
//! Without a GPU it still reports the libraries and says what works without one.

use crate::gpu::device::{DeviceProps, Gpu};
use crate::gpu::{libs, nvrtc};
use anyhow::Result;
use clap::Args;
use serde::Serialize;
use std::path::Path;
use std::process::ExitCode;

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  kernlab devices
  kernlab devices --gpu 1
  kernlab devices --json | jq '.gpus[].name'")]
pub struct DevicesArgs {
    /// Show only this GPU ordinal, e.g. --gpu 1. Default: every GPU.
    #[arg(long, value_name = "N")]
    pub gpu: Option<usize>,
    /// Print one JSON document on stdout instead of the text.
    #[arg(long)]
    pub json: bool,
}

/// A library kernlab loads at run time, and where it came from.
#[derive(Debug, Serialize)]
pub struct LibraryJson {
    pub found: bool,
    pub path: Option<String>,
    pub found_via: Option<String>,
    pub version: Option<String>,
    /// Why it was not found, and the command that installs it.
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct GpuJson {
    pub ordinal: usize,
    #[serde(flatten)]
    pub props: DeviceProps,
    pub compute_capability: String,
    pub arch: String,
    /// The saved roofline ceilings of this GPU, if `kernlab roofline` ran.
    pub ceilings: Option<crate::roofline::Ceilings>,
}

#[derive(Debug, Serialize)]
pub struct DevicesJson {
    pub gpus: Vec<GpuJson>,
    /// Why no GPU could be opened (with what still works), when none could.
    pub gpu_error: Option<String>,
    pub nvrtc: LibraryJson,
    pub cublas: LibraryJson,
}

impl LibraryJson {
    /// What a library lookup found (its path and the rule that found it) or why it failed.
    fn from_lookup(found: Result<(&Path, &str)>, version: Option<String>) -> LibraryJson {
        match found {
            Ok((lib, how)) => LibraryJson {
                found: true,
                path: Some(lib.display().to_string()),
                found_via: Some(how.to_string()),
                version,
                error: None,
            },
            Err(e) => {
                LibraryJson { found: false, path: None, found_via: None, version: None, error: Some(format!("{e:#}")) }
            }
        }
    }
}

fn nvrtc_json() -> LibraryJson {
    let found = libs::nvrtc().map(|i| (i.lib.as_path(), i.how.as_str()));
    let version = if found.is_ok() { nvrtc::version().ok() } else { None };
    LibraryJson::from_lookup(found, version)
}

fn cublas_json() -> LibraryJson {
    LibraryJson::from_lookup(libs::cublas().map(|f| (f.lib.as_path(), f.how.as_str())), None)
}

/// Opens the GPUs asked for: one ordinal, or every one the driver sees.
fn open_gpus(only: Option<usize>) -> Result<Vec<(usize, DeviceProps)>> {
    let first = Gpu::open(only.unwrap_or(0))?;
    let mut out = vec![(only.unwrap_or(0), first.props.clone())];
    if only.is_none() {
        let count = cudarc::driver::CudaContext::device_count().unwrap_or(1).max(1) as usize;
        for ordinal in 1..count {
            out.push((ordinal, Gpu::open(ordinal)?.props));
        }
    }
    Ok(out)
}

/// Everything `kernlab devices` shows.
pub fn collect(only: Option<usize>) -> DevicesJson {
    let (gpus, gpu_error) = match open_gpus(only) {
        Ok(g) => (g, None),
        Err(e) => (vec![], Some(format!("{e:#}"))),
    };
    DevicesJson {
        gpus: gpus
            .into_iter()
            .map(|(ordinal, p)| GpuJson {
                ordinal,
                compute_capability: p.cc(),
                arch: p.arch(),
                ceilings: crate::tune::bound::load_ceilings_for(&p),
                props: p,
            })
            .collect(),
        gpu_error,
        nvrtc: nvrtc_json(),
        cublas: cublas_json(),
    }
}

fn print_library(name: &str, l: &LibraryJson) {
    match (&l.path, &l.error) {
        (Some(p), _) => println!(
            "  {name:<19} {}{p} (found via {})",
            l.version.as_ref().map(|v| format!("{v} at ")).unwrap_or_default(),
            l.found_via.as_deref().unwrap_or("?")
        ),
        (None, e) => println!("  {name:<19} not found: {}", e.as_deref().unwrap_or("?")),
    }
}

fn print_text(d: &DevicesJson) {
    if let Some(e) = &d.gpu_error {
        println!("no GPU: {e}");
    }
    for g in &d.gpus {
        let p = &g.props;
        println!("GPU {}: {}", g.ordinal, p.name);
        println!("  compute capability  {} (kernels built for {})", g.compute_capability, g.arch);
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
        match &g.ceilings {
            Some(c) => print!("{}", crate::roofline_cmd::format_ceilings(c)),
            None => println!("  ceilings            not measured yet: run `kernlab roofline`"),
        }
    }
    println!("libraries:");
    print_library("NVRTC", &d.nvrtc);
    print_library("cuBLAS", &d.cublas);
}

/// Entry point of `kernlab devices`: exits non-zero when no GPU could be opened, so scripts
/// can test for one, after printing what was found.
pub fn run(a: DevicesArgs) -> Result<ExitCode> {
    let d = collect(a.gpu);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        print_text(&d);
    }
    Ok(if d.gpus.is_empty() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
