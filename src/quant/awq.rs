//! Loss-free conversion from AutoAWQ's GEMM layout.
//!
//! AutoAWQ (`WQLinear_GEMM`) stores, for W[N, K] with group size g:
//! - `qweight` int32 [K, N/8]: word (k, j) packs columns n = 8j..8j+7 of input row k; the code
//!   of column 8j + AWQ_ORDER[p] sits at bits 4p..4p+3, AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7];
//! - `qzeros` int32 [K/g, N/8], packed the same way along N;
//! - `scales` f16 [K/g, N]; value = (q - z) * scale.
//!
//! Converting only moves codes (transposing to rows of K and re-packing in kernlab order) and
//! copies scales and zeros bit for bit, so it is exact.

use super::error::Result;
use super::format::{HalfDtype, Int4Weight, Zeros};
use super::view::TensorView;

/// Bit position (in nibbles) of column c of an 8-column run in an AWQ word.
const AWQ_POS: [usize; 8] = [0, 4, 1, 5, 2, 6, 3, 7];

pub struct AwqTensors<'a> {
    pub qweight: TensorView<'a, i32>,
    pub qzeros: TensorView<'a, i32>,
    pub scales: TensorView<'a, u16>,
}

fn awq_nibble(word: i32, col: usize) -> u8 {
    ((word as u32 >> (4 * AWQ_POS[col % 8])) & 0xF) as u8
}

/// Converts an AutoAWQ GEMM checkpoint tensor set for W[n, k]. `scale_dtype` is the dtype of
/// the `scales` tensor (f16 in AutoAWQ checkpoints). Zero points that are all 8 become
/// `Zeros::Symmetric`.
pub fn awq_to_int4(
    t: &AwqTensors,
    n: usize,
    k: usize,
    group_size: usize,
    scale_dtype: HalfDtype,
) -> Result<Int4Weight> {
    super::format::check_dims(n, k, group_size)?;
    if !n.is_multiple_of(8) {
        return Err(super::error::bad_shape(
            "qweight",
            format!("N={n} is not a multiple of 8 (AWQ packs 8 columns of N per int32)"),
        ));
    }
    let groups = k / group_size;
    t.qweight.expect("qweight", &[k, n / 8])?;
    t.qzeros.expect("qzeros", &[groups, n / 8])?;
    t.scales.expect("scales", &[groups, n])?;

    let mut codes = vec![0u8; n * k];
    for kk in 0..k {
        let src = &t.qweight.data[kk * (n / 8)..][..n / 8];
        for col in 0..n {
            codes[col * k + kk] = awq_nibble(src[col / 8], col);
        }
    }
    let mut zeros = vec![0u8; groups * n];
    for g in 0..groups {
        for col in 0..n {
            zeros[g * n + col] = awq_nibble(t.qzeros.data[g * (n / 8) + col / 8], col);
        }
    }
    let mut w =
        Int4Weight::from_codes(n, k, group_size, scale_dtype, &codes, t.scales.data.to_vec(), Zeros::Int(zeros))?;
    w.simplify_zeros();
    Ok(w)
}
