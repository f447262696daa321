constexpr int ROWS_PER_PASS = THREADS / CPR;  // rows one pass of the block's threads loads
static_assert(THREADS % CPR == 0, "threads must cover whole rows");

// XOR swizzle of 16-byte chunks. A 128-byte line holds 8 chunks = 128/ROW_BYTES rows.
// Physical chunk = c ^ ((row / (8/CPR)) % CPR): the 8 rows an ldmatrix phase reads at the
// same logical chunk hit 8 distinct 16-byte bank groups.
__device__ __forceinline__ int swz(int row, int chunk) {
    return chunk ^ ((row / (8 / CPR)) % CPR);
}
__device__ __forceinline__ int smem_off(int row, int chunk) {  // bytes within a tile
    return row * ROW_BYTES + (swz(row, chunk) << 4);
}

// cp.async, ldmatrix, mma.m16n8k16
#include "../common/mma.cuh"

#include "../common/to_from_f.cuh"  // to_f, from_f: T <-> float
