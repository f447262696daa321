//! GPTQ (Frantar et al., 2022): quantize a linear column by column, pushing each column's
//! rounding error onto the columns not yet quantized, weighted by the inverse Hessian of the
//! layer's output error on calibration inputs.
//!
//! - H = 2/m · XᵀX from calibration inputs X[m, K] ([`Hessian`]); dead inputs (H_ii = 0) get
//!   H_ii = 1 and a zero weight column; H += damp · mean(diag H) · I.
//! - U = upper Cholesky factor of H⁻¹ (`cholesky`); column i's error e = (w_i − q_i) / U_ii
//!   updates column j > i by −e·U_ij.
//! - Lazy block updates: inside a block of `block` columns updates are applied at once; the
//!   columns after the block get the whole block's errors in one sgemm.
//! - Groups: without act-order a group's scale and zero are taken from the *updated* weights
//!   when its first column is reached (the reference implementation). With act-order,
//!   columns go in order of decreasing H_ii, and the groups' parameters are computed up front
//!   from the original weights ("static groups"), so groups stay contiguous column ranges and
//!   the result is the plain `Int4Weight` the kernels run, with no g_idx indirection.

use rayon::prelude::*;

use super::error::{bad_shape, bad_value, check_len, Result};
use super::format::{HalfDtype, Int4Weight, Zeros};
use super::rtn::{check_dense, group_params, quant_code, GroupSize};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GptqConfig {
    pub group: GroupSize,
    pub symmetric: bool,
    pub scale_dtype: HalfDtype,
    /// Fraction of the mean diagonal added to H's diagonal (GPTQ's percdamp, 0.01).
    pub damp: f64,
    /// Columns per lazy-update block (128 in the paper).
    pub block: usize,
    pub act_order: bool,
}

impl Default for GptqConfig {
    fn default() -> Self {
        GptqConfig {
            group: GroupSize::Group(128),
            symmetric: false,
            scale_dtype: HalfDtype::Bf16,
            damp: 0.01,
            block: 128,
            act_order: false,
        }
    }
}

/// Running 2/m · XᵀX of a linear's inputs, in f64.
#[derive(Debug, Clone)]
pub struct Hessian {
    pub k: usize,
    pub rows: usize,
    sum: Vec<f64>,
}

impl Hessian {
    pub fn new(k: usize) -> Self {
        Hessian { k, rows: 0, sum: vec![0.0; k * k] }
    }

    /// Adds inputs X[m, k] (row-major).
    pub fn add(&mut self, x: &[f32], m: usize) {
        assert_eq!(x.len(), m * self.k, "Hessian::add: X is not [{m}, {}]", self.k);
        let xd: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let k = self.k;
        // SAFETY: Xᵀ is a [k, m] view of X (row stride 1, column stride k); sum is [k, k].
        unsafe {
            matrixmultiply::dgemm(
                k,
                m,
                k,
                1.0,
                xd.as_ptr(),
                1,
                k as isize,
                xd.as_ptr(),
                k as isize,
                1,
                1.0,
                self.sum.as_mut_ptr(),
                k as isize,
                1,
            );
        }
        self.rows += m;
    }

    /// 2/m · XᵀX, row-major [k, k].
    pub fn matrix(&self) -> Vec<f64> {
        let f = if self.rows == 0 { 0.0 } else { 2.0 / self.rows as f64 };
        self.sum.iter().map(|v| v * f).collect()
    }
}

/// H prepared for GPTQ: the column order, which inputs are dead, and the upper Cholesky
/// factor of the dampened H⁻¹ in that order. Linears that read the same input (q/k/v,
/// gate/up) share one.
#[derive(Debug, Clone)]
pub struct PreparedHessian {
    pub k: usize,
    pub act_order: bool,
    perm: Vec<usize>,
    dead: Vec<bool>,
    u: Vec<f32>,
}

impl PreparedHessian {
    /// From H (row-major [k, k], e.g. [`Hessian::matrix`]).
    pub fn new(h: &[f64], k: usize, act_order: bool, damp: f64) -> Result<Self> {
        check_len("hessian", &[k, k], k * k, h.len())?;
        if let Some(i) = h.iter().position(|v| !v.is_finite()) {
            return Err(bad_value("hessian", format!("element {i} is not finite")));
        }
        let mut h = h.to_vec();
        let dead: Vec<bool> = (0..k).map(|i| h[i * k + i] == 0.0).collect();
        for (i, &d) in dead.iter().enumerate() {
            if d {
                h[i * k + i] = 1.0;
            }
        }
        let mut perm: Vec<usize> = (0..k).collect();
        if act_order {
            perm.sort_by(|&a, &b| h[b * k + b].total_cmp(&h[a * k + a]).then(a.cmp(&b)));
        }
        let mean_diag = (0..k).map(|i| h[i * k + i]).sum::<f64>() / k as f64;
        let add = damp * mean_diag.max(f64::MIN_POSITIVE);
        let hp: Vec<f64> = (0..k * k)
            .map(|idx| {
                let (a, b) = (idx / k, idx % k);
                h[perm[a] * k + perm[b]] + if a == b { add } else { 0.0 }
            })
            .collect();
        let u = super::cholesky::inverse_upper_cholesky(&hp, k).ok_or_else(|| {
            bad_value("hessian", format!("is not positive definite after dampening {damp}; raise the dampening"))
        })?;
        Ok(PreparedHessian { k, act_order, perm, dead, u: u.iter().map(|&v| v as f32).collect() })
    }
}

/// Scale bits and zeros of every (group, row) from the columns `col0..col0+gs` of the
/// transposed weight `wt` [K][N].
fn params_from_columns(wt: &[f32], n: usize, col0: usize, gs: usize, cfg: &GptqConfig) -> Vec<(u16, u8)> {
    (0..n)
        .into_par_iter()
        .map(|r| {
            let vals: Vec<f32> = (col0..col0 + gs).map(|c| wt[c * n + r]).collect();
            group_params(&vals, cfg.symmetric, cfg.scale_dtype)
        })
        .collect()
}

/// GPTQ-quantizes W[n, k] (row-major) for the Hessian `h` (row-major [k, k], e.g.
/// [`Hessian::matrix`]).
pub fn quantize_gptq(w: &[f32], n: usize, k: usize, h: &[f64], cfg: &GptqConfig) -> Result<Int4Weight> {
    quantize_gptq_prepared(w, n, &PreparedHessian::new(h, k, cfg.act_order, cfg.damp)?, cfg)
}

/// [`quantize_gptq`] with a prepared Hessian (its act-order setting wins over `cfg`'s).
pub fn quantize_gptq_prepared(w: &[f32], n: usize, prep: &PreparedHessian, cfg: &GptqConfig) -> Result<Int4Weight> {
    let k = prep.k;
    check_dense("w", w, n, k)?;
    if cfg.block == 0 {
        return Err(bad_shape("gptq", "block size 0"));
    }
    let gs = cfg.group.resolve(k);
    super::format::check_dims(n, k, gs)?;
    let dt = cfg.scale_dtype;
    let groups = k / gs;
    let (perm, u, act_order) = (&prep.perm, &prep.u, prep.act_order);

    // Transposed weight wt[col][row]: a column is contiguous, so updates are axpys.
    let mut wt = vec![0f32; k * n];
    for r in 0..n {
        for c in 0..k {
            wt[c * n + r] = if prep.dead[c] { 0.0 } else { w[r * k + c] };
        }
    }
    let mut scales = vec![0u16; groups * n];
    let mut zeros = vec![8u8; groups * n];
    let set_group = |g: usize, p: Vec<(u16, u8)>, scales: &mut [u16], zeros: &mut [u8]| {
        for (r, (s, z)) in p.into_iter().enumerate() {
            scales[g * n + r] = s;
            zeros[g * n + r] = z;
        }
    };
    if act_order {
        for g in 0..groups {
            set_group(g, params_from_columns(&wt, n, g * gs, gs, cfg), &mut scales, &mut zeros);
        }
        let mut wp = vec![0f32; k * n];
        for (c, &src) in perm.iter().enumerate() {
            wp[c * n..(c + 1) * n].copy_from_slice(&wt[src * n..(src + 1) * n]);
        }
        wt = wp;
    }

    let mut codes = vec![0u8; n * k];
    for i1 in (0..k).step_by(cfg.block) {
        let i2 = (i1 + cfg.block).min(k);
        let mut err = vec![0f32; (i2 - i1) * n];
        for c in i1..i2 {
            let col = perm[c];
            let g = col / gs;
            if !act_order && col % gs == 0 {
                set_group(g, params_from_columns(&wt, n, c, gs, cfg), &mut scales, &mut zeros);
            }
            let d = u[c * k + c];
            let e = &mut err[(c - i1) * n..(c - i1 + 1) * n];
            for r in 0..n {
                let (s, z) = (dt.to_f32(scales[g * n + r]), zeros[g * n + r]);
                let v = wt[c * n + r];
                let q = quant_code(v, s, z);
                codes[r * k + col] = q;
                e[r] = (v - (f32::from(q) - f32::from(z)) * s) / d;
            }
            let e: &[f32] = e;
            let urow = &u[c * k..(c + 1) * k];
            wt[(c + 1) * n..i2 * n].par_chunks_mut(n).enumerate().for_each(|(j, colj)| {
                let f = urow[c + 1 + j];
                colj.iter_mut().zip(e).for_each(|(a, &b)| *a -= b * f);
            });
        }
        lazy_update(&mut wt, &err, u, n, k, i1, i2);
    }
    let zeros = if cfg.symmetric { Zeros::Symmetric } else { Zeros::Int(zeros) };
    if let Some(i) = scales.iter().position(|&s| !dt.to_f32(s).is_finite()) {
        return Err(bad_value("w", format!("group {} of row {} needs a scale beyond the {dt} range", i / n, i % n)));
    }
    Int4Weight::from_codes(n, k, gs, dt, &codes, scales, zeros)
}

/// wt[i2..k] −= Uᵀ[i2..k, i1..i2] · err[i1..i2]: the block's errors for every later column.
fn lazy_update(wt: &mut [f32], err: &[f32], u: &[f32], n: usize, k: usize, i1: usize, i2: usize) {
    let rest = k - i2;
    if rest == 0 {
        return;
    }
    let cnt = i2 - i1;
    const COLS: usize = 64;
    wt[i2 * n..].par_chunks_mut(COLS * n).enumerate().for_each(|(b, out)| {
        let j0 = i2 + b * COLS;
        let rows = out.len() / n;
        // SAFETY: A[j, i] = u[(i1 + i) * k + j0 + j] is a [rows, cnt] view (row stride 1,
        // column stride k); B = err [cnt, n] row-major; C = out [rows, n] row-major.
        unsafe {
            matrixmultiply::sgemm(
                rows,
                cnt,
                n,
                -1.0,
                u[i1 * k + j0..].as_ptr(),
                1,
                k as isize,
                err.as_ptr(),
                n as isize,
                1,
                1.0,
                out.as_mut_ptr(),
                n as isize,
                1,
            );
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::dense::output_error;
    use crate::quant::metrics::gaussian;
    use crate::quant::rtn::{quantize_rtn, RtnConfig};

    /// Inputs with a few outlier channels and correlated columns, as real activations have.
    pub(crate) fn outlier_inputs(m: usize, k: usize, seed: u64) -> Vec<f32> {
        let mut x = gaussian(m * k, seed);
        let shared = gaussian(m, seed + 1);
        for i in 0..m {
            for c in 0..k {
                x[i * k + c] += 0.7 * shared[i];
                if c % 17 == 3 {
                    x[i * k + c] *= 12.0;
                }
            }
        }
        x
    }

    /// A weight W[n, k], calibration inputs X[m, k] and the Hessian of X.
    struct Calibrated {
        w: Vec<f32>,
        x: Vec<f32>,
        hm: Vec<f64>,
    }

    /// Gaussian weights from `seed` and outlier inputs from `seed + 1`, the Hessian
    /// accumulated in two batches as calibration over several windows does.
    fn calibrated(n: usize, k: usize, m: usize, seed: u64) -> Calibrated {
        let w = gaussian(n * k, seed);
        let x = outlier_inputs(m, k, seed + 1);
        let mut h = Hessian::new(k);
        h.add(&x[..m / 2 * k], m / 2);
        h.add(&x[m / 2 * k..], m - m / 2);
        Calibrated { w, x, hm: h.matrix() }
    }

    fn err_of(q: &Int4Weight, w: &[f32], x: &[f32], m: usize) -> f64 {
        output_error(x, m, w, &q.dequantize(), q.n, q.k)
    }

    #[test]
    fn gptq_output_error_is_below_rtn_on_calibration_inputs() {
        let (n, k, m) = (48, 256, 512);
        let Calibrated { w, x, hm } = calibrated(n, k, m, 11);
        for (group, sym) in
            [(GroupSize::Group(64), false), (GroupSize::Group(128), true), (GroupSize::PerChannel, false)]
        {
            let rtn =
                quantize_rtn(&w, n, k, &RtnConfig { group, symmetric: sym, scale_dtype: HalfDtype::Bf16 }).unwrap();
            for act_order in [false, true] {
                let cfg = GptqConfig { group, symmetric: sym, act_order, ..GptqConfig::default() };
                let g = quantize_gptq(&w, n, k, &hm, &cfg).unwrap();
                let (eg, er) = (err_of(&g, &w, &x, m), err_of(&rtn, &w, &x, m));
                assert!(eg < 0.8 * er, "{group:?} sym={sym} act_order={act_order}: gptq {eg} vs rtn {er}");
            }
        }
    }

    /// Lazy block updates only regroup the same arithmetic: blocks of 32 and of 128 columns
    /// give the same result up to float rounding.
    #[test]
    fn lazy_blocks_do_not_change_the_result() {
        let (n, k, m) = (16, 128, 256);
        let Calibrated { w, x, hm } = calibrated(n, k, m, 5);
        let a = quantize_gptq(&w, n, k, &hm, &GptqConfig { block: 128, ..GptqConfig::default() }).unwrap();
        let b = quantize_gptq(&w, n, k, &hm, &GptqConfig { block: 32, ..GptqConfig::default() }).unwrap();
        let (ea, eb) = (err_of(&a, &w, &x, m), err_of(&b, &w, &x, m));
        assert!((ea - eb).abs() <= 1e-3 * ea, "block 128: {ea}, block 32: {eb}");
    }

    #[test]
    fn dead_inputs_and_bad_hessians() {
        let (n, k) = (8, 64);
        let w = gaussian(n * k, 1);
        let mut h = vec![0f64; k * k];
        for i in 1..k {
            h[i * k + i] = 1.0;
        }
        let q =
            quantize_gptq(&w, n, k, &h, &GptqConfig { group: GroupSize::Group(32), ..GptqConfig::default() }).unwrap();
        assert!((0..n).all(|r| q.dequantize()[r * k] == 0.0), "a dead input's weights are zero");
        h[5] = f64::NAN;
        let e = quantize_gptq(&w, n, k, &h, &GptqConfig::default()).unwrap_err().to_string();
        assert!(e.contains("hessian"), "{e}");
    }
}
