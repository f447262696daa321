/*
gemm/gemv_splitk.cu — memory-bound linear layer for decode (small M, 1..MMAX), split-K.

    Y[M,N] = X[M,K] · W[N,K]ᵀ  (+ R[M,N] when R != nullptr)

X, W, Y, R row-major. T = __nv_bfloat16, or __half when compiled with -DKL_FP16=1.
fp32 accumulation (CUDA-core FMAs), output cast to T.

How it works
- W is streamed exactly once: each warp owns ROWS_PER_WARP consecutive rows of W (outputs n)
  and walks its split's K-range with VEC-element vectors per lane (VEC=8 → 16-byte loads,
  ld.global.nc.L1::no_allocate), UNROLL vectors per row in flight per lane before any math.
- X is tiny and read through the read-only path (__ldg); it stays in L1/L2.
- Each lane keeps ROWS_PER_WARP × MMAX fp32 accumulators, fully unrolled over MMAX with
  `if (m < M)` guards (compile-time indices only: no local memory).
- The warp reduction is a butterfly reduce-scatter: each xor step halves the values a lane
  holds, so ROWS_PER_WARP*MMAX sums cost about that many shuffles instead of 5× as many.
- SPLITK == 1: the kernel writes Y (+R) directly. SPLITK > 1: split s covers
  [s*KS, min(K, (s+1)*KS)), KS = roundup(ceil(K/SPLITK), VEC); the kernel writes fp32 partials
  WS[(s*M + m)*N + n] (zeros for an empty range) and gemm_splitk_reduce sums the splits in
  fixed order (deterministic), adds R and casts to T.

Tunables (macros, defaults below)
    NUM_WARPS      warps per block                 ROWS_PER_WARP  W rows (outputs) per warp
    VEC            elements per lane load, 4 or 8  SPLITK         K splits, 1..16
    MMAX           max M handled, 1/2/4/8/16       UNROLL         vectors per row in flight
    KL_FP16        0 = bf16 (default), 1 = fp16
Constraints: VEC in {4,8}; MMAX in {1,2,4,8,16}; ROWS_PER_WARP in {1,2,4,8};
    1 <= SPLITK <= 16; 1 <= UNROLL <= 8; NUM_WARPS*32 <= 1024; host passes M <= MMAX.
    Register budget (not asserted; spills otherwise): ROWS_PER_WARP*MMAX <= 64,
    ROWS_PER_WARP*UNROLL <= 16. For M >= 8 this variant is FMA-bound: prefer mma_skinny.

Launch contract (host)
    entry   gemm_gemv(const T* X, const T* W, T* Y, const T* R, float* WS, int M, int N, int K)
    grid    (ceil(N / (NUM_WARPS*ROWS_PER_WARP)), SPLITK, 1)
    block   (NUM_WARPS*32, 1, 1), no dynamic shared memory
    WS      SPLITK > 1 only: SPLITK*M*N floats (may be nullptr when SPLITK == 1)
    then, SPLITK > 1 only:
    entry   gemm_splitk_reduce(const float* WS, T* Y, const T* R, int M, int N, int splits)
    grid    (ceil(M*N / 256), 1, 1), block (256, 1, 1), no dynamic shared memory
    requires K % 8 == 0, X and W 16-byte aligned, 1 <= M <= MMAX.
*/
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#ifndef KL_FP16
#define KL_FP16 0
#endif
#ifndef NUM_WARPS
#define NUM_WARPS 4
#endif
#ifndef ROWS_PER_WARP
#define ROWS_PER_WARP 1
#endif
#ifndef VEC
#define VEC 8
#endif
#ifndef SPLITK
#define SPLITK 1
#endif
#ifndef MMAX
#define MMAX 1
#endif
#ifndef UNROLL
#define UNROLL 2
#endif

#if KL_FP16
typedef __half T;
#else
typedef __nv_bfloat16 T;
#endif

static_assert(VEC == 4 || VEC == 8, "VEC must be 4 or 8");
static_assert(MMAX == 1 || MMAX == 2 || MMAX == 4 || MMAX == 8 || MMAX == 16, "MMAX in {1,2,4,8,16}");
static_assert(ROWS_PER_WARP == 1 || ROWS_PER_WARP == 2 || ROWS_PER_WARP == 4 || ROWS_PER_WARP == 8,
              "ROWS_PER_WARP in {1,2,4,8}");
static_assert(SPLITK >= 1 && SPLITK <= 16, "SPLITK in 1..16");
static_assert(UNROLL >= 1 && UNROLL <= 8, "UNROLL in 1..8");
static_assert(NUM_WARPS >= 1 && NUM_WARPS <= 32, "NUM_WARPS in 1..32");

namespace {

constexpr int RPW = ROWS_PER_WARP;
constexpr int STEP = 32 * VEC;    // elements of K a warp covers per vector step
constexpr int NV = RPW * MMAX;    // accumulators per lane (a power of two)

// VEC elements of T as raw 32-bit words
struct Vec {
    unsigned w[VEC / 2];
};

__device__ __forceinline__ Vec load_w(const T* p) {  // streaming, read-only, skip L1
    Vec v;
#if VEC == 8
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(v.w[0]), "=r"(v.w[1]), "=r"(v.w[2]), "=r"(v.w[3])
                 : "l"(p));
#else
    asm volatile("ld.global.nc.L1::no_allocate.v2.u32 {%0,%1}, [%2];\n" : "=r"(v.w[0]), "=r"(v.w[1]) : "l"(p));
#endif
    return v;
}
__device__ __forceinline__ Vec load_x(const T* p) {  // tiny, reused by every warp: cached
    Vec v;
#if VEC == 8
    const uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
    v.w[0] = u.x; v.w[1] = u.y; v.w[2] = u.z; v.w[3] = u.w;
#else
    const uint2 u = __ldg(reinterpret_cast<const uint2*>(p));
    v.w[0] = u.x; v.w[1] = u.y;
#endif
    return v;
}

__device__ __forceinline__ float2 unpack2(unsigned u) {
#if KL_FP16
    __half2 h;
    *reinterpret_cast<unsigned*>(&h) = u;
    return __half22float2(h);
#else
    // bf16 → f32 is a 16-bit shift: low element in bits 0..15
    return make_float2(__uint_as_float(u << 16), __uint_as_float(u & 0xffff0000u));
#endif
}

#include "../common/to_from_f.cuh"  // to_f, from_f: T <-> float
#include "../common/pdl.cuh"

// acc[r][m] += dot(W row r vector, X row m vector) at K offset k
__device__ __forceinline__ void fma_step(float (&acc)[RPW][MMAX], const Vec (&w)[RPW], const T* __restrict__ X,
                                         int k, int M, int K) {
    float wf[RPW][VEC];
#pragma unroll
    for (int r = 0; r < RPW; ++r)
#pragma unroll
        for (int e = 0; e < VEC / 2; ++e) {
            const float2 f = unpack2(w[r].w[e]);
            wf[r][2 * e] = f.x;
            wf[r][2 * e + 1] = f.y;
        }
#pragma unroll
    for (int m = 0; m < MMAX; ++m) {
        if (m < M) {
            const Vec xv = load_x(X + (size_t)m * K + k);
            float xf[VEC];
#pragma unroll
            for (int e = 0; e < VEC / 2; ++e) {
                const float2 f = unpack2(xv.w[e]);
                xf[2 * e] = f.x;
                xf[2 * e + 1] = f.y;
            }
#pragma unroll
            for (int r = 0; r < RPW; ++r)
#pragma unroll
                for (int e = 0; e < VEC; ++e) acc[r][m] = fmaf(wf[r][e], xf[e], acc[r][m]);
        }
    }
}

// One butterfly step at xor-offset O on a lane holding C values in v[0..C).
template <int C, int O>
__device__ __forceinline__ void reduce_scatter_step(float (&v)[NV], int lane, int& idx_base) {
    if (C > 1) {
        const bool hi = (lane & O) != 0;
#pragma unroll
        for (int i = 0; i < C / 2; ++i) {
            const float send = hi ? v[i] : v[i + C / 2];
            const float keep = hi ? v[i + C / 2] : v[i];
            v[i] = keep + __shfl_xor_sync(0xffffffffu, send, O);
        }
        if (hi) idx_base += C / 2;
    } else {
        v[0] += __shfl_xor_sync(0xffffffffu, v[0], O);
    }
}

}  // namespace

// Row n of W, rows past N reading row N-1 (valid memory, the result discarded).
__device__ __forceinline__ const T* wrow_start(const T* W, int n, int N, int K) { return W + (size_t)min(n, N - 1) * K; }

KL_PDL_AWARE(gemm_gemv)
extern "C" __global__ void __launch_bounds__(NUM_WARPS * 32, 1)  // ", 1": without it ptxas spills small configs
gemm_gemv(const T* __restrict__ X, const T* __restrict__ W, T* __restrict__ Y, const T* __restrict__ R,
          float* __restrict__ WS, int M, int N, int K) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int n_base = (blockIdx.x * NUM_WARPS + warp) * RPW;

    const int s = blockIdx.y;
    int KS = (K + SPLITK - 1) / SPLITK;
    KS = (KS + VEC - 1) / VEC * VEC;
    const int kbeg = s * KS;
    const int kend = min(K, kbeg + KS);  // may be <= kbeg: empty split, writes zeros

    // Under PDL this grid may start beside the kernel before it: W depends on no kernel of
    // the step, so each lane asks L2 for the W lines of its first main-loop step before
    // pdl_wait(); X and R are read after it.
    if (n_base < N && kbeg + lane * VEC < kend)
#pragma unroll
        for (int r = 0; r < RPW; ++r) pdl_prefetch_l2(wrow_start(W, n_base + r, N, K) + kbeg + lane * VEC);
    pdl_wait();
    if (n_base >= N) return;  // whole warp out of range (no block-level sync below)

    // rows past N read row N-1 (valid memory, result discarded)
    const T* wrow[RPW];
#pragma unroll
    for (int r = 0; r < RPW; ++r) wrow[r] = wrow_start(W, n_base + r, N, K);

    float acc[RPW][MMAX];
#pragma unroll
    for (int r = 0; r < RPW; ++r)
#pragma unroll
        for (int m = 0; m < MMAX; ++m) acc[r][m] = 0.f;

    int k = kbeg + lane * VEC;
    // main loop: UNROLL*RPW independent W loads in flight per lane, no bounds checks
    for (; k + (UNROLL - 1) * STEP < kend; k += UNROLL * STEP) {
        Vec w[UNROLL][RPW];
#pragma unroll
        for (int u = 0; u < UNROLL; ++u)
#pragma unroll
            for (int r = 0; r < RPW; ++r) w[u][r] = load_w(wrow[r] + k + u * STEP);
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) fma_step(acc, w[u], X, k + u * STEP, M, K);
    }
    // tail: fewer than UNROLL steps left for this lane
    for (; k < kend; k += STEP) {
        Vec w[RPW];
#pragma unroll
        for (int r = 0; r < RPW; ++r) w[r] = load_w(wrow[r] + k);
        fma_step(acc, w, X, k, M, K);
    }

    // The weights are streamed: let the next kernel's blocks take the SM slots this grid's
    // blocks free from here on (earlier, they would compete with its loads for residency).
    pdl_launch_dependents();
    // ---- butterfly reduce-scatter over the warp ----
    // v[i] = acc[i / MMAX][i % MMAX]. At xor-offset o (16, 8, ..., 1) while a lane holds C > 1
    // values, the lane with (lane & o) keeps the upper half, sends the lower half, and adds
    // its partner's copy of the half it keeps. After log2(C) steps one value is left, and
    // the remaining offsets are a plain xor all-reduce.
    float v[NV];
#pragma unroll
    for (int r = 0; r < RPW; ++r)
#pragma unroll
        for (int m = 0; m < MMAX; ++m) v[r * MMAX + m] = acc[r][m];

    int idx_base = 0;  // original index of v[0] on this lane
    reduce_scatter_step<NV, 16>(v, lane, idx_base);
    reduce_scatter_step<(NV > 1 ? NV / 2 : 1), 8>(v, lane, idx_base);
    reduce_scatter_step<(NV > 2 ? NV / 4 : 1), 4>(v, lane, idx_base);
    reduce_scatter_step<(NV > 4 ? NV / 8 : 1), 2>(v, lane, idx_base);
    reduce_scatter_step<(NV > 8 ? NV / 16 : 1), 1>(v, lane, idx_base);
    // lanes that hold final values: for steps where C was 1, only the lane with bit o clear
    constexpr int F = (NV >> 5) > 0 ? (NV >> 5) : 1;  // values per lane after the 5 steps
    bool owner = true;
#pragma unroll
    for (int step = 0; step < 5; ++step)
        if ((NV >> step) <= 1 && (lane & (16 >> step))) owner = false;
    if (!owner) return;

#pragma unroll
    for (int i = 0; i < F; ++i) {
        const int idx = idx_base + i;
        const int r = idx / MMAX, m = idx % MMAX;
        const int n = n_base + r;
        if (m < M && n < N) {
            if (SPLITK == 1) {
                float y = v[i];
                const size_t o = (size_t)m * N + n;
                if (R != nullptr) y += to_f(R[o]);
                Y[o] = from_f(y);
            } else {
                WS[((size_t)s * M + m) * N + n] = v[i];
            }
        }
    }
}

#include "splitk_reduce.cuh"
