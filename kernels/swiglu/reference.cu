// reference.cu — the swiglu family's trusted reference (not tuned).
//
//   swiglu_reference(const T* gu, T* out, int tokens, int ffn)
//   One thread per output element, expf and a true division, fp32.
//   Launch: grid-stride over tokens * ffn; block 256.
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include "../common/element_type.cuh"

extern "C" __global__ void swiglu_reference(const T* gu, T* out, int tokens, int ffn) {
    const long long total = (long long)tokens * ffn;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long t = i / ffn, j = i % ffn;
        const float g = kl_to_f(gu[t * 2 * ffn + j]), u = kl_to_f(gu[t * 2 * ffn + ffn + j]);
        out[i] = kl_from_f(g / (1.f + expf(-g)) * u);
    }
}
