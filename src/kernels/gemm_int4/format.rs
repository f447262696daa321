//! Which int4 format a candidate runs: group size, zero-point mode and scale dtype.
//!
//! The kernels read the format from compile-time macros (`GROUP`, `ZERO_MODE`,
//! `KL_SCALE_FP16`), so a candidate's tunables say which format its inputs must have. The
//! problem follows them (see `problem.rs`): the default sweep pins g128 symmetric scales in the
//! activation dtype (what the Llama path uses), and `kernlab selftest` overlays the other
//! formats of `SELFTEST_FORMATS` on sampled candidates.

use crate::kernels::DType;
use crate::kernels::Params;
use crate::quant::HalfDtype;
use anyhow::{bail, Result};
use std::collections::BTreeMap;

/// Group size when a candidate does not set `GROUP` (the kernels' default too).
pub const DEFAULT_GROUP: i64 = 128;

/// Smallest group size the kernels take: int4_gemv needs GROUP % (8*VEC) == 0 with VEC up to
/// 4, int4_mma GROUP and BK (a multiple of 32) dividing one another. Any multiple of it works
/// (32, 64, 128 as in GGUF/AWQ/GPTQ, or GROUP = K for per-channel scales).
pub const MIN_GROUP: i64 = 32;

/// `Int4Format::group` of a set of weights with one scale per row (per-channel): each
/// weight's group is its own K, resolved by [`Int4Format::at_k`] before a kernel sees it.
pub const PER_CHANNEL: i64 = 0;

/// How codes become values; the discriminant is the kernels' `ZERO_MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ZeroMode {
    /// (q - 8) * s
    Symmetric = 0,
    /// (q - z) * s, z u8 in 0..=16 (AWQ, GPTQ)
    Int = 1,
    /// q * s + m, m in the scale dtype (GGUF Q4_1)
    Min = 2,
}

impl ZeroMode {
    pub fn from_macro(v: i64) -> Result<ZeroMode> {
        Ok(match v {
            0 => ZeroMode::Symmetric,
            1 => ZeroMode::Int,
            2 => ZeroMode::Min,
            other => bail!("ZERO_MODE = {other}: expected 0 (symmetric), 1 (int zero points) or 2 (float minimums)"),
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            ZeroMode::Symmetric => "sym",
            ZeroMode::Int => "zp",
            ZeroMode::Min => "min",
        }
    }
    /// Bytes of zero-point data per (group, row).
    pub fn bytes(self) -> usize {
        match self {
            ZeroMode::Symmetric => 0,
            ZeroMode::Int => 1,
            ZeroMode::Min => 2,
        }
    }
}

/// The weight format of one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Int4Format {
    /// K columns per scale, or [`PER_CHANNEL`].
    pub group: i64,
    pub zeros: ZeroMode,
    pub scale_dtype: HalfDtype,
}

impl Int4Format {
    /// g128, symmetric, scales in the activation dtype.
    pub fn default_for(dt: DType) -> Int4Format {
        Int4Format { group: DEFAULT_GROUP, zeros: ZeroMode::Symmetric, scale_dtype: HalfDtype::of(dt) }
    }

    /// The format a candidate's macros select; unset macros take the kernels' defaults
    /// (`KL_SCALE_FP16` defaults to the activation dtype, as in the templates).
    pub fn from_params(params: &Params, dt: DType) -> Result<Int4Format> {
        let d = Int4Format::default_for(dt);
        let group = params.get("GROUP").copied().unwrap_or(d.group);
        if group < MIN_GROUP || group % MIN_GROUP != 0 {
            bail!("GROUP = {group}: the gemm_int4 kernels take group sizes that are multiples of {MIN_GROUP} (32, 64, 128, ..., or K for per-channel)");
        }
        let zeros = ZeroMode::from_macro(params.get("ZERO_MODE").copied().unwrap_or(0))?;
        let scale_dtype = match params.get("KL_SCALE_FP16") {
            None => d.scale_dtype,
            Some(0) => HalfDtype::Bf16,
            Some(1) => HalfDtype::F16,
            Some(v) => bail!("KL_SCALE_FP16 = {v}: expected 0 (bf16 scales) or 1 (fp16 scales)"),
        };
        Ok(Int4Format { group, zeros, scale_dtype })
    }

    /// The format of one weight with `k` columns: a per-channel format's group is K.
    pub fn at_k(&self, k: i64) -> Int4Format {
        if self.group == PER_CHANNEL {
            Int4Format { group: k, ..*self }
        } else {
            *self
        }
    }

    /// The format's macros, as a candidate's tunables name them.
    pub fn params(&self) -> BTreeMap<String, i64> {
        let fp16 = i64::from(self.scale_dtype == HalfDtype::F16);
        [("GROUP", self.group), ("ZERO_MODE", self.zeros as i64), ("KL_SCALE_FP16", fp16)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    /// Short label, e.g. `g128-sym-bf16` or `channel-zp-f16`.
    pub fn label(&self) -> String {
        let g = if self.group == PER_CHANNEL { "channel".to_string() } else { format!("g{}", self.group) };
        format!("{g}-{}-{}", self.zeros.name(), self.scale_dtype)
    }

    /// Bytes of packed codes, scales and zero points of an N×K weight.
    pub fn weight_bytes(&self, n: i64, k: i64) -> f64 {
        let groups = (k / self.at_k(k).group) as f64 * n as f64;
        (n * k) as f64 / 2.0 + groups * (2 + self.zeros.bytes()) as f64
    }
}

/// Formats `kernlab selftest` checks every variant with, as tunable overlays on a sampled
/// candidate: (label, [(macro, value)]). The first is the default format.
pub const SELFTEST_FORMATS: &[(&str, &[(&str, i64)])] = &[
    ("g128 symmetric (default)", &[("GROUP", 128), ("ZERO_MODE", 0)]),
    ("g128 int zero points (AWQ/GPTQ)", &[("GROUP", 128), ("ZERO_MODE", 1)]),
    ("g64 int zero points", &[("GROUP", 64), ("ZERO_MODE", 1)]),
    ("g32 symmetric fp16 scales (GGUF Q4_0)", &[("GROUP", 32), ("ZERO_MODE", 0), ("KL_SCALE_FP16", 1)]),
    ("g32 float minimums fp16 scales (GGUF Q4_1)", &[("GROUP", 32), ("ZERO_MODE", 2), ("KL_SCALE_FP16", 1)]),
    ("g128 float minimums bf16 scales", &[("GROUP", 128), ("ZERO_MODE", 2), ("KL_SCALE_FP16", 0)]),
];

/// Whether `variant` takes the weight format a selftest overlay names: int4_gemv_bulk reads
/// a 128-k step's scale once (groups of 128 or more) and has no float-minimum path.
pub fn variant_takes_format(variant: &str, overlay: &[(&str, i64)]) -> bool {
    let get = |k: &str| overlay.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    match variant {
        "int4_gemv_bulk" => get("GROUP").unwrap_or(DEFAULT_GROUP) % 128 == 0 && get("ZERO_MODE").unwrap_or(0) != 2,
        _ => true,
    }
}

/// A candidate's tunables with a selftest format laid over them.
pub fn with_format(params: &Params, overlay: &[(&str, i64)]) -> BTreeMap<String, i64> {
    let mut p = params.clone();
    for (k, v) in overlay {
        p.insert(k.to_string(), *v);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_templates() {
        let f = Int4Format::from_params(&BTreeMap::new(), DType::BF16).unwrap();
        assert_eq!(f, Int4Format::default_for(DType::BF16));
        assert_eq!(f.label(), "g128-sym-bf16");
        let f = Int4Format::from_params(&BTreeMap::new(), DType::F16).unwrap();
        assert_eq!(f.scale_dtype, HalfDtype::F16);
    }

    #[test]
    fn overlays_parse_and_bad_values_are_errors() {
        for (_, o) in SELFTEST_FORMATS {
            Int4Format::from_params(&with_format(&BTreeMap::new(), o), DType::BF16).unwrap();
        }
        let bad = |k: &str, v: i64| Int4Format::from_params(&[(k.to_string(), v)].into_iter().collect(), DType::BF16);
        assert!(bad("GROUP", 48).is_err());
        assert!(bad("GROUP", 16).is_err());
        assert!(bad("GROUP", 4096).is_ok());
        assert!(bad("ZERO_MODE", 3).is_err());
        assert!(bad("KL_SCALE_FP16", 2).is_err());
    }

    #[test]
    fn weight_bytes() {
        let f = Int4Format::default_for(DType::BF16);
        assert_eq!(f.weight_bytes(4096, 4096), 4096.0 * 2048.0 + 32.0 * 4096.0 * 2.0);
        let z = Int4Format { zeros: ZeroMode::Int, ..f };
        assert_eq!(z.weight_bytes(8, 256), 8.0 * 128.0 + 2.0 * 8.0 * 3.0);
        let c = Int4Format { group: PER_CHANNEL, ..z };
        assert_eq!(c.weight_bytes(8, 512), 8.0 * 256.0 + 8.0 * 3.0);
        assert_eq!((c.at_k(512).group, z.at_k(512).group), (512, 128));
        assert_eq!(c.label(), "channel-zp-bf16");
        let back = Int4Format::from_params(&z.params(), DType::F16).unwrap();
        assert_eq!(back, z, "bf16 scales stay bf16 under fp16 activations");
    }
}
