//! Host side of `int4_wgmma_rs` (kernels/gemm_int4/int4_wgmma_rs.cu): the TMA tensor maps of
//! X and of the packed weight, and the launch, which passes both maps by value as 128-byte
//! `__grid_constant__` parameters (so it calls the driver itself, as `gemm_tma` does).

use super::launch::Int4Io;
use super::launch::WgmmaRsConfig;
use super::GemvPlan;
use crate::gpu::device::{Arg, Gpu, Kernel};
use crate::gpu::tma::encode_tiled;
use crate::kernels::gemm::gemm_tma::tensor_map_2d;
use crate::kernels::gemm_common::split_residual;
use crate::kernels::DType;
use anyhow::{bail, Result};
use cudarc::driver::sys;

/// Packed words per 64-column k-tile (eight 4-bit codes a word).
const WORDS_PER_KTILE: i64 = 8;

/// A 2-D tensor map over the packed weight Wq u32 [N][K/8]: boxes of `box_rows` rows ×
/// `ktiles` k-tiles (8 words, 32 bytes, each), no swizzle (the kernel reads each row itself),
/// rows past N and columns past K zero-filled.
pub fn packed_weight_map(wq: u64, n: i64, k: i64, box_rows: i64, ktiles: i64) -> Result<sys::CUtensorMap> {
    if !wq.is_multiple_of(16) || k % 32 != 0 {
        bail!("TMA needs 16-byte aligned weight rows: base {wq:#x}, K = {k} (must be a multiple of 32)");
    }
    if !(1..=256).contains(&box_rows) {
        bail!("TMA box of {box_rows} weight rows: must be 1..=256");
    }
    if !(1..=4).contains(&ktiles) {
        bail!("TMA box of {ktiles} k-tiles of packed weight: must be 1..=4");
    }
    encode_tiled(
        &format!("the {n}x{k} packed weight"),
        sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_UINT32,
        wq,
        &[(k / 8) as u64, n as u64],
        &[(k / 2) as u64],
        &[(WORDS_PER_KTILE * ktiles) as u32, box_rows as u32],
        sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_NONE,
    )
}

/// Launches `int4_wgmma_rs` (not the split-K reduction, which the caller runs from `plan`).
///
/// # Safety
/// As [`super::linear::launch_linear`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn launch_wgmma_rs(
    gpu: &Gpu,
    kern: &Kernel,
    cfg: &WgmmaRsConfig,
    plan: &GemvPlan,
    io: Int4Io,
    m: i64,
    n: i64,
    k: i64,
    dt: DType,
) -> Result<()> {
    if gpu.props.cc_major != 9 {
        bail!(
            "int4_wgmma_rs needs an sm_90 GPU (Hopper: wgmma and TMA); this one is sm_{}{}",
            gpu.props.cc_major,
            gpu.props.cc_minor
        );
    }
    let tm_x = tensor_map_2d(dt, io.x, m, k, cfg.bt)?;
    let tm_w = packed_weight_map(io.wq, n, k, cfg.rows, cfg.kgroup)?;
    let g = plan.main;
    let (r, ws) = split_residual(plan.splitk > 1, io.r, io.ws);
    // int4_wgmma_rs(CUtensorMap ×2, const u16* scales, const void* zeros, const T* R, T* Y,
    // float* ws, int M, int N, int K); the maps cover X [M][K] and Wq [N][K/8].
    // SAFETY: the maps were encoded over the caller's buffers at this shape; the other arguments follow the
    // entry's signature and are sized as `launch_linear`'s contract says.
    unsafe {
        gpu.launch_with_maps(
            kern,
            g.grid,
            g.block,
            g.smem,
            &[tm_x, tm_w],
            &[Arg::ptrs([io.scales, io.zeros, r, io.y, ws]), Arg::i32s([m, n, k])].concat(),
        )
    }
}
