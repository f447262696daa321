//! Encoding TMA tensor maps (cuTensorMapEncodeTiled) for the sm_90a kernels that load tiles
//! with `cp.async.bulk.tensor`: one place for the driver call and its safety argument; each
//! kernel's host side chooses the dims, strides, box and swizzle its template expects.

use anyhow::{bail, Result};
use cudarc::driver::sys;
use std::ffi::c_void;

/// A tiled tensor map over `ptr`: `dims` innermost first, `strides` in bytes for every
/// dimension but the innermost, `box_dims` the tile loaded per TMA call. Element strides are 1,
/// no interleave, 256-byte L2 promotion, zero fill outside the tensor. `what` names the tensor
/// in the error.
pub fn encode_tiled(
    what: &str,
    dtype: sys::CUtensorMapDataType,
    ptr: u64,
    dims: &[u64],
    strides: &[u64],
    box_dims: &[u32],
    swizzle: sys::CUtensorMapSwizzle,
) -> Result<sys::CUtensorMap> {
    let rank = dims.len();
    if !(1..=5).contains(&rank) || strides.len() + 1 != rank || box_dims.len() != rank {
        bail!("{what}: a tensor map needs 1-5 dims, one stride fewer and a box per dim");
    }
    let elem_strides = [1u32; 5];
    let mut map = sys::CUtensorMap { opaque: [0; 16] };
    // SAFETY: `dims`, `box_dims` and `elem_strides` hold at least `rank` entries and `strides`
    // rank - 1 (checked above); the map is written in place; the driver only encodes (no GPU
    // work) and validates every field, returning an error for a bad one.
    let r = unsafe {
        sys::cuTensorMapEncodeTiled(
            &mut map,
            dtype,
            rank as u32,
            ptr as *mut c_void,
            dims.as_ptr(),
            strides.as_ptr(),
            box_dims.as_ptr(),
            elem_strides.as_ptr(),
            sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
            swizzle,
            sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
            sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
        )
    };
    if r != sys::CUresult::CUDA_SUCCESS {
        bail!("cuTensorMapEncodeTiled failed for {what} (dims {dims:?}, box {box_dims:?}): {r:?}");
    }
    Ok(map)
}
