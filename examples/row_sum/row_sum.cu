// row_sum.cu — y[r] = Σ_c x[r][c] in fp32, in two launches (a split reduction):
//   row_partial: grid (SPLITS, min(rows, 65535)), block THREADS. Block (s, r) sums the s-th
//                of SPLITS column chunks of row r (rows past the grid are strided over)
//                into partial[r * SPLITS + s].
//   row_combine: grid ceil(rows / 256), block 256: y[r] = Σ_s partial[r * SPLITS + s].
// Many splits keep the GPU busy when there are few rows; one split skips the extra traffic.
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <kernlab/element_type.cuh>  // T, kl_to_f, kl_from_f (built into kernlab)

#ifndef THREADS
#define THREADS 256
#endif
#ifndef SPLITS
#define SPLITS 1
#endif
#ifndef UNROLL
#define UNROLL 4
#endif

extern "C" __global__ void __launch_bounds__(THREADS) row_partial(const T* __restrict__ x, float* __restrict__ partial, int rows, int cols) {
    __shared__ float warp_sums[THREADS / 32];
    const int chunk = (cols + SPLITS - 1) / SPLITS;
    const int c_begin = blockIdx.x * chunk;
    const int c_end = min(cols, c_begin + chunk);
    for (int r = blockIdx.y; r < rows; r += gridDim.y) {
        const T* row = x + (long long)r * cols;
        float acc[UNROLL] = {};
        int c = c_begin + threadIdx.x;
        for (; c + (UNROLL - 1) * THREADS < c_end; c += UNROLL * THREADS) {
#pragma unroll
            for (int u = 0; u < UNROLL; u++) acc[u] += kl_to_f(row[c + u * THREADS]);
        }
        for (; c < c_end; c += THREADS) acc[0] += kl_to_f(row[c]);
        float s = 0.f;
#pragma unroll
        for (int u = 0; u < UNROLL; u++) s += acc[u];
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x / 32] = s;
        __syncthreads();
        if (threadIdx.x == 0) {
            float t = 0.f;
            for (int w = 0; w < THREADS / 32; w++) t += warp_sums[w];
            partial[(long long)r * SPLITS + blockIdx.x] = t;
        }
        __syncthreads();
    }
}

extern "C" __global__ void row_combine(const float* __restrict__ partial, float* __restrict__ y, int rows) {
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    float t = 0.f;
    for (int s = 0; s < SPLITS; s++) t += partial[(long long)r * SPLITS + s];
    y[r] = t;
}
