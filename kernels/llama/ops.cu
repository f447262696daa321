/*
llama/ops.cu — the plain reference kernels of the Llama-3 GPU path (everything but the
linear layers). Simple and obviously right first: fp32 math inside, bf16 in and out, no
tunables. A tuned kernlab family (rmsnorm, rope, attention, ...) replaces one of these
through the op seam in src/llama/gpu/ops.rs; these stay as the reference it is checked against.

Layouts (row-major, bf16 = __nv_bfloat16 unless noted)
    activations   [T, width]          T = tokens of the step (ragged batch packed together)
    qkv           [T, qkv_dim]        q heads | k heads | v heads, qkv_dim = (H + 2*KVH)*HD
    gate_up       [T, 2*F]            gate | up (the fused w_gate;w_up linear)
    KV cache      per layer [B][S][KVH][HD] for K and for V (S = max_seq of the cache)
    tok_seq[T]    int, which sequence (batch slot) token t belongs to
    tok_pos[T]    int, its position in that sequence (RoPE angle and causal limit)

Entry points (grid / block in brackets)
    embed_gather(table, ids, out, n, dim)                      [n] / [256]
        out[t] = table[ids[t]]; also used to gather the last row of each sequence.
    rmsnorm(x, w, out, rows, dim, eps)                         [rows] / [256]
        out = x / sqrt(mean(x^2) + eps) * w
    rope_qk(qkv, tok_pos, inv_freq, T, H, KVH, HD)             [T] / [256]
        rotates q and k heads in place, half-split pairs (i, i + HD/2), angle pos*inv_freq[i]
        (inv_freq already carries the Llama-3 frequency scaling).
    kv_append(qkv, k_cache, v_cache, tok_seq, tok_pos, T, H, KVH, HD, S)   [T] / [256]
    kv_append_pack(qkv, k_cache, v_cache, q_out, k_out, v_out, tok_seq, tok_pos, T, H, KVH, HD, S)
                                                               [T] / [256]
        kv_append, and also copies the token's q heads to q_out [T, H*HD] and its k and v to
        k_out / v_out [T, KVH*HD] (each skipped when null): the contiguous Q (and packed K/V)
        the tuned attention families take, which the fused qkv rows are not. 16-byte copies:
        HD % 8 == 0 (the model requires HD % 32 == 0).
    attention(qkv, k_cache, v_cache, out, tok_seq, tok_pos, T, H, KVH, HD, S, scale)
                                                               [H, T] / [128]
        one block per (query head, token): causal over cache positions 0..tok_pos[t] of the
        token's sequence, GQA (head h reads KV head h / (H/KVH)). The 4 warps take every 4th
        key with their own online softmax; the block merges the 4 states. HD % 32 == 0, HD <= 256.
        Prefill and decode are the same kernel: a prefill token sees the keys its own step
        appended (kv_append runs first), a decode token sees the whole history.
    swiglu(gate_up, out, T, F)                                 grid-stride / [256]
        out[t, i] = silu(gate[t, i]) * up[t, i]
    residual_add(x, y, n)                                      grid-stride / [256]
        x += y
    argmax_rows(logits, out, rows, n)                          [rows] / [256]
        out[r] = argmax (lowest index on ties, like torch.argmax)
    fill_const_bf16(p, n, v)                                   grid-stride / [256]
*/
#include <cuda_bf16.h>
#include "../common/pdl.cuh"  // pdl_wait, pdl_launch_dependents, KL_PDL_AWARE

typedef __nv_bfloat16 bf16;

// NVRTC without the toolkit headers has no math.h INFINITY.
#define KL_NEG_INF __int_as_float(0xff800000)

__device__ __forceinline__ float to_f(bf16 v) { return __bfloat162float(v); }
__device__ __forceinline__ bf16 to_b(float v) { return __float2bfloat16(v); }

// Sum over a block of 256 threads (8 warps); every thread gets the total.
__device__ float block_sum_256(float v) {
    __shared__ float part[8];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __syncthreads();  // part[] may still be read by a previous call
    if (lane == 0) part[w] = v;
    __syncthreads();
    float t = 0.f;
    for (int i = 0; i < (int)(blockDim.x >> 5); i++) t += part[i];
    return t;
}

KL_PDL_AWARE(embed_gather)
extern "C" __global__ void embed_gather(const bf16* table, const int* ids, bf16* out, int n, int dim) {
    pdl_wait();  // before any read of an earlier kernel's output or any write
    pdl_launch_dependents();
    int t = blockIdx.x;
    if (t >= n) return;
    const bf16* src = table + (long long)ids[t] * dim;
    bf16* dst = out + (long long)t * dim;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) dst[i] = src[i];
}

KL_PDL_AWARE(rmsnorm)
extern "C" __global__ void rmsnorm(const bf16* x, const bf16* w, bf16* out, int rows, int dim, float eps) {
    pdl_wait();  // before any read of an earlier kernel's output or any write
    pdl_launch_dependents();
    int r = blockIdx.x;
    if (r >= rows) return;
    const bf16* xr = x + (long long)r * dim;
    float ss = 0.f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) { float v = to_f(xr[i]); ss += v * v; }
    float inv = rsqrtf(block_sum_256(ss) / (float)dim + eps);
    bf16* o = out + (long long)r * dim;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = to_b(to_f(xr[i]) * inv * to_f(w[i]));
}

KL_PDL_AWARE(rope_qk)
extern "C" __global__ void rope_qk(bf16* qkv, const int* tok_pos, const float* inv_freq, int T, int H, int KVH, int HD) {
    pdl_wait();  // before any read of an earlier kernel's output or any write
    pdl_launch_dependents();
    int t = blockIdx.x;
    if (t >= T) return;
    int half = HD / 2;
    int qkv_dim = (H + 2 * KVH) * HD;
    float pos = (float)tok_pos[t];
    bf16* row = qkv + (long long)t * qkv_dim;
    // Heads 0..H-1 are q, H..H+KVH-1 are k (contiguous in the fused row); v is untouched.
    for (int j = threadIdx.x; j < (H + KVH) * half; j += blockDim.x) {
        int head = j / half, i = j % half;
        float s, c;
        sincosf(pos * inv_freq[i], &s, &c);
        bf16* hp = row + head * HD;
        float a = to_f(hp[i]), b = to_f(hp[i + half]);
        hp[i] = to_b(a * c - b * s);
        hp[i + half] = to_b(b * c + a * s);
    }
}

KL_PDL_AWARE(kv_append)
extern "C" __global__ void kv_append(const bf16* qkv, bf16* k_cache, bf16* v_cache, const int* tok_seq, const int* tok_pos,
                                     int T, int H, int KVH, int HD, int S) {
    pdl_wait();  // before any read of an earlier kernel's output or any write
    pdl_launch_dependents();
    int t = blockIdx.x;
    if (t >= T) return;
    int kv_dim = KVH * HD, qkv_dim = (H + 2 * KVH) * HD;
    const bf16* k = qkv + (long long)t * qkv_dim + H * HD;
    const bf16* v = k + kv_dim;
    long long slot = ((long long)tok_seq[t] * S + tok_pos[t]) * kv_dim;
    for (int i = threadIdx.x; i < kv_dim; i += blockDim.x) {
        k_cache[slot + i] = k[i];
        v_cache[slot + i] = v[i];
    }
}

// The q|k|v rows are (H + 2*KVH)*HD elements and HD % 8 == 0, so every head starts on a
// 16-byte boundary: copy in uint4 units (8 bf16).
KL_PDL_AWARE(kv_append_pack)
extern "C" __global__ void kv_append_pack(const bf16* qkv, bf16* k_cache, bf16* v_cache, bf16* q_out, bf16* k_out,
                                          bf16* v_out, const int* tok_seq, const int* tok_pos, int T, int H, int KVH,
                                          int HD, int S) {
    pdl_wait();  // before any read of an earlier kernel's output or any write
    pdl_launch_dependents();
    int t = blockIdx.x;
    if (t >= T) return;
    int kv8 = KVH * HD / 8, q8 = H * HD / 8, row8 = q8 + 2 * kv8;
    const uint4* row = reinterpret_cast<const uint4*>(qkv) + (long long)t * row8;
    const uint4* k = row + q8;
    const uint4* v = k + kv8;
    long long slot = ((long long)tok_seq[t] * S + tok_pos[t]) * kv8;
    uint4* kc = reinterpret_cast<uint4*>(k_cache) + slot;
    uint4* vc = reinterpret_cast<uint4*>(v_cache) + slot;
    for (int i = threadIdx.x; i < kv8; i += blockDim.x) {
        uint4 kk = k[i], vv = v[i];
        kc[i] = kk;
        vc[i] = vv;
        if (k_out) reinterpret_cast<uint4*>(k_out)[(long long)t * kv8 + i] = kk;
        if (v_out) reinterpret_cast<uint4*>(v_out)[(long long)t * kv8 + i] = vv;
    }
    if (q_out)
        for (int i = threadIdx.x; i < q8; i += blockDim.x) reinterpret_cast<uint4*>(q_out)[(long long)t * q8 + i] = row[i];
}

#define ATTN_WARPS 4
#define ATTN_MAX_EPL 8  // elements per lane: HD / 32 <= 8

KL_PDL_AWARE(attention)
extern "C" __global__ void __launch_bounds__(ATTN_WARPS * 32)
attention(const bf16* qkv, const bf16* k_cache, const bf16* v_cache, bf16* out, const int* tok_seq, const int* tok_pos,
          int T, int H, int KVH, int HD, int S, float scale) {
    pdl_wait();  // before any read of an earlier kernel's output or any write
    pdl_launch_dependents();
    int h = blockIdx.x, t = blockIdx.y;
    if (t >= T || h >= H) return;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int epl = HD / 32;                // this lane owns dims lane*epl .. lane*epl+epl-1
    int kvh = h / (H / KVH);
    int kv_dim = KVH * HD, qkv_dim = (H + 2 * KVH) * HD;
    int n_keys = tok_pos[t] + 1;      // causal: keys 0..pos
    const bf16* q = qkv + (long long)t * qkv_dim + h * HD + lane * epl;
    long long base = (long long)tok_seq[t] * S * kv_dim + kvh * HD + lane * epl;

    float qv[ATTN_MAX_EPL], acc[ATTN_MAX_EPL];
#pragma unroll
    for (int i = 0; i < ATTN_MAX_EPL; i++) { qv[i] = i < epl ? to_f(q[i]) * scale : 0.f; acc[i] = 0.f; }
    float m = KL_NEG_INF, l = 0.f;
    for (int j = warp; j < n_keys; j += ATTN_WARPS) {
        const bf16* kp = k_cache + base + (long long)j * kv_dim;
        float s = 0.f;
#pragma unroll
        for (int i = 0; i < ATTN_MAX_EPL; i++) if (i < epl) s += qv[i] * to_f(kp[i]);
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        float m_new = fmaxf(m, s);
        float corr = __expf(m - m_new);   // 0 on the first key (m = -inf)
        float p = __expf(s - m_new);
        l = l * corr + p;
        const bf16* vp = v_cache + base + (long long)j * kv_dim;
#pragma unroll
        for (int i = 0; i < ATTN_MAX_EPL; i++) if (i < epl) acc[i] = acc[i] * corr + p * to_f(vp[i]);
        m = m_new;
    }
    // Merge the warps' (m, l, acc) states.
    __shared__ float sm_m[ATTN_WARPS], sm_l[ATTN_WARPS];
    __shared__ float sm_acc[ATTN_WARPS][256];
    if (lane == 0) { sm_m[warp] = m; sm_l[warp] = l; }
#pragma unroll
    for (int i = 0; i < ATTN_MAX_EPL; i++) if (i < epl) sm_acc[warp][lane * epl + i] = acc[i];
    __syncthreads();
    float mx = KL_NEG_INF;
    for (int w = 0; w < ATTN_WARPS; w++) mx = fmaxf(mx, sm_m[w]);
    float wgt[ATTN_WARPS], denom = 0.f;
    for (int w = 0; w < ATTN_WARPS; w++) {
        // A warp that saw no key (n_keys < 4) has m = -inf and l = 0: weight 0.
        wgt[w] = sm_l[w] > 0.f ? __expf(sm_m[w] - mx) : 0.f;
        denom += sm_l[w] * wgt[w];
    }
    bf16* o = out + (long long)t * (H * HD) + h * HD;
    for (int d = threadIdx.x; d < HD; d += blockDim.x) {
        float v = 0.f;
        for (int w = 0; w < ATTN_WARPS; w++) v += sm_acc[w][d] * wgt[w];
        o[d] = to_b(v / denom);
    }
}

KL_PDL_AWARE(swiglu)
extern "C" __global__ void swiglu(const bf16* gate_up, bf16* out, int T, int F) {
    pdl_wait();  // before any read of an earlier kernel's output or any write
    pdl_launch_dependents();
    long long n = (long long)T * F;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < n; idx += (long long)gridDim.x * blockDim.x) {
        long long t = idx / F, i = idx % F;
        float g = to_f(gate_up[t * 2 * F + i]), u = to_f(gate_up[t * 2 * F + F + i]);
        out[idx] = to_b(g / (1.f + __expf(-g)) * u);
    }
}

KL_PDL_AWARE(residual_add)
extern "C" __global__ void residual_add(bf16* x, const bf16* y, long long n) {
    pdl_wait();  // before any read of an earlier kernel's output or any write
    pdl_launch_dependents();
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        x[i] = to_b(to_f(x[i]) + to_f(y[i]));
}

KL_PDL_AWARE(argmax_rows)
extern "C" __global__ void argmax_rows(const bf16* logits, int* out, int rows, int n) {
    pdl_wait();  // before any read of an earlier kernel's output or any write
    pdl_launch_dependents();
    int r = blockIdx.x;
    if (r >= rows) return;
    const bf16* row = logits + (long long)r * n;
    float best = KL_NEG_INF;
    int bi = 0x7fffffff;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = to_f(row[i]);
        if (v > best) { best = v; bi = i; }  // strided ascending: first max of this thread
    }
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, best, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (ov > best || (ov == best && oi < bi)) { best = ov; bi = oi; }
    }
    __shared__ float sv[32];
    __shared__ int si[32];
    int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) { sv[w] = best; si[w] = bi; }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int k = 1; k < (int)(blockDim.x >> 5); k++)
            if (sv[k] > best || (sv[k] == best && si[k] < bi)) { best = sv[k]; bi = si[k]; }
        // All-NaN row: report 0 rather than an out-of-range id.
        out[r] = bi == 0x7fffffff ? 0 : bi;
    }
}

KL_PDL_AWARE(fill_const_bf16)
extern "C" __global__ void fill_const_bf16(bf16* p, long long n, float v) {
    pdl_wait();  // before any read of an earlier kernel's output or any write
    pdl_launch_dependents();
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        p[i] = to_b(v);
}
