// softmax_online.cu — row softmax for rows of any length (long rows that fit in neither
// registers nor shared memory: 128K-token attention rows, full-vocabulary logits).
//
// One pass computes max and sum together (online softmax: when a larger maximum appears the
// running sum is rescaled by exp(m_old - m_new)), a second pass re-reads the row and writes
// y = exp(x - m) / s. Each row is split over SPLITS blocks so that few long rows still fill
// the GPU:
//   SPLITS == 1: softmax_online does both passes itself (its slice is the whole row).
//   SPLITS  > 1: softmax_online writes each slice's (max, sum) to ws; softmax_online_finish
//                merges the row's SPLITS partials (in a fixed order, so every block of the
//                row gets identical numbers) and does the second pass over its slice.
// DRAM/L2 traffic: x is read twice (the second read of a slice often hits L2), y written once.
// Within a thread the rescale happens once per UNROLL*VEC elements (the chunk's maximum is
// found first), so the cost is about one exp per element, not two.
//
// Element type: bf16 by default, fp16 with -DKL_FP16=1, fp32 with -DKL_FP32=1.
// Tunables:
//   THREADS  threads per block (a multiple of 32)
//   VEC      elements per load/store (VEC * sizeof(T) in {2, 4, 8, 16} bytes)
//   UNROLL   vectors each thread loads before using them (loads in flight)
//   SPLITS   blocks per row
//
// Launch contract (both kernels, same geometry):
//   softmax_online(const T* x, T* y, float2* ws, int rows, int cols)
//   softmax_online_finish(const T* x, T* y, const float2* ws, int rows, int cols)
//   grid  = (rows * SPLITS, 1, 1); block = (THREADS, 1, 1); no dynamic shared memory
//   ws holds rows * SPLITS float2 (max, sum), read only when SPLITS > 1; launch
//   softmax_online_finish after softmax_online only when SPLITS > 1.
//   Slice k of a row is [k*L, min(cols, (k+1)*L)) with L = ceil(ceil(cols/SPLITS)/VEC)*VEC,
//   so slices start on vector boundaries; any cols >= 1 (scalar path when cols % VEC != 0).
//   x == y is allowed: each element is re-read and written by the same thread, after every
//   read of the first pass.
#include <cuda_fp16.h>
#include <cuda_bf16.h>

// Element type (bf16, or fp16/fp32 via KL_FP16/KL_FP32), VEC and the vector loads/stores
// shared by every memory-bound template; kernlab expands this include before compiling.
#include "../common/elementwise.cuh"

#ifndef THREADS
#define THREADS 256
#endif
#ifndef UNROLL
#define UNROLL 4
#endif
#ifndef SPLITS
#define SPLITS 1
#endif

static_assert(THREADS % 32 == 0 && THREADS <= 1024, "THREADS: whole warps, at most 1024");
static_assert(VEC * sizeof(T) <= 16, "a vector access is at most 16 bytes");
static_assert(SPLITS >= 1, "SPLITS >= 1");

#define KL_LOG2E 1.4426950408889634f
#define KL_NEG_INF __uint_as_float(0xff800000u)
#define STEP (THREADS * VEC)  // elements one block covers per vector step
// The kernels say __launch_bounds__(THREADS, 1): with the bare form ptxas on sm_90a squeezed
// 1024-thread blocks to 32 registers and spilled.

// Running (max, sum of exp(x - max)) of a set of elements.
struct Stat {
    float m, s;
};

// Merges two partial statistics; empty ones (m = -inf, s = 0) are neutral. The guard keeps
// exp(-inf - -inf) = NaN out of the sum.
__device__ __forceinline__ Stat merge(Stat a, Stat b) {
    const float m = fmaxf(a.m, b.m);
    if (m == KL_NEG_INF) return a;
    return Stat{m, a.s * exp2f((a.m - m) * KL_LOG2E) + b.s * exp2f((b.m - m) * KL_LOG2E)};
}

// Slice of the row that block `split` owns (vector-aligned starts).
__device__ __forceinline__ void slice_of(int split, int cols, int& begin, int& end) {
    const int per = ((cols + SPLITS - 1) / SPLITS + VEC - 1) / VEC * VEC;
    begin = min(split * per, cols);
    end = min(begin + per, cols);
}

// Loads the vector at xr[col] if it starts inside [.., end); padding is -inf.
template <bool ALIGNED>
__device__ __forceinline__ void load_guarded(const T* xr, int col, int end, float (&f)[VEC]) {
    if (col < end) {
        // A slice's end is a multiple of VEC or the row's end, so when cols % VEC == 0 a
        // vector that starts inside the slice lies wholly inside it.
        if (ALIGNED) kl_load(xr + col, f);
        else kl_load_tail(xr + col, end - col, f, KL_NEG_INF);
    } else {
#pragma unroll
        for (int j = 0; j < VEC; ++j) f[j] = KL_NEG_INF;
    }
}

// This thread's online statistics over the slice [begin, end).
template <bool ALIGNED>
__device__ __forceinline__ Stat thread_stats(const T* xr, int begin, int end) {
    // The scalar path (rows not vector-aligned) is for odd shapes only: one vector per step
    // keeps its registers low, so it does not raise the aligned path's register count.
    constexpr int U = ALIGNED ? UNROLL : 1;
    Stat st{KL_NEG_INF, 0.f};
    for (int base = begin + threadIdx.x * VEC; base < end; base += U * STEP) {
        float v[U][VEC];
#pragma unroll
        for (int u = 0; u < U; ++u) load_guarded<ALIGNED>(xr, base + u * STEP, end, v[u]);
        float cm = KL_NEG_INF;
#pragma unroll
        for (int u = 0; u < U; ++u)
#pragma unroll
            for (int j = 0; j < VEC; ++j) cm = fmaxf(cm, v[u][j]);
        // base < end, so the first vector holds at least one real element: cm is finite.
        const float m = fmaxf(st.m, cm);
        const float ml = m * KL_LOG2E;
        float s = st.s * exp2f((st.m - m) * KL_LOG2E);  // st.m = -inf: 0 * 0
#pragma unroll
        for (int u = 0; u < U; ++u)
#pragma unroll
            for (int j = 0; j < VEC; ++j) s += exp2f(fmaf(v[u][j], KL_LOG2E, -ml));
        st = Stat{m, s};
    }
    return st;
}

// Merges every thread's statistics; all threads get the block's result.
__device__ __forceinline__ Stat block_stats(Stat st) {
    __shared__ float sm[THREADS / 32], ss[THREADS / 32];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        Stat other{__shfl_xor_sync(0xffffffffu, st.m, o), __shfl_xor_sync(0xffffffffu, st.s, o)};
        st = merge(st, other);
    }
    if ((threadIdx.x & 31) == 0) {
        sm[threadIdx.x >> 5] = st.m;
        ss[threadIdx.x >> 5] = st.s;
    }
    __syncthreads();
    st = Stat{sm[0], ss[0]};
#pragma unroll
    for (int w = 1; w < THREADS / 32; ++w) st = merge(st, Stat{sm[w], ss[w]});
    return st;
}

// Second pass: y = exp(x - m) / s over [begin, end).
template <bool ALIGNED>
__device__ __forceinline__ void write_slice(const T* xr, T* yr, int begin, int end, Stat st) {
    // The scalar path (rows not vector-aligned) is for odd shapes only: one vector per step
    // keeps its registers low, so it does not raise the aligned path's register count.
    constexpr int U = ALIGNED ? UNROLL : 1;
    // s >= 1 (the row's maximum contributes exp(0)), so the fast reciprocal is exact enough
    // and avoids the IEEE division's slow-path call (which makes ptxas spill around it).
    const float ml = st.m * KL_LOG2E, inv = __fdividef(1.f, st.s);
    for (int base = begin + threadIdx.x * VEC; base < end; base += U * STEP) {
        float v[U][VEC];
#pragma unroll
        for (int u = 0; u < U; ++u) load_guarded<ALIGNED>(xr, base + u * STEP, end, v[u]);
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int col = base + u * STEP;
            if (col >= end) continue;
#pragma unroll
            for (int j = 0; j < VEC; ++j) v[u][j] = exp2f(fmaf(v[u][j], KL_LOG2E, -ml)) * inv;
            if (ALIGNED) kl_store(yr + col, v[u]);
            else kl_store_tail(yr + col, end - col, v[u]);
        }
    }
}

template <bool ALIGNED>
__device__ __forceinline__ void online_body(const T* x, T* y, float2* ws, int cols) {
    const long long row = blockIdx.x / SPLITS;
    const int split = blockIdx.x % SPLITS;
    int begin, end;
    slice_of(split, cols, begin, end);
    const T* xr = x + row * cols;
    const Stat st = block_stats(thread_stats<ALIGNED>(xr, begin, end));
    if (SPLITS == 1) {
        write_slice<ALIGNED>(xr, y + row * cols, begin, end, st);
    } else if (threadIdx.x == 0) {
        ws[row * SPLITS + split] = make_float2(st.m, st.s);
    }
}

template <bool ALIGNED>
__device__ __forceinline__ void finish_body(const T* x, T* y, const float2* ws, int cols) {
    const long long row = blockIdx.x / SPLITS;
    const int split = blockIdx.x % SPLITS;
    int begin, end;
    slice_of(split, cols, begin, end);
    Stat st{KL_NEG_INF, 0.f};
    for (int k = 0; k < SPLITS; ++k) {  // fixed order: identical (m, s) in every block of the row
        const float2 p = ws[row * SPLITS + k];
        st = merge(st, Stat{p.x, p.y});
    }
    write_slice<ALIGNED>(x + row * cols, y + row * cols, begin, end, st);
}

extern "C" __global__ void __launch_bounds__(THREADS, 1) softmax_online(const T* x, T* y, float2* ws, int rows, int cols) {
    if (blockIdx.x >= (unsigned)rows * SPLITS) return;  // whole block: no barrier is skipped by part of it
    if (cols % VEC == 0) online_body<true>(x, y, ws, cols);
    else online_body<false>(x, y, ws, cols);
}

extern "C" __global__ void __launch_bounds__(THREADS, 1) softmax_online_finish(const T* x, T* y, const float2* ws, int rows, int cols) {
    if (blockIdx.x >= (unsigned)rows * SPLITS) return;
    if (cols % VEC == 0) finish_body<true>(x, y, ws, cols);
    else finish_body<false>(x, y, ws, cols);
}
