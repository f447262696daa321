// quantize.cu — int8 weight-only quantization on the GPU, symmetric per output channel, into
// the format of src/quant/int8.rs (`Int8Weight`), and its inverse.
//
// The same arithmetic as quant::quantize_int8_per_channel, so the device result equals the
// host's bit for bit: amax = max |w| over the row (folded from 0), scale = amax / 127 rounded
// to T; q = clamp(round(w / scale_used), -127, 127) (round half away from zero, like Rust's
// f32::round and CUDA's roundf), q = 0 where scale_used is 0 (an all-zero row) and for a NaN
// weight (Rust's `NaN as i8`). Divisions are IEEE round-to-nearest (__fdiv_rn), whatever the
// compile flags. A row whose scale overflows T (the host refuses it) gets an infinite scale.
//
// Tunables: KL_FP16 [0] (weights, scales and the dequantized output fp16 instead of bf16).
//
// Launch contract:
//   extern "C" __global__ void int8_quantize_channel(const T* W, signed char* Wq,
//       unsigned short* scales, int N, int K)
//     W [N][K] row-major; Wq i8 [N][K]; scales [N] bits of T. One warp per row, 8 warps per
//     block: grid = (ceil(N / 8), 1, 1), block = (256, 1, 1), no dynamic shared memory.
//     Each lane reads 8 consecutive weights (16 bytes) a step and stores their 8 codes.
//   extern "C" __global__ void int8_dequantize(const signed char* Wq, const unsigned short* scales,
//       T* W, int N, int K)
//     W[n][k] = q * scale[n] rounded once to T (the product is exact in fp32), 16 values a
//     thread (one 16-byte load, two 16-byte stores). For prefill-sized M the model dequantizes
//     a weight into a scratch buffer and runs the bf16 GEMM; the family's reference does too.
//     Grid-stride: any grid, block = (256, 1, 1).
//   Requirements: K % 16 == 0; W, Wq 16-byte aligned (cudaMalloc is).

#include <cuda_fp16.h>
#include <cuda_bf16.h>

#ifndef KL_FP16
#define KL_FP16 0
#endif

#if KL_FP16
typedef __half T;
__device__ __forceinline__ float to_f(unsigned short b) { return __half2float(__ushort_as_half(b)); }
__device__ __forceinline__ unsigned short to_bits(float v) { return __half_as_ushort(__float2half_rn(v)); }
#else
typedef __nv_bfloat16 T;
__device__ __forceinline__ float to_f(unsigned short b) { return __bfloat162float(__ushort_as_bfloat16(b)); }
__device__ __forceinline__ unsigned short to_bits(float v) { return __bfloat16_as_ushort(__float2bfloat16_rn(v)); }
#endif

// The 8 values of one 16-byte load as fp32.
__device__ __forceinline__ void load8(const T* p, float* v) {
    const uint4 u = *reinterpret_cast<const uint4*>(p);
    const unsigned w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        v[2 * i] = to_f((unsigned short)(w[i] & 0xFFFFu));
        v[2 * i + 1] = to_f((unsigned short)(w[i] >> 16));
    }
}

__device__ __forceinline__ unsigned code(float v, float s) {
    if (!(s > 0.0f)) return 0u;
    const float r = roundf(__fdiv_rn(v, s));
    if (r != r) return 0u;  // NaN weight: Rust's `NaN as i8` is 0
    return (unsigned)(int)fminf(fmaxf(r, -127.0f), 127.0f) & 0xFFu;
}

extern "C" __global__ void __launch_bounds__(256)
int8_quantize_channel(const T* __restrict__ W, signed char* __restrict__ Wq, unsigned short* __restrict__ scales,
                      int N, int K) {
    const int lane = threadIdx.x & 31;
    const long long row = (long long)blockIdx.x * 8 + (threadIdx.x >> 5);
    if (row >= N) return;  // whole warps leave together
    const T* w = W + row * K;
    const int steps = K / 8;
    float amax = 0.0f;
    for (int i = lane; i < steps; i += 32) {
        float v[8];
        load8(w + 8 * i, v);
#pragma unroll
        for (int e = 0; e < 8; e++) amax = fmaxf(amax, fabsf(v[e]));
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
    const unsigned short s_bits = to_bits(__fdiv_rn(amax, 127.0f));
    const float s = to_f(s_bits);
    if (lane == 0) scales[row] = s_bits;
    for (int i = lane; i < steps; i += 32) {
        float v[8];
        load8(w + 8 * i, v);
        unsigned lo = 0, hi = 0;
#pragma unroll
        for (int e = 0; e < 4; e++) {
            lo |= code(v[e], s) << (8 * e);
            hi |= code(v[4 + e], s) << (8 * e);
        }
        reinterpret_cast<uint2*>(Wq + row * K)[i] = make_uint2(lo, hi);
    }
}

extern "C" __global__ void __launch_bounds__(256)
int8_dequantize(const signed char* __restrict__ Wq, const unsigned short* __restrict__ scales, T* __restrict__ W,
                int N, int K) {
    const long long per_row = K / 16;
    const long long chunks = (long long)N * per_row;
    for (long long i = (long long)blockIdx.x * 256 + threadIdx.x; i < chunks; i += (long long)gridDim.x * 256) {
        const long long row = i / per_row;
        const float s = to_f(__ldg(scales + row));
        const uint4 q = __ldg(reinterpret_cast<const uint4*>(Wq) + i);
        const unsigned words[4] = {q.x, q.y, q.z, q.w};
        unsigned out[8];
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const unsigned w = words[j / 2];
            const int b0 = 16 * (j % 2);
            const float v0 = (float)(signed char)((w >> b0) & 0xFFu) * s;
            const float v1 = (float)(signed char)((w >> (b0 + 8)) & 0xFFu) * s;
            out[j] = (unsigned)to_bits(v0) | ((unsigned)to_bits(v1) << 16);
        }
        uint4* dst = reinterpret_cast<uint4*>(W) + 2 * i;
        dst[0] = make_uint4(out[0], out[1], out[2], out[3]);
        dst[1] = make_uint4(out[4], out[5], out[6], out[7]);
    }
}
