//! Row operations on [`Int4Weight`]s, loss-free: stacking linears that read the same input
//! into one (q/k/v into qkv, gate/up into gate_up, as the model's GPU path runs them) and
//! interleaving the halves of a stacked weight in row blocks (the fused SwiGLU layout).

use super::error::{bad_shape, Result};
use super::format::{Int4Weight, Zeros};

/// The rows of `parts` stacked in order: one weight [ΣN, K]. The parts must share K, group
/// and scale dtype; zero points are unified (symmetric parts get explicit 8s when another
/// part has integer zeros). Float minimums cannot be mixed with other kinds.
pub fn stack_rows(parts: &[&Int4Weight]) -> Result<Int4Weight> {
    let first = parts.first().ok_or_else(|| bad_shape("weight", "nothing to stack"))?;
    for p in parts {
        if (p.k, p.group_size, p.scale_dtype) != (first.k, first.group_size, first.scale_dtype) {
            return Err(bad_shape(
                "weight",
                format!(
                    "cannot stack [{}, {}] g{} {} under [{}, {}] g{} {}: K, group and scale dtype must agree",
                    p.n, p.k, p.group_size, p.scale_dtype, first.n, first.k, first.group_size, first.scale_dtype
                ),
            ));
        }
    }
    let n: usize = parts.iter().map(|p| p.n).sum();
    let groups = first.num_groups();
    let packed = parts.iter().flat_map(|p| p.packed.iter().copied()).collect();
    // [K/G][N] arrays: group row g of the result is group row g of every part, in order.
    let by_group = |get: &dyn Fn(&Int4Weight) -> Vec<u16>| -> Vec<u16> {
        let arrays: Vec<Vec<u16>> = parts.iter().map(|p| get(p)).collect();
        (0..groups)
            .flat_map(|g| parts.iter().zip(&arrays).flat_map(move |(p, a)| a[g * p.n..][..p.n].to_vec()))
            .collect()
    };
    let scales = by_group(&|p| p.scales.clone());
    let any_min = parts.iter().any(|p| matches!(p.zeros, Zeros::Min(_)));
    let any_int = parts.iter().any(|p| matches!(p.zeros, Zeros::Int(_)));
    let zeros = match (any_min, any_int) {
        (true, _) if !parts.iter().all(|p| matches!(p.zeros, Zeros::Min(_))) => {
            return Err(bad_shape("zeros", "cannot stack float-minimum weights with other zero-point kinds"))
        }
        (true, _) => Zeros::Min(by_group(&|p| match &p.zeros {
            Zeros::Min(m) => m.clone(),
            _ => unreachable!("checked above"),
        })),
        (false, true) => {
            let z = by_group(&|p| match &p.zeros {
                Zeros::Int(z) => z.iter().map(|&v| u16::from(v)).collect(),
                _ => vec![8; groups * p.n],
            });
            Zeros::Int(z.into_iter().map(|v| v as u8).collect())
        }
        (false, false) => Zeros::Symmetric,
    };
    let w = Int4Weight {
        n,
        k: first.k,
        group_size: first.group_size,
        scale_dtype: first.scale_dtype,
        packed,
        scales,
        zeros,
    };
    w.validate()?;
    Ok(w)
}

/// `w`'s two halves (rows 0..N/2 and N/2..N) interleaved in blocks of `block` rows: block i
/// of the first half, then block i of the second. N/2 must be a multiple of `block`.
pub fn interleave_halves(w: &Int4Weight, block: usize) -> Result<Int4Weight> {
    let half = w.n / 2;
    if block == 0 || w.n % 2 != 0 || half % block != 0 {
        return Err(bad_shape("weight", format!("N={} does not split into two halves of {block}-row blocks", w.n)));
    }
    // Source row of each destination row.
    let order: Vec<usize> = (0..half / block)
        .flat_map(|b| (0..block).map(move |r| b * block + r).chain((0..block).map(move |r| half + b * block + r)))
        .collect();
    let wpr = w.words_per_row();
    let packed = order.iter().flat_map(|&r| w.packed[r * wpr..][..wpr].iter().copied()).collect();
    let per_group = |a: &[u16]| -> Vec<u16> {
        (0..w.num_groups()).flat_map(|g| order.iter().map(move |&r| a[g * w.n + r])).collect()
    };
    let zeros = match &w.zeros {
        Zeros::Symmetric => Zeros::Symmetric,
        Zeros::Int(z) => {
            let wide: Vec<u16> = z.iter().map(|&v| u16::from(v)).collect();
            Zeros::Int(per_group(&wide).into_iter().map(|v| v as u8).collect())
        }
        Zeros::Min(m) => Zeros::Min(per_group(m)),
    };
    let out = Int4Weight { packed, scales: per_group(&w.scales), zeros, ..w.clone() };
    out.validate()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::format::HalfDtype;

    fn weight(n: usize, k: usize, seed: usize, zeros: bool) -> Int4Weight {
        let codes: Vec<u8> = (0..n * k).map(|i| ((i * 5 + seed * 3 + i / 7) % 16) as u8).collect();
        let g = k / 16;
        let scales = (0..g * n).map(|i| HalfDtype::Bf16.from_f32(0.5 + (i + seed) as f32 * 0.01)).collect();
        let z =
            if zeros { Zeros::Int((0..g * n).map(|i| ((i + seed) % 17) as u8).collect()) } else { Zeros::Symmetric };
        Int4Weight::from_codes(n, k, 16, HalfDtype::Bf16, &codes, scales, z).unwrap()
    }

    fn rows(w: &Int4Weight) -> Vec<Vec<f32>> {
        w.dequantize().chunks(w.k).map(|r| r.to_vec()).collect()
    }

    #[test]
    fn stacking_keeps_every_row_value_and_unifies_zero_points() {
        let (a, b, c) = (weight(8, 32, 1, false), weight(16, 32, 2, true), weight(8, 32, 3, false));
        let s = stack_rows(&[&a, &b, &c]).unwrap();
        assert!(matches!(s.zeros, Zeros::Int(_)));
        let want: Vec<Vec<f32>> = [rows(&a), rows(&b), rows(&c)].concat();
        assert_eq!(rows(&s), want);
        let sym = stack_rows(&[&a, &c]).unwrap();
        assert_eq!(sym.zeros, Zeros::Symmetric);
        assert!(stack_rows(&[&a, &weight(8, 48, 1, false)]).is_err(), "K differs");
    }

    #[test]
    fn interleaving_orders_rows_in_alternating_blocks() {
        let w = stack_rows(&[&weight(16, 32, 4, true), &weight(16, 32, 5, true)]).unwrap();
        let i = interleave_halves(&w, 8).unwrap();
        let (src, dst) = (rows(&w), rows(&i));
        let order = [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23];
        for (d, &s) in order.iter().enumerate() {
            assert_eq!(dst[d], src[s], "row {d}");
        }
        assert_eq!(dst[16], src[8]);
        assert_eq!(dst[24], src[24]);
        assert!(interleave_halves(&w, 12).is_err());
    }
}
