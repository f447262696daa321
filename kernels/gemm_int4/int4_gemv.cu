// int4_gemv.cu — W4A16 decode GEMV/skinny GEMM: Y[M,N] = X[M,K] · dequant(W)ᵀ (+ R[M,N]).
//
// For decode (M = 1..16). Streams the packed int4 weights exactly once with 16-byte
// non-allocating loads, dequantizes in registers with a lookup-free bit trick, accumulates in
// fp32. Each warp owns ROWS_PER_WARP output columns n (rows of W); its 32 lanes walk K in
// chunks of VEC words (8*VEC codes) so one warp-wide load covers 32*VEC*4 contiguous bytes of
// a weight row. X is re-read from L1/L2 (tiny), never staged.
//
// Weight format (docs/int4-format.md): Wq u32 [N][K/8], word j of row n = codes of columns
// 8j..8j+7, nibble position p holds column 8j + {0,2,4,6,1,3,5,7}[p]; scales [K/GROUP][N]
// (f16 or bf16 bits); zeros per ZERO_MODE, [K/GROUP][N]. Dequant here is exact in fp32:
// ((bits 0x43000000 | q<<16) = 128+q) * s - (128+z)*s in one fma, which is exact for
// |q - z| <= 16 and a 16-bit scale, so only the fp32 summation order differs from an f64
// reference (quant::reference, WeightRounding::Exact).
//
// Tunables (all have defaults; any value meeting the constraints compiles):
//   KL_FP16        0: X, R, Y are bf16 (default); 1: fp16
//   KL_SCALE_FP16  dtype of scales/mins: 1 = f16, 0 = bf16 (default: same as KL_FP16)
//   GROUP          group size along K (default 128); GROUP % (8*VEC) == 0
//   ZERO_MODE      0: symmetric, value (q-8)*s (default); 1: u8 zero points, (q-z)*s;
//                  2: float minimums in the scale dtype, q*s + m  (SYMMETRIC=1/0 maps to 0/1)
//   M_MAX          largest M a launch may pass (default 16); sweeps set it to the shape's M
//   NUM_WARPS      warps per block (default 4)
//   ROWS_PER_WARP  output columns per warp (default 2)
//   VEC            u32 words per lane per load: 1, 2 or 4 (4-, 8-, 16-byte loads; default 4)
//   SPLITK         K splits (default 1); >1 writes fp32 partials and needs int4_splitk_reduce
//
// Launch contract:
//   extern "C" __global__ void int4_gemv(const T* X, const unsigned* Wq,
//       const unsigned short* scales, const void* zeros, const T* R, T* Y, float* ws,
//       int M, int N, int K)
//     T = __nv_bfloat16 (or __half with KL_FP16=1). zeros: ZERO_MODE 0: ignored (may be NULL),
//     1: const unsigned char* [K/GROUP][N], 2: const unsigned short* [K/GROUP][N].
//     R nullable (no residual). SPLITK == 1: Y written, ws ignored (may be NULL).
//     SPLITK > 1: ws (fp32 [SPLITK][M][N]) fully written, Y and R not touched; then launch
//     int4_splitk_reduce. No memset needed.
//     grid  = (ceil(N / (NUM_WARPS*ROWS_PER_WARP)), SPLITK, 1)
//     block = (32*NUM_WARPS, 1, 1), dynamic shared memory = 0
//   extern "C" __global__ void int4_splitk_reduce(const float* ws, const T* R, T* Y,
//       int M, int N)
//     Y[m][n] = sum_{s=0..SPLITK-1} ws[s][m][n] (this order, deterministic) + R[m][n]
//     grid = (ceil(M*N / 256), 1, 1), block = (256, 1, 1), dynamic shared memory = 0
//   Requirements: 1 <= M <= M_MAX; K % GROUP == 0; X, Wq 16-byte aligned (cudaMalloc is);
//   N arbitrary (rows past N are predicated off).

#include "int4_common.cuh"

#ifndef M_MAX
#define M_MAX 16
#endif
#ifndef NUM_WARPS
#define NUM_WARPS 4
#endif
#ifndef ROWS_PER_WARP
#define ROWS_PER_WARP 2
#endif
#ifndef VEC
#define VEC 4
#endif
#ifndef SPLITK
#define SPLITK 1
#endif

#if VEC != 1 && VEC != 2 && VEC != 4
#error "VEC must be 1, 2 or 4"
#endif
#if GROUP % (8 * VEC) != 0
#error "GROUP must be a multiple of 8*VEC (a lane's chunk must lie in one group)"
#endif

// Streaming load of VEC words that will not be reused: skip L1 so X stays there.
struct WordVec { u32 w[VEC]; };
__device__ __forceinline__ WordVec load_words(const u32* p) {
    WordVec v;
#if VEC == 4
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.w[0]), "=r"(v.w[1]), "=r"(v.w[2]), "=r"(v.w[3]) : "l"(p));
#elif VEC == 2
    asm volatile("ld.global.nc.L1::no_allocate.v2.u32 {%0,%1}, [%2];"
                 : "=r"(v.w[0]), "=r"(v.w[1]) : "l"(p));
#else
    asm volatile("ld.global.nc.L1::no_allocate.u32 %0, [%1];" : "=r"(v.w[0]) : "l"(p));
#endif
    return v;
}


// 8 consecutive activations (one 16-byte load) as fp32.
__device__ __forceinline__ void load_x8(const act_t* p, float* x) {
    uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
    u32 w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
#if KL_FP16
        float2 f = __half22float2(*reinterpret_cast<__half2*>(&w[i]));
        x[2 * i] = f.x;
        x[2 * i + 1] = f.y;
#else
        x[2 * i] = __uint_as_float(w[i] << 16);
        x[2 * i + 1] = __uint_as_float(w[i] & 0xFFFF0000u);
#endif
    }
}

// fp32 128 + q for column c (0..7) of a word: move the nibble of column c to bits 16..19
// under the exponent of 128.0f (ulp 1 there). Column c sits at position {0,4,1,5,2,6,3,7}[c].
template <int C>
__device__ __forceinline__ float nibble_128(u32 w) {
    constexpr int pos = (C % 2 == 0) ? C / 2 : 4 + C / 2;
    constexpr int sh = 4 * pos;
    u32 v = sh <= 16 ? (w << (16 - sh)) : (w >> (sh - 16));
    return __uint_as_float((v & 0x000F0000u) | 0x43000000u);
}

// Per (row, group) dequant constants: value = fma(128+q, s, c) for modes 0/1 (exact),
// value = fma((128+q) - 128, s, c) with c = min for mode 2 (one rounding).
struct GemvDeq { float s, c; };

__device__ __forceinline__ GemvDeq group_consts(const unsigned short* scales, const void* zeros,
                                            int g, int n, int N) {
    GemvDeq d;
    size_t idx = (size_t)g * N + n;
    d.s = scale_to_float(__ldg(scales + idx));
#if ZERO_MODE == 0
    d.c = -136.0f * d.s;
#elif ZERO_MODE == 1
    d.c = -(128.0f + (float)__ldg(reinterpret_cast<const unsigned char*>(zeros) + idx)) * d.s;
#else
    d.c = scale_to_float(__ldg(reinterpret_cast<const unsigned short*>(zeros) + idx));
#endif
    return d;
}

template <int C>
__device__ __forceinline__ float dequant(u32 w, GemvDeq d) {
#if ZERO_MODE == 2
    return fmaf(nibble_128<C>(w) - 128.0f, d.s, d.c);
#else
    return fmaf(nibble_128<C>(w), d.s, d.c);
#endif
}

__device__ __forceinline__ void dequant8(u32 w, GemvDeq d, float* o) {
    o[0] = dequant<0>(w, d); o[1] = dequant<1>(w, d);
    o[2] = dequant<2>(w, d); o[3] = dequant<3>(w, d);
    o[4] = dequant<4>(w, d); o[5] = dequant<5>(w, d);
    o[6] = dequant<6>(w, d); o[7] = dequant<7>(w, d);
}

// No __launch_bounds__: with it ptxas 13.0 caps registers low enough to spill at M_MAX >= 8.
extern "C" __global__ void
int4_gemv(const act_t* __restrict__ X, const u32* __restrict__ Wq,
          const unsigned short* __restrict__ scales, const void* __restrict__ zeros,
          const act_t* __restrict__ R, act_t* __restrict__ Y, float* __restrict__ ws,
          int M, int N, int K) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int row0 = (blockIdx.x * NUM_WARPS + warp) * ROWS_PER_WARP;
    if (row0 >= N) return;  // whole warp leaves together: no partial-warp shuffles below

    const int words_per_row = K / 8;
    const int chunks = K / (8 * VEC);
    const int c_begin = (int)((long long)chunks * blockIdx.y / SPLITK);
    const int c_end = (int)((long long)chunks * (blockIdx.y + 1) / SPLITK);

    float acc[ROWS_PER_WARP][M_MAX];
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; r++)
#pragma unroll
        for (int m = 0; m < M_MAX; m++) acc[r][m] = 0.0f;

    for (int c = c_begin + lane; c < c_end; c += 32) {
        const int k0 = c * 8 * VEC;
        const int g = k0 / GROUP;
        WordVec wv[ROWS_PER_WARP];
        GemvDeq dq[ROWS_PER_WARP];
        // Issue every weight load of this step before any math, for memory-level parallelism.
#pragma unroll
        for (int r = 0; r < ROWS_PER_WARP; r++) {
            const int n = min(row0 + r, N - 1);  // rows past N recompute row N-1, never stored
            wv[r] = load_words(Wq + (size_t)n * words_per_row + (size_t)c * VEC);
        }
#pragma unroll
        for (int r = 0; r < ROWS_PER_WARP; r++)
            dq[r] = group_consts(scales, zeros, g, min(row0 + r, N - 1), N);

#pragma unroll
        for (int v = 0; v < VEC; v++) {
            float wf[ROWS_PER_WARP][8];
#pragma unroll
            for (int r = 0; r < ROWS_PER_WARP; r++) dequant8(wv[r].w[v], dq[r], wf[r]);
#pragma unroll
            for (int m = 0; m < M_MAX; m++) {
                if (m < M) {
                    float x[8];
                    load_x8(X + (size_t)m * K + k0 + 8 * v, x);
#pragma unroll
                    for (int r = 0; r < ROWS_PER_WARP; r++)
#pragma unroll
                        for (int e = 0; e < 8; e++) acc[r][m] = fmaf(x[e], wf[r][e], acc[r][m]);
                }
            }
        }
    }

    // Butterfly reduction: afterwards every lane holds every sum; lane j stores entry j.
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; r++) {
#pragma unroll
        for (int m = 0; m < M_MAX; m++) {
            if (m < M) {
                float v = acc[r][m];
#pragma unroll
                for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
                const int n = row0 + r;
                if (lane == (r * M_MAX + m) % 32 && n < N) {
#if SPLITK == 1
                    if (R) v += act_to_float(R[(size_t)m * N + n]);
                    Y[(size_t)m * N + n] = float_to_act(v);
#else
                    ws[((size_t)blockIdx.y * M + m) * N + n] = v;
#endif
                }
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(256)
int4_splitk_reduce(const float* __restrict__ ws, const act_t* __restrict__ R,
                   act_t* __restrict__ Y, int M, int N) {
    const size_t i = (size_t)blockIdx.x * 256 + threadIdx.x;
    const size_t total = (size_t)M * N;
    if (i >= total) return;
    float v = 0.0f;
#pragma unroll
    for (int s = 0; s < SPLITK; s++) v += ws[s * total + i];
    if (R) v += act_to_float(R[i]);
    Y[i] = float_to_act(v);
}
