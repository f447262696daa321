// common/element_type.cuh — the element type T of the memory-bound families (bf16 by
// default, KL_FP16 / KL_FP32 for the others) and its conversions kl_from_f / kl_to_f. Shared
// by their templates (through elementwise.cuh) and their reference kernels. kernlab expands
// quoted includes before NVRTC sees a source (files on disk: nvrtc::load_source; sources
// built into the binary: support::expand_embedded_headers).
#if defined(KL_FP32)
typedef float T;
__device__ __forceinline__ T kl_from_f(float v) { return v; }
#elif defined(KL_FP16)
typedef __half T;
__device__ __forceinline__ T kl_from_f(float v) { return __float2half_rn(v); }
#else
typedef __nv_bfloat16 T;
__device__ __forceinline__ T kl_from_f(float v) { return __float2bfloat16_rn(v); }
#endif
__device__ __forceinline__ float kl_to_f(float v) { return v; }
__device__ __forceinline__ float kl_to_f(__half v) { return __half2float(v); }
__device__ __forceinline__ float kl_to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
