// tiled_gemm.cu — y[M][N] = x[M][K] · w[N][K]ᵀ, the classic register-blocked shared-memory
// SIMT GEMM (no tensor cores, so each variant compiles in a fraction of a second). Its many
// tunables make a space of >10,000 valid candidates: exhaustive ground truth for replaying
// search strategies. Every combination the sweep file allows is correct at any shape: M, N
// and K tails are bounds-checked, and vector loads are used only where aligned.
//
// Block: THREADS = (BM/TM)·(BN/TN) threads, 1-D. Thread (ty, tx) computes the TM×TN outputs
// at rows ty + i·(BM/TM), cols tx + j·(BN/TN) of the BM×BN block tile (strided, so the
// threads of a warp read neighbouring shared-memory words). Grid (ceil(N/BN), ceil(M/BM)).
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <kernlab/element_type.cuh>  // T, kl_to_f, kl_from_f (built into kernlab)

#ifndef BM
#define BM 64          // block tile rows (of x and y)
#endif
#ifndef BN
#define BN 64          // block tile cols (rows of w)
#endif
#ifndef BK
#define BK 16          // k-slice per shared-memory tile; a multiple of VEC
#endif
#ifndef TM
#define TM 4           // per-thread register tile rows
#endif
#ifndef TN
#define TN 4           // per-thread register tile cols
#endif
#ifndef VEC
#define VEC 4          // elements per global load along K: 1, 2, 4, 8
#endif
#ifndef PAD
#define PAD 1          // shared-memory row padding (floats) against bank conflicts
#endif
#ifndef DOUBLE_BUF
#define DOUBLE_BUF 1   // 1: load the next tile into registers before computing this one
#endif
#ifndef UNROLL
#define UNROLL 4       // unroll factor of the inner k loop
#endif
#ifndef TRANSPOSE_A_SMEM
#define TRANSPOSE_A_SMEM 1  // 1: x tile stored k-major (As[k][m]), 0: row-major (As[m][k])
#endif

#define TY (BM / TM)
#define TX (BN / TN)
#define THREADS (TY * TX)
#define GROUPS_A (BM * BK / VEC)                       // VEC-wide loads per x tile
#define GROUPS_B (BN * BK / VEC)
#define LOADS_A ((GROUPS_A + THREADS - 1) / THREADS)   // per thread, the last ones guarded
#define LOADS_B ((GROUPS_B + THREADS - 1) / THREADS)
#define PRAGMA(x) _Pragma(#x)
#define PRAGMA_UNROLL(n) PRAGMA(unroll n)

#if TRANSPOSE_A_SMEM
#define AS(k, m) As[k][m]
#else
#define AS(k, m) As[m][k]
#endif

// A VEC-element chunk, aligned so one load instruction (up to 16 bytes) fetches it.
struct __align__(sizeof(T) * VEC) Chunk { T v[VEC]; };

// Row `row`, elements k..k+VEC-1 of a rows×K row-major matrix, as floats; zeros past the
// edges. The vector load is taken only when the whole chunk is inside and aligned.
__device__ __forceinline__ void load_chunk(const T* __restrict__ src, int rows, int K, int row, int k,
                                           bool vec_ok, float* out) {
    const T* p = src + (long long)row * K + k;
    if (row < rows && vec_ok && k + VEC <= K) {
        const Chunk c = *reinterpret_cast<const Chunk*>(p);
#pragma unroll
        for (int v = 0; v < VEC; v++) out[v] = kl_to_f(c.v[v]);
    } else {
#pragma unroll
        for (int v = 0; v < VEC; v++) out[v] = (row < rows && k + v < K) ? kl_to_f(p[v]) : 0.f;
    }
}

extern "C" __global__ void __launch_bounds__(THREADS)
tiled_gemm(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y, int M, int N, int K) {
#if TRANSPOSE_A_SMEM
    __shared__ float As[BK][BM + PAD];
#else
    __shared__ float As[BM][BK + PAD];
#endif
    __shared__ float Bs[BK][BN + PAD];
    const int tid = threadIdx.x, tx = tid % TX, ty = tid / TX;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    // Rows start at multiples of K elements: aligned chunks need K % VEC == 0 and an aligned base.
    const bool vec_x = VEC > 1 && K % VEC == 0 && ((unsigned long long)x % (sizeof(T) * VEC)) == 0;
    const bool vec_w = VEC > 1 && K % VEC == 0 && ((unsigned long long)w % (sizeof(T) * VEC)) == 0;

    float ra[LOADS_A][VEC], rb[LOADS_B][VEC];
    auto load_tiles = [&](int k0) {
#pragma unroll
        for (int l = 0; l < LOADS_A; l++) {
            const int g = tid + l * THREADS;
            if (g < GROUPS_A) load_chunk(x, M, K, m0 + g / (BK / VEC), k0 + (g % (BK / VEC)) * VEC, vec_x, ra[l]);
        }
#pragma unroll
        for (int l = 0; l < LOADS_B; l++) {
            const int g = tid + l * THREADS;
            if (g < GROUPS_B) load_chunk(w, N, K, n0 + g / (BK / VEC), k0 + (g % (BK / VEC)) * VEC, vec_w, rb[l]);
        }
    };
    auto store_tiles = [&]() {
#pragma unroll
        for (int l = 0; l < LOADS_A; l++) {
            const int g = tid + l * THREADS;
            if (g < GROUPS_A) {
                const int r = g / (BK / VEC), kc = (g % (BK / VEC)) * VEC;
#pragma unroll
                for (int v = 0; v < VEC; v++) AS(kc + v, r) = ra[l][v];
            }
        }
#pragma unroll
        for (int l = 0; l < LOADS_B; l++) {
            const int g = tid + l * THREADS;
            if (g < GROUPS_B) {
                const int r = g / (BK / VEC), kc = (g % (BK / VEC)) * VEC;
#pragma unroll
                for (int v = 0; v < VEC; v++) Bs[kc + v][r] = rb[l][v];
            }
        }
    };

    float acc[TM][TN] = {};
    load_tiles(0);
    for (int k0 = 0; k0 < K; k0 += BK) {
        store_tiles();
        __syncthreads();
        const bool more = k0 + BK < K;
        // Issued before the math, the next tile's global loads overlap it.
        if (DOUBLE_BUF && more) load_tiles(k0 + BK);
        PRAGMA_UNROLL(UNROLL)
        for (int kk = 0; kk < BK; kk++) {
            float a[TM], b[TN];
#pragma unroll
            for (int i = 0; i < TM; i++) a[i] = AS(kk, ty + i * TY);
#pragma unroll
            for (int j = 0; j < TN; j++) b[j] = Bs[kk][tx + j * TX];
#pragma unroll
            for (int i = 0; i < TM; i++)
#pragma unroll
                for (int j = 0; j < TN; j++) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
        if (!DOUBLE_BUF && more) load_tiles(k0 + BK);
    }
#pragma unroll
    for (int i = 0; i < TM; i++) {
        const int m = m0 + ty + i * TY;
#pragma unroll
        for (int j = 0; j < TN; j++) {
            const int n = n0 + tx + j * TX;
            if (m < M && n < N) y[(long long)m * N + n] = kl_from_f(acc[i][j]);
        }
    }
}
