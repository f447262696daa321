//! Host side of the sm_90a GEMM variant `wgmma_tma` (kernels/gemm/wgmma_tma.cu): the two TMA
//! tensor maps, the persistent grid size, and the launch, which passes the tensor maps by
//! value as 128-byte `__grid_constant__` parameters (so it calls the driver itself rather
//! than `Gpu::launch`, whose arguments are at most 8 bytes).

use super::{ceil_div, param, DType};
use crate::gpu::device::{Arg, Gpu, Kernel};
use crate::gpu::tma::encode_tiled;
use anyhow::{bail, Result};
use cudarc::driver::sys;
use std::cell::RefCell;
use std::collections::HashMap;

/// k tile of the kernel: one 128-byte swizzle row of 16-bit elements.
const BK: i64 = 64;

/// The launch geometry of one configuration.
pub struct TmaGemmConfig {
    pub bm: i64,
    pub bn: i64,
    pub stages: i64,
    pub cwg: i64,
    pub cluster_m: i64,
    pub cluster_n: i64,
    pub splitk: i64,
    /// Epilogue through shared memory and a TMA store (used when N % 8 == 0).
    pub epi_tma: bool,
}

impl TmaGemmConfig {
    pub fn from_params(p: &std::collections::BTreeMap<String, i64>) -> Result<TmaGemmConfig> {
        let c = TmaGemmConfig {
            bm: param(p, "BM")?,
            bn: param(p, "BN")?,
            stages: param(p, "STAGES")?,
            cwg: param(p, "CWG")?,
            cluster_m: p.get("CLUSTER_M").copied().unwrap_or(1),
            cluster_n: p.get("CLUSTER_N").copied().unwrap_or(1),
            splitk: p.get("SPLITK").copied().unwrap_or(1),
            epi_tma: p.get("EPI_TMA").copied().unwrap_or(0) != 0,
        };
        if p.get("BK").is_some_and(|&b| b != BK) {
            bail!("wgmma_tma needs BK = 64 (one 128-byte swizzle row)");
        }
        Ok(c)
    }
    pub fn threads(&self) -> u32 {
        (128 * (self.cwg + 1)) as u32
    }
    pub fn cluster_size(&self) -> i64 {
        self.cluster_m * self.cluster_n
    }
    /// Dynamic shared memory: the stage ring, the output staging tile (EPI_TMA), and 1 KB
    /// to align them to 1024 bytes.
    pub fn smem_bytes(&self, elem: i64) -> u32 {
        let epi = if self.epi_tma { self.bm * self.bn * elem } else { 0 };
        (self.stages * (self.bm + self.bn) * BK * elem + epi + 1024) as u32
    }
}

/// A 2-D tensor map over a row-major [rows, cols] matrix of 16-bit elements, boxes of
/// `box_rows` × 64 columns, 128-byte swizzle, zero fill outside the matrix (loads) and
/// clipping (stores).
pub fn tensor_map_2d(dt: DType, ptr: u64, rows: i64, cols: i64, box_rows: i64) -> Result<sys::CUtensorMap> {
    let dtype = match dt {
        DType::BF16 => sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
        DType::F16 => sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
        DType::F32 => bail!("wgmma_tma takes bf16 or fp16"),
    };
    if !ptr.is_multiple_of(16) || (cols * 2) % 16 != 0 {
        bail!("TMA needs 16-byte aligned rows: base {ptr:#x}, row of {cols} elements");
    }
    if !(1..=256).contains(&box_rows) {
        bail!("TMA box of {box_rows} rows: must be 1..=256");
    }
    encode_tiled(
        &format!("a {rows}x{cols} matrix"),
        dtype,
        ptr,
        &[cols as u64, rows as u64],
        &[(cols * 2) as u64],
        &[BK as u32, box_rows as u32],
        sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
    )
}

/// (function handle, dynamic smem, threads, cluster size, registers).
type ResidentKey = (usize, u32, u32, i64, u32);

thread_local! {
    /// Co-resident clusters per kernel and launch shape, queried once per loaded kernel.
    static RESIDENT: RefCell<HashMap<ResidentKey, i64>> = RefCell::new(HashMap::new());
}

/// How many CTA clusters of this kernel fit on the GPU at once (the persistent grid size).
fn resident_clusters(gpu: &Gpu, kern: &Kernel, cfg: &TmaGemmConfig, smem: u32) -> i64 {
    let cs = cfg.cluster_size();
    let key = (kern.raw() as usize, smem, cfg.threads(), cs, kern.registers());
    if let Some(v) = RESIDENT.with(|m| m.borrow().get(&key).copied()) {
        return v;
    }
    let fallback = (gpu.props.sm_count as i64 / cs).max(1);
    // SAFETY: CUlaunchAttribute is plain C data (an id and a union of integers); all-zero is valid.
    let mut attr: sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
    attr.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
    attr.value.clusterDim.x = cs as u32;
    attr.value.clusterDim.y = 1;
    attr.value.clusterDim.z = 1;
    let config = sys::CUlaunchConfig {
        gridDimX: (gpu.props.sm_count as i64 / cs * cs).max(cs) as u32,
        gridDimY: 1,
        gridDimZ: 1,
        blockDimX: cfg.threads(),
        blockDimY: 1,
        blockDimZ: 1,
        sharedMemBytes: smem,
        hStream: gpu.stream.cu_stream(),
        attrs: &mut attr,
        numAttrs: 1,
    };
    let mut n = 0i32;
    // SAFETY: valid function handle, config and out-pointer; the dynamic smem limit was raised.
    let r = unsafe { sys::cuOccupancyMaxActiveClusters(&mut n, kern.raw(), &config) };
    let v = if r == sys::CUresult::CUDA_SUCCESS && n > 0 { n as i64 } else { fallback };
    RESIDENT.with(|m| m.borrow_mut().insert(key, v));
    v
}

/// Launches `gemm_wgmma` for Y[M,N] = X[M,K]·W[N,K]ᵀ (+R). With SPLITK > 1 it writes fp32
/// partials to `ws` and the caller must run gemm_splitk_reduce. Returns SPLITK.
///
/// # Safety
/// As [`super::launch_linear`]: `kern` compiled with `cfg`'s tunables, X, W, Y, R (or 0)
/// and the workspace live device buffers sized for (M, N, K) and SPLITK.
#[allow(clippy::too_many_arguments)]
pub unsafe fn launch(
    gpu: &Gpu,
    kern: &Kernel,
    cfg: &TmaGemmConfig,
    dt: DType,
    (x, w, y, r, ws): (u64, u64, u64, u64, u64),
    m: i64,
    n: i64,
    k: i64,
) -> Result<i64> {
    if gpu.props.cc_major != 9 {
        bail!("wgmma_tma needs an sm_90 GPU (Hopper); this one is sm_{}{}", gpu.props.cc_major, gpu.props.cc_minor);
    }
    let kt = ceil_div(k, BK);
    if cfg.splitk > kt {
        bail!("SPLITK = {} exceeds the {kt} k-tiles of K = {k}", cfg.splitk);
    }
    let e = dt.bytes() as i64;
    let tm_x = tensor_map_2d(dt, x, m, k, cfg.bm / cfg.cluster_n)?;
    let tm_w = tensor_map_2d(dt, w, n, k, cfg.bn / cfg.cluster_m)?;
    // The TMA store needs 16-byte rows of Y; otherwise the kernel stores from registers.
    let tma_store = cfg.epi_tma && cfg.splitk == 1 && n % 8 == 0 && y % 16 == 0;
    let tm_y = if tma_store { tensor_map_2d(dt, y, m, n, cfg.bm)? } else { sys::CUtensorMap { opaque: [0; 16] } };
    let smem = cfg.smem_bytes(e);
    kern.set_max_dynamic_smem(smem)?;
    let units =
        ceil_div(ceil_div(m, cfg.bm), cfg.cluster_m) * ceil_div(ceil_div(n, cfg.bn), cfg.cluster_n) * cfg.splitk;
    let clusters = units.min(resident_clusters(gpu, kern, cfg, smem)).max(1);
    let grid = (clusters * cfg.cluster_size()) as u32;

    // gemm_wgmma(CUtensorMap ×3, T* Y, const T* R, float* ws, int M, int N, int K, int tma_store);
    // compile-time cluster dims divide the grid.
    // SAFETY: the tensor maps were encoded over the caller's X, W (and Y) buffers at (M, N, K); Y, R and the
    // workspace are sized as `launch_linear`'s contract says; the arguments follow the entry's signature.
    unsafe {
        gpu.launch_with_maps(
            kern,
            (grid, 1, 1),
            (cfg.threads(), 1, 1),
            smem,
            &[tm_x, tm_w, tm_y],
            &[
                Arg::Ptr(y),
                Arg::Ptr(r),
                Arg::Ptr(ws),
                Arg::I32(m as i32),
                Arg::I32(n as i32),
                Arg::I32(k as i32),
                Arg::I32(tma_store as i32),
            ],
        )?
    };
    Ok(cfg.splitk)
}
