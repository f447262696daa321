//! Converter round trips. Every source layout is packed here from its own definition, element
//! by element, and unpacked again by an independent reference unpacker written from the same
//! definition; the converted kernlab weight must dequantize bit-exactly to the same values.

use half::f16;
use kernlab::quant::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A random finite f16 (any exponent, subnormals included), as raw bits.
fn rand_f16(rng: &mut StdRng) -> u16 {
    loop {
        let b: u16 = rng.random();
        if b & 0x7C00 != 0x7C00 {
            return b;
        }
    }
}

fn f16v(b: u16) -> f32 {
    f16::from_bits(b).to_f32()
}

fn assert_bits_eq(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert_eq!(a.to_bits(), b.to_bits(), "element {i}: got {a}, want {b}");
    }
}

// ---------- AutoAWQ GEMM ----------

/// AutoAWQ packs column 8j + ORDER[i] of a row at bits 4i (WQLinear_GEMM.from_linear).
const AWQ_ORDER_MAP: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];

fn awq_pack(vals: &[u8], rows: usize, cols: usize) -> Vec<i32> {
    let mut out = vec![0i32; rows * cols / 8];
    for r in 0..rows {
        for j in 0..cols / 8 {
            let mut w = 0u32;
            for i in 0..8 {
                w |= u32::from(vals[r * cols + 8 * j + AWQ_ORDER_MAP[i]]) << (4 * i);
            }
            out[r * cols / 8 + j] = w as i32;
        }
    }
    out
}

/// Reference unpacker: find the nibble slot i whose ORDER entry is this column.
fn awq_unpack_ref(words: &[i32], cols: usize, r: usize, c: usize) -> u8 {
    let i = AWQ_ORDER_MAP.iter().position(|&o| o == c % 8).unwrap();
    ((words[r * cols / 8 + c / 8] as u32 >> (4 * i)) & 0xF) as u8
}

#[test]
fn awq_known_word() {
    // One input row k, 8 output columns: nibble slot i holds value i.
    let qweight = [0x7654_3210u32 as i32; 8];
    let qzeros = [0u32 as i32];
    let scales = [f16::from_f32(1.0).to_bits(); 8];
    let t = AwqTensors {
        qweight: TensorView::new(&[8, 1], &qweight),
        qzeros: TensorView::new(&[1, 1], &qzeros),
        scales: TensorView::new(&[1, 8], &scales),
    };
    let w = awq_to_int4(&t, 8, 8, 8, HalfDtype::F16).unwrap();
    // Column order of slots is 0,2,4,6,1,3,5,7 → column c has value slot(c).
    let want_col = [0u8, 4, 1, 5, 2, 6, 3, 7];
    for (n, &want) in want_col.iter().enumerate() {
        for k in 0..8 {
            assert_eq!(w.code(n, k), want);
        }
    }
}

#[test]
fn awq_round_trip_random() {
    let mut rng = StdRng::seed_from_u64(1);
    for &(n, k, g) in &[(16usize, 64usize, 32usize), (24, 256, 128), (8, 96, 96)] {
        let groups = k / g;
        // Ground truth in the logical [K, N] orientation AWQ uses.
        let codes: Vec<u8> = (0..k * n).map(|_| rng.random_range(0..16)).collect();
        let zeros: Vec<u8> = (0..groups * n).map(|_| rng.random_range(0..16)).collect();
        let scales: Vec<u16> = (0..groups * n).map(|_| rand_f16(&mut rng)).collect();
        let qweight = awq_pack(&codes, k, n);
        let qzeros = awq_pack(&zeros, groups, n);
        let (s_qw, s_qz, s_sc) = ([k, n / 8], [groups, n / 8], [groups, n]);
        let t = AwqTensors {
            qweight: TensorView::new(&s_qw, &qweight),
            qzeros: TensorView::new(&s_qz, &qzeros),
            scales: TensorView::new(&s_sc, &scales),
        };
        let w = awq_to_int4(&t, n, k, g, HalfDtype::F16).unwrap();
        let mut want = vec![0f32; n * k];
        for row in 0..n {
            for col in 0..k {
                let q = awq_unpack_ref(&qweight, n, col, row);
                assert_eq!(q, codes[col * n + row]);
                let z = awq_unpack_ref(&qzeros, n, col / g, row);
                let s = f16v(scales[(col / g) * n + row]);
                want[row * k + col] = (f32::from(q) - f32::from(z)) * s;
                assert_eq!(w.code(row, col), q);
            }
        }
        assert_bits_eq(&w.dequantize(), &want);
    }
}

#[test]
fn awq_bad_shapes_name_the_tensor() {
    let qw = [0i32; 64 * 2];
    let qz = [0i32; 2 * 2];
    let sc = [0u16; 2 * 16];
    let t = AwqTensors {
        qweight: TensorView::new(&[64, 2], &qw),
        qzeros: TensorView::new(&[2, 2], &qz),
        scales: TensorView::new(&[1, 16], &sc[..16]),
    };
    let e = awq_to_int4(&t, 16, 64, 32, HalfDtype::F16).unwrap_err();
    assert!(e.to_string().starts_with("scales:"), "{e}");
    let t2 = AwqTensors { qweight: TensorView::new(&[64, 2], &qw[..100]), ..t };
    let e = awq_to_int4(&t2, 16, 64, 32, HalfDtype::F16).unwrap_err();
    assert!(e.to_string().starts_with("qweight:"), "{e}");
    let e = awq_to_int4(&t2, 16, 60, 32, HalfDtype::F16).unwrap_err();
    assert!(e.to_string().contains("multiple"), "{e}");
}

// ---------- GPTQ ----------

/// GPTQ qweight [K/8, N]: row 8i + j of column n at bits 4j of word (i, n).
fn gptq_pack_qweight(codes_kn: &[u8], k: usize, n: usize) -> Vec<i32> {
    let mut out = vec![0i32; k / 8 * n];
    for kk in 0..k {
        for col in 0..n {
            let w = &mut out[(kk / 8) * n + col];
            *w = (*w as u32 | (u32::from(codes_kn[kk * n + col]) << (4 * (kk % 8)))) as i32;
        }
    }
    out
}

/// GPTQ qzeros [G, N/8]: column 8j + c at bits 4c of word (g, j).
fn gptq_pack_qzeros(z: &[u8], groups: usize, n: usize) -> Vec<i32> {
    let mut out = vec![0i32; groups * n / 8];
    for g in 0..groups {
        for col in 0..n {
            let w = &mut out[g * n / 8 + col / 8];
            *w = (*w as u32 | (u32::from(z[g * n + col]) << (4 * (col % 8)))) as i32;
        }
    }
    out
}

struct GptqCase {
    n: usize,
    k: usize,
    g: usize,
    qweight: Vec<i32>,
    qzeros: Vec<i32>,
    scales: Vec<u16>,
    g_idx: Vec<i32>,
}

fn gptq_case(rng: &mut StdRng, n: usize, k: usize, g: usize, act_order: bool) -> GptqCase {
    let groups = k / g;
    let codes: Vec<u8> = (0..k * n).map(|_| rng.random_range(0..16)).collect();
    let zeros: Vec<u8> = (0..groups * n).map(|_| rng.random_range(0..16)).collect();
    let scales: Vec<u16> = (0..groups * n).map(|_| rand_f16(rng)).collect();
    let mut g_idx: Vec<i32> = (0..k).map(|kk| (kk / g) as i32).collect();
    if act_order {
        // Fisher–Yates: a random permutation of the sequential assignment, as desc_act gives.
        for i in (1..k).rev() {
            let j = rng.random_range(0..=i);
            g_idx.swap(i, j);
        }
    }
    GptqCase {
        n,
        k,
        g,
        qweight: gptq_pack_qweight(&codes, k, n),
        qzeros: gptq_pack_qzeros(&zeros, groups, n),
        scales,
        g_idx,
    }
}

/// Reference dequantization straight from the GPTQ tensors, W[n][k] in original K order.
fn gptq_ref(c: &GptqCase, plus_one: bool) -> Vec<f32> {
    let mut out = vec![0f32; c.n * c.k];
    for row in 0..c.n {
        for kk in 0..c.k {
            let q = (c.qweight[(kk / 8) * c.n + row] as u32 >> (4 * (kk % 8))) & 0xF;
            let g = c.g_idx[kk] as usize;
            let mut z = (c.qzeros[g * c.n / 8 + row / 8] as u32 >> (4 * (row % 8))) & 0xF;
            if plus_one {
                z += 1;
            }
            out[row * c.k + kk] = (q as f32 - z as f32) * f16v(c.scales[g * c.n + row]);
        }
    }
    out
}

fn run_gptq(c: &GptqCase, with_gidx: bool, conv: GptqZeros) -> Result<GptqConverted> {
    let (s_qw, s_qz, s_sc, s_gi) = ([c.k / 8, c.n], [c.k / c.g, c.n / 8], [c.k / c.g, c.n], [c.k]);
    let t = GptqTensors {
        qweight: TensorView::new(&s_qw, &c.qweight),
        qzeros: TensorView::new(&s_qz, &c.qzeros),
        scales: TensorView::new(&s_sc, &c.scales),
        g_idx: with_gidx.then(|| TensorView::new(&s_gi, &c.g_idx)),
    };
    gptq_to_int4(&t, c.n, c.k, c.g, HalfDtype::F16, conv)
}

#[test]
fn gptq_sequential_both_conventions() {
    let mut rng = StdRng::seed_from_u64(2);
    for &(n, k, g) in &[(16usize, 128usize, 32usize), (8, 256, 128), (24, 64, 64)] {
        let c = gptq_case(&mut rng, n, k, g, false);
        for (conv, plus) in [(GptqZeros::V1PlusOne, true), (GptqZeros::V2, false)] {
            for with_gidx in [false, true] {
                let out = run_gptq(&c, with_gidx, conv).unwrap();
                assert!(out.k_perm.is_none(), "sequential g_idx needs no permutation");
                assert_bits_eq(&out.weight.dequantize(), &gptq_ref(&c, plus));
            }
        }
    }
}

#[test]
fn gptq_act_order_is_exact_after_permuting_x() {
    let mut rng = StdRng::seed_from_u64(3);
    let c = gptq_case(&mut rng, 16, 256, 64, true);
    let out = run_gptq(&c, true, GptqZeros::V1PlusOne).unwrap();
    let perm = out.k_perm.clone().expect("act-order needs a permutation");
    let reference = gptq_ref(&c, true);
    let got = out.weight.dequantize();
    // W'[n][j] == W[n][perm[j]] bit for bit, and every group of W' is contiguous.
    for row in 0..c.n {
        for j in 0..c.k {
            let src = perm[j] as usize;
            assert_eq!(got[row * c.k + j].to_bits(), reference[row * c.k + src].to_bits());
            assert_eq!(c.g_idx[src] as usize, j / c.g);
        }
    }
    // Y = X·Wᵀ with the original W equals X[:, perm]·W'ᵀ with the converted one.
    let m = 3;
    let x = gaussian(m * c.k, 9);
    let xp: Vec<f32> =
        (0..m).flat_map(|i| perm.iter().map(move |&p| (i, p))).map(|(i, p)| x[i * c.k + p as usize]).collect();
    let y_conv = reference_gemm_int4(&xp, m, &out.weight).unwrap();
    for i in 0..m {
        for row in 0..c.n {
            let y: f64 = (0..c.k).map(|kk| f64::from(x[i * c.k + kk]) * f64::from(reference[row * c.k + kk])).sum();
            assert!(
                (y - f64::from(y_conv[i * c.n + row])).abs() <= 1e-6 * y.abs().max(1e-30),
                "{y} vs {}",
                y_conv[i * c.n + row]
            );
        }
    }
    // perm is a permutation.
    let mut seen = vec![false; c.k];
    perm.iter().for_each(|&p| seen[p as usize] = true);
    assert!(seen.iter().all(|&s| s));
}

#[test]
fn gptq_v1_zero_overflow_and_sym_detection() {
    // Stored zero 15 under v1 means z = 16; stored 7 everywhere means symmetric.
    let n = 8;
    let k = 32;
    let codes = vec![3u8; k * n];
    let qweight = gptq_pack_qweight(&codes, k, n);
    let scales = vec![f16::from_f32(0.5).to_bits(); n];
    for (stored, want) in [(15u8, (3.0 - 16.0) * 0.5), (7u8, (3.0 - 8.0) * 0.5)] {
        let qzeros = gptq_pack_qzeros(&vec![stored; n], 1, n);
        let t = GptqTensors {
            qweight: TensorView::new(&[4, 8], &qweight),
            qzeros: TensorView::new(&[1, 1], &qzeros),
            scales: TensorView::new(&[1, 8], &scales),
            g_idx: None,
        };
        let out = gptq_to_int4(&t, n, k, k, HalfDtype::F16, GptqZeros::V1PlusOne).unwrap();
        assert!(out.weight.dequantize().iter().all(|&v| v == want));
        assert_eq!(matches!(out.weight.zeros, Zeros::Symmetric), stored == 7);
    }
}

#[test]
fn gptq_bad_g_idx() {
    let mut rng = StdRng::seed_from_u64(4);
    let mut c = gptq_case(&mut rng, 8, 64, 32, false);
    c.g_idx[0] = 1; // group 1 now has 33 columns, group 0 has 31
    let e = run_gptq(&c, true, GptqZeros::V2).unwrap_err();
    assert!(e.to_string().starts_with("g_idx:"), "{e}");
    c.g_idx[0] = 7;
    let e = run_gptq(&c, true, GptqZeros::V2).unwrap_err();
    assert!(e.to_string().contains("outside"), "{e}");
}

// ---------- GGUF Q4_0 / Q4_1 ----------

/// One GGUF block from its 32 codes: f16 d [, f16 m], then qs[j] = code[j] | code[j+16] << 4.
fn gguf_block(codes: &[u8], d: u16, m: Option<u16>) -> Vec<u8> {
    let mut b = d.to_le_bytes().to_vec();
    if let Some(m) = m {
        b.extend_from_slice(&m.to_le_bytes());
    }
    for j in 0..16 {
        b.push(codes[j] | (codes[j + 16] << 4));
    }
    b
}

#[test]
fn gguf_q4_round_trip_random() {
    let mut rng = StdRng::seed_from_u64(5);
    let (n, k) = (6usize, 128usize);
    for kind in [GgufQ4::Q4_0, GgufQ4::Q4_1] {
        let mut data = Vec::new();
        let mut want = vec![0f32; n * k];
        for row in 0..n {
            for b in 0..k / 32 {
                let codes: Vec<u8> = (0..32).map(|_| rng.random_range(0..16)).collect();
                let d = rand_f16(&mut rng);
                let m = (kind == GgufQ4::Q4_1).then(|| rand_f16(&mut rng));
                let blk = gguf_block(&codes, d, m);
                assert_eq!(blk.len(), kind.block_bytes());
                // Reference decode of the block bytes, by the format's definition.
                let dv = f16v(u16::from_le_bytes([blk[0], blk[1]]));
                let qs = &blk[blk.len() - 16..];
                for e in 0..32 {
                    let q = if e < 16 { qs[e] & 0xF } else { qs[e - 16] >> 4 };
                    assert_eq!(q, codes[e]);
                    want[row * k + b * 32 + e] = match m {
                        None => (f32::from(q) - 8.0) * dv,
                        Some(_) => f32::from(q) * dv + f16v(u16::from_le_bytes([blk[2], blk[3]])),
                    };
                }
                data.extend(blk);
            }
        }
        let w = gguf_q4_to_int4(kind, &data, n, k).unwrap();
        assert_eq!(w.group_size, 32);
        assert_bits_eq(&w.dequantize(), &want);
        let e = gguf_q4_to_int4(kind, &data[1..], n, k).unwrap_err();
        assert!(e.to_string().starts_with("gguf tensor data:"), "{e}");
    }
    assert!(GgufQ4::from_ggml_type(12).unwrap_err().to_string().contains("unknown"));
}
