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
// or 256: each lane holds GROUP/32 consecutive values).
//
// Launch contract:
//   extern "C" __global__ void int4_quantize_rtn(const T* W, unsigned* Wq,
//       unsigned short* scales, int N, int K)
//     W [N][K] row-major; Wq u32 [N][K/8] (nibble order [0,2,4,6,1,3,5,7]); scales
//     [K/GROUP][N] bits of T. One warp per (row, group), 8 warps per block:
//     grid = (ceil(N * (K/GROUP) / 8), 1, 1), block = (256, 1, 1), no dynamic shared memory.
//   Requirements: K % GROUP == 0.
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
#if GROUP != 32 && GROUP != 64 && GROUP != 128 && GROUP != 256
#error "GROUP must be 32, 64, 128 or 256"
#endif

#define VALS (GROUP / 32)  // consecutive values per lane

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

extern "C" __global__ void __launch_bounds__(256)
int4_quantize_rtn(const T* __restrict__ W, unsigned* __restrict__ Wq, unsigned short* __restrict__ scales, int N,
                  int K) {
    const int lane = threadIdx.x & 31;
    const long long item = (long long)blockIdx.x * 8 + (threadIdx.x >> 5);
    const int groups = K / GROUP;
    if (item >= (long long)N * groups) return;  // whole warps leave together
    const int row = (int)(item / groups), grp = (int)(item % groups);
    const int k0 = grp * GROUP + lane * VALS;

    float v[VALS];
    float hi = 0.0f, lo = 0.0f;
#pragma unroll
    for (int i = 0; i < VALS; i++) {
        v[i] = to_f(W[(size_t)row * K + k0 + i]);
        hi = fmaxf(hi, v[i]);
        lo = fminf(lo, v[i]);
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        hi = fmaxf(hi, __shfl_xor_sync(0xffffffffu, hi, off));
        lo = fminf(lo, __shfl_xor_sync(0xffffffffu, lo, off));
    }
    float s = fmaxf(__fdiv_rn(hi, 7.0f), __fdiv_rn(-lo, 8.0f));
    if (!(s > 0.0f)) s = 0.0f;  // an all-zero group: +0, never -0 (as quant::quantize_rtn)
    const unsigned short s_bits = to_bits(s);
    const float s_used = from_bits(s_bits);
    if (lane == 0) scales[(size_t)grp * N + row] = s_bits;

    // This lane's nibbles, each at its position in the word of its column: column c of a word
    // sits at nibble NIBBLE_POS[c] = {0,4,1,5,2,6,3,7}[c] = (c >> 1) + 4 * (c & 1).
    unsigned bits = 0;
#pragma unroll
    for (int i = 0; i < VALS; i++) {
        unsigned q = 8;
        if (s_used > 0.0f) q = (unsigned)fminf(fmaxf(roundf(__fdiv_rn(v[i], s_used)) + 8.0f, 0.0f), 15.0f);
        const int c = (lane * VALS + i) & 7;
        bits |= q << (4 * ((c >> 1) + 4 * (c & 1)));
    }
    // Lanes sharing a word (8 / VALS of them, adjacent) OR their nibbles together.
#pragma unroll
    for (int off = 1; off < 8 / VALS; off <<= 1) bits |= __shfl_xor_sync(0xffffffffu, bits, off);
    if ((lane * VALS) % 8 == 0) Wq[((size_t)row * K + k0) / 8] = bits;
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
