//! W8A16 GEMM laid out as a linear layer: Y[M,N] = X[M,K] · dequant(W)ᵀ (+ R), X and Y
//! bf16/fp16, W int8 in the format of `quant::int8` (`Int8Weight`: codes i8 [N][K], one
//! symmetric scale per output channel in the activation dtype), fp32 accumulation.
//!
//! Variants (launch contracts in each template's header):
//! - `int8_gemv` (kernels/gemm_int8/int8_gemv.cu): decode, M ≤ 16; streams the codes once
//!   with 16-byte loads, converts them exactly to fp32 in registers, applies the row's scale
//!   once at the end; optional split-K with a deterministic reduction.
//!
//! Larger M (prefill) dequantizes the weight (`quantize::Int8Quantizer::dequantize`) and runs
//! the bf16 GEMM; the family has no kernel for it.
//!
//! Reference: the random 16-bit weight quantized by the device quantizer
//! (kernels/gemm_int8/quantize.cu, bit-exact with `quant::quantize_int8_per_channel`; the
//! selftest checks it), dequantized into the activation dtype, then cuBLAS. Peer: that same
//! cuBLAS bf16/fp16 GEMM on the dequantized weight, i.e. what the int8 kernel replaces.

pub mod linear;
mod problem;
pub mod quantize;

pub use linear::{
    check_shape, gemv_plan, launch_linear, m_max_for, workspace_bytes, GemvPlan, Int8Io, GEMV_MAX_M, K_MULTIPLE,
    MAX_SPLITK, VARIANTS,
};
pub use problem::GemmInt8Problem;
pub use quantize::{quantize_request, DeviceInt8, Int8Quantizer, QUANTIZE_SOURCE};

use super::{gemm_common, DType, Family, Problem, Shape};
use crate::gpu::device::Gpu;
use anyhow::{bail, Result};

pub struct GemmInt8;

impl Family for GemmInt8 {
    fn name(&self) -> &'static str {
        "gemm_int8"
    }
    fn shape_dims(&self) -> &'static [&'static str] {
        gemm_common::DIMS
    }
    fn flops(&self, s: &Shape) -> f64 {
        gemm_common::linear_flops(s)
    }
    /// X and Y in the activation dtype, the codes (N·K bytes) and the 16-bit scales (2N);
    /// the bf16 weight the peer reads is not counted: it is what int8 saves.
    fn min_bytes(&self, s: &Shape, dt: DType) -> f64 {
        let (m, n, k) = (s.get("M"), s.get("N"), s.get("K"));
        let e = dt.bytes() as f64;
        (m * k + m * n) as f64 * e + (n * k) as f64 + 2.0 * n as f64
    }
    fn entries(&self, variant: &str) -> Result<&'static [&'static str]> {
        Ok(match variant {
            "int8_gemv" => &["int8_gemv", "gemm_splitk_reduce"],
            other => {
                bail!("the gemm_int8 family has no variant {other:?} (known: {})", VARIANTS.join(", "))
            }
        })
    }
    fn validate(&self, s: &Shape, dt: DType) -> Result<()> {
        let (m, n, k) = (s.get("M"), s.get("N"), s.get("K"));
        let label = s.label();
        if dt == DType::F32 {
            bail!("gemm_int8 {label}: activations must be bf16 or fp16 (fp32 accumulation); fp32 inputs are not supported");
        }
        if k % K_MULTIPLE != 0 {
            bail!(
                "gemm_int8 {label}: K = {k} is not a multiple of {K_MULTIPLE}; the int8 kernels read 16 codes of a \
                 weight row per load (pad K with zero columns to a multiple of {K_MULTIPLE})"
            );
        }
        if m > GEMV_MAX_M {
            bail!(
                "gemm_int8 {label}: M = {m} is more than {GEMV_MAX_M}; the family has decode kernels only (larger M \
                 dequantizes the weight and runs the bf16 GEMM: tune the gemm family at that shape)"
            );
        }
        if m * n > i64::from(i32::MAX) {
            bail!("gemm_int8 {label}: M·N must fit the kernels' 32-bit indices");
        }
        Ok(())
    }
    fn peer(&self) -> &'static str {
        "cublas"
    }
    /// One row; N not a multiple of any block's rows (odd, prime-ish); K of one chunk of 16,
    /// and K/16 not a multiple of 32 (a warp step), so every lane count meets a tail; M from
    /// 1 to 16, odd ones among them; small N so split-K is in the space, with splits that
    /// have no work at K = 16.
    fn selftest_shapes(&self) -> &'static [&'static str] {
        &[
            "1x8x16",
            "1x4100x256",
            "1x1031x4224",
            "3x1000x4112",
            "3x17x400",
            "5x300x2048",
            "7x33x16",
            "8x515x1040",
            "13x129x528",
            "16x1031x1024",
        ]
    }
    fn problem(&self, gpu: &Gpu, s: &Shape, dt: DType) -> Result<Box<dyn Problem>> {
        self.validate(s, dt)?;
        Ok(Box::new(GemmInt8Problem::new(gpu, s, dt)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(t: &str) -> Shape {
        Shape::parse(t, gemm_common::DIMS).unwrap()
    }

    #[test]
    fn counts() {
        let s = shape("8x4096x14336");
        assert_eq!(GemmInt8.flops(&s), 2.0 * 8.0 * 4096.0 * 14336.0);
        let (m, n, k) = (8.0, 4096.0, 14336.0);
        assert_eq!(GemmInt8.min_bytes(&s, DType::BF16), n * k + 2.0 * n + 2.0 * m * k + 2.0 * m * n);
    }

    #[test]
    fn validate_names_the_shape_and_the_rule() {
        let e = GemmInt8.validate(&shape("1x4096x4100"), DType::BF16).unwrap_err().to_string();
        assert!(e.contains("1x4096x4100") && e.contains("multiple of 16"), "{e}");
        let e = GemmInt8.validate(&shape("17x4096x4096"), DType::BF16).unwrap_err().to_string();
        assert!(e.contains("17x4096x4096") && e.contains("decode kernels only"), "{e}");
        assert!(GemmInt8.validate(&shape("1x8x16"), DType::F32).is_err());
        for s in GemmInt8.selftest_shapes() {
            GemmInt8.validate(&shape(s), DType::BF16).unwrap();
            GemmInt8.validate(&shape(s), DType::F16).unwrap();
        }
        assert!(GemmInt8.entries("int8_gemv").unwrap().contains(&"gemm_splitk_reduce"));
        assert!(GemmInt8.entries("gemv").is_err());
    }
}
