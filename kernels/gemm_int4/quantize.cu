// quantize.cu — round-to-nearest int4 quantization on the GPU, into kernlab's int4 format
// (docs/int4-format.md): symmetric codes with one scale per GROUP consecutive K columns.
//
// The same arithmetic as quant::quantize_rtn (src/quant/rtn.rs), so the device result equals
// the host's bit for bit: s = max(max(w, 0)/7, max(-w, 0)/8), rounded to the scale dtype
// first; q = clamp(round(w / s_used) + 8, 0, 15) (round half away from zero, like Rust's
// f32::round and CUDA's roundf); an all-zero group (or a scale that rounds to 0) gets q = 8.
// Divisions are IEEE round-to-nearest (__fdiv_rn), whatever the compile flags.
//
// Used by the Llama path to quantize bf16 weights that already live on the GPU (llama3-8b's
// never exist on the host), so it runs once per model, not per step.
//
// Tunables: KL_FP16 [0] (weights and scales fp16 instead of bf16), GROUP [128] (32, 64, 128
// or 256: each lane holds GROUP/32 consecutive values; or any larger multiple of 32, such as
// K for per-channel scales, walked in chunks).
//
// Launch contract:
//   extern "C" __global__ void int4_quantize_rtn(const T* W, unsigned* Wq,
//       unsigned short* scales, int N, int K)
//     W [N][K] row-major; Wq u32 [N][K/8] (nibble order [0,2,4,6,1,3,5,7]); scales
//     [K/GROUP][N] bits of T. One warp per (row, group), 8 warps per block:
//     grid = (ceil(N * (K/GROUP) / 8), 1, 1), block = (256, 1, 1), no dynamic shared memory.
//   Requirements: K % GROUP == 0.
//
//   extern "C" __global__ void int4_quantize_rtn_asym(const T* W, unsigned* Wq,
//       unsigned short* scales, unsigned char* zeros, int N, int K)
//     The same with an integer zero point per group (what AWQ and GPTQ checkpoints store,
//     quant::quantize_rtn with symmetric = false): with hi = max(max(w), 0) and
//     lo = min(min(w), 0), s = (hi - lo)/15 rounded to the scale dtype, z = clamp(round(-lo /
//     s_used), 0, 15), q = clamp(round(w / s_used) + z, 0, 15); an all-zero group gets z = 8
//     and q = 8. zeros u8 [K/GROUP][N]. Same grid, block and requirements.
//
//   extern "C" __global__ void int4_dequantize(const unsigned* Wq, const unsigned short* scales,
//       T* W, int N, int K)
//     The inverse for symmetric weights: W[n][k] = (q - 8) * s rounded once to T (the value is
//     exact in fp32), 8 values (one word) per thread and one 16-byte store. For prefill-sized
//     M the model dequantizes a weight into a scratch buffer and runs the bf16 GEMM (what
//     vLLM's AWQ path does from 256 tokens on). Grid-stride: any grid, block = (256, 1, 1).

#include <cuda_fp16.h>
#include <cuda_bf16.h>

#ifndef KL_FP16
#define KL_FP16 0
#endif
#ifndef GROUP
#define GROUP 128
#endif
#if GROUP % 32 != 0 || GROUP < 32
#error "GROUP must be a multiple of 32"
#endif

// Up to 256 a lane holds GROUP/32 consecutive values; beyond, the warp walks the group in
// chunks of 32 * VALS values (the widest of 8, 4, 2, 1 a lane that tiles it), reading it
// twice: once for its range, once for the codes.
#if GROUP <= 256
#define VALS (GROUP / 32)
#elif GROUP % 256 == 0
#define VALS 8
#elif GROUP % 128 == 0
#define VALS 4
#elif GROUP % 64 == 0
#define VALS 2
#else
#define VALS 1
#endif
#define CHUNKS (GROUP / (32 * VALS))  // chunks a group

#if KL_FP16
typedef __half T;
__device__ __forceinline__ float to_f(T v) { return __half2float(v); }
__device__ __forceinline__ unsigned short to_bits(float v) { return __half_as_ushort(__float2half_rn(v)); }
__device__ __forceinline__ float from_bits(unsigned short b) { return __half2float(__ushort_as_half(b)); }
#else
typedef __nv_bfloat16 T;
__device__ __forceinline__ float to_f(T v) { return __bfloat162float(v); }
__device__ __forceinline__ unsigned short to_bits(float v) { return __bfloat16_as_ushort(__float2bfloat16_rn(v)); }
__device__ __forceinline__ float from_bits(unsigned short b) { return __bfloat162float(__ushort_as_bfloat16(b)); }
#endif

// One warp per (row, group): each lane's VALS values of the chunk last read, and the group's
// max and min (each folded from 0, as quant::group_params does), reduced over the warp.
struct GroupValues {
    float v[VALS];
    float hi, lo;
    int row, grp, lane;
};

__device__ __forceinline__ int chunk_k0(const GroupValues& g, int c) {
    return g.grp * GROUP + c * 32 * VALS + g.lane * VALS;
}

__device__ __forceinline__ void load_chunk(const T* __restrict__ W, int K, GroupValues& g, int c) {
    const int k0 = chunk_k0(g, c);
#pragma unroll
    for (int i = 0; i < VALS; i++) g.v[i] = to_f(W[(size_t)g.row * K + k0 + i]);
}

__device__ __forceinline__ bool load_group(const T* __restrict__ W, int N, int K, GroupValues& g) {
    g.lane = threadIdx.x & 31;
    const long long item = (long long)blockIdx.x * 8 + (threadIdx.x >> 5);
    const int groups = K / GROUP;
    if (item >= (long long)N * groups) return false;  // whole warps leave together
    g.row = (int)(item / groups);
    g.grp = (int)(item % groups);
    g.hi = 0.0f;
    g.lo = 0.0f;
    // max and min are exact, so the order they fold in cannot change the result.
    for (int c = 0; c < CHUNKS; c++) {
        load_chunk(W, K, g, c);
#pragma unroll
        for (int i = 0; i < VALS; i++) {
            g.hi = fmaxf(g.hi, g.v[i]);
            g.lo = fminf(g.lo, g.v[i]);
        }
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        g.hi = fmaxf(g.hi, __shfl_xor_sync(0xffffffffu, g.hi, off));
        g.lo = fminf(g.lo, __shfl_xor_sync(0xffffffffu, g.lo, off));
    }
    return true;
}

// Packs this lane's codes (q = clamp(round(v / s_used) + z, 0, 15), or z where s_used is 0)
// and stores the words. Column c of a word sits at nibble NIBBLE_POS[c] = {0,4,1,5,2,6,3,7}[c]
// = (c >> 1) + 4 * (c & 1); lanes sharing a word (8 / VALS of them, adjacent) OR their nibbles.
__device__ __forceinline__ void store_codes(GroupValues& g, const T* __restrict__ W, float s_used, float z,
                                            unsigned* __restrict__ Wq, int K) {
    for (int c = 0; c < CHUNKS; c++) {
        if (CHUNKS > 1) load_chunk(W, K, g, c);  // one chunk: still in registers from load_group
        unsigned bits = 0;
#pragma unroll
        for (int i = 0; i < VALS; i++) {
            unsigned q = (unsigned)z;
            if (s_used > 0.0f) q = (unsigned)fminf(fmaxf(roundf(__fdiv_rn(g.v[i], s_used)) + z, 0.0f), 15.0f);
            const int col = (g.lane * VALS + i) & 7;
            bits |= q << (4 * ((col >> 1) + 4 * (col & 1)));
        }
#pragma unroll
        for (int off = 1; off < 8 / VALS; off <<= 1) bits |= __shfl_xor_sync(0xffffffffu, bits, off);
        const int k0 = chunk_k0(g, c);
        if ((g.lane * VALS) % 8 == 0) Wq[((size_t)g.row * K + k0) / 8] = bits;
    }
}

extern "C" __global__ void __launch_bounds__(256)
int4_quantize_rtn(const T* __restrict__ W, unsigned* __restrict__ Wq, unsigned short* __restrict__ scales, int N,
                  int K) {
    GroupValues g;
    if (!load_group(W, N, K, g)) return;
    float s = fmaxf(__fdiv_rn(g.hi, 7.0f), __fdiv_rn(-g.lo, 8.0f));
    if (!(s > 0.0f)) s = 0.0f;  // an all-zero group: +0, never -0 (as quant::quantize_rtn)
    const unsigned short s_bits = to_bits(s);
    if (g.lane == 0) scales[(size_t)g.grp * N + g.row] = s_bits;
    store_codes(g, W, from_bits(s_bits), 8.0f, Wq, K);
}

extern "C" __global__ void __launch_bounds__(256)
int4_quantize_rtn_asym(const T* __restrict__ W, unsigned* __restrict__ Wq, unsigned short* __restrict__ scales,
                       unsigned char* __restrict__ zeros, int N, int K) {
    GroupValues g;
    if (!load_group(W, N, K, g)) return;
    const unsigned short s_bits = to_bits(__fdiv_rn(g.hi - g.lo, 15.0f));
    const float s_used = from_bits(s_bits);
    const float z = s_used > 0.0f ? fminf(fmaxf(roundf(__fdiv_rn(-g.lo, s_used)), 0.0f), 15.0f) : 8.0f;
    if (g.lane == 0) {
        scales[(size_t)g.grp * N + g.row] = s_bits;
        zeros[(size_t)g.grp * N + g.row] = (unsigned char)z;
    }
    store_codes(g, W, s_used, z, Wq, K);
}

extern "C" __global__ void __launch_bounds__(256)
int4_dequantize(const unsigned* __restrict__ Wq, const unsigned short* __restrict__ scales, T* __restrict__ W, int N,
                int K) {
    const long long words_per_row = K / 8;
    const long long words = (long long)N * words_per_row;
    for (long long i = (long long)blockIdx.x * 256 + threadIdx.x; i < words; i += (long long)gridDim.x * 256) {
        const int row = (int)(i / words_per_row);
        const int k0 = (int)(i % words_per_row) * 8;
        const float s = from_bits(__ldg(scales + (size_t)(k0 / GROUP) * N + row));
        const unsigned w = __ldg(Wq + i);
        unsigned out[4];
#pragma unroll
        for (int c = 0; c < 8; c += 2) {
            const unsigned q0 = (w >> (4 * ((c >> 1) + 4 * (c & 1)))) & 15u;
            const unsigned q1 = (w >> (4 * (((c + 1) >> 1) + 4 * ((c + 1) & 1)))) & 15u;
            const unsigned lo = to_bits(((float)q0 - 8.0f) * s), hi = to_bits(((float)q1 - 8.0f) * s);
            out[c / 2] = lo | (hi << 16);
        }
        reinterpret_cast<uint4*>(W)[i] = make_uint4(out[0], out[1], out[2], out[3]);
    }
}
