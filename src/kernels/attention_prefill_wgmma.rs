//! Host side of the sm_90a prefill variant `flash_wgmma` (kernels/attention/prefill_wgmma.cu):
//! the three 3-D TMA tensor maps over the packed Q, K, V tensors, and the launch, which passes
//! them by value as 128-byte `__grid_constant__` parameters (so it calls the driver itself
//! rather than `Gpu::launch`, whose arguments are at most 8 bytes).

use crate::gpu::device::{Arg, Gpu, Kernel};
use crate::gpu::tma::encode_tiled;
use crate::kernels::tunables::Tunables;
use crate::kernels::{ceil_div, DType};
use anyhow::{bail, Result};
use cudarc::driver::sys;

pub const PREFILL_WGMMA_SOURCE: &str = include_str!("../../kernels/attention/prefill_wgmma.cu");

/// Dims of one TMA box along the head dimension: one 128-byte swizzle row of 16-bit values.
const BOX_D: i64 = 64;

/// The launch geometry of one configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WgmmaConfig {
    pub head_dim: i64,
    pub block_n: i64,
    /// Consumer warpgroups; each owns 64 query rows.
    pub cwg: i64,
    pub stages: i64,
}

impl WgmmaConfig {
    pub fn new(t: &Tunables) -> Result<WgmmaConfig> {
        if t.variant() != "flash_wgmma" {
            bail!("flash_wgmma's launch cannot run variant {:?}", t.variant());
        }
        let c = WgmmaConfig {
            head_dim: t.get("HEAD_DIM")?,
            block_n: t.get("BLOCK_N")?,
            cwg: t.get("CWG")?,
            stages: t.get("STAGES")?,
        };
        if !(1..=2).contains(&c.cwg) {
            bail!("flash_wgmma: CWG = {} (must be 1 or 2)", c.cwg);
        }
        Ok(c)
    }
    pub fn block_m(&self) -> i64 {
        64 * self.cwg
    }
    pub fn threads(&self) -> u32 {
        (128 * (self.cwg + 1)) as u32
    }
}

/// Dynamic shared memory of one CTA: the Q tile, the K/V ring, and 1 KB to align them to
/// 1024 bytes (the 128-byte swizzle pattern repeats every 1024 bytes).
pub fn wgmma_smem_bytes(block_m: i64, block_n: i64, stages: i64, d: i64, elem: i64) -> i64 {
    (block_m + 2 * stages * block_n) * d * elem + 1024
}

/// A 3-D tensor map over a packed `[tokens, heads, d]` tensor of 16-bit elements: boxes of
/// 64 dims × 1 head × `box_rows` tokens, 128-byte swizzle, zero fill past the last token.
pub fn tensor_map_3d(dt: DType, ptr: u64, tokens: i64, heads: i64, d: i64, box_rows: i64) -> Result<sys::CUtensorMap> {
    let dtype = match dt {
        DType::BF16 => sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
        DType::F16 => sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
        DType::F32 => bail!("flash_wgmma takes bf16 or fp16"),
    };
    if !ptr.is_multiple_of(16) || d % BOX_D != 0 {
        bail!("TMA needs a 16-byte aligned base ({ptr:#x}) and a head dim that is a multiple of {BOX_D} ({d})");
    }
    if tokens < 1 || heads < 1 || !(1..=256).contains(&box_rows) {
        bail!("TMA map of {tokens} tokens × {heads} heads, box of {box_rows} rows: out of range");
    }
    encode_tiled(
        &format!("[{tokens}, {heads}, {d}]"),
        dtype,
        ptr,
        &[d as u64, heads as u64, tokens as u64],
        &[(d * 2) as u64, (heads * d * 2) as u64],
        &[BOX_D as u32, 1, box_rows as u32],
        sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
    )
}

/// Tensor maps of Q, K, V for one configuration's box sizes.
#[derive(Clone, Copy)]
pub struct PrefillMaps {
    pub q: sys::CUtensorMap,
    pub k: sys::CUtensorMap,
    pub v: sys::CUtensorMap,
    /// (BLOCK_M, BLOCK_N) the maps were built for.
    pub boxes: (i64, i64),
}

/// Pointers and sizes of one packed problem (Q, O `[tokens, h, d]`, K, V `[tokens, kvh, d]`).
pub struct PrefillIo {
    pub q: u64,
    pub k: u64,
    pub v: u64,
    pub o: u64,
    pub cu_seqlens: u64,
    pub tokens: i64,
    pub h: i64,
    pub kvh: i64,
    pub d: i64,
}

pub fn build_maps(dt: DType, io: &PrefillIo, cfg: &WgmmaConfig) -> Result<PrefillMaps> {
    Ok(PrefillMaps {
        q: tensor_map_3d(dt, io.q, io.tokens, io.h, io.d, cfg.block_m())?,
        k: tensor_map_3d(dt, io.k, io.tokens, io.kvh, io.d, cfg.block_n)?,
        v: tensor_map_3d(dt, io.v, io.tokens, io.kvh, io.d, cfg.block_n)?,
        boxes: (cfg.block_m(), cfg.block_n),
    })
}

/// Launches `attn_prefill_wgmma` over `batch` sequences whose longest is `max_len` (> 0).
///
/// # Safety
/// `kern` is attn_prefill_wgmma of a module compiled with `cfg`'s tunables; `maps` were
/// built by [`build_maps`] from this `io`, whose O holds io.tokens·H·D elements and
/// cu_seqlens batch + 1 ints ending at io.tokens; all live until the launch ran.
#[allow(clippy::too_many_arguments)]
pub unsafe fn launch(
    gpu: &Gpu,
    kern: &Kernel,
    cfg: &WgmmaConfig,
    maps: &PrefillMaps,
    dt: DType,
    io: &PrefillIo,
    batch: i64,
    max_len: i64,
    scale: f32,
) -> Result<()> {
    if gpu.props.cc_major != 9 {
        bail!("flash_wgmma needs an sm_90 GPU (Hopper); this one is sm_{}{}", gpu.props.cc_major, gpu.props.cc_minor);
    }
    if cfg.head_dim != io.d {
        bail!("flash_wgmma compiled for HEAD_DIM = {} cannot run D = {}", cfg.head_dim, io.d);
    }
    if maps.boxes != (cfg.block_m(), cfg.block_n) {
        bail!(
            "flash_wgmma: tensor maps built for boxes {:?}, launch needs {:?}",
            maps.boxes,
            (cfg.block_m(), cfg.block_n)
        );
    }
    let smem = wgmma_smem_bytes(cfg.block_m(), cfg.block_n, cfg.stages, io.d, dt.bytes() as i64) as u32;
    let grid = (io.h as u32, ceil_div(max_len, cfg.block_m()) as u32, batch as u32);

    // attn_prefill_wgmma(CUtensorMap ×3, T* O, const int* cu_seqlens, int H, int KVH, float scale);
    // the maps cover the buffers Q, K, V of `io`.
    // SAFETY: the caller's contract; maps and arguments follow the entry's signature.
    unsafe {
        gpu.launch_with_maps(
            kern,
            grid,
            (cfg.threads(), 1, 1),
            smem,
            &[maps.q, maps.k, maps.v],
            &[Arg::Ptr(io.o), Arg::Ptr(io.cu_seqlens), Arg::I32(io.h as i32), Arg::I32(io.kvh as i32), Arg::F32(scale)],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn geometry() {
        let mut p = BTreeMap::new();
        let src = PREFILL_WGMMA_SOURCE;
        let from =
            |p: &BTreeMap<String, i64>| WgmmaConfig::new(&Tunables::from_template("flash_wgmma", src, DType::BF16, p));
        let c = from(&p).unwrap();
        assert_eq!((c.block_m(), c.threads()), (128, 384));
        // Q 128×128 + 2 stages × (K + V) 128×128, bf16, + alignment slack
        assert_eq!(wgmma_smem_bytes(128, 128, 2, 128, 2), (128 + 512) * 256 + 1024);
        p.insert("CWG".into(), 1);
        let c = from(&p).unwrap();
        assert_eq!((c.block_m(), c.threads()), (64, 256));
        p.insert("CWG".into(), 3);
        assert!(from(&p).is_err());
    }
}
