//! A linear layer on the int4 kernels: Y[M,N] = X[M,K] · dequant(W)ᵀ (+ R), with each
//! variant's launch contract and split-K workspace. The tuning loop's problem and the Llama
//! path both launch through here, so what is timed is what the model runs.

use super::format::Int4Format;
use super::launch::{bulk_plan, gemv_plan, gemv_tc_plan, mma_geometry, wgmma_plan, wgmma_rs_plan, GemvPlan};
use crate::gpu::device::{Arg, Gpu};
use crate::kernels::gemm_common::{launch_splitk_reduce, split_residual};
use crate::kernels::DType;
use crate::kernels::{Kernels, Params};
use anyhow::{bail, Context, Result};

pub use super::launch::Int4Io;

fn decode_plan(variant: &str, m: i64, n: i64, k: i64, fmt: &Int4Format, p: &Params) -> Result<GemvPlan> {
    match variant {
        "int4_gemv" => gemv_plan(m, n, k, fmt, p),
        "int4_gemv_tc" => gemv_tc_plan(m, n, k, fmt, p),
        "int4_gemv_bulk" => bulk_plan(m, n, k, fmt, p),
        // Not a decode kernel, but the same arguments and split-K reduction.
        "int4_mma_wgmma" => wgmma_plan(m, n, k, fmt, p),
        other => bail!("{other} is not an int4 variant with a split-K plan"),
    }
}

/// Whether `variant` with `params` can run (M, N, K) in the format its params name: the same
/// launch-contract checks the launch makes, without a GPU, so a caller choosing a
/// configuration (a database winner found for another model, a template default) can fall
/// back before it compiles or launches anything. The error says which rule the shape breaks.
pub fn check_shape(variant: &str, params: &Params, m: i64, n: i64, k: i64, dt: DType) -> Result<()> {
    let fmt = Int4Format::from_params(params, dt)?;
    match variant {
        "int4_wgmma_rs" => wgmma_rs_plan(m, n, k, &fmt, params).map(|_| ()),
        "int4_mma" => mma_geometry(m, n, k, &fmt, params).map(|_| ()),
        _ => decode_plan(variant, m, n, k, &fmt, params).map(|_| ()),
    }
}

/// fp32 workspace bytes a configuration needs at (M, N).
pub fn workspace_bytes(variant: &str, params: &Params, m: i64, n: i64) -> usize {
    match variant {
        "int4_gemv" | "int4_gemv_tc" | "int4_mma_wgmma" | "int4_wgmma_rs" => {
            crate::kernels::support::splitk_workspace_bytes(params, m, n)
        }
        _ => 0,
    }
}

/// The split-K reduction of a plan with SPLITK > 1 (nothing otherwise): int4_gemv has its own,
/// the other kernels share gemm_splitk_reduce (argument order differs).
///
/// # Safety
/// As [`launch_linear`].
unsafe fn reduce_splits(
    gpu: &Gpu,
    kernels: &Kernels,
    variant: &str,
    plan: &GemvPlan,
    io: Int4Io,
    m: i64,
    n: i64,
) -> Result<()> {
    let Some(r) = plan.reduce else { return Ok(()) };
    let get = |e: &str| kernels.get(e).with_context(|| format!("the {variant} module lacks {e}"));
    // SAFETY: the caller passes X [M,K], packed W and scales for (N, K), Y and R [M,N] and a workspace of
    // SPLITK·M·N floats when split (see `linear_int4`'s contract); the arguments follow the template's
    // signature.
    unsafe {
        if variant == "int4_gemv" {
            let args = [Arg::ptrs([io.ws, io.r, io.y]), Arg::i32s([m, n])].concat();
            gpu.launch(get("int4_splitk_reduce")?, r.grid, r.block, r.smem, &args)
        } else {
            launch_splitk_reduce(gpu, get("gemm_splitk_reduce")?, r, io.ws, io.y, io.r, m, n, plan.splitk)
        }
    }
}

/// Launches one int4 linear with a compiled variant's entry points.
///
/// # Safety
/// `kernels` were compiled from `variant` with `params`; `io` holds live device buffers:
/// X [M,K], the packed weights, scales (and zeros unless symmetric) of (N, K) in the
/// format `params` name and in the layout the variant reads (`tiled::reads_tiled`), Y [M,N], R [M,N] or 0, and `ws` at least [`workspace_bytes`]
/// bytes; all live until the stream has run the launches.
#[allow(clippy::too_many_arguments)]
pub unsafe fn launch_linear(
    gpu: &Gpu,
    kernels: &Kernels,
    variant: &str,
    params: &Params,
    io: Int4Io,
    m: i64,
    n: i64,
    k: i64,
    dt: DType,
) -> Result<()> {
    let fmt = Int4Format::from_params(params, dt)?;
    let get = |e: &str| kernels.get(e).with_context(|| format!("the {variant} module lacks {e}"));
    let dims = Arg::i32s([m, n, k]);
    match variant {
        // Its tensor maps are 128-byte parameters: launched by tma.rs, not Gpu::launch.
        "int4_wgmma_rs" => {
            let (cfg, plan) = wgmma_rs_plan(m, n, k, &fmt, params)?;
            // SAFETY: this function's contract.
            unsafe {
                super::tma::launch_wgmma_rs(gpu, get(variant)?, &cfg, &plan, io, m, n, k, dt)?;
                reduce_splits(gpu, kernels, variant, &plan, io, m, n)
            }
        }
        "int4_gemv" | "int4_gemv_tc" | "int4_gemv_bulk" | "int4_mma_wgmma" => {
            let plan = decode_plan(variant, m, n, k, &fmt, params)?;
            let (r, ws) = split_residual(plan.splitk > 1, io.r, io.ws);
            let g = plan.main;
            let args = [Arg::ptrs([io.x, io.wq, io.scales, io.zeros, r, io.y, ws]), dims].concat();
            // SAFETY: the caller passes X [M,K], packed W and scales for (N, K), Y and R [M,N] and a
            // workspace of SPLITK·M·N floats when split (see `linear_int4`'s contract); the arguments follow
            // the template's signature.
            unsafe { gpu.launch(get(variant)?, g.grid, g.block, g.smem, &args)? };
            reduce_splits(gpu, kernels, variant, &plan, io, m, n)
        }
        "int4_mma" => {
            let g = mma_geometry(m, n, k, &fmt, params)?;
            let args = [Arg::ptrs([io.x, io.wq, io.scales, io.zeros, io.r, io.y]), dims].concat();
            // SAFETY: the caller passes X [M,K], packed W and scales for (N, K), Y and R [M,N] and a
            // workspace of SPLITK·M·N floats when split (see `linear_int4`'s contract); the arguments follow
            // the template's signature.
            unsafe { gpu.launch(get("int4_mma")?, g.grid, g.block, g.smem, &args) }
        }
        other => bail!("the gemm_int4 family has no launchable variant {other:?}"),
    }
}
