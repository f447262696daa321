// reference.cu — y = gelu(x + bias) one element per thread (grid-stride), erf GELU in double.
// grid min(ceil(tokens·n / 256), 65535·16), block 256.
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#if defined(KL_FP32)
typedef float T;
__device__ __forceinline__ double to_d(float v) { return v; }
__device__ __forceinline__ float from_d(double v) { return (float)v; }
#elif defined(KL_FP16)
typedef __half T;
__device__ __forceinline__ double to_d(__half v) { return __half2float(v); }
__device__ __forceinline__ __half from_d(double v) { return __float2half_rn((float)v); }
#else
typedef __nv_bfloat16 T;
__device__ __forceinline__ double to_d(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ __nv_bfloat16 from_d(double v) { return __float2bfloat16_rn((float)v); }
#endif

extern "C" __global__ void bias_gelu_reference(const T* x, const T* bias, T* y, int tokens, int n) {
    const long long total = (long long)tokens * n;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        const double v = to_d(x[i]) + to_d(bias[i % n]);
        y[i] = from_d(0.5 * v * (1.0 + erf(v * 0.70710678118654752)));
    }
}
