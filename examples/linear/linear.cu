// linear.cu — y[M][N] = x[M][K] · w[N][K]ᵀ with shared-memory tiles, fp32 accumulation:
// the textbook tiled GEMM, to show a cuBLAS reference. Block (TILE, TILE / TM): each thread
// computes TM outputs of one column, rows TILE/TM apart. Grid (ceil(N/TILE), ceil(M/TILE)).
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <kernlab/element_type.cuh>  // T, kl_to_f, kl_from_f (built into kernlab)

#ifndef TILE
#define TILE 32
#endif
#ifndef TM
#define TM 4
#endif
#define STEP (TILE / TM)

extern "C" __global__ void linear(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y, int M, int N, int K) {
    __shared__ float xs[TILE][TILE + 1];
    __shared__ float ws[TILE][TILE + 1];
    const int m0 = blockIdx.y * TILE, n0 = blockIdx.x * TILE;
    const int tx = threadIdx.x, ty = threadIdx.y;
    float acc[TM] = {};
    for (int k0 = 0; k0 < K; k0 += TILE) {
        for (int i = ty; i < TILE; i += STEP) {
            const int m = m0 + i, n = n0 + i, k = k0 + tx;
            xs[i][tx] = (m < M && k < K) ? kl_to_f(x[(long long)m * K + k]) : 0.f;
            ws[i][tx] = (n < N && k < K) ? kl_to_f(w[(long long)n * K + k]) : 0.f;
        }
        __syncthreads();
#pragma unroll 8
        for (int k = 0; k < TILE; k++) {
            const float b = ws[tx][k];
#pragma unroll
            for (int j = 0; j < TM; j++) acc[j] += xs[ty + j * STEP][k] * b;
        }
        __syncthreads();
    }
#pragma unroll
    for (int j = 0; j < TM; j++) {
        const int m = m0 + ty + j * STEP, n = n0 + tx;
        if (m < M && n < N) y[(long long)m * N + n] = kl_from_f(acc[j]);
    }
}
