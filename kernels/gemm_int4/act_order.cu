// act_order.cu — GPTQ's act-order on the GPU: a column permutation of 16-bit rows.
//
// An act-order weight quantizes its input columns in a permuted order (GPTQ's desc_act: the
// columns with the largest Hessian diagonal first), so its groups are scattered along K. The
// model keeps such a weight with its columns permuted (W'[:, j] = W[:, perm[j]]), which makes
// every group contiguous again, and gathers the activations the same way before the GEMM:
// Y = X·Wᵀ = X[:, perm]·W'ᵀ. The same kernel permutes a bf16 weight before the device
// quantizer sees it, and undoes the permutation (with the inverse) for the dequantized copy
// that --validate runs on cuBLAS.
//
// Launch contract:
//   extern "C" __global__ void gather_cols(const unsigned short* src, unsigned short* dst,
//       const unsigned* perm, int rows, int K)
//     dst[r][j] = src[r][perm[j]] for r < rows, j < K; src and dst [rows][K] row-major
//     16-bit values (bf16 or fp16 bits: moved, never converted), distinct buffers; perm u32
//     [K], each in 0..K. Grid-stride: any grid, block = (256, 1, 1), no shared memory.

extern "C" __global__ void __launch_bounds__(256)
gather_cols(const unsigned short* __restrict__ src, unsigned short* __restrict__ dst,
            const unsigned* __restrict__ perm, int rows, int K) {
    const long long total = (long long)rows * K;
    for (long long i = (long long)blockIdx.x * 256 + threadIdx.x; i < total; i += (long long)gridDim.x * 256) {
        const long long r = i / K;
        const int j = (int)(i - r * K);
        dst[i] = src[r * K + __ldg(perm + j)];
    }
}
