//! The kernlab int4 layout itself: nibble order, validation errors, and the CPU reference.

use kernlab::quant::*;

#[test]
fn word_layout_matches_the_documented_nibble_order() {
    // Columns 0..7 carry codes 1..8; doc: position p holds column [0,2,4,6,1,3,5,7][p].
    let codes = [1u8, 2, 3, 4, 5, 6, 7, 8];
    let w = pack_word(codes);
    let by_position = [1u32, 3, 5, 7, 2, 4, 6, 8];
    let want = by_position.iter().enumerate().fold(0u32, |a, (p, &v)| a | v << (4 * p));
    assert_eq!(w, want);
    assert_eq!(unpack_word(w), codes);
    // The kernel trick: (w >> 4i) & 0x000F000F gives columns (2i, 2i+1) in (low, high) half.
    for i in 0..4 {
        let pair = (w >> (4 * i)) & 0x000F_000F;
        assert_eq!(pair & 0xF, u32::from(codes[2 * i]));
        assert_eq!(pair >> 16, u32::from(codes[2 * i + 1]));
        // | 0x4300 makes bf16 128 + q.
        let lo = half::bf16::from_bits((pair | 0x4300_4300) as u16).to_f32();
        assert_eq!(lo, 128.0 + f32::from(codes[2 * i]));
    }
}

#[test]
fn rows_are_contiguous_and_scales_are_group_major() {
    let (n, k, g) = (3usize, 64usize, 32usize);
    let codes: Vec<u8> = (0..n * k).map(|i| (i * 7 % 16) as u8).collect();
    let scales: Vec<u16> = (0..2 * n).map(|i| HalfDtype::Bf16.from_f32(1.0 + i as f32)).collect();
    let w = Int4Weight::from_codes(n, k, g, HalfDtype::Bf16, &codes, scales, Zeros::Symmetric).unwrap();
    assert_eq!(w.packed.len(), n * k / 8);
    assert_eq!(w.packed[k / 8], pack_word(codes[k..k + 8].try_into().unwrap()));
    let d = w.dequantize();
    // element (row 2, col 40) is group 1 → scale index 1 * n + 2.
    assert_eq!(d[2 * k + 40], (f32::from(codes[2 * k + 40]) - 8.0) * (1.0 + (n + 2) as f32));
    assert_eq!(w.total_bytes(), n * k / 2 + 2 * 2 * n);
}

#[test]
fn validation_errors_name_the_tensor() {
    let codes = vec![0u8; 8 * 64];
    let mk = |z| Int4Weight::from_codes(8, 64, 32, HalfDtype::F16, &codes, vec![0; 16], z);
    assert!(mk(Zeros::Symmetric).is_ok());
    let e = mk(Zeros::Int(vec![0; 15])).unwrap_err();
    assert!(e.to_string().starts_with("zeros: has 15 elements but shape [2, 8] needs 16"), "{e}");
    let e = mk(Zeros::Int(vec![17; 16])).unwrap_err();
    assert!(e.to_string().contains("exceeds 16"), "{e}");
    let e = mk(Zeros::Min(vec![0x7C00; 16])).unwrap_err();
    assert!(e.to_string().starts_with("mins:"), "{e}");
    let e = Int4Weight::from_codes(8, 64, 48, HalfDtype::F16, &codes, vec![0; 16], Zeros::Symmetric).unwrap_err();
    assert!(e.to_string().contains("not a multiple of the group size 48"), "{e}");
    let mut w = mk(Zeros::Symmetric).unwrap();
    w.packed.pop();
    let e = w.validate().unwrap_err();
    assert!(e.to_string().starts_with("packed: has 63 elements but shape [8, 8] needs 64"), "{e}");
    w.packed.push(0);
    w.scales.push(0);
    assert!(w.validate().unwrap_err().to_string().starts_with("scales:"));
    let e: FormatError = "int3".parse::<HalfDtype>().unwrap_err();
    assert!(e.to_string().contains("unknown 16-bit dtype 'int3'"), "{e}");
}

#[test]
fn reference_gemm_matches_naive_and_checks_inputs() {
    let (m, n, k) = (3usize, 10usize, 256usize);
    let wf = gaussian(n * k, 21);
    let w = quantize_rtn(
        &wf,
        n,
        k,
        &RtnConfig { group: GroupSize::Group(64), symmetric: false, scale_dtype: HalfDtype::F16 },
    )
    .unwrap();
    let x: Vec<f32> = gaussian(m * k, 22).iter().map(|&v| HalfDtype::Bf16.round(v)).collect();
    let r = gaussian(m * n, 23);
    let wd = w.dequantize();
    let y = reference_gemm_int4_with(&x, m, &w, Some(&r), WeightRounding::Exact).unwrap();
    let yr = reference_gemm_int4_with(&x, m, &w, None, WeightRounding::To(HalfDtype::Bf16)).unwrap();
    for i in 0..m {
        for j in 0..n {
            let want: f64 = (0..k).map(|kk| f64::from(x[i * k + kk]) * f64::from(wd[j * k + kk])).sum::<f64>()
                + f64::from(r[i * n + j]);
            assert!((f64::from(y[i * n + j]) - want).abs() < 1e-5, "{} vs {want}", y[i * n + j]);
            // Rounding W to bf16 moves Y by a little, never a lot.
            assert!((yr[i * n + j] + r[i * n + j] - y[i * n + j]).abs() < 0.05 * (1.0 + want.abs() as f32));
        }
    }
    assert!(reference_gemm_int4(&x[1..], m, &w).unwrap_err().to_string().starts_with("x:"));
    let e = reference_gemm_int4_with(&x, m, &w, Some(&r[1..]), WeightRounding::Exact).unwrap_err();
    assert!(e.to_string().starts_with("residual:"), "{e}");
}

/// The constants the CUDA templates use, re-derived here so a change to the layout that
/// breaks them fails on the CPU: magic ORs, negated zero words, and the fp32 nibble trick.
#[test]
fn kernel_bit_tricks_hold_for_every_code_and_zero() {
    use half::{bf16, f16};
    for q in 0u32..16 {
        assert_eq!(bf16::from_bits((0x4300 | q) as u16).to_f32(), 128.0 + q as f32);
        assert_eq!(f16::from_bits((0x6400 | q) as u16).to_f32(), 1024.0 + q as f32);
    }
    for z in 0u32..=16 {
        // int4_mma: zneg2 = (MAGIC | 0x80008000) + z * 0x10001
        assert_eq!(bf16::from_bits((0xC300 + z) as u16).to_f32(), -(128.0 + z as f32));
        assert_eq!(f16::from_bits((0xE400 + z) as u16).to_f32(), -(1024.0 + z as f32));
    }
    // int4_gemv's nibble_128<C>: column C at position {0,4,1,5,2,6,3,7}[C] moved to bits 16..19
    // under 128.0f's exponent.
    let codes = [3u8, 14, 0, 15, 7, 8, 1, 9];
    let w = pack_word(codes);
    for (c, &q) in codes.iter().enumerate() {
        let pos = if c % 2 == 0 { c / 2 } else { 4 + c / 2 };
        assert_eq!(pos, NIBBLE_POS[c]);
        let sh = 4 * pos as u32;
        let v = if sh <= 16 { w << (16 - sh) } else { w >> (sh - 16) };
        let f = f32::from_bits((v & 0x000F_0000) | 0x4300_0000);
        assert_eq!(f, 128.0 + f32::from(q));
        // exact dequant: fma(128+q, s, -(128+z)*s) == (q - z) * s for a bf16 scale
        let s = HalfDtype::Bf16.round(0.0173);
        let z = 5.0f32;
        assert_eq!(f.mul_add(s, -(128.0 + z) * s), (f32::from(q) - z) * s);
    }
}
