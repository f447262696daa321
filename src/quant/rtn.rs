//! Round-to-nearest (RTN) int4 quantizer into `Int4Weight`.
//!
//! Per (row, group):
//! - symmetric: scale s = max(max(w, 0) / 7, max(-w, 0) / 8), so the whole code range
//!   q - 8 in [-8, 7] is usable without clipping either side; q = clamp(round(w/s) + 8, 0, 15);
//! - asymmetric: the range [min(w, 0), max(w, 0)] (zero is kept representable, as GPTQ and
//!   AWQ do) maps to 0..15: s = (hi - lo) / 15, z = clamp(round(-lo / s), 0, 15),
//!   q = clamp(round(w/s) + z, 0, 15).
//!
//! The scale is rounded to its 16-bit dtype *before* computing codes, so codes are chosen for
//! the scale that is actually stored.

use super::error::{bad_shape, bad_value, check_len, Result};
use super::format::{HalfDtype, Int4Weight, Zeros};
use rayon::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupSize {
    /// Groups of this many consecutive input columns (32, 64, 128, ...; a multiple of 8).
    Group(usize),
    /// One group per output row (group size = K).
    PerChannel,
}

impl GroupSize {
    pub fn resolve(self, k: usize) -> usize {
        match self {
            GroupSize::Group(g) => g,
            GroupSize::PerChannel => k,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtnConfig {
    pub group: GroupSize,
    pub symmetric: bool,
    pub scale_dtype: HalfDtype,
}

impl Default for RtnConfig {
    /// W4A16 as the model uses it: group 128, symmetric, bf16 scales.
    fn default() -> Self {
        RtnConfig { group: GroupSize::Group(128), symmetric: true, scale_dtype: HalfDtype::Bf16 }
    }
}

/// Checks a dense weight W[n, k] (row-major) for the quantizers: length and finiteness.
pub(crate) fn check_dense(tensor: &str, w: &[f32], n: usize, k: usize) -> Result<()> {
    if n == 0 || k == 0 {
        return Err(bad_shape(tensor, format!("shape [{n}, {k}] has a zero dimension")));
    }
    check_len(tensor, &[n, k], n * k, w.len())?;
    if let Some(i) = w.iter().position(|v| !v.is_finite()) {
        return Err(bad_value(tensor, format!("element {i} (row {}, column {}) is {}", i / k, i % k, w[i])));
    }
    Ok(())
}

/// Scale bits and integer zero point of one group of values (see module docs). The
/// asymmetric zero is chosen for the scale as stored in `dt`.
pub(crate) fn group_params(vals: &[f32], symmetric: bool, dt: HalfDtype) -> (u16, u8) {
    let hi = vals.iter().fold(0f32, |a, &v| a.max(v));
    let lo = vals.iter().fold(0f32, |a, &v| a.min(v));
    if symmetric {
        // An all-zero group gives +0 (f32::max of 0 and -0 may be either).
        let s = (hi / 7.0).max(-lo / 8.0);
        (dt.from_f32(if s > 0.0 { s } else { 0.0 }), 8)
    } else {
        let bits = dt.from_f32((hi - lo) / 15.0);
        let s_used = dt.to_f32(bits);
        let z = if s_used > 0.0 { (-lo / s_used).round().clamp(0.0, 15.0) as u8 } else { 8 };
        (bits, z)
    }
}

/// The 4-bit code of `v` for the stored scale `s_used` and zero `z`.
pub(crate) fn quant_code(v: f32, s_used: f32, z: u8) -> u8 {
    if s_used > 0.0 {
        ((v / s_used).round() + f32::from(z)).clamp(0.0, 15.0) as u8
    } else {
        z // an all-zero group (or a scale that underflowed): every value is 0
    }
}

/// Quantizes W[n, k] (row-major f32) with round-to-nearest.
pub fn quantize_rtn(w: &[f32], n: usize, k: usize, cfg: &RtnConfig) -> Result<Int4Weight> {
    check_dense("w", w, n, k)?;
    let gs = cfg.group.resolve(k);
    super::format::check_dims(n, k, gs)?;
    let groups = k / gs;
    let dt = cfg.scale_dtype;

    // Per row: (codes, scale bits per group, zero per group); rows are independent.
    let rows: Vec<(Vec<u8>, Vec<u16>, Vec<u8>)> = (0..n)
        .into_par_iter()
        .map(|row| {
            let src = &w[row * k..][..k];
            let mut codes = vec![0u8; k];
            let mut sc = vec![0u16; groups];
            let mut zs = vec![0u8; groups];
            for g in 0..groups {
                let vals = &src[g * gs..][..gs];
                let (bits, z) = group_params(vals, cfg.symmetric, dt);
                sc[g] = bits;
                zs[g] = z;
                let s_used = dt.to_f32(bits);
                for (c, &v) in codes[g * gs..][..gs].iter_mut().zip(vals) {
                    *c = quant_code(v, s_used, z);
                }
            }
            (codes, sc, zs)
        })
        .collect();

    let mut codes = Vec::with_capacity(n * k);
    let mut scales = vec![0u16; groups * n];
    let mut zeros = vec![0u8; groups * n];
    for (row, (c, sc, zs)) in rows.into_iter().enumerate() {
        codes.extend_from_slice(&c);
        for g in 0..groups {
            scales[g * n + row] = sc[g];
            zeros[g * n + row] = zs[g];
        }
    }
    if let Some(i) = scales.iter().position(|&s| !dt.to_f32(s).is_finite()) {
        return Err(bad_value("w", format!("group {} of row {} needs a scale beyond the {dt} range", i / n, i % n)));
    }
    let zeros = if cfg.symmetric { Zeros::Symmetric } else { Zeros::Int(zeros) };
    Int4Weight::from_codes(n, k, gs, dt, &codes, scales, zeros)
}
