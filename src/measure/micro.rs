//! The micro-benchmarks of kernels/roofline/ceilings.cu: DRAM copy and read, L2 read,
//! fp32 FMA and mma.sync peak. Launch contracts are in the template's header.

use super::{best, Figure, CEILINGS_FILE, CEILINGS_SOURCE};
use crate::core::Timing;
use crate::gpu::cache::ModuleCache;
use crate::gpu::device::{Arg, DevBuf, Gpu, Kernel};
use crate::gpu::nvrtc::CompileRequest;
use crate::gpu::timer::Timer;
use anyhow::{bail, Context, Result};
use cudarc::driver::sys::CUdevice_attribute as A;
use std::collections::BTreeMap;

/// 16-byte loads in flight per thread in l2_read_v16 (the template's UNROLL).
pub const UNROLL: u64 = 8;
/// The copy_v16_u* / read_v16_u* instances: loads in flight per thread.
pub const COPY_UNROLLS: [u64; 3] = [2, 4, 8];
/// mma.sync accumulators per warp (the template's MMA_ACC).
pub const MMA_ACC: u64 = 4;
/// FMA chains per thread × FMAs per chain per iteration (NACC × FMA_UNROLL).
pub const FMAS_PER_ITER: u64 = 8 * 8;
const BLOCK: u32 = 256;
/// Largest DRAM buffer (each of source and destination).
const DRAM_BUFFER_MAX: usize = 2 << 30;
/// Passes over the L2-resident buffer per launch; the cold first pass is 1/PASSES of it.
const L2_PASSES: i32 = 256;
/// A key no result matches in practice (the kernels store only when equal to it).
const KEY_U32: u32 = 0x9E37_79B9;
const KEY_F32: f32 = -1.0;

/// Times `kern` on `grid` blocks of BLOCK threads (1-D, no dynamic shared memory).
///
/// # Safety
/// As [`Gpu::launch`]: `args` follow the entry point's signature (in the template's header)
/// and the buffers they point at hold everything this grid touches.
unsafe fn time_launch(gpu: &Gpu, timer: &Timer, kern: &Kernel, grid: u32, args: &[Arg]) -> Result<Timing> {
    // SAFETY: the caller upholds this function's contract, which is the launch's.
    timer.time(gpu, || unsafe { gpu.launch(kern, (grid, 1, 1), (BLOCK, 1, 1), 0, args) })
}

/// The compile request of the template for one architecture (also used by the NVRTC tests).
pub fn request(arch: &str) -> CompileRequest {
    let mut defines = BTreeMap::new();
    defines.insert("UNROLL".to_string(), UNROLL.to_string());
    defines.insert("MMA_ACC".to_string(), MMA_ACC.to_string());
    defines.insert("NACC".to_string(), "8".to_string());
    defines.insert("FMA_UNROLL".to_string(), "8".to_string());
    CompileRequest { name: CEILINGS_FILE.into(), source: CEILINGS_SOURCE.into(), defines, arch: arch.to_string() }
}

pub struct MicroKernels {
    /// (loads in flight per thread, kernel)
    copy: Vec<(u64, Kernel)>,
    read: Vec<(u64, Kernel)>,
    l2: Kernel,
    fma: Kernel,
    mma_bf16: Kernel,
    mma_f16: Kernel,
    /// out[0] of every kernel (written only if a result equals the key).
    out: DevBuf,
    /// fma_f32's clock probe: clock64 ticks and globaltimer ns.
    clocks: DevBuf,
}

impl MicroKernels {
    pub fn load(gpu: &Gpu, cache: &ModuleCache) -> Result<MicroKernels> {
        if gpu.props.cc_major < 8 {
            bail!(
                "measuring ceilings needs compute capability 8.0 or newer (bf16 mma.sync); this GPU is {}",
                gpu.props.cc()
            );
        }
        let m = cache.get_or_compile(&request(&gpu.props.arch())).context("compiling the ceiling micro-benchmarks")?;
        let load = |e: &str| gpu.load(&m.cubin, e);
        Ok(MicroKernels {
            copy: COPY_UNROLLS.iter().map(|u| Ok((*u, load(&format!("copy_v16_u{u}"))?))).collect::<Result<_>>()?,
            read: COPY_UNROLLS.iter().map(|u| Ok((*u, load(&format!("read_v16_u{u}"))?))).collect::<Result<_>>()?,
            l2: load("l2_read_v16")?,
            fma: load("fma_f32")?,
            mma_bf16: load("mma_peak_bf16")?,
            mma_f16: load("mma_peak_f16")?,
            out: gpu.alloc(16)?,
            clocks: gpu.alloc(16)?,
        })
    }
}

/// Blocks of `BLOCK` threads that fill every SM once at full occupancy.
fn full_wave_blocks(gpu: &Gpu) -> u32 {
    let per_sm =
        gpu.ctx.attribute(A::CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR).unwrap_or(2048).max(BLOCK as i32);
    (gpu.props.sm_count.max(1) as u32) * (per_sm as u32 / BLOCK)
}

/// Grids to try for a bandwidth kernel over `n16` vectors with `unroll` loads per thread
/// and trip: one full wave (persistent threads), two waves, and one trip per thread (as
/// many blocks as the data needs).
fn bandwidth_grids(gpu: &Gpu, n16: u64, unroll: u64) -> Vec<u32> {
    let wave = full_wave_blocks(gpu);
    let one_trip = (n16 / (BLOCK as u64 * unroll)).clamp(1, i32::MAX as u64) as u32;
    let mut g = vec![wave, 2 * wave, one_trip];
    g.sort_unstable();
    g.dedup();
    g
}

fn memset(gpu: &Gpu, buf: &DevBuf, byte: u8) -> Result<()> {
    // SAFETY: the buffer holds `bytes` bytes; the memset is ordered on the stream.
    unsafe { cudarc::driver::result::memset_d8_async(buf.ptr, byte, buf.bytes, gpu.stream.cu_stream()) }
        .map_err(|e| anyhow::anyhow!("memset of a {} B buffer failed: {e:?}", buf.bytes))
}

/// DRAM copy, DRAM read and L2 read, in that order.
pub fn memory(gpu: &Gpu, timer: &Timer, k: &MicroKernels) -> Result<Vec<Figure>> {
    let l2 = gpu.props.l2_bytes.max(1 << 20) as usize;
    let (free, _) = gpu.ctx.mem_get_info().context("querying free GPU memory")?;
    // Two buffers, leaving 1 GiB for everything else; at least 8× L2 so nothing is cached.
    let bytes = DRAM_BUFFER_MAX.min(free.saturating_sub(1 << 30) / 2) & !0xFFFF;
    if bytes < 8 * l2 {
        bail!(
            "only {:.0} MiB of GPU memory free: the DRAM benchmarks need two buffers of at least 8× L2 ({:.0} MiB); \
             free some memory (other processes on this GPU?) and re-run",
            free as f64 / (1 << 20) as f64,
            8.0 * l2 as f64 / (1 << 20) as f64
        );
    }
    let src = gpu.alloc(bytes)?;
    let dst = gpu.alloc(bytes)?;
    memset(gpu, &src, 0x5A)?;
    memset(gpu, &dst, 0)?;
    let n16 = (bytes / 16) as u64;
    let gib = bytes as f64 / (1u64 << 30) as f64;
    let mut out = Vec::new();

    let mut copies = Vec::new();
    for (u, kern) in &k.copy {
        for grid in bandwidth_grids(gpu, n16, *u) {
            // SAFETY: src and dst hold n16 16-byte vectors each and do not overlap; the
            // kernel is grid-stride, so any grid is in bounds.
            let t = unsafe { time_launch(gpu, timer, kern, grid, &[src.arg(), dst.arg(), Arg::U64(n16)]) }?;
            let what = format!("{}, 2 × {gib:.2} GiB, grid {grid}×{BLOCK}, read + write counted", kern.name);
            copies.push(Figure::new(super::keys::COPY, 2.0 * bytes as f64, 1e9, t, what));
        }
    }
    out.push(best(copies).context("no copy measurement")?);

    let mut reads = Vec::new();
    for (u, kern) in &k.read {
        for grid in bandwidth_grids(gpu, n16, *u) {
            // SAFETY: src holds n16 vectors; out holds 16 bytes and only out[0] is written.
            let args = [src.arg(), Arg::U64(n16), Arg::U32(KEY_U32), k.out.arg()];
            let t = unsafe { time_launch(gpu, timer, kern, grid, &args) }?;
            let what = format!("{}, {gib:.2} GiB, grid {grid}×{BLOCK}", kern.name);
            reads.push(Figure::new(super::keys::READ, bytes as f64, 1e9, t, what));
        }
    }
    out.push(best(reads).context("no read measurement")?);
    drop(dst);

    // L2: a third of it, reused from the start of the DRAM buffer.
    let l2_bytes = (l2 / 3) & !0xFFF;
    let l2_n16 = (l2_bytes / 16) as u64;
    let mut l2s = Vec::new();
    for grid in bandwidth_grids(gpu, l2_n16, UNROLL) {
        // SAFETY: src holds far more than l2_n16 vectors; only out[0] may be written.
        let args = [src.arg(), Arg::U64(l2_n16), Arg::I32(L2_PASSES), Arg::U32(KEY_U32), k.out.arg()];
        let t = unsafe { time_launch(gpu, timer, &k.l2, grid, &args) }?;
        l2s.push(Figure::new(
            super::keys::L2,
            L2_PASSES as f64 * l2_bytes as f64,
            1e9,
            t,
            format!(
                "l2_read_v16, {:.1} MiB × {L2_PASSES} passes, grid {grid}×{BLOCK}",
                l2_bytes as f64 / (1 << 20) as f64
            ),
        ));
    }
    out.push(best(l2s).context("no L2 measurement")?);
    Ok(out)
}

/// fp32 FMA rate, and the SM clock (MHz) block 0 saw while it ran.
pub fn fma(gpu: &Gpu, timer: &Timer, k: &MicroKernels) -> Result<(Figure, Option<f64>)> {
    let grid = full_wave_blocks(gpu);
    let iters: i32 = 4096;
    // SAFETY: registers only; out holds 16 bytes (only out[0] may be written), clocks
    // 16 bytes (two u64 written by block 0 thread 0).
    let args = [Arg::F32(0.999), Arg::F32(0.001), Arg::I32(iters), Arg::F32(KEY_F32), k.out.arg(), k.clocks.arg()];
    let t = unsafe { time_launch(gpu, timer, &k.fma, grid, &args) }?;
    gpu.synchronize()?;
    let c: Vec<u64> = k.clocks.download(2)?;
    let mhz = (c[1] > 0).then(|| c[0] as f64 / c[1] as f64 * 1000.0);
    let flops = 2.0 * (FMAS_PER_ITER * iters as u64) as f64 * (grid as u64 * BLOCK as u64) as f64;
    Ok((
        Figure::new(super::keys::FMA, flops, 1e12, t, format!("fma_f32, grid {grid}×{BLOCK}, {iters} iterations")),
        mhz,
    ))
}

/// mma.sync bf16 and fp16 rates with operands in registers.
pub fn mma_peak(gpu: &Gpu, timer: &Timer, k: &MicroKernels) -> Result<Vec<Figure>> {
    let grid = full_wave_blocks(gpu);
    let iters: i32 = 16384;
    let warps = grid as u64 * (BLOCK as u64 / 32);
    let flops = (2 * 16 * 8 * 16) as f64 * (MMA_ACC * iters as u64) as f64 * warps as f64;
    let mut out = Vec::new();
    for (kern, key) in [(&k.mma_bf16, super::keys::MMA_PEAK_BF16), (&k.mma_f16, super::keys::MMA_PEAK_F16)] {
        // SAFETY: registers only; out holds 16 bytes and only out[0] may be written.
        let t = unsafe { time_launch(gpu, timer, kern, grid, &[Arg::I32(iters), Arg::F32(KEY_F32), k.out.arg()]) }?;
        out.push(Figure::new(
            key,
            flops,
            1e12,
            t,
            format!("{}, grid {grid}×{BLOCK}, {iters} iterations × {MMA_ACC} mma", kern.name),
        ));
    }
    Ok(out)
}
