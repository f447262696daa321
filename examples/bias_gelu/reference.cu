// reference.cu — y = gelu(x + bias) one element per thread (grid-stride), erf GELU in double.
// grid min(ceil(tokens·n / 256), 65535·16), block 256.
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <kernlab/element_type.cuh>  // T, kl_to_f, kl_from_f (built into kernlab)

extern "C" __global__ void bias_gelu_reference(const T* x, const T* bias, T* y, int tokens, int n) {
    const long long total = (long long)tokens * n;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        const double v = (double)kl_to_f(x[i]) + (double)kl_to_f(bias[i % n]);
        y[i] = kl_from_f((float)(0.5 * v * (1.0 + erf(v * 0.70710678118654752))));
    }
}
