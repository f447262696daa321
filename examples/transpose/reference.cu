// reference.cu — one thread per element, no shared memory: the trusted transpose (and the
// "naive" peer the tuned one is compared with). grid (ceil(cols/16), ceil(rows/16)), block (16, 16).
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <kernlab/element_type.cuh>  // T, kl_to_f, kl_from_f (built into kernlab)

extern "C" __global__ void transpose_reference(const T* x, T* y, int rows, int cols) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y * blockDim.y + threadIdx.y;
    if (r < rows && c < cols) y[(long long)c * rows + r] = x[(long long)r * cols + c];
}
