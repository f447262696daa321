/*
gemm/mma_skinny.cu — tensor-core linear layer for small M (decode / small batch, M = 1..64),
split-K, built to stream W at full bandwidth.

    Y[M,N] = X[M,K] · W[N,K]ᵀ  (+ R[M,N] when R != nullptr)

X, W, Y, R row-major. T = __nv_bfloat16, or __half when compiled with -DKL_FP16=1.
fp32 accumulation, output cast to T.

How it works
- A block computes a BM×BN tile of Y (BM = 16/32/64 rows, the whole small batch; BN wide)
  over one K split (blockIdx.z). Warps tile N only: warp w owns columns [w*WN, (w+1)*WN) and
  all BM rows, mma.sync.m16n8k16 with (BM/16)*(WN/8)*4 fp32 accumulators per thread.
- W (the stream) and X tiles go through a STAGES-deep ring of 16-byte cp.async.cg copies
  (zero-fill outside M/N/K), XOR-swizzled 16-byte chunks, ldmatrix.x4 reads, same scheme as
  mma_multistage.cu. Rows of X past M are zero-filled, so they cost tensor-core slots but
  no memory traffic.
- Split-K gives enough blocks to fill the GPU when N/BN is small: split s covers
  [s*KS, min(K, (s+1)*KS)), KS = roundup(ceil(K/SPLITK), BK). SPLITK == 1 writes Y (+R);
  SPLITK > 1 writes fp32 partials WS[(s*M + m)*N + n] (zeros for an empty range) and the
  host runs gemm_splitk_reduce from gemv_splitk.cu (same WS contract, deterministic).

Tunables (macros, defaults below)
    BM       rows of X per block: 16, 32 or 64      BN      columns of Y per block
    BK       k tile: 32 or 64                        WN      columns per warp (WN % 16 == 0)
    STAGES   cp.async pipeline depth, 2..6           SPLITK  K splits, 1..32
    KL_FP16  0 = bf16 (default), 1 = fp16
Constraints: BM in {16,32,64}; BK in {32,64}; BN % WN == 0; WN % 16 == 0;
    NUM_WARPS = BN/WN in 1..16; 2 <= STAGES <= 6; 1 <= SPLITK <= 32.
    Register budget (not asserted): BM*WN <= 4096 (BM64 BN128 WN64 BK64 spills 12 bytes).

Launch contract (host)
    entry   gemm_skinny(const T* X, const T* W, T* Y, const T* R, float* WS, int M, int N, int K)
    grid    (ceil(N/BN), ceil(M/BM), SPLITK)
    block   (NUM_WARPS*32, 1, 1), NUM_WARPS = BN/WN
    smem    STAGES*(BM+BN)*BK*sizeof(T) bytes of dynamic shared memory (no padding);
            the host raises cudaFuncAttributeMaxDynamicSharedMemorySize when > 48 KB.
    WS      SPLITK > 1 only: SPLITK*M*N floats; then gemm_splitk_reduce (gemv_splitk.cu)
            with splits = SPLITK.
    requires K % 8 == 0 and X, W, Y, R 16-byte aligned; M, N >= 1 arbitrary (M > BM works
    through grid.y, but the variant is meant for M <= 64).
*/
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#ifndef KL_FP16
#define KL_FP16 0
#endif
#ifndef BM
#define BM 16
#endif
#ifndef BN
#define BN 128
#endif
#ifndef BK
#define BK 64
#endif
#ifndef WN
#define WN 32
#endif
#ifndef STAGES
#define STAGES 4
#endif
#ifndef SPLITK
#define SPLITK 4
#endif

#if KL_FP16
typedef __half T;
#define KL_MMA_TYPE "f16"
#else
typedef __nv_bfloat16 T;
#define KL_MMA_TYPE "bf16"
#endif

#define NUM_WARPS (BN / WN)
#define THREADS (NUM_WARPS * 32)

static_assert(BM == 16 || BM == 32 || BM == 64, "BM must be 16, 32 or 64");
static_assert(BK == 32 || BK == 64, "BK must be 32 or 64");
static_assert(BN % WN == 0 && WN % 16 == 0, "BN % WN == 0 and WN % 16 == 0");
static_assert(NUM_WARPS >= 1 && NUM_WARPS <= 16, "1..16 warps per block");
static_assert(STAGES >= 2 && STAGES <= 6, "STAGES must be in 2..6");
static_assert(SPLITK >= 1 && SPLITK <= 32, "SPLITK in 1..32");

namespace {

#include "mma_stage_bytes.cuh"  // CPR, ROW_BYTES, A_BYTES, B_BYTES, STAGE_BYTES of one cp.async stage
constexpr int MI = BM / 16;                 // m16 tiles per warp (a warp spans all BM rows)
constexpr int NI = WN / 8;                  // n8 tiles per warp
#include "mma_smem_layout.cuh"  // ROWS_PER_PASS, the smem swizzle (swz, smem_off), mma.cuh, to_f/from_f
#include "../common/pdl.cuh"

// Load a ROWS×BK tile (rows [row0, row0+ROWS) of a [rows_total, K] matrix, columns [k0, k0+BK)
// clipped to kend) into smem.
// Thread t always handles chunk column t % CPR and rows t / CPR + i * ROWS_PER_PASS.
template <int ROWS>
__device__ __forceinline__ void load_tile(unsigned sdst, const T* __restrict__ G, int row0, int rows_total,
                                          int kend, int k0, int K, int tid) {
    const int c = tid % CPR;
    const int r0 = tid / CPR;
    const int gk = k0 + c * 8;
    const bool kok = gk < kend;  // kend % 8 == 0: a chunk is entirely in or out
#include "mma_load_tile_rows.cuh"  // cp.async of this thread's chunks, one per pass of ROWS_PER_PASS rows
}

}  // namespace

KL_PDL_AWARE(gemm_skinny)
extern "C" __global__ void __launch_bounds__(THREADS, 1)
gemm_skinny(const T* __restrict__ X, const T* __restrict__ W, T* __restrict__ Y, const T* __restrict__ R,
            float* __restrict__ WS, int M, int N, int K) {
    extern __shared__ __align__(128) unsigned char smem[];
    const unsigned sbase = (unsigned)__cvta_generic_to_shared(smem);

    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    const int s = blockIdx.z;
    int KS = (K + SPLITK - 1) / SPLITK;
    KS = (KS + BK - 1) / BK * BK;
    const int kbeg = s * KS;
    const int kend = min(K, kbeg + KS);
    const int KT = kend > kbeg ? (kend - kbeg + BK - 1) / BK : 0;  // k tiles of this split

    const int tid = threadIdx.x;
    const int lane = tid & 31, warp = tid >> 5;
    const int wn0 = warp * WN;
    // ldmatrix lane → (row, chunk) assignment as in mma_multistage.cu
    const int a_row = lane & 15;
    const int a_half = lane >> 4;
    const int b_row = wn0 + (lane & 7) + ((lane >> 4) << 3);
    const int b_half = (lane >> 3) & 1;

#include "mma_acc_zero.cuh"  // float acc[MI][NI][4], zeroed

    // Loads are predicated on k < kend (not just K): kend is a multiple of 8, so the split
    // boundary never cuts a 16-byte chunk.
    // Under PDL this grid may start beside the kernel before it: W depends on no kernel of
    // the step, so the prologue's W stages go out before pdl_wait(), X's after it. The first commit
    // group then holds every prologue W stage, which the first wait covers anyway.
#pragma unroll
    for (int st = 0; st < STAGES - 1; ++st)
        if (st < KT) load_tile<BN>(sbase + st * STAGE_BYTES + A_BYTES, W, n0, N, kend, kbeg + st * BK, K, tid);
    pdl_wait();
#pragma unroll
    for (int st = 0; st < STAGES - 1; ++st) {
        if (st < KT) load_tile<BM>(sbase + st * STAGE_BYTES, X, m0, M, kend, kbeg + st * BK, K, tid);
        cp_async_commit();
    }

    int read_stage = 0;
    int write_stage = STAGES - 1;
    for (int kt = 0; kt < KT; ++kt) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();
        {
            const int kn = kt + STAGES - 1;
            if (kn < KT) {
                const unsigned sp = sbase + write_stage * STAGE_BYTES;
                load_tile<BM>(sp, X, m0, M, kend, kbeg + kn * BK, K, tid);
                load_tile<BN>(sp + A_BYTES, W, n0, N, kend, kbeg + kn * BK, K, tid);
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
                for (int j = 0; j < NI; ++j) mma16816(acc[i][j], af[i], bf[j][0], bf[j][1]);
        }
        read_stage = (read_stage == STAGES - 1) ? 0 : read_stage + 1;
        write_stage = (write_stage == STAGES - 1) ? 0 : write_stage + 1;
    }
    // The weights are streamed: let the next kernel's blocks take the SM slots this grid's
    // blocks free from here on (earlier, they would compete with its loads for residency).
    pdl_launch_dependents();
    cp_async_wait<0>();

    // epilogue: c0,c1 at (g, 2q..2q+1), c2,c3 at (g+8, 2q..2q+1)
    const int g = lane >> 2, q = lane & 3;
    const bool pair_ok = (N % 2) == 0;
#pragma unroll
    for (int i = 0; i < MI; ++i) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int row = m0 + i * 16 + g + h * 8;
            if (row >= M) continue;
#pragma unroll
            for (int j = 0; j < NI; ++j) {
                const int col = n0 + wn0 + j * 8 + 2 * q;
                if (col >= N) continue;
                float v0 = acc[i][j][2 * h], v1 = acc[i][j][2 * h + 1];
                if (SPLITK > 1) {
                    float* ws = WS + ((size_t)s * M + row) * N + col;
                    if (pair_ok) {
                        *reinterpret_cast<float2*>(ws) = make_float2(v0, v1);
                    } else {
                        ws[0] = v0;
                        if (col + 1 < N) ws[1] = v1;
                    }
                    continue;
                }
                const size_t o = (size_t)row * N + col;
                if (pair_ok) {
#include "store_pair.cuh"  // Y[o], Y[o+1] = v0, v1 (+ R), as one 4-byte store
                } else {
#include "store_scalar.cuh"  // Y[o] = v0 (+ R), and Y[o+1] = v1 when col + 1 < N
                }
            }
        }
    }
}

// The split-K reduction (launched when SPLITK > 1), shared with gemv_splitk.cu.
#include "splitk_reduce.cuh"
