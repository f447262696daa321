//! The inverse of [`super::awq`]: an [`Int4Weight`] written in AutoAWQ's GEMM layout
//! (`WQLinear_GEMM`), which AutoAWQ, transformers and vLLM read (see `awq.rs` for the layout).
//!
//! AutoAWQ packs 8 columns of N into each int32 in the order [0, 2, 4, 6, 1, 3, 5, 7]: nibble
//! p (bits 4p..4p+3) holds column `AWQ_PACK_ORDER[p]` of the run. This is written here from
//! AutoAWQ's own packing loop (`qweight |= w[:, 8j + order_map[p]] << 4p`), not from the
//! reader's table, so the round-trip tests check one against the other.
//!
//! What the layout cannot hold is refused, not approximated:
//! - AutoAWQ always stores zero points (`zero_point: true`), one nibble each, so zero
//!   points must lie in 0..=15: symmetric weights are written with an explicit z = 8 (they
//!   read back as symmetric), GPTQ v1's z = 16 and float minimums (GGUF Q4_1) are errors;
//! - there is no `g_idx`: act-order weights whose groups are scattered along K are refused
//!   ([`gptq_converted_to_awq`]).

use super::error::{bad_shape, bad_value, Result};
use super::format::{Int4Weight, Zeros};
use super::gptq::GptqConverted;

/// AutoAWQ's pack order: nibble p of a word holds column `AWQ_PACK_ORDER[p]` of its 8-column run.
pub const AWQ_PACK_ORDER: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];

/// One linear in AutoAWQ GEMM layout: the three tensors of `<prefix>.{qweight,qzeros,scales}`.
#[derive(Debug, Clone, PartialEq)]
pub struct AwqPacked {
    /// int32 [K, N/8]: word (k, j) holds columns 8j..8j+7 of input row k, in AWQ order.
    pub qweight: Vec<i32>,
    /// int32 [K/G, N/8]: word (g, j) holds the zero points of columns 8j..8j+7, in AWQ order.
    pub qzeros: Vec<i32>,
    /// [K/G, N] scale bits in the weight's scale dtype (the same array kernlab keeps).
    pub scales: Vec<u16>,
}

impl AwqPacked {
    /// The shapes of qweight, qzeros and scales for W[n, k] with `groups` groups.
    pub fn shapes(n: usize, k: usize, groups: usize) -> [Vec<usize>; 3] {
        [vec![k, n / 8], vec![groups, n / 8], vec![groups, n]]
    }
}

/// Packs 8 nibbles (columns 0..7 of a run) into one word in AutoAWQ's order.
fn awq_word(vals: impl Fn(usize) -> u8) -> i32 {
    AWQ_PACK_ORDER.iter().enumerate().fold(0u32, |acc, (p, &c)| acc | (u32::from(vals(c)) << (4 * p))) as i32
}

/// Packs `w` in AutoAWQ's GEMM layout. Symmetric weights get explicit zero points of 8;
/// zero points above 15 and float minimums have no AWQ form and are errors.
pub fn int4_to_awq(w: &Int4Weight) -> Result<AwqPacked> {
    let (n, k, groups) = (w.n, w.k, w.num_groups());
    if !n.is_multiple_of(8) {
        return Err(bad_shape("qweight", format!("N={n} is not a multiple of 8 (AWQ packs 8 columns of N per int32)")));
    }
    let zeros: Vec<u8> = match &w.zeros {
        Zeros::Symmetric => vec![8; groups * n],
        Zeros::Int(z) => {
            if let Some(i) = z.iter().position(|&v| v > 15) {
                return Err(bad_value(
                    "qzeros",
                    format!(
                        "zero point {} (group {}, row {}) does not fit AWQ's 4-bit zeros (0..=15)",
                        z[i],
                        i / n,
                        i % n
                    ),
                ));
            }
            z.clone()
        }
        Zeros::Min(_) => {
            return Err(bad_value(
                "qzeros",
                "float minimums (GGUF Q4_1) have no AWQ integer zero point: AutoAWQ stores value = (q - z) * scale",
            ))
        }
    };
    let codes = w.codes(); // row-major [N][K]
    let words = n / 8;
    let mut qweight = vec![0i32; k * words];
    for kk in 0..k {
        for j in 0..words {
            qweight[kk * words + j] = awq_word(|c| codes[(8 * j + c) * k + kk]);
        }
    }
    let mut qzeros = vec![0i32; groups * words];
    for g in 0..groups {
        for j in 0..words {
            qzeros[g * words + j] = awq_word(|c| zeros[g * n + 8 * j + c]);
        }
    }
    Ok(AwqPacked { qweight, qzeros, scales: w.scales.clone() })
}

/// A converted GPTQ linear in AWQ layout: refused when it is act-order (a `k_perm`), since
/// AutoAWQ's layout has no `g_idx` to say where each group's columns are.
pub fn gptq_converted_to_awq(c: &GptqConverted) -> Result<AwqPacked> {
    if c.k_perm.is_some() {
        return Err(bad_value(
            "g_idx",
            "act-order (desc_act) weights scatter their groups along K; AutoAWQ's GEMM layout has no g_idx \
             to hold that: keep them in GPTQ layout",
        ));
    }
    int4_to_awq(&c.weight)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::awq::{awq_to_int4, AwqTensors};
    use crate::quant::format::patterned_weight as weight;
    use crate::quant::format::HalfDtype;
    use crate::quant::view::TensorView;

    fn read_back(w: &Int4Weight, p: &AwqPacked) -> Int4Weight {
        let [qs, zs, ss] = AwqPacked::shapes(w.n, w.k, w.num_groups());
        let t = AwqTensors {
            qweight: TensorView::new(&qs, &p.qweight),
            qzeros: TensorView::new(&zs, &p.qzeros),
            scales: TensorView::new(&ss, &p.scales),
        };
        awq_to_int4(&t, w.n, w.k, w.group_size, w.scale_dtype).unwrap()
    }

    #[test]
    fn nibbles_sit_where_autoawq_puts_them() {
        // Columns 0..7 of row k = 0 hold codes 0..7, zero points 8..15: AutoAWQ's order
        // [0, 2, 4, 6, 1, 3, 5, 7] from the low nibble up.
        let mut codes = vec![0u8; 8 * 8];
        for c in 0..8 {
            codes[c * 8] = c as u8;
        }
        let scales = vec![HalfDtype::F16.from_f32(1.0); 8];
        let z = (8..16).collect();
        let w = Int4Weight::from_codes(8, 8, 8, HalfDtype::F16, &codes, scales, Zeros::Int(z)).unwrap();
        let p = int4_to_awq(&w).unwrap();
        assert_eq!(p.qweight[0] as u32, 0x7531_6420, "{:x}", p.qweight[0]);
        assert!(p.qweight[1..].iter().all(|&v| v == 0));
        assert_eq!(p.qzeros[0] as u32, 0xfdb9_eca8, "{:x}", p.qzeros[0]);
    }

    #[test]
    fn packing_then_converting_gives_the_weight_back_bit_for_bit() {
        // N = 40 and 72 (not multiples of 64), several groups, zero points 0 and 15 present.
        for (n, k, g) in [(40, 96, 32), (72, 64, 16), (16, 128, 128), (24, 48, 8)] {
            let w = weight(n, k, g, |i| (i % 16) as u8);
            let Zeros::Int(z) = &w.zeros else { unreachable!() };
            assert!(z.contains(&0) && z.contains(&15), "{n}x{k}");
            let p = int4_to_awq(&w).unwrap();
            assert_eq!((p.qweight.len(), p.qzeros.len(), p.scales.len()), (k * n / 8, k / g * n / 8, k / g * n));
            assert_eq!(read_back(&w, &p), w, "[{n}, {k}] g{g}");
        }
    }

    #[test]
    fn symmetric_weights_store_explicit_eights_and_read_back_symmetric() {
        let mut w = weight(16, 64, 32, |_| 8);
        w.zeros = Zeros::Symmetric;
        let p = int4_to_awq(&w).unwrap();
        assert!(p.qzeros.iter().all(|&z| z as u32 == 0x8888_8888), "{:x?}", p.qzeros);
        assert_eq!(read_back(&w, &p), w);
    }

    #[test]
    fn what_awq_cannot_hold_is_refused() {
        let sixteen = weight(8, 32, 32, |i| if i == 3 { 16 } else { 1 });
        let e = int4_to_awq(&sixteen).unwrap_err().to_string();
        assert!(e.contains("zero point 16") && e.contains("0..=15"), "{e}");

        let mut min = weight(8, 32, 32, |_| 1);
        min.zeros = Zeros::Min(vec![HalfDtype::F16.from_f32(-0.5); 8]);
        let e = int4_to_awq(&min).unwrap_err().to_string();
        assert!(e.contains("float minimums"), "{e}");

        let odd = weight(12, 32, 32, |_| 1);
        assert!(int4_to_awq(&odd).unwrap_err().to_string().contains("N=12"));

        let w = weight(8, 64, 32, |_| 3);
        let mut perm: Vec<u32> = (0..64).collect();
        perm.swap(0, 40);
        let act = GptqConverted { weight: w.clone(), k_perm: Some(perm) };
        let e = gptq_converted_to_awq(&act).unwrap_err().to_string();
        assert!(e.contains("g_idx") && e.contains("act-order"), "{e}");
        let seq = GptqConverted { weight: w.clone(), k_perm: None };
        assert_eq!(read_back(&w, &gptq_converted_to_awq(&seq).unwrap()), w);
    }
}
