//! GEMM laid out as a linear layer: Y[M,N] = X[M,K] · W[N,K]ᵀ (+ R), bf16/fp16 in and out,
//! fp32 accumulation. Peer and reference: cuBLAS (cublasGemmEx, fp32 compute).
//!
//! Variants (launch contracts are in each template's header):
//! - `mma_multistage`: tensor cores (mma.sync + ldmatrix + cp.async pipeline), any M.
//! - `gemv_splitk`: memory-bound decode kernel for M ≤ MMAX, split-K with a deterministic
//!   reduction kernel.
//! - `mma_skinny`: tensor cores for small M with split-K (same reduction).
//! - `wgmma_tma`: sm_90a only; wgmma + TMA, warp-specialized, persistent, with cluster
//!   multicast, a TMA-store epilogue and split-K as options (host side in gemm_tma.rs).

#[path = "gemm_tma.rs"]
pub(crate) mod gemm_tma;

use super::{ceil_div, checked_ceil_div, gemm_common, param, DType, Family, Geometry, Kernels, Params, Problem, Shape};
use crate::gpu::blas::Blas;
use crate::gpu::device::{Arg, DevBuf, Gpu};
use crate::gpu::util::{Comparison, Util};
use anyhow::{bail, Context, Result};

pub struct Gemm;

/// Largest split-K any variant may use (sizes the fp32 workspace).
pub const MAX_SPLITK: i64 = 32;

impl Family for Gemm {
    fn name(&self) -> &'static str {
        "gemm"
    }
    fn shape_dims(&self) -> &'static [&'static str] {
        gemm_common::DIMS
    }
    fn flops(&self, s: &Shape) -> f64 {
        gemm_common::linear_flops(s)
    }
    fn min_bytes(&self, s: &Shape, dt: DType) -> f64 {
        let (m, n, k) = (s.get("M") as f64, s.get("N") as f64, s.get("K") as f64);
        (m * k + n * k + m * n) * dt.bytes() as f64
    }
    fn entries(&self, variant: &str) -> Result<&'static [&'static str]> {
        Ok(match variant {
            "mma_multistage" => &["gemm_mma"],
            "gemv_splitk" => &["gemm_gemv", "gemm_splitk_reduce"],
            "mma_skinny" => &["gemm_skinny", "gemm_splitk_reduce"],
            "wgmma_tma" => &["gemm_wgmma", "gemm_splitk_reduce"],
            other => bail!(
                "the gemm family has no variant {other:?} (known: mma_multistage, gemv_splitk, mma_skinny, wgmma_tma)"
            ),
        })
    }
    fn validate(&self, s: &Shape, dt: DType) -> Result<()> {
        if s.get("K") % 8 != 0 {
            bail!(
                "gemm {}: K = {} is not a multiple of 8; the kernels load 16-byte vectors along K \
                 (pad K with zeros to a multiple of 8)",
                s.label(),
                s.get("K")
            );
        }
        if dt == DType::F32 {
            bail!("gemm takes bf16 or fp16 inputs (fp32 accumulation); fp32 inputs are not supported");
        }
        Ok(())
    }
    fn peer(&self) -> &'static str {
        "cublas"
    }
    fn selftest_shapes(&self) -> &'static [&'static str] {
        &["1x8x8", "1x4104x136", "3x17x24", "16x4096x520", "17x33x40", "64x64x64", "130x70x264", "257x1031x1032"]
    }
    fn problem(&self, gpu: &Gpu, s: &Shape, dt: DType) -> Result<Box<dyn Problem>> {
        self.validate(s, dt)?;
        Ok(Box::new(GemmProblem::new(gpu, s, dt, false)?))
    }
}

/// Inputs, reference and output of one GEMM shape.
pub struct GemmProblem {
    pub m: i64,
    pub n: i64,
    pub k: i64,
    pub dt: DType,
    pub x: DevBuf,
    pub w: DevBuf,
    pub y: DevBuf,
    pub y_ref: DevBuf,
    /// Residual input, when the fused residual epilogue is exercised.
    pub r: Option<DevBuf>,
    ws: DevBuf,
    blas: Blas,
}

impl GemmProblem {
    pub fn new(gpu: &Gpu, s: &Shape, dt: DType, with_residual: bool) -> Result<GemmProblem> {
        let (m, n, k) = (s.get("M"), s.get("N"), s.get("K"));
        let e = dt.bytes();
        let need = ((m * k + n * k + 2 * m * n) as usize) * e + (MAX_SPLITK * m * n) as usize * 4;
        super::support::ensure_fits(gpu, "gemm", s, need)?;
        Ok(GemmProblem {
            m,
            n,
            k,
            dt,
            x: gpu.alloc((m * k) as usize * e)?,
            w: gpu.alloc((n * k) as usize * e)?,
            y: gpu.alloc((m * n) as usize * e)?,
            y_ref: gpu.alloc((m * n) as usize * e)?,
            r: if with_residual { Some(gpu.alloc((m * n) as usize * e)?) } else { None },
            ws: gpu.alloc((MAX_SPLITK * m * n) as usize * 4)?,
            blas: Blas::new(gpu)?,
        })
    }
}

impl Problem for GemmProblem {
    fn randomize(&mut self, gpu: &Gpu, util: &Util, seed: u64) -> Result<()> {
        util.fill(gpu, &self.x, self.dt, (self.m * self.k) as usize, seed, 1.0)?;
        util.fill(gpu, &self.w, self.dt, (self.n * self.k) as usize, seed ^ 0x5eed_0001, 1.0)?;
        if let Some(r) = &self.r {
            util.fill(gpu, r, self.dt, (self.m * self.n) as usize, seed ^ 0x5eed_0002, 4.0)?;
            // The reference adds R in place: Y_ref starts as R (both M·N elements).
            super::support::copy(gpu, &self.y_ref, r)?;
        }
        self.blas.linear(self.dt, self.x.ptr, self.w.ptr, self.y_ref.ptr, self.m, self.n, self.k, self.r.is_some())?;
        gpu.synchronize()
    }

    fn poison(&mut self, gpu: &Gpu, util: &Util) -> Result<()> {
        util.poison(gpu, &self.y)?;
        util.poison(gpu, &self.ws)
    }

    fn run(&mut self, gpu: &Gpu, variant: &str, kernels: &Kernels, p: &Params) -> Result<()> {
        let io = LinearIo {
            x: self.x.ptr,
            w: self.w.ptr,
            y: self.y.ptr,
            r: self.r.as_ref().map(|r| r.ptr).unwrap_or(0),
            ws: self.ws.ptr,
        };
        // SAFETY: the buffers were allocated by `new` for (M, N, K), the workspace for
        // MAX_SPLITK (checked against SPLITK in `launch_linear`); `kernels` are compiled with `p`.
        unsafe { launch_linear(gpu, kernels, variant, p, io, self.m, self.n, self.k, self.dt) }
    }

    fn check(&mut self, gpu: &Gpu, util: &Util) -> Result<Comparison> {
        util.compare(gpu, &self.y, &self.y_ref, self.dt, (self.m * self.n) as usize)
    }

    fn run_peer(&mut self, _gpu: &Gpu) -> Result<Option<()>> {
        self.blas.linear(self.dt, self.x.ptr, self.w.ptr, self.y_ref.ptr, self.m, self.n, self.k, false)?;
        Ok(Some(()))
    }

    fn reference_vs_cpu(&mut self, gpu: &Gpu) -> Result<Option<f64>> {
        gpu.synchronize()?;
        let (m, n, k) = (self.m as usize, self.n as usize, self.k as usize);
        let x = super::support::download_f64(&self.x, self.dt, m * k)?;
        let w = super::support::download_f64(&self.w, self.dt, n * k)?;
        let y = super::support::download_f64(&self.y_ref, self.dt, m * n)?;
        let r = match &self.r {
            Some(r) => super::support::download_f64(r, self.dt, m * n)?,
            None => vec![0.0; m * n],
        };
        let (mut max_diff, mut max_ref) = (0.0f64, 0.0f64);
        for i in 0..m {
            for j in 0..n {
                let mut acc = r[i * n + j];
                for l in 0..k {
                    acc += x[i * k + l] * w[j * k + l];
                }
                max_diff = max_diff.max((acc - y[i * n + j]).abs());
                max_ref = max_ref.max(acc.abs());
            }
        }
        Ok(Some(max_diff / max_ref.max(1e-30)))
    }
}

/// Device pointers of one linear layer: Y = X·Wᵀ (+ R), `ws` the fp32 split-K workspace
/// (at least SPLITK·M·N floats when SPLITK > 1; may be 0 otherwise). `r` = 0 means no
/// residual; `r` may equal `y` (every kernel reads R[i] before writing Y[i] in the same thread).
#[derive(Debug, Clone, Copy)]
pub struct LinearIo {
    pub x: u64,
    pub w: u64,
    pub y: u64,
    pub r: u64,
    pub ws: u64,
}

/// fp32 workspace bytes a variant needs at this shape (0 without split-K).
pub fn workspace_bytes(variant: &str, p: &Params, m: i64, n: i64) -> usize {
    match variant {
        // Every split-K variant writes SPLITK fp32 partials of Y before the reduction.
        "gemv_splitk" | "mma_skinny" | "wgmma_tma" => super::support::splitk_workspace_bytes(p, m, n),
        _ => 0,
    }
}

/// Launches one gemm variant with tunables `p` (the geometry of each template's launch
/// contract), plus the split-K reduction when the variant uses one. Shared by the tuning
/// loop and the Llama model, so both run a winner exactly as it was measured.
///
/// # Safety
/// `kernels` were compiled from `variant` with `p`; `io` holds live device buffers: X
/// [M,K], W [N,K], Y [M,N], R [M,N] or 0, and `ws` at least [`workspace_bytes`] bytes (0
/// only without split-K), all live until the stream has run the launches.
#[allow(clippy::too_many_arguments)]
pub unsafe fn launch_linear(
    gpu: &Gpu,
    kernels: &Kernels,
    variant: &str,
    p: &Params,
    io: LinearIo,
    m: i64,
    n: i64,
    k: i64,
    dt: DType,
) -> Result<()> {
    let dims = LinearDims { m, n, k, e: dt.bytes() as i64 };
    // SAFETY (all arms): this function's contract; split-K workspaces are checked before use.
    match variant {
        "mma_multistage" => unsafe { launch_multistage(gpu, kernels, p, io, dims) },
        "gemv_splitk" | "mma_skinny" => {
            let splitk = param(p, "SPLITK")?;
            check_splitk_workspace(variant, splitk, io)?;
            unsafe {
                launch_splitk_main(gpu, kernels, variant, p, io, dims, splitk)?;
                launch_splitk_reduce(gpu, kernels, io, dims, splitk)
            }
        }
        "wgmma_tma" => {
            let cfg = gemm_tma::TmaGemmConfig::from_params(p)?;
            check_splitk_workspace(variant, cfg.splitk, io)?;
            let kern = kernels.get("gemm_wgmma").context("module lacks gemm_wgmma")?;
            unsafe {
                let splitk = gemm_tma::launch(gpu, kern, &cfg, dt, (io.x, io.w, io.y, io.r, io.ws), m, n, k)?;
                launch_splitk_reduce(gpu, kernels, io, dims, splitk)
            }
        }
        other => bail!("the gemm family has no variant {other:?}"),
    }
}

/// The problem size of one linear launch and the element size of its dtype.
#[derive(Clone, Copy)]
struct LinearDims {
    m: i64,
    n: i64,
    k: i64,
    e: i64,
}

impl LinearDims {
    /// The `(M, N, K)` tail every gemm entry point takes.
    fn args(self) -> Vec<Arg> {
        Arg::i32s([self.m, self.n, self.k])
    }
}

/// A split-K variant must stay within the workspace `GemmProblem` allocates and needs one
/// at all when it splits.
fn check_splitk_workspace(variant: &str, splitk: i64, io: LinearIo) -> Result<()> {
    if splitk > MAX_SPLITK {
        bail!("SPLITK = {splitk} exceeds the workspace's {MAX_SPLITK}");
    }
    if splitk > 1 && io.ws == 0 {
        bail!("{variant} with SPLITK = {splitk} needs a split-K workspace");
    }
    Ok(())
}

/// Pipelined tensor-core tiles: X and W stages of BK columns in shared memory.
fn pipelined_smem(p: &Params, e: i64) -> Result<u32> {
    let (bm, bn, bk) = (param(p, "BM")?, param(p, "BN")?, param(p, "BK")?);
    Ok((param(p, "STAGES")? * (bm + bn) * bk * e) as u32)
}

/// # Safety
/// As [`launch_linear`].
unsafe fn launch_multistage(gpu: &Gpu, kernels: &Kernels, p: &Params, io: LinearIo, d: LinearDims) -> Result<()> {
    let (bm, bn) = (param(p, "BM")?, param(p, "BN")?);
    let warps = (bm / param(p, "WM")?) * (bn / param(p, "WN")?);
    let smem = pipelined_smem(p, d.e)?;
    let kern = kernels.get("gemm_mma").context("module lacks gemm_mma")?;
    let args = [Arg::ptrs([io.x, io.w, io.y, io.r]), d.args()].concat();
    // SAFETY: the caller of `launch_linear` passes X [M,K], W [N,K], Y and R [M,N] (R may be 0),
    // compiled with `p`; the arguments follow the template's launch contract.
    unsafe {
        gpu.launch(
            kern,
            (checked_ceil_div(d.n, bn)? as u32, checked_ceil_div(d.m, bm)? as u32, 1),
            ((warps * 32) as u32, 1, 1),
            smem,
            &args,
        )
    }
}

/// The arguments of both split-K main kernels: X, W, Y, R, workspace, M, N, K.
fn splitk_main_args(io: LinearIo, d: LinearDims) -> Vec<Arg> {
    [Arg::ptrs([io.x, io.w, io.y, io.r, io.ws]), d.args()].concat()
}

/// The entry point and geometry of a split-K variant's main kernel (gemv_splitk or
/// mma_skinny), from each template's launch contract.
fn splitk_main_geometry(variant: &str, p: &Params, d: LinearDims, splitk: i64) -> Result<(&'static str, Geometry)> {
    if variant == "gemv_splitk" {
        // gemv_splitk takes its warp count directly.
        let warps = param(p, "NUM_WARPS")?;
        if d.m > param(p, "MMAX")? {
            bail!("gemv_splitk with MMAX = {} cannot take M = {}", param(p, "MMAX")?, d.m);
        }
        let rows = warps * param(p, "ROWS_PER_WARP")?;
        let grid = (checked_ceil_div(d.n, rows)? as u32, splitk as u32, 1);
        return Ok(("gemm_gemv", Geometry { grid, block: ((warps * 32) as u32, 1, 1), smem: 0 }));
    }
    // mma_skinny's warps tile N.
    let bn = param(p, "BN")?;
    let warps = bn / param(p, "WN")?;
    let bm = param(p, "BM")?;
    let grid = (checked_ceil_div(d.n, bn)? as u32, checked_ceil_div(d.m, bm)? as u32, splitk as u32);
    Ok(("gemm_skinny", Geometry { grid, block: ((warps * 32) as u32, 1, 1), smem: pipelined_smem(p, d.e)? }))
}

/// # Safety
/// As [`launch_linear`], with the workspace checked against `splitk`.
unsafe fn launch_splitk_main(
    gpu: &Gpu,
    kernels: &Kernels,
    variant: &str,
    p: &Params,
    io: LinearIo,
    d: LinearDims,
    splitk: i64,
) -> Result<()> {
    let (entry, g) = splitk_main_geometry(variant, p, d, splitk)?;
    let kern = kernels.get(entry).with_context(|| format!("module lacks {entry}"))?;
    // SAFETY: the caller of `launch_linear` passes X [M,K], W [N,K], Y and R [M,N] (R may be 0)
    // and a workspace of SPLITK·M·N floats when SPLITK > 1 (checked by the caller), compiled with
    // `p`; the arguments follow the template's launch contract.
    unsafe { gpu.launch(kern, g.grid, g.block, g.smem, &splitk_main_args(io, d)) }
}

/// Sums the SPLITK fp32 partials (plus R) into Y; nothing to do without split-K.
///
/// # Safety
/// As [`launch_linear`], with the workspace checked against `splitk`.
unsafe fn launch_splitk_reduce(gpu: &Gpu, kernels: &Kernels, io: LinearIo, d: LinearDims, splitk: i64) -> Result<()> {
    if splitk <= 1 {
        return Ok(());
    }
    let red = kernels.get("gemm_splitk_reduce").context("module lacks gemm_splitk_reduce")?;
    let g = Geometry { grid: (ceil_div(d.m * d.n, 256) as u32, 1, 1), block: (256, 1, 1), smem: 0 };
    // SAFETY: the workspace holds SPLITK·M·N floats written by the main kernel; Y and R are [M,N]
    // (R may be 0); `g` covers M·N threads.
    unsafe { gemm_common::launch_splitk_reduce(gpu, red, g, io.ws, io.y, io.r, d.m, d.n, splitk) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_split_k_variant_asks_for_a_workspace() {
        let p: Params = [("SPLITK".to_string(), 2)].into_iter().collect();
        for v in ["gemv_splitk", "mma_skinny", "wgmma_tma"] {
            assert_eq!(workspace_bytes(v, &p, 3, 5), 2 * 3 * 5 * 4, "{v}");
        }
        assert_eq!(workspace_bytes("mma_multistage", &p, 3, 5), 0);
        let one: Params = [("SPLITK".to_string(), 1)].into_iter().collect();
        assert_eq!(workspace_bytes("wgmma_tma", &one, 3, 5), 0);
    }

    #[test]
    fn split_k_main_geometry_follows_the_launch_contracts() {
        let p = |kv: &[(&str, i64)]| -> Params { kv.iter().map(|(k, v)| (k.to_string(), *v)).collect() };
        let d = LinearDims { m: 3, n: 100, k: 64, e: 2 };
        let gemv = p(&[("NUM_WARPS", 4), ("ROWS_PER_WARP", 2), ("MMAX", 8)]);
        let (entry, g) = splitk_main_geometry("gemv_splitk", &gemv, d, 3).unwrap();
        assert_eq!((entry, g), ("gemm_gemv", Geometry { grid: (13, 3, 1), block: (128, 1, 1), smem: 0 }));
        assert!(splitk_main_geometry("gemv_splitk", &gemv, LinearDims { m: 9, ..d }, 1).is_err());
        let skinny = p(&[("BM", 16), ("BN", 64), ("WN", 16), ("BK", 32), ("STAGES", 3)]);
        let (entry, g) = splitk_main_geometry("mma_skinny", &skinny, d, 2).unwrap();
        let smem = 3 * (16 + 64) * 32 * 2;
        assert_eq!((entry, g), ("gemm_skinny", Geometry { grid: (2, 1, 2), block: (128, 1, 1), smem }));
    }

    #[test]
    fn counts() {
        let s = Shape::parse("16x4096x4096", &["M", "N", "K"]).unwrap();
        assert_eq!(Gemm.flops(&s), 2.0 * 16.0 * 4096.0 * 4096.0);
        assert_eq!(Gemm.min_bytes(&s, DType::BF16), 2.0 * (16.0 * 4096.0 * 2.0 + 4096.0 * 4096.0));
        assert!(Gemm.validate(&Shape::parse("1x8x12", &["M", "N", "K"]).unwrap(), DType::BF16).is_err());
        assert!(Gemm.entries("nope").is_err());
    }
}
