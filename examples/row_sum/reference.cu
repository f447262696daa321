// reference.cu — y[r] = Σ_c x[r][c], one thread per row, accumulated in double.
// grid ceil(rows / 128), block 128.
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <kernlab/element_type.cuh>  // T, kl_to_f, kl_from_f (built into kernlab)

extern "C" __global__ void row_sum_reference(const T* x, float* y, int rows, int cols) {
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    double t = 0.0;
    for (int c = 0; c < cols; c++) t += (double)kl_to_f(x[(long long)r * cols + c]);
    y[r] = (float)t;
}
