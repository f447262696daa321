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
//   HEADS_PER_ITER    heads a thread loads before it rotates and stores any of them: more
//                     bytes in flight per thread (the in-place update forbids the compiler
//                     from hoisting a later head's loads above an earlier head's stores)
//   SHARED_TRIG       1: the block computes each (token, pair) angle's cos/sin once into
//                     shared memory (head_dim/2 sincosf per token instead of one per pair
//                     per thread group); 0: each thread computes those of its VEC pairs
//   CACHE_HINTS       1: streaming loads and stores (ld/st.global.cs, evict-first: every
//                     byte is touched once); 0: default caching
// On an H200 (4 x 2048 tokens, 32 + 8 heads) none of the last three helped: the kernel runs
// at about 97 % of copy bandwidth once launched, and 16-byte vectors (VEC = 8) with one token
// per block of 128 or 160 threads were best; HEADS_PER_ITER = 2 cost 1 to 3 us.
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
#include "../common/pdl.cuh"  // pdl_wait, pdl_launch_dependents, KL_PDL_AWARE

#ifndef THREADS
#define THREADS 128
#endif
#ifndef TOKENS_PER_BLOCK
#define TOKENS_PER_BLOCK 1
#endif
#ifndef HEADS_PER_ITER
#define HEADS_PER_ITER 1
#endif
#ifndef SHARED_TRIG
#define SHARED_TRIG 0
#endif
#ifndef CACHE_HINTS
#define CACHE_HINTS 0
#endif

// Pairs per token the shared cos/sin table holds (head_dim <= 2 * TRIG_PAIRS); a larger head
// falls back to per-thread sincosf.
#define TRIG_PAIRS 128

static_assert(VEC * sizeof(T) <= 16, "a vector access is at most 16 bytes");
static_assert(THREADS % 32 == 0 && THREADS <= 1024, "THREADS: whole warps, at most 1024");
static_assert(HEADS_PER_ITER >= 1 && HEADS_PER_ITER <= 16, "HEADS_PER_ITER in 1..16");

// One vector of VEC elements in or out, with the CACHE_HINTS policy.
__device__ __forceinline__ void rope_load(const T* p, float (&f)[VEC]) {
#if CACHE_HINTS
    alignas(16) T e[VEC];
    *reinterpret_cast<KlVec*>(e) = __ldcs(reinterpret_cast<const KlVec*>(p));
#pragma unroll
    for (int j = 0; j < VEC; ++j) f[j] = kl_to_f(e[j]);
#else
    kl_load(p, f);
#endif
}
__device__ __forceinline__ void rope_store(T* p, const float (&f)[VEC]) {
#if CACHE_HINTS
    alignas(16) T e[VEC];
#pragma unroll
    for (int j = 0; j < VEC; ++j) e[j] = kl_from_f(f[j]);
    __stcs(reinterpret_cast<KlVec*>(p), *reinterpret_cast<const KlVec*>(e));
#else
    kl_store(p, f);
#endif
}

// (N, 1): with the bare __launch_bounds__(N), ptxas squeezed some configurations below
// their need and spilled; a minimum of one block lets it use what the code needs.
KL_PDL_AWARE(rope_llama3)
extern "C" __global__ void __launch_bounds__(THREADS, 1)
rope_llama3(const T* q_in, const T* k_in, T* q_out, T* k_out, const int* offsets, const float* inv_freq,
            int n_tokens, int seq_len, int n_q_heads, int n_kv_heads, int head_dim, int q_stride, int k_stride) {
    pdl_wait();  // before any read of an earlier kernel's output or any write
    pdl_launch_dependents();
    const int half = head_dim >> 1;
    const int cph = half / VEC;       // vector chunks per half head
    const int c = threadIdx.x % cph;  // this thread's chunk: pairs [c*VEC, c*VEC + VEC)
    const int lane = threadIdx.x / cph;
    const int lanes = THREADS / cph;  // threads that share one chunk index, each on other heads
    const int heads = n_q_heads + n_kv_heads;
    const long long tok0 = (long long)blockIdx.x * TOKENS_PER_BLOCK;
    // A partial group past the last whole one would repeat lane 0's heads (rotating them
    // twice when in place): those threads only help fill the shared table.
    const bool active = lane < lanes;

#if SHARED_TRIG
    __shared__ float s_cs[TOKENS_PER_BLOCK][TRIG_PAIRS], s_sn[TOKENS_PER_BLOCK][TRIG_PAIRS];
    const bool shared_trig = half <= TRIG_PAIRS;  // uniform over the block
    if (shared_trig) {
        for (int k = threadIdx.x; k < TOKENS_PER_BLOCK * half; k += THREADS) {
            const int i = k / half, j = k % half;
            const long long tok = tok0 + i;
            if (tok < n_tokens) {
                const int seq = (int)(tok / seq_len);
                const float pos = (float)(offsets[seq] + (int)(tok - (long long)seq * seq_len));
                sincosf(pos * inv_freq[j], &s_sn[i][j], &s_cs[i][j]);
            }
        }
        __syncthreads();  // the only barrier: every thread reaches it
    }
#else
    const bool shared_trig = false;
#endif
    if (!active) return;

    float f[VEC];
#pragma unroll
    for (int j = 0; j < VEC; ++j) f[j] = inv_freq[c * VEC + j];

    for (int i = 0; i < TOKENS_PER_BLOCK; ++i) {
        const long long tok = tok0 + i;
        if (tok >= n_tokens) return;  // no barriers past this point
        float cs[VEC], sn[VEC];
        if (shared_trig) {
#if SHARED_TRIG
#pragma unroll
            for (int j = 0; j < VEC; ++j) {
                cs[j] = s_cs[i][c * VEC + j];
                sn[j] = s_sn[i][c * VEC + j];
            }
#endif
        } else {
            const int seq = (int)(tok / seq_len);
            const float pos = (float)(offsets[seq] + (int)(tok - (long long)seq * seq_len));
#pragma unroll
            for (int j = 0; j < VEC; ++j) sincosf(pos * f[j], &sn[j], &cs[j]);
        }

        for (int h0 = lane; h0 < heads; h0 += lanes * HEADS_PER_ITER) {
            // Load every head of this step first, then rotate and store: HEADS_PER_ITER
            // independent pairs of loads in flight per thread.
            float a[HEADS_PER_ITER][VEC], b[HEADS_PER_ITER][VEC];
            T* dst[HEADS_PER_ITER];
#pragma unroll
            for (int u = 0; u < HEADS_PER_ITER; ++u) {
                const int hh = h0 + u * lanes;
                dst[u] = nullptr;
                if (HEADS_PER_ITER == 1 || hh < heads) {
                    const bool is_q = hh < n_q_heads;
                    const long long at = is_q ? tok * q_stride + (long long)hh * head_dim + c * VEC
                                              : tok * k_stride + (long long)(hh - n_q_heads) * head_dim + c * VEC;
                    const T* src = (is_q ? q_in : k_in) + at;
                    dst[u] = (is_q ? q_out : k_out) + at;
                    rope_load(src, a[u]);
                    rope_load(src + half, b[u]);
                }
            }
#pragma unroll
            for (int u = 0; u < HEADS_PER_ITER; ++u) {
                if (HEADS_PER_ITER > 1 && dst[u] == nullptr) continue;
                float oa[VEC], ob[VEC];
#pragma unroll
                for (int j = 0; j < VEC; ++j) {
                    oa[j] = a[u][j] * cs[j] - b[u][j] * sn[j];
                    ob[j] = b[u][j] * cs[j] + a[u][j] * sn[j];
                }
                rope_store(dst[u], oa);
                rope_store(dst[u] + half, ob);
            }
        }
    }
}
