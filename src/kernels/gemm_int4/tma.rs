//! Host side of `int4_wgmma_rs` (kernels/gemm_int4/int4_wgmma_rs.cu): the TMA tensor maps of
//! X and of the packed weight, and the launch, which passes both maps by value as 128-byte
//! `__grid_constant__` parameters (so it calls the driver itself, as `gemm_tma` does).

use super::launch::WgmmaRsConfig;
use super::linear::Int4Io;
use super::GemvPlan;
use crate::gpu::device::{Gpu, Kernel};
use crate::gpu::tma::encode_tiled;
use crate::kernels::gemm::gemm_tma::tensor_map_2d;
use crate::kernels::DType;
use anyhow::{bail, Result};
use cudarc::driver::sys;
use std::ffi::c_void;

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
#[allow(clippy::too_many_arguments)]
pub fn launch_wgmma_rs(
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
    let mut tm_x = tensor_map_2d(dt, io.x, m, k, cfg.bt)?;
    let mut tm_w = packed_weight_map(io.wq, n, k, cfg.rows, cfg.kgroup)?;
    let g = plan.main;
    kern.set_max_dynamic_smem(g.smem)?;
    let split = plan.splitk > 1;
    let (mut scales, mut zeros) = (io.scales, io.zeros);
    let (mut r, mut y, mut ws) = (if split { 0 } else { io.r }, io.y, if split { io.ws } else { 0 });
    let (mut m_, mut n_, mut k_) = (m as i32, n as i32, k as i32);
    let mut params: [*mut c_void; 10] = [
        &mut tm_x as *mut _ as *mut c_void,
        &mut tm_w as *mut _ as *mut c_void,
        &mut scales as *mut _ as *mut c_void,
        &mut zeros as *mut _ as *mut c_void,
        &mut r as *mut _ as *mut c_void,
        &mut y as *mut _ as *mut c_void,
        &mut ws as *mut _ as *mut c_void,
        &mut m_ as *mut _ as *mut c_void,
        &mut n_ as *mut _ as *mut c_void,
        &mut k_ as *mut _ as *mut c_void,
    ];
    // SAFETY: one pointer per kernel parameter in the order of the entry's signature
    // (int4_wgmma_rs(CUtensorMap ×2, const u16*, const void*, const T*, T*, float*, int ×3)),
    // each pointing at a value of the parameter's size that lives until the call returns (the
    // driver copies them at launch). The maps cover X [M][K] and Wq [N][K/8], the buffers the
    // caller sized for this shape; the kernel reads nothing else of them.
    unsafe {
        cudarc::driver::result::launch_kernel(kern.raw(), g.grid, g.block, g.smem, gpu.stream.cu_stream(), &mut params)
    }
    .map_err(|e| {
        anyhow::anyhow!(
            "launch of int4_wgmma_rs (grid {:?}, block {:?}, smem {} B) failed: {e:?}",
            g.grid,
            g.block,
            g.smem
        )
    })
}
