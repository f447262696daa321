// bias_gelu.cu — fused epilogue: y[t][n] = gelu(x[t][n] + bias[n]), exact (erf) GELU, fp32 math.
// Launch (bias_gelu.toml): grid (ceil(n / (THREADS·ITEMS)), min(tokens, 65535)), block THREADS.
// Each thread handles ITEMS columns THREADS apart (coalesced), so one block covers
// THREADS·ITEMS columns of a row; rows past the grid are strided over.
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <kernlab/element_type.cuh>  // T, kl_to_f, kl_from_f (built into kernlab)

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
        b[i] = c < n ? kl_to_f(bias[c]) : 0.f;
    }
    for (int t = blockIdx.y; t < tokens; t += gridDim.y) {
        const long long row = (long long)t * n;
#pragma unroll
        for (int i = 0; i < ITEMS; i++) {
            const int c = c0 + i * THREADS;
            if (c < n) y[row + c] = kl_from_f(gelu(kl_to_f(x[row + c]) + b[i]));
        }
    }
}
