//! What the GEMM families (gemm, gemm_int4, gemm_int8) share. Each is a linear layer
//! Y[M,N] = X[M,K] · Wᵀ (+ R) with fp32 accumulation, whatever W's format, so they count the
//! same FLOPs and end a split-K launch with the same reduction kernel (gemm_splitk_reduce).

use super::{Geometry, Shape};
use crate::gpu::device::{Arg, Gpu, Kernel};
use anyhow::Result;

/// The shape dimensions of every GEMM family: Y[M,N] = X[M,K] · Wᵀ.
pub const DIMS: &[&str] = &["M", "N", "K"];

/// FLOPs of one linear layer: a multiply and an add for each (M, N, K), whatever the format
/// of the weight (its dequantization is not counted).
pub fn linear_flops(s: &Shape) -> f64 {
    2.0 * s.get("M") as f64 * s.get("N") as f64 * s.get("K") as f64
}

/// The residual and workspace pointers a main kernel with a split-K option takes, as
/// `(r, ws)`: split, it writes fp32 partials to `ws` and leaves R to the reduction; unsplit,
/// it adds R itself and has no workspace.
pub fn split_residual(split: bool, r: u64, ws: u64) -> (u64, u64) {
    if split {
        (0, ws)
    } else {
        (r, 0)
    }
}

/// Launches gemm_splitk_reduce (kernels/gemm/splitk_reduce.cuh), which every split-K variant
/// of the three families but int4_gemv ends with: Y = Σ of the SPLITK fp32 partials in `ws`
/// (+ R; `r` = 0 for none).
///
/// # Safety
/// `kern` is gemm_splitk_reduce; `ws` holds SPLITK·M·N floats written by the main kernel
/// before this launch on the stream, Y and R (or 0) are M×N in the kernel's dtype, and `g`
/// covers M·N threads.
#[allow(clippy::too_many_arguments)]
pub unsafe fn launch_splitk_reduce(
    gpu: &Gpu,
    kern: &Kernel,
    g: Geometry,
    ws: u64,
    y: u64,
    r: u64,
    m: i64,
    n: i64,
    splitk: i64,
) -> Result<()> {
    let args = [Arg::ptrs([ws, y, r]), Arg::i32s([m, n, splitk])].concat();
    // SAFETY: this function's contract; the arguments follow splitk_reduce.cuh's signature.
    unsafe { gpu.launch(kern, g.grid, g.block, g.smem, &args) }
}
