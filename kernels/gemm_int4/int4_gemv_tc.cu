// int4_gemv_tc.cu — W4A16 decode GEMM on tensor cores: Y[M,N] = X[M,K] · dequant(W)ᵀ (+ R).
//
// For decode (M = 1..16). int4_gemv does the product on the fp32 pipe and pays about six
// instructions per weight (unpack, dequant fma, one fma per activation row): at 4.5 TB/s of
// packed weights that is more than an SM can issue, so it stalls at 20–40 % of the memory
// bound. Here the weights are the A operand of mma.m16n8k16 (16 weight rows × 16 k) and the
// activations the B operand (k × 8 rows of X, rows past M are don't-cares): a weight costs
// a shift, a lop3 and half a packed fma, and the tensor core does the multiply-adds. The
// 8 (or 16) columns of the mma that M = 1 leaves idle cost nothing that matters: the
// kernel stays memory bound.
//
// The k order inside an mma is free (a dot product does not care), so each lane takes 32
// consecutive k of a weight row — one 16-byte load — and the activations it pairs them with
// come from the same 32 k of X: lane (g = lane/4, t = lane%4) loads row g and row g+8 of a
// 16-row tile at k0 + 32t .. k0 + 32t + 31, so 4 lanes cover a 128-k step of 16 rows. With
// kernlab's nibble order ([0,2,4,6,1,3,5,7], docs/int4-format.md) pair p of a word,
// `(w >> 4p) & 0x000F000F`, is two consecutive columns (8j+2p, 8j+2p+1): `| 0x43004300`
// makes them the bf16 pair 128+q (fp16: 0x64006400, 1024+q). mma (word j, half h) takes
// pairs 2h (logical k 2t, 2t+1) and 2h+1 (logical 2t+8, 2t+9), i.e. physical columns
// 8j+4h .. 8j+4h+3, which are X's 8 bytes at the same place.
//
// Two dequant paths, chosen at compile time:
//  - FACTORED (GROUP % 128 == 0, ZERO_MODE 0 or 1): a 128-k step lies in one group, so the
//    A operand is the exact integer q - z (one packed fma: (128+q)·1 - (128+z)), the mma
//    sums Σ (q-z)·x in fp32, and the scale multiplies that sum once per row and step. The
//    weights are exact, like int4_gemv; only the summation order differs from f64.
//  - DIRECT (groups of 32/64, or float minimums): each lane's 32 k lie in one group; the
//    weight is dequantized exactly in fp32 and rounded once to the activation dtype (the
//    same values as int4_mma and quant::reference with WeightRounding::To).
//
// Work split: a block owns N_TILES 16-row tiles (16·N_TILES rows of W); its NUM_WARPS warps
// take the K steps of the block's split round-robin in runs of UNROLL steps (all loads of a
// run issued before any math); the warps' partial sums meet in shared memory and are added
// in warp order (deterministic). SPLITK > 1 splits K across blockIdx.y into fp32 partials
// that gemm_splitk_reduce adds in split order.
//
// Weight format (docs/int4-format.md): Wq u32 [N][K/8]; scales [K/GROUP][N] (f16/bf16 bits);
// zeros per ZERO_MODE, [K/GROUP][N].
//
// Tunables (defaults in brackets):
//   KL_FP16 [0]        0: X, R, Y bf16; 1: fp16
//   KL_SCALE_FP16      scale/minimum dtype, 1 = f16, 0 = bf16 [same as KL_FP16]
//   GROUP [128]        group size along K, a multiple of 32
//   ZERO_MODE [0]      0 symmetric (q-8)·s; 1 u8 zeros (q-z)·s; 2 float minimums q·s+m
//   M_TILES [2]        8-row tiles of X: M <= 8·M_TILES (1 or 2)
//   N_TILES [1]        16-row weight tiles per block (1, 2 or 4)
//   NUM_WARPS [4]      warps per block, splitting the block's K steps
//   UNROLL [2]         128-k steps a warp loads before computing (1, 2 or 4)
//   SPLITK [1]         K splits over blockIdx.y (> 1 needs gemm_splitk_reduce)
//   PREFETCH [1]       1: load the next run's weights before this run's math
//
// Launch contract:
//   extern "C" __global__ void int4_gemv_tc(const T* X, const unsigned* Wq,
//       const unsigned short* scales, const void* zeros, const T* R, T* Y, float* ws,
//       int M, int N, int K)
//     T = __nv_bfloat16 (__half with KL_FP16=1). zeros: ZERO_MODE 0 ignored (may be NULL),
//     1: const unsigned char* [K/GROUP][N], 2: const unsigned short* [K/GROUP][N].
//     R nullable. SPLITK == 1: Y written (+R), ws unused (may be NULL). SPLITK > 1: ws fp32
//     [SPLITK][M][N] fully written, Y and R untouched; then
//     gemm_splitk_reduce(ws, Y, R, M, N, SPLITK) (kernels/gemm/splitk_reduce.cuh):
//     grid (ceil(M*N/256), 1, 1), block (256, 1, 1).
//     grid  = (ceil(N / (16 * N_TILES)), SPLITK, 1)
//     block = (32 * NUM_WARPS, 1, 1), no dynamic shared memory
//   Requirements: 1 <= M <= 8 * M_TILES; K % 128 == 0; K % GROUP == 0; X and Wq 16-byte
//   aligned (cudaMalloc is; K % 8 == 0 keeps rows aligned); N >= 1 arbitrary. sm_80+.

#include "int4_common.cuh"

#ifndef M_TILES
#define M_TILES 2
#endif
#ifndef N_TILES
#define N_TILES 1
#endif
#ifndef NUM_WARPS
#define NUM_WARPS 4
#endif
#ifndef UNROLL
#define UNROLL 2
#endif
#ifndef SPLITK
#define SPLITK 1
#endif
#ifndef PREFETCH
#define PREFETCH 1
#endif

#if GROUP % 32 != 0
#error "GROUP must be a multiple of 32 (a lane's 32 k must lie in one group)"
#endif
#if M_TILES != 1 && M_TILES != 2
#error "M_TILES must be 1 or 2"
#endif
#if N_TILES != 1 && N_TILES != 2 && N_TILES != 4
#error "N_TILES must be 1, 2 or 4"
#endif
#if UNROLL != 1 && UNROLL != 2 && UNROLL != 4
#error "UNROLL must be 1, 2 or 4"
#endif

#define FACTORED (GROUP % 128 == 0 && ZERO_MODE != 2)
#define STEP_K 128

// -(base + z) as a 16-bit float is NEG_BASE | z for z <= 16 (ulp 1 there).
#define NEG_BASE ((MAGIC & 0xFFFFu) | 0x8000u)

#include "../gemm/splitk_reduce.cuh"


// Streaming 16-byte load of packed weights (read once: keep it out of L1, where X lives).
__device__ __forceinline__ uint4 load_weights(const u32* p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

// D += A · B, m16n8k16, fp32 accumulators (not volatile: ptxas may interleave the mma's with
// the next pairs' dequant).
__device__ __forceinline__ void mma_16816(float* d, u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32." PTX_T "." PTX_T ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Per (row, group) constants of one weight row.
struct RowDeq {
    float s;      // scale
    float c;      // DIRECT: value = fma(base + q, s, c); FACTORED: unused
    u32 neg_zp;   // FACTORED: packed -(base + z), so fma2(base+q, 1, neg_zp) = q - z
};

__device__ __forceinline__ RowDeq row_consts(const unsigned short* scales, const void* zeros, int grp, int row,
                                             int N) {
    const size_t idx = (size_t)grp * N + row;
    RowDeq d;
    d.s = scale_to_float(__ldg(scales + idx));
#if ZERO_MODE == 0
    const u32 z = 8;
#elif ZERO_MODE == 1
    const u32 z = __ldg(reinterpret_cast<const unsigned char*>(zeros) + idx);
#else
    const u32 z = 0;
#endif
#if ZERO_MODE == 2
    // q·s + m: base + q - base exactly, then one fma.
    d.c = scale_to_float(__ldg(reinterpret_cast<const unsigned short*>(zeros) + idx));
#else
    d.c = -((float)(KL_FP16 ? 1024 : 128) + (float)z) * d.s;
#endif
    d.neg_zp = (NEG_BASE | z) * 0x00010001u;
    return d;
}

// Pair p (0..3) of a word: columns 2p and 2p+1 as the packed 16-bit floats base + q.
template <int P>
__device__ __forceinline__ u32 code_pair(u32 w) {
    return ((w >> (4 * P)) & 0x000F000Fu) | MAGIC;
}

// The A-operand pair for pair P of word w.
template <int P>
__device__ __forceinline__ u32 weight_pair(u32 w, const RowDeq& d) {
#if FACTORED
    return fma2(code_pair<P>(w), ONE2, d.neg_zp);  // q - z, exact
#else
    // fp32 base + q of the low (column 2P) and high (column 2P+1) halves; exact dequant in
    // fp32, then one rounding of the pair to the activation dtype.
    const u32 bits = code_pair<P>(w);
    const u32 lo_bits = bits << 16, hi_bits = bits & 0xFFFF0000u;
#if KL_FP16
    const float lo = __half2float(__ushort_as_half((unsigned short)(bits & 0xFFFF)));
    const float hi = __half2float(__ushort_as_half((unsigned short)(bits >> 16)));
    const float base = 1024.0f;
#else
    const float lo = __uint_as_float(lo_bits), hi = __uint_as_float(hi_bits);
    const float base = 128.0f;
#endif
#if ZERO_MODE == 2
    const float vlo = fmaf(lo - base, d.s, d.c), vhi = fmaf(hi - base, d.s, d.c);
#else
    const float vlo = fmaf(lo, d.s, d.c), vhi = fmaf(hi, d.s, d.c);
#endif
    (void)lo_bits;
    (void)hi_bits;
#if KL_FP16
    __half2 h = __floats2half2_rn(vlo, vhi);
#else
    __nv_bfloat162 h = __floats2bfloat162_rn(vlo, vhi);
#endif
    return *reinterpret_cast<u32*>(&h);
#endif
}

// One 16-row tile × one 128-k step (this lane's 32 k): 8 mma per 8-row X tile.
// wa/wb: this lane's words of rows g and g+8; xf: this lane's 32 activations per X tile.
__device__ __forceinline__ void tile_step(float (*acc)[4], const uint4& wa, const uint4& wb, const RowDeq& da,
                                          const RowDeq& db, const uint4 (*xf)[4]) {
    const u32 a_words[4] = {wa.x, wa.y, wa.z, wa.w};
    const u32 b_words[4] = {wb.x, wb.y, wb.z, wb.w};
#pragma unroll
    for (int j = 0; j < 4; j++) {
        // h = 0: pairs 0, 1 (columns 8j+0..3); h = 1: pairs 2, 3 (columns 8j+4..7).
        const u32 a00 = weight_pair<0>(a_words[j], da), a02 = weight_pair<1>(a_words[j], da);
        const u32 a01 = weight_pair<0>(b_words[j], db), a03 = weight_pair<1>(b_words[j], db);
        const u32 a10 = weight_pair<2>(a_words[j], da), a12 = weight_pair<3>(a_words[j], da);
        const u32 a11 = weight_pair<2>(b_words[j], db), a13 = weight_pair<3>(b_words[j], db);
#pragma unroll
        for (int mt = 0; mt < M_TILES; mt++) {
            mma_16816(acc[mt], a00, a01, a02, a03, xf[mt][j].x, xf[mt][j].y);
            mma_16816(acc[mt], a10, a11, a12, a13, xf[mt][j].z, xf[mt][j].w);
        }
    }
}

// The weights of the run starting at step `run` (< s_end): UNROLL steps of every tile.
// Steps past s_end re-read step s_end-1 (valid memory); the math skips them.
__device__ __forceinline__ void load_run(uint4 (&w)[UNROLL][N_TILES][2], const u32* const (&wrow)[N_TILES][2], int run,
                                         int s_end) {
#pragma unroll
    for (int u = 0; u < UNROLL; u++) {
        const int st = min(run + u, s_end - 1);
#pragma unroll
        for (int nt = 0; nt < N_TILES; nt++)
#pragma unroll
            for (int h = 0; h < 2; h++) w[u][nt][h] = load_weights(wrow[nt][h] + (size_t)st * (STEP_K / 8));
    }
}

// No __launch_bounds__: with it ptxas 13.0 caps registers low enough to spill a few bytes.
extern "C" __global__ void
int4_gemv_tc(const T* __restrict__ X, const u32* __restrict__ Wq, const unsigned short* __restrict__ scales,
             const void* __restrict__ zeros, const T* __restrict__ R, T* __restrict__ Y, float* __restrict__ ws,
             int M, int N, int K) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int n_base = blockIdx.x * (16 * N_TILES);
    const int words_per_row = K / 8;
    const int steps = K / STEP_K;
    const int s_begin = (int)((long long)steps * blockIdx.y / SPLITK);
    const int s_end = (int)((long long)steps * (blockIdx.y + 1) / SPLITK);

    // This lane's two weight rows per tile (rows past N re-read row N-1; never stored).
    const u32* wrow[N_TILES][2];
    int rows[N_TILES][2];
#pragma unroll
    for (int nt = 0; nt < N_TILES; nt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            rows[nt][h] = min(n_base + nt * 16 + g + 8 * h, N - 1);
            wrow[nt][h] = Wq + (size_t)rows[nt][h] * words_per_row + 4 * t;
        }
    // This lane's X rows (rows past M re-read row M-1: they only feed D columns never stored).
    const T* xrow[M_TILES];
#pragma unroll
    for (int mt = 0; mt < M_TILES; mt++) xrow[mt] = X + (size_t)min(mt * 8 + g, M - 1) * K + 32 * t;

    float acc[N_TILES][M_TILES][4];
#pragma unroll
    for (int nt = 0; nt < N_TILES; nt++)
#pragma unroll
        for (int mt = 0; mt < M_TILES; mt++)
#pragma unroll
            for (int r = 0; r < 4; r++) acc[nt][mt][r] = 0.0f;

    // Every weight load of a run is issued before its math: UNROLL·N_TILES·2 16-byte loads in
    // flight per lane. With PREFETCH the next run's loads go out before this run's math, so
    // a warp always has a run in flight (twice the weight registers).
    constexpr int RUN_STRIDE = NUM_WARPS * UNROLL;
    uint4 w[UNROLL][N_TILES][2];
    int run = s_begin + warp * UNROLL;
    if (run < s_end) load_run(w, wrow, run, s_end);
    for (; run < s_end; run += RUN_STRIDE) {
#if PREFETCH
        uint4 next_w[UNROLL][N_TILES][2];
        if (run + RUN_STRIDE < s_end) load_run(next_w, wrow, run + RUN_STRIDE, s_end);
#endif
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            const int st = run + u;
            if (st < s_end) {
                const int k0 = st * STEP_K;
                uint4 xf[M_TILES][4];
#pragma unroll
                for (int mt = 0; mt < M_TILES; mt++)
#pragma unroll
                    for (int j = 0; j < 4; j++) xf[mt][j] = __ldg(reinterpret_cast<const uint4*>(xrow[mt] + k0) + j);
#if FACTORED
                const int grp = k0 / GROUP;
#else
                const int grp = (k0 + 32 * t) / GROUP;
#endif
#pragma unroll
                for (int nt = 0; nt < N_TILES; nt++) {
                    const RowDeq da = row_consts(scales, zeros, grp, rows[nt][0], N);
                    const RowDeq db = row_consts(scales, zeros, grp, rows[nt][1], N);
#if FACTORED
                    float part[M_TILES][4];
#pragma unroll
                    for (int mt = 0; mt < M_TILES; mt++)
#pragma unroll
                        for (int r = 0; r < 4; r++) part[mt][r] = 0.0f;
                    tile_step(part, w[u][nt][0], w[u][nt][1], da, db, xf);
                    // D rows: registers 0, 1 are weight row g, registers 2, 3 row g+8.
#pragma unroll
                    for (int mt = 0; mt < M_TILES; mt++) {
                        acc[nt][mt][0] = fmaf(da.s, part[mt][0], acc[nt][mt][0]);
                        acc[nt][mt][1] = fmaf(da.s, part[mt][1], acc[nt][mt][1]);
                        acc[nt][mt][2] = fmaf(db.s, part[mt][2], acc[nt][mt][2]);
                        acc[nt][mt][3] = fmaf(db.s, part[mt][3], acc[nt][mt][3]);
                    }
#else
                    tile_step(acc[nt], w[u][nt][0], w[u][nt][1], da, db, xf);
#endif
                }
            }
        }
#if PREFETCH
#pragma unroll
        for (int u = 0; u < UNROLL; u++)
#pragma unroll
            for (int nt = 0; nt < N_TILES; nt++)
#pragma unroll
                for (int h = 0; h < 2; h++) w[u][nt][h] = next_w[u][nt][h];
#else
        if (run + RUN_STRIDE < s_end) load_run(w, wrow, run + RUN_STRIDE, s_end);
#endif
    }

    // Block reduction over warps, in warp order, then one store per output.
    constexpr int ENTRIES = N_TILES * M_TILES * 4;
#if NUM_WARPS > 1
    __shared__ float partial[NUM_WARPS][ENTRIES][32];
#pragma unroll
    for (int nt = 0; nt < N_TILES; nt++)
#pragma unroll
        for (int mt = 0; mt < M_TILES; mt++)
#pragma unroll
            for (int r = 0; r < 4; r++) partial[warp][(nt * M_TILES + mt) * 4 + r][lane] = acc[nt][mt][r];
    __syncthreads();
    for (int idx = threadIdx.x; idx < ENTRIES * 32; idx += NUM_WARPS * 32) {
        const int e = idx >> 5, l = idx & 31;
        float v = 0.0f;
#pragma unroll
        for (int wi = 0; wi < NUM_WARPS; wi++) v += partial[wi][e][l];
#else
#pragma unroll
    for (int e = 0; e < ENTRIES; e++) {
        const int l = lane;
        const float v = acc[e / (M_TILES * 4)][(e / 4) % M_TILES][e % 4];
#endif
        const int nt = e / (M_TILES * 4), mt = (e / 4) % M_TILES, r = e % 4;
        const int row = n_base + nt * 16 + (l >> 2) + ((r & 2) ? 8 : 0);
        const int m = mt * 8 + 2 * (l & 3) + (r & 1);
        if (row < N && m < M) {
#if SPLITK == 1
            float y = v;
            if (R) y += act_to_float(R[(size_t)m * N + row]);
            Y[(size_t)m * N + row] = float_to_act(y);
#else
            ws[((size_t)blockIdx.y * M + m) * N + row] = v;
#endif
        }
    }
}
