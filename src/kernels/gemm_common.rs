//! What the GEMM families (gemm, gemm_int4, gemm_int8) share. Each is a linear layer
//! Y[M,N] = X[M,K] · Wᵀ (+ R) with fp32 accumulation, whatever W's format, so they count the
//! same FLOPs, end a split-K launch with the same reduction kernel (gemm_splitk_reduce) and
//! size, poison and check their problems by the same rules.

use super::{Geometry, Params, Shape};
use crate::gpu::device::{Arg, DevBuf, Gpu, Kernel};
use crate::gpu::util::Util;
use anyhow::{bail, Result};

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

/// Refuses a quantized family's shape whose buffers, with the 16-bit weight its reference
/// and peer multiply by (`weight` names it), would not fit in free GPU memory.
pub fn ensure_fits_with_reference(gpu: &Gpu, family: &str, s: &Shape, need: i64, weight: &str) -> Result<()> {
    let what = format!(" (with the {weight} reference weight)");
    super::support::ensure_fits_noting(gpu, family, s, need.max(0) as usize, &what)
}

/// The split-K workspace a candidate needs (`need` bytes) must fit the one its problem
/// allocated (`have` bytes); `split_k_is_for` says for which shapes the problem has one.
pub fn ensure_workspace(
    variant: &str,
    p: &Params,
    (m, n, k): (i64, i64, i64),
    need: usize,
    have: usize,
    split_k_is_for: &str,
) -> Result<()> {
    if need > have {
        bail!(
            "{variant} {m}x{n}x{k}: SPLITK = {} needs a {need}-byte workspace, this problem has {have} (split-K is \
             for {split_k_is_for})",
            p.get("SPLITK").copied().unwrap_or(1),
        );
    }
    Ok(())
}

/// Poisons the output and the split-K workspace, when there is one: a partial left unwritten
/// in the workspace reaches Y as a NaN, so a split that skips its work fails the check.
pub fn poison_output(gpu: &Gpu, util: &Util, y: &DevBuf, ws: &DevBuf) -> Result<()> {
    util.poison(gpu, y)?;
    if ws.bytes > 0 {
        util.poison(gpu, ws)?;
    }
    Ok(())
}

/// Largest M·N·K a quantized family's `reference_vs_cpu` multiplies on the host (gemm_int4's
/// takes about a second with rayon).
pub const CPU_CHECK_MAX_MACS: i64 = 1 << 31;

/// Refuses a CPU check of the reference at a shape past [`CPU_CHECK_MAX_MACS`].
pub fn ensure_cpu_checkable(family: &str, m: i64, n: i64, k: i64) -> Result<()> {
    if m * n * k > CPU_CHECK_MAX_MACS {
        bail!("{family} {m}x{n}x{k}: too large for the CPU check of the reference (M·N·K > 2^31); use a smaller shape");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_and_cpu_check_errors_name_the_shape_and_the_rule() {
        let p: Params = [("SPLITK".to_string(), 4)].into_iter().collect();
        ensure_workspace("int8_gemv", &p, (3, 5, 16), 240, 240, "M <= 16").unwrap();
        let e = ensure_workspace("int8_gemv", &p, (3, 5, 16), 240, 0, "M <= 16").unwrap_err().to_string();
        assert_eq!(
            e,
            "int8_gemv 3x5x16: SPLITK = 4 needs a 240-byte workspace, this problem has 0 (split-K is for M <= 16)"
        );
        ensure_cpu_checkable("gemm_int4", 1 << 10, 1 << 10, 1 << 11).unwrap();
        let e = ensure_cpu_checkable("gemm_int4", 3, 1 << 15, 1 << 15).unwrap_err().to_string();
        assert_eq!(
            e,
            "gemm_int4 3x32768x32768: too large for the CPU check of the reference (M·N·K > 2^31); use a smaller shape"
        );
        assert_eq!(split_residual(true, 7, 9), (0, 9));
        assert_eq!(split_residual(false, 7, 9), (7, 0));
    }
}
