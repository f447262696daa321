//! GPU errors that keep the driver's result code, so a caller (the tuning worker) can tell
//! an error that poisons the context (an illegal address: every later call fails) from one
//! that does not (too much shared memory asked for) by the code, not by the message text.

use cudarc::driver::{result::DriverError, sys::CUresult};

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("launch of {kernel} (grid {grid:?}, block {block:?}, smem {smem} B) failed: {code:?}")]
    Launch { kernel: String, grid: (u32, u32, u32), block: (u32, u32, u32), smem: u32, code: CUresult },
    #[error("{what} failed: {code:?}")]
    Driver { what: String, code: CUresult },
}

impl GpuError {
    /// The driver's result code.
    pub fn code(&self) -> CUresult {
        match self {
            GpuError::Launch { code, .. } | GpuError::Driver { code, .. } => *code,
        }
    }

    /// Whether the context is unusable after this error (see [`is_sticky_code`]).
    pub fn is_sticky(&self) -> bool {
        is_sticky_code(self.code())
    }

    /// A `map_err` adapter: the driver error of `what` ("copy to GPU", ...).
    pub fn driver(what: impl Into<String>) -> impl FnOnce(DriverError) -> GpuError {
        let what = what.into();
        move |e| GpuError::Driver { what, code: e.0 }
    }
}

/// Result codes after which the CUDA context is corrupted: every later call in the process
/// fails too, so the process must be replaced.
pub fn is_sticky_code(code: CUresult) -> bool {
    use CUresult::*;
    matches!(
        code,
        CUDA_ERROR_ILLEGAL_ADDRESS
            | CUDA_ERROR_ILLEGAL_INSTRUCTION
            | CUDA_ERROR_LAUNCH_FAILED
            | CUDA_ERROR_MISALIGNED_ADDRESS
            | CUDA_ERROR_ASSERT
            | CUDA_ERROR_HARDWARE_STACK_ERROR
            | CUDA_ERROR_INVALID_PC
            | CUDA_ERROR_INVALID_ADDRESS_SPACE
            | CUDA_ERROR_LAUNCH_TIMEOUT
            | CUDA_ERROR_CONTEXT_IS_DESTROYED
            | CUDA_ERROR_ECC_UNCORRECTABLE
    )
}

/// The code of the first [`GpuError`] in an error's chain (contexts added with anyhow keep it).
pub fn gpu_code(e: &anyhow::Error) -> Option<CUresult> {
    e.chain().find_map(|c| c.downcast_ref::<GpuError>()).map(GpuError::code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn sticky_errors_are_told_by_their_code() {
        for c in [CUresult::CUDA_ERROR_ILLEGAL_ADDRESS, CUresult::CUDA_ERROR_LAUNCH_FAILED, CUresult::CUDA_ERROR_ASSERT]
        {
            assert!(is_sticky_code(c), "{c:?}");
        }
        for c in [
            CUresult::CUDA_ERROR_INVALID_VALUE,
            CUresult::CUDA_ERROR_OUT_OF_MEMORY,
            CUresult::CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES,
            CUresult::CUDA_SUCCESS,
        ] {
            assert!(!is_sticky_code(c), "{c:?}");
        }
        // Through anyhow contexts, with a message that names no code at all.
        let e: anyhow::Error =
            Err::<(), _>(GpuError::Driver { what: "copy".into(), code: CUresult::CUDA_ERROR_MISALIGNED_ADDRESS })
                .context("running candidate 3")
                .unwrap_err();
        assert_eq!(gpu_code(&e), Some(CUresult::CUDA_ERROR_MISALIGNED_ADDRESS));
        assert_eq!(gpu_code(&anyhow::anyhow!("ILLEGAL_ADDRESS in a message")), None);
    }
}
