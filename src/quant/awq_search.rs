//! Activation-aware weight quantization (AWQ, Lin et al., 2023): scale input channel j of
//! every linear that reads one input by s_j = mean|x_j|^α before round-to-nearest, divide the
//! input by s_j in the op before (so the product is unchanged), and search α ∈ [0, 1] on
//! calibration inputs for the smallest output error of the quantized layers.
//!
//! Salient input channels (large activations) get larger weights, hence relatively finer
//! codes; the division moves into the previous op, which is not quantized. α = 0 is plain RTN,
//! so on the calibration inputs the search is never worse than RTN. Where 1/s goes (the
//! RMSNorm weight before q/k/v and gate/up, the up rows before down) is the model's business:
//! see `quality::awq_model`. The weight clipping search of the paper is not done.

use super::dense::output_error;
use super::error::{bad_value, check_len, Result};
use super::rtn::{check_dense, quantize_rtn, RtnConfig};

/// One linear reading the shared input: W[n, k] row-major.
pub struct LinearRef<'a> {
    pub w: &'a [f32],
    pub n: usize,
}

#[derive(Debug, Clone)]
pub struct AwqScales {
    /// Per input channel; multiply W's columns by these, divide the input by them.
    pub scales: Vec<f32>,
    pub alpha: f32,
    /// Output error energy at the chosen α and at α = 0 (RTN), summed over the linears.
    pub error: f64,
    pub error_rtn: f64,
}

/// s_j = max(mean_abs_j, 1e-8)^α, normalized so that √(max·min) = 1 (AutoAWQ's
/// normalization: it keeps the scaled weights in range), floored at 1e-4.
pub fn scales_for(mean_abs: &[f32], alpha: f32) -> Vec<f32> {
    let s: Vec<f32> = mean_abs.iter().map(|&a| a.max(1e-8).powf(alpha).max(1e-4)).collect();
    let (hi, lo) = s.iter().fold((0f32, f32::INFINITY), |(h, l), &v| (h.max(v), l.min(v)));
    let norm = (hi * lo).sqrt();
    s.iter().map(|v| v / norm).collect()
}

/// W with column j multiplied by s_j.
pub fn scale_columns(w: &[f32], k: usize, s: &[f32]) -> Vec<f32> {
    w.chunks_exact(k).flat_map(|row| row.iter().zip(s).map(|(a, b)| a * b)).collect()
}

/// What the layer computes after AWQ: Q(W·diag s)·diag(1/s), as f32 [n, k].
pub fn awq_effective_weight(w: &[f32], n: usize, k: usize, s: &[f32], rtn: &RtnConfig) -> Result<Vec<f32>> {
    let q = quantize_rtn(&scale_columns(w, k, s), n, k, rtn)?;
    Ok(q.dequantize().chunks_exact(k).flat_map(|row| row.iter().zip(s).map(|(a, b)| a / b)).collect())
}

/// Searches α on a grid of `grid + 1` points for the linears `ws` sharing inputs X[m, k],
/// with per-channel mean |x| `mean_abs` (over all calibration tokens, X may be a subsample).
pub fn search_awq_scales(
    ws: &[LinearRef<'_>],
    k: usize,
    x: &[f32],
    m: usize,
    mean_abs: &[f32],
    rtn: &RtnConfig,
    grid: usize,
) -> Result<AwqScales> {
    check_len("mean_abs", &[k], k, mean_abs.len())?;
    check_len("x", &[m, k], m * k, x.len())?;
    if grid == 0 || m == 0 || ws.is_empty() {
        return Err(bad_value("awq", "needs a grid of at least 1 step, calibration rows and a linear"));
    }
    for l in ws {
        check_dense("w", l.w, l.n, k)?;
    }
    let mut best: Option<AwqScales> = None;
    let mut error_rtn = 0.0;
    for step in 0..=grid {
        let alpha = step as f32 / grid as f32;
        let s = scales_for(mean_abs, alpha);
        let mut error = 0.0;
        for l in ws {
            let w_hat = awq_effective_weight(l.w, l.n, k, &s, rtn)?;
            error += output_error(x, m, l.w, &w_hat, l.n, k);
        }
        if step == 0 {
            error_rtn = error;
        }
        if best.as_ref().is_none_or(|b| error < b.error) {
            best = Some(AwqScales { scales: s, alpha, error, error_rtn });
        }
    }
    let mut best = best.expect("grid has at least one point");
    best.error_rtn = error_rtn;
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::format::HalfDtype;
    use crate::quant::metrics::gaussian;
    use crate::quant::rtn::GroupSize;

    #[test]
    fn awq_beats_rtn_on_outlier_channels_and_the_scaling_is_exact() {
        let (n, k, m) = (64, 256, 256);
        let w = gaussian(n * k, 21);
        let mut x = gaussian(m * k, 22);
        for (i, v) in x.iter_mut().enumerate() {
            if (i % k) % 29 == 7 {
                *v *= 20.0;
            }
        }
        let mean_abs: Vec<f32> = (0..k).map(|c| (0..m).map(|i| x[i * k + c].abs()).sum::<f32>() / m as f32).collect();
        let rtn = RtnConfig { group: GroupSize::Group(128), symmetric: false, scale_dtype: HalfDtype::Bf16 };
        let r = search_awq_scales(&[LinearRef { w: &w, n }], k, &x, m, &mean_abs, &rtn, 10).unwrap();
        assert!(
            r.alpha > 0.0 && r.error < 0.9 * r.error_rtn,
            "alpha {} error {} rtn {}",
            r.alpha,
            r.error,
            r.error_rtn
        );
        // Unquantized, W·diag(s) applied to x/s is W applied to x.
        let ws = scale_columns(&w, k, &r.scales);
        let (y0, y1): (f32, f32) =
            ((0..k).map(|c| w[c] * x[c]).sum(), (0..k).map(|c| ws[c] * (x[c] / r.scales[c])).sum());
        assert!((y0 - y1).abs() < 1e-3 * y0.abs().max(1.0));
    }
}
