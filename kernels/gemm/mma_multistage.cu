/*
gemm/mma_multistage.cu — tensor-core GEMM for a linear layer (prefill / large M).

    Y[M,N] = X[M,K] · W[N,K]ᵀ  (+ R[M,N] when R != nullptr)

X, W, Y, R row-major. T = __nv_bfloat16, or __half when compiled with -DKL_FP16=1.
fp32 accumulation, output cast to T.

How it works
- Each block computes a BM×BN tile of Y; each warp a WM×WN sub-tile with
  mma.sync.m16n8k16 (fp32 accumulators in registers: (WM/16)*(WN/8)*4 floats/thread).
- K is walked in BK-wide tiles through a STAGES-deep cp.async ring in dynamic shared memory
  (16-byte cp.async.cg, zero-filled via src-size 0 outside M/N/K), wait_group<STAGES-2>,
  one __syncthreads per k-tile.
- Shared tiles are stored K-contiguous (X tile [BM][BK], W tile [BN][BK]) with an XOR swizzle
  of the 16-byte chunks inside each row, so both the cp.async writes and the ldmatrix.x4
  reads are bank-conflict free with no padding.
- GROUP_M block rasterization: the linear block id is remapped so that GROUP_M row-blocks
  sweep the N dimension together (better L2 reuse of W and X). GROUP_M = 1 is plain order.
- Epilogue straight from the accumulators: (+R) → T, guarded stores of 2 elements when N is
  even, else scalar.

Tunables (macros, defaults below)
    BM, BN      block tile                     BK        k tile, 32 or 64
    WM, WN      warp tile (WM % 16 == 0, WN % 16 == 0)
    STAGES      cp.async pipeline depth, 2..5  GROUP_M   rasterization group (1 = off)
    MIN_BLOCKS  __launch_bounds__ min blocks per SM (register cap hint), default 1
    KL_FP16     0 = bf16 (default), 1 = fp16
Constraints: BM % WM == 0, BN % WN == 0, WM % 16 == 0, WN % 16 == 0, BK in {32,64},
    2 <= STAGES <= 5, NUM_WARPS = (BM/WM)*(BN/WN) in 1..16 (<= 1024 threads).
    Register budget (not asserted; spills otherwise): WM*WN <= 4096 and BM*BN <= 32768.

Launch contract (host)
    entry   gemm_mma(const T* X, const T* W, T* Y, const T* R, int M, int N, int K)
    grid    (ceil(N/BN), ceil(M/BM), 1)
    block   (NUM_WARPS*32, 1, 1)
    smem    STAGES*(BM+BN)*BK*sizeof(T) bytes of dynamic shared memory (no padding);
            the host raises cudaFuncAttributeMaxDynamicSharedMemorySize when > 48 KB.
    requires K % 8 == 0 and X, W, Y, R 16-byte aligned; M, N >= 1 arbitrary.
*/
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#ifndef KL_FP16
#define KL_FP16 0
#endif
#ifndef BM
#define BM 128
#endif
#ifndef BN
#define BN 128
#endif
#ifndef BK
#define BK 32
#endif
#ifndef WM
#define WM 64
#endif
#ifndef WN
#define WN 64
#endif
#ifndef STAGES
#define STAGES 4
#endif
#ifndef GROUP_M
#define GROUP_M 8
#endif
#ifndef MIN_BLOCKS
#define MIN_BLOCKS 1
#endif

#if KL_FP16
typedef __half T;
#define KL_MMA_TYPE "f16"
#else
typedef __nv_bfloat16 T;
#define KL_MMA_TYPE "bf16"
#endif

#define NUM_WARPS ((BM / WM) * (BN / WN))
#define THREADS (NUM_WARPS * 32)

static_assert(BK == 32 || BK == 64, "BK must be 32 or 64");
static_assert(BM % WM == 0 && BN % WN == 0, "block tile must be a multiple of the warp tile");
static_assert(WM % 16 == 0 && WN % 16 == 0, "warp tile must be a multiple of 16x16");
static_assert(STAGES >= 2 && STAGES <= 5, "STAGES must be in 2..5");
static_assert(NUM_WARPS >= 1 && NUM_WARPS <= 16, "1..16 warps per block");
static_assert(GROUP_M >= 1, "GROUP_M >= 1");

namespace {

#include "mma_stage_bytes.cuh"  // CPR, ROW_BYTES, A_BYTES, B_BYTES, STAGE_BYTES of one cp.async stage
constexpr int MI = WM / 16;                 // m16 tiles per warp
constexpr int NI = WN / 8;                  // n8 tiles per warp
#include "mma_smem_layout.cuh"  // ROWS_PER_PASS, the smem swizzle (swz, smem_off), mma.cuh, to_f/from_f

// Load a ROWS×BK tile (rows [row0, row0+ROWS) of a [rows_total, K] matrix, k-tile kt) into smem.
// Thread t always handles chunk column t % CPR and rows t / CPR + i * ROWS_PER_PASS.
template <int ROWS>
__device__ __forceinline__ void load_tile(unsigned sdst, const T* __restrict__ G, int row0, int rows_total,
                                          int K, int k0, int tid) {
    const int c = tid % CPR;
    const int r0 = tid / CPR;
    const int gk = k0 + c * 8;
    const bool kok = gk < K;  // K % 8 == 0: a chunk is entirely in or out
#include "mma_load_tile_rows.cuh"  // cp.async of this thread's chunks, one per pass of ROWS_PER_PASS rows
}

}  // namespace

extern "C" __global__ void __launch_bounds__(THREADS, MIN_BLOCKS)
gemm_mma(const T* __restrict__ X, const T* __restrict__ W, T* __restrict__ Y, const T* __restrict__ R,
         int M, int N, int K) {
    extern __shared__ __align__(128) unsigned char smem[];
    const unsigned sbase = (unsigned)__cvta_generic_to_shared(smem);

    // ---- block rasterization (GROUP_M row-blocks swept together) ----
    const int nbn = gridDim.x, nbm = gridDim.y;
    const int pid = blockIdx.y * nbn + blockIdx.x;
    int bm, bn;
    if (GROUP_M == 1) {
        bm = blockIdx.y;
        bn = blockIdx.x;
    } else {
        const int per_group = GROUP_M * nbn;
        const int group = pid / per_group;
        const int first_m = group * GROUP_M;
        const int gsize = min(nbm - first_m, GROUP_M);
        const int in_group = pid - group * per_group;
        bm = first_m + in_group % gsize;
        bn = in_group / gsize;
    }
    const int m0 = bm * BM, n0 = bn * BN;

    const int tid = threadIdx.x;
    const int lane = tid & 31, warp = tid >> 5;
    const int wm0 = (warp / (BN / WN)) * WM;  // warp tile origin within the block tile
    const int wn0 = (warp % (BN / WN)) * WN;

    // ---- per-lane ldmatrix addresses (byte offsets within a stage) ----
    // X tile, x4 = {rows 0-7 k0-7, rows 8-15 k0-7, rows 0-7 k8-15, rows 8-15 k8-15} → a0..a3.
    // Lane supplies row (lane % 16), chunk 2*kk + lane/16. The swizzle period (8 rows) divides
    // 16, so the XOR term depends only on the lane.
    const int a_row = wm0 + (lane & 15);
    const int a_half = lane >> 4;
    // W tile, x4 = {n 0-7 k0-7, n 0-7 k8-15, n 8-15 k0-7, n 8-15 k8-15} → (b0,b1) of n8 tile 2j, 2j+1.
    const int b_row = wn0 + (lane & 7) + ((lane >> 4) << 3);
    const int b_half = (lane >> 3) & 1;

#include "mma_acc_zero.cuh"  // float acc[MI][NI][4], zeroed

    const int KT = (K + BK - 1) / BK;

    // ---- prologue: STAGES-1 tiles in flight ----
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < KT) {
            const unsigned st = sbase + s * STAGE_BYTES;
            load_tile<BM>(st, X, m0, M, K, s * BK, tid);
            load_tile<BN>(st + A_BYTES, W, n0, N, K, s * BK, tid);
        }
        cp_async_commit();  // always commit so the group count stays uniform
    }

    // ---- main loop ----
    int read_stage = 0;
    int write_stage = STAGES - 1;
    for (int kt = 0; kt < KT; ++kt) {
        cp_async_wait<STAGES - 2>();  // this thread's copies of tile kt have landed
        __syncthreads();              // everyone's have; and everyone finished tile kt-1

        // refill the stage that held tile kt-1 (free: all threads passed the barrier above)
        {
            const int kn = kt + STAGES - 1;
            if (kn < KT) {
                const unsigned st = sbase + write_stage * STAGE_BYTES;
                load_tile<BM>(st, X, m0, M, K, kn * BK, tid);
                load_tile<BN>(st + A_BYTES, W, n0, N, K, kn * BK, tid);
            }
            cp_async_commit();
        }

        const unsigned sa = sbase + read_stage * STAGE_BYTES;
        const unsigned sb = sa + A_BYTES;
#pragma unroll
        for (int kk = 0; kk < BK / 16; ++kk) {
#include "mma_load_fragments.cuh"  // af, bf: this k-step's A and B fragments, by ldmatrix.x4
#pragma unroll
            for (int i = 0; i < MI; ++i)
#pragma unroll
                for (int j = 0; j < NI; ++j) {
                    const int jj = (i & 1) ? NI - 1 - j : j;  // serpentine: reuse B regs
                    mma16816(acc[i][jj], af[i], bf[jj][0], bf[jj][1]);
                }
        }
        read_stage = (read_stage == STAGES - 1) ? 0 : read_stage + 1;
        write_stage = (write_stage == STAGES - 1) ? 0 : write_stage + 1;
    }
    cp_async_wait<0>();  // drain (only empty groups can be left) before exit

    // ---- epilogue: C fragment c0,c1 at (g, 2q..2q+1), c2,c3 at (g+8, 2q..2q+1) ----
    const int g = lane >> 2, q = lane & 3;
    const bool pair_ok = (N % 2) == 0;  // then row*N + col is even → 4-byte aligned pairs
#pragma unroll
    for (int i = 0; i < MI; ++i) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int row = m0 + wm0 + i * 16 + g + h * 8;
            if (row >= M) continue;
#pragma unroll
            for (int j = 0; j < NI; ++j) {
                const int col = n0 + wn0 + j * 8 + 2 * q;
                if (col >= N) continue;
                float v0 = acc[i][j][2 * h], v1 = acc[i][j][2 * h + 1];
                const size_t o = (size_t)row * N + col;
                if (pair_ok) {  // col even, N even → col + 1 < N
#include "store_pair.cuh"  // Y[o], Y[o+1] = v0, v1 (+ R), as one 4-byte store
                } else {
#include "store_scalar.cuh"  // Y[o] = v0 (+ R), and Y[o+1] = v1 when col + 1 < N
                }
            }
        }
    }
}
