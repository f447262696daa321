//! RTN int4 and int8 quantizers: error levels on known distributions and clear errors.

use kernlab::quant::*;

fn cfg(group: GroupSize, symmetric: bool) -> RtnConfig {
    RtnConfig { group, symmetric, scale_dtype: HalfDtype::Bf16 }
}

const N: usize = 64;
const K: usize = 512;
const M: usize = 16;

#[test]
fn int4_g128_gaussian_error_is_about_a_tenth() {
    let w = gaussian(N * K, 11);
    let x = gaussian(M * K, 12);
    let q = quantize_rtn(&w, N, K, &cfg(GroupSize::Group(128), true)).unwrap();
    let e = quant_error(&q, &w, &x, M).unwrap();
    // Uniform rounding noise: step ≈ 2·2.7σ/15 → rms ≈ step/√12 ≈ 0.1σ.
    assert!((0.07..0.14).contains(&e.w_rel_fro), "{e:?}");
    assert!((0.07..0.14).contains(&e.y_rel_fro), "{e:?}");
}

#[test]
fn int8_per_channel_is_much_better_than_int4() {
    let w = gaussian(N * K, 13);
    let x = gaussian(M * K, 14);
    let q4 = quantize_rtn(&w, N, K, &cfg(GroupSize::Group(128), true)).unwrap();
    let q8 = quantize_int8_per_channel(&w, N, K, HalfDtype::Bf16).unwrap();
    let e4 = quant_error(&q4, &w, &x, M).unwrap();
    let e8 = quant_error(&q8, &w, &x, M).unwrap();
    assert!(e8.w_rel_fro < 0.015, "{e8:?}");
    assert!(e8.w_rel_fro * 5.0 < e4.w_rel_fro, "{e8:?} vs {e4:?}");
    assert!(e8.y_rel_fro * 5.0 < e4.y_rel_fro, "{e8:?} vs {e4:?}");
}

#[test]
fn asymmetric_beats_symmetric_on_skewed_data() {
    // Shifted exponential-like data: all weights positive, long right tail.
    let w: Vec<f32> = gaussian(N * K, 15).iter().map(|v| 0.5 + v * v).collect();
    let x = gaussian(M * K, 16);
    for group in [GroupSize::Group(32), GroupSize::Group(128), GroupSize::PerChannel] {
        let es = quant_error(&quantize_rtn(&w, N, K, &cfg(group, true)).unwrap(), &w, &x, M).unwrap();
        let ea = quant_error(&quantize_rtn(&w, N, K, &cfg(group, false)).unwrap(), &w, &x, M).unwrap();
        assert!(ea.w_rel_fro <= es.w_rel_fro, "{group:?}: asym {ea:?} sym {es:?}");
    }
}

#[test]
fn per_channel_is_worse_than_g128_and_smaller_groups_are_better() {
    let w = gaussian(N * K, 17);
    let err = |g| {
        let q = quantize_rtn(&w, N, K, &cfg(g, true)).unwrap();
        q.validate().unwrap();
        rel_fro(&w, &q.dequantize())
    };
    let (e32, e64, e128, epc) =
        (err(GroupSize::Group(32)), err(GroupSize::Group(64)), err(GroupSize::Group(128)), err(GroupSize::PerChannel));
    assert!(e32 < e64 && e64 < e128 && e128 < epc, "{e32} {e64} {e128} {epc}");
}

#[test]
fn rtn_codes_use_the_stored_scale_and_reproduce_exact_grid_values() {
    // Values already on a grid of 0.25 with range [-2, 1.75] quantize exactly (symmetric:
    // s = max(1.75/7, 2/8) = 0.25).
    let k = 32;
    let w: Vec<f32> = (0..k).map(|i| (i as f32 - 8.0) * 0.25 - 0.0).map(|v| v.clamp(-2.0, 1.75)).collect();
    for dt in [HalfDtype::Bf16, HalfDtype::F16] {
        let q = quantize_rtn(&w, 1, k, &RtnConfig { group: GroupSize::PerChannel, symmetric: true, scale_dtype: dt })
            .unwrap();
        assert_eq!(q.dequantize(), w);
        assert_eq!(q.scale(0, 0), 0.25);
    }
    // All-zero rows are fine, and give zeros back.
    let z = vec![0f32; 64];
    let q = quantize_rtn(&z, 2, 32, &cfg(GroupSize::Group(32), false)).unwrap();
    assert!(q.dequantize().iter().all(|&v| v == 0.0));
}

#[test]
fn bad_inputs_give_clear_errors() {
    let w = gaussian(8 * 96, 18);
    let e = quantize_rtn(&w, 8, 96, &cfg(GroupSize::Group(64), true)).unwrap_err();
    assert!(e.to_string().contains("not a multiple of the group size 64"), "{e}");
    let e = quantize_rtn(&w[..100], 8, 96, &cfg(GroupSize::Group(32), true)).unwrap_err();
    assert!(e.to_string().starts_with("w: has 100 elements"), "{e}");
    let mut nan = w.clone();
    nan[5] = f32::NAN;
    let e = quantize_rtn(&nan, 8, 96, &cfg(GroupSize::Group(32), true)).unwrap_err();
    assert!(e.to_string().contains("row 0, column 5"), "{e}");
    let e = quantize_int8_per_channel(&nan, 8, 96, HalfDtype::F16).unwrap_err();
    assert!(e.to_string().starts_with("w:"), "{e}");
    let huge = vec![1e30f32; 32];
    let e = quantize_rtn(&huge, 1, 32, &RtnConfig { scale_dtype: HalfDtype::F16, ..cfg(GroupSize::PerChannel, true) })
        .unwrap_err();
    assert!(e.to_string().contains("f16 range"), "{e}");
    let q = quantize_rtn(&w, 8, 96, &cfg(GroupSize::Group(32), true)).unwrap();
    let e = quant_error(&q, &w, &w[..95], 1).unwrap_err();
    assert!(e.to_string().starts_with("x:"), "{e}");
}
