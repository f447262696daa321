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

// Element type (bf16, or fp16/fp32 via KL_FP16/KL_FP32), VEC and the vector loads/stores
// shared by every memory-bound template; kernlab expands this include before compiling.
#include "../common/elementwise.cuh"
#include "../common/pdl.cuh"  // pdl_wait, pdl_launch_dependents, KL_PDL_AWARE

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
KL_PDL_AWARE(swiglu)
extern "C" __global__ void __launch_bounds__(THREADS, 1) swiglu(const T* gu, T* out, int tokens, int ffn) {
    pdl_wait();  // before any read of an earlier kernel's output or any write
    pdl_launch_dependents();
    if (ffn % VEC == 0) swiglu_body<true>(gu, out, tokens, ffn);
    else swiglu_body<false>(gu, out, tokens, ffn);
}
