// transpose.cu — tiled transpose through shared memory: y[c][r] = x[r][c], x is rows x cols.
// Launch (transpose.toml): grid (ceil(cols/TILE), ceil(rows/TILE)), block (TILE, ROWS);
// each thread moves TILE/ROWS elements in and out of the tile. PAD = 1 shifts each tile row
// by one element so the column reads of the second phase hit different shared-memory banks.
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <kernlab/element_type.cuh>  // T, kl_to_f, kl_from_f (built into kernlab)

#ifndef TILE
#define TILE 32
#endif
#ifndef ROWS
#define ROWS 8
#endif
#ifndef PAD
#define PAD 1
#endif

extern "C" __global__ void transpose(const T* __restrict__ x, T* __restrict__ y, int rows, int cols) {
    __shared__ T tile[TILE][TILE + PAD];
    const int c0 = blockIdx.x * TILE, r0 = blockIdx.y * TILE;
    for (int j = threadIdx.y; j < TILE; j += ROWS) {
        const int r = r0 + j, c = c0 + threadIdx.x;
        if (r < rows && c < cols) tile[j][threadIdx.x] = x[(long long)r * cols + c];
    }
    __syncthreads();
    for (int j = threadIdx.y; j < TILE; j += ROWS) {
        const int c = c0 + j, r = r0 + threadIdx.x;  // y's row c, column r
        if (c < cols && r < rows) y[(long long)c * rows + r] = tile[threadIdx.x][j];
    }
}
