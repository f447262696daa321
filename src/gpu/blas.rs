//! cuBLAS as the peer and the reference for linear layers.

use super::device::Gpu;
use super::libs;
use crate::core::DType;
use anyhow::{bail, Result};
use cudarc::cublas::{result as blas, sys as bsys, CudaBlas};
use std::ffi::c_void;

pub struct Blas {
    handle: CudaBlas,
}

impl Blas {
    pub fn new(gpu: &Gpu) -> Result<Blas> {
        libs::cublas()?;
        let handle =
            CudaBlas::new(gpu.stream.clone()).map_err(|e| anyhow::anyhow!("creating a cuBLAS handle: {e:?}"))?;
        Ok(Blas { handle })
    }

    /// Y[M,N] = X[M,K] · W[N,K]ᵀ (+ Y if `accumulate`), row-major, fp32 accumulation.
    ///
    /// cuBLAS is column-major: a row-major [M,N] Y is a column-major [N,M] Yᵀ = W·Xᵀ, where
    /// row-major W[N,K] read column-major is Wᵀ (so op = T) and row-major X[M,K] is Xᵀ.
    #[allow(clippy::too_many_arguments)]
    pub fn linear(&self, dt: DType, x: u64, w: u64, y: u64, m: i64, n: i64, k: i64, accumulate: bool) -> Result<()> {
        let ty = match dt {
            DType::BF16 => bsys::cudaDataType::CUDA_R_16BF,
            DType::F16 => bsys::cudaDataType::CUDA_R_16F,
            DType::F32 => bsys::cudaDataType::CUDA_R_32F,
        };
        let alpha = 1.0f32;
        let beta = if accumulate { 1.0f32 } else { 0.0f32 };
        if m > i32::MAX as i64 || n > i32::MAX as i64 || k > i32::MAX as i64 {
            bail!("shape too large for cuBLAS's 32-bit dimensions");
        }
        // SAFETY: x, w, y are device buffers of at least M·K, N·K and M·N elements of `dt`
        // (the caller allocates them for this shape); alpha/beta live across the call and
        // the pointer mode is host.
        unsafe {
            blas::gemm_ex(
                *self.handle.handle(),
                bsys::cublasOperation_t::CUBLAS_OP_T,
                bsys::cublasOperation_t::CUBLAS_OP_N,
                n as i32,
                m as i32,
                k as i32,
                &alpha as *const f32 as *const c_void,
                w as *const c_void,
                ty,
                k as i32,
                x as *const c_void,
                ty,
                k as i32,
                &beta as *const f32 as *const c_void,
                y as *mut c_void,
                ty,
                n as i32,
                bsys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                bsys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(|e| anyhow::anyhow!("cublasGemmEx ({m}x{n}x{k}) failed: {e:?}"))
    }
}
