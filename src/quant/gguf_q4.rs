//! Loss-free conversion from GGUF Q4_0 and Q4_1 tensors (llama.cpp block formats).
//!
//! A GGUF 2-D tensor W[N, K] (ne0 = K is the contiguous dimension) is a sequence of blocks of
//! 32 consecutive elements of a row, K/32 blocks per row, rows one after another.
//! - Q4_0, 18 bytes: f16 `d` (little endian), then 16 bytes `qs`; element j (0..15) is
//!   qs[j] & 0xF, element j + 16 is qs[j] >> 4; value = (q - 8) * d.
//!   → `Zeros::Symmetric`, group 32, f16 scales, bit-exact.
//! - Q4_1, 20 bytes: f16 `d`, f16 `m`, 16 bytes `qs` (same nibble order); value = q * d + m.
//!   m is an arbitrary f16, not an integer multiple of d, so it is kept as a per-group f16
//!   minimum (`Zeros::Min`), bit-exact; dequantize() rounds q*d + m once to f32, as ggml's
//!   f32 dequantization does when it contracts to an fma.

use super::error::{bad_shape, check_len, Result};
use super::format::{HalfDtype, Int4Weight, Zeros};

pub const QK: usize = 32;
pub const Q4_0_BLOCK_BYTES: usize = 18;
pub const Q4_1_BLOCK_BYTES: usize = 20;

/// The GGUF tensor types this module converts (ggml type ids 2 and 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufQ4 {
    Q4_0,
    Q4_1,
}

impl GgufQ4 {
    pub fn from_ggml_type(id: u32) -> Result<Self> {
        match id {
            2 => Ok(GgufQ4::Q4_0),
            3 => Ok(GgufQ4::Q4_1),
            _ => Err(super::error::FormatError::Unknown {
                kind: "GGUF int4 tensor type".into(),
                name: format!("ggml type {id}"),
                known: "2 (Q4_0), 3 (Q4_1)".into(),
            }),
        }
    }

    pub fn block_bytes(self) -> usize {
        match self {
            GgufQ4::Q4_0 => Q4_0_BLOCK_BYTES,
            GgufQ4::Q4_1 => Q4_1_BLOCK_BYTES,
        }
    }
}

/// Converts the raw block bytes of a GGUF Q4_0/Q4_1 tensor W[n, k].
pub fn gguf_q4_to_int4(kind: GgufQ4, data: &[u8], n: usize, k: usize) -> Result<Int4Weight> {
    if n == 0 || k == 0 || !k.is_multiple_of(QK) {
        return Err(bad_shape("gguf tensor", format!("shape [N={n}, K={k}]: K must be a positive multiple of {QK}")));
    }
    let blocks_per_row = k / QK;
    let bb = kind.block_bytes();
    check_len("gguf tensor data", &[n, k], n * blocks_per_row * bb, data.len())?;

    let groups = blocks_per_row;
    let mut codes = vec![0u8; n * k];
    let mut scales = vec![0u16; groups * n];
    let mut mins = vec![0u16; groups * n];
    for row in 0..n {
        for b in 0..blocks_per_row {
            let blk = &data[(row * blocks_per_row + b) * bb..][..bb];
            scales[b * n + row] = u16::from_le_bytes([blk[0], blk[1]]);
            let qs = match kind {
                GgufQ4::Q4_0 => &blk[2..18],
                GgufQ4::Q4_1 => {
                    mins[b * n + row] = u16::from_le_bytes([blk[2], blk[3]]);
                    &blk[4..20]
                }
            };
            let out = &mut codes[row * k + b * QK..][..QK];
            for j in 0..16 {
                out[j] = qs[j] & 0xF;
                out[j + 16] = qs[j] >> 4;
            }
        }
    }
    let zeros = match kind {
        GgufQ4::Q4_0 => Zeros::Symmetric,
        GgufQ4::Q4_1 => Zeros::Min(mins),
    };
    Int4Weight::from_codes(n, k, QK, HalfDtype::F16, &codes, scales, zeros)
}
