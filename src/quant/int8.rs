//! int8 weight-only quantization, symmetric per output channel: the second precision.
//!
//! Layout: `q` i8 row-major [N][K]; `scales` [N] 16-bit floats; value = q * scale,
//! scale = max|w_row| / 127 rounded to its dtype, q = clamp(round(w / scale), -127, 127).

use super::error::{bad_value, check_len, Result};
use super::format::HalfDtype;
use super::rtn::check_dense;

#[derive(Debug, Clone, PartialEq)]
pub struct Int8Weight {
    pub n: usize,
    pub k: usize,
    pub scale_dtype: HalfDtype,
    pub q: Vec<i8>,
    pub scales: Vec<u16>,
}

impl Int8Weight {
    pub fn validate(&self) -> Result<()> {
        if self.n == 0 || self.k == 0 {
            return Err(super::error::bad_shape(
                "weight",
                format!("shape [{}, {}] has a zero dimension", self.n, self.k),
            ));
        }
        check_len("q", &[self.n, self.k], self.n * self.k, self.q.len())?;
        check_len("scales", &[self.n], self.n, self.scales.len())?;
        if let Some(i) = self.scales.iter().position(|&s| !self.scale_dtype.to_f32(s).is_finite()) {
            return Err(bad_value("scales", format!("scale of row {i} is not finite")));
        }
        Ok(())
    }

    /// Row-major [N][K] f32; exact (8-bit code times an at most 11-bit scale).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.n * self.k);
        for row in 0..self.n {
            let s = self.scale_dtype.to_f32(self.scales[row]);
            out.extend(self.q[row * self.k..][..self.k].iter().map(|&q| f32::from(q) * s));
        }
        out
    }

    pub fn total_bytes(&self) -> usize {
        self.q.len() + 2 * self.scales.len()
    }
}

/// Quantizes W[n, k] (row-major f32) to int8 with one scale per row.
pub fn quantize_int8_per_channel(w: &[f32], n: usize, k: usize, scale_dtype: HalfDtype) -> Result<Int8Weight> {
    check_dense("w", w, n, k)?;
    let mut q = Vec::with_capacity(n * k);
    let mut scales = Vec::with_capacity(n);
    for row in 0..n {
        let src = &w[row * k..][..k];
        let amax = src.iter().fold(0f32, |a, &v| a.max(v.abs()));
        let bits = scale_dtype.from_f32(amax / 127.0);
        let s = scale_dtype.to_f32(bits);
        if !s.is_finite() {
            return Err(bad_value("w", format!("row {row} needs a scale beyond the {scale_dtype} range")));
        }
        scales.push(bits);
        q.extend(src.iter().map(|&v| if s > 0.0 { (v / s).round().clamp(-127.0, 127.0) as i8 } else { 0 }));
    }
    let out = Int8Weight { n, k, scale_dtype, q, scales };
    out.validate()?;
    Ok(out)
}
