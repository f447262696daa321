// int8_gemv.cu — W8A16 decode GEMV/skinny GEMM: Y[M,N] = X[M,K] · dequant(W)ᵀ (+ R[M,N]).
//
// For decode (M = 1..16), memory-bound: streams the int8 weights exactly once with 16-byte
// non-allocating loads (16 codes a load), turns each code into an exact fp32 integer with a
// byte permute and one subtraction, and accumulates sum_k x[m][k]·q[n][k] in fp32; the row's
// scale multiplies the sum once at the end. Each warp owns ROWS_PER_WARP output columns n
// (rows of W); lane l of the warp reads chunks l, l + 32, ... of 16 codes, so one warp-wide
// load covers 512 contiguous bytes of a weight row, and UNROLL such loads per row are in
// flight before any math. X (tiny) is re-read from L1/L2 with 16-byte loads, never staged.
//
// Weight format (src/quant/int8.rs, `Int8Weight`): Wq i8 row-major [N][K]; scales [N] 16-bit
// float bits of the activation dtype (bf16, or fp16 with KL_FP16); value = q·scale. The code
// is exact in fp32 and so is the sum's every product with a bf16/fp16 x, so only the fp32
// summation order and the one multiplication by the scale differ from an exact product.
//
// Tunables (all have defaults; any value meeting the constraints compiles):
//   KL_FP16        0: X, R, Y and the scales are bf16 (default); 1: fp16
//   M_MAX          largest M a launch may pass, 1..16 (default 16); sweeps set it to the
//                  smallest power of two >= M (the accumulators are [ROWS_PER_WARP][M_MAX])
//   NUM_WARPS      warps per block, 1..32 (default 4)
//   ROWS_PER_WARP  weight rows (output columns) per warp (default 2)
//   UNROLL         16-byte chunks per lane and row loaded before the math (default 2)
//   SPLITK         K splits (default 1); > 1 writes fp32 partials and needs gemm_splitk_reduce
//
// Launch contract:
//   extern "C" __global__ void int8_gemv(const T* X, const signed char* Wq,
//       const unsigned short* scales, const T* R, T* Y, float* ws, int M, int N, int K)
//     T = __nv_bfloat16 (or __half with KL_FP16=1). R nullable (no residual); R may equal Y
//     (each output is read by the thread that then writes it).
//     SPLITK == 1: Y = scale·acc (+ R) written, ws ignored (may be NULL).
//     SPLITK > 1: ws (fp32 [SPLITK][M][N]) fully written with scale·(partial sum), splits
//     without work write 0; Y and R not touched; then launch gemm_splitk_reduce. No memset.
//     grid  = (ceil(N / (NUM_WARPS*ROWS_PER_WARP)), SPLITK, 1)
//     block = (32*NUM_WARPS, 1, 1), dynamic shared memory = 0
//     Split s takes chunks [floor(C·s/SPLITK), floor(C·(s+1)/SPLITK)) of the C = K/16.
//   extern "C" __global__ void gemm_splitk_reduce(const float* ws, T* Y, const T* R,
//       int M, int N, int splits)   (kernels/gemm/splitk_reduce.cuh, shared with gemm)
//     Y[m][n] = sum_{s=0..splits-1} ws[s][m][n] (this order, deterministic) (+ R[m][n])
//     grid = (ceil(M*N / 256), 1, 1), block = (256, 1, 1), dynamic shared memory = 0
//   Requirements: 1 <= M <= M_MAX; K % 16 == 0 (a chunk of 16 codes never straddles rows);
//   X and Wq 16-byte aligned (cudaMalloc is; rows then are too, K being a multiple of 16);
//   N arbitrary (rows past N are predicated off); M·N < 2^31.

#include <cuda_fp16.h>
#include <cuda_bf16.h>

#ifndef KL_FP16
#define KL_FP16 0
#endif
#ifndef M_MAX
#define M_MAX 16
#endif
#ifndef NUM_WARPS
#define NUM_WARPS 4
#endif
#ifndef ROWS_PER_WARP
#define ROWS_PER_WARP 2
#endif
#ifndef UNROLL
#define UNROLL 2
#endif
#ifndef SPLITK
#define SPLITK 1
#endif

#if M_MAX < 1 || M_MAX > 16
#error "M_MAX must be 1..16"
#endif
#if NUM_WARPS < 1 || NUM_WARPS > 32
#error "NUM_WARPS must be 1..32"
#endif
#if ROWS_PER_WARP < 1 || UNROLL < 1 || SPLITK < 1
#error "ROWS_PER_WARP, UNROLL and SPLITK must be at least 1"
#endif

typedef unsigned int u32;

#if KL_FP16
typedef __half act_t;
#else
typedef __nv_bfloat16 act_t;
#endif

// The element type of the shared headers.
typedef act_t T;
#include "../common/to_from_f.cuh"  // to_f, from_f: T <-> float
#include "../gemm/splitk_reduce.cuh"

__device__ __forceinline__ float scale_to_float(unsigned short b) {
#if KL_FP16
    return __half2float(__ushort_as_half(b));
#else
    return __bfloat162float(__ushort_as_bfloat16(b));
#endif
}

// Streaming load of 16 codes that will not be reused: skip L1 so X stays there.
__device__ __forceinline__ uint4 load_codes(const uint4* p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

// 8 consecutive activations (one 16-byte load) as fp32.
__device__ __forceinline__ void load_x8(const act_t* p, float* x) {
    const uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
    const u32 w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
#if KL_FP16
        __half2 h = *reinterpret_cast<const __half2*>(&w[i]);
        const float2 f = __half22float2(h);
        x[2 * i] = f.x;
        x[2 * i + 1] = f.y;
#else
        x[2 * i] = __uint_as_float(w[i] << 16);
        x[2 * i + 1] = __uint_as_float(w[i] & 0xFFFF0000u);
#endif
    }
}

// The 4 codes of a word (byte j = column j) as exact fp32 integers: flipping the sign bits
// makes each byte q + 128 (0..255); the permute puts it under the exponent of 2^23 (ulp 1),
// 0x4B0000uu = 2^23 + q + 128, and one subtraction leaves q.
__device__ __forceinline__ void codes4(u32 w, float* o) {
    const u32 u = w ^ 0x80808080u;
#pragma unroll
    for (int j = 0; j < 4; j++) o[j] = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7650 + j)) - 8388736.0f;
}

// No __launch_bounds__, as int4_gemv: a cap low enough for 8 warps spills at M_MAX >= 8.
extern "C" __global__ void
int8_gemv(const act_t* __restrict__ X, const signed char* __restrict__ Wq, const unsigned short* __restrict__ scales,
          const act_t* __restrict__ R, act_t* __restrict__ Y, float* __restrict__ ws, int M, int N, int K) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int row0 = (blockIdx.x * NUM_WARPS + warp) * ROWS_PER_WARP;
    if (row0 >= N) return;  // whole warp leaves together: no partial-warp shuffles below

    const int chunks = K / 16;
    const int c_begin = (int)((long long)chunks * blockIdx.y / SPLITK);
    const int c_end = (int)((long long)chunks * (blockIdx.y + 1) / SPLITK);

    const uint4* wrow[ROWS_PER_WARP];
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; r++) {
        const int n = min(row0 + r, N - 1);  // rows past N recompute row N-1, never stored
        wrow[r] = reinterpret_cast<const uint4*>(Wq + (size_t)n * K);
    }

    float acc[ROWS_PER_WARP][M_MAX];
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; r++)
#pragma unroll
        for (int m = 0; m < M_MAX; m++) acc[r][m] = 0.0f;

    for (int c0 = c_begin; c0 < c_end; c0 += 32 * UNROLL) {
        // Issue every weight load of this step before any math, for memory-level parallelism.
        uint4 wv[UNROLL][ROWS_PER_WARP];
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            const int c = c0 + u * 32 + lane;
#pragma unroll
            for (int r = 0; r < ROWS_PER_WARP; r++)
                wv[u][r] = c < c_end ? load_codes(wrow[r] + c) : make_uint4(0u, 0u, 0u, 0u);
        }
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            const int c = c0 + u * 32 + lane;
            if (c < c_end) {
#pragma unroll
                for (int h = 0; h < 2; h++) {  // the chunk's two halves of 8 codes
                    float wf[ROWS_PER_WARP][8];
#pragma unroll
                    for (int r = 0; r < ROWS_PER_WARP; r++) {
                        codes4(h ? wv[u][r].z : wv[u][r].x, wf[r]);
                        codes4(h ? wv[u][r].w : wv[u][r].y, wf[r] + 4);
                    }
#pragma unroll
                    for (int m = 0; m < M_MAX; m++) {
                        if (m < M) {
                            float x[8];
                            load_x8(X + (size_t)m * K + (size_t)c * 16 + 8 * h, x);
#pragma unroll
                            for (int r = 0; r < ROWS_PER_WARP; r++)
#pragma unroll
                                for (int e = 0; e < 8; e++) acc[r][m] = fmaf(x[e], wf[r][e], acc[r][m]);
                        }
                    }
                }
            }
        }
    }

    // Butterfly reduction: afterwards every lane holds every sum; lane j stores entry j.
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; r++) {
        const int n = row0 + r;
        const float s = scale_to_float(__ldg(scales + min(n, N - 1)));
#pragma unroll
        for (int m = 0; m < M_MAX; m++) {
            if (m < M) {
                float v = acc[r][m];
#pragma unroll
                for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
                if (lane == (r * M_MAX + m) % 32 && n < N) {
                    v *= s;
#if SPLITK == 1
                    if (R) v += to_f(R[(size_t)m * N + n]);
                    Y[(size_t)m * N + n] = from_f(v);
#else
                    ws[((size_t)blockIdx.y * M + m) * N + n] = v;
#endif
                }
            }
        }
    }
}
