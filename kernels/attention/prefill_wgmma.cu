/*
attention/prefill_wgmma.cu — causal grouped-query prefill attention for Hopper (sm_90a):
wgmma + TMA, one producer warpgroup and CWG consumer warpgroups (flash-attention-3 style).

    O[t, h, :] = softmax_j( scale · Q[t, h, :] · K[j, h / G, :] ) · V[j, h / G, :]
    over the keys j of t's own sequence with position(j) <= position(t)   (G = H / KVH)

Layout and lengths: the same packed ("varlen") contract as attention/prefill.cu —
    Q, O   [total_tokens, H,   HEAD_DIM]   row-major, T = bf16 (or fp16 with -DKL_FP16=1)
    K, V   [total_tokens, KVH, HEAD_DIM]
    cu_seqlens  int32 [B + 1]: sequence b is tokens cu_seqlens[b] .. cu_seqlens[b+1]-1, each
                attending causally to itself; lengths may be 0.
fp32 accumulation and softmax; P rounded to T for the P·V product; O normalised and cast to T.

How it works
- One CTA per (query head h, query tile of BLOCK_M = 64·CWG rows, sequence), heads in
  blockIdx.x (the G heads of one KV head run together and share K/V in L2), query tiles
  heaviest (last) first — the same grid as prefill.cu.
- Warpgroup 0 is the producer: one thread loads the Q tile once and then the K and V tiles of
  BLOCK_N keys into a STAGES-deep ring with TMA (3-D tensor maps over [tokens, heads, D],
  boxes of 64 dims × 1 head × rows, 128-byte swizzle). full[s] / empty[s] mbarriers as in
  gemm/wgmma_tma.cu. A box that runs past the end of a sequence reads the next sequence's
  tokens (or TMA's zero fill past the last token): those keys are masked and those query
  rows are never stored, so no per-sequence bounds are needed in the copies.
- Each consumer warpgroup owns 64 query rows. Shared-memory tiles are 64-dim column blocks of
  128-byte rows ([rows][64] per block, 16-byte chunk c of row r at r·128 + ((c ^ r%8)·16)),
  1024-byte aligned, exactly what TMA's 128-byte swizzle writes.
- S = Q·Kᵀ: wgmma m64nBLOCK_Nk16, A = Q and B = K from shared memory, both K-major
  (descriptor: 128-byte swizzle, SBO = 1024 B, k16 steps advance 32 B inside the atom and
  move to the next column block every 4 steps).
- Online softmax in registers on the fp32 fragment (thread: rows 16·warp + lane/4 and +8,
  columns 8j + 2·(lane%4) + {0,1}; a row's values live in the 4 lanes of a quad), base 2 with
  scale·log2 e folded in; masking only on tiles that cross the diagonal or the sequence end.
- O += P·V: wgmma m64nHEAD_DIMk16 with A = P from registers — the S fragment of n8 tiles 2k
  and 2k+1 packed to T pairs is exactly the register-A fragment of k16 step k — and B = V from
  shared memory. V[key][d] is MN-major for this product: transpose bit tnspB = 1, descriptor
  with SBO = 1024 B (next 8 keys) and LBO = BLOCK_N·128 B (next 64-dim column block); k16
  step k starts 16 rows (2048 B) further.
- OVERLAP = 1 keeps one wgmma group in flight across the softmax: the S product of tile j is
  issued together with the P·V product of tile j-1, the softmax of j runs while P·V of j-1
  is still on the tensor cores, and O is rescaled only after that product has finished.
  OVERLAP = 0 issues and waits each product in turn (the other warpgroup still overlaps).
- PINGPONG = 1: warpgroup w waits on named barrier 1+w before each batch of wgmma issues and
  arrives on the other's barrier after it (the second warpgroup arrives once up front, so the
  first goes first, and skips its last arrive, so no barrier is left half-arrived at exit).
- Otherwise a warpgroup whose rows end before a tile starts only waits for that tile and
  releases it.
- Epilogue: row sums reduced over the quad, O / l cast to T; stored for rows < len either
  straight from registers (4-byte stores) or, EPI_SMEM = 1, through the warpgroup's own Q
  rows in shared memory (named barrier 3+w) as 16-byte chunks of whole rows.

Tunables (macros, defaults below)
    HEAD_DIM   64 or 128 (must equal the problem's D)
    BLOCK_N    keys per K/V tile: 64, 96, 128 or 192 (wgmma n; registers: S holds BLOCK_N/2
               floats per thread)
    CWG        consumer warpgroups, 1 or 2 (BLOCK_M = 64·CWG query rows per CTA)
    STAGES     K/V ring depth, 2..4
    OVERLAP    0 or 1 (see above)
    PINGPONG   0 or 1 (CWG = 2 only): the two consumer warpgroups take turns issuing their
               wgmma batches (named barriers 1 and 2), so one's softmax runs while the tensor
               cores work on the other's products; both then walk all of the CTA's tiles.
    EPI_SMEM   0: O stored from registers (4-byte stores); 1: staged in the warpgroup's own
               Q rows of shared memory, then stored as 16-byte row chunks
    KL_FP16    0 = bf16 (default), 1 = fp16
    smem: (BLOCK_M + 2·STAGES·BLOCK_N)·HEAD_DIM·2 + 1024 bytes must fit in 227 KB.

Launch contract (host: src/kernels/attention_prefill_wgmma.rs)
    entry   attn_prefill_wgmma(const __grid_constant__ CUtensorMap tmQ,
                               const __grid_constant__ CUtensorMap tmK,
                               const __grid_constant__ CUtensorMap tmV,
                               T* O, const int* cu_seqlens, int H, int KVH, float scale)
            tmQ: 3-D map of Q, dims {HEAD_DIM, H, total_tokens}, strides {HEAD_DIM·2, H·HEAD_DIM·2}
                 bytes, box {64, 1, 64·CWG}
            tmK, tmV: 3-D maps of K, V, dims {HEAD_DIM, KVH, total_tokens}, box {64, 1, BLOCK_N}
            all: bf16/fp16, SWIZZLE_128B, no interleave, OOB fill zeros (FLOAT_OOB_FILL_NONE)
    grid    (H, ceil(max_seqlen / (64·CWG)), B)
    block   (128·(CWG + 1), 1, 1)
    smem    (64·CWG + 2·STAGES·BLOCK_N)·HEAD_DIM·sizeof(T) + 1024 bytes dynamic
    requires sm_90a, H % KVH == 0, total_tokens >= 1, Q/K/V/O 16-byte aligned, every length
    <= max_seqlen. scale is the softmax scale (1/sqrt(HEAD_DIM) for Llama).
*/
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include "../common/hopper.cuh"

#ifndef KL_FP16
#define KL_FP16 0
#endif
#ifndef HEAD_DIM
#define HEAD_DIM 128
#endif
#ifndef BLOCK_N
#define BLOCK_N 128
#endif
#ifndef CWG
#define CWG 2
#endif
#ifndef STAGES
#define STAGES 3
#endif
#ifndef OVERLAP
#define OVERLAP 1
#endif
#ifndef PINGPONG
#define PINGPONG 1
#endif
#ifndef EPI_SMEM
#define EPI_SMEM 1
#endif

#include "attention_common.cuh"  // T, T2, pack2
#define KL_WG_T KL_MMA_TYPE

#define BLOCK_M (64 * CWG)
#define THREADS (128 * (CWG + 1))

static_assert(HEAD_DIM == 64 || HEAD_DIM == 128, "HEAD_DIM must be 64 or 128");
static_assert(BLOCK_N == 64 || BLOCK_N == 96 || BLOCK_N == 128 || BLOCK_N == 192, "BLOCK_N must be 64, 96, 128 or 192");
static_assert(CWG == 1 || CWG == 2, "CWG must be 1 or 2");
static_assert(STAGES >= 2 && STAGES <= 4, "STAGES must be in 2..4");
static_assert(OVERLAP == 0 || OVERLAP == 1, "OVERLAP must be 0 or 1");
static_assert(PINGPONG == 0 || (PINGPONG == 1 && CWG == 2), "PINGPONG needs two consumer warpgroups");
static_assert(EPI_SMEM == 0 || EPI_SMEM == 1, "EPI_SMEM must be 0 or 1");
static_assert((BLOCK_M + 2 * STAGES * BLOCK_N) * HEAD_DIM * 2 + 1024 <= 232448, "shared memory beyond 227 KB");

namespace {

constexpr int D = HEAD_DIM;
constexpr int CB = D / 64;                  // 64-dim column blocks of a tile
constexpr int Q_BYTES = BLOCK_M * D * 2;
constexpr int KV_BYTES = BLOCK_N * D * 2;   // one K (or V) tile
constexpr unsigned STAGE_TX = 2 * KV_BYTES; // bytes that complete one full barrier
constexpr int SACC = BLOCK_N / 2;           // fp32 S accumulators per thread
constexpr int OACC = D / 2;                 // fp32 O accumulators per thread
constexpr int PK = BLOCK_N / 16;            // k16 steps of P·V
constexpr float LOG2E = 1.4426950408889634f;
#define NEG_INF (-__int_as_float(0x7f800000))

// mbarriers, TMA loads, wgmma group fences: kernels/common/hopper.cuh.
template <int N_>
__device__ __forceinline__ void fence_all(float (&a)[N_]) {
#pragma unroll
    for (int i = 0; i < N_; ++i) kl_reg_fence(a[i]);
}

// Shared-memory matrix descriptors, 128-byte swizzle (mode 1 in bits 62-63), start address
// >> 4 in bits 0-13, LBO >> 4 in 16-29, SBO >> 4 in 32-45, base offset 0 (1024-aligned tiles).
// K-major (Q, K): SBO = 1024 B between 8-row groups, LBO unused (1).
constexpr unsigned long long DESC_K = (1ull << 62) | ((unsigned long long)(1024 >> 4) << 32) | (1ull << 16);
// MN-major (V read transposed): SBO = 1024 B between groups of 8 keys, LBO = one column block
// (BLOCK_N rows of 128 B) between groups of 64 dims.
constexpr unsigned long long DESC_V = (1ull << 62) | ((unsigned long long)(1024 >> 4) << 32) |
                                      ((unsigned long long)((BLOCK_N * 128) >> 4) << 16);
__device__ __forceinline__ unsigned long long desc(unsigned long long base, unsigned addr) {
    return base | (unsigned long long)((addr >> 4) & 0x3FFF);
}

// wgmma m64nNk16 (kernels/common/wgmma.cuh): S = Q·Kᵀ by KlWg<N>::ss (both K-major in
// shared memory; scale_d == 0 overwrites S), O += P·V by KlWg<N>::rs<1> (P from registers,
// V read transposed, MN-major).
#include "../common/wgmma.cuh"


// 2^x with the SFU instruction (2 ulp; 2^-inf = +0), without exp2f's denormal handling.
__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// Per-thread softmax state: rows `row0` and row0 + 8 of the warpgroup's 64.
struct RowState {
    float max[2];  // running max of the scaled (base-2) scores
    float sum[2];  // running sum of this lane's exp2 terms (quad-reduced at the end)
};

// Masks tile n0's scores (keys after the row, or at/after the sequence end), then turns them
// into P = exp2(s·sl2 − m_new) in place, updates the running max/sum, and returns in
// alpha[r] the factor by which row r's O must be rescaled.
__device__ __forceinline__ void softmax_tile(float (&s)[SACC], RowState& st, float (&alpha)[2], int n0, int row0,
                                             int len, bool need_mask, int qd, float sl2) {
    if (need_mask) {
#pragma unroll
        for (int j = 0; j < BLOCK_N / 8; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int row = row0 + ((e >> 1) << 3);
                const int key = n0 + j * 8 + 2 * qd + (e & 1);
                if (key > row || key >= len) s[4 * j + e] = NEG_INF;
            }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float mx = NEG_INF;
#pragma unroll
        for (int j = 0; j < BLOCK_N / 8; ++j) mx = fmaxf(mx, fmaxf(s[4 * j + 2 * r], s[4 * j + 2 * r + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(st.max[r], mx * sl2);
        const float m_use = (m_new == NEG_INF) ? 0.f : m_new;  // a row with nothing yet
        alpha[r] = fast_exp2(st.max[r] - m_use);
        st.max[r] = m_new;
        float sum = 0.f;
#pragma unroll
        for (int j = 0; j < BLOCK_N / 8; ++j)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const float p = fast_exp2(fmaf(s[4 * j + 2 * r + e], sl2, -m_use));
                s[4 * j + 2 * r + e] = p;
                sum += p;
            }
        st.sum[r] = st.sum[r] * alpha[r] + sum;
    }
}

__device__ __forceinline__ void rescale(float (&o)[OACC], const float (&alpha)[2]) {
#pragma unroll
    for (int j = 0; j < D / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) o[4 * j + e] *= alpha[e >> 1];
}

// S fragment → register-A fragments of the P·V k16 steps: step k takes n8 tiles 2k, 2k+1
// (a0 = row g keys 2q.., a1 = row g+8, a2/a3 = the same 8 keys further).
__device__ __forceinline__ void pack_p(unsigned (&p)[PK][4], const float (&s)[SACC]) {
#pragma unroll
    for (int k = 0; k < PK; ++k) {
        p[k][0] = pack2(s[8 * k + 0], s[8 * k + 1]);
        p[k][1] = pack2(s[8 * k + 2], s[8 * k + 3]);
        p[k][2] = pack2(s[8 * k + 4], s[8 * k + 5]);
        p[k][3] = pack2(s[8 * k + 6], s[8 * k + 7]);
    }
}

// Issues S = Q·Kᵀ for the stage at sK (not committed).
__device__ __forceinline__ void issue_s(float (&s)[SACC], unsigned sQw, unsigned sK) {
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
        const unsigned off = (kk & 3) * 32;  // k16 step inside the 128-byte swizzle row
        KlWg<BLOCK_N>::ss(s, desc(DESC_K, sQw + (kk >> 2) * (BLOCK_M * 128) + off),
                           desc(DESC_K, sK + (kk >> 2) * (BLOCK_N * 128) + off), kk > 0 ? 1 : 0);
    }
}

// Issues O += P·V for the stage whose V tile is at sV (not committed).
__device__ __forceinline__ void issue_pv(float (&o)[OACC], const unsigned (&p)[PK][4], unsigned sV) {
#pragma unroll
    for (int k = 0; k < PK; ++k) KlWg<D>::rs<1>(o, p[k], desc(DESC_V, sV + k * 16 * 128));
}

}  // namespace

extern "C" __global__ void __launch_bounds__(THREADS, 1)
attn_prefill_wgmma(const __grid_constant__ KlTensorMap tmQ, const __grid_constant__ KlTensorMap tmK,
                   const __grid_constant__ KlTensorMap tmV, T* __restrict__ O, const int* __restrict__ cu_seqlens, int H,
                   int KVH, float scale) {
    __shared__ __align__(8) unsigned long long bars[1 + 2 * STAGES];  // q_full, full[S], empty[S]
    extern __shared__ __align__(128) unsigned char smem_raw[];
#include "prefill_block.cuh"  // h, m_block, b, tok0, len, m0: the head, query tile and sequence of this block
    if (m0 >= len) return;  // block-uniform, before any barrier
    const int kvh = h / (H / KVH);
    // Keys past the CTA's last query row are masked for every row: stop there.
    const int n_tiles = (min(len, m0 + BLOCK_M) + BLOCK_N - 1) / BLOCK_N;

    const unsigned sQ = (kl_smem_u32(smem_raw) + 1023u) & ~1023u;  // the host adds 1 KB of slack
    const unsigned sKV = sQ + Q_BYTES;                           // stage s: K at +s·2·KV_BYTES, V after it
    const unsigned q_full = kl_smem_u32(&bars[0]);
    const unsigned full0 = kl_smem_u32(&bars[1]);
    const unsigned empty0 = kl_smem_u32(&bars[1 + STAGES]);

    if (threadIdx.x == 0) {
        kl_mbar_init(q_full, 1);
#pragma unroll
        for (int s = 0; s < STAGES; ++s) {
            kl_mbar_init(full0 + 8 * s, 1);
            kl_mbar_init(empty0 + 8 * s, CWG * 4);  // one arrive per consumer warp
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    const int wg = threadIdx.x / 128;  // 0: producer; 1..CWG: consumers
    const int tid = threadIdx.x % 128;

    if (wg == 0) {
        // ---------------- producer ----------------
#if CWG == 2
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
#endif
        if (tid == 0) {
            asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<unsigned long long>(&tmK)) : "memory");
            asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<unsigned long long>(&tmV)) : "memory");
            kl_mbar_expect_tx(q_full, Q_BYTES);
#pragma unroll
            for (int cb = 0; cb < CB; ++cb) kl_tma_load_3d(sQ + cb * (BLOCK_M * 128), &tmQ, q_full, cb * 64, h, tok0 + m0);
            int s = 0;
            unsigned phase = 0;
            for (int t = 0; t < n_tiles; ++t) {
                const unsigned fb = full0 + 8 * s;
                kl_mbar_wait(empty0 + 8 * s, phase ^ 1);
                kl_mbar_expect_tx(fb, STAGE_TX);
                const unsigned sK = sKV + s * (2 * KV_BYTES);
                const int tok = tok0 + t * BLOCK_N;
#pragma unroll
                for (int cb = 0; cb < CB; ++cb) kl_tma_load_3d(sK + cb * (BLOCK_N * 128), &tmK, fb, cb * 64, kvh, tok);
#pragma unroll
                for (int cb = 0; cb < CB; ++cb)
                    kl_tma_load_3d(sK + KV_BYTES + cb * (BLOCK_N * 128), &tmV, fb, cb * 64, kvh, tok);
                if (++s == STAGES) {
                    s = 0;
                    phase ^= 1;
                }
            }
        }
        __syncwarp();
        return;
    }

    // ---------------- consumers ----------------
#if CWG == 2
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
#endif
    const int cw = wg - 1;
    const int warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, qd = lane & 3;
    const int wg_row0 = m0 + cw * 64;          // first query row (sequence position) of this warpgroup
    const int row0 = wg_row0 + warp * 16 + g;  // this thread's rows: row0 and row0 + 8
    const unsigned sQw = sQ + cw * 64 * 128;   // this warpgroup's rows of each Q column block
    const float sl2 = scale * LOG2E;
#if PINGPONG
    // Both warpgroups walk all tiles (their turns must pair up); masking covers the rest.
    const int nt = n_tiles;
#else
    // Tiles this warpgroup computes: up to its last row (or the sequence end); none when
    // all its rows lie past the end. It still waits for and releases the CTA's other tiles.
    const int nt = wg_row0 < len ? (min(len, wg_row0 + 64) + BLOCK_N - 1) / BLOCK_N : 0;
#endif

    float o[OACC];
#pragma unroll
    for (int i = 0; i < OACC; ++i) o[i] = 0.f;
    RowState st;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        st.max[r] = NEG_INF;
        st.sum[r] = 0.f;
    }
    float sacc[SACC];
    unsigned p[PK][4];
    float alpha[2];

    kl_mbar_wait(q_full, 0);
    int s = 0;
    unsigned phase = 0;
    auto stage_k = [&](int st_) { return sKV + st_ * (2 * KV_BYTES); };
    auto release = [&](int st_) {
        if (lane == 0) kl_mbar_arrive(empty0 + 8 * st_);
    };
    auto needs_mask = [&](int n0) { return (n0 + BLOCK_N - 1 > wg_row0) || (n0 + BLOCK_N > len); };
    // The next stage of the ring (the barrier parity flips at each wrap).
    auto advance = [&]() {
        if (++s == STAGES) {
            s = 0;
            phase ^= 1;
        }
    };
#if PINGPONG
    // Turns: wait for ours before a batch of issues, hand the turn over after it. The second
    // warpgroup lets the first go first and keeps its last hand-over (nobody would take it).
    const int n_batches = OVERLAP ? nt + 1 : 2 * nt;
    int batch = 0;
    auto turn_begin = [&]() { asm volatile("bar.sync %0, 256;\n" ::"r"(1 + cw) : "memory"); };
    auto turn_end = [&]() {
        if (cw == 0 || ++batch < n_batches) asm volatile("bar.arrive %0, 256;\n" ::"r"(2 - cw) : "memory");
    };
    if (cw == 1) asm volatile("bar.arrive 1, 256;\n" ::: "memory");
#else
    auto turn_begin = [&]() {};
    auto turn_end = [&]() {};
#endif

#if OVERLAP
    // Tile 0 alone (S, softmax), then for t >= 1: S of t and P·V of t-1 issued together,
    // softmax of t while P·V of t-1 runs, then rescale O; P·V of the last tile after the loop.
    // No wgmma is issued inside a branch: ptxas serializes wgmma around divergent paths.
    int prev = 0;
    if (nt > 0) {
#include "wgmma_s_tile.cuh"  // S = Q·K^T of stage s: wait for the tile, issue, wait for the result
        softmax_tile(sacc, st, alpha, 0, row0, len, needs_mask(0), qd, sl2);
        pack_p(p, sacc);  // O is still zero: no rescale
        prev = s;
        advance();
    }
    for (int t = 1; t < nt; ++t) {
        kl_mbar_wait(full0 + 8 * s, phase);
        fence_all(o);
        turn_begin();
        kl_wg_fence();
        issue_s(sacc, sQw, stage_k(s));
        kl_wg_commit();
        issue_pv(o, p, stage_k(prev) + KV_BYTES);
        kl_wg_commit();
        turn_end();
        kl_wg_wait<1>();  // S of tile t is done; P·V of t-1 may still run
        fence_all(sacc);
        const int n0 = t * BLOCK_N;
        softmax_tile(sacc, st, alpha, n0, row0, len, needs_mask(n0), qd, sl2);
        kl_wg_wait<0>();
        fence_all(o);
#pragma unroll
        for (int k = 0; k < PK; ++k)
#pragma unroll
            for (int e = 0; e < 4; ++e) kl_reg_fence_u32(p[k][e]);
        release(prev);
        rescale(o, alpha);
        pack_p(p, sacc);
        prev = s;
        advance();
    }
    if (nt > 0) {
        fence_all(o);
        turn_begin();
        kl_wg_fence();
        issue_pv(o, p, stage_k(prev) + KV_BYTES);
        kl_wg_commit();
        turn_end();
        kl_wg_wait<0>();
        fence_all(o);
        release(prev);
    }
#else
    for (int t = 0; t < nt; ++t) {
#include "wgmma_s_tile.cuh"  // S = Q·K^T of stage s: wait for the tile, issue, wait for the result
        const int n0 = t * BLOCK_N;
        softmax_tile(sacc, st, alpha, n0, row0, len, needs_mask(n0), qd, sl2);
        rescale(o, alpha);
        pack_p(p, sacc);
        fence_all(o);
        turn_begin();
        kl_wg_fence();
        issue_pv(o, p, stage_k(s) + KV_BYTES);
        kl_wg_commit();
        turn_end();
        kl_wg_wait<0>();
        fence_all(o);
        release(s);
        advance();
    }
#endif
    // Tiles past this warpgroup's rows: wait for them (no copy may be left in flight into a
    // CTA that exits) and hand them back.
    for (int t = nt; t < n_tiles; ++t) {
        kl_mbar_wait(full0 + 8 * s, phase);
        release(s);
        advance();
    }

    // ---- epilogue: O / l, rows < len ----
    // 1 / l of a row, l summed over the quad of lanes that holds it (0 for an empty row).
    auto inv_row_sum = [](float l) {
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        return l > 0.f ? 1.f / l : 0.f;
    };
#if EPI_SMEM
    // This warpgroup's Q rows are no longer read (its last S product has completed): stage
    // its O rows there, in the tiles' swizzled layout (conflict-free 4-byte writes), then
    // store whole rows with 16-byte copies.
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const float inv = inv_row_sum(st.sum[r]);
        const int rr = warp * 16 + g + 8 * r;  // row within the warpgroup's 64
#pragma unroll
        for (int j = 0; j < D / 8; ++j) {
            const unsigned addr = sQw + (j >> 3) * (BLOCK_M * 128) + rr * 128 + (((j & 7) ^ (rr & 7)) << 4) + qd * 4;
            asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(addr), "r"(pack2(o[4 * j + 2 * r] * inv, o[4 * j + 2 * r + 1] * inv))
                         : "memory");
        }
    }
    asm volatile("bar.sync %0, 128;\n" ::"r"(3 + cw) : "memory");  // this warpgroup only
    constexpr int CPR = D / 8;                                      // 16-byte chunks per row
#pragma unroll
    for (int i = tid; i < 64 * CPR; i += 128) {
        const int rr = i / CPR, j = i % CPR;
        const int row = wg_row0 + rr;
        if (row < len) {
            const unsigned addr = sQw + (j >> 3) * (BLOCK_M * 128) + rr * 128 + (((j & 7) ^ (rr & 7)) << 4);
            uint4 v;
            asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
                         : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                         : "r"(addr)
                         : "memory");
            *reinterpret_cast<uint4*>(O + ((size_t)(tok0 + row) * H + h) * D + j * 8) = v;
        }
    }
#else
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const float inv = inv_row_sum(st.sum[r]);
        const int row = row0 + 8 * r;
        if (row < len) {
            T* dst = O + ((size_t)(tok0 + row) * H + h) * D + 2 * qd;
#pragma unroll
            for (int j = 0; j < D / 8; ++j)
                *reinterpret_cast<unsigned*>(dst + j * 8) = pack2(o[4 * j + 2 * r] * inv, o[4 * j + 2 * r + 1] * inv);
        }
    }
#endif
}
