//! CPU emulation of the gemm_int4 kernels: Y[M, N] = X[M, K] · dequant(W)ᵀ (+ R), f64 sums.
//!
//! The GPU selftest compares kernel output against this. What each kernel computes exactly:
//! - int4_gemv.cu dequantizes in fp32 with no rounding for symmetric and int-zero weights
//!   ((q - z) * s is exact in fp32), so compare with `WeightRounding::Exact`;
//! - int4_mma.cu rounds each dequantized weight once to the activation dtype (bf16/fp16) before
//!   the tensor-core product: compare with `WeightRounding::To(act_dtype)`.
//!
//! Both accumulate in fp32 and round Y once to the activation dtype; X (and R) should be
//! generated already representable in the activation dtype. A sound tolerance is
//! |y - ref| <= 2^-7 * |ref| + c * 2^-8 * sqrt(K) * rms(x) * rms(w) for bf16 (2^-10 / 2^-11 for
//! fp16), with c ~ 4 covering fp32 summation order.

use super::error::{bad_value, check_len, Result};
use super::format::{HalfDtype, Int4Weight};
use rayon::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightRounding {
    /// Use the exact dequantized value (int4_gemv).
    Exact,
    /// Round each dequantized weight to this dtype first (int4_mma's B fragments).
    To(HalfDtype),
}

/// Y = X · dequant(W)ᵀ with X row-major [m, K], Y row-major [m, N], exact weights.
pub fn reference_gemm_int4(x: &[f32], m: usize, w: &Int4Weight) -> Result<Vec<f32>> {
    reference_gemm_int4_with(x, m, w, None, WeightRounding::Exact)
}

/// Like `reference_gemm_int4`, plus an optional residual R [m, N] and a weight rounding mode.
pub fn reference_gemm_int4_with(
    x: &[f32],
    m: usize,
    w: &Int4Weight,
    residual: Option<&[f32]>,
    rounding: WeightRounding,
) -> Result<Vec<f32>> {
    w.validate()?;
    let (n, k) = (w.n, w.k);
    if m == 0 {
        return Err(bad_value("x", "m = 0: nothing to compute"));
    }
    check_len("x", &[m, k], m * k, x.len())?;
    if let Some(r) = residual {
        check_len("residual", &[m, n], m * n, r.len())?;
    }
    let mut wd = w.dequantize();
    if let WeightRounding::To(dt) = rounding {
        wd.iter_mut().for_each(|v| *v = dt.round(*v));
    }
    let mut y = vec![0f32; m * n];
    y.par_chunks_mut(n).enumerate().for_each(|(i, yi)| {
        let xi = &x[i * k..][..k];
        for (j, out) in yi.iter_mut().enumerate() {
            let acc: f64 = xi.iter().zip(&wd[j * k..][..k]).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
            let r = residual.map_or(0.0, |r| f64::from(r[i * n + j]));
            *out = (acc + r) as f32;
        }
    });
    Ok(y)
}
