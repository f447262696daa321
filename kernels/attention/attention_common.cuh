// attention/attention_common.cuh — what the attention templates share: the element type T
// (bf16, or fp16 with KL_FP16 = 1) and its pair type T2, packing two fp32 values into one
// register of two T, and (from common/mma.cuh) the sm_80 building blocks of the mma.sync
// kernels (prefill.cu, decode_splitkv.cu): cp.async, ldmatrix, mma.m16n8k16. Included by
// quoted path after the template's KL_FP16 default; kernlab expands it before NVRTC.
#pragma once

#if KL_FP16
typedef __half T;
typedef __half2 T2;
#define KL_MMA_TYPE "f16"
#else
typedef __nv_bfloat16 T;
typedef __nv_bfloat162 T2;
#define KL_MMA_TYPE "bf16"
#endif

// Two floats → one register of two T; `lo` is the element with the lower column index.
__device__ __forceinline__ unsigned pack2(float lo, float hi) {
#if KL_FP16
    T2 v = __floats2half2_rn(lo, hi);
#else
    T2 v = __floats2bfloat162_rn(lo, hi);
#endif
    return *reinterpret_cast<unsigned*>(&v);
}

// cp.async, ldmatrix and mma.m16n8k16, shared with the gemm templates.
#include "../common/mma.cuh"
