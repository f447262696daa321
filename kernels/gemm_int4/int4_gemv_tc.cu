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
//    With ZP_MMA (bf16) the packed fma goes too: the A operand is base + q straight from the
//    LOP3, and the step subtracts (base + z)·Σx, Σx coming from one more mma per k16 on an
//    all-ones A shared by the N tiles. That leaves a shift and a LOP3 per weight pair, half
//    the instructions of the fma path (Nsight Compute put that kernel at 54 % of the SM's
//    issue rate when it streamed at 50 % of DRAM bandwidth: it was issue bound).
//  - DIRECT (groups of 32/64, or float minimums): each lane's 32 k lie in one group; the
//    weight is dequantized exactly in fp32 and rounded once to the activation dtype (the
//    same values as int4_mma and quant::reference with WeightRounding::To).
//
// Work split: a block owns N_TILES 16-row tiles (16·N_TILES rows of W); its NUM_WARPS warps
// take the K steps of the block's split round-robin in runs of UNROLL steps (all loads of a
// run issued before any math); the warps' partial sums meet in shared memory and are added
// in warp order (deterministic). SPLITK > 1 splits K across blockIdx.y into fp32 partials
// that gemm_splitk_reduce adds in split order.
// DIAG (M = 1) makes a tile two rows read as 512-byte runs: lane group g takes the 128-k
// piece g of each 1024-k step and X's piece g is the mma's column g, so each row's sum is the
// diagonal of the tile's product (see the epilogue). It measured level with the 16-row tiles
// on an H200, which showed that the 64-byte pieces of those do not hold the kernel back.
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
//   ZP_MMA [1]         FACTORED bf16: feed base + q to the mma and take (base + z)·Σx off
//                      once per step, with Σx from an mma on an all-ones A (0: a packed fma
//                      per weight pair makes q - z first)
//   DIAG [0]           1: two-row tiles of 1024-k steps, M = 1 and M_TILES = 1 only
//   SWIGLU [0]         1: the gate+up projection with SwiGLU in the epilogue (set by the
//                      model, not swept): W's rows interleaved per 16-row tile, rows
//                      16i..16i+7 gating outputs 8i..8i+7 and rows 16i+8..16i+15 their up
//                      rows, so one lane holds both halves of an output (D registers 0, 1
//                      and 2, 3); Y [M][N/2] = silu(gate)·up, gate and up rounded to the
//                      activation dtype first as the unfused path stores them
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
//     grid  = (ceil(N / (16 * N_TILES)), SPLITK, 1)   (DIAG: ceil(N / (2 * N_TILES)))
//     block = (32 * NUM_WARPS, 1, 1), no dynamic shared memory
//   SWIGLU: Y is [M][N/2], R must be NULL, N % 16 == 0, SPLITK == 1 and DIAG == 0.
//   Requirements: 1 <= M <= 8 * M_TILES (DIAG: M == 1); K % 128 == 0; K % GROUP == 0; X and Wq 16-byte
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
#ifndef ZP_MMA
#define ZP_MMA 1
#endif

#ifndef SWIGLU
#define SWIGLU 0
#endif
#if SWIGLU && (SPLITK != 1 || DIAG)
#error "SWIGLU needs SPLITK == 1 and DIAG == 0"
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
// fp16's base 1024 would leave (1024 + q)·x - 1032·Σx too few bits after the cancellation;
// bf16's base 128 leaves about 17, well past the output's 8.
#define ZP_VIA_MMA (ZP_MMA && FACTORED && !KL_FP16)
#ifndef DIAG
#define DIAG 0
#endif
#if DIAG && M_TILES != 1
#error "DIAG is for M = 1 (M_TILES = 1)"
#endif
// A step is what one warp loads per tile: 16 rows x 128 k, or with DIAG 2 rows x 1024 k.
#if DIAG
#define STEP_K 1024
#define TILE_ROWS 2
#else
#define STEP_K 128
#define TILE_ROWS 16
#endif

// -(base + z) as a 16-bit float is NEG_BASE | z for z <= 16 (ulp 1 there).
#define NEG_BASE ((MAGIC & 0xFFFFu) | 0x8000u)

#include "../gemm/splitk_reduce.cuh"
#include "../common/pdl.cuh"


// Streaming 16-byte load of packed weights (read once: keep it out of L1, where X lives).
__device__ __forceinline__ uint4 load_weights(const u32* p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

#include "tc_step.cuh"  // mma_16816, RowRaw/RowDeq, row_consts, weight_pair, tile_step

// What a warp loads for one run (UNROLL steps of every tile), all issued before its math.
struct RunBuf {
    uint4 w[UNROLL][N_TILES][2];
    RowRaw r[UNROLL][N_TILES][2];
};

// Where a lane reads: step 0 of its two weight rows per tile, the scales (and zeros) of
// those rows in group 0, and its X rows.
struct LaneRows {
    const u32* w[N_TILES][2];
    const unsigned short* s[N_TILES][2];
#if ZERO_MODE == 1
    const unsigned char* z[N_TILES][2];
#elif ZERO_MODE == 2
    const unsigned short* z[N_TILES][2];
#endif
    const T* x[M_TILES];
};

// The first k of this lane's piece of step `st`: with DIAG, lanes g own 128-k pieces of the
// step's 1024 k; FACTORED counts from the piece's start (128 k in one group), DIRECT from the
// lane's own 32 k.
__device__ __forceinline__ int lane_k(int st, int g, int t) {
    int k = st * STEP_K;
#if DIAG
    k += 128 * g;
#else
    (void)g;
#endif
#if !FACTORED
    k += 32 * t;
#else
    (void)t;
#endif
    return k;
}

// Whether this lane's piece of step `st` lies inside K (only DIAG's last step can stick out
// when K % 1024 != 0; such a lane loads nothing and its X reads as zeros).
__device__ __forceinline__ bool lane_live(int st, int g, int K) {
#if DIAG
    return st * STEP_K + 128 * g < K;
#else
    (void)st;
    (void)g;
    (void)K;
    return true;
#endif
}

// The run starting at step `run` (< s_end); steps past s_end load nothing and the math skips
// them. Addresses are one wide multiply-add each from the lane's row pointers.
__device__ __forceinline__ void load_run(RunBuf& b, const LaneRows& lr, int N, int K, int g, int t, int run,
                                         int s_end) {
#pragma unroll
    for (int u = 0; u < UNROLL; u++) {
        const int st = run + u;
        if (st < s_end && !lane_live(st, g, K)) {
            // Zero scales: the dead piece's products (weights of any bits times zero X) vanish.
#pragma unroll
            for (int nt = 0; nt < N_TILES; nt++)
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    b.r[u][nt][h].s = 0;
#if ZERO_MODE != 0
                    b.r[u][nt][h].z = 0;
#endif
                }
        } else if (st < s_end) {
            const size_t goff = (size_t)(lane_k(st, g, t) / GROUP) * N;
#pragma unroll
            for (int nt = 0; nt < N_TILES; nt++)
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    b.w[u][nt][h] = load_weights(lr.w[nt][h] + (size_t)st * (STEP_K / 8));
                    b.r[u][nt][h].s = __ldg(lr.s[nt][h] + goff);
#if ZERO_MODE != 0
                    b.r[u][nt][h].z = __ldg(lr.z[nt][h] + goff);
#endif
                }
        }
    }
}

// The math of one loaded run.
__device__ __forceinline__ void compute_run(float (&acc)[N_TILES][M_TILES][4], const RunBuf& b, const LaneRows& lr,
                                            int K, int g, int run, int s_end) {
#pragma unroll
    for (int u = 0; u < UNROLL; u++) {
        const int st = run + u;
        if (st >= s_end) break;
        const int k0 = st * STEP_K;
        const bool live = lane_live(st, g, K);
        uint4 xf[M_TILES][4];
#pragma unroll
        for (int mt = 0; mt < M_TILES; mt++)
#pragma unroll
            for (int j = 0; j < 4; j++)
                xf[mt][j] = live ? __ldg(reinterpret_cast<const uint4*>(lr.x[mt] + k0) + j) : make_uint4(0, 0, 0, 0);
#if ZP_VIA_MMA
        // Σx over the step's 128 k for each X column, by an mma with an all-ones A (the
        // same in every D row): the tiles' sums of (base + q)·x minus (base + z)·Σx are
        // their Σ (q - z)·x. It costs 8 mma per X tile and step, shared by the N tiles, in
        // place of a packed fma per weight pair.
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
#pragma unroll
        for (int nt = 0; nt < N_TILES; nt++) {
            const RowDeq da = row_consts(b.r[u][nt][0]);
            const RowDeq db = row_consts(b.r[u][nt][1]);
#if FACTORED
            float part[M_TILES][4];
#pragma unroll
            for (int mt = 0; mt < M_TILES; mt++)
#pragma unroll
                for (int r = 0; r < 4; r++) part[mt][r] = 0.0f;
            tile_step(part, b.w[u][nt][0], b.w[u][nt][1], da, db, xf);
            // D rows: registers 0, 1 are weight row g, registers 2, 3 row g+8.
#pragma unroll
            for (int mt = 0; mt < M_TILES; mt++) {
#if ZP_VIA_MMA
                part[mt][0] = fmaf(-da.zb, sx[mt][0], part[mt][0]);
                part[mt][1] = fmaf(-da.zb, sx[mt][1], part[mt][1]);
                part[mt][2] = fmaf(-db.zb, sx[mt][2], part[mt][2]);
                part[mt][3] = fmaf(-db.zb, sx[mt][3], part[mt][3]);
#endif
                acc[nt][mt][0] = fmaf(da.s, part[mt][0], acc[nt][mt][0]);
                acc[nt][mt][1] = fmaf(da.s, part[mt][1], acc[nt][mt][1]);
                acc[nt][mt][2] = fmaf(db.s, part[mt][2], acc[nt][mt][2]);
                acc[nt][mt][3] = fmaf(db.s, part[mt][3], acc[nt][mt][3]);
            }
#else
            tile_step(acc[nt], b.w[u][nt][0], b.w[u][nt][1], da, db, xf);
#endif
        }
    }
}

KL_PDL_AWARE(int4_gemv_tc)
// No __launch_bounds__: with it ptxas 13.0 caps registers low enough to spill a few bytes.
extern "C" __global__ void
int4_gemv_tc(const T* __restrict__ X, const u32* __restrict__ Wq, const unsigned short* __restrict__ scales,
             const void* __restrict__ zeros, const T* __restrict__ R, T* __restrict__ Y, float* __restrict__ ws,
             int M, int N, int K) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int n_base = blockIdx.x * (TILE_ROWS * N_TILES);
    const int words_per_row = K / 8;
    const int steps = (K + STEP_K - 1) / STEP_K;
    const int s_begin = (int)((long long)steps * blockIdx.y / SPLITK);
    const int s_end = (int)((long long)steps * (blockIdx.y + 1) / SPLITK);

    // This lane's two weight rows per tile (rows past N re-read row N-1; never stored) and
    // its X rows (rows past M re-read row M-1: they only feed D columns never stored).
    LaneRows lr;
#pragma unroll
    for (int nt = 0; nt < N_TILES; nt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
#if DIAG
            // Rows r (h = 0) and r + 1 (h = 1) of the tile; lane (g, t) reads 16 bytes at
            // 64g + 16t of each 512-byte step, so a warp's load is one contiguous 512 bytes.
            const int row = min(n_base + nt * 2 + h, N - 1);
            lr.w[nt][h] = Wq + (size_t)row * words_per_row + 16 * g + 4 * t;
#else
            const int row = min(n_base + nt * 16 + g + 8 * h, N - 1);
            lr.w[nt][h] = Wq + (size_t)row * words_per_row + 4 * t;
#endif
            lr.s[nt][h] = scales + row;
#if ZERO_MODE == 1
            lr.z[nt][h] = reinterpret_cast<const unsigned char*>(zeros) + row;
#elif ZERO_MODE == 2
            lr.z[nt][h] = reinterpret_cast<const unsigned short*>(zeros) + row;
#endif
        }
#pragma unroll
    for (int mt = 0; mt < M_TILES; mt++)
        lr.x[mt] = DIAG ? X + 128 * g + 32 * t : X + (size_t)min(mt * 8 + g, M - 1) * K + 32 * t;

    float acc[N_TILES][M_TILES][4];
#pragma unroll
    for (int nt = 0; nt < N_TILES; nt++)
#pragma unroll
        for (int mt = 0; mt < M_TILES; mt++)
#pragma unroll
            for (int r = 0; r < 4; r++) acc[nt][mt][r] = 0.0f;

    // A warp takes runs of UNROLL steps, NUM_WARPS runs apart. With PREFETCH the next run's
    // loads go out before this run's math, into the other of two buffers (a copy from a
    // "next" buffer cost a move per register per run).
    constexpr int RUN_STRIDE = NUM_WARPS * UNROLL;
    int run = s_begin + warp * UNROLL;
    RunBuf buf0;
    if (run < s_end) load_run(buf0, lr, N, K, g, t, run, s_end);
    // Under PDL this block may run beside the kernel before it: the weights depend on no
    // kernel of the step, so the first run's loads (above) go out first; X and R are read
    // only after pdl_wait().
    pdl_wait();
#if PREFETCH
    RunBuf buf1;
    while (run < s_end) {
        if (run + RUN_STRIDE < s_end) load_run(buf1, lr, N, K, g, t, run + RUN_STRIDE, s_end);
        compute_run(acc, buf0, lr, K, g, run, s_end);
        run += RUN_STRIDE;
        if (run >= s_end) break;
        if (run + RUN_STRIDE < s_end) load_run(buf0, lr, N, K, g, t, run + RUN_STRIDE, s_end);
        compute_run(acc, buf1, lr, K, g, run, s_end);
        run += RUN_STRIDE;
    }
#else
    for (; run < s_end; run += RUN_STRIDE) {
        compute_run(acc, buf0, lr, K, g, run, s_end);
        if (run + RUN_STRIDE < s_end) load_run(buf0, lr, N, K, g, t, run + RUN_STRIDE, s_end);
    }
#endif
    // The weights are streamed: let the next kernel's blocks take the SM slots this grid's
    // blocks free from here on (earlier, they would compete with its loads for residency).
    pdl_launch_dependents();
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
#define WARP_SUM(e, l, v)                                        \
    float v = 0.0f;                                              \
    _Pragma("unroll") for (int wi = 0; wi < NUM_WARPS; wi++) v += partial[wi][e][l];
#else
#define WARP_SUM(e, l, v) const float v = acc[(e) / (M_TILES * 4)][((e) / 4) % M_TILES][(e) % 4];
#endif
#if DIAG
    // D[i][c] of a tile is Σ over k of piece i%8 of row r + i/8 times X's piece c, so the
    // row's dot product is the diagonal: lane (g, g/2), register g%2 (row r) and 2 + g%2
    // (row r + 1), summed over the eight pieces by a fixed xor tree (deterministic).
    if (warp != 0) return;
#pragma unroll
    for (int nt = 0; nt < N_TILES; nt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int e = nt * 4 + 2 * h + (g & 1);
            WARP_SUM(e, lane, d)
            float v = (t == (g >> 1)) ? d : 0.0f;
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
            const int row = n_base + nt * 2 + h;
            if (lane == 0 && row < N) {
#if SPLITK == 1
                float y = v;
                if (R) y += act_to_float(R[row]);
                Y[row] = float_to_act(y);
#else
                ws[(size_t)blockIdx.y * N + row] = v;
#endif
            }
        }
#elif SWIGLU
    // Entry pairs (r, r + 2) of one lane are the gate and up rows of one output.
    for (int idx = threadIdx.x; idx < ENTRIES / 2 * 32; idx += NUM_WARPS * 32) {
        const int p = idx >> 5, l = idx & 31;
        const int e = (p / 2) * 4 + (p % 2);
        WARP_SUM(e, l, gate)
        WARP_SUM(e + 2, l, up)
        const int nt = e / (M_TILES * 4), mt = (e / 4) % M_TILES;
        const int row = n_base / 2 + nt * 8 + (l >> 2);
        const int m = mt * 8 + 2 * (l & 3) + (e & 1);
        if (2 * row < N && m < M) {
            const float gr = act_to_float(float_to_act(gate)), ur = act_to_float(float_to_act(up));
            Y[(size_t)m * (N / 2) + row] = float_to_act(__fdividef(gr, 1.f + __expf(-gr)) * ur);
        }
    }
#else
    for (int idx = threadIdx.x; idx < ENTRIES * 32; idx += NUM_WARPS * 32) {
        const int e = idx >> 5, l = idx & 31;
        WARP_SUM(e, l, v)
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
#endif
}
