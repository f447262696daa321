//! The tiled int4 layout that int4_gemv_bulk streams (docs/int4-format.md): 16-row tiles,
//! each 128-k step's codes in the order the mma lanes read them, scales and zeros per tile
//! and group. Made on the GPU from the plain layout by kernels/gemm_int4/repack.cu, which
//! only moves bytes, so both layouts hold the same weight.

use super::format::ZeroMode;
use crate::gpu::cache::{self, ModuleCache};
use crate::gpu::device::{Arg, DevBuf, Gpu, Kernel};
use crate::gpu::nvrtc::CompileRequest;
use crate::kernels::ceil_div;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;

pub const REPACK_SOURCE: &str = include_str!("../../../kernels/gemm_int4/repack.cu");

/// The variants that read the tiled layout; every other variant reads the plain one.
pub const TILED_VARIANTS: &[&str] = &["int4_gemv_bulk"];

/// Which layout `variant` reads its weight in.
pub fn reads_tiled(variant: &str) -> bool {
    TILED_VARIANTS.contains(&variant)
}

/// The repack module's compile request (also used by the NVRTC tests).
pub fn repack_request(arch: &str) -> CompileRequest {
    CompileRequest {
        name: "kernels/gemm_int4/repack.cu".into(),
        source: REPACK_SOURCE.into(),
        defines: BTreeMap::new(),
        arch: arch.into(),
    }
}

/// Bytes of the tiled buffers of an N×K weight in groups of `group`: codes, scales, u8 zeros.
pub fn tiled_bytes(n: i64, k: i64, group: i64) -> (usize, usize, usize) {
    let rows = ceil_div(n, 16) * 16;
    let groups = rows * (k / group);
    ((rows * k / 2) as usize, (groups * 2) as usize, groups as usize)
}

/// A weight in the tiled layout on the device.
pub struct TiledInt4 {
    pub codes: DevBuf,
    pub scales: DevBuf,
    /// u8 zero points (ZeroMode::Int); None for symmetric weights.
    pub zeros: Option<DevBuf>,
}

impl TiledInt4 {
    pub fn alloc(gpu: &Gpu, n: i64, k: i64, group: i64, zeros: ZeroMode) -> Result<TiledInt4> {
        let (c, s, z) = tiled_bytes(n, k, group);
        Ok(TiledInt4 {
            codes: gpu.alloc(c)?,
            scales: gpu.alloc(s)?,
            zeros: if zeros == ZeroMode::Int { Some(gpu.alloc(z)?) } else { None },
        })
    }
    pub fn bytes(&self) -> usize {
        self.codes.bytes + self.scales.bytes + self.zeros.as_ref().map_or(0, |z| z.bytes)
    }
}

/// The plain buffers of one weight, as device addresses.
#[derive(Debug, Clone, Copy)]
pub struct PlainInt4 {
    pub packed: u64,
    pub scales: u64,
    /// u8 zero points [K/group][N] (ZeroMode::Int), else 0.
    pub zeros: u64,
}

pub struct Repacker {
    codes: Kernel,
    groups16: Kernel,
    groups8: Kernel,
}

fn grid(items: i64, gpu: &Gpu) -> u32 {
    ceil_div(items, 256).clamp(1, i64::from(gpu.props.sm_count) * 32) as u32
}

impl Repacker {
    pub fn new(gpu: &Gpu) -> Result<Repacker> {
        let cache = ModuleCache::open(&cache::default_dir())?;
        Self::with_cache(gpu, &cache)
    }

    pub fn with_cache(gpu: &Gpu, cache: &ModuleCache) -> Result<Repacker> {
        let m = cache
            .get_or_compile(&repack_request(&gpu.props.arch()))
            .context("compiling kernels/gemm_int4/repack.cu")?;
        Ok(Repacker {
            codes: gpu.load(&m.cubin, "int4_tile_codes")?,
            groups16: gpu.load(&m.cubin, "int4_tile_groups16")?,
            groups8: gpu.load(&m.cubin, "int4_tile_groups8")?,
        })
    }

    /// Writes the tiled copy of the plain N×K weight `src` (groups of `group`) into `dst`;
    /// the zero points too when `src` has them (`dst` must then have room for them).
    pub fn repack(&self, gpu: &Gpu, src: PlainInt4, dst: &TiledInt4, n: i64, k: i64, group: i64) -> Result<()> {
        if n < 1 || k % 128 != 0 || group < 1 || k % group != 0 {
            bail!("the tiled int4 layout needs K % 128 == 0 and K % group == 0; got {n}x{k}, group {group}");
        }
        let (c, s, z) = tiled_bytes(n, k, group);
        if dst.codes.bytes < c || dst.scales.bytes < s || dst.zeros.as_ref().is_some_and(|b| b.bytes < z) {
            bail!("internal: tiled buffers too small for a {n}x{k} g{group} weight");
        }
        if src.zeros != 0 && dst.zeros.is_none() {
            bail!("internal: a weight with zero points repacked into tiled buffers without room for them");
        }
        let (nn, kk, gg) = (Arg::I32(n as i32), Arg::I32(k as i32), Arg::I32((k / group) as i32));
        let groups = ceil_div(n, 16) * 16 * (k / group);
        // SAFETY: `src` holds the plain layout of an N×K weight (the caller's buffers), `dst`
        // was checked above to hold its tiled layout; the arguments follow repack.cu's header.
        unsafe {
            gpu.launch(
                &self.codes,
                (grid(c as i64 / 16, gpu), 1, 1),
                (256, 1, 1),
                0,
                &[Arg::Ptr(src.packed), dst.codes.arg(), nn, kk],
            )?;
            gpu.launch(
                &self.groups16,
                (grid(groups, gpu), 1, 1),
                (256, 1, 1),
                0,
                &[Arg::Ptr(src.scales), dst.scales.arg(), nn, gg],
            )?;
            if let (Some(zt), true) = (&dst.zeros, src.zeros != 0) {
                gpu.launch(
                    &self.groups8,
                    (grid(groups, gpu), 1, 1),
                    (256, 1, 1),
                    0,
                    &[Arg::Ptr(src.zeros), zt.arg(), nn, gg],
                )?;
            }
        }
        Ok(())
    }
}

/// The host model of the code layout, for tests: the plain word index each tiled word holds
/// (None: a padding row past N).
pub fn tiled_code_source(n: i64, k: i64, tiled_word: i64) -> Option<i64> {
    let steps = k / 128;
    let (j, lane, h) = (tiled_word % 4, (tiled_word / 4) % 32, (tiled_word / 128) % 2);
    let ts = tiled_word / 256;
    let (s, tile) = (ts % steps, ts / steps);
    let row = tile * 16 + lane / 4 + 8 * h;
    (row < n).then(|| row * (k / 8) + s * 16 + (lane % 4) * 4 + j)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plain_word_lands_once_and_padding_is_past_n() {
        let (n, k) = (37, 384);
        let (c, s, z) = tiled_bytes(n, k, 128);
        assert_eq!((c, s, z), (48 * 384 / 2, 48 * 3 * 2, 48 * 3));
        let mut seen = vec![0u8; (n * k / 8) as usize];
        let mut pad = 0;
        for w in 0..(c / 4) as i64 {
            match tiled_code_source(n, k, w) {
                Some(p) => seen[p as usize] += 1,
                None => pad += 1,
            }
        }
        assert!(seen.iter().all(|&c| c == 1));
        assert_eq!(pad, (48 - 37) * k / 8);
        // Lane 5 (g = 1, t = 1) of step 2, half 1, tile 1: row 16 + 1 + 8 = 25, words 32 + 4..
        assert_eq!(tiled_code_source(n, k, ((3 + 2) * 2 + 1) * 128 + 5 * 4), Some(25 * 48 + 36));
        assert!(reads_tiled("int4_gemv_bulk") && !reads_tiled("int4_gemv_tc"));
    }
}
