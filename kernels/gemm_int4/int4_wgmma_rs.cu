// int4_wgmma_rs.cu — W4A16 GEMM on Hopper with the weights as wgmma's register operand:
//     Y[M,N] = X[M,K] · dequant(W)ᵀ (+ R[M,N])   computed as   Yᵀ = dequant(W) · Xᵀ.
//
// Why: int4_mma_wgmma dequantizes W into shared memory so that wgmma can read it as B, and
// pays a store, a proxy fence and a barrier per k-tile for it. wgmma also takes A from
// registers, in the same fragment layout as mma.m16n8k16 (warp w of the warpgroup holds
// rows 16w..16w+15). So the product is turned around: weight rows are wgmma's M (64 per
// warpgroup and m64 tile), tokens are wgmma's N (BT = 8..256, so M = 1 costs an n8 tile, not
// an m64 one), and each thread dequantizes exactly the A fragment it feeds: no shared-memory
// round trip, and every weight is dequantized once per block.
//
// Data movement: a producer warpgroup (the last; one lane of it issues TMA) streams stages of
// KGROUP k-tiles of 64 through a STAGES-deep ring — per k-tile the X tile [BT][64] (128-byte
// swizzle: wgmma's B operand, K-major), per stage the packed W tile [ROWS][8·KGROUP words]
// (plain rows) — on full[s]/empty[s] mbarriers. TMA writes through the async proxy that wgmma
// reads, so no proxy fence is needed, and the bytes in flight cost no registers. A second
// warp of that warpgroup copies each stage's scales (and zeros) for the block's rows into the
// same ring (plain loads and stores; its 32 lanes arrive on full[s] too), so the consumers
// never wait on a global load: scale loads run as far ahead as the weights do.
//
// Consumers (CWG warpgroups, MT m64 weight tiles each), per k-tile:
//   wait full[s]; read the two 32-byte W rows of this lane (rows g and g+8 of its 16-row slab)
//   from shared memory; dequantize pair t (= lane % 4) of every word: word 2c, pair t is
//   (row, k 16c+2t, +1) = A register a0/a1 of k16 step c, word 2c+1 gives a2/a3 (kernlab's
//   nibble order, docs/int4-format.md: `(w >> 4t) & 0x000F000F | MAGIC` is the column pair);
//   wgmma.fence; 4·MT wgmma m64nBTk16 (A = registers, B = descriptor into the X slot); commit;
//   wait for the group; release the stage (empty, one arrive per warp). A stage holds KGROUP
//   k-tiles: they share one wgmma group and one wait, and the TMA rows of W are 32·KGROUP
//   bytes wide (narrow 32-byte rows held decode near 1.2 TB/s).
//   The wait is for the whole group, not "all but one": ptxas (13.0) serializes every wgmma
//   of the kernel, each paying its full latency (warning C7513), as soon as ordinary
//   instructions define a wgmma register operand while any group is in flight — which the
//   dequant of tile t+1 during wgmma t would. So a warpgroup alternates dequant and wgmma,
//   and the overlap comes from the other warpgroups and blocks on the SM.
// Dequant values: (q - z)·s (or q·s + m) rounded once to the activation dtype — the same
// values as int4_mma, int4_mma_wgmma and the dequantize-then-cuBLAS reference.
//
// Weight format (docs/int4-format.md): Wq u32 [N][K/8]; scales [K/GROUP][N] (f16/bf16 bits);
// zeros per ZERO_MODE, [K/GROUP][N].
//
// Tunables (defaults in brackets):
//   KL_FP16 [0]        0: X, R, Y bf16; 1: fp16
//   KL_SCALE_FP16      scale/minimum dtype, 1 = f16, 0 = bf16 [same as KL_FP16]
//   GROUP [128]        group size along K, a multiple of 32
//   ZERO_MODE [0]      0 symmetric (q-8)·s; 1 u8 zeros (q-z)·s; 2 float minimums q·s+m
//   BT [8]             tokens (rows of X) per block = wgmma n: 8, 16, 32, 64, 128, 192, 256
//   MT [1]             m64 weight tiles per consumer warpgroup: 1, 2 or 4
//   CWG [2]            consumer warpgroups: 1 or 2 (ROWS = 64·MT·CWG weight rows per block)
//   STAGES [4]         TMA ring depth in stages of KGROUP k-tiles, 2..16
//   KGROUP [1]         k-tiles per stage and per wgmma group (one wait): 1, 2 or 4
//   SPLITK [1]         K splits over blockIdx.z (> 1 needs gemm_splitk_reduce)
// Constraints: MT·BT <= 256 (fp32 accumulators per thread), ROWS <= 256 (one TMA box).
//
// Launch contract:
//   extern "C" __global__ void int4_wgmma_rs(const __grid_constant__ KlTensorMap tmX,
//       const __grid_constant__ KlTensorMap tmW, const unsigned short* scales,
//       const void* zeros, const T* R, T* Y, float* WS, int M, int N, int K)
//     tmX: 2-D map of X, dims {K, M}, row stride K·2 B, box {64, BT}, 16-bit elements,
//          SWIZZLE_128B, zero fill.
//     tmW: 2-D map of Wq, dims {K/8, N} u32, row stride K/2 B, box {8·KGROUP, ROWS}, no
//          swizzle, zero fill.
//     T = __nv_bfloat16 (__half with KL_FP16=1). zeros: ZERO_MODE 0 ignored (may be NULL),
//     1: const unsigned char* [K/GROUP][N], 2: const unsigned short* [K/GROUP][N]. R nullable
//     (may equal Y). SPLITK == 1: Y (+R) written, WS unused. SPLITK > 1: WS fp32
//     [SPLITK][M][N] fully written (empty splits write zeros), Y and R untouched; then
//     gemm_splitk_reduce(WS, Y, R, M, N, SPLITK): grid (ceil(M*N/256), 1, 1), block (256, 1, 1).
//     grid  = (ceil(M / BT), ceil(N / ROWS), SPLITK): token tiles vary fastest, so the
//       blocks that share a W tile run together and W comes from DRAM about once
//     block = (128 * (CWG + 1), 1, 1)
//     dynamic shared memory = STAGES * KGROUP * (BT*128 + ROWS*32 + ROWS*NG*4) + 1024 bytes, NG =
//       max(1, 64 / GROUP) groups per k-tile (the host raises the limit above 48 KB)
//   Requirements: K % 64 == 0, K % GROUP == 0; X and Wq 16-byte aligned (K % 32 == 0 keeps
//   Wq's rows 16-byte multiples); M, N >= 1 arbitrary. sm_90a.

#include "int4_common.cuh"
#include "../common/hopper.cuh"

#ifndef BT
#define BT 8
#endif
#ifndef MT
#define MT 1
#endif
#ifndef CWG
#define CWG 2
#endif
#ifndef STAGES
#define STAGES 4
#endif
#ifndef SPLITK
#define SPLITK 1
#endif
#ifndef KGROUP
#define KGROUP 1
#endif

#define BK 64
#define ROWS (64 * MT * CWG)
#define THREADS (128 * (CWG + 1))      // consumers, then the producer warpgroup
#define ACC (BT / 2)                     // fp32 accumulators per thread per m64 tile
// A ring slot ("stage") holds KGROUP consecutive k-tiles.
#define X_BYTES (BT * 128)               // the X tile of one k-tile (1024-byte multiple)
#define W_ROW_BYTES (32 * KGROUP)        // one weight row of a stage (one TMA box row)
#define W_BYTES (ROWS * W_ROW_BYTES)     // the packed W tile of a stage
#define NG (GROUP >= BK ? 1 : BK / GROUP) // groups per k-tile (GROUP 32: two)
#define SC_TILE (ROWS * NG)              // scale (and zero) entries of one k-tile
#define SC_ENTRIES (SC_TILE * KGROUP)    // ... of a stage
#define SC_BYTES (SC_ENTRIES * 4)        // their slot: u16 scales, then u16 zeros
#define SC_PER_LANE ((SC_ENTRIES + 31) / 32)
#define SC_BATCH (SC_PER_LANE < 8 ? SC_PER_LANE : 8)  // loads in flight per lane
#define FULL_ARRIVALS 33                 // the TMA lane's arrive.expect_tx + 32 scale lanes

#if GROUP % 32 != 0
#error "GROUP must be a multiple of 32"
#endif
#if MT != 1 && MT != 2 && MT != 4
#error "MT must be 1, 2 or 4"
#endif
#if CWG != 1 && CWG != 2
#error "CWG must be 1 or 2"
#endif
#if ROWS > 256
#error "ROWS = 64*MT*CWG must be <= 256 (one TMA box)"
#endif
#if MT * BT > 256
#error "MT * BT <= 256 (accumulator registers)"
#endif
#if STAGES < 2 || STAGES > 16
#error "STAGES must be in 2..16"
#endif
#if KGROUP != 1 && KGROUP != 2 && KGROUP != 4
#error "KGROUP must be 1, 2 or 4"
#endif


#include "../gemm/splitk_reduce.cuh"

// wgmma.mma_async m64nBTk16 (KlWg<BT>::rs<0>): A from registers (this thread's fragment),
// B K-major from the shared-memory descriptor, fp32 accumulators (they start at zero).
#define KL_WG_T PTX_T
#include "../common/wgmma.cuh"

// Registers are handed out per warpgroup: a lone producer warp would cost as much as a full
// one (a 288-thread block ran out of registers at 175 per thread). So the producer is a whole
// warpgroup, and where two consumer warpgroups hold 128+ accumulators each it gives them its
// registers (setmaxnreg: 40 for the producer, 232 for the consumers, 64512 in all). Smaller
// tiles skip it: setmaxnreg fixes the block's allocation at 168 per thread, one block per
// SM, where decode tiles (~60 registers) fit three.
#define SET_MAXNREG (CWG == 2 && MT * BT >= 256)
extern "C" __global__ void __launch_bounds__(THREADS, 1)
int4_wgmma_rs(const __grid_constant__ KlTensorMap tmX, const __grid_constant__ KlTensorMap tmW,
              const u16* __restrict__ scales, const void* __restrict__ zeros, const T* __restrict__ R,
              T* __restrict__ Y, float* __restrict__ WS, int M, int N, int K) {
    __shared__ __align__(8) unsigned long long bars[2 * STAGES];  // full[0..S), empty[0..S)
    extern __shared__ __align__(16) unsigned char smem_raw[];
    // The swizzled X slots need 1024-byte alignment (the host adds 1024 bytes).
    const unsigned base = (kl_smem_u32(smem_raw) + 1023u) & ~1023u;
    const unsigned char* smem = smem_raw + (base - kl_smem_u32(smem_raw));
    const unsigned x_base = base;                       // STAGES X tiles
    const unsigned w_off = STAGES * KGROUP * X_BYTES;   // STAGES packed W tiles
    const unsigned sc_off = w_off + STAGES * W_BYTES;   // STAGES scale/zero slots
    const unsigned full0 = kl_smem_u32(&bars[0]), empty0 = kl_smem_u32(&bars[STAGES]);

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int m0 = blockIdx.x * BT, n0 = blockIdx.y * ROWS;
    const int kt_all = K / BK;
    const int kt_begin = (int)(((long long)blockIdx.z * kt_all) / SPLITK);
    const int kt_end = (int)(((long long)(blockIdx.z + 1) * kt_all) / SPLITK);
    const int KT = kt_end - kt_begin;
    const int NS = (KT + KGROUP - 1) / KGROUP;  // stages of this split (the last may be short)

    if (tid == 0) {
        for (int s = 0; s < STAGES; s++) {
            kl_mbar_init(full0 + 8 * s, FULL_ARRIVALS);
            kl_mbar_init(empty0 + 8 * s, 4 * CWG);
        }
        kl_mbar_init_fence();
    }
    __syncthreads();

    // ---- producer: one lane of the last warpgroup issues every TMA load ----
    if (warp >= 4 * CWG) {
#if SET_MAXNREG
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
#endif
        if (warp == 4 * CWG && lane == 0) {
            // Stage u: the W box of KGROUP k-tiles (ROWS rows of W_ROW_BYTES; past the split's
            // end it reads words the consumers skip, past K zeros) and one X box per k-tile.
            for (int u = 0; u < NS; u++) {
                const int s = u % STAGES;
                if (u >= STAGES) kl_mbar_wait(empty0 + 8 * s, ((u / STAGES) - 1) & 1);
                const int kt0 = kt_begin + u * KGROUP, tiles = min(KGROUP, kt_end - kt0);
                kl_mbar_expect_tx(full0 + 8 * s, W_BYTES + tiles * X_BYTES);
                kl_tma_load_2d(base + w_off + s * W_BYTES, &tmW, full0 + 8 * s, kt0 * (BK / 8), n0);
                for (int kk = 0; kk < tiles; kk++)
                    kl_tma_load_2d(x_base + (s * KGROUP + kk) * X_BYTES, &tmX, full0 + 8 * s, (kt0 + kk) * BK, m0);
            }
        } else if (warp == 4 * CWG + 1) {
            // Scales (and zeros) of stage u for rows n0.., entry e = (kk·NG + q)·ROWS + r (k-tile
            // kk, group q of the k-tile): slot u16 [SC_ENTRIES] scales, then u16 [SC_ENTRIES]
            // zeros. Loads go out SC_BATCH at a time per lane before their stores.
            for (int u = 0; u < NS; u++) {
                const int s = u % STAGES;
                if (u >= STAGES) kl_mbar_wait(empty0 + 8 * s, ((u / STAGES) - 1) & 1);
                u16* slot = reinterpret_cast<u16*>(const_cast<unsigned char*>(smem) + sc_off + s * SC_BYTES);
                const int kt0 = kt_begin + u * KGROUP;
                for (int e0 = 0; e0 < SC_PER_LANE; e0 += SC_BATCH) {
                    u16 sv[SC_BATCH], zv[SC_BATCH];
#pragma unroll
                    for (int b = 0; b < SC_BATCH; b++) {
                        const int e = (e0 + b) * 32 + lane;
                        const int kq = e / ROWS, row = n0 + (e - kq * ROWS);
                        const int kt = kt0 + kq / NG;
                        sv[b] = 0;
                        zv[b] = 0;
                        if (e < SC_ENTRIES && row < N && kt < kt_end) {
                            const size_t idx = (size_t)((kt * BK + (kq % NG) * 32) / GROUP) * N + row;
                            sv[b] = __ldg(scales + idx);
#if ZERO_MODE == 1
                            zv[b] = __ldg(reinterpret_cast<const unsigned char*>(zeros) + idx);
#elif ZERO_MODE == 2
                            zv[b] = __ldg(reinterpret_cast<const u16*>(zeros) + idx);
#endif
                        }
                    }
#pragma unroll
                    for (int b = 0; b < SC_BATCH; b++) {
                        const int e = (e0 + b) * 32 + lane;
                        if (e < SC_ENTRIES) {
                            slot[e] = sv[b];
                            slot[SC_ENTRIES + e] = zv[b];
                        }
                    }
                }
                kl_mbar_arrive(full0 + 8 * s);  // release: this lane's stores, then the arrival
            }
        }
        return;  // no block-wide barrier follows
    }

    // ---- consumers ----
#if SET_MAXNREG
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
#endif
    const int wg = warp >> 2, w4 = warp & 3;
    const int g = lane >> 2, t4 = lane & 3;
    const int shift = 4 * t4;  // pair t4 of every word
    // Tile-local rows of this lane: slab of m64 tile i, rows g and g+8.
    int lrow[MT][2];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int h = 0; h < 2; h++) lrow[i][h] = (wg * MT + i) * 64 + 16 * w4 + g + 8 * h;

#include "wgmma_acc_zero.cuh"  // float acc[MT][ACC], zeroed
    // Stage u: its k-tiles (KGROUP, fewer at the split's end) dequantized, then one wgmma
    // group for all of them, one wait, and the stage released. More k-tiles per stage pay the
    // group's latency once for more bytes, and widen the TMA rows of W (32·KGROUP bytes).
    auto consume = [&](int u) {
        const int s = u % STAGES;
        const int tiles = min(KGROUP, KT - u * KGROUP);
        kl_mbar_wait(full0 + 8 * s, (u / STAGES) & 1);
        const u16* sc = reinterpret_cast<const u16*>(smem + sc_off + s * SC_BYTES);
        u32 a[KGROUP][MT][4][4];  // [k-tile][m64 tile][k16 step][A register]
#pragma unroll
        for (int kk = 0; kk < KGROUP; kk++) {
            if (kk >= tiles) break;
            Deq d[MT][2][NG];
#pragma unroll
            for (int i = 0; i < MT; i++)
#pragma unroll
                for (int h = 0; h < 2; h++)
#pragma unroll
                    for (int q = 0; q < NG; q++) {
                        const int e = (kk * NG + q) * ROWS + lrow[i][h];
                        d[i][h][q] = make_deq(sc[e], sc[SC_ENTRIES + e]);
                    }
#pragma unroll
            for (int i = 0; i < MT; i++) {
                u32 w[2][8];
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const uint4* src = reinterpret_cast<const uint4*>(smem + w_off + s * W_BYTES +
                                                                      lrow[i][h] * W_ROW_BYTES + kk * 32);
                    const uint4 lo = src[0], hi = src[1];
                    w[h][0] = lo.x, w[h][1] = lo.y, w[h][2] = lo.z, w[h][3] = lo.w;
                    w[h][4] = hi.x, w[h][5] = hi.y, w[h][6] = hi.z, w[h][7] = hi.w;
                }
#pragma unroll
                for (int c = 0; c < 4; c++) {
                    const int q = (NG == 1) ? 0 : (c * 16) / GROUP;
                    a[kk][i][c][0] = dequant_pair(w[0][2 * c] >> shift, d[i][0][q]);
                    a[kk][i][c][1] = dequant_pair(w[1][2 * c] >> shift, d[i][1][q]);
                    a[kk][i][c][2] = dequant_pair(w[0][2 * c + 1] >> shift, d[i][0][q]);
                    a[kk][i][c][3] = dequant_pair(w[1][2 * c + 1] >> shift, d[i][1][q]);
                }
            }
            // Pin the A registers' definitions before the wgmma.fence, so that no dequant
            // instruction is scheduled among the group's wgmma's (see C7513 above).
#pragma unroll
            for (int i = 0; i < MT; i++)
#pragma unroll
                for (int c = 0; c < 4; c++)
#pragma unroll
                    for (int r = 0; r < 4; r++) kl_reg_fence_u32(a[kk][i][c][r]);
        }
        kl_wg_fence();
#pragma unroll
        for (int kk = 0; kk < KGROUP; kk++) {
            if (kk >= tiles) break;
            const unsigned x_slot = x_base + (s * KGROUP + kk) * X_BYTES;
#pragma unroll
            for (int c = 0; c < 4; c++) {
                const unsigned long long db = kl_desc_sw128(x_slot + c * 32);
#pragma unroll
                for (int i = 0; i < MT; i++) KlWg<BT>::rs<0>(acc[i], a[kk][i][c], db);
            }
        }
        kl_wg_commit();
        kl_wg_wait<0>();  // the stage and the A registers are free again
        __syncwarp();
        if (lane == 0) kl_mbar_arrive(empty0 + 8 * s);
    };

    if (KT > 0) {
        for (int u = 0; u < NS; u++) consume(u);
#pragma unroll
        for (int i = 0; i < MT; i++)
#pragma unroll
            for (int e = 0; e < ACC; e++) kl_reg_fence(acc[i][e]);
    }

    // Epilogue: accumulator 4j+e of m64 tile i is weight row (lane slab) g + 8·(e/2) and token
    // 8j + 2·t4 + e%2 — Y is written transposed, one 16-bit value at a time (8 lanes with the
    // same t4 write 8 consecutive outputs of one Y row).
#pragma unroll
    for (int i = 0; i < MT; i++) {
#pragma unroll
        for (int j = 0; j < ACC / 4; j++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int row = n0 + lrow[i][e >> 1];
                const int m = m0 + 8 * j + 2 * t4 + (e & 1);
                if (row < N && m < M) {
                    const size_t idx = (size_t)m * N + row;
                    float v = acc[i][4 * j + e];
#if SPLITK > 1
                    WS[(size_t)blockIdx.z * M * N + idx] = v;
#else
                    if (R) v += act_to_float(R[idx]);
                    Y[idx] = float_to_act(v);
#endif
                }
            }
        }
    }
}
