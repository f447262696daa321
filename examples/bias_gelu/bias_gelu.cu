// bias_gelu.cu — fused epilogue: y[t][n] = gelu(x[t][n] + bias[n]), exact (erf) GELU, fp32 math.
// Launch (bias_gelu.toml): grid (ceil(n / (THREADS·ITEMS)), min(tokens, 65535)), block THREADS.
// Each thread handles ITEMS columns THREADS apart (coalesced), so one block covers
// THREADS·ITEMS columns of a row; rows past the grid are strided over.
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#if defined(KL_FP32)
typedef float T;
__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float from_f(float v) { return v; }
#elif defined(KL_FP16)
typedef __half T;
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
__device__ __forceinline__ __half from_f(float v) { return __float2half_rn(v); }
#else
typedef __nv_bfloat16 T;
__device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ __nv_bfloat16 from_f(float v) { return __float2bfloat16_rn(v); }
#endif

#ifndef THREADS
#define THREADS 256
#endif
#ifndef ITEMS
#define ITEMS 4
#endif

__device__ __forceinline__ float gelu(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); }

extern "C" __global__ void __launch_bounds__(THREADS) bias_gelu(const T* __restrict__ x, const T* __restrict__ bias, T* __restrict__ y, int tokens, int n) {
    const int c0 = blockIdx.x * (THREADS * ITEMS) + threadIdx.x;
    float b[ITEMS];
#pragma unroll
    for (int i = 0; i < ITEMS; i++) {
        const int c = c0 + i * THREADS;
        b[i] = c < n ? to_f(bias[c]) : 0.f;
    }
    for (int t = blockIdx.y; t < tokens; t += gridDim.y) {
        const long long row = (long long)t * n;
#pragma unroll
        for (int i = 0; i < ITEMS; i++) {
            const int c = c0 + i * THREADS;
            if (c < n) y[row + c] = from_f(gelu(to_f(x[row + c]) + b[i]));
        }
    }
}
