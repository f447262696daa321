//! Helpers shared by the kernel families: reference kernels through the module cache, the
//! free-memory check, host copies widened to f64 and the error measures of CPU checks.

use crate::gpu::cache::{self, ModuleCache};
use crate::gpu::device::{DevBuf, Gpu, Kernel};
use crate::gpu::nvrtc::CompileRequest;
use crate::gpu::util::Comparison;
use crate::kernels::{ceil_div, DType, Geometry, Shape};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;

/// Compiles a family's reference template for this GPU and dtype (through the disk
/// cache, so only the first problem of a run pays NVRTC) and loads its entry points.
pub fn reference_kernels(
    gpu: &Gpu,
    name: &str,
    source: &str,
    dt: DType,
    entries: &[&str],
) -> Result<BTreeMap<String, Kernel>> {
    let cache = ModuleCache::open(&cache::default_dir())?;
    let source = expand_embedded_headers(name, source)?;
    let req = CompileRequest { name: name.into(), source, defines: dt.defines(), arch: gpu.props.arch() };
    let m = cache.get_or_compile(&req).with_context(|| format!("compiling the reference {name}"))?;
    let mut out = BTreeMap::new();
    for e in entries {
        out.insert(e.to_string(), gpu.load(&m.cubin, e)?);
    }
    Ok(out)
}

/// The one reference kernel of a memory-bound family: `<family>_reference` of
/// kernels/<family>/reference.cu, built into the binary as `source`.
pub fn family_reference_kernel(gpu: &Gpu, family: &str, source: &str, dt: DType) -> Result<Kernel> {
    let entry = format!("{family}_reference");
    let mut k = reference_kernels(gpu, &format!("kernels/{family}/reference.cu"), source, dt, &[entry.as_str()])?;
    k.remove(&entry).with_context(|| format!("the {family} reference module lacks {entry}"))
}

/// The entry points of a family whose one variant is named after the one entry point of its
/// module (rmsnorm_rows, swiglu, rope_llama3); any other variant is an error naming it.
pub fn single_variant_entries(
    family: &str,
    variant: &str,
    entries: &'static [&'static str],
) -> Result<&'static [&'static str]> {
    match entries {
        [only] if *only == variant => Ok(entries),
        _ => bail!("the {family} family has no variant {variant:?} (known: {})", entries.join(", ")),
    }
}

/// Shared headers the reference templates built into the binary may include, by the path
/// they include them with.
const EMBEDDED_HEADERS: &[(&str, &str)] =
    &[("../common/element_type.cuh", include_str!("../../kernels/common/element_type.cuh"))];

/// A source built into the binary (`include_str!`) with its `#include "..."` lines replaced
/// by the embedded headers, as `nvrtc::load_source` does for files on disk; a header that
/// is not embedded is an error naming it.
pub fn expand_embedded_headers(name: &str, source: &str) -> Result<String> {
    let mut out = String::with_capacity(source.len());
    for line in source.lines() {
        match line.trim_start().strip_prefix("#include \"") {
            Some(rest) => {
                let inc = rest.split('"').next().unwrap_or("");
                let (_, text) = EMBEDDED_HEADERS
                    .iter()
                    .find(|(path, _)| *path == inc)
                    .with_context(|| format!("{name} includes \"{inc}\", which is not among the embedded headers"))?;
                out.push_str(text);
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

/// Refuses a shape whose buffers would not fit in free GPU memory, saying how much.
pub fn ensure_fits(gpu: &Gpu, family: &str, s: &Shape, need: usize) -> Result<()> {
    ensure_fits_noting(gpu, family, s, need, "")
}

/// [`ensure_fits`] with `what` after the amount (e.g. " (with the bf16 reference weight)"),
/// for a family whose need includes buffers the user would not expect.
pub fn ensure_fits_noting(gpu: &Gpu, family: &str, s: &Shape, need: usize, what: &str) -> Result<()> {
    let (free, _) = gpu.ctx.mem_get_info().unwrap_or((usize::MAX, 0));
    if need > free {
        bail!(
            "{family} {}: needs {:.1} GiB of GPU memory{what}, {:.1} GiB free",
            s.label(),
            need as f64 / (1u64 << 30) as f64,
            free as f64 / (1u64 << 30) as f64
        );
    }
    Ok(())
}

/// Copies `n` elements of type `dt` to the host, widened to f64.
pub fn download_f64(buf: &DevBuf, dt: DType, n: usize) -> Result<Vec<f64>> {
    Ok(match dt {
        DType::BF16 => buf.download::<u16>(n)?.into_iter().map(|b| half::bf16::from_bits(b).to_f64()).collect(),
        DType::F16 => buf.download::<u16>(n)?.into_iter().map(|b| half::f16::from_bits(b).to_f64()).collect(),
        DType::F32 => buf.download::<f32>(n)?.into_iter().map(|v| v as f64).collect(),
    })
}

/// Rounds an f64 to the element type and back, as a kernel storing it would.
pub fn round_to(v: f64, dt: DType) -> f64 {
    match dt {
        DType::BF16 => half::bf16::from_f64(v).to_f64(),
        DType::F16 => half::f16::from_f64(v).to_f64(),
        DType::F32 => v as f32 as f64,
    }
}

/// max |got − want| / max |want| (infinite when `got` holds a non-finite value).
pub fn rel_err(got: &[f64], want: &[f64]) -> f64 {
    let (mut md, mut mr) = (0.0f64, 0.0f64);
    for (g, w) in got.iter().zip(want) {
        if !g.is_finite() {
            return f64::INFINITY;
        }
        md = md.max((g - w).abs());
        mr = mr.max(w.abs());
    }
    md / mr.max(1e-30)
}

/// Of several output comparisons, the one with the largest relative error, with every
/// non-finite count added up (so any unwritten element anywhere fails the check).
pub fn worst(cs: &[Comparison]) -> Comparison {
    let non_finite: u32 = cs.iter().map(|c| c.non_finite).sum();
    let mut w = cs[0];
    for c in &cs[1..] {
        if c.rel_err() > w.rel_err() {
            w = *c;
        }
    }
    Comparison { non_finite, ..w }
}

/// Sets every byte of a buffer to `value`, ordered on the stream (0xFF is NaN in bf16 and fp16).
pub fn fill_bytes(gpu: &Gpu, buf: &DevBuf, value: u8) -> Result<()> {
    // SAFETY: the buffer is a live device allocation of `bytes` bytes; the memset is ordered
    // on the one stream with every launch.
    unsafe { cudarc::driver::result::memset_d8_async(buf.ptr, value, buf.bytes, gpu.stream.cu_stream()) }
        .map_err(|e| anyhow::anyhow!("device memset to {value:#04x} failed: {e:?}"))
}

/// Device-to-device copy of a whole buffer, ordered on the stream.
pub fn copy(gpu: &Gpu, dst: &DevBuf, src: &DevBuf) -> Result<()> {
    if dst.bytes < src.bytes {
        bail!("internal: copy of {} B into a {} B buffer", src.bytes, dst.bytes);
    }
    // SAFETY: dst holds at least src.bytes bytes (checked above); both are live device
    // allocations and the copy is ordered on the one stream with every launch.
    unsafe { cudarc::driver::result::memcpy_dtod_async(dst.ptr, src.ptr, src.bytes, gpu.stream.cu_stream()) }
        .map_err(|e| anyhow::anyhow!("device copy failed: {e:?}"))
}

/// Copies `blocks` runs of `run` bytes from `src` (one after the other, from `src_off`) into
/// `dst` at `dst_off` + i·`dst_stride` (one 2D copy, ordered on the stream): how the model
/// interleaves 8-row blocks of two matrices. Every byte touched is checked to lie inside
/// its buffer.
pub fn copy_runs(
    gpu: &Gpu,
    dst: &DevBuf,
    dst_off: usize,
    dst_stride: usize,
    src: &DevBuf,
    src_off: usize,
    run: usize,
    blocks: usize,
) -> Result<()> {
    if blocks == 0 || run == 0 {
        return Ok(());
    }
    let dst_end = dst_off + (blocks - 1) * dst_stride + run;
    let src_end = src_off + blocks * run;
    if dst_stride < run || dst_end > dst.bytes || src_end > src.bytes {
        bail!(
            "internal: {blocks} runs of {run} B (dst stride {dst_stride}) from {src_off} into {dst_off} overflow \
             {} B / {} B buffers",
            src.bytes,
            dst.bytes
        );
    }
    use cudarc::driver::sys;
    let dev = sys::CUmemorytype::CU_MEMORYTYPE_DEVICE;
    let c = sys::CUDA_MEMCPY2D {
        srcXInBytes: 0,
        srcY: 0,
        srcMemoryType: dev,
        srcHost: std::ptr::null(),
        srcDevice: src.ptr + src_off as u64,
        srcArray: std::ptr::null_mut(),
        srcPitch: run,
        dstXInBytes: 0,
        dstY: 0,
        dstMemoryType: dev,
        dstHost: std::ptr::null_mut(),
        dstDevice: dst.ptr + dst_off as u64,
        dstArray: std::ptr::null_mut(),
        dstPitch: dst_stride,
        WidthInBytes: run,
        Height: blocks,
    };
    // SAFETY: both ranges lie inside live device allocations (checked above); the copy is
    // ordered on the one stream with every launch.
    let r = unsafe { sys::cuMemcpy2DAsync_v2(&c, gpu.stream.cu_stream()) };
    r.result().map_err(|e| anyhow::anyhow!("device 2D copy failed: {e:?}"))
}

/// fp32 bytes of the split-K partials a configuration writes at (M, N): SPLITK · M · N floats,
/// 0 without split-K (SPLITK absent or 1). Every split-K variant of gemm and gemm_int4 sizes
/// its workspace so.
pub fn splitk_workspace_bytes(p: &std::collections::BTreeMap<String, i64>, m: i64, n: i64) -> usize {
    match p.get("SPLITK").copied().unwrap_or(1) {
        s if s > 1 => (s * m * n) as usize * 4,
        _ => 0,
    }
}

/// Where a memory-bound family's grid-stride reference kernel (swiglu's, rope's) runs over
/// `n` items: 256-thread blocks, enough to cover `n` once, at least 1 and at most 65 535·16
/// (the loop strides over the rest).
pub fn grid_stride_reference(n: i64) -> Geometry {
    Geometry { grid: (ceil_div(n, 256).clamp(1, 65_535 * 16) as u32, 1, 1), block: (256, 1, 1), smem: 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_headers_expand_like_files_on_disk() {
        let root = crate::paths::project_root();
        for fam in ["rmsnorm", "rope", "softmax", "swiglu"] {
            let path = root.join(format!("kernels/{fam}/reference.cu"));
            let text = std::fs::read_to_string(&path).unwrap();
            let embedded = expand_embedded_headers(fam, &text).unwrap();
            assert_eq!(embedded, crate::gpu::nvrtc::load_source(&path).unwrap(), "{fam}");
            assert!(embedded.contains("kl_to_f") && !embedded.contains("#include \""), "{fam}");
        }
        let e = expand_embedded_headers("x.cu", "#include \"nope.cuh\"\n").unwrap_err().to_string();
        assert!(e.contains("nope.cuh"), "{e}");
    }
}
