/*
gemm/wgmma_tma.cu — Hopper (sm_90a) GEMM for a linear layer: wgmma + TMA, warp-specialized.

    Y[M,N] = X[M,K] · W[N,K]ᵀ  (+ R[M,N] when R != nullptr)

X, W, Y, R row-major. T = __nv_bfloat16, or __half when compiled with -DKL_FP16=1.
fp32 accumulation, output cast to T. Needs sm_90a (wgmma, setmaxnreg).

How it works
- Persistent kernel: the grid holds as many clusters as fit on the GPU at once; a cluster
  walks the work units u = clusterid, clusterid + nclusters, ... A unit is one cluster tile
  (CLUSTER_M × CLUSTER_N output tiles of BM × BN, one per CTA) and one K range (SPLITK > 1
  splits K; splits vary slowest). Cluster tiles are rasterized in groups of GROUP_M cluster
  rows so concurrent units share X and W in L2.
- Warp specialization: warpgroup 0 is the producer (one thread issues TMA; with CWG = 2 its
  registers go down to 40 with setmaxnreg.dec), warpgroups 1..CWG are consumers (up to 232)
  that run wgmma.mma_async on a STAGES-deep ring of shared-memory stages.
- Each stage holds the X tile [BM][64] and the W tile [BN][64] (K-major, 128-byte rows)
  written by cp.async.bulk.tensor.2d with the 128-byte swizzle, so the wgmma matrix
  descriptors read them directly (SBO = 1024 B per 8-row group, K advanced by 32 B per k16
  step inside the swizzle atom; stage buffers are 1024-byte aligned). TMA zero-fills the
  parts of a box outside [M or N] × K, so partial tiles and a K tail need no special code.
- mbarriers: full[s] (count 1: the producer's arrive.expect_tx of the whole stage's bytes;
  TMA completes the transaction) and empty[s] (one arrive per consumer warp of every CTA of
  the cluster, after wgmma.wait_group shows the stage is no longer read). A consumer keeps
  one wgmma group in flight: it issues the k-tile's 4·MT wgmmas, commits, waits until the
  previous group is done and releases that group's stage.
- Clusters (rank = rm + CLUSTER_M·rn): CTAs with the same rn share the W tile, each loads
  BN/CLUSTER_M rows of it and multicasts them to that cluster column; CTAs with the same rm
  share the X tile the same way (BM/CLUSTER_N rows each). Every consumer warp releases a
  stage on the empty barriers of all CTAs of the cluster.
- Epilogue, EPI_TMA = 0: straight from the wgmma accumulators (fragment: row
  16·warp + lane/4 (+8), column 8j + 2·(lane%4)), (+R) → T, guarded by row < M, col < N.
  EPI_TMA = 1 (and N % 8 == 0): the tile (+R) is written to a BM×BN staging tile in shared
  memory (64-column blocks, 128-byte swizzle: conflict-free) and stored by TMA (clipped at
  M, N); the consumers go straight on, the store is waited for only before the staging tile
  is reused. SPLITK > 1: fp32 partials into WS[(split·M + m)·N + n] instead, summed by
  gemm_splitk_reduce. Meanwhile the producer already loads the next unit's stages.

Tunables (macros, defaults below)
    BM          rows per CTA: 64·CWG·MT with MT (m64 tiles per consumer) = 1 or 2
    BN          columns per CTA: 32, 64, 96, ..., 256 (a wgmma n size)
    BK          k tile, must be 64 (one 128-byte swizzle row of 16-bit elements)
    STAGES      shared-memory ring depth, 2..16
    CWG         consumer warpgroups, 1 or 2
    CLUSTER_M   CTAs of a cluster along M that share (multicast) the W tile: 1, 2 or 4
    CLUSTER_N   CTAs of a cluster along N that share (multicast) the X tile: 1, 2 or 4
    EPI_TMA     0: store from registers; 1: staging tile + TMA store (BN % 64 == 0)
    SPLITK      K splits (≥ 1); > 1 writes fp32 partials to WS
    GROUP_M     rasterization group, in cluster rows (1 = row by row)
    KL_FP16     0 = bf16 (default), 1 = fp16
Constraints: MT·BN ≤ 256 (accumulator registers), CLUSTER_M·CLUSTER_N ∈ {1, 2, 4},
    BN % (8·CLUSTER_M) == 0, BM % (8·CLUSTER_N) == 0,
    STAGES·(BM+BN)·128 + EPI_TMA·BM·BN·2 + 1024 ≤ 227 KB.

Launch contract (host: src/kernels/gemm_tma.rs)
    entry   gemm_wgmma(const __grid_constant__ CUtensorMap tmX, const __grid_constant__
                       CUtensorMap tmW, const __grid_constant__ CUtensorMap tmY,
                       T* Y, const T* R, float* WS, int M, int N, int K, int tma_store)
            tmX: 2-D map of X, dims {K, M}, row stride K·2 B, box {64, BM / CLUSTER_N}
            tmW: 2-D map of W, dims {K, N}, row stride K·2 B, box {64, BN / CLUSTER_M}
            tmY: 2-D map of Y, dims {N, M}, row stride N·2 B, box {64, BM}; read only when
                 tma_store != 0, which the host sets iff EPI_TMA, SPLITK == 1, N % 8 == 0
                 and Y is 16-byte aligned (else tmY may be all zeros)
            all: bf16/fp16, SWIZZLE_128B, no interleave, OOB fill zeros (FLOAT_OOB_FILL_NONE)
    grid    (CS · min(units, co-resident clusters), 1, 1) with CS = CLUSTER_M·CLUSTER_N
            (cluster dims are compiled in with __cluster_dims__(CS, 1, 1)), units =
            ceil(ceil(M/BM)/CLUSTER_M) · ceil(ceil(N/BN)/CLUSTER_N) · SPLITK
    block   (128·(CWG+1), 1, 1)
    smem    STAGES·(BM+BN)·64·sizeof(T) + EPI_TMA·BM·BN·sizeof(T) + 1024 bytes dynamic
    requires K % 8 == 0 (TMA row stride a multiple of 16 B), X, W 16-byte aligned, Y and R
    4-byte aligned, SPLITK ≤ ceil(K/64), WS of SPLITK·M·N floats when SPLITK > 1 (then
    gemm_splitk_reduce(WS, Y, R, M, N, SPLITK) must follow); M, N ≥ 1 arbitrary.
*/
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include "../common/hopper.cuh"

#ifndef KL_FP16
#define KL_FP16 0
#endif
#ifndef BM
#define BM 128
#endif
#ifndef BN
#define BN 256
#endif
#ifndef BK
#define BK 64
#endif
#ifndef STAGES
#define STAGES 4
#endif
#ifndef CWG
#define CWG 2
#endif
#ifndef CLUSTER_M
#define CLUSTER_M 1
#endif
#ifndef CLUSTER_N
#define CLUSTER_N 1
#endif
#ifndef EPI_TMA
#define EPI_TMA 0
#endif
#ifndef SPLITK
#define SPLITK 1
#endif
#ifndef GROUP_M
#define GROUP_M 8
#endif

#if KL_FP16
typedef __half T;
#define KL_WG_T "f16"
#else
typedef __nv_bfloat16 T;
#define KL_WG_T "bf16"
#endif
#include "../common/wgmma.cuh"

#include "splitk_reduce.cuh"

#define MT (BM / (64 * CWG))
#define THREADS (128 * (CWG + 1))

static_assert(BK == 64, "BK must be 64: one 128-byte swizzle row of 16-bit elements");
static_assert(CWG == 1 || CWG == 2, "CWG must be 1 or 2");
static_assert(MT >= 1 && MT <= 2 && BM == 64 * CWG * MT, "BM must be 64*CWG or 128*CWG");
static_assert(BN % 32 == 0 && BN >= 32 && BN <= 256, "BN must be a multiple of 32 in 32..256");
static_assert(MT * BN <= 256, "MT*BN <= 256 (accumulator registers)");
#define CLUSTER_SIZE (CLUSTER_M * CLUSTER_N)
static_assert(CLUSTER_M >= 1 && CLUSTER_N >= 1 && (CLUSTER_SIZE == 1 || CLUSTER_SIZE == 2 || CLUSTER_SIZE == 4),
              "cluster of 1, 2 or 4 CTAs");
static_assert(BN % (8 * CLUSTER_M) == 0, "each multicast part of the W tile must be whole 8-row swizzle atoms");
static_assert(BM % (8 * CLUSTER_N) == 0, "each multicast part of the X tile must be whole 8-row swizzle atoms");
static_assert(EPI_TMA == 0 || BN % 64 == 0, "EPI_TMA stores 64-column boxes: BN % 64 == 0");
static_assert(STAGES >= 2 && STAGES <= 16, "STAGES must be in 2..16");
static_assert(SPLITK >= 1, "SPLITK >= 1");
static_assert(GROUP_M >= 1, "GROUP_M >= 1");

namespace {

constexpr int A_BYTES = BM * BK * 2;              // one stage of the X tile
constexpr int B_BYTES = BN * BK * 2;              // one stage of the W tile
constexpr int A_PART_ROWS = BM / CLUSTER_N;       // rows of the X tile each CTA loads (multicast
constexpr int B_PART_ROWS = BN / CLUSTER_M;       // to its row / column of the cluster) and of W
constexpr int EPI_BYTES = EPI_TMA ? BM * BN * 2 : 0;  // output staging tile for the TMA store
constexpr unsigned STAGE_TX = A_BYTES + B_BYTES;  // bytes that complete one full barrier
constexpr int ACC = BN / 2;                       // fp32 accumulators per thread per m64 tile
static_assert((STAGES * (BM + BN) * BK * 2 + EPI_BYTES + 1024) <= 232448, "shared memory beyond 227 KB");

// ---- mbarrier (mbar_* and the plain TMA load: kernels/common/hopper.cuh) ----
// Arrive on the barrier at the same offset in CTA `cta` of this cluster. Default (.release.cta)
// semantics on purpose: .release.cluster puts a MEMBAR.ALL.GPU before every arrive (seen in
// SASS; it made the cluster kernel 1.5-4x slower), and no ordering is needed here: the arrive
// only says the stage's shared memory has been read, and wgmma.wait_group already guaranteed that.
__device__ __forceinline__ void mbar_arrive_cluster(unsigned bar, unsigned cta) {
    asm volatile(
        "{\n.reg .b32 ra;\nmapa.shared::cluster.u32 ra, %0, %1;\n"
        "mbarrier.arrive.shared::cluster.b64 _, [ra];\n}\n" ::"r"(bar),
        "r"(cta)
        : "memory");
}

// ---- TMA ----
// Writes the box to the same shared-memory offset in every CTA of `mask`, completing the
// transaction on the barrier at the same offset in each.
__device__ __forceinline__ void tma_load_2d_multicast(unsigned dst, const KlTensorMap* map, unsigned bar, int c0, int c1,
                                                      unsigned short mask) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster"
        " [%0], [%1, {%3, %4}], [%2], %5;\n" ::"r"(dst),
        "l"(reinterpret_cast<unsigned long long>(map)), "r"(bar), "r"(c0), "r"(c1), "h"(mask)
        : "memory");
}

// Shared → global tensor store (rows/columns outside the tensor are not written).
__device__ __forceinline__ void tma_store_2d(const KlTensorMap* map, unsigned src, int c0, int c1) {
    asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%2, %3}], [%1];\n" ::"l"(
                     reinterpret_cast<unsigned long long>(map)),
                 "r"(src), "r"(c0), "r"(c1)
                 : "memory");
}
__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void bulk_wait_read0() { asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory"); }
__device__ __forceinline__ void bulk_wait0() { asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory"); }
__device__ __forceinline__ void consumers_sync() {
    asm volatile("bar.sync 1, %0;\n" ::"n"(CWG * 128) : "memory");
}

// ---- cluster ----
__device__ __forceinline__ unsigned cluster_ctarank() {
    unsigned r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
    return r;
}
__device__ __forceinline__ unsigned cluster_id_x() {
    unsigned r;
    asm volatile("mov.u32 %0, %%clusterid.x;\n" : "=r"(r));
    return r;
}
__device__ __forceinline__ unsigned nclusters_x() {
    unsigned r;
    asm volatile("mov.u32 %0, %%nclusterid.x;\n" : "=r"(r));
    return r;
}
__device__ __forceinline__ void cluster_sync() {
    asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}

// ---- wgmma: group fences and the 128-byte-swizzle descriptor (kl_desc_sw128) are in
// kernels/common/hopper.cuh, the instruction in kernels/common/wgmma.cuh. Stage buffers are
// 1024-byte aligned, as the descriptor needs.

#include "../common/to_from_f.cuh"  // to_f, from_f: T <-> float

// One work unit: output tile (tm, tn) and k-tiles [kt0, kt1) of split `split`.
struct Unit {
    int tm, tn, split, kt0, kt1;
};

// Units count cluster tiles (CLUSTER_M × CLUSTER_N output tiles); the CTA of cluster rank
// (rm, rn) = (rank % CLUSTER_M, rank / CLUSTER_M) takes tile (pm·CLUSTER_M + rm, pn·CLUSTER_N + rn).
__device__ __forceinline__ Unit decode_unit(int u, int tiles_pm, int tiles_pn, int KT, int rm, int rn) {
    const int per_split = tiles_pm * tiles_pn;
    const int split = u / per_split;
    const int tile = u - split * per_split;
    const int per_group = GROUP_M * tiles_pn;
    const int group = tile / per_group;
    const int first = group * GROUP_M;
    const int gsize = min(tiles_pm - first, GROUP_M);
    const int in_group = tile - group * per_group;
    Unit w;
    w.tm = (first + in_group % gsize) * CLUSTER_M + rm;
    w.tn = (in_group / gsize) * CLUSTER_N + rn;
    w.split = split;
    w.kt0 = split * KT / SPLITK;
    w.kt1 = (split + 1) * KT / SPLITK;
    return w;
}

// Consumer warp `warp` (0..3 of its warpgroup) is done reading stage s: one arrive per warp
// on the empty barrier of every CTA of the cluster (the producers there may overwrite it).
__device__ __forceinline__ void release_stage(unsigned empty_bar, int lane) {
    if (lane == 0) {
#if CLUSTER_SIZE == 1
        kl_mbar_arrive(empty_bar);
#else
#pragma unroll
        for (int c = 0; c < CLUSTER_SIZE; ++c) mbar_arrive_cluster(empty_bar, (unsigned)c);
#endif
    }
}

__device__ __forceinline__ void store_tile(const float (&acc)[MT][ACC], const Unit& w, int cw, int warp, int lane,
                                           T* __restrict__ Y, const T* __restrict__ R, float* __restrict__ WS, int M,
                                           int N) {
    const int row0 = w.tm * BM + cw * MT * 64 + warp * 16 + (lane >> 2);
    const int col0 = w.tn * BN + 2 * (lane & 3);
    const bool pair_ok = (N & 1) == 0;  // row*N + col even → 4-byte (8-byte for fp32) aligned
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int row = row0 + mt * 64 + h * 8;
            if (row >= M) continue;
#pragma unroll
            for (int j = 0; j < BN / 8; ++j) {
                const int col = col0 + j * 8;
                if (col >= N) continue;
                float v0 = acc[mt][4 * j + 2 * h], v1 = acc[mt][4 * j + 2 * h + 1];
                if (SPLITK > 1) {
                    float* dst = WS + ((size_t)w.split * M + row) * N + col;
                    if (pair_ok) {
                        *reinterpret_cast<float2*>(dst) = make_float2(v0, v1);
                    } else {
                        dst[0] = v0;
                        if (col + 1 < N) dst[1] = v1;
                    }
                    continue;
                }
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

#if EPI_TMA
// Epilogue through shared memory: the tile (+R) is written as bf16/fp16 into BN/64 column
// blocks [BM rows][128 B] with the 128-byte swizzle (conflict-free: the 8 rows of one store
// land in 8 different 16-byte chunks), then one thread stores each block with TMA and the
// consumers go straight on to the next unit; the store is waited for (reads of the staging
// tile only) before the staging tile is written again.
__device__ __forceinline__ void stage_tile(const float (&acc)[MT][ACC], const Unit& w, int cw, int warp, int lane,
                                           unsigned sEpi, const T* __restrict__ R, int M, int N, const KlTensorMap* tmY) {
    if (threadIdx.x == 128) bulk_wait_read0();
    consumers_sync();  // the previous unit's TMA store no longer reads the staging tile
    const int q = lane & 3;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int r = cw * MT * 64 + mt * 64 + warp * 16 + (lane >> 2) + h * 8;  // row in tile
            const int row = w.tm * BM + r;
#pragma unroll
            for (int j = 0; j < BN / 8; ++j) {
                float v0 = acc[mt][4 * j + 2 * h], v1 = acc[mt][4 * j + 2 * h + 1];
                if (R != nullptr) {
                    const int col = w.tn * BN + j * 8 + 2 * q;  // N even here (TMA store needs N % 8 == 0)
                    if (row < M && col < N) {
                        const size_t o = (size_t)row * N + col;
#include "add_residual_pair.cuh"  // v0, v1 += R[o], R[o+1]
                    }
                }
#if KL_FP16
                const __half2 pv = __floats2half2_rn(v0, v1);
#else
                const __nv_bfloat162 pv = __floats2bfloat162_rn(v0, v1);
#endif
                const unsigned addr =
                    sEpi + (j / 8) * (BM * 128) + r * 128 + ((((j & 7) ^ (r & 7))) << 4) + q * 4;
                asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(addr), "r"(*reinterpret_cast<const unsigned*>(&pv))
                             : "memory");
            }
        }
    }
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");  // visible to the TMA engine
    consumers_sync();
    if (threadIdx.x == 128) {
#pragma unroll
        for (int cb = 0; cb < BN / 64; ++cb) tma_store_2d(tmY, sEpi + cb * (BM * 128), w.tn * BN + cb * 64, w.tm * BM);
        bulk_commit();
    }
}
#endif

}  // namespace

#if CLUSTER_SIZE > 1
#define KL_CLUSTER_ATTR __cluster_dims__(CLUSTER_SIZE, 1, 1)
#else
#define KL_CLUSTER_ATTR
#endif

extern "C" __global__ void __launch_bounds__(THREADS, 1) KL_CLUSTER_ATTR
gemm_wgmma(const __grid_constant__ KlTensorMap tmX, const __grid_constant__ KlTensorMap tmW, const __grid_constant__ KlTensorMap tmY,
           T* __restrict__ Y, const T* __restrict__ R, float* __restrict__ WS, int M, int N, int K, int tma_store) {
    __shared__ __align__(8) unsigned long long bars[2 * STAGES];  // full[0..S), empty[0..S)
    extern __shared__ __align__(128) unsigned char smem_raw[];
    const unsigned sA = (kl_smem_u32(smem_raw) + 1023u) & ~1023u;  // the host adds 1 KB of slack
    const unsigned sB = sA + STAGES * A_BYTES;
    const unsigned sEpi = sB + STAGES * B_BYTES;  // EPI_BYTES of output staging (EPI_TMA)
    const unsigned full0 = kl_smem_u32(&bars[0]);
    const unsigned empty0 = kl_smem_u32(&bars[STAGES]);

    const int wg = threadIdx.x / 128;  // 0: producer; 1..CWG: consumers
    const int tid = threadIdx.x % 128;
#if CLUSTER_SIZE > 1
    const int rank = (int)cluster_ctarank();
    const int cid = (int)cluster_id_x();
    const int ncl = (int)nclusters_x();
#else
    const int rank = 0;
    const int cid = blockIdx.x;
    const int ncl = gridDim.x;
#endif
    const int rm = rank % CLUSTER_M, rn = rank / CLUSTER_M;

    if (threadIdx.x == 0) {
#pragma unroll
        for (int s = 0; s < STAGES; ++s) {
            kl_mbar_init(full0 + 8 * s, 1);
            kl_mbar_init(empty0 + 8 * s, CLUSTER_SIZE * CWG * 4);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
#if CLUSTER_SIZE > 1
    cluster_sync();  // peers' barriers are initialized before anyone multicasts or arrives
#else
    __syncthreads();
#endif

    const int tiles_m = (M + BM - 1) / BM;
    const int tiles_n = (N + BN - 1) / BN;
    const int tiles_pm = (tiles_m + CLUSTER_M - 1) / CLUSTER_M;
    const int tiles_pn = (tiles_n + CLUSTER_N - 1) / CLUSTER_N;
    const int KT = (K + BK - 1) / BK;
    const int units = tiles_pm * tiles_pn * SPLITK;

    if (wg == 0) {
        // ---------------- producer ----------------
#if CWG == 2
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
#endif
        if (tid == 0) {
            asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<unsigned long long>(&tmX)) : "memory");
            asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<unsigned long long>(&tmW)) : "memory");
#if CLUSTER_N > 1
            unsigned short a_mask = 0;  // ranks rm + CLUSTER_M·j: the CTAs that share this X tile
#pragma unroll
            for (int j = 0; j < CLUSTER_N; ++j) a_mask |= (unsigned short)(1 << (rm + CLUSTER_M * j));
#endif
#if CLUSTER_M > 1
            // ranks CLUSTER_M·rn + i: the CTAs that share this W tile
            const unsigned short b_mask = (unsigned short)(((1 << CLUSTER_M) - 1) << (CLUSTER_M * rn));
#endif
            int s = 0;
            unsigned phase = 0;
            for (int u = cid; u < units; u += ncl) {
                const Unit w = decode_unit(u, tiles_pm, tiles_pn, KT, rm, rn);
                for (int kt = w.kt0; kt < w.kt1; ++kt) {
                    const unsigned eb = empty0 + 8 * s, fb = full0 + 8 * s;
                    // (acquire.cta, also with peers arriving: .acquire.cluster costs a
                    // CCTL.IVALL per wait and orders nothing the TMA write needs)
                    kl_mbar_wait(eb, phase ^ 1);
                    kl_mbar_expect_tx(fb, STAGE_TX);
#if CLUSTER_N > 1
                    // X tile: shared by the cluster's row rm (ranks rm + CLUSTER_M·j); part rn
                    tma_load_2d_multicast(sA + s * A_BYTES + rn * (A_PART_ROWS * BK * 2), &tmX, fb, kt * BK,
                                          w.tm * BM + rn * A_PART_ROWS, a_mask);
#else
                    kl_tma_load_2d(sA + s * A_BYTES, &tmX, fb, kt * BK, w.tm * BM);
#endif
#if CLUSTER_M > 1
                    // W tile: shared by the cluster's column rn (ranks CLUSTER_M·rn + i); part rm
                    tma_load_2d_multicast(sB + s * B_BYTES + rm * (B_PART_ROWS * BK * 2), &tmW, fb, kt * BK,
                                          w.tn * BN + rm * B_PART_ROWS, b_mask);
#else
                    kl_tma_load_2d(sB + s * B_BYTES, &tmW, fb, kt * BK, w.tn * BN);
#endif
                    if (++s == STAGES) {
                        s = 0;
                        phase ^= 1;
                    }
                }
            }
        }
        __syncwarp();
    } else {
        // ---------------- consumers ----------------
#if CWG == 2
        asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
#endif
        const int cw = wg - 1;
        const int warp = tid >> 5, lane = tid & 31;
        float acc[MT][ACC];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int i = 0; i < ACC; ++i) acc[mt][i] = 0.f;

        const unsigned a_off = cw * MT * 64 * (BK * 2);  // this warpgroup's rows of the X tile
        int s = 0;
        unsigned phase = 0;
        for (int u = cid; u < units; u += ncl) {
            const Unit w = decode_unit(u, tiles_pm, tiles_pn, KT, rm, rn);
            const int nk = w.kt1 - w.kt0;
            int prev = 0;
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int i = 0; i < ACC; ++i) kl_reg_fence(acc[mt][i]);
            for (int i = 0; i < nk; ++i) {
                kl_mbar_wait(full0 + 8 * s, phase);
                kl_wg_fence();
                const unsigned a_addr = sA + s * A_BYTES + a_off;
                const unsigned b_addr = sB + s * B_BYTES;
#pragma unroll
                for (int kk = 0; kk < BK / 16; ++kk) {
                    const unsigned long long db = kl_desc_sw128(b_addr + kk * 32);
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt) {
                        const unsigned long long da = kl_desc_sw128(a_addr + mt * 64 * (BK * 2) + kk * 32);
                        KlWg<BN>::ss(acc[mt], da, db, (i > 0 || kk > 0) ? 1 : 0);
                    }
                }
                kl_wg_commit();
                if (i > 0) {
                    kl_wg_wait<1>();  // the previous k-tile's group is done: its stage is free
                    release_stage(empty0 + 8 * prev, lane);
                }
                prev = s;
                if (++s == STAGES) {
                    s = 0;
                    phase ^= 1;
                }
            }
            kl_wg_wait<0>();
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int i = 0; i < ACC; ++i) kl_reg_fence(acc[mt][i]);
            release_stage(empty0 + 8 * prev, lane);
#if EPI_TMA
            if (SPLITK == 1 && tma_store) {
                stage_tile(acc, w, cw, warp, lane, sEpi, R, M, N, &tmY);
                continue;
            }
#endif
            store_tile(acc, w, cw, warp, lane, Y, R, WS, M, N);
        }
#if EPI_TMA
        if (threadIdx.x == 128) bulk_wait0();  // the last stores have finished reading staging
#endif
    }
#if CLUSTER_SIZE > 1
    cluster_sync();  // no CTA leaves while a peer may still multicast into it or arrive on it
#endif
}
