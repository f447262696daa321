//! Launch geometry of the two kernels from their tunables, mirroring the launch contracts in
//! the headers of kernels/gemm_int4/*.cu. Pure functions, so the contracts are tested on CPU,
//! and every requirement a template states becomes a clear error here instead of a wrong
//! answer or a fault on the GPU.

use super::format::Int4Format;
use crate::kernels::Params;
use crate::kernels::{ceil_div, checked_ceil_div, grid_dim, param};
pub use crate::kernels::{GemvPlan, Geometry};
use anyhow::{bail, Result};

/// Device addresses of one int4 linear's operands. `r` = 0: no residual; `r` may equal `y`
/// (the residual stream updated in place: each output is read once, then written).
#[derive(Debug, Clone, Copy)]
pub struct Int4Io {
    pub x: u64,
    pub wq: u64,
    pub scales: u64,
    /// Zero points or minimums per the format's ZERO_MODE; 0 for symmetric weights.
    pub zeros: u64,
    pub r: u64,
    pub y: u64,
    /// fp32 split-K workspace of at least `linear::workspace_bytes`.
    pub ws: u64,
}

/// Largest split-K int4_gemv may use (sizes the fp32 workspace).
pub const MAX_SPLITK: i64 = 16;

/// Largest M int4_gemv takes (its accumulators are sized by M_MAX at compile time).
pub const GEMV_MAX_M: i64 = 16;

/// The kernels walk K in steps of `step` columns (`what` says what the template calls one)
/// and have no tail: K must be a whole number of them.
fn check_k_steps(kernel: &str, k: i64, step: i64, what: &str, shape: &str) -> Result<()> {
    if k % step != 0 {
        bail!("{kernel}: K = {k} is not a multiple of its {step}-column {what} (shape {shape})");
    }
    Ok(())
}

/// A kernel that dequantizes `multiple` codes at a time takes groups of a multiple of that
/// many columns, and no group may straddle the end of a row.
fn check_group(kernel: &str, fmt: &Int4Format, multiple: i64, k: i64, shape: &str) -> Result<()> {
    if fmt.group % multiple != 0 || k % fmt.group != 0 {
        bail!("{kernel}: GROUP = {} must be a multiple of {multiple} dividing K = {k} (shape {shape})", fmt.group);
    }
    Ok(())
}

/// SPLITK must lie in 1..=`max`: the problem's and the model's workspaces are sized for `max`
/// splits.
fn check_splitk(kernel: &str, splitk: i64, max: i64) -> Result<()> {
    if !(1..=max).contains(&splitk) {
        bail!("{kernel}: SPLITK = {splitk} is outside 1..={max} (the workspace's size)");
    }
    Ok(())
}

pub fn gemv_plan(m: i64, n: i64, k: i64, fmt: &Int4Format, p: &Params) -> Result<GemvPlan> {
    let (warps, rows, vec, splitk, m_max) =
        (param(p, "NUM_WARPS")?, param(p, "ROWS_PER_WARP")?, param(p, "VEC")?, param(p, "SPLITK")?, param(p, "M_MAX")?);
    let shape = format!("{m}x{n}x{k}");
    if m > m_max {
        bail!("int4_gemv compiled with M_MAX = {m_max} cannot take M = {m} (shape {shape}); the sweep must keep M_MAX >= M");
    }
    if ![1, 2, 4].contains(&vec) {
        bail!("int4_gemv: VEC = {vec}, expected 1, 2 or 4");
    }
    if fmt.group % (8 * vec) != 0 {
        bail!("int4_gemv: GROUP = {} is not a multiple of 8*VEC = {}", fmt.group, 8 * vec);
    }
    if k % fmt.group != 0 {
        bail!("int4_gemv: K = {k} is not a multiple of GROUP = {} (shape {shape})", fmt.group);
    }
    check_splitk("int4_gemv", splitk, MAX_SPLITK)?;
    if !(1..=32).contains(&warps) || rows < 1 {
        bail!("int4_gemv: NUM_WARPS = {warps}, ROWS_PER_WARP = {rows} make no block");
    }
    let main = Geometry {
        grid: (grid_dim(checked_ceil_div(n, warps * rows)?, "int4_gemv grid.x")?, splitk as u32, 1),
        block: ((32 * warps) as u32, 1, 1),
        smem: 0,
    };
    Ok(GemvPlan::split_k(main, splitk, m, n))
}

/// int4_gemv_tc: grid (ceil(N / (16·N_TILES)), SPLITK) (with DIAG, M = 1 only, a block has
/// 2·N_TILES rows), NUM_WARPS warps, plus the split-K reduction (`gemm_splitk_reduce`) when
/// SPLITK > 1.
pub fn gemv_tc_plan(m: i64, n: i64, k: i64, fmt: &Int4Format, p: &Params) -> Result<GemvPlan> {
    let (m_tiles, n_tiles, warps, unroll, splitk) =
        (param(p, "M_TILES")?, param(p, "N_TILES")?, param(p, "NUM_WARPS")?, param(p, "UNROLL")?, param(p, "SPLITK")?);
    let shape = format!("{m}x{n}x{k}");
    if ![1, 2].contains(&m_tiles) || ![1, 2, 4].contains(&n_tiles) || ![1, 2, 4].contains(&unroll) {
        bail!("int4_gemv_tc: M_TILES = {m_tiles} (1 or 2), N_TILES = {n_tiles} (1, 2 or 4), UNROLL = {unroll} (1, 2 or 4)");
    }
    let diag = p.get("DIAG").copied().unwrap_or(0);
    if diag != 0 && (m != 1 || m_tiles != 1) {
        bail!("int4_gemv_tc: DIAG = {diag} is for M = 1 with M_TILES = 1, got M = {m}, M_TILES = {m_tiles} (shape {shape})");
    }
    // The SwiGLU epilogue pairs rows g and g + 8 of every 16-row tile and writes N/2 outputs.
    let swiglu = p.get("SWIGLU").copied().unwrap_or(0);
    if swiglu != 0 && (splitk != 1 || diag != 0 || n % 16 != 0) {
        bail!(
            "int4_gemv_tc: SWIGLU = {swiglu} needs SPLITK = 1, DIAG = 0 and N % 16 == 0, got SPLITK = {splitk}, DIAG = \
             {diag}, N = {n} (shape {shape})"
        );
    }
    if m > 8 * m_tiles {
        bail!(
            "int4_gemv_tc compiled with M_TILES = {m_tiles} takes M <= {} but got M = {m} (shape {shape}); the sweep must \
             keep 8*M_TILES >= M",
            8 * m_tiles
        );
    }
    check_k_steps("int4_gemv_tc", k, 128, "step", &shape)?;
    check_group("int4_gemv_tc", fmt, 32, k, &shape)?;
    check_splitk("int4_gemv_tc", splitk, MAX_SPLITK)?;
    if !(1..=32).contains(&warps) {
        bail!("int4_gemv_tc: NUM_WARPS = {warps} makes no block");
    }
    let main = Geometry {
        // A tile is 16 weight rows, or 2 with DIAG (each read as one 512-byte run per step).
        grid: (
            grid_dim(checked_ceil_div(n, if diag != 0 { 2 } else { 16 } * n_tiles)?, "int4_gemv_tc grid.x")?,
            splitk as u32,
            1,
        ),
        block: ((32 * warps) as u32, 1, 1),
        smem: 0,
    };
    Ok(GemvPlan::split_k(main, splitk, m, n))
}

/// Dynamic shared memory of int4_gemv_bulk (its header's SLOT_BYTES): each warp's STAGES
/// ring slots of CHUNK KiB of codes with the scales (and u8 zeros) of the groups they touch,
/// rounded to 128 bytes, then one mbarrier per slot and the double-buffered warp sums.
pub fn bulk_smem_bytes(warps: i64, stages: i64, chunk: i64, m_tiles: i64, group: i64, int_zeros: bool) -> i64 {
    let slot_groups = chunk * 128 / group + 1;
    let slot = ceil_div(chunk * 1024 + slot_groups * 32 + if int_zeros { slot_groups * 16 } else { 0 }, 128) * 128;
    warps * stages * slot + 8 * warps * stages + 2 * warps * m_tiles * 4 * 32 * 4
}

/// int4_gemv_bulk: grid ceil(ceil(N/16) / TILES), NUM_WARPS warps, no split-K (its weights
/// must be in the tiled layout, `tiled`).
pub fn bulk_plan(m: i64, n: i64, k: i64, fmt: &Int4Format, p: &Params) -> Result<GemvPlan> {
    let (m_tiles, warps, tiles) = (param(p, "M_TILES")?, param(p, "NUM_WARPS")?, param(p, "TILES")?);
    let (chunk, stages) = (param(p, "CHUNK")?, param(p, "STAGES")?);
    let shape = format!("{m}x{n}x{k}");
    if ![1, 2].contains(&m_tiles) || !(1..=32).contains(&warps) || tiles < 1 || !(1..=16).contains(&chunk) {
        bail!("int4_gemv_bulk: M_TILES = {m_tiles} (1 or 2), NUM_WARPS = {warps} (1..=32), TILES = {tiles}, CHUNK = {chunk} (1..=16)");
    }
    if stages < 2 {
        bail!("int4_gemv_bulk: STAGES = {stages}, at least 2");
    }
    if m > 8 * m_tiles {
        bail!(
            "int4_gemv_bulk compiled with M_TILES = {m_tiles} takes M <= {} but got M = {m} (shape {shape})",
            8 * m_tiles
        );
    }
    check_k_steps("int4_gemv_bulk", k, 128, "step", &shape)?;
    if fmt.group % 128 != 0 || k % fmt.group != 0 {
        bail!(
            "int4_gemv_bulk: GROUP = {} must be a multiple of 128 dividing K = {k} (shape {shape}); int4_gemv_tc takes \
             groups of 32 and 64",
            fmt.group
        );
    }
    if fmt.zeros == super::format::ZeroMode::Min {
        bail!("int4_gemv_bulk takes symmetric weights or u8 zero points, not float minimums (int4_gemv_tc does)");
    }
    let smem = bulk_smem_bytes(warps, stages, chunk, m_tiles, fmt.group, fmt.zeros == super::format::ZeroMode::Int);
    let main = Geometry {
        grid: (grid_dim(checked_ceil_div(checked_ceil_div(n, 16)?, tiles)?, "int4_gemv_bulk grid.x")?, 1, 1),
        block: ((32 * warps) as u32, 1, 1),
        smem: smem as u32,
    };
    Ok(GemvPlan { main, splitk: 1, reduce: None })
}

/// Dynamic shared memory of int4_mma: STAGES * (BM*(BK+8)*2 + BN*(BK/8+4)*4) bytes.
pub fn mma_smem_bytes(bm: i64, bn: i64, bk: i64, stages: i64) -> i64 {
    stages * (bm * (bk + 8) * 2 + bn * (bk / 8 + 4) * 4)
}

pub fn mma_geometry(m: i64, n: i64, k: i64, fmt: &Int4Format, p: &Params) -> Result<Geometry> {
    let (bm, bn, bk) = (param(p, "BM")?, param(p, "BN")?, param(p, "BK")?);
    let (wm, wn, stages) = (param(p, "WM")?, param(p, "WN")?, param(p, "STAGES")?);
    let shape = format!("{m}x{n}x{k}");
    if bm % wm != 0 || bn % wn != 0 || wm % 16 != 0 || wn % 8 != 0 || bk % 32 != 0 || stages < 2 {
        bail!("int4_mma: tiles BM={bm} BN={bn} BK={bk} WM={wm} WN={wn} STAGES={stages} break the template's rules");
    }
    if k % bk != 0 {
        bail!("int4_mma: K = {k} is not a multiple of BK = {bk} (shape {shape})");
    }
    if k % fmt.group != 0 {
        bail!("int4_mma: K = {k} is not a multiple of GROUP = {} (shape {shape})", fmt.group);
    }
    if fmt.group % bk != 0 && bk % fmt.group != 0 {
        bail!("int4_mma: GROUP = {} and BK = {bk} must divide one another", fmt.group);
    }
    let warps = (bm / wm) * (bn / wn);
    if warps * 32 > 1024 {
        bail!("int4_mma: {warps} warps exceed 1024 threads");
    }
    Ok(Geometry {
        grid: (
            grid_dim(checked_ceil_div(n, bn)?, "int4_mma grid.x")?,
            grid_dim(checked_ceil_div(m, bm)?, "int4_mma grid.y")?,
            1,
        ),
        block: ((warps * 32) as u32, 1, 1),
        smem: mma_smem_bytes(bm, bn, bk, stages) as u32,
    })
}

/// Dynamic shared memory of int4_mma_wgmma: three dequantized W tiles (BN·64 16-bit values),
/// STAGES ring slots of the X tile (BM·64) and the packed W tile (BN·32 bytes), and 1 KiB of
/// slack to align the swizzled buffers to 1024 bytes.
pub fn wgmma_smem_bytes(bm: i64, bn: i64, stages: i64) -> i64 {
    3 * bn * 128 + stages * (bm * 128 + bn * 32) + 1024
}

/// Largest SPLITK int4_mma_wgmma may use (sizes its fp32 workspace).
pub const WGMMA_MAX_SPLITK: i64 = 8;

/// int4_mma_wgmma: grid (ceil(N/BN), ceil(M/BM), SPLITK), 128·WG_M·WG_N threads, plus
/// `gemm_splitk_reduce` when SPLITK > 1 (the same plan shape as the decode kernels').
pub fn wgmma_plan(m: i64, n: i64, k: i64, fmt: &Int4Format, p: &Params) -> Result<GemvPlan> {
    let (bm, bn, wg_m, wg_n) = (param(p, "BM")?, param(p, "BN")?, param(p, "WG_M")?, param(p, "WG_N")?);
    let (stages, splitk) = (param(p, "STAGES")?, param(p, "SPLITK")?);
    let shape = format!("{m}x{n}x{k}");
    let wn = if wg_n > 0 { bn / wg_n } else { 0 };
    let mt = if wg_m > 0 { bm / (64 * wg_m) } else { 0 };
    if !(1..=2).contains(&mt)
        || bm != 64 * mt * wg_m
        || wg_n < 1
        || bn % wg_n != 0
        || wn % 32 != 0
        || !(32..=256).contains(&wn)
    {
        bail!("int4_mma_wgmma: BM={bm} BN={bn} WG_M={wg_m} WG_N={wg_n} break the template's rules");
    }
    if mt * wn > 256 || stages < 4 || 128 * wg_m * wg_n > 1024 {
        bail!("int4_mma_wgmma: MT*WN = {} (<= 256), STAGES = {stages} (>= 4), {} threads", mt * wn, 128 * wg_m * wg_n);
    }
    check_k_steps("int4_mma_wgmma", k, 64, "k-tile", &shape)?;
    check_group("int4_mma_wgmma", fmt, 32, k, &shape)?;
    check_splitk("int4_mma_wgmma", splitk, WGMMA_MAX_SPLITK)?;
    let main = Geometry {
        grid: (
            grid_dim(checked_ceil_div(n, bn)?, "int4_mma_wgmma grid.x")?,
            grid_dim(checked_ceil_div(m, bm)?, "int4_mma_wgmma grid.y")?,
            splitk as u32,
        ),
        block: ((128 * wg_m * wg_n) as u32, 1, 1),
        smem: wgmma_smem_bytes(bm, bn, stages) as u32,
    };
    Ok(GemvPlan::split_k(main, splitk, m, n))
}

/// Largest SPLITK int4_wgmma_rs may use (the same fp32 workspace as int4_mma_wgmma).
pub const WGMMA_RS_MAX_SPLITK: i64 = 8;

/// The tunables of int4_wgmma_rs that fix its launch (kernels/gemm_int4/int4_wgmma_rs.cu).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WgmmaRsConfig {
    /// Tokens (rows of X) per block: wgmma's n.
    pub bt: i64,
    /// Weight rows per block: 64 · MT · CWG (one TMA box of the packed weight).
    pub rows: i64,
    /// k-tiles of 64 per ring stage (the weight box is 8·KGROUP words wide).
    pub kgroup: i64,
    pub stages: i64,
    pub splitk: i64,
    pub threads: u32,
}

/// Dynamic shared memory of int4_wgmma_rs: STAGES ring slots of KGROUP k-tiles, each k-tile
/// with its X tile (BT rows of 128 bytes), packed W (ROWS rows of 32 bytes) and scales and zeros
/// (4 bytes per row and group, max(1, 64/GROUP) groups), and 1 KiB to align the swizzled slots.
pub fn wgmma_rs_smem_bytes(bt: i64, rows: i64, stages: i64, kgroup: i64, group: i64) -> i64 {
    let groups_per_ktile = (64 / group).max(1);
    stages * kgroup * (bt * 128 + rows * 32 + rows * groups_per_ktile * 4) + 1024
}

/// int4_wgmma_rs: grid (ceil(M/BT), ceil(N/ROWS), SPLITK) (token tiles fastest: the blocks
/// sharing a W tile run together), 128·(CWG + 1) threads (the last warpgroup loads), plus
/// `gemm_splitk_reduce` when SPLITK > 1.
pub fn wgmma_rs_plan(m: i64, n: i64, k: i64, fmt: &Int4Format, p: &Params) -> Result<(WgmmaRsConfig, GemvPlan)> {
    let (bt, mt, cwg) = (param(p, "BT")?, param(p, "MT")?, param(p, "CWG")?);
    let (stages, splitk, kgroup) = (param(p, "STAGES")?, param(p, "SPLITK")?, param(p, "KGROUP")?);
    let shape = format!("{m}x{n}x{k}");
    if ![1, 2, 4].contains(&kgroup) {
        bail!("int4_wgmma_rs: KGROUP = {kgroup}, expected 1, 2 or 4");
    }
    if ![8, 16, 32, 64, 128, 192, 256].contains(&bt) || ![1, 2, 4].contains(&mt) || ![1, 2].contains(&cwg) {
        bail!("int4_wgmma_rs: BT = {bt} (8, 16, 32, 64, 128, 192 or 256), MT = {mt} (1, 2, 4), CWG = {cwg} (1, 2)");
    }
    let rows = 64 * mt * cwg;
    if rows > 256 || mt * bt > 256 || !(2..=16).contains(&stages) {
        bail!("int4_wgmma_rs: ROWS = {rows} (<= 256), MT*BT = {} (<= 256), STAGES = {stages} (2..=16)", mt * bt);
    }
    check_k_steps("int4_wgmma_rs", k, 64, "k-tile", &shape)?;
    check_group("int4_wgmma_rs", fmt, 32, k, &shape)?;
    check_splitk("int4_wgmma_rs", splitk, WGMMA_RS_MAX_SPLITK)?;
    let threads = (128 * (cwg + 1)) as u32;
    let cfg = WgmmaRsConfig { bt, rows, kgroup, stages, splitk, threads };
    let main = Geometry {
        grid: (
            grid_dim(checked_ceil_div(m, bt)?, "int4_wgmma_rs grid.x")?,
            grid_dim(checked_ceil_div(n, rows)?, "int4_wgmma_rs grid.y")?,
            splitk as u32,
        ),
        block: (threads, 1, 1),
        smem: wgmma_rs_smem_bytes(bt, rows, stages, kgroup, fmt.group) as u32,
    };
    Ok((cfg, GemvPlan::split_k(main, splitk, m, n)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::DType;

    fn p(kv: &[(&str, i64)]) -> Params {
        kv.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn gemv_geometry_and_contract() {
        let f = Int4Format::default_for(DType::BF16);
        let q = p(&[("NUM_WARPS", 4), ("ROWS_PER_WARP", 2), ("VEC", 4), ("SPLITK", 4), ("M_MAX", 1)]);
        let g = gemv_plan(1, 4097, 4096, &f, &q).unwrap();
        assert_eq!(g.main.grid, (513, 4, 1));
        assert_eq!(g.main.block, (128, 1, 1));
        assert_eq!(g.reduce.unwrap().grid, (17, 1, 1));
        let one = p(&[("NUM_WARPS", 4), ("ROWS_PER_WARP", 2), ("VEC", 4), ("SPLITK", 1), ("M_MAX", 1)]);
        assert!(gemv_plan(1, 8, 128, &f, &one).unwrap().reduce.is_none());
        let e = gemv_plan(2, 8, 128, &f, &q).unwrap_err().to_string();
        assert!(e.contains("M_MAX = 1") && e.contains("2x8x128"), "{e}");
        assert!(gemv_plan(1, 8, 160, &f, &q).is_err());
        assert!(gemv_plan(1, 8, 128, &f, &p(&[("NUM_WARPS", 4)])).is_err());
    }

    #[test]
    fn gemv_tc_geometry_and_contract() {
        let f = Int4Format::default_for(DType::BF16);
        let q = p(&[("M_TILES", 1), ("N_TILES", 2), ("NUM_WARPS", 4), ("UNROLL", 2), ("SPLITK", 3)]);
        let g = gemv_tc_plan(8, 4097, 4096, &f, &q).unwrap();
        assert_eq!(g.main.grid, (129, 3, 1));
        assert_eq!(g.main.block, (128, 1, 1));
        assert_eq!(g.reduce.unwrap().grid, (ceil_div(8 * 4097, 256) as u32, 1, 1));
        let e = gemv_tc_plan(9, 64, 4096, &f, &q).unwrap_err().to_string();
        assert!(e.contains("M_TILES = 1") && e.contains("9x64x4096"), "{e}");
        assert!(gemv_tc_plan(1, 64, 4160, &f, &q).is_err(), "K not a multiple of 128");
        let one = p(&[("M_TILES", 2), ("N_TILES", 1), ("NUM_WARPS", 8), ("UNROLL", 1), ("SPLITK", 1)]);
        assert!(gemv_tc_plan(16, 8, 128, &f, &one).unwrap().reduce.is_none());
        assert!(gemv_tc_plan(16, 8, 128, &f, &p(&[("M_TILES", 2)])).is_err());
        // DIAG: two-row tiles, one X row.
        let diag = p(&[("M_TILES", 1), ("N_TILES", 4), ("NUM_WARPS", 4), ("UNROLL", 1), ("SPLITK", 1), ("DIAG", 1)]);
        assert_eq!(gemv_tc_plan(1, 4097, 4096, &f, &diag).unwrap().main.grid, (513, 1, 1));
        let e = gemv_tc_plan(2, 4097, 4096, &f, &diag).unwrap_err().to_string();
        assert!(e.contains("DIAG") && e.contains("M = 2"), "{e}");
        // SWIGLU: the grid covers the interleaved rows; split K, DIAG or ragged tiles refused.
        let sw = p(&[("M_TILES", 1), ("N_TILES", 2), ("NUM_WARPS", 4), ("UNROLL", 1), ("SPLITK", 1), ("SWIGLU", 1)]);
        assert_eq!(gemv_tc_plan(1, 28672, 4096, &f, &sw).unwrap().main.grid, (896, 1, 1));
        for bad in [("SPLITK", 2), ("DIAG", 1)] {
            let mut b = sw.clone();
            b.insert(bad.0.into(), bad.1);
            let e = gemv_tc_plan(1, 28672, 4096, &f, &b).unwrap_err().to_string();
            assert!(e.contains("SWIGLU"), "{e}");
        }
        assert!(gemv_tc_plan(1, 28680, 4096, &f, &sw).is_err(), "N % 16 != 0");
    }

    #[test]
    fn bulk_plan_and_contract() {
        let f = Int4Format::default_for(DType::BF16);
        let q = p(&[("M_TILES", 1), ("NUM_WARPS", 4), ("TILES", 2), ("CHUNK", 2), ("STAGES", 4)]);
        let g = bulk_plan(1, 4097, 4096, &f, &q).unwrap();
        assert_eq!(g.main.grid, (129, 1, 1), "257 tiles of 16 rows, 2 a block");
        assert_eq!(g.main.block, (128, 1, 1));
        // Slots of 2 KiB codes + 3 groups of scales (96 B), rounded to 2176 B.
        assert_eq!(g.main.smem as i64, 4 * 4 * 2176 + 8 * 16 + 2 * 4 * 4 * 32 * 4);
        assert!(g.reduce.is_none());
        let e = bulk_plan(9, 64, 4096, &f, &q).unwrap_err().to_string();
        assert!(e.contains("M_TILES = 1") && e.contains("9x64x4096"), "{e}");
        let g64 = Int4Format { group: 64, ..f };
        let e = bulk_plan(1, 64, 4096, &g64, &q).unwrap_err().to_string();
        assert!(e.contains("multiple of 128") && e.contains("int4_gemv_tc"), "{e}");
        assert!(bulk_plan(1, 64, 4160, &f, &q).is_err(), "K not a multiple of 128");
        assert!(bulk_plan(1, 64, 4096, &f, &p(&[("M_TILES", 1)])).is_err());
    }

    #[test]
    fn mma_geometry_and_contract() {
        let f = Int4Format::default_for(DType::BF16);
        let q = p(&[("BM", 64), ("BN", 128), ("BK", 64), ("WM", 32), ("WN", 64), ("STAGES", 4)]);
        let g = mma_geometry(130, 1000, 4096, &f, &q).unwrap();
        assert_eq!(g.grid, (8, 3, 1));
        assert_eq!(g.block, (128, 1, 1));
        assert_eq!(g.smem as i64, 4 * (64 * 72 * 2 + 128 * 12 * 4));
        // The template header's default: 64/64/64, 4 stages = 49152 bytes.
        assert_eq!(mma_smem_bytes(64, 64, 64, 4), 49152);
        assert!(mma_geometry(16, 64, 4128, &f, &q).is_err());
        let g32 = Int4Format { group: 32, ..f };
        assert!(mma_geometry(16, 64, 4096, &g32, &q).is_ok());
    }

    #[test]
    fn wgmma_plan_and_contract() {
        let f = Int4Format::default_for(DType::BF16);
        let q = p(&[("BM", 128), ("BN", 224), ("WG_M", 2), ("WG_N", 1), ("STAGES", 6), ("SPLITK", 2)]);
        let g = wgmma_plan(130, 1000, 4096, &f, &q).unwrap();
        assert_eq!(g.main.grid, (5, 2, 2));
        assert_eq!(g.main.block, (256, 1, 1));
        assert_eq!(g.main.smem as i64, 3 * 224 * 128 + 6 * (128 * 128 + 224 * 32) + 1024);
        assert_eq!(g.reduce.unwrap().grid, (ceil_div(130 * 1000, 256) as u32, 1, 1));
        assert!(wgmma_plan(128, 64, 4128, &f, &q).is_err(), "K not a multiple of 64");
        let bad = p(&[("BM", 192), ("BN", 128), ("WG_M", 2), ("WG_N", 1), ("STAGES", 4), ("SPLITK", 1)]);
        assert!(wgmma_plan(128, 64, 4096, &f, &bad).is_err(), "MT = 1.5");
        let wide = p(&[("BM", 256), ("BN", 256), ("WG_M", 2), ("WG_N", 1), ("STAGES", 4), ("SPLITK", 1)]);
        assert!(wgmma_plan(2048, 4096, 4096, &f, &wide).is_err(), "MT*WN = 512 accumulators");
    }
    #[test]
    fn shared_rules_word_their_errors_per_kernel() {
        let f = Int4Format::default_for(DType::BF16);
        let q = p(&[("BM", 128), ("BN", 224), ("WG_M", 2), ("WG_N", 1), ("STAGES", 6), ("SPLITK", 2)]);
        let e = wgmma_plan(128, 64, 4128, &f, &q).unwrap_err().to_string();
        assert_eq!(e, "int4_mma_wgmma: K = 4128 is not a multiple of its 64-column k-tile (shape 128x64x4128)");
        let g16 = Int4Format { group: 16, ..f };
        let e = wgmma_plan(128, 64, 4096, &g16, &q).unwrap_err().to_string();
        assert_eq!(e, "int4_mma_wgmma: GROUP = 16 must be a multiple of 32 dividing K = 4096 (shape 128x64x4096)");
        let mut q9 = q.clone();
        q9.insert("SPLITK".into(), 9);
        let e = wgmma_plan(128, 64, 4096, &f, &q9).unwrap_err().to_string();
        assert_eq!(e, "int4_mma_wgmma: SPLITK = 9 is outside 1..=8 (the workspace's size)");
        let tc = p(&[("M_TILES", 1), ("N_TILES", 2), ("NUM_WARPS", 4), ("UNROLL", 2), ("SPLITK", 1)]);
        let e = gemv_tc_plan(1, 64, 4160, &f, &tc).unwrap_err().to_string();
        assert_eq!(e, "int4_gemv_tc: K = 4160 is not a multiple of its 128-column step (shape 1x64x4160)");
    }

    #[test]
    fn wgmma_rs_plan_and_contract() {
        let f = Int4Format::default_for(DType::BF16);
        let q = p(&[("BT", 8), ("MT", 1), ("CWG", 2), ("STAGES", 8), ("KGROUP", 1), ("SPLITK", 4)]);
        let (cfg, g) = wgmma_rs_plan(1, 4097, 4096, &f, &q).unwrap();
        assert_eq!((cfg.rows, cfg.threads), (128, 384));
        assert_eq!(g.main.grid, (1, 33, 4));
        assert_eq!(g.main.smem as i64, 8 * (8 * 128 + 128 * 32 + 128 * 4) + 1024);
        let g32 = Int4Format { group: 32, ..f };
        assert_eq!(wgmma_rs_plan(1, 4097, 4096, &g32, &q).unwrap().1.main.smem as i64, 8 * (1024 + 4096 + 1024) + 1024);
        assert_eq!(g.reduce.unwrap().grid, (ceil_div(4097, 256) as u32, 1, 1));
        let big = p(&[("BT", 256), ("MT", 1), ("CWG", 2), ("STAGES", 4), ("KGROUP", 1), ("SPLITK", 1)]);
        let (_, g) = wgmma_rs_plan(2048, 28672, 4096, &f, &big).unwrap();
        assert_eq!(g.main.grid, (8, 224, 1));
        assert!(g.reduce.is_none());
        assert!(wgmma_rs_plan(1, 64, 4160, &f, &q).is_err(), "K not a multiple of 64");
        let wide = p(&[("BT", 256), ("MT", 2), ("CWG", 1), ("STAGES", 4), ("KGROUP", 1), ("SPLITK", 1)]);
        assert!(wgmma_rs_plan(2048, 4096, 4096, &f, &wide).is_err(), "MT*BT = 512 accumulators");
        let odd = p(&[("BT", 24), ("MT", 1), ("CWG", 1), ("STAGES", 4), ("KGROUP", 1), ("SPLITK", 1)]);
        assert!(wgmma_rs_plan(24, 64, 4096, &f, &odd).is_err(), "no m64n24 instance");
        let four = p(&[("BT", 8), ("MT", 1), ("CWG", 1), ("STAGES", 4), ("KGROUP", 4), ("SPLITK", 1)]);
        assert_eq!(
            wgmma_rs_plan(1, 64, 4096, &f, &four).unwrap().1.main.smem as i64,
            4 * 4 * (1024 + 2048 + 256) + 1024
        );
        let five = p(&[("BT", 8), ("MT", 1), ("CWG", 1), ("STAGES", 4), ("KGROUP", 3), ("SPLITK", 1)]);
        assert!(wgmma_rs_plan(1, 64, 4096, &f, &five).is_err(), "KGROUP 3");
    }
}
