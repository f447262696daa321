// int4_common.cuh — what every gemm_int4 template shares (kernlab expands this quoted include
// before NVRTC, so each template's source hash covers it): the weight-format tunables and
// their checks, the activation type with the constants of the lookup-free dequant, small
// conversions, and the per-group dequant of int4_mma and int4_mma_wgmma.
//
// Format tunables (docs/int4-format.md):
//   KL_FP16 [0]        activations (X, R, Y) fp16 instead of bf16
//   KL_SCALE_FP16      scale/minimum dtype, 1 = f16, 0 = bf16 [same as KL_FP16]
//   GROUP [128]        group size along K
//   ZERO_MODE [0]      0 symmetric (q-8)·s; 1 u8 zero points (q-z)·s; 2 float minimums q·s+m
//                      (SYMMETRIC = 1/0 maps to ZERO_MODE 0/1)
// Codes: word j of a weight row holds columns 8j..8j+7 at nibble positions
// [0,4,1,5,2,6,3,7], so `(w >> 4p) & 0x000F000F` is the column pair (2p, 2p+1) and
// `| MAGIC` turns it into two 16-bit floats base + q (bf16 base 128, fp16 base 1024).

#include <cuda_fp16.h>
#include <cuda_bf16.h>

#ifndef KL_FP16
#define KL_FP16 0
#endif
#ifndef KL_SCALE_FP16
#define KL_SCALE_FP16 KL_FP16
#endif
#ifndef GROUP
#define GROUP 128
#endif
#ifndef ZERO_MODE
#if defined(SYMMETRIC)
#define ZERO_MODE ((SYMMETRIC) ? 0 : 1)
#else
#define ZERO_MODE 0
#endif
#endif
#if ZERO_MODE < 0 || ZERO_MODE > 2
#error "ZERO_MODE must be 0 (symmetric), 1 (int zeros) or 2 (float mins)"
#endif

typedef unsigned int u32;
typedef unsigned short u16;

#if KL_FP16
typedef __half act_t;
#define PTX_T "f16"
#define MAGIC 0x64006400u  // fp16 1024.0 twice: | q gives 1024 + q
#define MAGIC_F 1024.0f
#define ONE2 0x3C003C00u   // fp16 1.0 twice
#else
typedef __nv_bfloat16 act_t;
#define PTX_T "bf16"
#define MAGIC 0x43004300u  // bf16 128.0 twice: | q gives 128 + q (ulp 1 from 128 to 255)
#define MAGIC_F 128.0f
#define ONE2 0x3F803F80u   // bf16 1.0 twice
#endif
#define NEG_ZERO2 0x80008000u
// Scales of another dtype than the activations: dequantize in fp32, round once at the pack.
#define DEQ_FP32 (KL_SCALE_FP16 != KL_FP16)

// The element type kernels/gemm/splitk_reduce.cuh expects.
typedef act_t T;

__device__ __forceinline__ float act_to_float(act_t v) {
#if KL_FP16
    return __half2float(v);
#else
    return __bfloat162float(v);
#endif
}

__device__ __forceinline__ act_t float_to_act(float v) {
#if KL_FP16
    return __float2half_rn(v);
#else
    return __float2bfloat16_rn(v);
#endif
}

// A scale or minimum (16-bit float bits of the scale dtype) as fp32.
__device__ __forceinline__ float scale_to_float(u16 b) {
#if KL_SCALE_FP16
    return __half2float(__ushort_as_half(b));
#else
    return __uint_as_float(((u32)b) << 16);
#endif
}

// Packed 16-bit fma, round to nearest (bf16x2 fma exists from sm_80; add/mul only sm_90).
__device__ __forceinline__ u32 fma2(u32 a, u32 b, u32 c) {
    u32 d;
    asm("fma.rn." PTX_T "x2 %0, %1, %2, %3;\n" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

// Two fp32 values as one packed pair of the activation dtype (lo in the low half).
__device__ __forceinline__ u32 pack_floats(float lo, float hi) {
#if KL_FP16
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<u32*>(&h);
#else
    u32 d;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(d) : "f"(hi), "f"(lo));
    return d;
#endif
}

// (w & 0x000F000F) | magic: the column pair at the word's low nibbles as base + q. One LOP3:
// written in C, ptxas emits an AND and an OR, because a LOP3 takes a single 32-bit immediate
// and it keeps both masks as immediates; here the magic goes into a register once.
// A template that cannot spare the register (int4_mma spills a few bytes in some
// configurations) defines DEQ_ONE_LOP3 0 and keeps the AND and the OR.
#ifndef DEQ_ONE_LOP3
#define DEQ_ONE_LOP3 1
#endif
__device__ __forceinline__ u32 nibble_pair_bits(u32 w, u32 magic) {
#if DEQ_ONE_LOP3
    u32 r;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;\n" : "=r"(r) : "r"(w), "n"(0x000F000F), "r"(magic));
    return r;
#else
    return (w & 0x000F000Fu) | magic;
#endif
}

// ---- per-group dequant to the activation dtype (int4_mma, int4_mma_wgmma) -----------------
// Packed path: w2 = fma2(fma2(t, 1, zneg2), s2, add2) where t = pairs base+q:
//   modes 0/1: zneg2 = -(MAGIC + z), add2 = -0 → (q - z) * s, one rounding
//   mode 2:    zneg2 = -MAGIC,        add2 = m  → q * s + m,   one rounding
// fp32 path (DEQ_FP32): w = fma(128+q, s, c) with
//   modes 0/1: c = -(128+z)*s (exact); mode 2: w = fma(q, s, m); one rounding at the pack.
struct Deq {
#if DEQ_FP32
    float s, c;
#else
    u32 s2, zneg2, add2;
#endif
};

__device__ __forceinline__ Deq make_deq(u32 s_bits, u32 zraw) {
    Deq d;
#if DEQ_FP32
    d.s = scale_to_float((u16)s_bits);
#if ZERO_MODE == 0
    d.c = -136.0f * d.s;
#elif ZERO_MODE == 1
    d.c = -(128.0f + (float)zraw) * d.s;
#else
    d.c = scale_to_float((u16)zraw);
#endif
#else
    d.s2 = s_bits * 0x10001u;
#if ZERO_MODE == 0
    d.zneg2 = (MAGIC | 0x80008000u) + 0x00080008u;  // -(MAGIC + 8): sign set, low bits = 8
    d.add2 = NEG_ZERO2;
#elif ZERO_MODE == 1
    d.zneg2 = (MAGIC | 0x80008000u) + zraw * 0x10001u;
    d.add2 = NEG_ZERO2;
#else
    d.zneg2 = MAGIC | 0x80008000u;
    d.add2 = zraw * 0x10001u;
#endif
#endif
    return d;
}

// Columns (2i, 2i+1) of a word already shifted right by 4i, as a 16-bit pair in k order.
__device__ __forceinline__ u32 dequant_pair(u32 w_shifted, const Deq& d) {
#if DEQ_FP32
    u32 t = nibble_pair_bits(w_shifted, 0x43004300u);  // bf16 (128+q_lo, 128+q_hi)
    float lo = __uint_as_float(t << 16), hi = __uint_as_float(t & 0xFFFF0000u);
#if ZERO_MODE == 2
    return pack_floats(fmaf(lo - 128.0f, d.s, d.c), fmaf(hi - 128.0f, d.s, d.c));
#else
    return pack_floats(fmaf(lo, d.s, d.c), fmaf(hi, d.s, d.c));
#endif
#else
    u32 t = nibble_pair_bits(w_shifted, MAGIC);
    return fma2(fma2(t, ONE2, d.zneg2), d.s2, d.add2);
#endif
}
