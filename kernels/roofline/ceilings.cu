/*
roofline/ceilings.cu — micro-benchmarks that measure a GPU's roofline ceilings.

`kernlab roofline` times each entry point with CUDA events (median of many repetitions)
and turns bytes or FLOPs per launch into GB/s or TFLOP/s. None of these kernels computes
anything useful: each one does the most of one kind of work the hardware allows, and
stores its result (to out[0]) only when it equals a `key` argument the host picks so that
it (almost) never does: the compiler cannot drop the work, and nothing is written.

Entry points (all grid-stride, any grid; the host uses block 256 or 512)

    copy_v16_u{2,4,8}(const uint4* src, uint4* dst, long long n16)
        dst[i] = src[i] for i < n16, 16-byte loads and stores, 2, 4 or 8 independent loads
        in flight per thread before the stores. Bytes moved: 2 * 16 * n16 (read + write).

    read_v16_u{2,4,8}(const uint4* src, long long n16, unsigned key, unsigned* out)
        XOR of every 32-bit word of src, 16-byte loads, 2, 4 or 8 in flight; out[0] is
        written only when the XOR equals `key`. Bytes moved: 16 * n16.

    l2_read_v16(const uint4* buf, long long n16, int passes, unsigned key, unsigned* out)
        `passes` reads of a buffer that fits in L2 (the host uses about a third of the L2
        size), with ld.global.cg so L1 does not serve the repeats. The first pass comes
        from DRAM; with hundreds of passes it is a small fraction of the time.
        Bytes: passes * 16 * n16.

    fma_f32(float b, float c, int iters, float key, float* out, unsigned long long* clocks)
        NACC independent FMA chains per thread, FMA_UNROLL FMAs per chain per iteration:
        a = a * b + c with |b| < 1, so values stay normal. FLOPs: 2 * NACC * FMA_UNROLL *
        iters per thread. Block 0 thread 0 writes clock64 ticks and %globaltimer ns over
        its run into clocks[0..2] (the SM clock under load = ticks / ns * 1000 MHz).

    mma_peak_bf16(int iters, float key, float* out)
    mma_peak_f16(int iters, float key, float* out)
        Registers only: each warp issues MMA_ACC independent mma.sync.m16n8k16 (fp32
        accumulate) per iteration. FLOPs: 2*16*8*16 * MMA_ACC * iters per warp. The rate of
        our own tensor-core instruction stream with no memory traffic at all.

Tunables (macros, defaults below)
    UNROLL      16-byte loads in flight per thread in l2_read_v16          (8)
    NACC        independent FMA chains per thread                        (8)
    FMA_UNROLL  FMAs per chain per loop iteration                        (8)
    MMA_ACC     independent mma accumulators per warp                    (4)
Requires sm_80 or newer (bf16 mma.sync).
*/
#include <cuda_fp16.h>

#ifndef UNROLL
#define UNROLL 8
#endif
#ifndef NACC
#define NACC 8
#endif
#ifndef FMA_UNROLL
#define FMA_UNROLL 8
#endif
#ifndef MMA_ACC
#define MMA_ACC 4
#endif

static_assert(UNROLL >= 1 && UNROLL <= 16, "UNROLL in 1..16");
static_assert(NACC >= 1 && NACC <= 32, "NACC in 1..32");
static_assert(MMA_ACC >= 1 && MMA_ACC <= 16, "MMA_ACC in 1..16");

__device__ __forceinline__ long long global_tid() { return blockIdx.x * (long long)blockDim.x + threadIdx.x; }
__device__ __forceinline__ long long grid_threads() { return (long long)gridDim.x * blockDim.x; }

__device__ __forceinline__ unsigned xor4(uint4 v) { return v.x ^ v.y ^ v.z ^ v.w; }

// The loads and stores below are `asm volatile`, so the PTX keeps the loads of an iteration
// together ahead of their uses (volatile asm is not reordered among itself). ptxas may still
// interleave them (on sm_90 it issues 4 of 8 loads before the first store), which is why the
// host tries 2, 4 and 8 loads per trip and several grid sizes and keeps the fastest.

// 16-byte read-only load from DRAM that does not allocate in L1.
__device__ __forceinline__ uint4 ld_stream_v4(const uint4* p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

__device__ __forceinline__ void st_v4(uint4* p, uint4 v) {
    asm volatile("st.global.v4.u32 [%0], {%1,%2,%3,%4};\n" ::"l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w) : "memory");
}

// 16-byte load that is cached in L2 only (not L1).
__device__ __forceinline__ uint4 ld_cg_v4(const uint4* p) {
    uint4 v;
    asm volatile("ld.global.cg.v4.u32 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

// dst[i] = src[i]: U loads issued back to back, then U stores.
template <int U>
__device__ __forceinline__ void copy_body(const uint4* __restrict__ src, uint4* __restrict__ dst, long long n16) {
    const long long stride = grid_threads();
    long long i = global_tid();
    for (; i + (U - 1) * stride < n16; i += U * stride) {
        uint4 v[U];
#pragma unroll
        for (int u = 0; u < U; ++u) v[u] = ld_stream_v4(src + i + u * stride);
#pragma unroll
        for (int u = 0; u < U; ++u) st_v4(dst + i + u * stride, v[u]);
    }
    for (; i < n16; i += stride) st_v4(dst + i, ld_stream_v4(src + i));
}

template <int U>
__device__ __forceinline__ void read_body(const uint4* __restrict__ src, long long n16, unsigned key, unsigned* __restrict__ out) {
    const long long stride = grid_threads();
    long long i = global_tid();
    unsigned acc[U];
#pragma unroll
    for (int u = 0; u < U; ++u) acc[u] = 0u;
    for (; i + (U - 1) * stride < n16; i += U * stride) {
        uint4 v[U];
#pragma unroll
        for (int u = 0; u < U; ++u) v[u] = ld_stream_v4(src + i + u * stride);
#pragma unroll
        for (int u = 0; u < U; ++u) acc[u] ^= xor4(v[u]);
    }
    for (; i < n16; i += stride) acc[0] ^= xor4(ld_stream_v4(src + i));
    unsigned r = 0u;
#pragma unroll
    for (int u = 0; u < U; ++u) r ^= acc[u];
    if (r == key) out[0] = r;
}

#define KL_COPY_READ(U)                                                                                     \
    extern "C" __global__ void copy_v16_u##U(const uint4* __restrict__ src, uint4* __restrict__ dst,       \
                                             long long n16) {                                              \
        copy_body<U>(src, dst, n16);                                                                        \
    }                                                                                                       \
    extern "C" __global__ void read_v16_u##U(const uint4* __restrict__ src, long long n16, unsigned key,   \
                                             unsigned* __restrict__ out) {                                 \
        read_body<U>(src, n16, key, out);                                                                   \
    }
KL_COPY_READ(2)
KL_COPY_READ(4)
KL_COPY_READ(8)

extern "C" __global__ void l2_read_v16(const uint4* __restrict__ buf, long long n16, int passes, unsigned key,
                                       unsigned* __restrict__ out) {
    const long long stride = grid_threads();
    unsigned acc[UNROLL];
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) acc[u] = 0u;
    for (int p = 0; p < passes; ++p) {
        long long i = global_tid();
        for (; i + (UNROLL - 1) * stride < n16; i += UNROLL * stride) {
            uint4 v[UNROLL];
#pragma unroll
            for (int u = 0; u < UNROLL; ++u) v[u] = ld_cg_v4(buf + i + u * stride);
#pragma unroll
            for (int u = 0; u < UNROLL; ++u) acc[u] ^= xor4(v[u]);
        }
        for (; i < n16; i += stride) acc[0] ^= xor4(ld_cg_v4(buf + i));
        // Fold the pass number in so passes are not identical to the compiler.
        acc[0] += (unsigned)p;
    }
    unsigned r = 0u;
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) r ^= acc[u];
    if (r == key) out[0] = r;
}

extern "C" __global__ void fma_f32(float b, float c, int iters, float key, float* __restrict__ out,
                                   unsigned long long* __restrict__ clocks) {
    unsigned long long t0 = 0, g0 = 0;
    const bool probe = blockIdx.x == 0 && threadIdx.x == 0;
    if (probe) {
        t0 = clock64();
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(g0));
    }
    float a[NACC];
#pragma unroll
    for (int j = 0; j < NACC; ++j) a[j] = 0.5f + 1e-6f * (float)threadIdx.x + 1e-3f * (float)j;
    for (int it = 0; it < iters; ++it) {
#pragma unroll
        for (int u = 0; u < FMA_UNROLL; ++u) {
#pragma unroll
            for (int j = 0; j < NACC; ++j) a[j] = fmaf(a[j], b, c);
        }
    }
    float s = 0.0f;
#pragma unroll
    for (int j = 0; j < NACC; ++j) s += a[j];
    if (s == key) out[0] = s;
    if (probe) {
        unsigned long long g1;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(g1));
        clocks[0] = clock64() - t0;
        clocks[1] = g1 - g0;
    }
}

// One m16n8k16 MMA with fp32 accumulation; F16 selects fp16 inputs, else bf16.
template <bool F16>
__device__ __forceinline__ void mma16816(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    if (F16) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    } else {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
}

template <bool F16>
__device__ __forceinline__ void mma_peak(int iters, float key, float* out) {
    // Small non-zero operands that differ per lane (2^-8-ish in bf16 and fp16), so the
    // tensor cores see real data and the sums stay finite for millions of steps.
    const unsigned lane = threadIdx.x & 31u;
    const unsigned h = F16 ? (0x1c00u + lane) : (0x3b80u + lane);  // fp16 ~2^-8, bf16 ~2^-8
    const unsigned pair = h | (h << 16);
    unsigned a[4] = {pair, pair ^ 1u, pair ^ 2u, pair ^ 3u};
    unsigned b0 = pair ^ 4u, b1 = pair ^ 5u;
    float d[MMA_ACC][4];
#pragma unroll
    for (int j = 0; j < MMA_ACC; ++j) d[j][0] = d[j][1] = d[j][2] = d[j][3] = 0.0f;
    for (int it = 0; it < iters; ++it) {
#pragma unroll
        for (int j = 0; j < MMA_ACC; ++j) mma16816<F16>(d[j], a, b0, b1);
    }
    float s = 0.0f;
#pragma unroll
    for (int j = 0; j < MMA_ACC; ++j) s += d[j][0] + d[j][1] + d[j][2] + d[j][3];
    if (s == key) out[0] = s;
}

extern "C" __global__ void mma_peak_bf16(int iters, float key, float* __restrict__ out) { mma_peak<false>(iters, key, out); }
extern "C" __global__ void mma_peak_f16(int iters, float key, float* __restrict__ out) { mma_peak<true>(iters, key, out); }
