//! The inverse of [`super::gptq`]: an [`Int4Weight`] written in the GPTQ checkpoint layout
//! that AutoGPTQ, GPTQModel, transformers and vLLM read (see `gptq.rs` for the layout).
//!
//! The zero-point convention is chosen per weight set, not per tensor: AutoGPTQ's "v1"
//! (stored z − 1) is what the Hub's checkpoints use, but it cannot hold z = 0 (stored −1 is
//! nibble 15, which every v1 reader takes as z = 16: AutoGPTQ's own quantizer writes such
//! broken zeros). [`zeros_convention`] therefore picks v1 when every zero point is at least
//! 1 and GPTQModel's "v2" (z stored as is) otherwise, so the file is always loss-free.

use super::error::{bad_shape, bad_value, Result};
use super::format::{Int4Weight, Zeros};
use super::gptq::GptqZeros;

/// One linear in GPTQ layout: the four tensors of `<prefix>.{qweight,qzeros,scales,g_idx}`.
#[derive(Debug, Clone, PartialEq)]
pub struct GptqPacked {
    /// int32 [K/8, N]: word (i, n) holds rows 8i..8i+7 of column n, row 8i + j at bits 4j.
    pub qweight: Vec<i32>,
    /// int32 [K/G, N/8]: word (g, j) holds columns 8j..8j+7, column 8j + c at bits 4c.
    pub qzeros: Vec<i32>,
    /// [K/G, N] scale bits in the weight's scale dtype (the same array kernlab keeps).
    pub scales: Vec<u16>,
    /// int32 [K]: the group of each input column, k / G (no act-order reordering).
    pub g_idx: Vec<i32>,
}

/// The convention that stores every zero point of `weights` loss-free: v1 unless some
/// integer zero point is 0. Float minimums have no GPTQ form and are an error.
pub fn zeros_convention<'a>(weights: impl IntoIterator<Item = &'a Int4Weight>) -> Result<GptqZeros> {
    let mut conv = GptqZeros::V1PlusOne;
    for w in weights {
        match &w.zeros {
            Zeros::Symmetric => {}
            Zeros::Int(z) if z.contains(&0) => conv = GptqZeros::V2,
            Zeros::Int(_) => {}
            Zeros::Min(_) => {
                return Err(bad_value("qzeros", "float minimums (GGUF Q4_1) have no GPTQ integer zero point"))
            }
        }
    }
    Ok(conv)
}

/// Packs `w` in GPTQ layout with zero points stored under `conv`.
pub fn int4_to_gptq(w: &Int4Weight, conv: GptqZeros) -> Result<GptqPacked> {
    let (n, k, groups) = (w.n, w.k, w.num_groups());
    if !n.is_multiple_of(8) {
        return Err(bad_shape("qzeros", format!("N={n} is not a multiple of 8 (GPTQ packs 8 zero points per int32)")));
    }
    let mut qweight = vec![0i32; k / 8 * n];
    let codes = w.codes();
    for col in 0..n {
        let row = &codes[col * k..][..k];
        for (i, run) in row.chunks_exact(8).enumerate() {
            let word = run.iter().enumerate().fold(0u32, |acc, (j, &q)| acc | (u32::from(q) << (4 * j)));
            qweight[i * n + col] = word as i32;
        }
    }
    let offset = match conv {
        GptqZeros::V1PlusOne => 1,
        GptqZeros::V2 => 0,
    };
    let zero = |idx: usize| -> Result<u32> {
        let z = match &w.zeros {
            Zeros::Symmetric => 8,
            Zeros::Int(z) => z[idx],
            Zeros::Min(_) => return Err(bad_value("qzeros", "float minimums have no GPTQ integer zero point")),
        };
        let stored = z.checked_sub(offset).filter(|s| *s <= 15).ok_or_else(|| {
            bad_value("qzeros", format!("zero point {z} does not fit this convention ({conv:?}); see zeros_convention"))
        })?;
        Ok(u32::from(stored))
    };
    let mut qzeros = vec![0i32; groups * (n / 8)];
    for g in 0..groups {
        for j in 0..n / 8 {
            let mut word = 0u32;
            for c in 0..8 {
                word |= zero(g * n + 8 * j + c)? << (4 * c);
            }
            qzeros[g * (n / 8) + j] = word as i32;
        }
    }
    let g_idx = (0..k).map(|kk| (kk / w.group_size) as i32).collect();
    Ok(GptqPacked { qweight, qzeros, scales: w.scales.clone(), g_idx })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::format::patterned_weight as weight;
    use crate::quant::gptq::{gptq_to_int4, GptqTensors};
    use crate::quant::view::TensorView;

    fn round_trip(w: &Int4Weight, conv: GptqZeros) -> Int4Weight {
        let p = int4_to_gptq(w, conv).unwrap();
        let (n, k, g) = (w.n, w.k, w.num_groups());
        let (qs, zs, ss, gs) = ([k / 8, n], [g, n / 8], [g, n], [k]);
        let t = GptqTensors {
            qweight: TensorView::new(&qs, &p.qweight),
            qzeros: TensorView::new(&zs, &p.qzeros),
            scales: TensorView::new(&ss, &p.scales),
            g_idx: Some(TensorView::new(&gs, &p.g_idx)),
        };
        let c = gptq_to_int4(&t, n, k, w.group_size, w.scale_dtype, conv).unwrap();
        assert_eq!(c.k_perm, None, "a sequential g_idx needs no permutation");
        c.weight
    }

    #[test]
    fn packing_then_converting_gives_the_weight_back_under_both_conventions() {
        let w = weight(16, 64, 32, |i| (1 + i % 15) as u8);
        assert_eq!(zeros_convention([&w]).unwrap(), GptqZeros::V1PlusOne);
        assert_eq!(round_trip(&w, GptqZeros::V1PlusOne), w);
        assert_eq!(round_trip(&w, GptqZeros::V2), w);
    }

    #[test]
    fn a_zero_point_of_zero_needs_v2_and_v1_refuses_it() {
        let w = weight(8, 32, 32, |i| (i % 16) as u8);
        assert_eq!(zeros_convention([&w]).unwrap(), GptqZeros::V2);
        assert!(int4_to_gptq(&w, GptqZeros::V1PlusOne).is_err());
        assert_eq!(round_trip(&w, GptqZeros::V2), w);
    }

    #[test]
    fn symmetric_weights_store_seven_under_v1() {
        let mut w = weight(8, 32, 32, |_| 8);
        w.zeros = Zeros::Symmetric;
        let p = int4_to_gptq(&w, GptqZeros::V1PlusOne).unwrap();
        assert!(p.qzeros.iter().all(|&z| z as u32 == 0x7777_7777), "{:x?}", p.qzeros);
        assert_eq!(round_trip(&w, GptqZeros::V1PlusOne), w, "all-8 zeros read back as Symmetric");
    }
}
