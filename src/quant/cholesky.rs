//! The one factorization GPTQ needs: the upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU), for a
//! symmetric positive definite H of a few thousand rows.
//!
//! nalgebra's unblocked Cholesky + inverse + Cholesky (≈ 3k³ flops with column-major
//! strides) took ~14 s per Llama layer of SmolLM2 on two cores, and faer is too heavy a build
//! for this project's CI, so this is written out: with J the reversal permutation,
//! L = chol(J·H·J) gives H⁻¹ = (J·L⁻¹·J)ᵀ(J·L⁻¹·J), so U = J·L⁻¹·J: one Cholesky and one
//! triangular inverse (≈ k³/3 multiply-adds in all), row-major with contiguous inner loops.

use rayon::prelude::*;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..4 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Lower Cholesky factor of the SPD row-major `a` [k, k]; None when it is not positive
/// definite (a pivot ≤ 0 or not finite).
pub fn cholesky_lower(a: &[f64], k: usize) -> Option<Vec<f64>> {
    assert_eq!(a.len(), k * k);
    let mut l = vec![0f64; k * k];
    for j in 0..k {
        let (upto, below) = l.split_at_mut((j + 1) * k);
        let rowj = &mut upto[j * k..];
        let s = a[j * k + j] - dot(&rowj[..j], &rowj[..j]);
        if !(s > 0.0 && s.is_finite()) {
            return None;
        }
        let d = s.sqrt();
        rowj[j] = d;
        let rowj: &[f64] = rowj;
        below.par_chunks_mut(k).enumerate().for_each(|(ii, rowi)| {
            let i = j + 1 + ii;
            rowi[j] = (a[i * k + j] - dot(&rowi[..j], &rowj[..j])) / d;
        });
    }
    Some(l)
}

/// L⁻¹ of a lower-triangular row-major L with a positive diagonal.
pub fn lower_inverse(l: &[f64], k: usize) -> Vec<f64> {
    let mut y = vec![0f64; k * k];
    for i in 0..k {
        let (done, rest) = y.split_at_mut(i * k);
        let yi = &mut rest[..k];
        // L[i, :i]·Y[:i, :] + L[i, i]·Y[i, :] = e_i, and Y[p, :] is zero past column p.
        for p in 0..i {
            let f = l[i * k + p];
            if f != 0.0 {
                yi[..=p].iter_mut().zip(&done[p * k..p * k + p + 1]).for_each(|(a, &b)| *a -= f * b);
            }
        }
        let inv = 1.0 / l[i * k + i];
        yi[..i].iter_mut().for_each(|v| *v *= inv);
        yi[i] = inv;
    }
    y
}

/// Upper U with UᵀU = H⁻¹ for SPD `h` [k, k] row-major; None when H is not positive definite.
pub fn inverse_upper_cholesky(h: &[f64], k: usize) -> Option<Vec<f64>> {
    let r = |i: usize| k - 1 - i;
    let jhj: Vec<f64> = (0..k * k).map(|idx| h[r(idx / k) * k + r(idx % k)]).collect();
    let y = lower_inverse(&cholesky_lower(&jhj, k)?, k);
    Some((0..k * k).map(|idx| y[r(idx / k) * k + r(idx % k)]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u_transpose_u_is_the_inverse() {
        let k = 37;
        // H = AᵀA + I: symmetric positive definite.
        let a: Vec<f64> = (0..k * k).map(|i| ((i * 31 + 7) % 19) as f64 / 19.0 - 0.5).collect();
        let mut h = vec![0f64; k * k];
        for i in 0..k {
            for j in 0..k {
                h[i * k + j] =
                    (0..k).map(|p| a[p * k + i] * a[p * k + j]).sum::<f64>() + if i == j { 1.0 } else { 0.0 };
            }
        }
        let u = inverse_upper_cholesky(&h, k).unwrap();
        for i in 0..k {
            for j in 0..i {
                assert_eq!(u[i * k + j], 0.0, "U is upper triangular");
            }
        }
        // (UᵀU)·H = I.
        for i in 0..k {
            for j in 0..k {
                let v: f64 =
                    (0..k).map(|p| (0..k).map(|q| u[q * k + i] * u[q * k + p]).sum::<f64>() * h[p * k + j]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((v - want).abs() < 1e-9, "({i}, {j}): {v}");
            }
        }
        let mut bad = h.clone();
        bad[0] = -1.0;
        assert!(inverse_upper_cholesky(&bad, k).is_none());
    }
}
