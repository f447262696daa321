// reference.cu — the rmsnorm family's trusted reference (not tuned).
//
//   rmsnorm_reference(const T* x, const T* h, T* res_out, T* y, const T* w, float eps,
//                     int rows, int dim)
//   Same contract as rmsnorm_rows (h may be NULL); one warp per row, two plain passes over
//   global memory, fp32 throughout, 1/sqrtf.
//   Launch: grid = (rows, 1, 1), block = (32, 1, 1).
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include "../common/element_type.cuh"

__device__ __forceinline__ float residual_at(const T* x, const T* h, long long i) {
    // The sum is rounded to T first: y is the norm of the residual that is stored.
    return h ? kl_to_f(kl_from_f(kl_to_f(x[i]) + kl_to_f(h[i]))) : kl_to_f(x[i]);
}

extern "C" __global__ void rmsnorm_reference(const T* x, const T* h, T* res_out, T* y, const T* w, float eps,
                                             int rows, int dim) {
    const long long row = blockIdx.x;
    if (row >= rows) return;
    const long long off = row * dim;
    float ss = 0.f;
    for (int i = threadIdx.x; i < dim; i += 32) {
        const float r = residual_at(x, h, off + i);
        ss += r * r;
    }
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    const float inv = 1.f / sqrtf(ss / (float)dim + eps);
    for (int i = threadIdx.x; i < dim; i += 32) {
        const float r = residual_at(x, h, off + i);
        if (h) res_out[off + i] = kl_from_f(r);
        y[off + i] = kl_from_f(r * inv * kl_to_f(w[i]));
    }
}
