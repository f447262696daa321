// reference.cu — the softmax family's trusted reference (not tuned).
//
//   softmax_reference(const T* x, T* y, int rows, int cols)
//   One warp per row, three plain passes (max, sum, write) with expf, fp32 throughout.
//   Launch: grid = (rows, 1, 1), block = (32, 1, 1).
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include "../common/element_type.cuh"

extern "C" __global__ void softmax_reference(const T* x, T* y, int rows, int cols) {
    const long long row = blockIdx.x;
    if (row >= rows) return;
    const T* xr = x + row * cols;
    T* yr = y + row * cols;
    float m = -3.402823466e38f;
    for (int i = threadIdx.x; i < cols; i += 32) m = fmaxf(m, kl_to_f(xr[i]));
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    float s = 0.f;
    for (int i = threadIdx.x; i < cols; i += 32) s += expf(kl_to_f(xr[i]) - m);
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    for (int i = threadIdx.x; i < cols; i += 32) yr[i] = kl_from_f(expf(kl_to_f(xr[i]) - m) / s);
}
