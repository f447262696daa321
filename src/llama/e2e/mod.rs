//! `kernlab e2e`: Llama-3 end to end on the GPU — the generated text, the benchmark table,
//! validation of the tuned path against the reference path, the CPU reference and Hugging
//! Face transformers.
//!
//! * [`args`]: the flags and their checks (no GPU)
//! * [`load`]: weights, model instances and the copy-bandwidth measurement
//! * [`text`]: prompts through the chat template, streamed output
//! * [`table`]: the benchmark table and CSV
//! * [`validate`]: tuned vs reference, int4 vs bf16, GPU vs the CPU reference

mod args;
mod bound;
mod load;
mod table;
pub mod text;
mod validate;

pub use args::{check_fits, random_prompts, resolve, E2eArgs, ModelSource};
pub use table::{format_table, hf_rows, to_csv, BenchRow};

use crate::gpu::cache::{self, ModuleCache};
use crate::gpu::device::Gpu;
use crate::gpu::util::Util;
use crate::kernels::gemm_int4::ZeroMode;
use crate::llama::gpu::generate::{generate, GenResult, Sampling};
use crate::llama::gpu::hf_ref::{self, HfReference};
use crate::llama::gpu::int4_group::choose_group;
use crate::llama::gpu::model::{kv_bytes_read, GpuModel, ModelShape};
use crate::llama::gpu::op_choice::OpChoice;
use crate::llama::gpu::ops::OpKernels;
use crate::llama::gpu::profile::{format_profile, Profiler};
use crate::llama::gpu::quant_weights::{QuantStore, RtnPlan};
use crate::llama::gpu::weights::{weight_bytes_per_decode_step, GpuWeights};
use anyhow::{bail, Context, Result};
use load::build_model;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;

/// Everything an e2e run measured, written as `<out>.json`.
#[derive(Debug, Serialize)]
struct Report {
    model: String,
    gpu: String,
    path: String,
    /// The layer linears' weight format: "bf16", or "int4 g128 symmetric" and the like.
    weights: String,
    /// How decode steps were launched: "cuda graphs + pdl", "cuda graphs", "every launch".
    decode_launch: String,
    /// The copy rate (read + write) behind the bound, kept for readers of older reports.
    copy_bw_gb_s: f64,
    /// What "% of DRAM bound" divides by: the roofline's DRAM ceiling.
    dram_bound: bound::DramBound,
    /// The prompt as typed and as fed (after the chat template), when `--prompt` was given.
    prompt: Option<text::Prompt>,
    /// The generated text per batch size (sequence 0; every sequence has the same prompt).
    text: Vec<GeneratedText>,
    rows: Vec<BenchRow>,
    gemm_plans: Vec<String>,
    notes: Vec<String>,
    validation: Vec<serde_json::Value>,
    hf: Option<hf_ref::HfComparison>,
    profile: Vec<(String, u64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
struct GeneratedText {
    batch: usize,
    sampling: String,
    tokens: Vec<u32>,
    text: String,
}

/// The weights one run works on, as the flags chose them.
struct Setup {
    gpu: Gpu,
    cache: ModuleCache,
    util: Util,
    db: PathBuf,
    loaded: load::Loaded,
    /// int4: the quantized linears; their dequantized copy where the reference path or
    /// --validate needs cuBLAS on the same values.
    store: Option<Rc<QuantStore>>,
    w_deq: Option<Rc<GpuWeights>>,
    path_name: &'static str,
}

impl Setup {
    /// The weights the timed model runs on, and its int4 store (None on the reference path,
    /// which runs cuBLAS on the dequantized weights).
    fn timed_weights(&self, a: &E2eArgs) -> (Rc<GpuWeights>, Option<&Rc<QuantStore>>) {
        match (&self.w_deq, a.reference) {
            (Some(d), true) => (d.clone(), None),
            _ => (self.loaded.weights.clone(), self.store.as_ref()),
        }
    }
}

pub fn run(a: E2eArgs) -> Result<ExitCode> {
    let src = resolve(&a)?;
    // --json: stdout is the report alone; everything printed on the way goes to stderr.
    let to_stderr = if a.json {
        Some(gag::Redirect::stdout(std::io::stderr()).context("sending the progress output to stderr for --json")?)
    } else {
        None
    };
    let (code, report) = run_to_report(&a, src)?;
    if let Some(redirect) = to_stderr {
        use std::io::Write as _;
        std::io::stdout().flush()?;
        drop(redirect);
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(code)
}

fn run_to_report(a: &E2eArgs, src: ModelSource) -> Result<(ExitCode, Report)> {
    let a = a.clone();
    let hf = a.hf_reference.as_deref().map(HfReference::load).transpose()?;
    let s = setup(&a, &src)?;
    let c = s.loaded.weights.config.clone();
    let prompt = match &a.prompt {
        None => None,
        Some(user) => {
            let m = s.loaded.text.as_ref().context(
                "--prompt TEXT needs a tokenizer: this model has none (use random token prompts, or a GGUF file or \
                 a Hugging Face directory with tokenizer.json)",
            )?;
            let p = text::prepare(m, user, a.system.as_deref(), a.raw_prompt)?;
            check_fits(&c, &a, p.ids.len())?;
            Some(p)
        }
    };
    if let Some(p) = &prompt {
        let how = if p.chat_template { "the model's chat template" } else { "as typed" };
        println!("  prompt: {} tokens ({how})", p.ids.len());
    }
    let dram = bound::dram_bound(&s.gpu, &s.cache)?;
    println!("  {}", dram.line());
    let mut report = Report {
        model: c.name.clone(),
        gpu: s.gpu.props.name.clone(),
        path: s.path_name.into(),
        weights: match &s.store {
            Some(st) if st.is_int8() => format!("int8 {} (lm_head bf16)", st.origin),
            Some(st) => format!("int4 {} (lm_head {})", st.origin, if st.lm_head { "int4" } else { "bf16" }),
            None => "bf16".into(),
        },
        decode_launch: match (a.no_cuda_graphs || a.reference, a.no_pdl || !s.gpu.supports_pdl()) {
            (true, _) => "every launch".into(),
            (false, true) => "cuda graphs".into(),
            (false, false) => "cuda graphs + pdl".into(),
        },
        copy_bw_gb_s: dram.copy_gb_s,
        dram_bound: dram.clone(),
        prompt: prompt.clone(),
        text: vec![],
        rows: vec![],
        gemm_plans: vec![],
        notes: vec![],
        validation: vec![],
        hf: None,
        profile: vec![],
    };
    let mut all_ok = true;
    for &batch in &a.batch {
        let prompts = match &prompt {
            Some(p) => vec![p.ids.clone(); batch],
            None => random_prompts(batch, a.prompt_len, c.vocab_size, a.seed, a.ragged),
        };
        all_ok &= run_batch(&s, &a, &prompts, dram.gb_s, hf.as_ref(), &mut report)?;
    }
    if let Some(h) = &hf {
        all_ok &= validate::against_hf(&s.gpu, &s.cache, &s.db, s.loaded.weights.clone(), &a, h, &mut report)?;
    }
    write_report(&a, &report, &c.name)?;
    Ok((if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }, report))
}

/// Opens the GPU, loads the weights and, for int4, quantizes them; prints what it did.
fn setup(a: &E2eArgs, src: &ModelSource) -> Result<Setup> {
    let gpu = Gpu::open(a.gpu)?;
    let cache = ModuleCache::open(&cache::default_dir())?;
    let util = Util::new(&gpu, &cache)?;
    let seed_ops = OpKernels::new(&gpu, &cache, OpChoice::reference())?;
    let db = a.db.clone().unwrap_or_else(crate::paths::default_db);
    let t_load = std::time::Instant::now();
    let mut loaded = load::load(&gpu, &util, &seed_ops, src, a)?;
    let checkpoint = loaded.checkpoint.take();
    let w = loaded.weights.clone();
    let c = &w.config;
    println!("kernlab e2e — {} on {} (cc {})", c.name, gpu.props.name, gpu.props.cc());
    println!(
        "  weights: {} ({:.2} GB bf16, loaded in {:.1} s)",
        w.source,
        crate::llama::gpu::weights::weight_bytes(c) as f64 / 1e9,
        t_load.elapsed().as_secs_f64()
    );
    let int4 = a.weights == "int4";
    let quantized = a.weights != "bf16";
    // int4: quantize the layers' linears once; the reference path (and --validate) runs
    // cuBLAS on their dequantized values, i.e. the same weights the int4 kernels use.
    let store = if let Some(ck) = checkpoint {
        let how = &ck.how;
        if a.int4_group.is_some() || a.int4_lm_head || a.int4_zeros || a.int4_act_order || a.int4_keep_bf16.is_some() {
            bail!("--int4-group, --int4-zeros, --int4-act-order, --int4-keep-bf16 and --int4-lm-head quantize on the GPU; a {how} checkpoint brings its own int4 weights: leave them out");
        }
        let t = std::time::Instant::now();
        let origin = format!("{how} checkpoint");
        let st = Rc::new(QuantStore::from_checkpoint(&gpu, &cache, &w, ck.linears, ck.per_channel, origin)?);
        println!(
            "  int4: {} linears from the {how} checkpoint ({:?} zero points, {} scales): {:.2} GB in {:.1} s; lm_head stays bf16",
            st.len(),
            st.int4_format()?.zeros,
            st.int4_format()?.scale_dtype,
            st.quant_bytes as f64 / 1e9,
            t.elapsed().as_secs_f64()
        );
        Some(st)
    } else if a.weights == "int8" {
        let t = std::time::Instant::now();
        let keep = a.int4_keep_bf16.clone().map(|l| l.0).unwrap_or_default();
        let st = Rc::new(QuantStore::quantize_int8(&gpu, &cache, &w, &keep)?);
        say_quantized("int8", &st, t, "lm_head stays bf16");
        Some(st)
    } else if int4 {
        let t = std::time::Instant::now();
        let group = choose_group(c, a.int4_group)?;
        // The interleaved gate+up copy only serves the tuned path's fused decode kernel.
        let interleave = !a.no_fuse && !a.reference;
        let plan = RtnPlan {
            group,
            zeros: if a.int4_zeros { ZeroMode::Int } else { ZeroMode::Symmetric },
            lm_head: a.int4_lm_head,
            interleave_gate_up: interleave,
            act_order: a.int4_act_order,
            keep_bf16: a.int4_keep_bf16.clone().map(|l| l.0).unwrap_or_default(),
        };
        let st = Rc::new(QuantStore::quantize(&gpu, &cache, &w, &plan)?);
        let lm_head = if st.lm_head { "lm_head int4 too (--int4-lm-head)" } else { "lm_head stays bf16" };
        say_quantized("int4", &st, t, lm_head);
        if !st.kept_bf16.is_empty() {
            let names: Vec<String> = st.kept_bf16.iter().map(|r| r.to_string()).collect();
            println!("  int4: {} linears kept in bf16 (--int4-keep-bf16): {}", names.len(), names.join(","));
        }
        if st.interleaved_bytes > 0 {
            println!(
                "  int4: gate+up also kept row-interleaved for the fused gate+up+SwiGLU decode kernel ({:.2} GB; --no-fuse runs them apart)",
                st.interleaved_bytes as f64 / 1e9
            );
        }
        Some(st)
    } else {
        None
    };
    let w_deq = match &store {
        Some(st) if a.reference || a.validate => Some(Rc::new(st.dequantized_copy(&gpu, &w)?)),
        _ => None,
    };
    let path_name = match (a.reference, quantized) {
        (true, true) if !int4 => "reference on int8 weights (cuBLAS on the dequantized weights + plain kernels)",
        (false, true) if !int4 => {
            "tuned int8 (kernlab families: gemm_int8, rmsnorm, swiglu, rope, attention; lm_head on gemm)"
        }
        (true, false) => "reference (cuBLAS + plain kernels)",
        (false, false) => "tuned (kernlab families: gemm, rmsnorm, swiglu, rope, attention)",
        (true, true) => "reference on int4 weights (cuBLAS on the dequantized weights + plain kernels)",
        (false, true) => "tuned int4 (kernlab families: gemm_int4, rmsnorm, swiglu, rope, attention; lm_head on gemm)",
    };
    println!("  path: {path_name}");
    if !a.no_cuda_graphs && !a.reference {
        println!("  decode steps: replayed as CUDA graphs (one per token count and attention split count; --no-cuda-graphs to issue every launch)");
        if !a.no_pdl && gpu.supports_pdl() {
            println!("  decode kernels: programmatic dependent launch inside the graphs (each starts fetching its weights while the kernel before it drains; --no-pdl to serialize them)");
        }
    }
    Ok(Setup { gpu, cache, util, db, loaded, store, w_deq, path_name })
}

/// The line that says what quantizing the model's linears on the GPU gave (`kind`: int4
/// or int8; `lm_head`: what became of the lm_head), timed from `t`.
fn say_quantized(kind: &str, st: &QuantStore, t: std::time::Instant, lm_head: &str) {
    println!(
        "  {kind}: {} linears quantized on the GPU ({}): {:.2} GB bf16 → {:.2} GB in {:.1} s; {lm_head}",
        st.len(),
        st.origin,
        st.bf16_bytes as f64 / 1e9,
        st.quant_bytes as f64 / 1e9,
        t.elapsed().as_secs_f64()
    );
}

fn sampling(a: &E2eArgs) -> Sampling {
    if a.temperature > 0.0 {
        Sampling::Sample { temperature: a.temperature, top_k: a.top_k, top_p: a.top_p, seed: a.seed }
    } else {
        Sampling::Greedy
    }
}

fn eos(a: &E2eArgs, s: &Setup) -> Vec<u32> {
    if a.ignore_eos {
        vec![]
    } else {
        s.loaded.weights.config.eos_token_ids.clone()
    }
}

/// What each run of one batch generates from: its prompts, the sampling and the tokens that
/// end a sequence.
#[derive(Clone, Copy)]
struct BatchJob<'a> {
    prompts: &'a [Vec<u32>],
    sampling: Sampling,
    eos: &'a [u32],
}

/// One batch size: build the model, show the text (with --prompt), time the runs, then the
/// profile and the checks the flags ask for. Returns whether every check passed.
fn run_batch(
    s: &Setup,
    a: &E2eArgs,
    prompts: &[Vec<u32>],
    dram_gb_s: f64,
    hf: Option<&HfReference>,
    report: &mut Report,
) -> Result<bool> {
    let batch = prompts.len();
    let (run_w, run_store) = s.timed_weights(a);
    let shape = ModelShape {
        batch,
        max_seq: prompts.iter().map(Vec::len).max().unwrap_or(1) + a.gen_len,
        max_step_tokens: prompts.iter().map(Vec::len).sum::<usize>().max(batch),
    };
    let graphs = load::DecodeLaunch::from_args(a);
    let (mut model, notes) = build_model(&s.gpu, &s.cache, run_w, a.reference, shape, &s.db, run_store, graphs)?;
    for n in notes {
        if !report.notes.contains(&n) {
            println!("  note: {n}");
            report.notes.push(n);
        }
    }
    let (sampling, eos) = (sampling(a), eos(a, s));
    let job = BatchJob { prompts, sampling, eos: &eos };
    // Warm-up: compiles and plans every GEMM shape of prefill and decode.
    generate(&s.gpu, &mut model, prompts, a.gen_len.min(4), sampling, &eos, |_| {})?;
    if a.prompt.is_some() {
        report.text.push(stream_text(s, &mut model, a, job)?);
    }
    let runs = timed_runs(s, &mut model, a, job)?;
    let rows = bench_rows(s, a, &runs, batch, dram_gb_s, hf);
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
        generate(&s.gpu, &mut model, prompts, a.gen_len, sampling, &eos, |_| {})?;
        let p = model.profiler.take().context("the profiler was not kept")?;
        println!("\nprofile (batch {batch}, one run of prefill + {} decode steps, CUDA events):", a.gen_len - 1);
        print!("{}", format_profile(&p.totals));
        for (k, t) in &p.totals {
            report.profile.push((format!("b{batch} {}", k.name()), t.calls, t.total_ms));
        }
    }
    let mut ok = true;
    if a.validate {
        ok &= validate::paths(s, a, &mut model, prompts, shape, report)?;
    }
    if let Some(host) = &s.loaded.host {
        let text = s.loaded.text.as_ref().map(|t| &t.tokenizer);
        ok &= validate::against_cpu(&s.gpu, &mut model, host, text, prompts, a.gen_len.min(32), report)?;
    }
    Ok(ok)
}

/// One untimed run whose sequence-0 text is printed as it arrives (the same sampling and
/// seed as the timed runs, so greedy text is the text they produce).
fn stream_text(s: &Setup, model: &mut GpuModel, a: &E2eArgs, job: BatchJob) -> Result<GeneratedText> {
    let BatchJob { prompts, sampling, eos } = job;
    let tok = &s.loaded.text.as_ref().context("streaming text needs the tokenizer")?.tokenizer;
    let mut streamer = text::Streamer::new(tok, eos);
    let mut out = std::io::stdout();
    println!("\n--- batch {} · {} ---", prompts.len(), describe(sampling));
    let r = generate(&s.gpu, model, prompts, a.gen_len, sampling, eos, |t| {
        streamer.step(&t[0], &mut out);
    })?;
    println!("\n---");
    Ok(GeneratedText {
        batch: prompts.len(),
        sampling: describe(sampling),
        tokens: r.tokens[0].clone(),
        text: streamer.text(&r.tokens[0]),
    })
}

fn describe(s: Sampling) -> String {
    match s {
        Sampling::Greedy => "greedy".into(),
        Sampling::Sample { temperature, top_k, top_p, seed } => {
            format!("temperature {temperature}, top-k {top_k}, top-p {top_p}, seed {seed}")
        }
    }
}

fn timed_runs(s: &Setup, model: &mut GpuModel, a: &E2eArgs, job: BatchJob) -> Result<Vec<GenResult>> {
    let BatchJob { prompts, sampling, eos } = job;
    let pb = indicatif::ProgressBar::new((a.runs * a.gen_len) as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template("  batch {msg} [{bar:30}] {pos}/{len} tokens {elapsed}")
            .expect("a valid progress template")
            .progress_chars("=> "),
    );
    pb.set_message(prompts.len().to_string());
    let mut runs = vec![];
    for _ in 0..a.runs {
        runs.push(generate(&s.gpu, model, prompts, a.gen_len, sampling, eos, |_| pb.inc(1))?);
    }
    pb.finish_and_clear();
    Ok(runs)
}

/// kernlab's column (and HF's, if it timed this batch size) from the timed runs; printed.
fn bench_rows(
    s: &Setup,
    a: &E2eArgs,
    runs: &[GenResult],
    batch: usize,
    dram_gb_s: f64,
    hf: Option<&HfReference>,
) -> Vec<BenchRow> {
    let c = &s.loaded.weights.config;
    let n = runs.len() as f64;
    let total_tokens: usize = runs.iter().map(GenResult::generated).sum();
    let total_s: f64 = runs.iter().map(|r| r.total_s).sum();
    let steps: usize = runs.iter().map(|r| r.decode_steps).sum();
    let step_ms =
        if steps > 0 { runs.iter().map(|r| r.total_s - r.ttft_s).sum::<f64>() * 1e3 / steps as f64 } else { 0.0 };
    let kv_per_step = if steps > 0 {
        kv_bytes_read(c, &[runs.iter().map(|r| r.kv_positions_read).sum::<usize>()]) as f64 / steps as f64
    } else {
        0.0
    };
    // int4: the layers' linears are read as codes + scales instead of bf16.
    let weight_step_bytes = match &s.store {
        Some(st) if !a.reference => weight_bytes_per_decode_step(c, batch) - st.bf16_bytes + st.quant_bytes,
        _ => weight_bytes_per_decode_step(c, batch),
    } as f64;
    let bytes_per_step = weight_step_bytes + kv_per_step;
    let achieved = if step_ms > 0.0 { bytes_per_step / (step_ms * 1e-3) / 1e9 } else { 0.0 };
    let mut rows = vec![BenchRow {
        label: match (a.reference, s.store.is_some()) {
            (true, false) => "kernlab ref".into(),
            (false, false) => "kernlab tuned".into(),
            (true, true) => format!("kernlab ref {}-deq", a.weights),
            (false, true) => format!("kernlab {}", a.weights),
        },
        batch,
        throughput_tok_s: total_tokens as f64 / total_s,
        mean_latency_s: total_s / n,
        total_tokens,
        tokens_per_run: total_tokens as f64 / n,
        ttft_ms: Some(runs.iter().map(|r| r.ttft_s).sum::<f64>() * 1e3 / n),
        decode_step_ms: Some(step_ms),
        peak_mem_gib: Some(load::mem_used_gib(&s.gpu)),
        achieved_gb_s: Some(achieved),
        bw_bound_pct: Some(100.0 * achieved / dram_gb_s),
    }];
    if let Some(h) = hf {
        rows.extend(hf_rows(&h.timings, batch));
    }
    println!();
    print!("{}", format_table(&rows));
    println!(
        "  DRAM bound: {:.1} MB per decode step (weights {:.1} + KV {:.1}) → {:.3} ms at {dram_gb_s:.0} GB/s",
        bytes_per_step / 1e6,
        weight_step_bytes / 1e6,
        kv_per_step / 1e6,
        bytes_per_step / dram_gb_s / 1e6
    );
    rows
}

fn write_report(a: &E2eArgs, report: &Report, model: &str) -> Result<()> {
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
    std::fs::write(&json_path, serde_json::to_vec_pretty(report)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    std::fs::write(&csv_path, to_csv(&report.rows, model, &report.gpu, report.path.as_str())?)
        .with_context(|| format!("writing {}", csv_path.display()))?;
    println!("\nresults: {} and {}", json_path.display(), csv_path.display());
    Ok(())
}
