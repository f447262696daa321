// reference.cu — the rope family's trusted reference (not tuned).
//
//   rope_reference(same arguments as rope_llama3)
//   One thread per (token, head, pair), no vectors, no reuse: a = fl32(p * inv_freq[i]),
//   sincosf(a), rotate the pair (x[i], x[i + D/2]).
//   Launch: grid-stride over n_tokens * (n_q_heads + n_kv_heads) * head_dim / 2; block 256.
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include "../common/element_type.cuh"

extern "C" __global__ void rope_reference(const T* q_in, const T* k_in, T* q_out, T* k_out, const int* offsets,
                                          const float* inv_freq, int n_tokens, int seq_len, int n_q_heads,
                                          int n_kv_heads, int head_dim, int q_stride, int k_stride) {
    const int half = head_dim / 2, heads = n_q_heads + n_kv_heads;
    const long long total = (long long)n_tokens * heads * half;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const int i = (int)(idx % half);
        const int hh = (int)((idx / half) % heads);
        const long long tok = idx / ((long long)half * heads);
        const int seq = (int)(tok / seq_len);
        const int p = offsets[seq] + (int)(tok % seq_len);
        float s, c;
        sincosf((float)p * inv_freq[i], &s, &c);
        const bool is_q = hh < n_q_heads;
        const long long at = is_q ? tok * q_stride + (long long)hh * head_dim
                                  : tok * k_stride + (long long)(hh - n_q_heads) * head_dim;
        const T* src = (is_q ? q_in : k_in) + at;
        T* dst = (is_q ? q_out : k_out) + at;
        const float x1 = kl_to_f(src[i]), x2 = kl_to_f(src[i + half]);
        dst[i] = kl_from_f(x1 * c - x2 * s);
        dst[i + half] = kl_from_f(x2 * c + x1 * s);
    }
}
