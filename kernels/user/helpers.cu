// helpers.cu — helper kernels for kernels described in sweep files (src/tune/user/): fill a
// buffer of any element type with fresh values, and compare an output with the reference's.
//
//   user_fill(void* p, long long n, int ty, int dist, float a, float b, unsigned long long seed)
//       ty: 0 f32, 1 f16, 2 bf16, 3 i32, 4 u8.
//       dist: 0 normal (mean a, std b), 1 uniform [a, b), 2 whole numbers in [a, b], 3 constant a.
//       Values come from a counter-based hash of (seed, i): fresh per seed, equal for equal seeds.
//   user_compare(const void* out, const void* ref, long long n, int ty, unsigned* res)
//       res[0] = bits of max |out - ref|, res[1] = bits of max |ref|, res[2] = non-finite
//       outputs, as kernels/util/util.cu's compare (res must be zeroed).
// Launch: grid-stride loops; any grid, block 256.
#include <cuda_fp16.h>
#include <cuda_bf16.h>

__device__ __forceinline__ unsigned long long kl_mix(unsigned long long x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// Uniform in (0, 1): 24 random bits, never 0 (Box-Muller takes its log).
__device__ __forceinline__ float kl_unit(unsigned long long h) {
    return ((float)(h >> 40) + 0.5f) * (1.0f / 16777216.0f);
}

__device__ __forceinline__ float kl_value(int dist, float a, float b, unsigned long long seed, long long i) {
    unsigned long long h = kl_mix(seed * 0x100000001B3ull ^ (unsigned long long)i);
    if (dist == 0) {
        float u1 = kl_unit(h), u2 = kl_unit(kl_mix(h));
        return a + b * sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
    }
    if (dist == 1) return a + (b - a) * kl_unit(h);
    if (dist == 2) {
        unsigned long long span = (unsigned long long)(b - a) + 1ull;
        return a + (float)(h % span);
    }
    return a;
}

extern "C" __global__ void user_fill(void* p, long long n, int ty, int dist, float a, float b, unsigned long long seed) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float v = kl_value(dist, a, b, seed, i);
        switch (ty) {
            case 0: ((float*)p)[i] = v; break;
            case 1: ((__half*)p)[i] = __float2half_rn(v); break;
            case 2: ((__nv_bfloat16*)p)[i] = __float2bfloat16_rn(v); break;
            case 3: ((int*)p)[i] = (int)rintf(v); break;
            default: ((unsigned char*)p)[i] = (unsigned char)min(255.0f, max(0.0f, rintf(v))); break;
        }
    }
}

__device__ __forceinline__ float kl_load(const void* p, long long i, int ty) {
    switch (ty) {
        case 0: return ((const float*)p)[i];
        case 1: return __half2float(((const __half*)p)[i]);
        case 2: return __bfloat162float(((const __nv_bfloat16*)p)[i]);
        case 3: return (float)((const int*)p)[i];
        default: return (float)((const unsigned char*)p)[i];
    }
}

extern "C" __global__ void user_compare(const void* out, const void* ref, long long n, int ty, unsigned* res) {
    float md = 0.f, mr = 0.f;
    unsigned bad = 0;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float o = kl_load(out, i, ty), r = kl_load(ref, i, ty);
        if (!isfinite(o)) { bad++; continue; }
        md = fmaxf(md, fabsf(o - r));
        mr = fmaxf(mr, fabsf(r));
    }
    for (int o = 16; o > 0; o >>= 1) {
        md = fmaxf(md, __shfl_xor_sync(0xffffffffu, md, o));
        mr = fmaxf(mr, __shfl_xor_sync(0xffffffffu, mr, o));
        bad += __shfl_xor_sync(0xffffffffu, bad, o);
    }
    if ((threadIdx.x & 31) == 0) {
        atomicMax(&res[0], __float_as_uint(md));
        atomicMax(&res[1], __float_as_uint(mr));
        atomicAdd(&res[2], bad);
    }
}
