// rmsnorm_rows.cu — RMSNorm with an optional fused residual add, one pass over each row.
//
//   with h:    r = x + h (rounded to T and written to res_out: the new residual stream)
//              y = r * rsqrt(mean(r^2) + eps) * w
//   h == NULL: y = x * rsqrt(mean(x^2) + eps) * w            (res_out is not touched)
//
// The norm is computed from the rounded sum, so y is exactly the norm of the residual that
// is stored (what the next layer adds to). Each row is owned by THREADS_PER_ROW consecutive
// threads that hold it in registers (CHUNKS vectors of VEC elements per thread) between the
// sum of squares and the scaling, so x and h are read once and res_out and y written once.
// Math in fp32. Llama-3: dim 4096, eps 1e-5.
//
// Element type: bf16 by default, fp16 with -DKL_FP16=1, fp32 with -DKL_FP32=1.
// Tunables:
//   ROWS_PER_BLOCK   rows per thread block
//   THREADS_PER_ROW  threads cooperating on one row; a power of two, 8..1024
//   VEC              elements per load/store (VEC * sizeof(T) in {2, 4, 8, 16} bytes)
//   CHUNKS           vectors per thread; the row capacity is THREADS_PER_ROW*VEC*CHUNKS
//
// Launch contract:
//   rmsnorm_rows(const T* x, const T* h, T* res_out, T* y, const T* w, float eps,
//                int rows, int dim)
//   grid  = (ceil(rows / ROWS_PER_BLOCK), 1, 1)
//   block = (ROWS_PER_BLOCK * THREADS_PER_ROW, 1, 1), no dynamic shared memory
//   requires dim <= THREADS_PER_ROW * VEC * CHUNKS; any dim >= 1 otherwise (scalar path
//   when dim % VEC != 0). res_out may equal x (the residual stream updated in place) and y
//   may equal x when h == NULL: every element is read before it is written, by the same
//   thread. h, res_out and y must not otherwise overlap.
#include <cuda_fp16.h>
#include <cuda_bf16.h>

// Element type (bf16, or fp16/fp32 via KL_FP16/KL_FP32), VEC and the vector loads/stores
// shared by every memory-bound template; kernlab expands this include before compiling.
#include "../common/elementwise.cuh"

#ifndef ROWS_PER_BLOCK
#define ROWS_PER_BLOCK 1
#endif
#ifndef THREADS_PER_ROW
#define THREADS_PER_ROW 256
#endif
#ifndef CHUNKS
#define CHUNKS 2
#endif

#include "../common/row_threads.cuh"  // NTHREADS, WARPS_PER_ROW and their checks
#include "../common/pdl.cuh"  // pdl_wait, pdl_launch_dependents, KL_PDL_AWARE

// Sum over the THREADS_PER_ROW threads of one row; all of them get it. Every thread of the
// block must call it (it may hold a barrier).
__device__ __forceinline__ float row_sum(float v, float* red, int t) {
    constexpr int W = THREADS_PER_ROW < 32 ? THREADS_PER_ROW : 32;
#pragma unroll
    for (int o = W / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (THREADS_PER_ROW > 32) {
        if ((t & 31) == 0) red[t >> 5] = v;
        __syncthreads();
        v = red[0];
#pragma unroll
        for (int w = 1; w < WARPS_PER_ROW; ++w) v += red[w];
    }
    return v;
}

template <bool ALIGNED>
__device__ __forceinline__ void load_part(const T* p, int col, int dim, float (&f)[VEC]) {
    if (ALIGNED) kl_load(p + col, f);  // dim % VEC == 0 and col < dim: the whole vector is in the row
    else kl_load_tail(p + col, dim - col, f, 0.f);
}
template <bool ALIGNED>
__device__ __forceinline__ void store_part(T* p, int col, int dim, const float (&f)[VEC]) {
    if (ALIGNED) kl_store(p + col, f);
    else kl_store_tail(p + col, dim - col, f);
}

template <bool ALIGNED>
__device__ __forceinline__ void rmsnorm_body(const T* x, const T* h, T* res_out, T* y, const T* w, float eps,
                                             int rows, int dim, float* red) {
    const int rib = threadIdx.x / THREADS_PER_ROW;
    const int t = threadIdx.x % THREADS_PER_ROW;
    const long long row = (long long)blockIdx.x * ROWS_PER_BLOCK + rib;
    const bool live = row < rows;  // dead rows still join the reduction's barrier
    const long long off = (live ? row : 0) * (long long)dim;
    const bool add = h != nullptr;

    float v[CHUNKS][VEC];
    float ss = 0.f;
#pragma unroll
    for (int c = 0; c < CHUNKS; ++c) {
        const int col = (c * THREADS_PER_ROW + t) * VEC;
#pragma unroll
        for (int j = 0; j < VEC; ++j) v[c][j] = 0.f;
        if (live && col < dim) {
            load_part<ALIGNED>(x + off, col, dim, v[c]);
            if (add) {
                float hv[VEC];
                load_part<ALIGNED>(h + off, col, dim, hv);
#pragma unroll
                for (int j = 0; j < VEC; ++j) v[c][j] = kl_to_f(kl_from_f(v[c][j] + hv[j]));
                // Same thread, same elements as its loads of x: safe when res_out == x.
                store_part<ALIGNED>(res_out + off, col, dim, v[c]);
            }
        }
#pragma unroll
        for (int j = 0; j < VEC; ++j) ss = fmaf(v[c][j], v[c][j], ss);
    }
    ss = row_sum(ss, red + rib * WARPS_PER_ROW, t);
    const float inv = rsqrtf(ss / (float)dim + eps);

#pragma unroll
    for (int c = 0; c < CHUNKS; ++c) {
        const int col = (c * THREADS_PER_ROW + t) * VEC;
        if (!live || col >= dim) continue;
        float wv[VEC];
        load_part<ALIGNED>(w, col, dim, wv);
#pragma unroll
        for (int j = 0; j < VEC; ++j) v[c][j] = v[c][j] * inv * wv[j];
        store_part<ALIGNED>(y + off, col, dim, v[c]);
    }
}

// (N, 1): with the bare __launch_bounds__(N), ptxas squeezed some configurations below
// their need and spilled; a minimum of one block lets it use what the code needs.
KL_PDL_AWARE(rmsnorm_rows)
extern "C" __global__ void __launch_bounds__(NTHREADS, 1)
rmsnorm_rows(const T* x, const T* h, T* res_out, T* y, const T* w, float eps, int rows, int dim) {
    pdl_wait();  // before any read of an earlier kernel's output or any write
    pdl_launch_dependents();
    __shared__ float red[ROWS_PER_BLOCK * WARPS_PER_ROW];
    if (dim % VEC == 0) rmsnorm_body<true>(x, h, res_out, y, w, eps, rows, dim, red);
    else rmsnorm_body<false>(x, h, res_out, y, w, eps, rows, dim, red);
}
