// swiglu.cu — the Llama MLP activation on the fused gate+up projection output.
//
//   gu is [tokens][2*ffn]: gate in columns [0, ffn), up in [ffn, 2*ffn) (the output of one
//   GEMM against the concatenated [W_gate; W_up] weight).
//   out[t][j] = silu(g) * u = g / (1 + exp(-g)) * u,  g = gu[t][j], u = gu[t][ffn + j]
// Math in fp32 with one rounding at the end (HF rounds silu(g) first; this does not).
// Each thread loads ITEMS vectors of gate and of up before computing any (2*ITEMS loads in
// flight), blocks tile a row along x and step over rows along y.
//
// Element type: bf16 by default, fp16 with -DKL_FP16=1, fp32 with -DKL_FP32=1.
// Tunables:
//   THREADS  threads per block
//   VEC      elements per load/store (VEC * sizeof(T) in {2, 4, 8, 16} bytes)
//   ITEMS    vectors per thread per row
//
// Launch contract:
//   swiglu(const T* gu, T* out, int tokens, int ffn)
//   grid  = (ceil(ffn / (THREADS * VEC * ITEMS)), min(tokens, 65535), 1)
//   block = (THREADS, 1, 1), no dynamic shared memory; rows beyond gridDim.y are handled
//   by striding. Any ffn >= 1 (scalar path when ffn % VEC != 0). out must not overlap gu.
#include <cuda_fp16.h>
#include <cuda_bf16.h>

// ---- element type and vector access (the same block in every memory-bound template) ----
#if defined(KL_FP32)
typedef float T;
__device__ __forceinline__ T kl_from_f(float v) { return v; }
#elif defined(KL_FP16)
typedef __half T;
__device__ __forceinline__ T kl_from_f(float v) { return __float2half_rn(v); }
#else
typedef __nv_bfloat16 T;
__device__ __forceinline__ T kl_from_f(float v) { return __float2bfloat16_rn(v); }
#endif
__device__ __forceinline__ float kl_to_f(float v) { return v; }
__device__ __forceinline__ float kl_to_f(__half v) { return __half2float(v); }
__device__ __forceinline__ float kl_to_f(__nv_bfloat16 v) { return __bfloat162float(v); }

#ifndef VEC
#if defined(KL_FP32)
#define VEC 4
#else
#define VEC 8
#endif
#endif

template <int BYTES> struct KlBits;
template <> struct KlBits<16> { typedef uint4 t; };
template <> struct KlBits<8> { typedef uint2 t; };
template <> struct KlBits<4> { typedef unsigned int t; };
template <> struct KlBits<2> { typedef unsigned short t; };
typedef KlBits<VEC * sizeof(T)>::t KlVec;

// VEC elements at p (aligned to VEC * sizeof(T) bytes) as one load, widened to fp32.
__device__ __forceinline__ void kl_load(const T* p, float (&f)[VEC]) {
    alignas(16) T e[VEC];
    *reinterpret_cast<KlVec*>(e) = *reinterpret_cast<const KlVec*>(p);
#pragma unroll
    for (int j = 0; j < VEC; ++j) f[j] = kl_to_f(e[j]);
}
// The first n (< VEC allowed) elements at p, any alignment; the rest set to `fill`.
__device__ __forceinline__ void kl_load_tail(const T* p, int n, float (&f)[VEC], float fill) {
#pragma unroll
    for (int j = 0; j < VEC; ++j) f[j] = j < n ? kl_to_f(p[j]) : fill;
}
__device__ __forceinline__ void kl_store(T* p, const float (&f)[VEC]) {
    alignas(16) T e[VEC];
#pragma unroll
    for (int j = 0; j < VEC; ++j) e[j] = kl_from_f(f[j]);
    *reinterpret_cast<KlVec*>(p) = *reinterpret_cast<const KlVec*>(e);
}
__device__ __forceinline__ void kl_store_tail(T* p, int n, const float (&f)[VEC]) {
#pragma unroll
    for (int j = 0; j < VEC; ++j)
        if (j < n) p[j] = kl_from_f(f[j]);
}
// ------------------------------------------------------------------------------------------

#ifndef THREADS
#define THREADS 256
#endif
#ifndef ITEMS
#define ITEMS 2
#endif

static_assert(VEC * sizeof(T) <= 16, "a vector access is at most 16 bytes");
static_assert(THREADS % 32 == 0 && THREADS <= 1024, "THREADS: whole warps, at most 1024");

__device__ __forceinline__ float silu_mul(float g, float u) {
    // __expf(-g) overflows to inf for g < -88: g / inf = -0, the right limit.
    return __fdividef(g, 1.f + __expf(-g)) * u;
}

template <bool ALIGNED>
__device__ __forceinline__ void swiglu_body(const T* gu, T* out, int tokens, int ffn) {
    const int col0 = (blockIdx.x * ITEMS * THREADS + threadIdx.x) * VEC;
    for (long long row = blockIdx.y; row < tokens; row += gridDim.y) {
        const T* g = gu + row * 2 * ffn;
        const T* u = g + ffn;
        T* o = out + row * ffn;
        float gv[ITEMS][VEC], uv[ITEMS][VEC];
#pragma unroll
        for (int it = 0; it < ITEMS; ++it) {
            const int col = col0 + it * THREADS * VEC;
            if (col < ffn) {
                // ffn % VEC == 0: rows, halves and vectors are all aligned, and a vector that
                // starts inside the row ends inside it.
                if (ALIGNED) {
                    kl_load(g + col, gv[it]);
                    kl_load(u + col, uv[it]);
                } else {
                    kl_load_tail(g + col, ffn - col, gv[it], 0.f);
                    kl_load_tail(u + col, ffn - col, uv[it], 0.f);
                }
            }
        }
#pragma unroll
        for (int it = 0; it < ITEMS; ++it) {
            const int col = col0 + it * THREADS * VEC;
            if (col >= ffn) continue;
#pragma unroll
            for (int j = 0; j < VEC; ++j) gv[it][j] = silu_mul(gv[it][j], uv[it][j]);
            if (ALIGNED) kl_store(o + col, gv[it]);
            else kl_store_tail(o + col, ffn - col, gv[it]);
        }
    }
}

// (N, 1): with the bare __launch_bounds__(N), ptxas squeezed some configurations below
// their need and spilled; a minimum of one block lets it use what the code needs.
extern "C" __global__ void __launch_bounds__(THREADS, 1) swiglu(const T* gu, T* out, int tokens, int ffn) {
    if (ffn % VEC == 0) swiglu_body<true>(gu, out, tokens, ffn);
    else swiglu_body<false>(gu, out, tokens, ffn);
}
