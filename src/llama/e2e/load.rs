//! Loading the weights an e2e run uses and building a model instance on them (tuned,
//! reference or int4), plus the measurements the bound is computed from.

use super::args::{E2eArgs, ModelSource};
use super::text::TextModel;
use crate::gpu::blas::Blas;
use crate::gpu::cache::ModuleCache;
use crate::gpu::device::Gpu;
use crate::gpu::util::Util;
use crate::llama::chat::ChatTemplate;
use crate::llama::gguf_model::{BosPolicy, LoadedModel};
use crate::llama::gpu::linear::{LinearBackend, LinearKind, TunedGemm};
use crate::llama::gpu::model::{GpuModel, ModelShape};
use crate::llama::gpu::op_choice::OpChoice;
use crate::llama::gpu::ops::OpKernels;
use crate::llama::gpu::quant_weights::QuantStore;
use crate::llama::gpu::weights::{round_to_bf16, GpuWeights};
use crate::llama::hf::SafetensorsSource;
use crate::llama::quantized::{QuantConfig, QuantizedSource};
use crate::llama::tokenizer;
use crate::llama::weights::Weights;
use anyhow::{bail, Result};
use std::path::Path;
use std::rc::Rc;

pub struct Loaded {
    pub weights: Rc<GpuWeights>,
    /// Host copy (bf16-rounded) when the model is small enough for the CPU reference.
    pub host: Option<Weights>,
    /// Tokenizer, BOS policy and chat template, when the model files carry a tokenizer.
    pub text: Option<TextModel>,
    /// A GPTQ/AWQ checkpoint run with --weights int4.
    pub checkpoint: Option<CheckpointLinears>,
}

/// The int4 linears of a GPTQ/AWQ checkpoint, for the int4 store.
pub struct CheckpointLinears {
    /// Its settings, for messages: "GPTQ g128 act-order".
    pub how: String,
    /// One scale per row (no group size in its config).
    pub per_channel: bool,
    /// Every layer's linears as the GPU model stacks them (qkv, o, gate_up, down), each with
    /// its act-order permutation if it has one.
    pub linears: Vec<(crate::quant::Int4Weight, Option<Vec<u32>>)>,
}

pub fn load(gpu: &Gpu, util: &Util, ops: &OpKernels, src: &ModelSource, a: &E2eArgs) -> Result<Loaded> {
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
                text: None,
                checkpoint: None,
            }
        }
        ModelSource::Random(c) => Loaded {
            weights: Rc::new(GpuWeights::random(gpu, util, ops, c, a.seed)?),
            host: None,
            text: None,
            checkpoint: None,
        },
        ModelSource::Gguf(p) => {
            let m = LoadedModel::from_gguf(p)?;
            let w = round_to_bf16(&m.weights);
            let g = GpuWeights::from_weights(gpu, &w, &p.display().to_string())?;
            let text = TextModel { tokenizer: m.tokenizer, bos: m.bos, chat: m.chat_template };
            Loaded {
                weights: Rc::new(g),
                host: if a.check_cpu { Some(w) } else { None },
                text: Some(text),
                checkpoint: None,
            }
        }
        ModelSource::HfDir(dir, cfg) => {
            // A GPTQ/AWQ checkpoint serves its linears dequantized here; the int4 store
            // takes the codes themselves (Loaded::checkpoint).
            let (g, host, checkpoint) = match QuantConfig::from_hf_dir(dir)? {
                Some(q) => {
                    let qs = QuantizedSource::open(dir, cfg, q)?;
                    let g = GpuWeights::from_source(gpu, cfg, &qs)?;
                    let host = if a.check_cpu { Some(round_to_bf16(&Weights::load(cfg, &qs)?)) } else { None };
                    let checkpoint = if a.weights == "int4" {
                        Some(CheckpointLinears {
                            how: qs.quant.describe(),
                            per_channel: qs.quant.group_size.is_none(),
                            linears: qs.model_linears_with_perms()?,
                        })
                    } else {
                        None
                    };
                    (g, host, checkpoint)
                }
                None => {
                    let st = SafetensorsSource::open(dir)?;
                    let g = GpuWeights::from_source(gpu, cfg, &st)?;
                    let host = if a.check_cpu { Some(round_to_bf16(&Weights::load(cfg, &st)?)) } else { None };
                    (g, host, None)
                }
            };
            let tok = dir.join("tokenizer.json");
            let text = if tok.is_file() {
                let chat = ChatTemplate::from_hf_dir(dir)?;
                Some(TextModel { tokenizer: tokenizer::from_hf_file(&tok)?, bos: BosPolicy::PostProcessor, chat })
            } else {
                None
            };
            Loaded { weights: Rc::new(g), host, text, checkpoint }
        }
    })
}

/// How the tuned path launches decode steps (`kernlab e2e`'s --no-cuda-graphs, --no-pdl).
#[derive(Debug, Clone, Copy)]
pub struct DecodeLaunch {
    /// Replay each decode step as a CUDA graph.
    pub cuda_graphs: bool,
    /// Inside those graphs, launch the PDL-aware kernels with programmatic dependent launch.
    pub pdl: bool,
}

impl DecodeLaunch {
    pub fn from_args(a: &super::args::E2eArgs) -> DecodeLaunch {
        DecodeLaunch { cuda_graphs: !a.no_cuda_graphs, pdl: !a.no_pdl }
    }
}

#[allow(clippy::too_many_arguments)]
pub fn build_model(
    gpu: &Gpu,
    cache: &ModuleCache,
    w: Rc<GpuWeights>,
    reference: bool,
    shape: ModelShape,
    db: &Path,
    int4: Option<&Rc<QuantStore>>,
    launch: DecodeLaunch,
) -> Result<(GpuModel, Vec<String>)> {
    let (choice, mut notes) =
        if reference { (OpChoice::reference(), vec![]) } else { OpChoice::tuned(gpu, cache, db, &w.config, &shape) };
    let ops = OpKernels::new(gpu, cache, choice)?;
    let linear = match (reference, int4) {
        (true, _) => LinearBackend::Cublas(Blas::new(gpu)?),
        (false, None) => LinearBackend::Tuned(Box::new(TunedGemm::new(gpu, cache, db)?)),
        (false, Some(store)) => LinearBackend::Quant {
            store: store.clone(),
            // A store plans launches of its own weights' family only.
            int4: match store.format {
                Some(format) => Some(Box::new(TunedGemm::with_kind(gpu, cache, db, LinearKind::Int4 { format })?)),
                None => None,
            },
            int8: if store.is_int8() {
                Some(Box::new(TunedGemm::with_kind(gpu, cache, db, LinearKind::Int8)?))
            } else {
                None
            },
            dense: Box::new(TunedGemm::new(gpu, cache, db)?),
            scratch: None,
        },
    };
    if !reference && !db.exists() {
        notes.push(format!("no tuned database at {}: every GEMM uses its variant's template defaults", db.display()));
    }
    let mut model = GpuModel::new(gpu, w, ops, linear, shape)?;
    if launch.cuda_graphs && !reference {
        model.enable_cuda_graphs(gpu, launch.pdl)?;
    }
    Ok((model, notes))
}

pub fn mem_used_gib(gpu: &Gpu) -> f64 {
    gpu.ctx.mem_get_info().map(|(f, t)| (t - f) as f64 / (1u64 << 30) as f64).unwrap_or(0.0)
}
