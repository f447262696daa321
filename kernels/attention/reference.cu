/*
attention/reference.cu — simple, obviously-right attention used to verify the tuned kernels.
Not tuned, not fast. fp32 math, exact two-pass softmax (max first, then exp/sum/output),
expf rather than exp2 tricks. One block of 128 threads per (query, head).

    attn_ref_prefill(const T* Q, const T* K, const T* V, T* O, const int* cu_seqlens,
                     int B, int H, int KVH, int D, float scale)
        layout and meaning as attention/prefill.cu (packed tokens, causal within each sequence)
        grid (total_tokens, H), block (128, 1, 1), no dynamic shared memory
    attn_ref_decode(const T* Q, const T* Kc, const T* Vc, T* O, const int* lens,
                    int L_cap, int H, int KVH, int D, float scale)
        layout and meaning as attention/decode_splitkv.cu (lens[b] = 0 gives O = 0)
        grid (B, H), block (128, 1, 1)
    D <= 256, H % KVH == 0.
*/
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#ifndef KL_FP16
#define KL_FP16 0
#endif
#if KL_FP16
typedef __half T;
__device__ __forceinline__ float to_f(T v) { return __half2float(v); }
__device__ __forceinline__ T from_f(float v) { return __float2half_rn(v); }
#else
typedef __nv_bfloat16 T;
__device__ __forceinline__ float to_f(T v) { return __bfloat162float(v); }
__device__ __forceinline__ T from_f(float v) { return __float2bfloat16_rn(v); }
#endif

#define REF_THREADS 128
#define REF_WARPS (REF_THREADS / 32)
#define REF_CHUNK 512
#define REF_MAX_D 256

// out[0..D) = softmax_j(scale · q·k_j) · v_j over keys j < n; key j's row is at kv + j*stride.
__device__ void attend(const T* q, const T* Kb, const T* Vb, size_t stride, int n, int D, float scale, T* out) {
    __shared__ float sq[REF_MAX_D];
    __shared__ float sp[REF_CHUNK];
    __shared__ float red[REF_WARPS];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    for (int d = tid; d < D; d += REF_THREADS) sq[d] = to_f(q[d]);
    __syncthreads();

    // pass 1: the largest score (one warp per key, lanes over d)
    float mx = -__int_as_float(0x7f800000);
    for (int j = warp; j < n; j += REF_WARPS) {
        const T* k = Kb + (size_t)j * stride;
        float dot = 0.f;
        for (int d = lane; d < D; d += 32) dot += sq[d] * to_f(k[d]);
        for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
        mx = fmaxf(mx, dot * scale);
    }
    if (lane == 0) red[warp] = mx;
    __syncthreads();
    float M = red[0];
    for (int w = 1; w < REF_WARPS; ++w) M = fmaxf(M, red[w]);

    // pass 2: p_j = exp(s_j - M) a chunk at a time, then sum and p·V (thread per d)
    float acc0 = 0.f, acc1 = 0.f, sum = 0.f;
    for (int c0 = 0; c0 < n; c0 += REF_CHUNK) {
        const int cn = min(REF_CHUNK, n - c0);
        for (int j = warp; j < cn; j += REF_WARPS) {
            const T* k = Kb + (size_t)(c0 + j) * stride;
            float dot = 0.f;
            for (int d = lane; d < D; d += 32) dot += sq[d] * to_f(k[d]);
            for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
            if (lane == 0) sp[j] = expf(dot * scale - M);
        }
        __syncthreads();
        for (int j = 0; j < cn; ++j) {
            const float p = sp[j];
            const T* v = Vb + (size_t)(c0 + j) * stride;
            sum += p;
            if (tid < D) acc0 += p * to_f(v[tid]);
            if (tid + REF_THREADS < D) acc1 += p * to_f(v[tid + REF_THREADS]);
        }
        __syncthreads();
    }
    const float inv = sum > 0.f ? 1.f / sum : 0.f;
    if (tid < D) out[tid] = from_f(acc0 * inv);
    if (tid + REF_THREADS < D) out[tid + REF_THREADS] = from_f(acc1 * inv);
}

extern "C" __global__ void __launch_bounds__(REF_THREADS)
attn_ref_prefill(const T* Q, const T* K, const T* V, T* O, const int* cu_seqlens, int B, int H, int KVH, int D,
                 float scale) {
    const int t = blockIdx.x, h = blockIdx.y;
    int b = 0;
    while (b + 1 < B && cu_seqlens[b + 1] <= t) ++b;
    const int tok0 = cu_seqlens[b];
    const int pos = t - tok0;
    const int kvh = h / (H / KVH);
    const size_t stride = (size_t)KVH * D;
    attend(Q + ((size_t)t * H + h) * D, K + ((size_t)tok0 * KVH + kvh) * D, V + ((size_t)tok0 * KVH + kvh) * D,
           stride, pos + 1, D, scale, O + ((size_t)t * H + h) * D);
}

extern "C" __global__ void __launch_bounds__(REF_THREADS)
attn_ref_decode(const T* Q, const T* Kc, const T* Vc, T* O, const int* lens, int L_cap, int H, int KVH, int D,
                float scale) {
    const int b = blockIdx.x, h = blockIdx.y;
    const int kvh = h / (H / KVH);
    const size_t stride = (size_t)KVH * D;
    const size_t base = ((size_t)b * L_cap * KVH + kvh) * D;
    attend(Q + ((size_t)b * H + h) * D, Kc + base, Vc + base, stride, lens[b], D, scale,
           O + ((size_t)b * H + h) * D);
}
