//! Dense f32 products for the quantizers and the CPU model: Y = X·Wᵀ with `matrixmultiply`'s
//! blocked sgemm, split over output columns with rayon (sgemm itself is single-threaded).

use rayon::prelude::*;

/// Output columns per rayon task: big enough to keep sgemm's packing worthwhile.
const COLS_PER_TASK: usize = 64;

/// Y[m, n] = X[m, k] · W[n, k]ᵀ, both row-major, f32 accumulation.
pub fn xwt(x: &[f32], m: usize, w: &[f32], n: usize, k: usize) -> Vec<f32> {
    assert_eq!(x.len(), m * k, "xwt: X is not [{m}, {k}]");
    assert_eq!(w.len(), n * k, "xwt: W is not [{n}, {k}]");
    let mut y = vec![0f32; m * n];
    if m == 0 || n == 0 {
        return y;
    }
    let blocks: Vec<(usize, Vec<f32>)> = (0..n.div_ceil(COLS_PER_TASK))
        .into_par_iter()
        .map(|b| {
            let (c0, c1) = (b * COLS_PER_TASK, ((b + 1) * COLS_PER_TASK).min(n));
            let nb = c1 - c0;
            let mut out = vec![0f32; m * nb];
            // SAFETY: the strides describe X [m, k] row-major, W[c0..c1]ᵀ as a [k, nb] view
            // (row stride 1, column stride k) and `out` [m, nb] row-major, all in bounds.
            unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    nb,
                    1.0,
                    x.as_ptr(),
                    k as isize,
                    1,
                    w[c0 * k..].as_ptr(),
                    1,
                    k as isize,
                    0.0,
                    out.as_mut_ptr(),
                    nb as isize,
                    1,
                );
            }
            (c0, out)
        })
        .collect();
    for (c0, blk) in blocks {
        let nb = blk.len() / m;
        for i in 0..m {
            y[i * n + c0..i * n + c0 + nb].copy_from_slice(&blk[i * nb..(i + 1) * nb]);
        }
    }
    y
}

/// ‖X·(W − Ŵ)ᵀ‖²_F: the output error energy of a quantized linear on inputs X.
pub fn output_error(x: &[f32], m: usize, w: &[f32], w_hat: &[f32], n: usize, k: usize) -> f64 {
    let d: Vec<f32> = w.iter().zip(w_hat).map(|(a, b)| a - b).collect();
    xwt(x, m, &d, n, k).iter().map(|&v| f64::from(v) * f64::from(v)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xwt_matches_naive_at_awkward_sizes() {
        let (m, n, k) = (5, 131, 19);
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 5) % 13) as f32 * 0.25 - 1.5).collect();
        let y = xwt(&x, m, &w, n, k);
        for i in 0..m {
            for j in 0..n {
                let e: f32 = (0..k).map(|t| x[i * k + t] * w[j * k + t]).sum();
                assert!((y[i * n + j] - e).abs() < 1e-3, "({i}, {j}): {} vs {e}", y[i * n + j]);
            }
        }
    }
}
