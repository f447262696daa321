//! Quantization error metrics: relative Frobenius error of W and of X·Wᵀ, in f64.

use super::error::{bad_value, check_len, Result};
use super::format::Int4Weight;
use super::int8::Int8Weight;
use super::rtn::check_dense;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantError {
    /// ‖W − Ŵ‖_F / ‖W‖_F
    pub w_rel_fro: f64,
    /// ‖X·Wᵀ − X·Ŵᵀ‖_F / ‖X·Wᵀ‖_F on the given sample inputs.
    pub y_rel_fro: f64,
}

/// A quantized linear layer that can be turned back into a dense row-major W[N, K].
pub trait Dequantize {
    fn shape(&self) -> (usize, usize);
    fn dequantize(&self) -> Vec<f32>;
}

impl Dequantize for Int4Weight {
    fn shape(&self) -> (usize, usize) {
        (self.n, self.k)
    }
    fn dequantize(&self) -> Vec<f32> {
        Int4Weight::dequantize(self)
    }
}

impl Dequantize for Int8Weight {
    fn shape(&self) -> (usize, usize) {
        (self.n, self.k)
    }
    fn dequantize(&self) -> Vec<f32> {
        Int8Weight::dequantize(self)
    }
}

/// ‖reference − approx‖_F / ‖reference‖_F (0 when both are zero, infinite when only the
/// reference is).
pub fn rel_fro(reference: &[f32], approx: &[f32]) -> f64 {
    let (mut num, mut den) = (0f64, 0f64);
    for (&r, &a) in reference.iter().zip(approx) {
        let d = f64::from(r) - f64::from(a);
        num += d * d;
        den += f64::from(r) * f64::from(r);
    }
    if den == 0.0 {
        return if num == 0.0 { 0.0 } else { f64::INFINITY };
    }
    (num / den).sqrt()
}

/// Y[m, n] = X[m, k] · W[n, k]ᵀ in f64.
pub(crate) fn matmul_xwt(x: &[f32], m: usize, w: &[f32], n: usize, k: usize) -> Vec<f64> {
    let mut y = vec![0f64; m * n];
    for i in 0..m {
        let xi = &x[i * k..][..k];
        for j in 0..n {
            let wj = &w[j * k..][..k];
            y[i * n + j] = xi.iter().zip(wj).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
        }
    }
    y
}

/// Errors of the quantized `q` against the original W[n, k] and on inputs X[m, k].
pub fn quant_error(q: &impl Dequantize, w: &[f32], x: &[f32], m: usize) -> Result<QuantError> {
    let (n, k) = q.shape();
    check_dense("w", w, n, k)?;
    if m == 0 {
        return Err(bad_value("x", "needs at least one sample row (m = 0)"));
    }
    check_len("x", &[m, k], m * k, x.len())?;
    let w_hat = q.dequantize();
    let y = matmul_xwt(x, m, w, n, k);
    let y_hat = matmul_xwt(x, m, &w_hat, n, k);
    let (mut num, mut den) = (0f64, 0f64);
    for (a, b) in y.iter().zip(&y_hat) {
        num += (a - b) * (a - b);
        den += a * a;
    }
    let y_rel_fro = if den == 0.0 {
        if num == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        (num / den).sqrt()
    };
    Ok(QuantError { w_rel_fro: rel_fro(w, &w_hat), y_rel_fro })
}

/// `len` standard normal samples (Box–Muller over a seeded StdRng): sample inputs and test
/// weights that are the same on every machine.
pub fn gaussian(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(len + 1);
    while out.len() < len {
        let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1], so ln is finite
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        out.push((r * t.cos()) as f32);
        out.push((r * t.sin()) as f32);
    }
    out.truncate(len);
    out
}
