#define NTHREADS (ROWS_PER_BLOCK * THREADS_PER_ROW)
#define WARPS_PER_ROW ((THREADS_PER_ROW + 31) / 32)

static_assert((THREADS_PER_ROW & (THREADS_PER_ROW - 1)) == 0 && THREADS_PER_ROW >= 1,
              "THREADS_PER_ROW must be a power of two (shuffle reductions)");
static_assert(THREADS_PER_ROW <= 32 || THREADS_PER_ROW % 32 == 0, "whole warps per row");
static_assert(NTHREADS <= 1024, "at most 1024 threads per block");
static_assert(VEC * sizeof(T) <= 16, "a vector access is at most 16 bytes");
