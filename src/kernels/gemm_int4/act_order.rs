//! GPTQ act-order on the GPU (kernels/gemm_int4/act_order.cu): the column gather that lets
//! an act-order weight run on the gemm_int4 kernels. The weight is kept with its input
//! columns permuted so that its groups are contiguous, and each activation row is gathered
//! with the same permutation before the GEMM (Y = X·Wᵀ = X[:, perm]·W'ᵀ).

use crate::gpu::cache::ModuleCache;
use crate::gpu::device::{Arg, DevBuf, Gpu, Kernel};
use crate::gpu::nvrtc::CompileRequest;
use anyhow::{bail, Context, Result};

pub const ACT_ORDER_SOURCE: &str = include_str!("../../../kernels/gemm_int4/act_order.cu");

/// The module (no tunables; the same for every dtype: it moves 16-bit values).
pub fn act_order_request(arch: &str) -> CompileRequest {
    CompileRequest {
        name: "kernels/gemm_int4/act_order.cu".into(),
        source: ACT_ORDER_SOURCE.into(),
        defines: Default::default(),
        arch: arch.into(),
    }
}

/// A permutation of K input columns on the device, and its inverse.
pub struct ColumnPerm {
    pub k: i64,
    /// u32 [K]: column j of the permuted matrix is column `perm[j]` of the original.
    pub perm: DevBuf,
    /// u32 [K]: the inverse, which undoes the gather.
    pub inverse: DevBuf,
}

impl ColumnPerm {
    /// Uploads `perm` after checking that it is a permutation of 0..len.
    pub fn upload(gpu: &Gpu, perm: &[u32]) -> Result<ColumnPerm> {
        let k = perm.len();
        let mut inverse = vec![u32::MAX; k];
        for (j, &p) in perm.iter().enumerate() {
            let slot =
                inverse.get_mut(p as usize).with_context(|| format!("act-order: column {p} is out of 0..{k}"))?;
            if *slot != u32::MAX {
                bail!("act-order: column {p} appears twice in the permutation");
            }
            *slot = j as u32;
        }
        let (d_perm, d_inv) = (gpu.alloc(4 * k)?, gpu.alloc(4 * k)?);
        d_perm.upload(perm)?;
        d_inv.upload(&inverse)?;
        Ok(ColumnPerm { k: k as i64, perm: d_perm, inverse: d_inv })
    }
}

pub struct ColumnGather {
    kernel: Kernel,
}

impl ColumnGather {
    pub fn new(gpu: &Gpu, cache: &ModuleCache) -> Result<ColumnGather> {
        let m = cache
            .get_or_compile(&act_order_request(&gpu.props.arch()))
            .context("compiling kernels/gemm_int4/act_order.cu")?;
        Ok(ColumnGather { kernel: gpu.load(&m.cubin, "gather_cols")? })
    }

    /// dst[r][j] = src[r][perm[j]] for `rows` rows of `k` 16-bit values (`inverse` undoes it).
    ///
    /// # Safety
    /// `src` and `dst` are distinct device buffers of at least rows·k 16-bit values, and
    /// `perm` holds k indices in 0..k (a [`ColumnPerm`]'s `perm` or `inverse` of that k).
    pub unsafe fn gather(&self, gpu: &Gpu, src: u64, dst: u64, perm: u64, rows: i64, k: i64) -> Result<()> {
        if rows < 1 || k < 1 || rows > i64::from(i32::MAX) || k > i64::from(i32::MAX) {
            bail!("act-order gather of {rows}x{k}: rows and K must be positive and fit the kernel's indices");
        }
        let blocks = crate::kernels::ceil_div(rows * k, 256).min(i64::from(gpu.props.sm_count) * 16);
        let args = [Arg::Ptr(src), Arg::Ptr(dst), Arg::Ptr(perm), Arg::I32(rows as i32), Arg::I32(k as i32)];
        // SAFETY: the caller's contract; the arguments follow act_order.cu's signature.
        unsafe { gpu.launch(&self.kernel, (blocks as u32, 1, 1), (256, 1, 1), 0, &args) }
    }
}
