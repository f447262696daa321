// reference.cu — y[r] = Σ_c x[r][c], one thread per row, accumulated in double.
// grid ceil(rows / 128), block 128.
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#if defined(KL_FP32)
typedef float T;
__device__ __forceinline__ double to_d(float v) { return v; }
#elif defined(KL_FP16)
typedef __half T;
__device__ __forceinline__ double to_d(__half v) { return __half2float(v); }
#else
typedef __nv_bfloat16 T;
__device__ __forceinline__ double to_d(__nv_bfloat16 v) { return __bfloat162float(v); }
#endif

extern "C" __global__ void row_sum_reference(const T* x, float* y, int rows, int cols) {
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    double t = 0.0;
    for (int c = 0; c < cols; c++) t += to_d(x[(long long)r * cols + c]);
    y[r] = (float)t;
}
