//! `kernlab e2e`'s arguments and their checks, before any GPU work: the model source, the
//! context fit, and seeded random prompts.

use crate::kernels::gemm_int4::PER_CHANNEL;
use crate::llama::config::LlamaConfig;
use crate::llama::gpu::model_linear::{parse_linear_list, LinearList};
use crate::llama::weights::SplitMix64;
use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
#[command(after_help = "Examples:
  kernlab e2e                                     llama3-8b shape, random bf16 weights, batch 1
  kernlab e2e --batch 1,8 --validate --profile
  kernlab e2e --weights int4 --batch 1,16 --json > int4.json
  kernlab e2e --model SmolLM2-135M-Instruct.Q4_1.gguf --prompt \"What is the capital of France?\" --check-cpu
  kernlab e2e --model ~/models/Llama-3.2-1B --hf-reference hf.json")]
pub struct E2eArgs {
    /// A Hugging Face directory (config.json + *.safetensors) or a .gguf file. Default:
    /// random bf16 weights at --preset, generated on the GPU. E.g. --model model.gguf.
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Model shape when no --model is given: llama3-8b, llama3.1-8b, llama3.2-1b, smollm2-135m,
    /// tiny; e.g. --preset llama3.2-1b.
    #[arg(long, value_name = "NAME", default_value = "llama3-8b")]
    pub preset: String,
    /// Prompt text (needs the model's tokenizer); the generated text is streamed and kept in
    /// the JSON report. Instruct models get it through their chat template. Default: random
    /// token prompts. E.g. --prompt "Why is the sky blue?".
    #[arg(long, value_name = "TEXT")]
    pub prompt: Option<String>,
    /// A system turn before the prompt (through the chat template), e.g. --system "Be brief.".
    #[arg(long, value_name = "TEXT", requires = "prompt")]
    pub system: Option<String>,
    /// Feed --prompt as typed, without the model's chat template.
    #[arg(long, requires = "prompt")]
    pub raw_prompt: bool,
    /// Sequences per batch, e.g. --batch 8; a comma list (--batch 1,8) or repeated flags
    /// benchmark each in turn on the same weights.
    #[arg(long, value_name = "N", value_delimiter = ',', default_value = "1")]
    pub batch: Vec<usize>,
    /// Tokens per random prompt, e.g. --prompt-len 512.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub prompt_len: usize,
    /// Prompts of different lengths in one batch (prompt_len down to about half of it).
    #[arg(long)]
    pub ragged: bool,
    /// New tokens per sequence, e.g. --gen-len 64.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub gen_len: usize,
    /// Timed runs per batch size (after one warm-up run), e.g. --runs 5.
    #[arg(long, value_name = "N", default_value_t = 3)]
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
    /// Reference JSON from scripts/hf_reference.py (use with --model <its directory>), e.g.
    /// --hf-reference hf.json.
    #[arg(long, value_name = "FILE")]
    pub hf_reference: Option<PathBuf>,
    /// Seed of random weights, prompts and sampling, e.g. --seed 7.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// Sampling temperature; 0 = greedy. E.g. --temperature 0.7.
    #[arg(long, value_name = "T", default_value_t = 0.0)]
    pub temperature: f32,
    /// Sample among the K most likely tokens only (0: no limit); with --temperature > 0.
    /// E.g. --top-k 40.
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub top_k: usize,
    /// Nucleus sampling: the smallest set of top tokens whose probability reaches P (after
    /// --top-k), in (0, 1]; with --temperature > 0. E.g. --top-p 0.9.
    #[arg(long, default_value_t = 1.0, value_name = "P")]
    pub top_p: f32,
    /// Keep generating after EOS (fixed-length benchmark runs).
    #[arg(long)]
    pub ignore_eos: bool,
    /// Results file stem: writes <out>.json and <out>.csv, e.g. --out reports/e2e-8b.
    /// Default: reports/e2e-<time>.
    #[arg(long, value_name = "STEM")]
    pub out: Option<PathBuf>,
    /// Time per op kind with CUDA events (an extra, separate run).
    #[arg(long)]
    pub profile: bool,
    /// Precision of the layers' linear weights: bf16, int4 (quantized on the GPU with
    /// round-to-nearest, g128 symmetric, bf16 scales; the lm_head stays bf16) or int8 (one
    /// symmetric bf16 scale per output channel, on gemm_int8). Quantized, --validate compares
    /// against cuBLAS on the dequantized weights and reports the quantization's effect
    /// against the bf16 model. E.g. --weights int4.
    #[arg(long, value_name = "PRECISION", default_value = "bf16", value_parser = ["bf16", "int4", "int8"])]
    pub weights: String,
    /// With --weights int4: K columns per scale, 32, 64, 128 or 256; channel for one scale
    /// per row (each linear's K); or auto (128 where it divides every linear's K, else the
    /// largest that does: SmolLM2's 576 takes 64). E.g. --int4-group 64.
    #[arg(long, default_value = "auto", value_name = "GROUP", value_parser = parse_int4_group)]
    // Spelled out so that clap takes the parser's Option (auto = None) as the value type
    // rather than treating the flag as optional.
    pub int4_group: std::option::Option<i64>,
    /// With --weights int4: quantize the lm_head as well (as gpt-fast's int4 path does; at
    /// Llama-3-8B it is a quarter of the int4 model's bytes in bf16). Off by default: AWQ
    /// and GPTQ checkpoints keep it bf16, and it costs accuracy (see --validate's
    /// quantization effect).
    #[arg(long)]
    pub int4_lm_head: bool,
    /// With --weights int4: round-to-nearest with an integer zero point per group instead
    /// of symmetric codes, the format AWQ and GPTQ checkpoints store (so this runs their
    /// kernels at their speed). gate+up and SwiGLU then run apart.
    #[arg(long)]
    pub int4_zeros: bool,
    /// With --weights int4: quantize each linear's input columns in a permuted order and
    /// gather the activations before it, as GPTQ's act-order (desc_act) checkpoints run.
    /// The device has no Hessian to order by, so the order is a seeded shuffle: this times
    /// the gather and the permuted layout, not act-order's accuracy. gate+up and SwiGLU then
    /// run apart.
    #[arg(long)]
    pub int4_act_order: bool,
    /// With --weights int4: leave these layer linears in bf16 (mixed precision), as
    /// LAYER.LINEAR[,...] with LINEAR one of qkv, o, gate_up, down (q, k, v, gate or up name
    /// their whole stack), e.g. --int4-keep-bf16 0.down,1.down,31.qkv.
    #[arg(long, value_name = "LIST", value_parser = parse_keep_bf16)]
    pub int4_keep_bf16: Option<LinearList>,
    /// Run every op as its own kernel, for comparison with the fused decode path (with
    /// --weights int4, decode steps run the gate+up projection with SwiGLU in its epilogue
    /// on an interleaved copy of that weight, kept beside the plain one).
    #[arg(long)]
    pub no_fuse: bool,
    /// Issue every launch of every decode step instead of replaying each step as a CUDA
    /// graph (the tuned paths replay by default; the reference path never does).
    #[arg(long)]
    pub no_cuda_graphs: bool,
    /// Launch the decode graphs' kernels one after another, each waiting for the last to
    /// finish, instead of with programmatic dependent launch (sm_90: each kernel's blocks
    /// start early, fetch their weights, and wait in griddepcontrol.wait for their inputs).
    #[arg(long)]
    pub no_pdl: bool,
    /// Tuned-config database, e.g. --db tuned.json. Default: reports/tuned.json.
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// GPU ordinal to run on (see `kernlab devices`), e.g. --gpu 1.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub gpu: usize,
    /// Print the report (what <out>.json holds) as one JSON document on stdout; the
    /// progress, text and tables go to stderr.
    #[arg(long)]
    pub json: bool,
}

/// `auto` (None), `channel` (PER_CHANNEL) or one of the group sizes the int4 kernels take.
fn parse_int4_group(s: &str) -> std::result::Result<Option<i64>, String> {
    match s {
        "auto" => Ok(None),
        "channel" => Ok(Some(PER_CHANNEL)),
        "32" | "64" | "128" | "256" => Ok(Some(s.parse().expect("a listed number"))),
        _ => Err(format!("{s:?}: use auto, channel, 32, 64, 128 or 256")),
    }
}

fn parse_keep_bf16(s: &str) -> std::result::Result<LinearList, String> {
    parse_linear_list(s).map(LinearList).map_err(|e| format!("{e:#}"))
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
    if a.weights != "bf16" && (a.check_cpu || a.hf_reference.is_some()) {
        bail!(
            "--check-cpu and --hf-reference check the bf16 path; run them without --weights {} (quantized, \
             --validate compares against cuBLAS on the dequantized weights)",
            a.weights
        );
    }
    if a.int4_lm_head && a.weights != "int4" {
        bail!("--int4-lm-head quantizes the lm_head of int4 weights; add --weights int4 or leave it out");
    }
    if a.int4_zeros && a.weights != "int4" {
        bail!("--int4-zeros sets the format of int4 weights; add --weights int4 or leave it out");
    }
    if a.int4_act_order && a.weights != "int4" {
        bail!("--int4-act-order shapes int4 weights; add --weights int4 or leave it out");
    }
    if a.int4_keep_bf16.is_some() && a.weights == "bf16" {
        bail!("--int4-keep-bf16 leaves some linears of quantized weights in bf16; add --weights int4 or int8");
    }
    if a.int4_group.is_some() && a.weights != "int4" {
        bail!("--int4-group sets the group of int4 weights; add --weights int4 or leave it out");
    }
    // Written so that NaN fails too.
    let ok = a.temperature >= 0.0 && a.top_p > 0.0 && a.top_p <= 1.0;
    if !ok {
        bail!("--temperature must be ≥ 0 and --top-p in (0, 1]");
    }
    if a.temperature == 0.0 && (a.top_k != 0 || a.top_p != 1.0) {
        bail!("--top-k and --top-p shape sampling: give --temperature > 0 as well (temperature 0 is greedy)");
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
        assert!(e(&["--int4-zeros"]).contains("--weights int4"));
        assert!(e(&["--int4-act-order"]).contains("--weights int4"));
        assert!(e(&["--int4-keep-bf16", "0.down"]).contains("--weights int4 or int8"));
        assert!(e(&["--weights", "int8", "--check-cpu"]).contains("without --weights int8"));
        let a = args(&["--weights", "int4", "--int4-group", "channel", "--int4-keep-bf16", "3.q,0.down"]);
        assert_eq!(a.int4_group, Some(PER_CHANNEL));
        assert_eq!(a.int4_keep_bf16.unwrap().0.iter().map(|r| r.to_string()).collect::<Vec<_>>(), ["0.down", "3.qkv"]);
        let bad = T::try_parse_from(["e2e", "--int4-keep-bf16", "3.mlp"]).err().unwrap().to_string();
        assert!(bad.contains("qkv, o, gate_up or down"), "{bad}");
        assert!(e(&["--preset", "nope"]).contains("unknown model preset"));
        assert!(e(&["--hf-reference", "x.json"]).contains("--model"));
        assert!(e(&["--top-p", "0"]).contains("top-p"));
        assert!(e(&["--top-k", "40"]).contains("--temperature > 0"));
        assert!(resolve(&args(&["--top-k", "40", "--temperature", "0.7"])).is_ok());
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
}
