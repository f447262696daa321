//! Calibration activations: the inputs of every linear of every layer on calibration text,
//! taken from the *reference* model in one pass (not layer by layer through the already
//! quantized layers, as GPTQ's reference code does; simpler, and the difference is second
//! order at 4 bits).

use std::collections::HashMap;

use anyhow::Result;

use crate::llama::cpu_ref::{forward_observed, KvCache, LinearInput, Logits};
use crate::llama::Weights;
use crate::quant::Hessian;

/// X[rows, width] for every (layer, site).
pub struct Calibration {
    pub rows: usize,
    inputs: HashMap<(usize, LinearInput), Vec<f32>>,
    widths: HashMap<(usize, LinearInput), usize>,
}

impl Calibration {
    /// Runs the model on each window (a fresh KV cache each) and keeps every linear input.
    pub fn collect(w: &Weights, windows: &[Vec<u32>]) -> Result<Self> {
        let mut inputs: HashMap<(usize, LinearInput), Vec<f32>> = HashMap::new();
        let mut widths = HashMap::new();
        let mut rows = 0;
        for win in windows {
            let mut cache = KvCache::new(w, win.len());
            forward_observed(w, &mut cache, win, Logits::Last, &mut |layer, site, x| {
                widths.insert((layer, site), x.len() / win.len());
                inputs.entry((layer, site)).or_default().extend_from_slice(x);
            })?;
            rows += win.len();
        }
        Ok(Calibration { rows, inputs, widths })
    }

    /// X[rows, width] of one site.
    pub fn x(&self, layer: usize, site: LinearInput) -> (&[f32], usize) {
        let x = self.inputs.get(&(layer, site)).map(|v| v.as_slice()).unwrap_or(&[]);
        (x, self.widths.get(&(layer, site)).copied().unwrap_or(0))
    }

    /// Every `stride`-th row of X, at most `max_rows` rows: AWQ's search and the sensitivity
    /// proxy need a sample, not all of it.
    pub fn sample(&self, layer: usize, site: LinearInput, max_rows: usize) -> (Vec<f32>, usize) {
        let (x, k) = self.x(layer, site);
        let stride = self.rows.div_ceil(max_rows.max(1)).max(1);
        let rows: Vec<f32> = x.chunks_exact(k.max(1)).step_by(stride).flatten().copied().collect();
        let m = rows.len() / k.max(1);
        (rows, m)
    }

    /// Mean |x_j| per input channel over all calibration rows.
    pub fn mean_abs(&self, layer: usize, site: LinearInput) -> Vec<f32> {
        let (x, k) = self.x(layer, site);
        let mut acc = vec![0f64; k];
        for row in x.chunks_exact(k.max(1)) {
            acc.iter_mut().zip(row).for_each(|(a, &v)| *a += f64::from(v.abs()));
        }
        acc.iter().map(|&a| (a / self.rows.max(1) as f64) as f32).collect()
    }

    /// 2/m · XᵀX of one site, for GPTQ.
    pub fn hessian(&self, layer: usize, site: LinearInput) -> Vec<f64> {
        let (x, k) = self.x(layer, site);
        let mut h = Hessian::new(k);
        h.add(x, x.len() / k.max(1));
        h.matrix()
    }
}
