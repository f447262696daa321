// int4_gemv_bulk.cu — W4A16 decode GEMM on the tiled int4 layout, streamed by bulk copies:
// Y[M,N] = X[M,K] · dequant(W)ᵀ (+ R), M = 1..16.
//
// Why another decode kernel: int4_gemv_tc holds the bytes it has in flight in registers, so
// a warp has one or two 16-byte loads outstanding per lane and then computes; Nsight Compute
// put it at 46 % of DRAM bandwidth with no unit saturated and L1TEX scoreboard waits the
// largest stall (latency bound). More loads per lane cost registers, hence occupancy, and
// moved nothing. Here the weights come in through a ring of shared-memory slots filled by
// the copy engine (cp.async.bulk, one instruction per slot from one lane), so each warp
// keeps STAGES slots of CHUNK KiB in flight at no register cost while it computes on
// another. That needs a layout in which a warp's next piece is one contiguous run of
// memory, in the order the lanes read it: the tiled layout (docs/int4-format.md), written
// at load time from the plain one by kernels/gemm_int4/repack.cu:
//
//   codes  u32 [ceil(N/16)][K/128][2][32][4]: tile i (rows 16i..16i+15), 128-k step s, half h,
//          lane (g = lane/4, t = lane%4): the 16 bytes of row 16i + g + 8h at k 128s + 32t ..
//          128s + 32t + 31, i.e. the same 16 bytes int4_gemv_tc's lane loads (rows past N zero);
//   scales u16 [ceil(N/16)][K/GROUP][16]: per tile and group, the tile's 16 rows;
//   zeros  u8  [ceil(N/16)][K/GROUP][16] (ZERO_MODE 1).
//
// The math per step is int4_gemv_tc's (tc_step.cuh): the weights are mma.m16n8k16's A
// operand and X its B operand, FACTORED (GROUP % 128 == 0: a step lies in one group), with
// the zero point taken off through Σx (ZP_MMA, bf16) or a packed fma.
//
// Work split: a block owns TILES consecutive 16-row tiles; each of its NUM_WARPS warps owns
// the same contiguous share of every tile's K steps and streams its shares of all the
// block's tiles through its own ring (no block-wide wait in the stream). At the end of a
// tile the warps' sums meet in shared memory (double buffered: one __syncthreads a tile)
// and one warp adds them in warp order (deterministic) and stores the tile's outputs.
//
// Tunables (defaults in brackets):
//   KL_FP16 [0], KL_SCALE_FP16, GROUP [128], ZERO_MODE [0]   the format (int4_common.cuh);
//                      GROUP a multiple of 128, ZERO_MODE 0 or 1
//   M_TILES [1]        8-row tiles of X: M <= 8·M_TILES (1 or 2)
//   NUM_WARPS [4]      warps per block, each with its own ring
//   TILES [2]          16-row weight tiles per block
//   CHUNK [2]          128-k steps per ring slot (1 KiB of codes each)
//   STAGES [4]         ring slots per warp
//   ZP_MMA [1]         as int4_gemv_tc (bf16 only)
//
// Launch contract:
//   extern "C" __global__ void int4_gemv_bulk(const T* X, const unsigned* Wt,
//       const unsigned short* St, const void* Zt, const T* R, T* Y, float* ws, int M, int N, int K)
//     Wt, St, Zt in the tiled layout above (Zt: ZERO_MODE 0 ignored, may be NULL); R nullable;
//     ws unused (the signature is int4_gemv_tc's).
//     grid  = (ceil(ceil(N/16) / TILES), 1, 1), block = (32 * NUM_WARPS, 1, 1)
//     dynamic shared memory = NUM_WARPS·STAGES·SLOT_BYTES + 8·NUM_WARPS·STAGES
//                             + 2·NUM_WARPS·M_TILES·4·32·4 bytes (SLOT_BYTES below)
//   Requirements: 1 <= M <= 8·M_TILES; K % 128 == 0; K % GROUP == 0; X 16-byte aligned, the
//   tiled buffers 16-byte aligned (cudaMalloc is); N >= 1 arbitrary. sm_90.

#include "int4_common.cuh"
#include "../common/hopper.cuh"

#ifndef M_TILES
#define M_TILES 1
#endif
#ifndef NUM_WARPS
#define NUM_WARPS 4
#endif
#ifndef TILES
#define TILES 2
#endif
#ifndef CHUNK
#define CHUNK 2
#endif
#ifndef STAGES
#define STAGES 4
#endif
#ifndef ZP_MMA
#define ZP_MMA 1
#endif

#if GROUP % 128 != 0
#error "int4_gemv_bulk needs GROUP % 128 == 0 (a 128-k step in one group); int4_gemv_tc takes 32 and 64"
#endif
#if ZERO_MODE == 2
#error "int4_gemv_bulk takes ZERO_MODE 0 or 1 (float minimums: int4_gemv_tc)"
#endif
#if M_TILES != 1 && M_TILES != 2
#error "M_TILES must be 1 or 2"
#endif
#if CHUNK < 1 || STAGES < 2
#error "CHUNK >= 1 and STAGES >= 2"
#endif

#define FACTORED 1
#define ZP_VIA_MMA (ZP_MMA && !KL_FP16)
#define NEG_BASE ((MAGIC & 0xFFFFu) | 0x8000u)

#include "tc_step.cuh"

// A ring slot: CHUNK steps of codes, then the scales (and zeros) of the groups they touch.
#define SLOT_GROUPS (CHUNK * 128 / GROUP + 1)
#define SLOT_W_BYTES (CHUNK * 1024)
#define SLOT_S_BYTES (SLOT_GROUPS * 32)
#if ZERO_MODE == 1
#define SLOT_Z_BYTES (SLOT_GROUPS * 16)
#else
#define SLOT_Z_BYTES 0
#endif
#define SLOT_BYTES (((SLOT_W_BYTES + SLOT_S_BYTES + SLOT_Z_BYTES) + 127) / 128 * 128)
#define ENTRIES (M_TILES * 4)

// One bulk copy global -> this CTA's shared memory, completing on `bar` (bytes % 16 == 0,
// both addresses 16-byte aligned).
__device__ __forceinline__ void bulk_load(unsigned dst, const void* src, unsigned bytes, unsigned bar) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
                 "l"(src), "r"(bytes), "r"(bar)
                 : "memory");
}

// Where one warp's pieces lie: its share [p_begin, p_end) of every tile's K steps.
struct Share {
    int p_begin, p_end, chunks, tile0, steps, groups;
};

// Lane 0 fills ring slot q % STAGES with chunk q of this warp's stream (tile q / chunks).
__device__ __forceinline__ void issue_chunk(const Share& sh, int q, unsigned char* ring, unsigned bars, const u32* Wt,
                                            const u16* St, const void* Zt) {
    const int tile = sh.tile0 + q / sh.chunks;
    const int s0 = sh.p_begin + (q % sh.chunks) * CHUNK;
    const int ns = min(CHUNK, sh.p_end - s0);
    const int g0 = s0 * 128 / GROUP, ng = (s0 + ns - 1) * 128 / GROUP - g0 + 1;
    const int slot = q % STAGES;
    const unsigned bar = bars + 8 * slot;
    const unsigned dst = kl_smem_u32(ring + slot * SLOT_BYTES);
    const size_t tg = (size_t)tile * sh.groups + g0;
    kl_mbar_expect_tx(bar, ns * 1024 + ng * 32 + (ZERO_MODE == 1 ? ng * 16 : 0));
    bulk_load(dst, Wt + ((size_t)tile * sh.steps + s0) * 256, ns * 1024, bar);
    bulk_load(dst + SLOT_W_BYTES, St + tg * 16, ng * 32, bar);
#if ZERO_MODE == 1
    bulk_load(dst + SLOT_W_BYTES + SLOT_S_BYTES, reinterpret_cast<const unsigned char*>(Zt) + tg * 16, ng * 16, bar);
#else
    (void)Zt;
#endif
}

// One 128-k step of the slot at `sb` (step u of the chunk starting at s0, groups from g0).
__device__ __forceinline__ void slot_step(float (&acc)[M_TILES][4], const unsigned char* sb, int u, int s0, int g0,
                                          const T* const (&xrow)[M_TILES], int g, int lane) {
    const int st = s0 + u;
    const uint4 wa = reinterpret_cast<const uint4*>(sb + u * 1024)[lane];
    const uint4 wb = reinterpret_cast<const uint4*>(sb + u * 1024 + 512)[lane];
    const int gi = st * 128 / GROUP - g0;
    const u16* sc = reinterpret_cast<const u16*>(sb + SLOT_W_BYTES) + gi * 16;
    RowRaw ra, rb;
    ra.s = sc[g];
    rb.s = sc[g + 8];
#if ZERO_MODE == 1
    const unsigned char* zp = sb + SLOT_W_BYTES + SLOT_S_BYTES + gi * 16;
    ra.z = zp[g];
    rb.z = zp[g + 8];
#endif
    const int k0 = st * 128;
    uint4 xf[M_TILES][4];
#pragma unroll
    for (int mt = 0; mt < M_TILES; mt++)
#pragma unroll
        for (int j = 0; j < 4; j++) xf[mt][j] = __ldg(reinterpret_cast<const uint4*>(xrow[mt] + k0) + j);
#if ZP_VIA_MMA
    // Σx over the step's 128 k per X column (all-ones A), for the (base + z)·Σx correction.
    float sx[M_TILES][4];
#pragma unroll
    for (int mt = 0; mt < M_TILES; mt++) {
#pragma unroll
        for (int r = 0; r < 4; r++) sx[mt][r] = 0.0f;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            mma_16816(sx[mt], ONE2, ONE2, ONE2, ONE2, xf[mt][j].x, xf[mt][j].y);
            mma_16816(sx[mt], ONE2, ONE2, ONE2, ONE2, xf[mt][j].z, xf[mt][j].w);
        }
    }
#endif
    const RowDeq da = row_consts(ra), db = row_consts(rb);
    float part[M_TILES][4];
#pragma unroll
    for (int mt = 0; mt < M_TILES; mt++)
#pragma unroll
        for (int r = 0; r < 4; r++) part[mt][r] = 0.0f;
    tile_step(part, wa, wb, da, db, xf);
    // D rows: registers 0, 1 are weight row g, registers 2, 3 row g + 8.
#pragma unroll
    for (int mt = 0; mt < M_TILES; mt++) {
#if ZP_VIA_MMA
        part[mt][0] = fmaf(-da.zb, sx[mt][0], part[mt][0]);
        part[mt][1] = fmaf(-da.zb, sx[mt][1], part[mt][1]);
        part[mt][2] = fmaf(-db.zb, sx[mt][2], part[mt][2]);
        part[mt][3] = fmaf(-db.zb, sx[mt][3], part[mt][3]);
#endif
        acc[mt][0] = fmaf(da.s, part[mt][0], acc[mt][0]);
        acc[mt][1] = fmaf(da.s, part[mt][1], acc[mt][1]);
        acc[mt][2] = fmaf(db.s, part[mt][2], acc[mt][2]);
        acc[mt][3] = fmaf(db.s, part[mt][3], acc[mt][3]);
    }
}

extern "C" __global__ void int4_gemv_bulk(const T* __restrict__ X, const u32* __restrict__ Wt,
                                          const u16* __restrict__ St, const void* __restrict__ Zt,
                                          const T* __restrict__ R, T* __restrict__ Y, float* __restrict__ ws, int M,
                                          int N, int K) {
    (void)ws;
    extern __shared__ __align__(128) unsigned char smem[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int ntiles = (N + 15) / 16;

    Share sh;
    sh.steps = K / 128;
    sh.groups = K / GROUP;
    sh.tile0 = blockIdx.x * TILES;
    sh.p_begin = sh.steps * warp / NUM_WARPS;
    sh.p_end = sh.steps * (warp + 1) / NUM_WARPS;
    sh.chunks = (sh.p_end - sh.p_begin + CHUNK - 1) / CHUNK;
    const int block_tiles = min(TILES, ntiles - sh.tile0);
    const int total = block_tiles * sh.chunks;

    unsigned char* ring = smem + warp * (STAGES * SLOT_BYTES);
    const unsigned bars = kl_smem_u32(smem + NUM_WARPS * STAGES * SLOT_BYTES) + 8 * STAGES * warp;
    float* partial = reinterpret_cast<float*>(smem + NUM_WARPS * STAGES * SLOT_BYTES + 8 * NUM_WARPS * STAGES);

    if (lane == 0) {
#pragma unroll
        for (int s = 0; s < STAGES; s++) kl_mbar_init(bars + 8 * s, 1);
        kl_mbar_init_fence();
        for (int q = 0; q < min(STAGES, total); q++) issue_chunk(sh, q, ring, bars, Wt, St, Zt);
    }
    __syncwarp();

    // This lane's X rows (rows past M re-read row M-1: they only feed D columns never stored).
    const T* xrow[M_TILES];
#pragma unroll
    for (int mt = 0; mt < M_TILES; mt++) xrow[mt] = X + (size_t)min(mt * 8 + g, M - 1) * K + 32 * t;

    float acc[M_TILES][4];
#pragma unroll
    for (int mt = 0; mt < M_TILES; mt++)
#pragma unroll
        for (int r = 0; r < 4; r++) acc[mt][r] = 0.0f;

    int q = 0;
    for (int ti = 0; ti < block_tiles; ti++) {
        for (int c = 0; c < sh.chunks; c++, q++) {
            const int slot = q % STAGES;
            kl_mbar_wait(bars + 8 * slot, (q / STAGES) & 1);
            const int s0 = sh.p_begin + c * CHUNK;
            const int ns = min(CHUNK, sh.p_end - s0);
            const int g0 = s0 * 128 / GROUP;
            const unsigned char* sb = ring + slot * SLOT_BYTES;
#pragma unroll
            for (int u = 0; u < CHUNK; u++)
                if (u < ns) slot_step(acc, sb, u, s0, g0, xrow, g, lane);
            // Every lane's reads of the slot are done (their values fed the mma's): the copy
            // engine may overwrite it. The proxy fence orders those generic reads before the
            // async-proxy write.
            __syncwarp();
            if (lane == 0 && q + STAGES < total) {
                asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
                issue_chunk(sh, q + STAGES, ring, bars, Wt, St, Zt);
            }
        }
        // The tile's sums: every warp's into shared memory (buffer ti % 2), then warp
        // ti % NUM_WARPS adds them in warp order and stores. A buffer is written again two
        // tiles later, after a __syncthreads its reader has passed.
        float* pb = partial + (ti & 1) * (NUM_WARPS * ENTRIES * 32);
#pragma unroll
        for (int mt = 0; mt < M_TILES; mt++)
#pragma unroll
            for (int r = 0; r < 4; r++) {
                pb[(warp * ENTRIES + mt * 4 + r) * 32 + lane] = acc[mt][r];
                acc[mt][r] = 0.0f;
            }
        __syncthreads();
        if (warp == ti % NUM_WARPS) {
            const int tile = sh.tile0 + ti;
#pragma unroll
            for (int e = 0; e < ENTRIES; e++) {
                float v = 0.0f;
#pragma unroll
                for (int w = 0; w < NUM_WARPS; w++) v += pb[(w * ENTRIES + e) * 32 + lane];
                const int mt = e / 4, r = e % 4;
                const int row = tile * 16 + g + ((r & 2) ? 8 : 0);
                const int m = mt * 8 + 2 * t + (r & 1);
                if (row < N && m < M) {
                    if (R) v += act_to_float(R[(size_t)m * N + row]);
                    Y[(size_t)m * N + row] = float_to_act(v);
                }
            }
        }
    }
}
