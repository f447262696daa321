//! `kernlab e2e`: Llama-3 end to end on the GPU — benchmark table, validation of the tuned
//! path against the reference path, the CPU reference and Hugging Face transformers.

use super::config::LlamaConfig;
use super::gpu::generate::{compare_paths, generate, GenResult, Sampling};
use super::gpu::hf_ref::{self, HfReference, HfTiming};
use super::gpu::int4_weights::{Int4Store, MODEL_GROUP};
use super::gpu::linear::{LinearBackend, LinearKind, TunedGemm};
use super::gpu::model::{kv_bytes_read, GpuModel, ModelShape};
use super::gpu::ops::{OpChoice, OpKernels};
use super::gpu::profile::{format_profile, Profiler};
use super::gpu::weights::{round_to_bf16, weight_bytes_per_decode_step, GpuWeights};
use super::weights::{SplitMix64, Weights};
use crate::gpu::blas::Blas;
use crate::gpu::cache::{self, ModuleCache};
use crate::gpu::device::Gpu;
use crate::gpu::util::Util;
use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;

#[derive(Args, Debug, Clone)]
pub struct E2eArgs {
    /// A Hugging Face directory (config.json + *.safetensors) or a .gguf file. Default:
    /// random bf16 weights at --preset, generated on the GPU.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Model shape when no --model is given: llama3-8b, llama3.1-8b, llama3.2-1b, smollm2-135m, tiny.
    #[arg(long, default_value = "llama3-8b")]
    pub preset: String,
    /// Prompt text (needs the model's tokenizer); default: random token prompts.
    #[arg(long)]
    pub prompt: Option<String>,
    /// Sequences per batch; a list (1,8) benchmarks each in turn on the same weights.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub batch: Vec<usize>,
    /// Tokens per random prompt.
    #[arg(long, default_value_t = 128)]
    pub prompt_len: usize,
    /// Prompts of different lengths in one batch (prompt_len down to about half of it).
    #[arg(long)]
    pub ragged: bool,
    /// New tokens per sequence.
    #[arg(long, default_value_t = 256)]
    pub gen_len: usize,
    /// Timed runs per batch size (after one warm-up run).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Reference path: cuBLAS GEMMs and the plain kernels. Default: the tuned path.
    #[arg(long)]
    pub reference: bool,
    /// Also run the other path in lockstep and compare logits and greedy tokens.
    #[arg(long)]
    pub validate: bool,
    /// Compare with the f32 CPU reference forward (small models only).
    #[arg(long)]
    pub check_cpu: bool,
    /// Reference JSON from scripts/hf_reference.py (use with --model <its directory>).
    #[arg(long)]
    pub hf_reference: Option<PathBuf>,
    /// Seed of random weights, prompts and sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Sampling temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Keep generating after EOS (fixed-length benchmark runs).
    #[arg(long)]
    pub ignore_eos: bool,
    /// Results file stem: writes <out>.json and <out>.csv. Default: reports/e2e-<time>.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Time per op kind with CUDA events (an extra, separate run).
    #[arg(long)]
    pub profile: bool,
    /// Precision of the layers' linear weights: bf16, or int4 (quantized on the GPU with
    /// round-to-nearest, g128 symmetric, bf16 scales; the lm_head stays bf16). With int4,
    /// --validate compares against cuBLAS on the dequantized weights and reports the
    /// quantization's effect against the bf16 model.
    #[arg(long, default_value = "bf16", value_parser = ["bf16", "int4"])]
    pub weights: String,
    /// Issue every launch of every decode step instead of replaying each step as a CUDA
    /// graph (the tuned paths replay by default; the reference path never does).
    #[arg(long)]
    pub no_cuda_graphs: bool,
    /// Tuned-config database. Default: reports/tuned.json.
    #[arg(long)]
    pub db: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub gpu: usize,
}

/// One column of the benchmark table (kernlab or a peer at one batch size).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BenchRow {
    pub label: String,
    pub batch: usize,
    pub throughput_tok_s: f64,
    pub mean_latency_s: f64,
    pub total_tokens: usize,
    pub tokens_per_run: f64,
    pub ttft_ms: Option<f64>,
    pub decode_step_ms: Option<f64>,
    pub peak_mem_gib: Option<f64>,
    pub achieved_gb_s: Option<f64>,
    pub bw_bound_pct: Option<f64>,
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map(|x| format!("{x:.prec$}")).unwrap_or_else(|| "—".into())
}

/// The table, one column per row of `rows` (kernlab first, then its peers).
pub fn format_table(rows: &[BenchRow]) -> String {
    type Field = (&'static str, Box<dyn Fn(&BenchRow) -> String>);
    let fields: Vec<Field> = vec![
        ("Batch Size", Box::new(|r| r.batch.to_string())),
        ("Throughput (tokens/s)", Box::new(|r| format!("{:.1}", r.throughput_tok_s))),
        ("Mean Latency (s)", Box::new(|r| format!("{:.3}", r.mean_latency_s))),
        ("Total Tokens", Box::new(|r| r.total_tokens.to_string())),
        ("Tokens/Run", Box::new(|r| format!("{:.0}", r.tokens_per_run))),
        ("Time to first token (ms)", Box::new(|r| opt(r.ttft_ms, 2))),
        ("Decode step (ms)", Box::new(|r| opt(r.decode_step_ms, 3))),
        ("Peak GPU memory (GiB)", Box::new(|r| opt(r.peak_mem_gib, 2))),
        ("Achieved bandwidth (GB/s)", Box::new(|r| opt(r.achieved_gb_s, 0))),
        ("% of bandwidth bound", Box::new(|r| opt(r.bw_bound_pct, 1))),
    ];
    let w0 = fields.iter().map(|f| f.0.len()).max().unwrap_or(0) + 2;
    let cols: Vec<Vec<String>> = rows.iter().map(|r| fields.iter().map(|f| f.1(r)).collect()).collect();
    let widths: Vec<usize> = rows
        .iter()
        .zip(&cols)
        .map(|(r, c)| c.iter().map(|s| s.chars().count()).chain([r.label.chars().count()]).max().unwrap_or(0) + 2)
        .collect();
    let mut s = format!("{:<w0$}", "");
    for (r, w) in rows.iter().zip(&widths) {
        s += &format!("{:>w$}", r.label, w = w);
    }
    s += "\n";
    let total = w0 + widths.iter().sum::<usize>();
    s += &format!("{}\n", "-".repeat(total));
    for (i, f) in fields.iter().enumerate() {
        s += &format!("{:<w0$}", f.0);
        for (c, w) in cols.iter().zip(&widths) {
            s += &format!("{:>w$}", c[i], w = w);
        }
        s += "\n";
    }
    s
}

/// CSV of the rows (one line each).
pub fn to_csv(rows: &[BenchRow], model: &str, gpu: &str, path: &str) -> Result<String> {
    let mut w = csv::Writer::from_writer(vec![]);
    w.write_record([
        "label",
        "model",
        "gpu",
        "path",
        "batch",
        "throughput_tok_s",
        "mean_latency_s",
        "total_tokens",
        "tokens_per_run",
        "ttft_ms",
        "decode_step_ms",
        "peak_mem_gib",
        "achieved_gb_s",
        "bw_bound_pct",
    ])?;
    let o = |v: Option<f64>| v.map(|x| format!("{x}")).unwrap_or_default();
    for r in rows {
        w.write_record([
            r.label.clone(),
            model.into(),
            gpu.into(),
            path.into(),
            r.batch.to_string(),
            format!("{}", r.throughput_tok_s),
            format!("{}", r.mean_latency_s),
            r.total_tokens.to_string(),
            format!("{}", r.tokens_per_run),
            o(r.ttft_ms),
            o(r.decode_step_ms),
            o(r.peak_mem_gib),
            o(r.achieved_gb_s),
            o(r.bw_bound_pct),
        ])?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

/// HF's timings as table columns for one batch size.
pub fn hf_rows(timings: &[HfTiming], batch: usize) -> Vec<BenchRow> {
    timings
        .iter()
        .filter(|t| t.batch == batch && t.error.is_none() && t.seconds > 0.0)
        .map(|t| BenchRow {
            label: format!("HF {}", t.mode),
            batch,
            throughput_tok_s: t.tokens_per_s,
            mean_latency_s: t.seconds,
            total_tokens: t.batch * t.new_tokens,
            tokens_per_run: (t.batch * t.new_tokens) as f64,
            ttft_ms: None,
            decode_step_ms: Some(t.seconds * 1e3 / t.new_tokens as f64),
            peak_mem_gib: None,
            achieved_gb_s: None,
            bw_bound_pct: None,
        })
        .collect()
}

/// Where the weights come from.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    Random(LlamaConfig),
    HfDir(PathBuf, LlamaConfig),
    Gguf(PathBuf),
}

/// Checks the arguments and resolves the model source (no GPU, no weights read).
pub fn resolve(a: &E2eArgs) -> Result<ModelSource> {
    if a.batch.is_empty() || a.batch.contains(&0) {
        bail!("--batch must be at least 1");
    }
    if a.gen_len == 0 {
        bail!("--gen-len must be at least 1");
    }
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if a.prompt.is_none() && a.prompt_len == 0 {
        bail!("--prompt-len must be at least 1");
    }
    if a.weights == "int4" && (a.check_cpu || a.hf_reference.is_some()) {
        bail!(
            "--check-cpu and --hf-reference check the bf16 path; run them without --weights int4 (with int4, \
             --validate compares against cuBLAS on the dequantized weights)"
        );
    }
    // Written so that NaN fails too.
    let ok = a.temperature >= 0.0 && a.top_p > 0.0 && a.top_p <= 1.0;
    if !ok {
        bail!("--temperature must be ≥ 0 and --top-p in (0, 1]");
    }
    if a.hf_reference.is_some() && a.model.is_none() {
        bail!("--hf-reference needs --model <the directory scripts/hf_reference.py saved>");
    }
    let src = match &a.model {
        None => ModelSource::Random(LlamaConfig::preset(&a.preset)?),
        Some(p) if p.is_dir() => {
            let cfg = p.join("config.json");
            if !cfg.is_file() {
                bail!("{} is a directory without config.json: not a Hugging Face model directory", p.display());
            }
            ModelSource::HfDir(p.clone(), LlamaConfig::from_hf_json(&cfg)?)
        }
        Some(p) if p.is_file() => {
            if p.extension().and_then(|e| e.to_str()) != Some("gguf") {
                bail!("{}: expected a .gguf file or a Hugging Face directory", p.display());
            }
            ModelSource::Gguf(p.clone())
        }
        Some(p) => bail!("model {} does not exist (pass a Hugging Face directory or a .gguf file)", p.display()),
    };
    if let ModelSource::Random(c) | ModelSource::HfDir(_, c) = &src {
        check_fits(c, a, a.prompt_len)?;
    }
    Ok(src)
}

/// Prompt + generation must fit the model's context. Added with `checked_add`: a
/// `--prompt-len` near `usize::MAX` must not wrap around to a small sum that fits.
pub fn check_fits(c: &LlamaConfig, a: &E2eArgs, prompt_len: usize) -> Result<()> {
    match prompt_len.checked_add(a.gen_len) {
        Some(total) if total <= c.max_seq_len => Ok(()),
        total => bail!(
            "a prompt of {prompt_len} tokens plus --gen-len {} is {} positions, more than the {} context of {} (max_seq {})",
            a.gen_len,
            total.map_or_else(|| format!("more than {}", usize::MAX), |t| t.to_string()),
            c.name,
            c.name,
            c.max_seq_len
        ),
    }
}

/// Random token prompts from `seed`; with `ragged`, lengths fall from `len` to about len/2.
pub fn random_prompts(batch: usize, len: usize, vocab: usize, seed: u64, ragged: bool) -> Vec<Vec<u32>> {
    let mut rng = SplitMix64(seed ^ 0x7072_6f6d_7074);
    (0..batch)
        .map(|b| {
            let l = if ragged && batch > 1 { (len - b * len / (2 * batch)).max(1) } else { len };
            (0..l).map(|_| (rng.next_u64() % vocab as u64) as u32).collect()
        })
        .collect()
}

struct Loaded {
    weights: Rc<GpuWeights>,
    /// Host copy (bf16-rounded) when the model is small enough for the CPU reference.
    host: Option<Weights>,
    tokenizer: Option<tokenizers::Tokenizer>,
}

fn load(gpu: &Gpu, util: &Util, ops: &OpKernels, src: &ModelSource, a: &E2eArgs) -> Result<Loaded> {
    Ok(match src {
        ModelSource::Random(c) if a.check_cpu => {
            if c.n_params() > 600_000_000 {
                bail!(
                    "--check-cpu runs the f32 CPU reference: use a small preset (tiny, smollm2-135m), not {}",
                    c.name
                );
            }
            let w = round_to_bf16(&Weights::random(c, a.seed)?);
            Loaded {
                weights: Rc::new(GpuWeights::from_weights(
                    gpu,
                    &w,
                    &format!("random weights at {} (seed {}, host)", c.name, a.seed),
                )?),
                host: Some(w),
                tokenizer: None,
            }
        }
        ModelSource::Random(c) => {
            Loaded { weights: Rc::new(GpuWeights::random(gpu, util, ops, c, a.seed)?), host: None, tokenizer: None }
        }
        ModelSource::Gguf(p) => {
            let m = super::LoadedModel::from_gguf(p)?;
            let w = round_to_bf16(&m.weights);
            let g = GpuWeights::from_weights(gpu, &w, &p.display().to_string())?;
            Loaded { weights: Rc::new(g), host: if a.check_cpu { Some(w) } else { None }, tokenizer: Some(m.tokenizer) }
        }
        ModelSource::HfDir(dir, cfg) => {
            let st = super::hf::SafetensorsSource::open(dir)?;
            let g = GpuWeights::from_source(gpu, cfg, &st)?;
            let host = if a.check_cpu { Some(round_to_bf16(&Weights::load(cfg, &st)?)) } else { None };
            let tok = dir.join("tokenizer.json");
            let tokenizer = if tok.is_file() { Some(super::tokenizer::from_hf_file(&tok)?) } else { None };
            Loaded { weights: Rc::new(g), host, tokenizer }
        }
    })
}

#[allow(clippy::too_many_arguments)]
fn build_model(
    gpu: &Gpu,
    cache: &ModuleCache,
    w: Rc<GpuWeights>,
    reference: bool,
    shape: ModelShape,
    db: &Path,
    int4: Option<&Rc<Int4Store>>,
    cuda_graphs: bool,
) -> Result<(GpuModel, Vec<String>)> {
    let (choice, mut notes) =
        if reference { (OpChoice::reference(), vec![]) } else { OpChoice::tuned(gpu, cache, db, &w.config, &shape) };
    let ops = OpKernels::new(gpu, cache, choice)?;
    let linear = match (reference, int4) {
        (true, _) => LinearBackend::Cublas(Blas::new(gpu)?),
        (false, None) => LinearBackend::Tuned(Box::new(TunedGemm::new(gpu, cache, db)?)),
        (false, Some(store)) => LinearBackend::Int4 {
            store: store.clone(),
            int4: Box::new(TunedGemm::with_kind(gpu, cache, db, LinearKind::Int4 { group: MODEL_GROUP })?),
            dense: Box::new(TunedGemm::new(gpu, cache, db)?),
            scratch: None,
        },
    };
    if !reference && !db.exists() {
        notes.push(format!("no tuned database at {}: every GEMM uses its variant's template defaults", db.display()));
    }
    let mut model = GpuModel::new(gpu, w, ops, linear, shape)?;
    if cuda_graphs && !reference {
        model.enable_cuda_graphs(gpu)?;
    }
    Ok((model, notes))
}

/// Copy bandwidth (read + write, GB/s) of cuMemcpyDtoD on a large buffer, measured now.
fn copy_bandwidth(gpu: &Gpu) -> Result<f64> {
    let (free, _) = gpu.ctx.mem_get_info()?;
    let bytes = (1usize << 30).min(free / 4) & !0xFFFF;
    let a = gpu.alloc(bytes)?;
    let b = gpu.alloc(bytes)?;
    let copy = || {
        // SAFETY: both buffers hold `bytes` bytes; ordered on the stream.
        unsafe { cudarc::driver::result::memcpy_dtod_async(b.ptr, a.ptr, bytes, gpu.stream.cu_stream()) }
            .map_err(|e| anyhow::anyhow!("copy failed: {e:?}"))
    };
    for _ in 0..3 {
        copy()?;
    }
    let e0 = gpu.ctx.new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT))?;
    let e1 = gpu.ctx.new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT))?;
    let reps = 20;
    e0.record(&gpu.stream)?;
    for _ in 0..reps {
        copy()?;
    }
    e1.record(&gpu.stream)?;
    e1.synchronize()?;
    let ms = e0.elapsed_ms(&e1)? as f64 / reps as f64;
    Ok(2.0 * bytes as f64 / (ms * 1e-3) / 1e9)
}

fn mem_used_gib(gpu: &Gpu) -> f64 {
    gpu.ctx.mem_get_info().map(|(f, t)| (t - f) as f64 / (1u64 << 30) as f64).unwrap_or(0.0)
}

#[derive(Debug, Serialize)]
struct Report {
    model: String,
    gpu: String,
    path: String,
    copy_bw_gb_s: f64,
    rows: Vec<BenchRow>,
    gemm_plans: Vec<String>,
    notes: Vec<String>,
    validation: Vec<serde_json::Value>,
    hf: Option<hf_ref::HfComparison>,
    profile: Vec<(String, u64, f64)>,
}

pub fn run(a: E2eArgs) -> Result<ExitCode> {
    let src = resolve(&a)?;
    let hf = a.hf_reference.as_deref().map(HfReference::load).transpose()?;
    let gpu = Gpu::open(a.gpu)?;
    let cache = ModuleCache::open(&cache::default_dir())?;
    let util = Util::new(&gpu, &cache)?;
    let seed_ops = OpKernels::new(&gpu, &cache, OpChoice::reference())?;
    let db = a.db.clone().unwrap_or_else(crate::paths::default_db);
    let t_load = std::time::Instant::now();
    let loaded = load(&gpu, &util, &seed_ops, &src, &a)?;
    let w = loaded.weights.clone();
    let c = w.config.clone();
    println!("kernlab e2e — {} on {} (cc {})", c.name, gpu.props.name, gpu.props.cc());
    println!(
        "  weights: {} ({:.2} GB bf16, loaded in {:.1} s)",
        w.source,
        super::gpu::weights::weight_bytes(&c) as f64 / 1e9,
        t_load.elapsed().as_secs_f64()
    );
    let int4 = a.weights == "int4";
    let graphs = !a.no_cuda_graphs;
    // int4: quantize the layers' linears once; the reference path (and --validate) runs
    // cuBLAS on their dequantized values, i.e. the same weights the int4 kernels use.
    let store = if int4 {
        let t = std::time::Instant::now();
        let st = Rc::new(Int4Store::quantize(&gpu, &cache, &w)?);
        println!(
            "  int4: {} linears quantized on the GPU (RTN g{MODEL_GROUP} symmetric, bf16 scales): {:.2} GB bf16 → {:.2} GB in {:.1} s; lm_head stays bf16",
            st.len(),
            st.bf16_bytes as f64 / 1e9,
            st.int4_bytes as f64 / 1e9,
            t.elapsed().as_secs_f64()
        );
        Some(st)
    } else {
        None
    };
    let w_deq: Option<Rc<GpuWeights>> = match &store {
        Some(st) if a.reference || a.validate => Some(Rc::new(st.dequantized_copy(&gpu, &w)?)),
        _ => None,
    };
    // The weights the timed model runs on, and its int4 store (None on the reference path,
    // which runs cuBLAS on the dequantized weights).
    let (run_w, run_store) = match (&w_deq, a.reference) {
        (Some(d), true) => (d.clone(), None),
        _ => (w.clone(), store.as_ref()),
    };
    let path_name = match (a.reference, int4) {
        (true, false) => "reference (cuBLAS + plain kernels)",
        (false, false) => "tuned (kernlab families: gemm, rmsnorm, swiglu, rope, attention)",
        (true, true) => "reference on int4 weights (cuBLAS on the dequantized weights + plain kernels)",
        (false, true) => "tuned int4 (kernlab families: gemm_int4, rmsnorm, swiglu, rope, attention; lm_head on gemm)",
    };
    println!("  path: {path_name}");
    if graphs && !a.reference {
        println!("  decode steps: replayed as CUDA graphs (one per token count and attention split count; --no-cuda-graphs to issue every launch)");
    }

    let prompt_tokens: Option<Vec<u32>> = match &a.prompt {
        None => None,
        Some(text) => {
            let tok = loaded
                .tokenizer
                .as_ref()
                .context("--prompt TEXT needs a tokenizer: this model has none (use random token prompts)")?;
            let mut ids = c.bos_token_id.map(|b| vec![b]).unwrap_or_default();
            ids.extend(super::tokenizer::encode(tok, text)?);
            check_fits(&c, &a, ids.len())?;
            Some(ids)
        }
    };
    let sampling = if a.temperature > 0.0 {
        Sampling::TopP { temperature: a.temperature, top_p: a.top_p, seed: a.seed }
    } else {
        Sampling::Greedy
    };
    let eos: Vec<u32> = if a.ignore_eos { vec![] } else { c.eos_token_ids.clone() };

    let copy_bw = copy_bandwidth(&gpu)?;
    println!("  copy bandwidth (cuMemcpyDtoD, read + write): {copy_bw:.0} GB/s");
    let mut report = Report {
        model: c.name.clone(),
        gpu: gpu.props.name.clone(),
        path: path_name.into(),
        copy_bw_gb_s: copy_bw,
        rows: vec![],
        gemm_plans: vec![],
        notes: vec![],
        validation: vec![],
        hf: None,
        profile: vec![],
    };
    let mut all_ok = true;

    for &batch in &a.batch {
        let prompts = match &prompt_tokens {
            Some(p) => vec![p.clone(); batch],
            None => random_prompts(batch, a.prompt_len, c.vocab_size, a.seed, a.ragged),
        };
        let max_prompt = prompts.iter().map(Vec::len).max().unwrap_or(1);
        let shape = ModelShape {
            batch,
            max_seq: max_prompt + a.gen_len,
            max_step_tokens: prompts.iter().map(Vec::len).sum::<usize>().max(batch),
        };
        let (mut model, notes) = build_model(&gpu, &cache, run_w.clone(), a.reference, shape, &db, run_store, graphs)?;
        for n in notes {
            if !report.notes.contains(&n) {
                println!("  note: {n}");
                report.notes.push(n);
            }
        }
        // Warm-up: compiles and plans every GEMM shape of prefill and decode.
        generate(&gpu, &mut model, &prompts, a.gen_len.min(4), sampling, &eos, || {})?;
        let pb = indicatif::ProgressBar::new((a.runs * a.gen_len) as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template("  batch {msg} [{bar:30}] {pos}/{len} tokens {elapsed}")
                .unwrap()
                .progress_chars("=> "),
        );
        pb.set_message(batch.to_string());
        let mut runs: Vec<GenResult> = vec![];
        for _ in 0..a.runs {
            runs.push(generate(&gpu, &mut model, &prompts, a.gen_len, sampling, &eos, || pb.inc(1))?);
        }
        pb.finish_and_clear();
        let peak = mem_used_gib(&gpu);
        let n = runs.len() as f64;
        let total_tokens: usize = runs.iter().map(GenResult::generated).sum();
        let total_s: f64 = runs.iter().map(|r| r.total_s).sum();
        let steps: usize = runs.iter().map(|r| r.decode_steps).sum();
        let step_ms =
            if steps > 0 { runs.iter().map(|r| r.total_s - r.ttft_s).sum::<f64>() * 1e3 / steps as f64 } else { 0.0 };
        let kv_per_step = if steps > 0 {
            kv_bytes_read(&c, &[runs.iter().map(|r| r.kv_positions_read).sum::<usize>()]) as f64 / steps as f64
        } else {
            0.0
        };
        // int4: the layers' linears are read as codes + scales instead of bf16.
        let weight_step_bytes = match &store {
            Some(st) if !a.reference => weight_bytes_per_decode_step(&c, batch) - st.bf16_bytes + st.int4_bytes,
            _ => weight_bytes_per_decode_step(&c, batch),
        } as f64;
        let bytes_per_step = weight_step_bytes + kv_per_step;
        let achieved = if step_ms > 0.0 { bytes_per_step / (step_ms * 1e-3) / 1e9 } else { 0.0 };
        let mut rows = vec![BenchRow {
            label: match (a.reference, int4) {
                (true, false) => "kernlab ref".into(),
                (false, false) => "kernlab tuned".into(),
                (true, true) => "kernlab ref int4-deq".into(),
                (false, true) => "kernlab int4".into(),
            },
            batch,
            throughput_tok_s: total_tokens as f64 / total_s,
            mean_latency_s: total_s / n,
            total_tokens,
            tokens_per_run: total_tokens as f64 / n,
            ttft_ms: Some(runs.iter().map(|r| r.ttft_s).sum::<f64>() * 1e3 / n),
            decode_step_ms: Some(step_ms),
            peak_mem_gib: Some(peak),
            achieved_gb_s: Some(achieved),
            bw_bound_pct: Some(100.0 * achieved / copy_bw),
        }];
        if let Some(h) = &hf {
            rows.extend(hf_rows(&h.timings, batch));
        }
        println!();
        print!("{}", format_table(&rows));
        println!(
            "  bound: {:.1} MB per decode step (weights {:.1} + KV {:.1}) → {:.3} ms at {copy_bw:.0} GB/s",
            bytes_per_step / 1e6,
            weight_step_bytes / 1e6,
            kv_per_step / 1e6,
            bytes_per_step / copy_bw / 1e6
        );
        for t in model.linear.planners() {
            for n in &t.notes {
                if !report.gemm_plans.contains(n) {
                    report.gemm_plans.push(n.clone());
                }
            }
        }
        report.rows.extend(rows);

        if a.profile {
            model.profiler = Some(Profiler::default());
            generate(&gpu, &mut model, &prompts, a.gen_len, sampling, &eos, || {})?;
            let p = model.profiler.take().unwrap();
            println!("\nprofile (batch {batch}, one run of prefill + {} decode steps, CUDA events):", a.gen_len - 1);
            print!("{}", format_profile(&p.totals));
            for (k, t) in &p.totals {
                report.profile.push((format!("b{batch} {}", k.name()), t.calls, t.total_ms));
            }
        }

        if a.validate {
            // The other path on the same weights: the tuned path (int4: on the int4 store), or
            // the reference path (int4: cuBLAS on the dequantized weights).
            let (other_w, other_store) = if a.reference {
                (w.clone(), store.as_ref())
            } else {
                (w_deq.clone().unwrap_or_else(|| w.clone()), None)
            };
            let (mut other, _) = build_model(&gpu, &cache, other_w, !a.reference, shape, &db, other_store, graphs)?;
            let (r, t) = if a.reference { (&mut model, &mut other) } else { (&mut other, &mut model) };
            let cmp = compare_paths(&gpu, &util, r, t, &prompts, a.gen_len)?;
            let ok = cmp.passes(3e-2);
            all_ok &= ok;
            println!(
                "\nvalidate (batch {batch}): tuned vs reference, {} steps teacher-forced: max rel logit error {:.2e} (max abs {:.3}), greedy agreement {}/{} ({:.1}%), {} of {} disagreements not at a near-tie (reference top-2 gap > {:.3}) {}",
                a.gen_len,
                cmp.max_rel_logit_err,
                cmp.max_abs_logit_err,
                cmp.agreed,
                cmp.compared,
                100.0 * cmp.agreed as f64 / cmp.compared.max(1) as f64,
                cmp.unexplained(),
                cmp.disagreements.len(),
                cmp.tie_tolerance(),
                if ok { "PASS" } else { "FAIL" }
            );
            for (b, s, rt, tt, gap) in cmp.disagreements.iter().take(8) {
                println!("  seq {b} step {s}: reference {rt}, tuned {tt}, reference top-2 gap {gap:.4}");
            }
            report.validation.push(serde_json::json!({"kind": "tuned_vs_reference", "batch": batch, "max_rel_logit_err": cmp.max_rel_logit_err,
                "max_abs_logit_err": cmp.max_abs_logit_err, "agreed": cmp.agreed, "compared": cmp.compared,
                "unexplained_disagreements": cmp.unexplained(), "tie_tolerance": cmp.tie_tolerance(), "pass": ok}));
            if int4 {
                // What quantization costs: the bf16 model (tuned) vs the int4 model, teacher-
                // forced on the bf16 model's tokens. Informational: RTN error is a property of
                // the weights, not a kernel bug, and random weights are full of near-ties.
                // `t` is the int4 tuned model either way.
                let (mut dense, _) = build_model(&gpu, &cache, w.clone(), false, shape, &db, None, graphs)?;
                let e = compare_paths(&gpu, &util, &mut dense, t, &prompts, a.gen_len)?;
                println!(
                    "quantization effect (batch {batch}): int4 vs bf16 weights, {} steps teacher-forced: max rel logit error {:.2e}, top-1 agreement {}/{} ({:.1}%)",
                    a.gen_len,
                    e.max_rel_logit_err,
                    e.agreed,
                    e.compared,
                    100.0 * e.agreed as f64 / e.compared.max(1) as f64
                );
                report.validation.push(serde_json::json!({"kind": "int4_vs_bf16_weights", "batch": batch, "max_rel_logit_err": e.max_rel_logit_err,
                    "max_abs_logit_err": e.max_abs_logit_err, "agreed": e.agreed, "compared": e.compared}));
            }
        }

        if let Some(host) = &loaded.host {
            let ok = check_cpu(&gpu, &mut model, host, &prompts, a.gen_len.min(32), &mut report)?;
            all_ok &= ok;
        }
    }

    if let Some(h) = &hf {
        let max_prompt = h.prompts.iter().map(Vec::len).max().unwrap_or(1);
        let steps = h.greedy.iter().map(Vec::len).min().unwrap_or(1);
        let shape = ModelShape {
            batch: h.prompts.len(),
            max_seq: max_prompt + steps + 1,
            max_step_tokens: h.prompts.iter().map(Vec::len).sum(),
        };
        let (mut model, _) = build_model(&gpu, &cache, w.clone(), a.reference, shape, &db, None, graphs)?;
        let cmp = hf_ref::compare(&gpu, &mut model, h, 5e-2, 32)?;
        println!("\n{}", cmp.report());
        println!("  HF reference measured on {} (torch {}, transformers {})", h.device, h.torch, h.transformers);
        all_ok &= cmp.pass;
        report.hf = Some(cmp);
    }

    let stem = a.out.clone().unwrap_or_else(|| {
        crate::paths::reports_dir().join(format!("e2e-{}", chrono::Utc::now().format("%Y%m%d-%H%M%S")))
    });
    if let Some(d) = stem.parent() {
        if !d.as_os_str().is_empty() {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
    }
    let json_path = stem.with_extension("json");
    let csv_path = stem.with_extension("csv");
    std::fs::write(&json_path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    std::fs::write(&csv_path, to_csv(&report.rows, &c.name, &gpu.props.name, path_name)?)
        .with_context(|| format!("writing {}", csv_path.display()))?;
    println!("\nresults: {} and {}", json_path.display(), csv_path.display());
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// GPU path vs the f32 CPU reference on the same (bf16-rounded) weights: first-step logits
/// of every prompt and greedy tokens.
fn check_cpu(
    gpu: &Gpu,
    model: &mut GpuModel,
    host: &Weights,
    prompts: &[Vec<u32>],
    steps: usize,
    report: &mut Report,
) -> Result<bool> {
    use super::cpu_ref;
    let gen = generate(gpu, model, prompts, steps, Sampling::Greedy, &[], || {})?;
    model.forward(gpu, &super::gpu::model::Step::prefill(prompts))?;
    let gl = model.logits(gpu)?;
    let mut all_ok = true;
    for (b, p) in prompts.iter().enumerate() {
        let mut kv = cpu_ref::KvCache::new(host, p.len() + 1);
        let cl = cpu_ref::forward(host, &mut kv, p, cpu_ref::Logits::Last)?;
        let (d, m) = gl[b]
            .iter()
            .zip(&cl)
            .fold((0f64, 0f64), |(d, m), (x, y)| (d.max((x - y).abs() as f64), m.max(y.abs() as f64)));
        let rel = d / m.max(1e-30);
        let cg = cpu_ref::generate_greedy(host, p, steps, &[])?;
        let n = cg.tokens.len().min(gen.tokens[b].len());
        let first = (0..n).find(|&i| cg.tokens[i] != gen.tokens[b][i]);
        let agree = first.unwrap_or(n);
        let tie = first.map(|i| cg.top2[i][0].1 - cg.top2[i][1].1);
        let ok = rel <= 3e-2
            && (first.is_none() || tie.map(|g| g.abs() <= 4.0 * d as f32).unwrap_or(false) || agree >= 32.min(n));
        all_ok &= ok;
        println!(
            "check-cpu seq {b} (prompt {} tokens): first-step logits max rel err {rel:.2e} (max abs {d:.4}); greedy {agree}/{n} agree{} {}",
            p.len(),
            tie.map(|g| format!(", diverges at CPU top-2 gap {g:.4}")).unwrap_or_default(),
            if ok { "PASS" } else { "FAIL" }
        );
        report.validation.push(serde_json::json!({"kind": "gpu_vs_cpu", "seq": b, "max_rel_logit_err": rel, "greedy_agree": agree, "compared": n, "pass": ok}));
    }
    Ok(all_ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: E2eArgs,
    }

    fn args(v: &[&str]) -> E2eArgs {
        T::try_parse_from(std::iter::once("e2e").chain(v.iter().copied())).unwrap().a
    }

    #[test]
    fn defaults_and_lists() {
        let a = args(&[]);
        assert_eq!((a.batch.clone(), a.prompt_len, a.gen_len, a.runs), (vec![1], 128, 256, 3));
        assert_eq!(resolve(&a).unwrap(), ModelSource::Random(LlamaConfig::preset("llama3-8b").unwrap()));
        assert_eq!(args(&["--batch", "1,8"]).batch, vec![1, 8]);
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let e = |v: &[&str]| format!("{:#}", resolve(&args(v)).unwrap_err());
        assert!(e(&["--model", "/nonexistent/model.gguf"]).contains("does not exist"));
        assert!(e(&["--preset", "tiny", "--prompt-len", "200", "--gen-len", "100"]).contains("context"));
        // Near usize::MAX the sum must not wrap around to something that fits.
        let huge = (usize::MAX - 10).to_string();
        assert!(e(&["--preset", "tiny", "--prompt-len", &huge, "--gen-len", "100"]).contains("context"));
        assert!(e(&["--prompt-len", &usize::MAX.to_string(), "--gen-len", "1"]).contains("context"));
        assert!(e(&["--batch", "0"]).contains("--batch"));
        assert!(e(&["--preset", "nope"]).contains("unknown model preset"));
        assert!(e(&["--hf-reference", "x.json"]).contains("--model"));
        assert!(e(&["--top-p", "0"]).contains("top-p"));
        let dir = tempfile::tempdir().unwrap();
        assert!(e(&["--model", dir.path().to_str().unwrap()]).contains("config.json"));
        let f = dir.path().join("w.bin");
        std::fs::write(&f, b"x").unwrap();
        assert!(e(&["--model", f.to_str().unwrap()]).contains(".gguf"));
    }

    #[test]
    fn prompts_are_seeded_and_ragged() {
        let p = random_prompts(4, 128, 1000, 3, true);
        assert_eq!(p.iter().map(Vec::len).collect::<Vec<_>>(), vec![128, 112, 96, 80]);
        assert_eq!(p, random_prompts(4, 128, 1000, 3, true));
        assert!(p.iter().flatten().all(|&t| t < 1000));
        assert!(random_prompts(2, 16, 1000, 3, false).iter().all(|q| q.len() == 16));
    }

    #[test]
    fn table_on_synthetic_numbers() {
        let ours = BenchRow {
            label: "kernlab tuned".into(),
            batch: 8,
            throughput_tok_s: 1234.56,
            mean_latency_s: 1.659,
            total_tokens: 6144,
            tokens_per_run: 2048.0,
            ttft_ms: Some(42.0),
            decode_step_ms: Some(6.25),
            peak_mem_gib: Some(17.5),
            achieved_gb_s: Some(2600.0),
            bw_bound_pct: Some(81.25),
        };
        let hf = hf_rows(
            &[
                HfTiming {
                    mode: "eager".into(),
                    batch: 8,
                    prompt_len: 128,
                    new_tokens: 256,
                    seconds: 20.0,
                    tokens_per_s: 102.4,
                    error: None,
                },
                HfTiming {
                    mode: "eager".into(),
                    batch: 1,
                    prompt_len: 128,
                    new_tokens: 256,
                    seconds: 18.0,
                    tokens_per_s: 14.2,
                    error: None,
                },
            ],
            8,
        );
        assert_eq!(hf.len(), 1);
        let t = format_table(&[ours.clone(), hf[0].clone()]);
        for s in [
            "Throughput (tokens/s)",
            "1234.6",
            "Mean Latency (s)",
            "1.659",
            "Total Tokens",
            "6144",
            "Tokens/Run",
            "2048",
            "Batch Size",
            "HF eager",
            "102.4",
            "81.2",
            "78.125",
            "—",
        ] {
            assert!(t.contains(s), "missing {s}:\n{t}");
        }
        // Every line is as wide as the header line.
        let widths: Vec<usize> = t.lines().map(|l| l.chars().count()).collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "{t}");
        let csv = to_csv(&[ours], "llama3-8b", "H100", "tuned").unwrap();
        assert!(csv.lines().nth(1).unwrap().starts_with("kernlab tuned,llama3-8b,H100,tuned,8,1234.56"), "{csv}");
    }
}
