// int4_mma_wgmma.cu — W4A16 GEMM on Hopper's wgmma: Y[M,N] = X[M,K] · dequant(W)ᵀ (+ R[M,N]).
//
// For M = 64..2048+ (batched decode, prefill) on sm_90a. int4_mma (mma.sync) dequantizes a
// B fragment per warp and per m16 row block, and mma.sync tops out near 650 TFLOP/s on an
// H200 anyway; here every weight of a block's k-tile is dequantized once, into shared memory,
// and all warpgroups read it as wgmma's B operand, while the tensor cores run asynchronously.
//
// Per 64-wide k-tile kt (BK = 64 = one 128-byte swizzle row of 16-bit values):
//  - X tile [BM][64] and the raw packed W tile [BN][8 words] arrive by cp.async in a
//    STAGES-deep ring. X lands in the 128-byte swizzled K-major layout wgmma reads (16-byte
//    chunk c of row r at r*128 + ((c ^ (r % 8)) * 16)); the raw W words are unswizzled.
//  - Every thread owns fixed 16-byte chunks of the raw W tile (4 words = 32 codes of one row)
//    and is the thread that cp.async's them, so it only waits for its own copies before
//    dequantizing them (no barrier between arrival and dequant). A chunk lies in one group
//    (GROUP % 32 == 0). It becomes 4 swizzled 16-byte chunks of the dequantized W tile
//    [BN][64] (three buffers), the same values as int4_mma: (q - z) * s (or q * s + m),
//    rounded once to the activation dtype.
//  - The loop keeps one wgmma group in flight across the barrier:
//      issue wgmma of tile kt (A ring slot kt, B buffer kt % 3), commit
//      wait own copies of tile kt+1, dequantize its W chunks into B buffer (kt+1) % 3 (last
//        read by wgmma kt-2), fence.proxy.async (generic writes → async proxy)
//      issue cp.async of tile kt+STAGES-2   (its ring slot held tile kt-2: wgmma kt-2 is done)
//      wgmma.wait_group 1 (wgmma kt-1 done in this warpgroup), __syncthreads
//    The copies are issued after the fence on purpose: fence.proxy.async compiles to
//    MEMBAR.ALL.CTA, which waits for all of the thread's outstanding cp.async copies. Issued
//    before it (first version), every k-tile cost a full memory latency (~1.25 us on an H200,
//    whatever STAGES was, deeper rings slower). Now only tiles kt+2 .. kt+STAGES-3 are
//    waited for there; STAGES = 4 leaves none in flight (a one-iteration prefetch).
//    so the dequant of tile kt+1 runs while the tensor cores work on tile kt (and kt-1).
//  - Warpgroups: WG_M × WG_N; warpgroup (wm, wn) computes rows [wm·BM/WG_M, +BM/WG_M) as
//    MT = BM/(64·WG_M) m64 tiles and columns [wn·WN, +WN) with WN = BN/WG_N (wgmma n).
//  - SPLITK > 1 splits the k-tiles over blockIdx.z and writes fp32 partials to WS,
//    summed by gemm_splitk_reduce (deterministic).
//
// Weight format (docs/int4-format.md): Wq u32 [N][K/8] (row n contiguous along K), scales
// [K/GROUP][N] (f16/bf16 bits), zeros per ZERO_MODE [K/GROUP][N].
//
// Tunables (defaults in brackets):
//   KL_FP16 [0]        0: X, R, Y bf16; 1: fp16
//   KL_SCALE_FP16      dtype of scales/mins, 1 = f16, 0 = bf16 [same as KL_FP16]
//   GROUP [128]        group size along K, a multiple of 32
//   ZERO_MODE [0]      0 symmetric (q-8)*s; 1 u8 zeros (q-z)*s; 2 float mins q*s+m
//   BM [128] BN [128]  block tile; BM = 64 * MT * WG_M with MT = 1 or 2
//   WG_M [2] WG_N [1]  warpgroups along M and N; WN = BN / WG_N in 32..256, WN % 32 == 0
//   STAGES [4]         cp.async ring depth (>= 4); STAGES - 4 tiles stay in flight across the fence
//   SPLITK [1]         K splits over blockIdx.z (> 1 needs gemm_splitk_reduce)
// Constraints: MT * WN <= 256 (fp32 accumulators per thread), threads = 128*WG_M*WG_N <= 1024.
//
// Launch contract:
//   extern "C" __global__ void int4_mma_wgmma(const T* X, const unsigned* Wq,
//       const unsigned short* scales, const void* zeros, const T* R, T* Y, float* WS,
//       int M, int N, int K)
//     T = __nv_bfloat16 (__half with KL_FP16=1); zeros: ZERO_MODE 0 ignored (may be NULL),
//     1: const unsigned char* [K/GROUP][N], 2: const unsigned short* [K/GROUP][N];
//     R nullable. SPLITK == 1: Y (+R) written, WS unused (may be NULL). SPLITK > 1: WS fp32
//     [SPLITK][M][N] fully written (empty splits write zeros), Y and R untouched; then
//     gemm_splitk_reduce(WS, Y, R, M, N, SPLITK): grid (ceil(M*N/256), 1, 1), block (256, 1, 1).
//     grid  = (ceil(N / BN), ceil(M / BM), SPLITK)
//     block = (128 * WG_M * WG_N, 1, 1)
//     dynamic shared memory = 3*BN*128 + STAGES*(BM*128 + BN*32) + 1024 bytes (the host
//       raises CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES).
//   Requirements: K % 64 == 0 and K % GROUP == 0; X, Wq 16-byte aligned (K % 8 == 0 keeps
//   every row aligned); M, N arbitrary >= 1 (partial tiles are zero-filled, stores guarded).
//   sm_90a.

#include "int4_common.cuh"

#ifndef BM
#define BM 128
#endif
#ifndef BN
#define BN 128
#endif
#ifndef WG_M
#define WG_M 2
#endif
#ifndef WG_N
#define WG_N 1
#endif
#ifndef STAGES
#define STAGES 4
#endif
#ifndef SPLITK
#define SPLITK 1
#endif

#define BK 64
#define MT (BM / (64 * WG_M))
#define WN (BN / WG_N)
#define NTHREADS (128 * WG_M * WG_N)
#define ACC (WN / 2)                    // fp32 accumulators per thread per m64 tile
#define A_BYTES (BM * 128)              // one ring slot of the X tile
#define RAW_BYTES (BN * 32)             // one ring slot of the packed W tile
#define BD_BYTES (BN * 128)             // one dequantized W tile
#define B_CHUNKS (BN * 2)               // 16-byte raw chunks per W tile
#define A_CHUNKS (BM * 8)               // 16-byte chunks per X tile
#define B_PER_THREAD ((B_CHUNKS + NTHREADS - 1) / NTHREADS)
#define A_PER_THREAD ((A_CHUNKS + NTHREADS - 1) / NTHREADS)

#if GROUP % 32 != 0
#error "GROUP must be a multiple of 32 (a thread's 32 codes lie in one group)"
#endif
#if (MT != 1 && MT != 2) || BM != 64 * MT * WG_M
#error "BM must be 64 * MT * WG_M with MT = 1 or 2"
#endif
#if BN % WG_N != 0 || WN % 32 != 0 || WN < 32 || WN > 256
#error "WN = BN / WG_N must be a multiple of 32 in 32..256"
#endif
#if MT * WN > 256
#error "MT * WN <= 256 (accumulator registers)"
#endif
#if STAGES < 4
#error "STAGES must be >= 4"
#endif
#if NTHREADS > 1024
#error "too many warpgroups"
#endif


#include "../gemm/splitk_reduce.cuh"

// ---- PTX helpers (wgmma group fences, kl_smem_u32 and the 128-byte-swizzle descriptor
// kl_desc_sw128 are in kernels/common/hopper.cuh; buffers are 1024-byte aligned and a k16
// step inside the swizzle atom advances the start by 32 bytes) ------------------------------
#include "../common/hopper.cuh"

__device__ __forceinline__ void cp_async16(u32 dst, const void* src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N_>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N_) : "memory");
}
// Makes this thread's generic-proxy shared-memory writes (st.shared, completed cp.async)
// visible to the async proxy that wgmma reads through.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }


// wgmma.mma_async m64nWNk16, A and B K-major from shared memory, accumulating into d[ACC]
// (scale-d = 1: the accumulators start at zero in registers).
#if WN % 32 != 0 || WN < 32 || WN > 256
#error "WN must be one of 32, 64, 96, 128, 160, 192, 224, 256"
#endif
#define KL_WG_T PTX_T
#include "../common/wgmma.cuh"
__device__ __forceinline__ void wgmma_tile(float (&d)[ACC], unsigned long long da, unsigned long long db) {
    KlWg<WN>::ss(d, da, db, 1);
}

// Dequant: make_deq / dequant_pair in int4_common.cuh (the same values as int4_mma).

// ---- the kernel --------------------------------------------------------------------------

extern "C" __global__ void __launch_bounds__(NTHREADS)
int4_mma_wgmma(const T* __restrict__ X, const u32* __restrict__ Wq, const u16* __restrict__ scales,
               const void* __restrict__ zeros, const T* __restrict__ R, T* __restrict__ Y, float* __restrict__ WS,
               int M, int N, int K) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    // wgmma's 128-byte swizzle needs 1024-byte aligned buffers (the host adds 1024 bytes).
    const u32 base = (kl_smem_u32(smem_raw) + 1023u) & ~1023u;
    unsigned char* smem = smem_raw + (base - kl_smem_u32(smem_raw));
    const u32 bd_base = base;                                // 3 dequantized W tiles
    const u32 a_base = bd_base + 3 * BD_BYTES;               // STAGES X tiles
    const u32 raw_off = 3 * BD_BYTES + STAGES * A_BYTES;     // STAGES raw W tiles
    const u32 raw_base = base + raw_off;

    const int tid = threadIdx.x;
    const int m0 = blockIdx.y * BM;
    const int n0 = blockIdx.x * BN;
    const int words_per_row = K / 8;
    const int KT_ALL = K / BK;
    const int kt_begin = (int)(((long long)blockIdx.z * KT_ALL) / SPLITK);
    const int kt_end = (int)(((long long)(blockIdx.z + 1) * KT_ALL) / SPLITK);
    const int KT = kt_end - kt_begin;

    // Issue this thread's cp.async's of k-tile kt (absolute index) into ring slot `slot`.
    auto load_tile = [&](int slot, int kt) {
        const int k0 = kt * BK;
#pragma unroll
        for (int i = 0; i < A_PER_THREAD; i++) {
            const int c = tid + i * NTHREADS;
            if (A_CHUNKS % NTHREADS == 0 || c < A_CHUNKS) {
                const int r = c >> 3, j = c & 7;
                const int gm = m0 + r;
                const T* src = X + (size_t)min(gm, M - 1) * K + k0 + j * 8;
                cp_async16(a_base + slot * A_BYTES + r * 128 + ((j ^ (r & 7)) << 4), src, gm < M ? 16 : 0);
            }
        }
#pragma unroll
        for (int i = 0; i < B_PER_THREAD; i++) {
            const int c = tid + i * NTHREADS;
            if (B_CHUNKS % NTHREADS == 0 || c < B_CHUNKS) {
                const int r = c >> 1, h = c & 1;
                const int gn = n0 + r;
                const u32* src = Wq + (size_t)min(gn, N - 1) * words_per_row + k0 / 8 + h * 4;
                cp_async16(raw_base + slot * RAW_BYTES + c * 16, src, gn < N ? 16 : 0);
            }
        }
    };

    // Raw scale/zero of this thread's chunks for a k-tile, prefetched one tile ahead.
    u32 s_raw[B_PER_THREAD], z_raw[B_PER_THREAD];
    auto fetch_scales = [&](int kt) {
#pragma unroll
        for (int i = 0; i < B_PER_THREAD; i++) {
            const int c = tid + i * NTHREADS;
            const int n = n0 + (c >> 1);
            s_raw[i] = 0;
            z_raw[i] = 0;
            if ((B_CHUNKS % NTHREADS == 0 || c < B_CHUNKS) && n < N && kt < kt_end) {
                const size_t idx = (size_t)((kt * BK + (c & 1) * 32) / GROUP) * N + n;
                s_raw[i] = __ldg(scales + idx);
#if ZERO_MODE == 1
                z_raw[i] = __ldg(reinterpret_cast<const unsigned char*>(zeros) + idx);
#elif ZERO_MODE == 2
                z_raw[i] = __ldg(reinterpret_cast<const u16*>(zeros) + idx);
#endif
            }
        }
    };

    // Dequantize this thread's raw chunks of the tile in ring slot `slot` into B buffer `buf`.
    auto dequant_tile = [&](int slot, int buf) {
#pragma unroll
        for (int i = 0; i < B_PER_THREAD; i++) {
            const int c = tid + i * NTHREADS;
            if (B_CHUNKS % NTHREADS == 0 || c < B_CHUNKS) {
                const uint4 w = *reinterpret_cast<const uint4*>(smem + raw_off + slot * RAW_BYTES + c * 16);
                const Deq d = make_deq(s_raw[i], z_raw[i]);
                const int r = c >> 1, h = c & 1;
                const u32 row = bd_base + buf * BD_BYTES + r * 128;
                const u32 words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    const u32 v0 = dequant_pair(words[q], d), v1 = dequant_pair(words[q] >> 4, d);
                    const u32 v2 = dequant_pair(words[q] >> 8, d), v3 = dequant_pair(words[q] >> 12, d);
                    const int j = h * 4 + q;
                    asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(row + ((j ^ (r & 7)) << 4)),
                                 "r"(v0), "r"(v1), "r"(v2), "r"(v3)
                                 : "memory");
                }
            }
        }
    };

    const int warp = tid >> 5, lane = tid & 31;
    const int wg = warp >> 2;                 // warpgroup
    const int wg_m = wg / WG_N, wg_n = wg % WG_N;

#include "wgmma_acc_zero.cuh"  // float acc[MT][ACC], zeroed

    if (KT > 0) {
        // Prologue: tiles 0..STAGES-3 in flight, tile 0 dequantized.
#pragma unroll
        for (int s = 0; s < STAGES - 2; s++) {
            if (s < KT) load_tile(s, kt_begin + s);
            cp_async_commit();
        }
        fetch_scales(kt_begin);
        cp_async_wait<STAGES - 3>();
        dequant_tile(0, 0);
        fence_proxy_async();
        fetch_scales(kt_begin + 1);
        __syncthreads();

        for (int t = 0; t < KT; t++) {
            const int slot = t % STAGES, buf = t % 3;
            kl_wg_fence();
#pragma unroll
            for (int kk = 0; kk < BK / 16; kk++) {
                const unsigned long long db =
                    kl_desc_sw128(bd_base + buf * BD_BYTES + wg_n * WN * 128 + kk * 32);
#pragma unroll
                for (int i = 0; i < MT; i++) {
                    const unsigned long long da =
                        kl_desc_sw128(a_base + slot * A_BYTES + (wg_m * MT + i) * 64 * 128 + kk * 32);
                    wgmma_tile(acc[i], da, db);
                }
            }
            kl_wg_commit();
            if (t + 1 < KT) {
                cp_async_wait<STAGES - 4>();  // tile t+1 (tiles t+2 .. t+STAGES-3 may be in flight)
                dequant_tile((t + 1) % STAGES, (t + 1) % 3);
                // The fence is MEMBAR.ALL.CTA + FENCE.VIEW.ASYNC: it waits for every load this
                // thread has in flight, so the scale loads and the next copies come after it.
                fence_proxy_async();
                fetch_scales(kt_begin + t + 2);
            }
            {
                const int nt = t + STAGES - 2;  // its slot held tile t-2 (wgmma t-2 is done)
                if (nt < KT) load_tile(nt % STAGES, kt_begin + nt);
                cp_async_commit();
            }
            kl_wg_wait<1>();
            __syncthreads();
        }
        kl_wg_wait<0>();
#pragma unroll
        for (int i = 0; i < MT; i++)
#pragma unroll
            for (int e = 0; e < ACC; e++) kl_reg_fence(acc[i][e]);
    }
    cp_async_wait<0>();

    // Epilogue: accumulator e of m64 tile i → row 16*(warp%4) + lane/4 (+8 for e%4 >= 2),
    // column 8*(e/4) + 2*(lane%4) + e%2.
    const int row_in = 16 * (warp & 3) + (lane >> 2);
    const int col_in = 2 * (lane & 3);
#pragma unroll
    for (int i = 0; i < MT; i++) {
#pragma unroll
        for (int j = 0; j < ACC / 4; j++) {
            const int col = n0 + wg_n * WN + 8 * j + col_in;
            if (col >= N) continue;
            const bool pair = (col + 1 < N);
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int row = m0 + (wg_m * MT + i) * 64 + row_in + 8 * h;
                if (row >= M) continue;
                float v0 = acc[i][4 * j + 2 * h], v1 = acc[i][4 * j + 2 * h + 1];
                const size_t idx = (size_t)row * N + col;
#if SPLITK > 1
                float* w = WS + (size_t)blockIdx.z * M * N + idx;
                if (pair && (N % 2 == 0)) {
                    *reinterpret_cast<float2*>(w) = make_float2(v0, v1);
                } else {
                    w[0] = v0;
                    if (pair) w[1] = v1;
                }
#else
                if (R) {
                    v0 += kl_reduce_load(R[idx]);
                    if (pair) v1 += kl_reduce_load(R[idx + 1]);
                }
                if (pair && (N % 2 == 0)) {
#if KL_FP16
                    *reinterpret_cast<__half2*>(Y + idx) = __floats2half2_rn(v0, v1);
#else
                    *reinterpret_cast<__nv_bfloat162*>(Y + idx) = __floats2bfloat162_rn(v0, v1);
#endif
                } else {
                    kl_reduce_store(Y + idx, v0);
                    if (pair) kl_reduce_store(Y + idx + 1, v1);
                }
#endif
            }
        }
    }
}
