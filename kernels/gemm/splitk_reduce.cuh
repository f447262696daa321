// splitk_reduce.cuh — the deterministic split-K reduction shared by gemv_splitk.cu and
// mma_skinny.cu (kernlab expands quoted includes before NVRTC sees the source, so the cache
// key and the tuned database's source hash cover this file too). The including file defines
// T (bf16 or half) before including it.
//
//   entry  gemm_splitk_reduce(const float* WS, T* Y, const T* R, int M, int N, int splits)
//   grid   (ceil(M*N / 256), 1, 1), block (256, 1, 1), no dynamic shared memory
//
__device__ __forceinline__ float kl_reduce_load(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float kl_reduce_load(__half v) { return __half2float(v); }
__device__ __forceinline__ void kl_reduce_store(__nv_bfloat16* p, float v) { *p = __float2bfloat16(v); }
__device__ __forceinline__ void kl_reduce_store(__half* p, float v) { *p = __float2half(v); }

// Y[m,n] = sum_{s < splits} WS[(s*M + m)*N + n] (+ R[m,n]), summed in order s = 0, 1, ...
extern "C" __global__ void __launch_bounds__(256)
gemm_splitk_reduce(const float* __restrict__ WS, T* __restrict__ Y, const T* __restrict__ R, int M, int N,
                   int splits) {
    const size_t total = (size_t)M * N;
    const size_t i = (size_t)blockIdx.x * 256 + threadIdx.x;
    if (i >= total) return;
    float y = 0.f;
    for (int s = 0; s < splits; ++s) y += WS[(size_t)s * total + i];
    if (R != nullptr) y += kl_reduce_load(R[i]);
    kl_reduce_store(&Y[i], y);
}
