//! A linear layer on the int8 kernels: Y[M,N] = X[M,K] · dequant(W)ᵀ (+ R), with the launch
//! contract of each variant (kernels/gemm_int8/*.cu headers) and its split-K workspace. The
//! tuning loop's problem and the Llama path both launch through here, so what is timed is
//! what the model runs. The geometry functions are pure, so the contracts are tested on CPU.

use crate::gpu::device::{Arg, Gpu};
use crate::kernels::gemm_common::{launch_splitk_reduce, split_residual};
pub use crate::kernels::GemvPlan;
use crate::kernels::{checked_ceil_div, grid_dim, param, DType, Geometry};
use crate::kernels::{Kernels, Params};
use anyhow::{bail, Context, Result};

/// Device addresses of one int8 linear's operands. `r` = 0: no residual; `r` may equal `y`
/// (the residual stream updated in place: each output is read once, then written).
#[derive(Debug, Clone, Copy)]
pub struct Int8Io {
    /// X [M][K] in the activation dtype, 16-byte aligned
    pub x: u64,
    /// i8 codes [N][K], 16-byte aligned
    pub wq: u64,
    /// 16-bit scales [N] in the activation dtype
    pub scales: u64,
    pub r: u64,
    pub y: u64,
    /// fp32 split-K workspace of at least [`workspace_bytes`] (0 when that is 0)
    pub ws: u64,
}

/// Largest M int8_gemv takes (its accumulators are sized by M_MAX at compile time).
pub const GEMV_MAX_M: i64 = 16;

/// Largest split-K int8_gemv may use.
pub const MAX_SPLITK: i64 = 16;

/// K must be a multiple of this: int8_gemv reads 16 codes a load, and a load must not
/// straddle two weight rows.
pub const K_MULTIPLE: i64 = 16;

/// The variants this build can launch.
pub const VARIANTS: &[&str] = &["int8_gemv"];

/// The M_MAX int8_gemv should be compiled with for `m` rows: the smallest of 1, 2, 4, 8, 16
/// that is at least `m` (what the sweep keeps), `None` past [`GEMV_MAX_M`].
pub fn m_max_for(m: i64) -> Option<i64> {
    [1, 2, 4, 8, 16].into_iter().find(|&v| v >= m.max(1))
}

/// The rules every int8 variant shares: dtype, dimensions, K's multiple.
fn check_common(m: i64, n: i64, k: i64, dt: DType) -> Result<()> {
    let shape = format!("{m}x{n}x{k}");
    if dt == DType::F32 {
        bail!("gemm_int8 {shape}: activations must be bf16 or fp16 (fp32 accumulation); fp32 inputs are not supported");
    }
    if m < 1 || n < 1 || k < 1 {
        bail!("gemm_int8 {shape}: M, N and K must be at least 1");
    }
    if k % K_MULTIPLE != 0 {
        bail!(
            "gemm_int8 {shape}: K = {k} is not a multiple of {K_MULTIPLE}; the int8 kernels read 16 codes of a \
             weight row per load (pad K with zero columns to a multiple of {K_MULTIPLE})"
        );
    }
    if k > i64::from(i32::MAX) || n > i64::from(i32::MAX) || m * n > i64::from(i32::MAX) {
        bail!("gemm_int8 {shape}: N, K and M·N must fit the kernels' 32-bit indices");
    }
    Ok(())
}

/// int8_gemv: grid (ceil(N / (NUM_WARPS·ROWS_PER_WARP)), SPLITK), NUM_WARPS warps, plus
/// gemm_splitk_reduce over ceil(M·N / 256) blocks of 256 when SPLITK > 1.
pub fn gemv_plan(m: i64, n: i64, k: i64, p: &Params) -> Result<GemvPlan> {
    let (warps, rows, unroll, splitk, m_max) = (
        param(p, "NUM_WARPS")?,
        param(p, "ROWS_PER_WARP")?,
        param(p, "UNROLL")?,
        param(p, "SPLITK")?,
        param(p, "M_MAX")?,
    );
    let shape = format!("{m}x{n}x{k}");
    if !(1..=GEMV_MAX_M).contains(&m_max) {
        bail!("int8_gemv: M_MAX = {m_max} is outside 1..={GEMV_MAX_M}");
    }
    if m > m_max {
        bail!(
            "int8_gemv compiled with M_MAX = {m_max} cannot take M = {m} (shape {shape}); the sweep must keep M_MAX >= M \
             (at most {GEMV_MAX_M}: larger M runs the bf16 GEMM on the dequantized weight)"
        );
    }
    if !(1..=32).contains(&warps) || rows < 1 || unroll < 1 {
        bail!(
            "int8_gemv: NUM_WARPS = {warps} (1..=32), ROWS_PER_WARP = {rows}, UNROLL = {unroll} (>= 1) make no block"
        );
    }
    if !(1..=MAX_SPLITK).contains(&splitk) {
        bail!("int8_gemv: SPLITK = {splitk} is outside 1..={MAX_SPLITK}");
    }
    let main = Geometry {
        grid: (grid_dim(checked_ceil_div(n, warps * rows)?, "int8_gemv grid.x")?, splitk as u32, 1),
        block: ((32 * warps) as u32, 1, 1),
        smem: 0,
    };
    Ok(GemvPlan::split_k(main, splitk, m, n))
}

/// Whether `variant` with `params` can run (M, N, K) in dtype `dt`: the same launch-contract
/// checks the launch makes, without a GPU, so a caller choosing a configuration (a database
/// winner found for another shape, a template default) can fall back before it compiles or
/// launches anything. The error says which rule the shape breaks.
pub fn check_shape(variant: &str, params: &Params, m: i64, n: i64, k: i64, dt: DType) -> Result<()> {
    check_common(m, n, k, dt)?;
    match variant {
        "int8_gemv" => gemv_plan(m, n, k, params).map(|_| ()),
        other => bail!("the gemm_int8 family has no variant {other:?} (known: {})", VARIANTS.join(", ")),
    }
}

/// fp32 workspace bytes a configuration needs at (M, N): SPLITK·M·N floats when split.
pub fn workspace_bytes(variant: &str, params: &Params, m: i64, n: i64) -> usize {
    match variant {
        "int8_gemv" => crate::kernels::support::splitk_workspace_bytes(params, m, n),
        _ => 0,
    }
}

/// Launches one int8 linear with a compiled variant's entry points.
///
/// # Safety
/// `kernels` were compiled from `variant` with `params` in dtype `dt`; `io` holds live device
/// buffers: X [M,K], the codes [N,K] and scales [N] of the weight, Y [M,N], R [M,N] or 0, and
/// `ws` at least [`workspace_bytes`] bytes; all live until the stream has run the launches.
#[allow(clippy::too_many_arguments)]
pub unsafe fn launch_linear(
    gpu: &Gpu,
    kernels: &Kernels,
    variant: &str,
    params: &Params,
    io: Int8Io,
    m: i64,
    n: i64,
    k: i64,
    dt: DType,
) -> Result<()> {
    check_shape(variant, params, m, n, k, dt)?;
    if io.x % 16 != 0 || io.wq % 16 != 0 || io.scales % 2 != 0 {
        bail!("{variant}: X and the codes must be 16-byte aligned and the scales 2-byte aligned");
    }
    let get = |e: &str| kernels.get(e).with_context(|| format!("the {variant} module lacks {e}"));
    let plan = gemv_plan(m, n, k, params)?;
    let split = plan.splitk > 1;
    if split && io.ws == 0 {
        bail!(
            "{variant}: SPLITK = {} needs a workspace of {} bytes",
            plan.splitk,
            workspace_bytes(variant, params, m, n)
        );
    }
    let (r, ws) = split_residual(split, io.r, io.ws);
    let args = [Arg::ptrs([io.x, io.wq, io.scales, r, io.y, ws]), Arg::i32s([m, n, k])].concat();
    let g = plan.main;
    // SAFETY: the caller passes X [M,K], the codes and scales of (N, K), Y and R [M,N] and a
    // workspace of SPLITK·M·N floats when split (this function's contract); the arguments
    // follow int8_gemv.cu's signature.
    unsafe { gpu.launch(get("int8_gemv")?, g.grid, g.block, g.smem, &args)? };
    if let Some(r) = plan.reduce {
        // SAFETY: as above; the workspace was fully written by the launch before it on the
        // stream.
        unsafe { launch_splitk_reduce(gpu, get("gemm_splitk_reduce")?, r, io.ws, io.y, io.r, m, n, plan.splitk)? };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(kv: &[(&str, i64)]) -> Params {
        kv.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    fn defaults() -> Params {
        p(&[("NUM_WARPS", 4), ("ROWS_PER_WARP", 2), ("UNROLL", 2), ("SPLITK", 1), ("M_MAX", 16)])
    }

    #[test]
    fn gemv_geometry() {
        let plan = gemv_plan(1, 4100, 4096, &defaults()).unwrap();
        assert_eq!(plan.main, Geometry { grid: (513, 1, 1), block: (128, 1, 1), smem: 0 });
        assert_eq!((plan.splitk, plan.reduce), (1, None));
        let mut s = defaults();
        s.insert("SPLITK".into(), 4);
        let plan = gemv_plan(3, 1000, 4112, &s).unwrap();
        assert_eq!(plan.main.grid, (125, 4, 1));
        assert_eq!(plan.reduce, Some(Geometry { grid: (12, 1, 1), block: (256, 1, 1), smem: 0 }));
        assert_eq!(workspace_bytes("int8_gemv", &s, 3, 1000), 4 * 3 * 1000 * 4);
        assert_eq!(workspace_bytes("int8_gemv", &defaults(), 3, 1000), 0);
    }

    #[test]
    fn m_max_is_the_next_power_of_two() {
        let got: Vec<Option<i64>> = [0, 1, 2, 3, 5, 8, 9, 16, 17].iter().map(|&m| m_max_for(m)).collect();
        assert_eq!(got, [Some(1), Some(1), Some(2), Some(4), Some(8), Some(8), Some(16), Some(16), None]);
    }

    #[test]
    fn check_shape_refuses_bad_shapes_with_a_reason() {
        let d = defaults();
        check_shape("int8_gemv", &d, 16, 28672, 4096, DType::BF16).unwrap();
        check_shape("int8_gemv", &d, 3, 1000, 4112, DType::F16).unwrap();
        let err = |v: &str, p: &Params, m, n, k, dt| {
            format!("{:#}", check_shape(v, p, m, n, k, dt).expect_err("must be refused"))
        };
        let e = err("int8_gemv", &d, 1, 4096, 4100, DType::BF16);
        assert!(e.contains("1x4096x4100") && e.contains("not a multiple of 16"), "{e}");
        let e = err("int8_gemv", &d, 17, 4096, 4096, DType::BF16);
        assert!(e.contains("M_MAX = 16") && e.contains("M = 17"), "{e}");
        let mut small = d.clone();
        small.insert("M_MAX".into(), 4);
        let e = err("int8_gemv", &small, 5, 64, 64, DType::BF16);
        assert!(e.contains("M_MAX = 4") && e.contains("5x64x64"), "{e}");
        let e = err("int8_gemv", &d, 1, 64, 64, DType::F32);
        assert!(e.contains("bf16 or fp16"), "{e}");
        let e = err("int8_mma", &d, 1, 64, 64, DType::BF16);
        assert!(e.contains("no variant") && e.contains("int8_gemv"), "{e}");
        let e = err("int8_gemv", &d, 0, 64, 64, DType::BF16);
        assert!(e.contains("at least 1"), "{e}");
        let mut bad = d.clone();
        bad.insert("SPLITK".into(), 0);
        assert!(err("int8_gemv", &bad, 1, 64, 64, DType::BF16).contains("SPLITK = 0"));
        bad.insert("SPLITK".into(), 1);
        bad.insert("NUM_WARPS".into(), 64);
        assert!(err("int8_gemv", &bad, 1, 64, 64, DType::BF16).contains("NUM_WARPS = 64"));
        let mut missing = d.clone();
        missing.remove("UNROLL");
        assert!(err("int8_gemv", &missing, 1, 64, 64, DType::BF16).contains("UNROLL"));
    }
}
