//! bf16 model weights on the GPU, in the layout the model runs: q/k/v fused into one
//! [q_dim + 2·kv_dim, dim] matrix and gate/up into one [2·ffn, dim] matrix, so each step
//! runs two big GEMMs instead of five small ones (the shapes sweeps/gemm.toml tunes).
//!
//! Three sources: f32 [`Weights`] (CPU-reference comparisons, GGUF files), a streaming
//! [`TensorSource`] (a Hugging Face directory of any size: one tensor on the host at a
//! time), or random values generated on the device from a seed (llama3-8b is 16 GB:
//! never built on the host).

use super::ops::OpKernels;
use crate::gpu::device::{DevBuf, Gpu};
use crate::gpu::util::Util;
use crate::kernels::DType;
use crate::llama::config::LlamaConfig;
use crate::llama::names::{LayerTensor, WeightName};
use crate::llama::weights::{load_checked, TensorSource, Weights};
use anyhow::{anyhow, bail, Result};
use rayon::prelude::*;

pub struct GpuLayer {
    pub attn_norm: DevBuf,
    /// [q_dim + 2·kv_dim, dim]: rows of wq, then wk, then wv.
    pub wqkv: DevBuf,
    pub wo: DevBuf,
    pub ffn_norm: DevBuf,
    /// [2·ffn, dim]: rows of w_gate, then w_up.
    pub w_gate_up: DevBuf,
    pub w_down: DevBuf,
}

pub struct GpuWeights {
    pub config: LlamaConfig,
    pub tok_embeddings: DevBuf,
    pub layers: Vec<GpuLayer>,
    pub norm: DevBuf,
    /// None when tied to the embeddings.
    pub lm_head: Option<DevBuf>,
    /// f32 [head_dim / 2], Llama-3 scaling applied.
    pub rope_inv_freqs: DevBuf,
    /// Where the weights came from, for reports.
    pub source: String,
}

fn to_bf16_bits(v: &[f32]) -> Vec<u16> {
    v.par_iter().map(|x| half::bf16::from_f32(*x).to_bits()).collect()
}

/// Copies `data` into `buf` at element offset `at` (bf16 elements).
fn upload_at(buf: &DevBuf, at: usize, data: &[u16]) -> Result<()> {
    let end = (at + data.len()) * 2;
    if end > buf.bytes {
        bail!("internal: weight upload of {end} B into a {} B buffer", buf.bytes);
    }
    // SAFETY: the destination range [ptr + 2·at, ptr + end) lies inside the allocation
    // (checked above); u16 is plain data; the copy is synchronous.
    unsafe { cudarc::driver::result::memcpy_htod_sync(buf.ptr + (at * 2) as u64, data) }
        .map_err(|e| anyhow!("copying weights to the GPU failed: {e:?}"))
}

/// Rounds every weight to bf16 and back, so a CPU reference runs on exactly the weights the
/// GPU holds (differences then come from the computation, not from the weight format).
pub fn round_to_bf16(w: &Weights) -> Weights {
    let r = |v: &[f32]| v.iter().map(|x| half::bf16::from_f32(*x).to_f32()).collect::<Vec<f32>>();
    let m = |m: &crate::llama::weights::Mat| crate::llama::weights::Mat::new(m.rows, m.cols, r(&m.data));
    let mut out = w.clone();
    out.tok_embeddings = m(&w.tok_embeddings);
    out.norm = r(&w.norm);
    out.lm_head = w.lm_head.as_ref().map(m);
    for (o, l) in out.layers.iter_mut().zip(&w.layers) {
        o.attn_norm = r(&l.attn_norm);
        o.ffn_norm = r(&l.ffn_norm);
        o.wq = m(&l.wq);
        o.wk = m(&l.wk);
        o.wv = m(&l.wv);
        o.wo = m(&l.wo);
        o.w_gate = m(&l.w_gate);
        o.w_up = m(&l.w_up);
        o.w_down = m(&l.w_down);
    }
    out
}

/// Bytes of bf16 weights the model holds on the GPU.
pub fn weight_bytes(c: &LlamaConfig) -> usize {
    let per_layer = c.dim * (c.q_dim() + 2 * c.kv_dim()) + c.q_dim() * c.dim + 3 * c.dim * c.ffn_dim + 2 * c.dim;
    let emb = c.vocab_size * c.dim * if c.tie_embeddings { 1 } else { 2 };
    2 * (c.n_layers * per_layer + emb + c.dim)
}

/// Bytes one decode step must read from the weights: every matrix and norm, but only the
/// gathered rows of the embedding table (the lm_head, tied or not, is read whole).
pub fn weight_bytes_per_decode_step(c: &LlamaConfig, batch: usize) -> usize {
    let per_layer = c.dim * (c.q_dim() + 2 * c.kv_dim()) + c.q_dim() * c.dim + 3 * c.dim * c.ffn_dim + 2 * c.dim;
    2 * (c.n_layers * per_layer + c.vocab_size * c.dim + c.dim + batch * c.dim)
}

struct Alloc<'g> {
    gpu: &'g Gpu,
    c: LlamaConfig,
}

impl Alloc<'_> {
    fn buf(&self, elems: usize) -> Result<DevBuf> {
        self.gpu.alloc(elems * 2)
    }
    fn layer(&self) -> Result<GpuLayer> {
        let c = &self.c;
        Ok(GpuLayer {
            attn_norm: self.buf(c.dim)?,
            wqkv: self.buf((c.q_dim() + 2 * c.kv_dim()) * c.dim)?,
            wo: self.buf(c.dim * c.q_dim())?,
            ffn_norm: self.buf(c.dim)?,
            w_gate_up: self.buf(2 * c.ffn_dim * c.dim)?,
            w_down: self.buf(c.dim * c.ffn_dim)?,
        })
    }
    fn empty(&self, source: String) -> Result<GpuWeights> {
        let c = &self.c;
        let need = weight_bytes(c);
        let (free, _) = self.gpu.ctx.mem_get_info().unwrap_or((usize::MAX, 0));
        if need > free {
            bail!(
                "the {} weights need {:.1} GiB of GPU memory in bf16 but only {:.1} GiB are free",
                c.name,
                need as f64 / (1u64 << 30) as f64,
                free as f64 / (1u64 << 30) as f64
            );
        }
        Ok(GpuWeights {
            config: c.clone(),
            tok_embeddings: self.buf(c.vocab_size * c.dim)?,
            layers: (0..c.n_layers).map(|_| self.layer()).collect::<Result<_>>()?,
            norm: self.buf(c.dim)?,
            lm_head: if c.tie_embeddings { None } else { Some(self.buf(c.vocab_size * c.dim)?) },
            rope_inv_freqs: self.gpu.alloc(c.head_dim / 2 * 4)?,
            source,
        })
    }
}

/// Host values of one layer, in the fused GPU layout.
struct HostLayer {
    attn_norm: Vec<u16>,
    wqkv: Vec<u16>,
    wo: Vec<u16>,
    ffn_norm: Vec<u16>,
    w_gate_up: Vec<u16>,
    w_down: Vec<u16>,
}

fn upload_layer(l: &GpuLayer, h: &HostLayer) -> Result<()> {
    upload_at(&l.attn_norm, 0, &h.attn_norm)?;
    upload_at(&l.wqkv, 0, &h.wqkv)?;
    upload_at(&l.wo, 0, &h.wo)?;
    upload_at(&l.ffn_norm, 0, &h.ffn_norm)?;
    upload_at(&l.w_gate_up, 0, &h.w_gate_up)?;
    upload_at(&l.w_down, 0, &h.w_down)
}

impl GpuWeights {
    pub fn lm_head(&self) -> &DevBuf {
        self.lm_head.as_ref().unwrap_or(&self.tok_embeddings)
    }

    /// Freshly allocated buffers of the same config (contents undefined).
    pub fn empty_like(&self, gpu: &Gpu, source: String) -> Result<GpuWeights> {
        Alloc { gpu, c: self.config.clone() }.empty(source)
    }

    /// Every buffer but the layers' four linear matrices, in a fixed order (two weights of
    /// one config list the same shapes in the same order).
    pub fn non_linear_buffers(&self) -> Vec<&DevBuf> {
        let mut v = vec![&self.tok_embeddings, &self.norm, &self.rope_inv_freqs];
        v.extend(self.lm_head.as_ref());
        for l in &self.layers {
            v.push(&l.attn_norm);
            v.push(&l.ffn_norm);
        }
        v
    }

    /// Uploads f32 weights (rounded to bf16).
    pub fn from_weights(gpu: &Gpu, w: &Weights, source: &str) -> Result<GpuWeights> {
        let a = Alloc { gpu, c: w.config.clone() };
        let g = a.empty(source.to_string())?;
        for (gl, l) in g.layers.iter().zip(&w.layers) {
            let cat = |parts: &[&[f32]]| to_bf16_bits(&parts.concat());
            upload_layer(
                gl,
                &HostLayer {
                    attn_norm: to_bf16_bits(&l.attn_norm),
                    wqkv: cat(&[&l.wq.data, &l.wk.data, &l.wv.data]),
                    wo: to_bf16_bits(&l.wo.data),
                    ffn_norm: to_bf16_bits(&l.ffn_norm),
                    w_gate_up: cat(&[&l.w_gate.data, &l.w_up.data]),
                    w_down: to_bf16_bits(&l.w_down.data),
                },
            )?;
        }
        upload_at(&g.tok_embeddings, 0, &to_bf16_bits(&w.tok_embeddings.data))?;
        upload_at(&g.norm, 0, &to_bf16_bits(&w.norm))?;
        if let (Some(d), Some(h)) = (&g.lm_head, &w.lm_head) {
            upload_at(d, 0, &to_bf16_bits(&h.data))?;
        }
        g.rope_inv_freqs.upload(&w.rope_inv_freqs)?;
        Ok(g)
    }

    /// Streams weights from `src` (a Hugging Face directory): shapes are checked against
    /// the config before any data is read, a few layers are converted in parallel at a time.
    pub fn from_source(gpu: &Gpu, cfg: &LlamaConfig, src: &(dyn TensorSource + Sync)) -> Result<GpuWeights> {
        cfg.validate()?;
        let get = |name: WeightName| -> Result<Vec<u16>> { Ok(to_bf16_bits(&load_checked(cfg, src, name)?)) };
        let a = Alloc { gpu, c: cfg.clone() };
        let g = a.empty(src.describe())?;
        let chunk = 4;
        for start in (0..cfg.n_layers).step_by(chunk) {
            let end = (start + chunk).min(cfg.n_layers);
            let host: Vec<HostLayer> = (start..end)
                .into_par_iter()
                .map(|i| {
                    let l = |t| get(WeightName::Layer(i, t));
                    use LayerTensor::*;
                    Ok(HostLayer {
                        attn_norm: l(AttnNorm)?,
                        wqkv: [l(Wq)?, l(Wk)?, l(Wv)?].concat(),
                        wo: l(Wo)?,
                        ffn_norm: l(FfnNorm)?,
                        w_gate_up: [l(WGate)?, l(WUp)?].concat(),
                        w_down: l(WDown)?,
                    })
                })
                .collect::<Result<_>>()?;
            for (i, h) in (start..end).zip(&host) {
                upload_layer(&g.layers[i], h)?;
            }
        }
        upload_at(&g.tok_embeddings, 0, &get(WeightName::TokEmbd)?)?;
        upload_at(&g.norm, 0, &get(WeightName::Norm)?)?;
        if let Some(d) = &g.lm_head {
            upload_at(d, 0, &get(WeightName::LmHead)?)?;
        }
        // Same rule as Weights::load: stored per-frequency divisors win over the formula.
        let inv = if src.shape(&WeightName::RopeFreqs)?.is_some() {
            let div = src.load_f32(&WeightName::RopeFreqs)?;
            let base = LlamaConfig { rope_scaling: None, ..cfg.clone() }.rope_inv_freqs();
            base.iter().zip(&div).map(|(f, d)| f / d).collect()
        } else {
            cfg.rope_inv_freqs()
        };
        g.rope_inv_freqs.upload(&inv)?;
        Ok(g)
    }

    /// Random weights generated on the device from `seed`, distributed like
    /// `Weights::random` (uniform ±sqrt(3/fan_in), norms 1) but not bit-identical to it.
    pub fn random(gpu: &Gpu, util: &Util, ops: &OpKernels, cfg: &LlamaConfig, seed: u64) -> Result<GpuWeights> {
        cfg.validate()?;
        let a = Alloc { gpu, c: cfg.clone() };
        let g =
            a.empty(format!("random bf16 weights at the {} shape (seed {seed}, generated on the GPU)", cfg.name))?;
        let mut tensor = 0u64;
        let mut fill = |buf: &DevBuf, fan_in: usize| -> Result<()> {
            tensor += 1;
            let s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ tensor.wrapping_mul(0xD1B5_4A32_D192_ED03);
            util.fill(gpu, buf, DType::BF16, buf.bytes / 2, s, (3.0 / fan_in as f32).sqrt())
        };
        let d = cfg.dim;
        for l in &g.layers {
            fill(&l.wqkv, d)?;
            fill(&l.wo, cfg.q_dim())?;
            fill(&l.w_gate_up, d)?;
            fill(&l.w_down, cfg.ffn_dim)?;
            ops.fill_const(gpu, l.attn_norm.ptr, d, 1.0)?;
            ops.fill_const(gpu, l.ffn_norm.ptr, d, 1.0)?;
        }
        fill(&g.tok_embeddings, d)?;
        if let Some(h) = &g.lm_head {
            fill(h, d)?;
        }
        ops.fill_const(gpu, g.norm.ptr, d, 1.0)?;
        g.rope_inv_freqs.upload(&cfg.rope_inv_freqs())?;
        gpu.synchronize()?;
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_bytes_of_llama3_8b() {
        let c = LlamaConfig::preset("llama3-8b").unwrap();
        // 8.03 B parameters in bf16.
        assert_eq!(weight_bytes(&c), 2 * c.n_params());
        let gb = weight_bytes(&c) as f64 / 1e9;
        assert!((gb - 16.06).abs() < 0.05, "{gb}");
        // Decode reads everything but the embedding table (all but one row per sequence).
        let step = weight_bytes_per_decode_step(&c, 1);
        assert_eq!(weight_bytes(&c) - step, 2 * (c.vocab_size - 1) * c.dim);
    }
}
