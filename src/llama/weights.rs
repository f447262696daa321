//! f32 model weights in one layout (Hugging Face's), whatever file they came from.
//!
//! Loaders implement [`TensorSource`]; [`Weights::load`] asks each source for every weight
//! the config needs, checks its shape against the config *before* reading any data, and
//! turns it into f32. The CPU reference uses these directly; the GPU path converts them.

use anyhow::{anyhow, bail, Result};
use rayon::prelude::*;

use super::config::LlamaConfig;
use super::names::{LayerTensor, WeightName};

/// A row-major f32 matrix (`rows` x `cols`); linear weights are `[out, in]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mat {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Mat {
    pub fn new(rows: usize, cols: usize, data: Vec<f32>) -> Self {
        assert_eq!(rows * cols, data.len(), "Mat {rows}x{cols} with {} values", data.len());
        Mat { rows, cols, data }
    }

    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }
}

#[derive(Debug, Clone)]
pub struct LayerWeights {
    pub attn_norm: Vec<f32>,
    pub wq: Mat,
    pub wk: Mat,
    pub wv: Mat,
    pub wo: Mat,
    pub ffn_norm: Vec<f32>,
    pub w_gate: Mat,
    pub w_up: Mat,
    pub w_down: Mat,
}

#[derive(Debug, Clone)]
pub struct Weights {
    pub config: LlamaConfig,
    pub tok_embeddings: Mat,
    pub layers: Vec<LayerWeights>,
    pub norm: Vec<f32>,
    /// None when tied to `tok_embeddings`.
    pub lm_head: Option<Mat>,
    /// RoPE inverse frequency per pair (head_dim / 2), scaling already applied. Q/K rows are
    /// in the half-split layout: pair i is (i, i + head_dim/2) within each head.
    pub rope_inv_freqs: Vec<f32>,
}

impl Weights {
    pub fn lm_head(&self) -> &Mat {
        self.lm_head.as_ref().unwrap_or(&self.tok_embeddings)
    }

    /// Load every weight `cfg` needs from `src`, in parallel over layers.
    pub fn load(cfg: &LlamaConfig, src: &(dyn TensorSource + Sync)) -> Result<Self> {
        cfg.validate()?;
        let get = |name: WeightName| load_checked(cfg, src, name);
        let mat = |name: WeightName| -> Result<Mat> {
            let s = name.expected_shape(cfg);
            Ok(Mat::new(s[0], s[1], get(name)?))
        };
        let layers = (0..cfg.n_layers)
            .into_par_iter()
            .map(|i| {
                let l = |t| WeightName::Layer(i, t);
                Ok(LayerWeights {
                    attn_norm: get(l(LayerTensor::AttnNorm))?,
                    wq: mat(l(LayerTensor::Wq))?,
                    wk: mat(l(LayerTensor::Wk))?,
                    wv: mat(l(LayerTensor::Wv))?,
                    wo: mat(l(LayerTensor::Wo))?,
                    ffn_norm: get(l(LayerTensor::FfnNorm))?,
                    w_gate: mat(l(LayerTensor::WGate))?,
                    w_up: mat(l(LayerTensor::WUp))?,
                    w_down: mat(l(LayerTensor::WDown))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let lm_head = if cfg.tie_embeddings { None } else { Some(mat(WeightName::LmHead)?) };
        // A file that stores per-frequency divisors (llama.cpp's Llama-3 export) overrides
        // the formula; both give the same values for a faithful conversion.
        let rope_inv_freqs = if src.shape(&WeightName::RopeFreqs)?.is_some() {
            let div = get(WeightName::RopeFreqs)?;
            let base = LlamaConfig { rope_scaling: None, ..cfg.clone() }.rope_inv_freqs();
            base.iter().zip(&div).map(|(f, d)| f / d).collect()
        } else {
            cfg.rope_inv_freqs()
        };
        Ok(Weights {
            config: cfg.clone(),
            tok_embeddings: mat(WeightName::TokEmbd)?,
            layers,
            norm: get(WeightName::Norm)?,
            lm_head,
            rope_inv_freqs,
        })
    }

    /// Random weights at `cfg`'s shape from a fixed seed (no files needed). Linear weights
    /// are uniform with std 1/sqrt(fan_in) so activations stay O(1) through the layers.
    pub fn random(cfg: &LlamaConfig, seed: u64) -> Result<Self> {
        cfg.validate()?;
        let mut rng = SplitMix64(seed);
        let mut mat = |rows: usize, cols: usize| {
            let a = (3.0 / cols as f32).sqrt();
            Mat::new(rows, cols, (0..rows * cols).map(|_| a * rng.uniform_pm1()).collect())
        };
        let (d, f) = (cfg.dim, cfg.ffn_dim);
        let layers = (0..cfg.n_layers)
            .map(|_| LayerWeights {
                attn_norm: vec![1.0; d],
                wq: mat(cfg.q_dim(), d),
                wk: mat(cfg.kv_dim(), d),
                wv: mat(cfg.kv_dim(), d),
                wo: mat(d, cfg.q_dim()),
                ffn_norm: vec![1.0; d],
                w_gate: mat(f, d),
                w_up: mat(f, d),
                w_down: mat(d, f),
            })
            .collect();
        let tok_embeddings = mat(cfg.vocab_size, d);
        let lm_head = if cfg.tie_embeddings { None } else { Some(mat(cfg.vocab_size, d)) };
        Ok(Weights {
            config: cfg.clone(),
            tok_embeddings,
            layers,
            norm: vec![1.0; d],
            lm_head,
            rope_inv_freqs: cfg.rope_inv_freqs(),
        })
    }
}

/// Where weights come from. Shapes are row-major (PyTorch order).
/// One weight as f32, with its shape checked against `cfg` before any data is read and
/// its value count checked after; errors name the source and the tensor's file name.
pub fn load_checked(cfg: &LlamaConfig, src: &(dyn TensorSource + Sync), name: WeightName) -> Result<Vec<f32>> {
    let expected = name.expected_shape(cfg);
    let found =
        src.shape(&name)?.ok_or_else(|| anyhow!("{}: tensor '{}' is missing", src.describe(), src.file_name(&name)))?;
    cfg.check_shape(&src.describe(), &src.file_name(&name), &expected, &found)?;
    let data = src.load_f32(&name)?;
    if data.len() != expected.iter().product::<usize>() {
        bail!(
            "{}: tensor '{}' gave {} values for shape {expected:?}",
            src.describe(),
            src.file_name(&name),
            data.len()
        );
    }
    Ok(data)
}

pub trait TensorSource {
    /// The file or directory, for messages.
    fn describe(&self) -> String;
    /// The name this source uses for a weight, for messages.
    fn file_name(&self, name: &WeightName) -> String;
    /// Shape of a weight, None if the source does not have it.
    fn shape(&self, name: &WeightName) -> Result<Option<Vec<usize>>>;
    /// The weight as f32 in the common (HF) layout.
    fn load_f32(&self, name: &WeightName) -> Result<Vec<f32>>;
}

/// Deterministic, dependency-free PRNG so random weights never change with a crate upgrade.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn uniform_pm1(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}
