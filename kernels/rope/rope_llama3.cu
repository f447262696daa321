// rope_llama3.cu — rotary position embedding on Q and K (in place or out of place), with a
// per-sequence position offset (the KV-cache length), Hugging Face half-split layout.
//
// For token n of sequence b = n / seq_len, position p = offsets[b] + n % seq_len; for every
// head of Q and K and every pair i < D/2 (first half x1 = x[i], second half x2 = x[i + D/2]):
//   a = fl32(p * inv_freq[i])                       (fp32 product, as HF computes it)
//   x1' = x1 cos a - x2 sin a,   x2' = x2 cos a + x1 sin a
// inv_freq carries the frequency scaling: the host builds it with Llama-3's rule (theta
// 500000, factor 8, low/high frequency factors 1/4, original context 8192), so this kernel
// is plain RoPE over a table. cos/sin use the accurate sincosf (positions reach 1e5 rad);
// each thread computes them once per token for its VEC pairs and reuses them for every head
// it rotates, which amortises the sincos over the Hq + Hkv heads. Math in fp32 (HF rounds
// cos/sin to the activation type first; this does not).
//
// Element type: bf16 by default, fp16 with -DKL_FP16=1, fp32 with -DKL_FP32=1.
// Tunables:
//   THREADS           threads per block
//   TOKENS_PER_BLOCK  tokens each block handles, one after another
//   VEC               pairs per thread = elements per load (VEC * sizeof(T) <= 16 bytes)
//
// Launch contract:
//   rope_llama3(const T* q_in, const T* k_in, T* q_out, T* k_out, const int* offsets,
//               const float* inv_freq, int n_tokens, int seq_len, int n_q_heads,
//               int n_kv_heads, int head_dim, int q_stride, int k_stride)
//   grid  = (ceil(n_tokens / TOKENS_PER_BLOCK), 1, 1); block = (THREADS, 1, 1); no smem
//   q is [n_tokens][q_stride] with head h at q + token*q_stride + h*head_dim (k likewise;
//   the strides let Q and K be views into a fused QKV buffer); q_out/k_out use the same
//   strides. Requires head_dim even, (head_dim / 2) % VEC == 0, q_stride and k_stride
//   multiples of VEC, THREADS >= head_dim / 2 / VEC (threads past the last whole group of
//   head_dim/2/VEC idle). offsets holds ceil(n_tokens / seq_len) ints; inv_freq holds
//   head_dim / 2 floats.
//   In place: q_out == q_in and k_out == k_in (each element is read and written by the
//   same thread); otherwise the outputs must not overlap the inputs.
#include <cuda_fp16.h>
#include <cuda_bf16.h>

// Element type (bf16, or fp16/fp32 via KL_FP16/KL_FP32), VEC and the vector loads/stores
// shared by every memory-bound template; kernlab expands this include before compiling.
#include "../common/elementwise.cuh"

#ifndef THREADS
#define THREADS 128
#endif
#ifndef TOKENS_PER_BLOCK
#define TOKENS_PER_BLOCK 1
#endif

static_assert(VEC * sizeof(T) <= 16, "a vector access is at most 16 bytes");
static_assert(THREADS % 32 == 0 && THREADS <= 1024, "THREADS: whole warps, at most 1024");

// (N, 1): with the bare __launch_bounds__(N), ptxas squeezed some configurations below
// their need and spilled; a minimum of one block lets it use what the code needs.
extern "C" __global__ void __launch_bounds__(THREADS, 1)
rope_llama3(const T* q_in, const T* k_in, T* q_out, T* k_out, const int* offsets, const float* inv_freq,
            int n_tokens, int seq_len, int n_q_heads, int n_kv_heads, int head_dim, int q_stride, int k_stride) {
    const int half = head_dim >> 1;
    const int cph = half / VEC;       // vector chunks per half head
    const int c = threadIdx.x % cph;  // this thread's chunk: pairs [c*VEC, c*VEC + VEC)
    const int lane = threadIdx.x / cph;
    const int lanes = THREADS / cph;  // threads that share one chunk index, each on other heads
    const int heads = n_q_heads + n_kv_heads;
    // A partial group past the last whole one would repeat lane 0's heads (rotating them
    // twice when in place): those threads idle.
    if (lane >= lanes) return;

    float f[VEC];
#pragma unroll
    for (int j = 0; j < VEC; ++j) f[j] = inv_freq[c * VEC + j];

    for (int i = 0; i < TOKENS_PER_BLOCK; ++i) {
        const long long tok = (long long)blockIdx.x * TOKENS_PER_BLOCK + i;
        if (tok >= n_tokens) return;  // no barriers in this kernel
        const int seq = (int)(tok / seq_len);
        const float pos = (float)(offsets[seq] + (int)(tok - (long long)seq * seq_len));
        float cs[VEC], sn[VEC];
#pragma unroll
        for (int j = 0; j < VEC; ++j) sincosf(pos * f[j], &sn[j], &cs[j]);

        for (int hh = lane; hh < heads; hh += lanes) {
            const bool is_q = hh < n_q_heads;
            const long long at = is_q ? tok * q_stride + (long long)hh * head_dim + c * VEC
                                      : tok * k_stride + (long long)(hh - n_q_heads) * head_dim + c * VEC;
            const T* src = (is_q ? q_in : k_in) + at;
            T* dst = (is_q ? q_out : k_out) + at;
            float a[VEC], b[VEC];
            kl_load(src, a);
            kl_load(src + half, b);
            float oa[VEC], ob[VEC];
#pragma unroll
            for (int j = 0; j < VEC; ++j) {
                oa[j] = a[j] * cs[j] - b[j] * sn[j];
                ob[j] = b[j] * cs[j] + a[j] * sn[j];
            }
            kl_store(dst, oa);
            kl_store(dst + half, ob);
        }
    }
}
