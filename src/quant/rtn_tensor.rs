//! Round-to-nearest with ONE scale (and zero point) for the whole tensor.
//!
//! The kernels have no per-tensor mode, and need none: a per-tensor quantization is the
//! per-channel format (group size K) with every row's scale and zero set to the tensor's.
//! It exists to show what per-channel and per-group scales buy.

use super::error::Result;
use super::format::{HalfDtype, Int4Weight, Zeros};
use super::rtn::{check_dense, group_params, quant_code};

/// Quantizes W[n, k] with one scale for all of it, symmetric (zero 8) or with a zero point.
pub fn quantize_rtn_per_tensor(w: &[f32], n: usize, k: usize, symmetric: bool, dt: HalfDtype) -> Result<Int4Weight> {
    check_dense("w", w, n, k)?;
    super::format::check_dims(n, k, k)?;
    let (bits, z) = group_params(w, symmetric, dt);
    let s_used = dt.to_f32(bits);
    let codes: Vec<u8> = w.iter().map(|&v| quant_code(v, s_used, z)).collect();
    let zeros = if symmetric { Zeros::Symmetric } else { Zeros::Int(vec![z; n]) };
    Int4Weight::from_codes(n, k, k, dt, &codes, vec![bits; n], zeros)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::metrics::{gaussian, rel_fro};
    use crate::quant::rtn::{quantize_rtn, GroupSize, RtnConfig};

    /// Rows of very different magnitude: one tensor scale wastes the small rows' codes, so
    /// per-tensor error must exceed per-channel error, and every row shares one scale.
    #[test]
    fn per_tensor_shares_one_scale_and_is_worse_than_per_channel() {
        let (n, k) = (16, 64);
        let mut w = gaussian(n * k, 3);
        for (i, v) in w.iter_mut().enumerate() {
            *v *= 1.0 + (i / k) as f32 * 3.0;
        }
        for sym in [true, false] {
            let t = quantize_rtn_per_tensor(&w, n, k, sym, HalfDtype::Bf16).unwrap();
            assert!(t.scales.iter().all(|&s| s == t.scales[0]));
            let cfg = RtnConfig { group: GroupSize::PerChannel, symmetric: sym, scale_dtype: HalfDtype::Bf16 };
            let c = quantize_rtn(&w, n, k, &cfg).unwrap();
            let (et, ec) = (rel_fro(&w, &t.dequantize()), rel_fro(&w, &c.dequantize()));
            assert!(et > ec * 1.2, "symmetric={sym}: per-tensor {et} vs per-channel {ec}");
        }
    }
}
