//! W4A16 GEMM laid out as a linear layer: Y[M,N] = X[M,K] · dequant(W)ᵀ, X and Y bf16/fp16,
//! W int4 in the kernlab format (docs/int4-format.md), fp32 accumulation.
//!
//! Variants (launch contracts in each template's header):
//! - `int4_gemv` (kernels/gemm_int4/int4_gemv.cu): decode, M ≤ 16; streams the packed weight
//!   once, dequantizes in registers, optional split-K with a deterministic reduction.
//! - `int4_gemv_tc` (kernels/gemm_int4/int4_gemv_tc.cu): decode, M ≤ 16, on tensor cores:
//!   the weights are mma's A operand, so a weight costs a shift, a lop3 and half a packed fma
//!   instead of int4_gemv's fp32 multiply-adds per activation row.
//! - `int4_gemv_bulk` (kernels/gemm_int4/int4_gemv_bulk.cu): decode, M ≤ 16, Hopper: the same
//!   tensor-core math as int4_gemv_tc on the tiled layout (`tiled`), streamed into per-warp
//!   shared-memory rings by bulk copies, so the bytes in flight cost no registers.
//! - `int4_mma` (kernels/gemm_int4/int4_mma.cu): tensor cores (mma.sync m16n8k16), any M;
//!   cp.async pipeline of raw X and packed W tiles, B fragments dequantized in registers.
//! - `int4_mma_wgmma` (kernels/gemm_int4/int4_mma_wgmma.cu): Hopper, M ≥ 64: each k-tile of W
//!   dequantized once into shared memory and read by wgmma as B, overlapped with the previous
//!   tile's wgmma; optional split-K with gemm_splitk_reduce.
//! - `int4_wgmma_rs` (kernels/gemm_int4/int4_wgmma_rs.cu): Hopper, any M: the product turned
//!   around (Yᵀ = dequant(W)·Xᵀ) so the weights are wgmma's register operand, dequantized by
//!   the thread that feeds them, and tokens are wgmma's n (8..256); X and the packed W stream
//!   through a TMA ring filled by a producer warp (host side in `tma`).
//!
//! Reference: dequantize W with a plain kernel (kernels/gemm_int4/reference.cu) into the
//! activation dtype, then cuBLAS. Peer: that same cuBLAS bf16/fp16 GEMM on the dequantized
//! weight, i.e. what the int4 kernel replaces, so "speedup over the peer" is the speedup
//! over cuBLAS bf16 on the same shape, measured in the same run.
//!
//! Format: g128 symmetric with scales in the activation dtype unless a candidate's tunables
//! say otherwise (`GROUP`, `ZERO_MODE`, `KL_SCALE_FP16`; see `format`). FLOP and byte counts
//! assume the default format.

pub mod act_order;
mod format;
mod launch;
pub mod linear;
mod problem;
pub mod quantize;
mod reference;
pub mod tiled;
mod tma;

pub use format::{
    variant_takes_format, with_format, Int4Format, ZeroMode, DEFAULT_GROUP, MIN_GROUP, PER_CHANNEL, SELFTEST_FORMATS,
};
pub use launch::{
    bulk_plan, bulk_smem_bytes, gemv_plan, gemv_tc_plan, mma_geometry, mma_smem_bytes, wgmma_plan, wgmma_rs_plan,
    wgmma_rs_smem_bytes, wgmma_smem_bytes, GemvPlan, Geometry, WgmmaRsConfig, GEMV_MAX_M, MAX_SPLITK, WGMMA_MAX_SPLITK,
    WGMMA_RS_MAX_SPLITK,
};
pub use problem::GemmInt4Problem;
pub use reference::{reference_request, RefKernels, REFERENCE_SOURCE};

use super::{gemm_common, DType, Family, Problem, Shape};
use crate::gpu::device::Gpu;
use anyhow::{bail, Result};

pub struct GemmInt4;

/// The variants this build can launch.
pub const VARIANTS: &[&str] =
    &["int4_gemv", "int4_gemv_tc", "int4_gemv_bulk", "int4_mma", "int4_mma_wgmma", "int4_wgmma_rs"];

impl Family for GemmInt4 {
    fn name(&self) -> &'static str {
        "gemm_int4"
    }
    fn shape_dims(&self) -> &'static [&'static str] {
        gemm_common::DIMS
    }
    fn flops(&self, s: &Shape) -> f64 {
        gemm_common::linear_flops(s)
    }
    /// X and Y in the activation dtype, plus the packed codes (N·K/2) and the g128 scales;
    /// the bf16 weight the peer reads is not counted: it is what int4 saves.
    fn min_bytes(&self, s: &Shape, dt: DType) -> f64 {
        let (m, n, k) = (s.get("M"), s.get("N"), s.get("K"));
        let e = dt.bytes() as f64;
        (m * k + m * n) as f64 * e + Int4Format::default_for(dt).weight_bytes(n, k)
    }
    fn entries(&self, variant: &str) -> Result<&'static [&'static str]> {
        Ok(match variant {
            "int4_gemv" => &["int4_gemv", "int4_splitk_reduce"],
            "int4_gemv_tc" => &["int4_gemv_tc", "gemm_splitk_reduce"],
            "int4_gemv_bulk" => &["int4_gemv_bulk"],
            "int4_mma" => &["int4_mma"],
            "int4_mma_wgmma" => &["int4_mma_wgmma", "gemm_splitk_reduce"],
            "int4_wgmma_rs" => &["int4_wgmma_rs", "gemm_splitk_reduce"],
            other => {
                bail!("the gemm_int4 family has no variant {other:?} (known: {})", VARIANTS.join(", "))
            }
        })
    }
    fn validate(&self, s: &Shape, dt: DType) -> Result<()> {
        let k = s.get("K");
        if k % DEFAULT_GROUP != 0 {
            bail!(
                "gemm_int4 {}: K = {k} is not a multiple of the group size {DEFAULT_GROUP}; int4 weights are \
                 quantized in groups of {DEFAULT_GROUP} consecutive K columns (pad K with zero columns to a \
                 multiple of {DEFAULT_GROUP})",
                s.label()
            );
        }
        if dt == DType::F32 {
            bail!(
                "gemm_int4 {}: activations must be bf16 or fp16 (fp32 accumulation); fp32 inputs are not supported",
                s.label()
            );
        }
        Ok(())
    }
    fn peer(&self) -> &'static str {
        "cublas"
    }
    /// One row; odd N; partial M tiles; K of 1, 2, 3 and 9 g128 groups; M both sides of the
    /// gemv/mma boundary (16) — so every candidate meets tails, few K tiles and, for split-K,
    /// splits with no work.
    /// The format of a candidate's weights, unless it is the kernels' default for `dt`
    /// (g128 symmetric, scales in the activation dtype): the database's key for winners.
    fn weight_format(&self, params: &std::collections::BTreeMap<String, i64>, dt: DType) -> Option<String> {
        let f = Int4Format::from_params(params, dt).ok()?;
        (f != Int4Format::default_for(dt)).then(|| f.label())
    }

    fn selftest_shapes(&self) -> &'static [&'static str] {
        &[
            "1x8x128",
            "1x4100x256",
            // DIAG's 1024-k steps: four full steps (a step for each of 4 warps) and a fifth
            // with a single live 128-k piece.
            "1x1031x4224",
            "3x17x384",
            "5x300x2048",
            "16x1031x1024",
            "17x33x128",
            "64x64x256",
            "130x70x512",
            "257x1031x1152",
        ]
    }
    fn problem(&self, gpu: &Gpu, s: &Shape, dt: DType) -> Result<Box<dyn Problem>> {
        self.validate(s, dt)?;
        Ok(Box::new(GemmInt4Problem::new(gpu, s, dt)?))
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
        let s = shape("16x4096x4096");
        assert_eq!(GemmInt4.flops(&s), 2.0 * 16.0 * 4096.0 * 4096.0);
        let packed = 4096.0 * 4096.0 / 2.0;
        let scales = 32.0 * 4096.0 * 2.0;
        let xy = (16.0 * 4096.0 * 2.0) * 2.0;
        assert_eq!(GemmInt4.min_bytes(&s, DType::BF16), packed + scales + xy);
    }

    #[test]
    fn validate_names_the_shape() {
        let e = GemmInt4.validate(&shape("1x4096x4000"), DType::BF16).unwrap_err().to_string();
        assert!(e.contains("1x4096x4000") && e.contains("group size 128"), "{e}");
        assert!(GemmInt4.validate(&shape("1x8x128"), DType::F32).is_err());
        for s in GemmInt4.selftest_shapes() {
            GemmInt4.validate(&shape(s), DType::BF16).unwrap();
        }
        assert!(GemmInt4.entries("int4_gemv").unwrap().contains(&"int4_splitk_reduce"));
        assert!(GemmInt4.entries("gemv").is_err());
    }
}
