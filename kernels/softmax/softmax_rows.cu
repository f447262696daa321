// softmax_rows.cu — row softmax for rows that fit in registers (short rows: vocab slices,
// attention scores, the 4096-wide rows of Llama-3 shapes).
//
//   y[r, :] = exp(x[r, :] - max(x[r, :])) / sum(exp(x[r, :] - max(x[r, :])))
//
// Each row is owned by THREADS_PER_ROW consecutive threads that load it once into registers
// (CHUNKS vectors of VEC elements per thread, 16-byte coalesced loads when VEC*sizeof(T)
// == 16), reduce max and sum across the group (shuffles, plus shared memory when a row
// spans several warps) and write it once: DRAM sees exactly one read and one write.
// Math in fp32; exp via exp2f on pre-scaled inputs (one MUFU.EX2 per element).
//
// Element type: bf16 by default, fp16 with -DKL_FP16=1, fp32 with -DKL_FP32=1.
// Tunables:
//   ROWS_PER_BLOCK   rows per thread block (1, 2, 4, ...)
//   THREADS_PER_ROW  threads cooperating on one row; a power of two, 8..1024
//   VEC              elements per load/store (VEC * sizeof(T) in {2, 4, 8, 16} bytes)
//   CHUNKS           vectors per thread; the row capacity is THREADS_PER_ROW*VEC*CHUNKS
//
// Launch contract:
//   softmax_rows(const T* x, T* y, int rows, int cols)
//   grid  = (ceil(rows / ROWS_PER_BLOCK), 1, 1)
//   block = (ROWS_PER_BLOCK * THREADS_PER_ROW, 1, 1), no dynamic shared memory
//   requires cols <= THREADS_PER_ROW * VEC * CHUNKS (columns beyond are left unwritten);
//   any cols >= 1 otherwise: when cols % VEC != 0 the rows are not 16-byte aligned and the
//   kernel takes a scalar path (correct, slower). x and y may be the same buffer.
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

#define KL_LOG2E 1.4426950408889634f
#define KL_NEG_INF __uint_as_float(0xff800000u)

struct MaxOp { __device__ float operator()(float a, float b) const { return fmaxf(a, b); } };
struct SumOp { __device__ float operator()(float a, float b) const { return a + b; } };

// Reduces v over the THREADS_PER_ROW threads of one row; every thread of the row gets the
// result. `red` is this row's WARPS_PER_ROW slots of shared memory. Every thread of the block
// must call it (it may hold a barrier).
template <typename Op>
__device__ __forceinline__ float row_reduce(float v, float* red, int t, Op op) {
    constexpr int W = THREADS_PER_ROW < 32 ? THREADS_PER_ROW : 32;
#pragma unroll
    for (int o = W / 2; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (THREADS_PER_ROW > 32) {
        if ((t & 31) == 0) red[t >> 5] = v;
        __syncthreads();
        v = red[0];
#pragma unroll
        for (int w = 1; w < WARPS_PER_ROW; ++w) v = op(v, red[w]);
    }
    return v;
}

template <bool ALIGNED>
__device__ __forceinline__ void softmax_body(const T* x, T* y, int rows, int cols, float* red_max, float* red_sum) {
    const int rib = threadIdx.x / THREADS_PER_ROW;  // row within the block
    const int t = threadIdx.x % THREADS_PER_ROW;
    const long long row = (long long)blockIdx.x * ROWS_PER_BLOCK + rib;
    // Rows past the end still run the reductions (they hold barriers) but touch no memory.
    const bool live = row < rows;
    const T* xr = x + (live ? row : 0) * (long long)cols;
    T* yr = y + (live ? row : 0) * (long long)cols;

    float v[CHUNKS][VEC];
    float m = KL_NEG_INF;
#pragma unroll
    for (int c = 0; c < CHUNKS; ++c) {
        const int col = (c * THREADS_PER_ROW + t) * VEC;
        if (live && col < cols) {
            if (ALIGNED) kl_load(xr + col, v[c]);  // cols % VEC == 0: a whole vector is in the row
            else kl_load_tail(xr + col, cols - col, v[c], KL_NEG_INF);
        } else {
#pragma unroll
            for (int j = 0; j < VEC; ++j) v[c][j] = KL_NEG_INF;
        }
#pragma unroll
        for (int j = 0; j < VEC; ++j) m = fmaxf(m, v[c][j]);
    }
    m = row_reduce(m, red_max + rib * WARPS_PER_ROW, t, MaxOp());

    // exp(x - m) = 2^(x*log2e - m*log2e): one FFMA + one EX2. Padding (-inf) gives 0; a dead
    // row (m = -inf) gives NaN, which it never stores.
    const float ml = m * KL_LOG2E;
    float s = 0.f;
#pragma unroll
    for (int c = 0; c < CHUNKS; ++c)
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            v[c][j] = exp2f(fmaf(v[c][j], KL_LOG2E, -ml));
            s += v[c][j];
        }
    s = row_reduce(s, red_sum + rib * WARPS_PER_ROW, t, SumOp());
    // s >= 1 (the maximum contributes exp(0)): the fast reciprocal suffices and avoids the
    // IEEE division's slow-path call.
    const float inv = __fdividef(1.f, s);

#pragma unroll
    for (int c = 0; c < CHUNKS; ++c) {
        const int col = (c * THREADS_PER_ROW + t) * VEC;
        if (!live || col >= cols) continue;
#pragma unroll
        for (int j = 0; j < VEC; ++j) v[c][j] *= inv;
        if (ALIGNED) kl_store(yr + col, v[c]);
        else kl_store_tail(yr + col, cols - col, v[c]);
    }
}

// (N, 1): with the bare __launch_bounds__(N), ptxas squeezed some configurations below
// their need and spilled; a minimum of one block lets it use what the code needs.
extern "C" __global__ void __launch_bounds__(NTHREADS, 1) softmax_rows(const T* x, T* y, int rows, int cols) {
    // Separate slots for the two reductions: no barrier is needed between them.
    __shared__ float red_max[ROWS_PER_BLOCK * WARPS_PER_ROW];
    __shared__ float red_sum[ROWS_PER_BLOCK * WARPS_PER_ROW];
    if (cols % VEC == 0) softmax_body<true>(x, y, rows, cols, red_max, red_sum);
    else softmax_body<false>(x, y, rows, cols, red_max, red_sum);
}
