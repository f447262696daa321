/*
attention/prefill.cu — causal grouped-query attention for prefill, flash-attention style.

    O[t, h, :] = softmax_j( scale · Q[t, h, :] · K[j, h / G, :] ) · V[j, h / G, :]
    over the keys j of t's own sequence with position(j) <= position(t)   (G = H / KVH)

Layout ("varlen"): the sequences of a batch are packed one after another along a token axis.
    Q, O   [total_tokens, H,   HEAD_DIM]   row-major, T = bf16 (or fp16 with -DKL_FP16=1)
    K, V   [total_tokens, KVH, HEAD_DIM]
    cu_seqlens  int32 [B + 1], cu_seqlens[0] = 0: sequence b is tokens cu_seqlens[b] ..
                cu_seqlens[b+1]-1, each attending causally to itself (query and key lengths
                equal; token i of a sequence sees keys 0..i of that sequence).
A batch of equal lengths S is the same thing with cu_seqlens = 0, S, 2S, ... (= [B, S, H, D]).
fp32 accumulation and softmax; O is normalised and cast to T.

How it works
- One block per (query head h, query tile of BLOCK_M rows, sequence). blockIdx.x is the head,
  so the G query heads that share a KV head run next to each other and hit the same K/V in
  L2; blockIdx.y walks query tiles from the last (longest causal row) to the first, so the
  heaviest blocks are scheduled first.
- Each warp owns WARP_M = BLOCK_M / NUM_WARPS query rows (16 or 32: MT m16 tiles). Its Q
  fragments stay in registers for the whole KV loop (loaded once with ldmatrix).
- K and V tiles of BLOCK_N keys stream through a STAGES-deep cp.async ring in shared memory
  (16-byte copies, zero-filled past the sequence end). Rows are HEAD_DIM*2 bytes with a
  16-byte-chunk XOR swizzle (chunk ^ row%8): cp.async writes and ldmatrix reads are free of
  bank conflicts.
- S = Q·Kᵀ with mma.sync m16n8k16 (K tile read with ldmatrix, no transpose: K[key][d] is the
  column-major B operand). Causal / length masking only on tiles that cross the diagonal or
  the sequence end; tiles that lie wholly above a warp's rows are skipped by that warp.
- Online softmax in base 2 (scores pre-multiplied by scale·log2 e), running max and sum per
  row; each quad of lanes shares a row (shuffle-xor 1, 2).
- P·V: the S accumulators of two adjacent n8 tiles are exactly the A fragment of an m16n8k16
  step over 16 keys (c0c1 → a0, c2c3 → a1, next tile's c0c1 → a2, c2c3 → a3), packed to T;
  V is read with ldmatrix.trans.
- Epilogue: row sums reduced over the quad, O / l cast to T, 4-byte stores for rows < len.

Tunables (macros, defaults below)
    HEAD_DIM   64, 128, 192 or 256 (must equal the problem's D)
    BLOCK_M    query rows per block;  WARP_M = BLOCK_M / NUM_WARPS must be 16 or 32
    BLOCK_N    keys per KV tile, multiple of 16
    NUM_WARPS  warps per block, 1..16
    STAGES     cp.async ring depth for K/V tiles, 2..4
    KL_FP16    0 = bf16 (default), 1 = fp16

Launch contract (host)
    entry   attn_prefill(const T* Q, const T* K, const T* V, T* O, const int* cu_seqlens,
                         int H, int KVH, float scale)
    grid    (H, ceil(max_seqlen / BLOCK_M), B)
    block   (NUM_WARPS * 32, 1, 1)
    smem    (BLOCK_M + 2 * STAGES * BLOCK_N) * HEAD_DIM * sizeof(T) bytes dynamic
            (the host raises the dynamic shared-memory limit above 48 KB)
    requires H % KVH == 0, Q/K/V/O 16-byte aligned, every length <= max_seqlen; lengths may be 0.
    scale is the softmax scale (1/sqrt(HEAD_DIM) for Llama).
*/
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#ifndef KL_FP16
#define KL_FP16 0
#endif
#ifndef HEAD_DIM
#define HEAD_DIM 128
#endif
#ifndef BLOCK_M
#define BLOCK_M 128
#endif
#ifndef BLOCK_N
#define BLOCK_N 64
#endif
#ifndef NUM_WARPS
#define NUM_WARPS 8
#endif
#ifndef STAGES
#define STAGES 2
#endif

#include "attention_common.cuh"  // T, T2, pack2, cp.async, ldmatrix, mma.m16n8k16

#define THREADS (NUM_WARPS * 32)

static_assert(HEAD_DIM % 64 == 0 && HEAD_DIM <= 256, "HEAD_DIM must be 64, 128, 192 or 256");
static_assert(NUM_WARPS >= 1 && NUM_WARPS <= 16, "1..16 warps");
static_assert(BLOCK_M % NUM_WARPS == 0, "BLOCK_M must split evenly over the warps");
static_assert(BLOCK_M / NUM_WARPS == 16 || BLOCK_M / NUM_WARPS == 32, "WARP_M = BLOCK_M / NUM_WARPS must be 16 or 32");
static_assert(BLOCK_N % 16 == 0 && BLOCK_N >= 16, "BLOCK_N must be a multiple of 16");
static_assert(STAGES >= 2 && STAGES <= 4, "STAGES must be in 2..4");

namespace {

constexpr int D = HEAD_DIM;
constexpr int WARP_M = BLOCK_M / NUM_WARPS;
constexpr int MT = WARP_M / 16;           // m16 tiles per warp
constexpr int KSTEPS = D / 16;            // k16 steps of Q·Kᵀ
constexpr int NT = BLOCK_N / 8;           // n8 tiles of S
constexpr int DT = D / 8;                 // n8 tiles of O
constexpr int CPR = D / 8;                // 16-byte chunks per shared-memory row
constexpr int ROW_BYTES = D * 2;
constexpr int Q_BYTES = BLOCK_M * ROW_BYTES;
constexpr int KV_TILE_BYTES = BLOCK_N * ROW_BYTES;
constexpr int STAGE_BYTES = 2 * KV_TILE_BYTES;  // K tile then V tile
constexpr float LOG2E = 1.4426950408889634f;
#define NEG_INF (-__int_as_float(0x7f800000))

// Byte offset of 16-byte chunk `chunk` of row `row` in a swizzled tile. CPR is a multiple
// of 8, so the XOR stays inside the row; 8 consecutive rows at one logical chunk land in
// 8 distinct bank groups.
__device__ __forceinline__ unsigned swz(int row, int chunk) {
    return (unsigned)(row * ROW_BYTES + ((chunk ^ (row & 7)) << 4));
}


// Copies rows [0, ROWS) of a tile into swizzled shared memory. Row r starts at
// G + r * stride (elements); rows >= valid are zero-filled (nothing is read for them).
template <int ROWS>
__device__ __forceinline__ void load_rows(unsigned sdst, const T* G, size_t stride, int valid, const T* safe,
                                          int tid) {
    constexpr int CHUNKS = ROWS * CPR;
#include "load_chunks.cuh"  // cp.async the CHUNKS 16-byte chunks of rows [0, valid), zero-fill the rest
}

}  // namespace

extern "C" __global__ void __launch_bounds__(THREADS, 1)
attn_prefill(const T* __restrict__ Q, const T* __restrict__ K, const T* __restrict__ V, T* __restrict__ O,
             const int* __restrict__ cu_seqlens, int H, int KVH, float scale) {
    extern __shared__ __align__(128) unsigned char smem[];
#include "prefill_block.cuh"  // h, m_block, b, tok0, len, m0: the head, query tile and sequence of this block
    if (m0 >= len) return;  // block-uniform: no barrier is skipped by part of the block
    const int kvh = h / (H / KVH);

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, qd = lane & 3;
    const unsigned sQ = (unsigned)__cvta_generic_to_shared(smem);
    const unsigned sKV = sQ + Q_BYTES;

    const size_t q_stride = (size_t)H * D;  // elements from one token to the next
    const size_t kv_stride = (size_t)KVH * D;
    const T* Qb = Q + ((size_t)(tok0 + m0) * H + h) * D;
    const T* Kb = K + ((size_t)tok0 * KVH + kvh) * D;
    const T* Vb = V + ((size_t)tok0 * KVH + kvh) * D;

    // Keys past the block's last query row are masked for every row: stop there.
    const int kv_end = min(len, m0 + BLOCK_M);
    const int n_tiles = (kv_end + BLOCK_N - 1) / BLOCK_N;

    // ---- prologue: Q (in group 0) and the first STAGES-1 K/V tiles ----
    load_rows<BLOCK_M>(sQ, Qb, q_stride, len - m0, Q, tid);
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < n_tiles) {
            const unsigned st = sKV + s * STAGE_BYTES;
            const int n0 = s * BLOCK_N;
            load_rows<BLOCK_N>(st, Kb + (size_t)n0 * kv_stride, kv_stride, len - n0, K, tid);
            load_rows<BLOCK_N>(st + KV_TILE_BYTES, Vb + (size_t)n0 * kv_stride, kv_stride, len - n0, V, tid);
        }
        cp_async_commit();  // always commit: the group count stays uniform
    }

    const int wr0 = m0 + warp * WARP_M;  // first query row (position in the sequence) of this warp
    const float sl2 = scale * LOG2E;

    unsigned qf[MT][KSTEPS][4];
    float o[MT][DT][4];
    float row_max[MT][2], row_sum[MT][2];  // row g and row g+8 of each m16 tile
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int dt = 0; dt < DT; ++dt)
#pragma unroll
            for (int e = 0; e < 4; ++e) o[mt][dt][e] = 0.f;
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            row_max[mt][r] = NEG_INF;
            row_sum[mt][r] = 0.f;
        }
    }

    // ldmatrix lane addressing (see the header):
    // Q  x4 = {rows 0-7 k0-7, rows 8-15 k0-7, rows 0-7 k8-15, rows 8-15 k8-15} → a0..a3
    const int qa_row = (lane & 15), qa_chunk = lane >> 4;
    // K  x4 = {keys 0-7 d0-7, keys 0-7 d8-15, keys 8-15 d0-7, keys 8-15 d8-15} → (b0,b1) of n8 tiles 2j, 2j+1
    const int kb_row = (lane & 7) + ((lane >> 4) << 3), kb_chunk = (lane >> 3) & 1;
    // V  x4.trans = {keys 0-7 d0-7, keys 8-15 d0-7, keys 0-7 d8-15, keys 8-15 d8-15} → (b0,b1) of d8 tiles 2p, 2p+1
    const int vb_row = (lane & 7) + (((lane >> 3) & 1) << 3), vb_chunk = lane >> 4;

    for (int it = 0; it < n_tiles; ++it) {
        cp_async_wait<STAGES - 2>();  // this thread's copies of tile `it` (and Q) have landed
        __syncthreads();              // everyone's have; everyone is done with tile it-1

        if (it == 0) {
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int kk = 0; kk < KSTEPS; ++kk)
                    ldmatrix_x4(qf[mt][kk], sQ + swz(warp * WARP_M + mt * 16 + qa_row, 2 * kk + qa_chunk));
        }

        // refill the slot that held tile it-1
        {
            const int nx = it + STAGES - 1;
            if (nx < n_tiles) {
                const unsigned st = sKV + (nx % STAGES) * STAGE_BYTES;
                const int n0 = nx * BLOCK_N;
                load_rows<BLOCK_N>(st, Kb + (size_t)n0 * kv_stride, kv_stride, len - n0, K, tid);
                load_rows<BLOCK_N>(st + KV_TILE_BYTES, Vb + (size_t)n0 * kv_stride, kv_stride, len - n0, V, tid);
            }
            cp_async_commit();
        }

        const int n0 = it * BLOCK_N;
        // Whole tile above this warp's last row: every score is masked; nothing to add.
        if (n0 > wr0 + WARP_M - 1) continue;

        const unsigned sK = sKV + (it % STAGES) * STAGE_BYTES;
        const unsigned sV = sK + KV_TILE_BYTES;

        // ---- S = Q · Kᵀ ----
        float s[MT][NT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int j = 0; j < NT; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) s[mt][j][e] = 0.f;
#pragma unroll
        for (int kk = 0; kk < KSTEPS; ++kk) {
#pragma unroll
            for (int jp = 0; jp < NT / 2; ++jp) {
                unsigned kf[4];
                ldmatrix_x4(kf, sK + swz(jp * 16 + kb_row, 2 * kk + kb_chunk));
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    mma16816(s[mt][2 * jp], qf[mt][kk], kf[0], kf[1]);
                    mma16816(s[mt][2 * jp + 1], qf[mt][kk], kf[2], kf[3]);
                }
            }
        }

        // ---- mask: keys after the row (causal) or past the sequence end ----
        const bool need_mask = (n0 + BLOCK_N - 1 > wr0) || (n0 + BLOCK_N > len);
        if (need_mask) {
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int j = 0; j < NT; ++j)
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        const int row = wr0 + mt * 16 + g + ((e >> 1) << 3);
                        const int key = n0 + j * 8 + 2 * qd + (e & 1);
                        if (key > row || key >= len) s[mt][j][e] = NEG_INF;
                    }
        }

        // ---- online softmax (base 2) ----
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                float mx = NEG_INF;
#pragma unroll
                for (int j = 0; j < NT; ++j) mx = fmaxf(mx, fmaxf(s[mt][j][2 * r], s[mt][j][2 * r + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float m_new = fmaxf(row_max[mt][r], mx * sl2);
                const float m_use = (m_new == NEG_INF) ? 0.f : m_new;  // a row with nothing yet
                const float alpha = exp2f(row_max[mt][r] - m_use);
                row_max[mt][r] = m_new;
                float sum = 0.f;
#pragma unroll
                for (int j = 0; j < NT; ++j)
#pragma unroll
                    for (int e = 0; e < 2; ++e) {
                        const float p = exp2f(fmaf(s[mt][j][2 * r + e], sl2, -m_use));
                        s[mt][j][2 * r + e] = p;
                        sum += p;
                    }
                row_sum[mt][r] = row_sum[mt][r] * alpha + sum;  // this lane's columns only
#pragma unroll
                for (int dt = 0; dt < DT; ++dt) {
                    o[mt][dt][2 * r] *= alpha;
                    o[mt][dt][2 * r + 1] *= alpha;
                }
            }
        }

        // ---- O += P · V ----
#pragma unroll
        for (int kt = 0; kt < BLOCK_N / 16; ++kt) {
            unsigned pa[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                pa[mt][0] = pack2(s[mt][2 * kt][0], s[mt][2 * kt][1]);          // row g,   keys 2q..
                pa[mt][1] = pack2(s[mt][2 * kt][2], s[mt][2 * kt][3]);          // row g+8, keys 2q..
                pa[mt][2] = pack2(s[mt][2 * kt + 1][0], s[mt][2 * kt + 1][1]);  // row g,   keys 8+2q..
                pa[mt][3] = pack2(s[mt][2 * kt + 1][2], s[mt][2 * kt + 1][3]);  // row g+8, keys 8+2q..
            }
#pragma unroll
            for (int dp = 0; dp < D / 16; ++dp) {
                unsigned vf[4];
                ldmatrix_x4_trans(vf, sV + swz(kt * 16 + vb_row, 2 * dp + vb_chunk));
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    mma16816(o[mt][2 * dp], pa[mt], vf[0], vf[1]);
                    mma16816(o[mt][2 * dp + 1], pa[mt], vf[2], vf[3]);
                }
            }
        }
    }
    cp_async_wait<0>();  // only empty groups can be left; drain before exit

    // ---- epilogue: O / l, rows < len ----
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float l = row_sum[mt][r];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            const float inv = l > 0.f ? 1.f / l : 0.f;
            const int row = wr0 + mt * 16 + g + 8 * r;
            if (row < len) {
                T* dst = O + ((size_t)(tok0 + row) * H + h) * D + 2 * qd;
#pragma unroll
                for (int dt = 0; dt < DT; ++dt)
                    *reinterpret_cast<unsigned*>(dst + dt * 8) = pack2(o[mt][dt][2 * r] * inv, o[mt][dt][2 * r + 1] * inv);
            }
        }
    }
}
