/*
attention/decode_splitkv.cu — decode attention (one new query per sequence) over a KV cache,
split-KV ("flash-decoding"), grouped-query aware.

    O[b, h, :] = softmax_j( scale · Q[b, h, :] · Kc[b, j, h / G, :] ) · Vc[b, j, h / G, :],
    j < lens[b]                                                            (G = H / KVH)

Layout
    Q, O     [B, H, HEAD_DIM]               T = bf16 (or fp16 with -DKL_FP16=1)
    Kc, Vc   [B, L_cap, KVH, HEAD_DIM]      cache of capacity L_cap tokens per sequence
    lens     int32 [B], 0 <= lens[b] <= L_cap (a length of 0 gives O = 0)
    ws_o     fp32 [B, H, num_splits, HEAD_DIM]   un-normalised partial outputs
    ws_ml    fp32 [B, H, num_splits, 2]          (running max in log2 units, sum) per split
fp32 accumulation; the result is normalised and cast to T.

How it works
- One block per (split, KV head × group tile, sequence). The block takes the 16-row tile
  of query heads kvh·G + ht·16 .. (at most 16; all G of them when G <= 16) that share KV
  head kvh, so each K/V row of a split is read from DRAM once for the whole group.
- Sequence b's keys are cut into num_splits = gridDim.x chunks of ceil(lens[b]/num_splits)
  keys (not rounded to tiles, so the splits stay balanced; only a split's last tile is
  partial, and with more splits than keys the trailing splits are empty). A split's keys
  stream through a STAGES-deep cp.async ring of BLOCK_N-key K and V tiles (swizzled rows, zero-filled past
  the end); warp w takes keys [w·WN, (w+1)·WN) of every tile, WN = BLOCK_N / NUM_WARPS.
- Tensor cores as in prefill: the query heads are the 16 rows of an m16n8k16 A operand
  (rows >= the group size are zero), S = Q·Kᵀ with ldmatrix, online softmax in base 2,
  P·V with the S accumulators reused as A fragments and V read with ldmatrix.trans.
- The warps' partial states (max, sum, O) meet in shared memory and are merged; with one
  split the block writes O directly, otherwise it writes (O, max, sum) to the workspace and
  the splits are merged: O = Σ 2^(m_s-M) O_s / Σ 2^(m_s-M) l_s, folded split by split in
  index order (online rescaling), by one of
    attn_decode_combine       a second launch, one block per (head, sequence), or
    attn_decode_split_fused   the split kernel itself: each block bumps a counter of its
                              (sequence, KV head, group tile) after a __threadfence; the block
                              that brings it to num_splits is the last, resets the counter to 0
                              for the next launch and merges the group's splits.
  Both merge with the same code in the same order: their outputs are bitwise equal, and do not
  depend on which block finishes last.

Tunables (macros, defaults below)
    HEAD_DIM   64, 128, 192 or 256 (must equal the problem's D)
    BLOCK_N    keys per K/V tile of the block; WN = BLOCK_N / NUM_WARPS must be a multiple of 16
    NUM_WARPS  warps per block, 1..16
    STAGES     cp.async ring depth, 2..8
    SPLITS     host-side only: number of KV splits (gridDim.x); 0 = the host picks
               floor(BLOCKS_PER_SM · SMs / blocks without splits) (at least 1), capped by the
               tiles of the longest cache
    BLOCKS_PER_SM  host-side only: resident blocks per SM the automatic split count aims at
    FUSED_COMBINE  host-side only: 1 = launch attn_decode_split_fused (no second kernel),
               0 = attn_decode_split + attn_decode_combine
    KL_FP16    0 = bf16 (default), 1 = fp16

Launch contract (host)
    entry 1 attn_decode_split(const T* Q, const T* Kc, const T* Vc, T* O, float* ws_o,
                              float* ws_ml, const int* lens, int L_cap, int H, int KVH, float scale)
        grid   (num_splits, KVH * ceil(G / 16), B)
        block  (NUM_WARPS * 32, 1, 1)
        smem   max(STAGES * BLOCK_N * HEAD_DIM * 2 * sizeof(T),
                   NUM_WARPS * 16 * (HEAD_DIM + 2) * 4) bytes dynamic
        with num_splits == 1 it writes O and never touches ws_o / ws_ml (they may be null).
    entry 1' attn_decode_split_fused(same arguments as entry 1, then unsigned* counters)
        same grid, block and smem (plus a 128-byte static flag); counters: B * KVH * ceil(G / 16)
        uint32, all zero before the first launch; every launch that completes leaves them
        zero again. Launches sharing a counter buffer must be stream-ordered. No entry 2.
    entry 2 attn_decode_combine(const float* ws_o, const float* ws_ml, T* O, int H, int num_splits)
        grid (H, B), block (HEAD_DIM, 1, 1), no shared memory; only when num_splits > 1,
        after entry 1 on the same stream.
    requires H % KVH == 0, all pointers 16-byte aligned.
*/
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#ifndef KL_FP16
#define KL_FP16 0
#endif
#ifndef HEAD_DIM
#define HEAD_DIM 128
#endif
#ifndef BLOCK_N
#define BLOCK_N 64
#endif
#ifndef NUM_WARPS
#define NUM_WARPS 4
#endif
#ifndef STAGES
#define STAGES 3
#endif
#ifndef SPLITS
#define SPLITS 0  // read by the host only
#endif
#ifndef BLOCKS_PER_SM
#define BLOCKS_PER_SM 1  // read by the host only
#endif
#ifndef FUSED_COMBINE
#define FUSED_COMBINE 1  // read by the host only
#endif

#include "attention_common.cuh"  // T, T2, pack2, cp.async, ldmatrix, mma.m16n8k16

#define THREADS (NUM_WARPS * 32)

static_assert(HEAD_DIM % 64 == 0 && HEAD_DIM <= 256, "HEAD_DIM must be 64, 128, 192 or 256");
static_assert(NUM_WARPS >= 1 && NUM_WARPS <= 16, "1..16 warps");
static_assert(BLOCK_N % (16 * NUM_WARPS) == 0, "BLOCK_N / NUM_WARPS must be a multiple of 16");
static_assert(STAGES >= 2 && STAGES <= 8, "STAGES must be in 2..8");

namespace {

constexpr int D = HEAD_DIM;
constexpr int WN = BLOCK_N / NUM_WARPS;  // keys per warp per tile
constexpr int KSTEPS = D / 16;
constexpr int NT = WN / 8;               // n8 tiles of a warp's S
constexpr int DT = D / 8;
constexpr int CPR = D / 8;
constexpr int ROW_BYTES = D * 2;
constexpr int KV_TILE_BYTES = BLOCK_N * ROW_BYTES;
constexpr int STAGE_BYTES = 2 * KV_TILE_BYTES;
constexpr float LOG2E = 1.4426950408889634f;
#define NEG_INF (-__int_as_float(0x7f800000))

__device__ __forceinline__ unsigned swz(int row, int chunk) {
    return (unsigned)(row * ROW_BYTES + ((chunk ^ (row & 7)) << 4));
}
#include "../common/from_f.cuh"  // from_f: float -> T
#include "../common/pdl.cuh"  // pdl_wait, pdl_launch_dependents, KL_PDL_AWARE

// Rows [0, BLOCK_N) of a K or V tile; row r at G + r*stride, rows >= valid zero-filled.
__device__ __forceinline__ void load_tile(unsigned sdst, const T* G, size_t stride, int valid, const T* safe, int tid) {
    constexpr int CHUNKS = BLOCK_N * CPR;
#include "load_chunks.cuh"  // cp.async the CHUNKS 16-byte chunks of rows [0, valid), zero-fill the rest
}

// Splits folded per combine step: their loads are issued together, so a merge over many
// splits waits for the memory system once per COMBINE_BATCH, not once per split.
constexpr int COMBINE_BATCH = 8;

// O[d0 .. d0+VW) of one (sequence, head) row `bh` from its num_splits partials, folded in
// split order with online rescaling. Both merge paths call this, so they agree bitwise.
// The partials were written by other blocks (of this launch, or of the split launch before
// the combine kernel): read through L2, never from a possibly stale L1 line.
template <int VW>
__device__ __forceinline__ void combine_row(const float* __restrict__ ws_o, const float* __restrict__ ws_ml,
                                            T* __restrict__ O, size_t bh, int num_splits, int d0) {
    const float* ml = ws_ml + bh * num_splits * 2;
    const float* po = ws_o + bh * num_splits * D + d0;
    float M = NEG_INF, L = 0.f, acc[VW];
#pragma unroll
    for (int e = 0; e < VW; ++e) acc[e] = 0.f;
    for (int s0 = 0; s0 < num_splits; s0 += COMBINE_BATCH) {
        float m[COMBINE_BATCH], l[COMBINE_BATCH], v[COMBINE_BATCH][VW];
#pragma unroll
        for (int u = 0; u < COMBINE_BATCH; ++u) {
            const int s = s0 + u;
            m[u] = NEG_INF;
            l[u] = 0.f;
#pragma unroll
            for (int e = 0; e < VW; ++e) v[u][e] = 0.f;
            if (s < num_splits) {
                const float2 t = __ldcg(reinterpret_cast<const float2*>(ml + 2 * s));
                m[u] = t.x;
                l[u] = t.y;
                if (VW == 4) {
                    const float4 x = __ldcg(reinterpret_cast<const float4*>(po + (size_t)s * D));
                    v[u][0] = x.x;
                    v[u][1 % VW] = x.y;
                    v[u][2 % VW] = x.z;
                    v[u][3 % VW] = x.w;
                } else {
                    v[u][0] = __ldcg(po + (size_t)s * D);
                }
            }
        }
#pragma unroll
        for (int u = 0; u < COMBINE_BATCH; ++u) {
            if (m[u] == NEG_INF) continue;  // an empty split (or past the end): weight 0
            const float Mn = fmaxf(M, m[u]);
            const float a = exp2f(M - Mn);  // 0 while nothing was folded yet (M = -inf)
            const float w = exp2f(m[u] - Mn);
            L = fmaf(L, a, w * l[u]);
#pragma unroll
            for (int e = 0; e < VW; ++e) acc[e] = fmaf(acc[e], a, w * v[u][e]);
            M = Mn;
        }
    }
#pragma unroll
    for (int e = 0; e < VW; ++e) O[bh * D + d0 + e] = from_f(L > 0.f ? acc[e] / L : 0.f);
}

}  // namespace

template <bool FUSED>
__device__ __forceinline__ void split_block(const T* __restrict__ Q, const T* __restrict__ Kc,
                                            const T* __restrict__ Vc, T* __restrict__ O, float* __restrict__ ws_o,
                                            float* __restrict__ ws_ml, const int* __restrict__ lens,
                                            unsigned* __restrict__ counters, int L_cap, int H, int KVH, float scale) {
    extern __shared__ __align__(128) unsigned char smem[];
    const int split = blockIdx.x, nsplit = gridDim.x;
    const int G = H / KVH;
    const int gtiles = (G + 15) / 16;
    const int kvh = blockIdx.y / gtiles, gt = blockIdx.y % gtiles;
    const int head0 = kvh * G + gt * 16;
    const int nh = min(16, G - gt * 16);  // query heads (rows) in this block
    const int b = blockIdx.z;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, qd = lane & 3;
    const size_t kv_stride = (size_t)KVH * D;
    // Q fragments straight from global memory: A row = query head head0 + row (zero past nh).
    // Issued before lens[b] is read so the two loads overlap.
    unsigned qf[KSTEPS][4];
    {
        const T* q_lo = Q + ((size_t)b * H + head0 + g) * D + 2 * qd;
        const T* q_hi = q_lo + 8 * D;
        const bool lo_ok = g < nh, hi_ok = g + 8 < nh;
#pragma unroll
        for (int kk = 0; kk < KSTEPS; ++kk) {
            qf[kk][0] = lo_ok ? *reinterpret_cast<const unsigned*>(q_lo + kk * 16) : 0u;
            qf[kk][1] = hi_ok ? *reinterpret_cast<const unsigned*>(q_hi + kk * 16) : 0u;
            qf[kk][2] = lo_ok ? *reinterpret_cast<const unsigned*>(q_lo + kk * 16 + 8) : 0u;
            qf[kk][3] = hi_ok ? *reinterpret_cast<const unsigned*>(q_hi + kk * 16 + 8) : 0u;
        }
    }
    const int len = lens[b];

    const int chunk = max(1, (len + nsplit - 1) / nsplit);
    const int start = split * chunk;
    const int ntok = max(0, min(len, start + chunk) - start);
    const int n_tiles = (ntok + BLOCK_N - 1) / BLOCK_N;

    const unsigned sbase = (unsigned)__cvta_generic_to_shared(smem);

    const T* Kb = Kc + (((size_t)b * L_cap + start) * KVH + kvh) * D;
    const T* Vb = Vc + (((size_t)b * L_cap + start) * KVH + kvh) * D;

#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < n_tiles) {
            const unsigned st = sbase + s * STAGE_BYTES;
            const int n0 = s * BLOCK_N;
            load_tile(st, Kb + (size_t)n0 * kv_stride, kv_stride, ntok - n0, Kc, tid);
            load_tile(st + KV_TILE_BYTES, Vb + (size_t)n0 * kv_stride, kv_stride, ntok - n0, Vc, tid);
        }
        cp_async_commit();
    }

    const float sl2 = scale * LOG2E;
    float o[DT][4];
#pragma unroll
    for (int dt = 0; dt < DT; ++dt)
#pragma unroll
        for (int e = 0; e < 4; ++e) o[dt][e] = 0.f;
    float row_max[2] = {NEG_INF, NEG_INF}, row_sum[2] = {0.f, 0.f};

    const int kb_row = warp * WN + (lane & 7) + ((lane >> 4) << 3), kb_chunk = (lane >> 3) & 1;
    const int vb_row = warp * WN + (lane & 7) + (((lane >> 3) & 1) << 3), vb_chunk = lane >> 4;

    for (int it = 0; it < n_tiles; ++it) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();
        {
            const int nx = it + STAGES - 1;
            if (nx < n_tiles) {
                const unsigned st = sbase + (nx % STAGES) * STAGE_BYTES;
                const int n0 = nx * BLOCK_N;
                load_tile(st, Kb + (size_t)n0 * kv_stride, kv_stride, ntok - n0, Kc, tid);
                load_tile(st + KV_TILE_BYTES, Vb + (size_t)n0 * kv_stride, kv_stride, ntok - n0, Vc, tid);
            }
            cp_async_commit();
        }
        const int w0 = it * BLOCK_N + warp * WN;  // first key (within the split) of this warp
        if (w0 >= ntok) continue;                 // nothing of this tile is ours
        const unsigned sK = sbase + (it % STAGES) * STAGE_BYTES;
        const unsigned sV = sK + KV_TILE_BYTES;

        float s[NT][4];
#pragma unroll
        for (int j = 0; j < NT; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) s[j][e] = 0.f;
#pragma unroll
        for (int kk = 0; kk < KSTEPS; ++kk) {
#pragma unroll
            for (int jp = 0; jp < NT / 2; ++jp) {
                unsigned kf[4];
                ldmatrix_x4(kf, sK + swz(jp * 16 + kb_row, 2 * kk + kb_chunk));
                mma16816(s[2 * jp], qf[kk], kf[0], kf[1]);
                mma16816(s[2 * jp + 1], qf[kk], kf[2], kf[3]);
            }
        }
        if (w0 + WN > ntok) {
#pragma unroll
            for (int j = 0; j < NT; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e)
                    if (w0 + j * 8 + 2 * qd + (e & 1) >= ntok) s[j][e] = NEG_INF;
        }
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float mx = NEG_INF;
#pragma unroll
            for (int j = 0; j < NT; ++j) mx = fmaxf(mx, fmaxf(s[j][2 * r], s[j][2 * r + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float m_new = fmaxf(row_max[r], mx * sl2);
            const float m_use = (m_new == NEG_INF) ? 0.f : m_new;
            const float alpha = exp2f(row_max[r] - m_use);
            row_max[r] = m_new;
            float sum = 0.f;
#pragma unroll
            for (int j = 0; j < NT; ++j)
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const float p = exp2f(fmaf(s[j][2 * r + e], sl2, -m_use));
                    s[j][2 * r + e] = p;
                    sum += p;
                }
            row_sum[r] = row_sum[r] * alpha + sum;
#pragma unroll
            for (int dt = 0; dt < DT; ++dt) {
                o[dt][2 * r] *= alpha;
                o[dt][2 * r + 1] *= alpha;
            }
        }
#pragma unroll
        for (int kt = 0; kt < WN / 16; ++kt) {
            unsigned pa[4];
            pa[0] = pack2(s[2 * kt][0], s[2 * kt][1]);
            pa[1] = pack2(s[2 * kt][2], s[2 * kt][3]);
            pa[2] = pack2(s[2 * kt + 1][0], s[2 * kt + 1][1]);
            pa[3] = pack2(s[2 * kt + 1][2], s[2 * kt + 1][3]);
#pragma unroll
            for (int dp = 0; dp < D / 16; ++dp) {
                unsigned vf[4];
                ldmatrix_x4_trans(vf, sV + swz(kt * 16 + vb_row, 2 * dp + vb_chunk));
                mma16816(o[2 * dp], pa, vf[0], vf[1]);
                mma16816(o[2 * dp + 1], pa, vf[2], vf[3]);
            }
        }
    }
    cp_async_wait<0>();
    __syncthreads();  // the ring is free: reuse it for the warps' partial states

    // ---- merge the warps: smem [NUM_WARPS][16][D] floats, then [NUM_WARPS][16][2] ----
    float* so = reinterpret_cast<float*>(smem);
    float* sml = so + NUM_WARPS * 16 * D;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float l = row_sum[r];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        const int row = g + 8 * r;
        float* dst = so + (warp * 16 + row) * D + 2 * qd;
#pragma unroll
        for (int dt = 0; dt < DT; ++dt)
            *reinterpret_cast<float2*>(dst + dt * 8) = make_float2(o[dt][2 * r], o[dt][2 * r + 1]);
        if (qd == 0) {
            sml[(warp * 16 + row) * 2] = row_max[r];
            sml[(warp * 16 + row) * 2 + 1] = l;
        }
    }
    __syncthreads();
    for (int idx = tid; idx < nh * D; idx += THREADS) {
        const int row = idx / D, d = idx % D;
        float M = NEG_INF;
#pragma unroll
        for (int w = 0; w < NUM_WARPS; ++w) M = fmaxf(M, sml[(w * 16 + row) * 2]);
        const float Mu = (M == NEG_INF) ? 0.f : M;
        float acc = 0.f, L = 0.f;
#pragma unroll
        for (int w = 0; w < NUM_WARPS; ++w) {
            const float wgt = exp2f(sml[(w * 16 + row) * 2] - Mu);
            acc += wgt * so[(w * 16 + row) * D + d];
            L += wgt * sml[(w * 16 + row) * 2 + 1];
        }
        const size_t bh = (size_t)b * H + head0 + row;
        if (nsplit == 1) {
            O[bh * D + d] = from_f(L > 0.f ? acc / L : 0.f);
        } else {
            const size_t at = bh * nsplit + split;
            ws_o[at * D + d] = acc;
            if (d == 0) {
                ws_ml[at * 2] = M;
                ws_ml[at * 2 + 1] = L;
            }
        }
    }
    if (!FUSED || nsplit == 1) return;

    // ---- fused merge: the last block of this (sequence, KV head, group tile) folds the splits ----
    __shared__ int s_last;
    __threadfence();  // this thread's partials are visible GPU-wide before the count says so
    __syncthreads();
    if (tid == 0) {
        unsigned* cnt = counters + (size_t)b * gridDim.y + blockIdx.y;
        const unsigned prev = atomicAdd(cnt, 1u);
        s_last = (prev == (unsigned)nsplit - 1u);
        if (s_last) *cnt = 0u;  // every split has arrived: ready for the next launch
    }
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    constexpr int D4 = D / 4;
    for (int idx = tid; idx < nh * D4; idx += THREADS) {
        const int row = idx / D4;
        combine_row<4>(ws_o, ws_ml, O, (size_t)b * H + head0 + row, nsplit, (idx % D4) * 4);
    }
}

KL_PDL_AWARE(attn_decode_split)
extern "C" __global__ void __launch_bounds__(THREADS, 1)
attn_decode_split(const T* __restrict__ Q, const T* __restrict__ Kc, const T* __restrict__ Vc, T* __restrict__ O,
                  float* __restrict__ ws_o, float* __restrict__ ws_ml, const int* __restrict__ lens, int L_cap, int H,
                  int KVH, float scale) {
    pdl_wait();  // before any read of an earlier kernel's output or any write
    pdl_launch_dependents();
    split_block<false>(Q, Kc, Vc, O, ws_o, ws_ml, lens, nullptr, L_cap, H, KVH, scale);
}

KL_PDL_AWARE(attn_decode_split_fused)
extern "C" __global__ void __launch_bounds__(THREADS, 1)
attn_decode_split_fused(const T* __restrict__ Q, const T* __restrict__ Kc, const T* __restrict__ Vc,
                        T* __restrict__ O, float* __restrict__ ws_o, float* __restrict__ ws_ml,
                        const int* __restrict__ lens, int L_cap, int H, int KVH, float scale,
                        unsigned* __restrict__ counters) {
    pdl_wait();  // before any read of an earlier kernel's output or any write
    pdl_launch_dependents();
    split_block<true>(Q, Kc, Vc, O, ws_o, ws_ml, lens, counters, L_cap, H, KVH, scale);
}

KL_PDL_AWARE(attn_decode_combine)
extern "C" __global__ void __launch_bounds__(HEAD_DIM)
attn_decode_combine(const float* __restrict__ ws_o, const float* __restrict__ ws_ml, T* __restrict__ O, int H,
                    int num_splits) {
    pdl_wait();  // before any read of an earlier kernel's output or any write
    pdl_launch_dependents();
    combine_row<1>(ws_o, ws_ml, O, (size_t)blockIdx.y * H + blockIdx.x, num_splits, threadIdx.x);
}
