//! The kernlab int4 weight format (`Int4Weight`) for a linear layer W[N, K].
//!
//! The exact byte layout is specified in docs/int4-format.md; in short:
//! - `packed`: u32 words, row-major [N][K/8]. Word `packed[n*K/8 + j]` holds the 8 codes of
//!   row n, columns 8j..8j+7. Nibble position p (bits 4p..4p+3) holds column 8j + NIBBLE_ORDER[p],
//!   i.e. positions 0..7 hold columns +0,+2,+4,+6,+1,+3,+5,+7. With that order,
//!   `(word >> 4i) & 0x000F000F` yields the pair of columns (2i, 2i+1) in the low and high
//!   halves, which `| 0x43004300` (bf16) or `| 0x64006400` (fp16) turns into two 16-bit floats
//!   128+q / 1024+q in k order: the lookup-free dequant of the kernels.
//! - `scales`: 16-bit floats (f16 or bf16 bits), row-major [K/G][N] (group-major, so a kernel
//!   tile of consecutive n reads consecutive scales).
//! - zero points per `Zeros`: none (implicit 8), u8 [K/G][N], or a float minimum [K/G][N].

use super::error::{bad_shape, bad_value, check_len, Result};
use half::{bf16, f16};
use std::fmt;
use std::str::FromStr;

/// Position p of a word holds column `NIBBLE_ORDER[p]` of its 8-column run.
pub const NIBBLE_ORDER: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];
/// Column c of an 8-column run sits at nibble position `NIBBLE_POS[c]` (inverse of NIBBLE_ORDER).
pub const NIBBLE_POS: [usize; 8] = [0, 4, 1, 5, 2, 6, 3, 7];

/// Largest integer zero point accepted. 16 is needed for GPTQ v1 checkpoints, whose stored
/// zero 15 means 15 + 1 = 16; the kernels' `0x4300 | z` trick is exact for any z < 128.
pub const MAX_INT_ZERO: u8 = 16;

/// A 16-bit float type: the dtype of scales/minimums, and of activations in the kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum HalfDtype {
    F16,
    Bf16,
}

impl HalfDtype {
    /// The 16-bit float type of an activation dtype (the kernels reject fp32 activations).
    pub fn of(dt: crate::core::DType) -> HalfDtype {
        match dt {
            crate::core::DType::F16 => HalfDtype::F16,
            _ => HalfDtype::Bf16,
        }
    }

    pub fn to_f32(self, bits: u16) -> f32 {
        match self {
            HalfDtype::F16 => f16::from_bits(bits).to_f32(),
            HalfDtype::Bf16 => bf16::from_bits(bits).to_f32(),
        }
    }

    /// Round to nearest even (what `__float2bfloat16_rn` / `__float2half_rn` do).
    pub fn from_f32(self, v: f32) -> u16 {
        match self {
            HalfDtype::F16 => f16::from_f32(v).to_bits(),
            HalfDtype::Bf16 => bf16::from_f32(v).to_bits(),
        }
    }

    /// `v` rounded to this dtype and back: what a kernel storing `v` in 16 bits sees.
    pub fn round(self, v: f32) -> f32 {
        self.to_f32(self.from_f32(v))
    }

    pub fn name(self) -> &'static str {
        match self {
            HalfDtype::F16 => "f16",
            HalfDtype::Bf16 => "bf16",
        }
    }
}

impl fmt::Display for HalfDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HalfDtype {
    type Err = super::error::FormatError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f16" | "fp16" | "float16" | "half" => Ok(HalfDtype::F16),
            "bf16" | "bfloat16" => Ok(HalfDtype::Bf16),
            _ => Err(super::error::FormatError::Unknown {
                kind: "16-bit dtype".into(),
                name: s.into(),
                known: "f16, bf16".into(),
            }),
        }
    }
}

/// How a group's codes map to values. All arrays are row-major [K/G][N].
#[derive(Debug, Clone, PartialEq)]
pub enum Zeros {
    /// value = (q - 8) * scale.
    Symmetric,
    /// value = (q - z) * scale, z in 0..=MAX_INT_ZERO (AWQ, GPTQ, our asymmetric RTN).
    Int(Vec<u8>),
    /// value = q * scale + min, min in the scale dtype (GGUF Q4_1, whose offset is not an
    /// integer multiple of the scale and so cannot be an integer zero point loss-free).
    Min(Vec<u16>),
}

impl Zeros {
    pub fn kind(&self) -> &'static str {
        match self {
            Zeros::Symmetric => "symmetric",
            Zeros::Int(_) => "int-zero",
            Zeros::Min(_) => "float-min",
        }
    }

    /// The kernels' `ZERO_MODE` macro value for this variant.
    pub fn kernel_zero_mode(&self) -> u32 {
        match self {
            Zeros::Symmetric => 0,
            Zeros::Int(_) => 1,
            Zeros::Min(_) => 2,
        }
    }
}

/// int4 weight-only quantized W[N, K] (out_features N, in_features K). See module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct Int4Weight {
    pub n: usize,
    pub k: usize,
    /// Columns per group; K for per-channel. Divides K and is a multiple of 8.
    pub group_size: usize,
    pub scale_dtype: HalfDtype,
    /// [N][K/8] words, see module docs for the nibble order.
    pub packed: Vec<u32>,
    /// [K/G][N] scale bits in `scale_dtype`.
    pub scales: Vec<u16>,
    pub zeros: Zeros,
}

/// Packs 8 codes (columns 0..7 of a run, each 0..15) into one word in kernlab nibble order.
pub fn pack_word(codes: [u8; 8]) -> u32 {
    let mut w = 0u32;
    for (c, &q) in codes.iter().enumerate() {
        w |= u32::from(q & 0xF) << (4 * NIBBLE_POS[c]);
    }
    w
}

/// Inverse of `pack_word`.
pub fn unpack_word(w: u32) -> [u8; 8] {
    let mut codes = [0u8; 8];
    for (c, q) in codes.iter_mut().enumerate() {
        *q = ((w >> (4 * NIBBLE_POS[c])) & 0xF) as u8;
    }
    codes
}

/// Shape rules shared by the constructor and `validate`.
pub(crate) fn check_dims(n: usize, k: usize, group_size: usize) -> Result<()> {
    if n == 0 || k == 0 {
        return Err(bad_shape("weight", format!("shape [N={n}, K={k}] has a zero dimension")));
    }
    if !k.is_multiple_of(8) {
        return Err(bad_shape("weight", format!("K={k} is not a multiple of 8 (8 codes per u32)")));
    }
    if group_size == 0 || !group_size.is_multiple_of(8) {
        return Err(bad_shape("weight", format!("group size {group_size} is not a positive multiple of 8")));
    }
    if !k.is_multiple_of(group_size) {
        return Err(bad_shape("weight", format!("K={k} is not a multiple of the group size {group_size}")));
    }
    Ok(())
}

impl Int4Weight {
    /// Builds the format from unpacked codes `codes[n*K + k]` in 0..=15 (row-major [N][K]).
    pub fn from_codes(
        n: usize,
        k: usize,
        group_size: usize,
        scale_dtype: HalfDtype,
        codes: &[u8],
        scales: Vec<u16>,
        zeros: Zeros,
    ) -> Result<Self> {
        check_dims(n, k, group_size)?;
        check_len("codes", &[n, k], n * k, codes.len())?;
        if let Some(i) = codes.iter().position(|&q| q > 15) {
            return Err(bad_value("codes", format!("code {} at index {i} is not a 4-bit value", codes[i])));
        }
        let packed =
            codes.chunks_exact(8).map(|c| pack_word([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect();
        let w = Int4Weight { n, k, group_size, scale_dtype, packed, scales, zeros };
        w.validate()?;
        Ok(w)
    }

    pub fn num_groups(&self) -> usize {
        self.k / self.group_size
    }

    pub fn words_per_row(&self) -> usize {
        self.k / 8
    }

    /// Checks every invariant; the constructors call it, call it again after editing fields.
    pub fn validate(&self) -> Result<()> {
        check_dims(self.n, self.k, self.group_size)?;
        let (n, k, g) = (self.n, self.k, self.num_groups());
        check_len("packed", &[n, k / 8], n * (k / 8), self.packed.len())?;
        check_len("scales", &[g, n], g * n, self.scales.len())?;
        if let Some(i) = self.scales.iter().position(|&s| !self.scale_dtype.to_f32(s).is_finite()) {
            return Err(bad_value("scales", format!("scale at index {i} is not finite")));
        }
        match &self.zeros {
            Zeros::Symmetric => {}
            Zeros::Int(z) => {
                check_len("zeros", &[g, n], g * n, z.len())?;
                if let Some(i) = z.iter().position(|&v| v > MAX_INT_ZERO) {
                    return Err(bad_value("zeros", format!("zero point {} at index {i} exceeds {MAX_INT_ZERO}", z[i])));
                }
            }
            Zeros::Min(m) => {
                check_len("mins", &[g, n], g * n, m.len())?;
                if let Some(i) = m.iter().position(|&v| !self.scale_dtype.to_f32(v).is_finite()) {
                    return Err(bad_value("mins", format!("minimum at index {i} is not finite")));
                }
            }
        }
        Ok(())
    }

    /// The 4-bit code of element (row, col).
    pub fn code(&self, row: usize, col: usize) -> u8 {
        let w = self.packed[row * self.words_per_row() + col / 8];
        ((w >> (4 * NIBBLE_POS[col % 8])) & 0xF) as u8
    }

    /// All codes, row-major [N][K].
    pub fn codes(&self) -> Vec<u8> {
        self.packed.iter().flat_map(|&w| unpack_word(w)).collect()
    }

    pub fn scale(&self, group: usize, row: usize) -> f32 {
        self.scale_dtype.to_f32(self.scales[group * self.n + row])
    }

    /// Dequantizes one code of group `group`, row `row`. For symmetric and int-zero groups the
    /// f32 product is exact ((q - z) has at most 5 significant bits, a scale at most 11), so
    /// this equals the real-number value; for float-min groups q*s + m is rounded once.
    pub fn value(&self, q: u8, group: usize, row: usize) -> f32 {
        let s = self.scale(group, row);
        let idx = group * self.n + row;
        match &self.zeros {
            Zeros::Symmetric => (f32::from(q) - 8.0) * s,
            Zeros::Int(z) => (f32::from(q) - f32::from(z[idx])) * s,
            Zeros::Min(m) => (f64::from(q) * f64::from(s) + f64::from(self.scale_dtype.to_f32(m[idx]))) as f32,
        }
    }

    /// The weight as f32, row-major [N][K].
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.n * self.k);
        for row in 0..self.n {
            for (j, &w) in self.packed[row * self.words_per_row()..][..self.words_per_row()].iter().enumerate() {
                let group = j * 8 / self.group_size;
                for q in unpack_word(w) {
                    out.push(self.value(q, group, row));
                }
            }
        }
        out
    }

    /// Bytes a kernel must read: packed codes + scales + zero points/minimums.
    pub fn packed_bytes(&self) -> usize {
        self.packed.len() * 4
    }

    pub fn total_bytes(&self) -> usize {
        let z = match &self.zeros {
            Zeros::Symmetric => 0,
            Zeros::Int(z) => z.len(),
            Zeros::Min(m) => m.len() * 2,
        };
        self.packed_bytes() + self.scales.len() * 2 + z
    }

    /// Replaces integer zero points that are all 8 by `Zeros::Symmetric` (same values, fewer
    /// bytes, cheaper kernel). GPTQ "sym" checkpoints store every zero as 7 (+1 = 8).
    pub fn simplify_zeros(&mut self) {
        if let Zeros::Int(z) = &self.zeros {
            if z.iter().all(|&v| v == 8) {
                self.zeros = Zeros::Symmetric;
            }
        }
    }
}

/// A test weight whose codes take every nibble value, with distinct f16 scales and zero
/// point `zeros(i)` for the i-th (group, row): what the checkpoint packers round-trip.
#[cfg(test)]
pub(crate) fn patterned_weight(n: usize, k: usize, g: usize, zeros: impl Fn(usize) -> u8) -> Int4Weight {
    let codes: Vec<u8> = (0..n * k).map(|i| ((i * 7 + i / 13) % 16) as u8).collect();
    let scales = (0..k / g * n).map(|i| HalfDtype::F16.from_f32(0.01 + i as f32 * 1e-4)).collect();
    let z = (0..k / g * n).map(zeros).collect();
    Int4Weight::from_codes(n, k, g, HalfDtype::F16, &codes, scales, Zeros::Int(z)).unwrap()
}
