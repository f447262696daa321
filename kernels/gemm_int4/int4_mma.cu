// int4_mma.cu — W4A16 tensor-core GEMM: Y[M,N] = X[M,K] · dequant(W)ᵀ (+ R[M,N]).
//
// For M = 16..2048 (prefill, batched decode). Each block computes a BM×BN tile of Y, walking K
// in BK steps through a STAGES-deep cp.async pipeline that stages the raw X tile (bf16/fp16)
// and the raw packed int4 W tile in shared memory. Warps (BM/WM × BN/WN of them) load A
// fragments with ldmatrix and build B fragments in registers straight from the packed words:
// for mma.m16n8k16 a lane (g = lane/4, t = lane%4) needs W columns k = 2t, 2t+1 and 2t+8, 2t+9
// of output row n = g; with kernlab's nibble order [0,2,4,6,1,3,5,7] those are exactly
// `(word >> 4t) & 0x000F000F` of the two words of that k16 step, and `| 0x43004300`
// (`| 0x64006400` for fp16) makes them the 16-bit floats 128+q (1024+q) with no lookup table.
// Then d = (128+q) - (128+z) (exact) and w = d * s (one rounding to the activation dtype),
// both as packed bf16x2/f16x2 fma. fp32 accumulate; one rounding of Y at the store.
// If the scale dtype differs from the activation dtype, dequant runs in fp32 (exact) and
// converts the pair once: the value is the same as the packed path's.
// quant::reference with WeightRounding::To(activation dtype) emulates this kernel.
//
// Weight format (docs/int4-format.md): Wq u32 [N][K/8] (row n contiguous along K), scales
// [K/GROUP][N] (f16/bf16 bits), zeros per ZERO_MODE [K/GROUP][N].
//
// Tunables (defaults in brackets):
//   KL_FP16 [0]        0: X, R, Y bf16; 1: fp16
//   KL_SCALE_FP16      dtype of scales/mins, 1 = f16, 0 = bf16 [same as KL_FP16]
//   GROUP [128]        group size along K
//   ZERO_MODE [0]      0 symmetric (q-8)*s; 1 u8 zeros (q-z)*s; 2 float mins q*s+m
//                      (SYMMETRIC=1/0 maps to ZERO_MODE 0/1)
//   BM [64] BN [64] BK [64]   block tile
//   WM [32] WN [32]           warp tile
//   STAGES [4]                cp.async pipeline depth (>= 2)
// Constraints: BM % WM == 0, BN % WN == 0, WM % 16 == 0, WN % 8 == 0, BK % 32 == 0,
//   GROUP % BK == 0 or BK % GROUP == 0 (and then GROUP % 16 == 0), STAGES >= 2,
//   threads = 32 * (BM/WM) * (BN/WN) <= 1024.
//
// Launch contract:
//   extern "C" __global__ void int4_mma(const T* X, const unsigned* Wq,
//       const unsigned short* scales, const void* zeros, const T* R, T* Y,
//       int M, int N, int K)
//     T = __nv_bfloat16 (__half with KL_FP16=1); zeros: ZERO_MODE 0 ignored (may be NULL),
//     1: const unsigned char* [K/GROUP][N], 2: const unsigned short* [K/GROUP][N];
//     R nullable.
//     grid  = (ceil(N / BN), ceil(M / BM), 1)
//     block = (32 * (BM/WM) * (BN/WN), 1, 1)
//     dynamic shared memory = STAGES * (BM*(BK+8)*2 + BN*(BK/8+4)*4) bytes
//       (defaults: 49152); above 48 KiB the host must first raise
//       CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES.
//   Requirements: K % BK == 0 and K % GROUP == 0; X, Wq 16-byte aligned (K % 8 == 0 keeps
//   every row aligned); M, N arbitrary >= 1 (partial tiles are zero-filled and their
//   stores guarded). sm_80 or newer.

// The dequant's AND and OR stay two LOP3s here: a register for the magic (one LOP3) made
// some configurations spill.
#define DEQ_ONE_LOP3 0
#include "int4_common.cuh"

#ifndef BM
#define BM 64
#endif
#ifndef BN
#define BN 64
#endif
#ifndef BK
#define BK 64
#endif
#ifndef WM
#define WM 32
#endif
#ifndef WN
#define WN 32
#endif
#ifndef STAGES
#define STAGES 4
#endif

#define WARPS_M (BM / WM)
#define WARPS_N (BN / WN)
#define NTHREADS (32 * WARPS_M * WARPS_N)
#define MT (WM / 16)          // m16 tiles per warp
#define NT (WN / 8)           // n8 tiles per warp
#define LDA (BK + 8)          // X tile row stride in elements: +16 B keeps ldmatrix conflict-free
#define LDB (BK / 8 + 4)      // W tile row stride in words: +16 B keeps the B loads conflict-free
#define A_STAGE (BM * LDA)    // elements
#define B_STAGE (BN * LDB)    // words
// Groups a k-tile spans (BK > GROUP) and k16 steps per group.
#define GPT ((BK > GROUP) ? (BK / GROUP) : 1)

#if BM % WM != 0 || BN % WN != 0 || WM % 16 != 0 || WN % 8 != 0
#error "need BM % WM == 0, BN % WN == 0, WM % 16 == 0, WN % 8 == 0"
#endif
#if BK % 32 != 0
#error "BK must be a multiple of 32"
#endif
#if (GROUP % BK != 0) && (BK % GROUP != 0)
#error "GROUP and BK must divide one another"
#endif
#if GROUP % 16 != 0
#error "GROUP must be a multiple of 16"
#endif
#if STAGES < 2
#error "STAGES must be >= 2"
#endif
#if NTHREADS > 1024
#error "too many warps: 32*(BM/WM)*(BN/WN) must be <= 1024"
#endif


// ---- PTX helpers -------------------------------------------------------------------------

__device__ __forceinline__ u32 smem_addr(const void* p) {
    return static_cast<u32>(__cvta_generic_to_shared(p));
}

// 16-byte async copy; src_bytes = 0 zero-fills the destination (out-of-range rows).
__device__ __forceinline__ void cp_async16(u32 dst, const void* src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ void ldmatrix_x4(u32* r, u32 addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}

__device__ __forceinline__ void mma16816(float* c, const u32* a, u32 b0, u32 b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." PTX_T "." PTX_T ".f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Conversions and the per-group dequant (make_deq, dequant_pair): int4_common.cuh.

// Raw scale (and zero/min) of group g for output row n; 0 outside N (those columns are
// never stored).
__device__ __forceinline__ void load_group(const u16* scales, const void* zeros, int g, int n,
                                           int N, u16& s, u32& z) {
    s = 0;
    z = 0;
    if (n < N) {
        size_t idx = (size_t)g * N + n;
        s = __ldg(scales + idx);
#if ZERO_MODE == 1
        z = __ldg(reinterpret_cast<const unsigned char*>(zeros) + idx);
#elif ZERO_MODE == 2
        z = __ldg(reinterpret_cast<const u16*>(zeros) + idx);
#endif
    }
}

// ---- the kernel --------------------------------------------------------------------------

extern "C" __global__ void __launch_bounds__(NTHREADS)
int4_mma(const act_t* __restrict__ X, const u32* __restrict__ Wq,
         const u16* __restrict__ scales, const void* __restrict__ zeros,
         const act_t* __restrict__ R, act_t* __restrict__ Y, int M, int N, int K) {
    extern __shared__ __align__(16) unsigned char smem[];
    act_t* As = reinterpret_cast<act_t*>(smem);
    u32* Bs = reinterpret_cast<u32*>(smem + (size_t)STAGES * A_STAGE * sizeof(act_t));

    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int warp_m = warp / WARPS_N;
    const int warp_n = warp % WARPS_N;
    const int m0 = blockIdx.y * BM;
    const int n0 = blockIdx.x * BN;
    const int words_per_row = K / 8;
    const int KT = K / BK;

    // Issue the async copies of k-tile kt into pipeline slot `stage`.
    auto load_tile = [&](int stage, int kt) {
        const int k0 = kt * BK;
        const u32 a_base = smem_addr(As + stage * A_STAGE);
#pragma unroll
        for (int i = tid; i < BM * (BK / 8); i += NTHREADS) {
            const int r = i / (BK / 8), c = i % (BK / 8);
            const int gm = m0 + r;
            const act_t* src = X + (size_t)min(gm, M - 1) * K + k0 + c * 8;
            cp_async16(a_base + (r * LDA + c * 8) * 2, src, gm < M ? 16 : 0);
        }
        const u32 b_base = smem_addr(Bs + stage * B_STAGE);
#pragma unroll
        for (int i = tid; i < BN * (BK / 32); i += NTHREADS) {
            const int r = i / (BK / 32), c = i % (BK / 32);
            const int gn = n0 + r;
            const u32* src = Wq + (size_t)min(gn, N - 1) * words_per_row + k0 / 8 + c * 4;
            cp_async16(b_base + (r * LDB + c * 4) * 4, src, gn < N ? 16 : 0);
        }
    };

    // This lane's output rows of W (one per n8 tile) and its pair index t.
    const int t = lane & 3;
    int nrow[NT];
#pragma unroll
    for (int j = 0; j < NT; j++) nrow[j] = n0 + warp_n * WN + j * 8 + (lane >> 2);

    // Group constants for the current k-tile, and raw values prefetched for the next one.
    Deq dq[GPT][NT];
    u16 s_next[GPT][NT];
    u32 z_next[GPT][NT];
    auto fetch_groups = [&](int kt) {
#pragma unroll
        for (int gi = 0; gi < GPT; gi++)
#pragma unroll
            for (int j = 0; j < NT; j++)
                load_group(scales, zeros, (kt * BK) / GROUP + gi, nrow[j], N, s_next[gi][j], z_next[gi][j]);
    };
    auto adopt_groups = [&]() {
#pragma unroll
        for (int gi = 0; gi < GPT; gi++)
#pragma unroll
            for (int j = 0; j < NT; j++) dq[gi][j] = make_deq(s_next[gi][j], z_next[gi][j]);
    };

    float acc[MT][NT][4];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0.0f;

#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < KT) load_tile(s, s);
        cp_async_commit();  // commit even when empty: keeps the group arithmetic uniform
    }
    fetch_groups(0);
    adopt_groups();

    for (int kt = 0; kt < KT; kt++) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();  // tile kt is visible; everyone is done with tile kt-1's slot
        {
            const int nk = kt + STAGES - 1;
            if (nk < KT) load_tile(nk % STAGES, nk);
            cp_async_commit();
        }
        // Prefetch the next tile's group constants when it starts a new group.
        const bool next_group = (kt + 1 < KT) && (((kt + 1) * BK) % GROUP == 0);
        if (next_group) fetch_groups(kt + 1);

        const act_t* a_tile = As + (kt % STAGES) * A_STAGE;
        const u32* b_tile = Bs + (kt % STAGES) * B_STAGE;
#pragma unroll
        for (int kk = 0; kk < BK / 16; kk++) {
            u32 a[MT][4];
#pragma unroll
            for (int i = 0; i < MT; i++) {
                const int row = warp_m * WM + i * 16 + (lane & 15);
                const int col = kk * 16 + (lane >> 4) * 8;
                ldmatrix_x4(a[i], smem_addr(a_tile + row * LDA + col));
            }
            const int gi = (GPT > 1) ? (kk * 16) / GROUP : 0;
#pragma unroll
            for (int j = 0; j < NT; j++) {
                const int r = warp_n * WN + j * 8 + (lane >> 2);
                // Words 2kk and 2kk+1 of row r: columns kk*16 + 0..7 and + 8..15.
                const uint2 w = *reinterpret_cast<const uint2*>(b_tile + r * LDB + 2 * kk);
                const u32 b0 = dequant_pair(w.x >> (4 * t), dq[gi][j]);
                const u32 b1 = dequant_pair(w.y >> (4 * t), dq[gi][j]);
#pragma unroll
                for (int i = 0; i < MT; i++) mma16816(acc[i][j], a[i], b0, b1);
            }
        }
        if (next_group) adopt_groups();
    }

    // Epilogue: c0,c1 → (row g, cols 2t, 2t+1); c2,c3 → (row g+8, same cols).
#pragma unroll
    for (int i = 0; i < MT; i++) {
#pragma unroll
        for (int j = 0; j < NT; j++) {
            const int col = n0 + warp_n * WN + j * 8 + 2 * t;
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int row = m0 + warp_m * WM + i * 16 + (lane >> 2) + h * 8;
                if (row >= M) continue;
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    if (col + e < N) {
                        const size_t idx = (size_t)row * N + col + e;
                        float v = acc[i][j][2 * h + e];
                        if (R) v += act_to_float(R[idx]);
                        Y[idx] = float_to_act(v);
                    }
                }
            }
        }
    }
}
