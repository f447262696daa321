// reference.cu — the swiglu family's trusted reference (not tuned).
//
//   swiglu_reference(const T* gu, T* out, int tokens, int ffn)
//   One thread per output element, expf and a true division, fp32.
//   Launch: grid-stride over tokens * ffn; block 256.
#include <cuda_fp16.h>
#include <cuda_bf16.h>

// ---- element type and vector access (the same block in every memory-bound template) ----
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


extern "C" __global__ void swiglu_reference(const T* gu, T* out, int tokens, int ffn) {
    const long long total = (long long)tokens * ffn;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long t = i / ffn, j = i % ffn;
        const float g = kl_to_f(gu[t * 2 * ffn + j]), u = kl_to_f(gu[t * 2 * ffn + ffn + j]);
        out[i] = kl_from_f(g / (1.f + expf(-g)) * u);
    }
}
