// common/elementwise.cuh — the element type and vector access shared by the memory-bound
// templates (softmax, rmsnorm, rope, swiglu). kernlab expands quoted includes before NVRTC
// compiles a template, so the module cache key and the tuned database's source hash cover
// this file. Defines T, kl_from_f / kl_to_f, the tunable VEC (16-byte vectors by default),
// and kl_load / kl_store (aligned vectors) with kl_load_tail / kl_store_tail (row ends).
#include "element_type.cuh"

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
