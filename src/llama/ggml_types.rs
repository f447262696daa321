//! GGML tensor element types: their ids, block layouts, and dequantization to f32.
//!
//! Block formats follow the GGML definitions (little-endian, blocks along the innermost
//! dimension `ne[0]`, 32 weights per block for the legacy quants):
//!
//! * Q8_0: `f16 d; i8 qs[32]`              x = d * q
//! * Q4_0: `f16 d; u8 qs[16]`              x = d * (nibble - 8)
//! * Q4_1: `f16 d; f16 m; u8 qs[16]`       x = d * nibble + m
//!
//! For Q4_x the low nibble of byte `j` holds weight `j` and the high nibble weight `j + 16`
//! (not `2j`/`2j+1`): an int4 GPU format converting these blocks must keep that in mind.

use half::{bf16, f16};

/// GGML type ids as stored in GGUF tensor infos. Only types whose block layout is known are
/// listed, so that a file with an unknown id fails at parse time with the tensor's name;
/// [`GgmlType::can_dequantize`] says which ones this crate can turn into f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    I8,
    I16,
    I32,
    I64,
    F64,
    BF16,
}

impl GgmlType {
    pub fn from_id(id: u32) -> Option<Self> {
        use GgmlType::*;
        Some(match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2_K,
            11 => Q3_K,
            12 => Q4_K,
            13 => Q5_K,
            14 => Q6_K,
            15 => Q8_K,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            30 => BF16,
            _ => return None,
        })
    }

    pub fn id(self) -> u32 {
        use GgmlType::*;
        match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q5_0 => 6,
            Q5_1 => 7,
            Q8_0 => 8,
            Q8_1 => 9,
            Q2_K => 10,
            Q3_K => 11,
            Q4_K => 12,
            Q5_K => 13,
            Q6_K => 14,
            Q8_K => 15,
            I8 => 24,
            I16 => 25,
            I32 => 26,
            I64 => 27,
            F64 => 28,
            BF16 => 30,
        }
    }

    /// (elements per block, bytes per block).
    pub fn block_layout(self) -> (usize, usize) {
        use GgmlType::*;
        match self {
            F32 | I32 => (1, 4),
            F16 | BF16 | I16 => (1, 2),
            I8 => (1, 1),
            I64 | F64 => (1, 8),
            Q4_0 => (32, 18),
            Q4_1 => (32, 20),
            Q5_0 => (32, 22),
            Q5_1 => (32, 24),
            Q8_0 => (32, 34),
            Q8_1 => (32, 36),
            Q2_K => (256, 84),
            Q3_K => (256, 110),
            Q4_K => (256, 144),
            Q5_K => (256, 176),
            Q6_K => (256, 210),
            Q8_K => (256, 292),
        }
    }

    pub fn can_dequantize(self) -> bool {
        use GgmlType::*;
        matches!(self, F32 | F16 | BF16 | Q8_0 | Q4_0 | Q4_1)
    }

    /// Bytes for `n_elems` elements, or None on overflow / partial block.
    pub fn bytes_for(self, n_elems: u64) -> Option<u64> {
        let (bs, ts) = self.block_layout();
        if !n_elems.is_multiple_of(bs as u64) {
            return None;
        }
        (n_elems / bs as u64).checked_mul(ts as u64)
    }
}

/// One Q4_0 block, decoded from its 18 bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; 16],
}

/// One Q4_1 block, decoded from its 20 bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; 16],
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

pub fn q4_0_blocks(bytes: &[u8]) -> impl Iterator<Item = BlockQ4_0> + '_ {
    bytes
        .chunks_exact(18)
        .map(|b| BlockQ4_0 { d: f16::from_bits(u16::from_le_bytes([b[0], b[1]])), qs: b[2..18].try_into().unwrap() })
}

pub fn q4_1_blocks(bytes: &[u8]) -> impl Iterator<Item = BlockQ4_1> + '_ {
    bytes.chunks_exact(20).map(|b| BlockQ4_1 {
        d: f16::from_bits(u16::from_le_bytes([b[0], b[1]])),
        m: f16::from_bits(u16::from_le_bytes([b[2], b[3]])),
        qs: b[4..20].try_into().unwrap(),
    })
}

/// Dequantize `bytes` of type `t` into `out`. The caller guarantees
/// `bytes.len() == t.bytes_for(out.len())` (the parser checked it); returns Err(t) for a
/// type this crate cannot dequantize.
pub fn dequantize(t: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), GgmlType> {
    debug_assert_eq!(Some(bytes.len() as u64), t.bytes_for(out.len() as u64));
    match t {
        GgmlType::F32 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes(b.try_into().unwrap());
            }
        }
        GgmlType::F16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
            }
        }
        GgmlType::BF16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
            }
        }
        GgmlType::Q8_0 => {
            for (o, b) in out.chunks_exact_mut(32).zip(bytes.chunks_exact(34)) {
                let d = f16_at(b, 0);
                for (x, &q) in o.iter_mut().zip(&b[2..34]) {
                    *x = d * (q as i8) as f32;
                }
            }
        }
        GgmlType::Q4_0 => {
            for (o, b) in out.chunks_exact_mut(32).zip(bytes.chunks_exact(18)) {
                let d = f16_at(b, 0);
                for j in 0..16 {
                    let q = b[2 + j];
                    o[j] = d * ((q & 0x0f) as i32 - 8) as f32;
                    o[j + 16] = d * ((q >> 4) as i32 - 8) as f32;
                }
            }
        }
        GgmlType::Q4_1 => {
            for (o, b) in out.chunks_exact_mut(32).zip(bytes.chunks_exact(20)) {
                let d = f16_at(b, 0);
                let m = f16_at(b, 2);
                for j in 0..16 {
                    let q = b[4 + j];
                    o[j] = d * (q & 0x0f) as f32 + m;
                    o[j + 16] = d * (q >> 4) as f32 + m;
                }
            }
        }
        other => return Err(other),
    }
    Ok(())
}

/// Quantizers used by tests and tools to build files (round-to-nearest, GGML's formulas).
pub mod quantize {
    use half::f16;

    pub fn q8_0(x: &[f32]) -> Vec<u8> {
        assert!(x.len().is_multiple_of(32));
        let mut out = Vec::with_capacity(x.len() / 32 * 34);
        for blk in x.chunks_exact(32) {
            let amax = blk.iter().fold(0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
            out.extend(blk.iter().map(|v| (v * id).round() as i8 as u8));
        }
        out
    }

    pub fn q4_0(x: &[f32]) -> Vec<u8> {
        assert!(x.len().is_multiple_of(32));
        let mut out = Vec::with_capacity(x.len() / 32 * 18);
        for blk in x.chunks_exact(32) {
            // GGML: the value of largest magnitude maps to -8.
            let max = blk.iter().fold(0f32, |a, &v| if v.abs() > a.abs() { v } else { a });
            let d = max / -8.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
            let q = |v: f32| ((v * id + 8.5) as i32).clamp(0, 15) as u8;
            for j in 0..16 {
                out.push(q(blk[j]) | (q(blk[j + 16]) << 4));
            }
        }
        out
    }

    pub fn q4_1(x: &[f32]) -> Vec<u8> {
        assert!(x.len().is_multiple_of(32));
        let mut out = Vec::with_capacity(x.len() / 32 * 20);
        for blk in x.chunks_exact(32) {
            let min = blk.iter().cloned().fold(f32::INFINITY, f32::min);
            let max = blk.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let d = (max - min) / 15.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
            out.extend_from_slice(&f16::from_f32(min).to_bits().to_le_bytes());
            let q = |v: f32| (((v - min) * id + 0.5) as i32).clamp(0, 15) as u8;
            for j in 0..16 {
                out.push(q(blk[j]) | (q(blk[j + 16]) << 4));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect()
    }

    fn roundtrip(t: GgmlType, bytes: &[u8], x: &[f32], tol: f32) {
        assert_eq!(t.bytes_for(x.len() as u64), Some(bytes.len() as u64));
        let mut y = vec![0f32; x.len()];
        dequantize(t, bytes, &mut y).unwrap();
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() <= tol, "{t:?}: {a} vs {b}");
        }
    }

    #[test]
    fn quant_roundtrips() {
        let x = ramp(128);
        roundtrip(GgmlType::Q8_0, &quantize::q8_0(&x), &x, 2.0 / 127.0);
        roundtrip(GgmlType::Q4_0, &quantize::q4_0(&x), &x, 2.0 / 8.0 + 1e-3);
        roundtrip(GgmlType::Q4_1, &quantize::q4_1(&x), &x, 4.0 / 15.0 / 2.0 + 1e-2);
    }

    #[test]
    fn q4_nibble_order() {
        // d = 1, nibbles: byte j = (j & 0xf) | ((15 - j) << 4)
        let mut b = vec![0u8; 18];
        b[0..2].copy_from_slice(&f16::from_f32(1.0).to_bits().to_le_bytes());
        for j in 0..16 {
            b[2 + j] = (j as u8) | ((15 - j as u8) << 4);
        }
        let mut y = vec![0f32; 32];
        dequantize(GgmlType::Q4_0, &b, &mut y).unwrap();
        assert_eq!(y[0], -8.0);
        assert_eq!(y[15], 7.0);
        assert_eq!(y[16], 7.0);
        assert_eq!(y[31], -8.0);
        let blk = q4_0_blocks(&b).next().unwrap();
        assert_eq!(blk.qs[1], 1 | (14 << 4));
    }

    #[test]
    fn ids_roundtrip() {
        for id in 0..40 {
            if let Some(t) = GgmlType::from_id(id) {
                assert_eq!(t.id(), id);
            }
        }
        assert_eq!(GgmlType::from_id(4), None); // removed Q4_2
    }
}
